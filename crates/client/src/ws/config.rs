//! The settings of a [`WsClient`](super::WsClient).

use std::time::Duration;

use crate::backoff::Backoff;

/// Settings of a [`WsClient`](super::WsClient): the defaults, then the
/// `with_` methods (or the fields) for what differs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsConfig {
    /// Deadline to open the socket (TCP and upgrade).
    pub connect_timeout: Duration,
    /// Deadline for the server's `auth_ok`.
    pub auth_timeout: Duration,
    /// A socket on which nothing (not even a ping) arrives this long is
    /// considered dead and reconnected. The server pings every 20 s and
    /// itself drops a socket silent for 45 s, so this stays below that.
    pub idle_timeout: Duration,
    /// Spacing of reconnect attempts, and how many are made in a row before
    /// the client gives up (and the remote plane falls back to local).
    pub reconnect: Backoff,
    /// Events the application may leave unread before the client sheds
    /// some; see [`Events`](super::Events) for what happens then.
    pub event_buffer: usize,
}

impl Default for WsConfig {
    /// 10 s to connect and to authenticate, 30 s of silence tolerated, and
    /// 10 reconnect attempts from 0.5 s to 30 s apart (about 2.5 minutes).
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            reconnect: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(30),
                max_attempts: 10,
            },
            event_buffer: 256,
        }
    }
}

impl WsConfig {
    /// Deadline to open the socket (TCP, TLS and upgrade).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline for the server's `auth_ok`.
    pub fn with_auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// Silence after which the socket is considered dead.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Spacing and number of reconnect attempts.
    pub fn with_reconnect(mut self, reconnect: Backoff) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Events the application may leave unread before the client sheds.
    pub fn with_event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events;
        self
    }
}
