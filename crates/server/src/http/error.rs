//! The one mapping from domain errors to HTTP status + `{"detail": ...}`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use lanrage_proto::ErrorBody;

use crate::service;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// The kind of database error behind it, counted by the metrics
    /// middleware (which sees the response, not the error).
    database: Option<&'static str>,
    /// `Retry-After` of a 429 or 503, in seconds.
    retry_after_secs: u64,
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
            retry_after_secs: 1,
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
        use service::ErrorKind as K;
        let status = match error.kind() {
            K::Unauthorized => StatusCode::UNAUTHORIZED,
            K::Forbidden => StatusCode::FORBIDDEN,
            K::NotFound => StatusCode::NOT_FOUND,
            K::Conflict => StatusCode::CONFLICT,
            K::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            K::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut answer = Self::new(status, error.client_detail());
        answer.database = error.database_kind();
        answer.retry_after_secs = error.retry_after_secs().unwrap_or(1);
        answer
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
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(self.retry_after_secs),
                );
            }
            _ => {}
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
