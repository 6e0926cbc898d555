//! The one mapping from domain errors to HTTP status + `{"detail": ...}`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use lanrage_proto::ErrorBody;

use crate::{
    service,
    store::{StoreError, error_chain},
};

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// The kind of database error behind it, counted by the metrics
    /// middleware (which sees the response, not the error).
    database: Option<&'static str>,
}

/// A response extension: this response answers a database error.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseError(pub &'static str);

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            database: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
}

impl From<service::Error> for ApiError {
    fn from(error: service::Error) -> Self {
        use service::Error as E;
        let database = match &error {
            E::Store(store) => Some(store.kind()),
            _ => None,
        };
        let mut answer = Self::answer(error);
        answer.database = database;
        answer
    }
}

impl ApiError {
    fn answer(error: service::Error) -> Self {
        use service::Error as E;
        let status = match &error {
            E::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Conflict(_) => StatusCode::CONFLICT,
            E::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            E::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            E::Store(StoreError::Unavailable(source)) => {
                tracing::warn!(error = %error_chain(source), "database unavailable");
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; try again shortly",
                );
            }
            E::Store(StoreError::Conflict(source)) => {
                tracing::info!(error = %error_chain(source), "write lost a race");
                return Self::new(
                    StatusCode::CONFLICT,
                    "a concurrent change conflicted with this one; try again",
                );
            }
            E::Store(_) | E::Internal(_) => {
                tracing::error!(error = %error_chain(&error), "request failed");
                return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
            }
        };
        Self::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                detail: self.detail,
            }),
        )
            .into_response();
        if let Some(kind) = self.database {
            response.extensions_mut().insert(DatabaseError(kind));
        }
        match self.status {
            StatusCode::UNAUTHORIZED => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
