//! One HTTP/1.1 connection: hyper over the client's socket, with the
//! bounds hyper does not keep by itself. A connection gets
//! `--http-header-timeout-secs` to send each request head (counted from
//! the connection's start for the first request, from the head's first
//! byte for later ones), `--http-body-timeout-secs` for each body, and is
//! closed after `--http-idle-timeout-secs` without a request.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    http::{HeaderValue, Request, Response, StatusCode, header},
};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{ClientAddr, Connection, stack_errors::StackErrors};
use crate::metrics::Metrics;

/// How long a request in flight at shutdown gets to finish.
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// The longest request head (request line and headers) taken; longer is 431.
const MAX_HEAD_BYTES: usize = 32 * 1024;
/// The most a connection's read buffer holds.
const MAX_READ_BUFFER: usize = 64 * 1024;
/// The longest request target taken; longer is 414.
const MAX_URI_BYTES: usize = 8 * 1024;
/// The header timeout's answer, written to a plain connection as it closes.
const HEADER_TIMEOUT_ANSWER: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: 55\r\nconnection: close\r\n\r\n{\"detail\":\"request head not received within the timeout\"}";

/// The per-connection time bounds.
#[derive(Debug, Clone, Copy)]
pub struct HttpTimeouts {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
}

/// A request body that did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body timeout")]
pub struct BodyTimedOut;

/// A request body that fails once the body timeout has passed.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn detail(status: StatusCode, detail: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!(r#"{{"detail":"{detail}"}}"#)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Ends the request in the connection's accounting however it ends.
struct InFlight(Connection);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.activity().request_ended();
    }
}

/// Answers one request: the connection's address and handle go into its
/// extensions, its body gets the body timeout.
async fn answer(
    app: Router,
    connection: Connection,
    timeouts: HttpTimeouts,
    metrics: Arc<Metrics>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    connection.activity().request_started();
    let _in_flight = InFlight(connection.clone());
    if request
        .uri()
        .path_and_query()
        .is_some_and(|p| p.as_str().len() > MAX_URI_BYTES)
    {
        let mut response = detail(StatusCode::URI_TOO_LONG, "request URI too long");
        // The stack answers its own parse errors this way too.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let mut request = request.map(|body| {
        if body.is_end_stream() {
            Body::new(body)
        } else {
            Body::new(DeadlineBody {
                inner: body,
                deadline: Box::pin(tokio::time::sleep(timeouts.body)),
                timed_out: timed_out.clone(),
            })
        }
    });
    request
        .extensions_mut()
        .insert(ConnectInfo(ClientAddr(connection.peer())));
    request.extensions_mut().insert(connection);
    let mut response = match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if timed_out.load(Ordering::Acquire) {
        // The rest of the body may still be on its way: close rather than
        // read it as the next request.
        metrics.count_http_timeout("body");
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Why the watchdog closes a connection.
enum Expired {
    Header,
    Idle,
}

/// The connection's next deadline: `None` while a request is in flight
/// (its body has its own), else when its head or idleness runs out.
fn deadline(connection: &Connection, timeouts: HttpTimeouts) -> Option<(Instant, Expired)> {
    let activity = connection.activity();
    if activity.in_flight.load(Ordering::Acquire) > 0 {
        return None;
    }
    // The first head is timed from the connection's start, however late
    // its first byte came.
    if activity.requests.load(Ordering::Acquire) == 0 {
        return Some((activity.accepted_at() + timeouts.header, Expired::Header));
    }
    if let Some(started) = activity.head_started() {
        return Some((activity.at(started) + timeouts.header, Expired::Header));
    }
    Some((
        activity.at(activity.idle_since()) + timeouts.idle,
        Expired::Idle,
    ))
}

/// Serves HTTP/1.1 (and WebSocket upgrades) on one connection until the
/// client leaves, a timeout closes it, or `stop` asks it to finish.
pub(super) async fn serve<I>(
    io: I,
    connection: Connection,
    app: Router,
    timeouts: HttpTimeouts,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let connection = connection.clone();
        let metrics = metrics.clone();
        hyper::service::service_fn(move |request| {
            answer(
                app.clone(),
                connection.clone(),
                timeouts,
                metrics.clone(),
                request,
            )
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The read buffer bounds what a connection that never finishes its
    // head can make the server hold (hyper's default is ~400 KiB).
    builder
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_READ_BUFFER);
    let serving = builder
        .serve_connection(hyper_util::rt::TokioIo::new(StackErrors::new(io)), service)
        .with_upgrades();
    tokio::pin!(serving);
    // No deadline can fall before this much time has passed since a
    // request was last seen in flight.
    let recheck = timeouts.header.min(timeouts.idle);
    let sleep = tokio::time::sleep(recheck);
    tokio::pin!(sleep);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = serving.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(peer = %connection.peer(), %error, "connection ended");
                }
                return;
            }
            () = sleep.as_mut() => {
                if stopping {
                    // The drain time is over.
                    return;
                }
                let now = Instant::now();
                match deadline(&connection, timeouts) {
                    None => sleep.as_mut().reset(now + recheck),
                    Some((at, _)) if at > now => sleep.as_mut().reset(at),
                    Some((_, Expired::Header)) => {
                        metrics.count_http_timeout("header");
                        connection.close_with(HEADER_TIMEOUT_ANSWER);
                        return;
                    }
                    Some((_, Expired::Idle)) => {
                        metrics.count_http_timeout("idle");
                        return;
                    }
                }
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                serving.as_mut().graceful_shutdown();
                sleep.as_mut().reset(Instant::now() + DRAIN_TIME);
            }
        }
    }
}
