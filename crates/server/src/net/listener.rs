//! The accept loop: every connection is counted against its address's
//! ceiling before anything else is done for it, handshaken (TLS) and served
//! on its own task, and owned by the server, which ends them all when it
//! stops. Running out of file descriptors pauses accepting, never ends it.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    ClientKey,
    counts::AddressCounts,
    http::{self, HttpTimeouts},
    io::{ClientIo, Open},
};
use crate::{metrics::Metrics, tls::SharedAcceptor};

/// How long accepting pauses after the process ran out of descriptors
/// (they free up as timeouts close idle connections).
const DESCRIPTOR_PAUSE: Duration = Duration::from_millis(50);

/// What every connection of one listener is served with.
#[derive(Clone)]
pub struct Serving {
    pub app: Router,
    /// `Some` for HTTPS: the acceptor now (swapped when the certificate is
    /// reloaded).
    pub tls: Option<SharedAcceptor>,
    pub timeouts: HttpTimeouts,
    pub per_address: Arc<AddressCounts>,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("tls", &self.tls.is_some())
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// Whether an accept error is the process or system running out of file
/// descriptors.
fn out_of_descriptors(error: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// Accepts until `stop` is cancelled; each connection runs on `tasks`.
pub async fn accept_loop(
    listener: TcpListener,
    serving: Serving,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let mut descriptor_warned: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                if let Some(io) = admit(tcp, peer, &serving) {
                    tasks.spawn(connection(io, serving.clone(), stop.clone()));
                }
            }
            Err(error) if out_of_descriptors(&error) => {
                serving.metrics.count_accept_error("descriptors");
                let now = tokio::time::Instant::now();
                if descriptor_warned.is_none_or(|at| now - at > Duration::from_secs(10)) {
                    descriptor_warned = Some(now);
                    tracing::warn!(%error, "out of file descriptors: accepting paused until some free up");
                }
                tokio::select! {
                    () = tokio::time::sleep(DESCRIPTOR_PAUSE) => {}
                    () = stop.cancelled() => return,
                }
            }
            Err(error) => {
                // Connections reset before they were accepted and the like.
                serving.metrics.count_accept_error("other");
                tracing::debug!(%error, "accept failed");
            }
        }
    }
}

/// The connection's I/O, unless its address holds all it may.
fn admit(tcp: TcpStream, peer: SocketAddr, serving: &Serving) -> Option<ClientIo> {
    let key = ClientKey::of(peer.ip());
    let Some(slot) = serving.per_address.acquire(key) else {
        serving.metrics.count_connection_refused("per_address");
        tracing::debug!(client = %key, "connection refused: too many from this address");
        // Reset: no TIME_WAIT left behind for a flood.
        let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
        return None;
    };
    // Small writes (events, acks) go out at once.
    let _ = tcp.set_nodelay(true);
    serving.metrics.connections.inc();
    let open = Open(serving.metrics.connections.clone());
    Some(ClientIo::new(tcp, peer, serving.tls.is_none(), slot, open))
}

async fn connection(io: ClientIo, serving: Serving, stop: CancellationToken) {
    let handle = io.handle();
    let Serving {
        app,
        tls,
        timeouts,
        metrics,
        ..
    } = serving;
    match tls {
        None => http::serve(io, handle, app, timeouts, metrics, stop).await,
        Some(acceptor) => {
            let acceptor = acceptor.read().clone();
            // The handshake is part of the first request's head.
            let handshake = tokio::select! {
                handshake = tokio::time::timeout(timeouts.header, acceptor.accept(io)) => handshake,
                () = stop.cancelled() => return,
            };
            match handshake {
                Ok(Ok(tls)) => http::serve(tls, handle, app, timeouts, metrics, stop).await,
                Ok(Err(error)) => {
                    tracing::debug!(peer = %handle.peer(), %error, "TLS handshake failed");
                }
                Err(_) => {
                    metrics.count_http_timeout("header");
                    tracing::debug!(peer = %handle.peer(), "TLS handshake timed out");
                }
            }
        }
    }
}
