//! Starting and stopping the server.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    app::AppState,
    config::{Config, ConfigError},
    events::EventBus,
    metrics::Metrics,
    net::{
        HttpTimeouts,
        counts::AddressCounts,
        listener::{Serving, accept_loop},
    },
    service::{Service, Writer},
    store::{self, EventFeed, PgSettings, StoreError},
    tls::TlsFiles,
    ws::hub::{CloseReason, Hub},
};

/// How long in-flight requests get to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sockets get to receive their close frame.
const SOCKET_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database")]
    Store(#[from] StoreError),
    #[error("cannot use the TLS certificate")]
    Tls(#[from] crate::tls::TlsError),
    #[error("invalid settings")]
    Settings(#[from] ConfigError),
    #[error("cannot prepare the stored state")]
    Prepare(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot listen on {address}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// A server with its database open and its listener bound.
pub struct Server {
    listener: TcpListener,
    /// `--metrics-listen`: /metrics served there instead of on `listener`.
    metrics_listener: Option<TcpListener>,
    /// `--tls-cert`/`--tls-key`: the files and their configuration now.
    tls: Option<(TlsFiles, Arc<rustls::ServerConfig>)>,
    service: Service,
    /// The service's group-commit writer (SQLite), run by [`Server::run`].
    writer: Option<Writer>,
    /// The store's feed of every instance's events (PostgreSQL), run by
    /// [`Server::run`].
    feed: Option<EventFeed>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("metrics_listener", &self.metrics_listener)
            .field("tls", &self.tls.as_ref().map(|(files, _)| files))
            .field("service", &self.service)
            .field("writer", &self.writer)
            .field("feed", &self.feed.is_some())
            .finish()
    }
}

impl Server {
    /// Checks the settings ([`Config::validate`]), opens the database
    /// named by them and binds the listen address.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        // A `Config` built in code has met no parser: nothing below may
        // see a value it cannot run with.
        config.validate()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                let loaded = files.load()?;
                Some((files, loaded))
            }
            _ => None,
        };
        let pg = PgSettings {
            pool_size: config.database_pool_size,
        };
        let store = store::connect(&config.database_url(), pg, config.sqlite_synchronous).await?;
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    address: config.listen.clone(),
                    source,
                })?;
        let metrics_listener = match &config.metrics_listen {
            Some(address) => {
                Some(
                    TcpListener::bind(address)
                        .await
                        .map_err(|source| StartError::Listen {
                            address: address.clone(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let events = EventBus::default();
        let feed = store.deliver_events(events.clone()).await?;
        let (service, writer) = Service::new(
            store,
            Arc::new(config),
            events,
            feed.is_some(),
            Arc::new(Metrics::default()),
        );
        service
            .forgive_downtime()
            .await
            .map_err(|e| StartError::Prepare(Box::new(e)))?;
        Ok(Self {
            listener,
            metrics_listener,
            tls,
            service,
            writer,
            feed,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served when `--metrics-listen` is set.
    pub fn metrics_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.metrics_listener.as_ref().map(TcpListener::local_addr)
    }

    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Serves until `shutdown` completes, then lets in-flight requests
    /// finish (for a few seconds at most), closes every socket and stops
    /// every task the server started.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = CancellationToken::new();
        let stopped = || stop.clone().cancelled_owned();
        let tasks = TaskTracker::new();
        // The writer stops last, once nothing is left to write: requests
        // still draining and a cleanup pass still running get their
        // changes committed. It stops however `run` ends.
        let writes_stop = CancellationToken::new();
        let _writes_stop_on_exit = writes_stop.clone().drop_guard();
        let writer = self
            .writer
            .map(|writer| writer.spawn(writes_stop.clone().cancelled_owned()));
        let cleanup = tokio::spawn(self.service.clone().run_cleanup(stopped()));
        let presence = tokio::spawn(self.service.clone().run_presence(stopped()));
        let relay_choice = tokio::spawn(self.service.clone().run_relay_choice(stopped()));
        let path_plans = tokio::spawn(self.service.clone().run_path_plans(stopped()));
        let flush_every = self.service.config().heartbeat_flush();
        let flusher = tokio::spawn(
            self.service
                .clone()
                .run_heartbeat_flusher(flush_every, stopped()),
        );
        let hub = Arc::new(Hub::new(self.service.metrics().clone()));
        let dispatcher = tokio::spawn(hub.clone().run(self.service.clone()));
        let feed = self.feed.map(tokio::spawn);
        let state = AppState {
            service: self.service.clone(),
            hub: hub.clone(),
        };
        let config = self.service.config();
        let metrics = self.service.metrics().clone();
        let timeouts = HttpTimeouts {
            header: Duration::from_secs(config.http_header_timeout_secs),
            body: Duration::from_secs(config.http_body_timeout_secs),
            idle: Duration::from_secs(config.http_idle_timeout_secs),
        };
        if let Some(listener) = self.metrics_listener {
            let serving = Serving {
                app: crate::app::metrics_router(state.clone()),
                tls: None,
                timeouts,
                per_address: AddressCounts::new(config.max_connections_per_ip),
                metrics: metrics.clone(),
            };
            tasks.spawn(accept_loop(listener, serving, stop.clone(), tasks.clone()));
        }
        let tls = self.tls.map(|(files, first)| {
            let acceptor = Arc::new(parking_lot::RwLock::new(TlsAcceptor::from(first)));
            tasks.spawn(crate::tls::reload(files, acceptor.clone(), stop.clone()));
            acceptor
        });
        let serving = Serving {
            app: crate::app::router(state).map_err(std::io::Error::other)?,
            tls,
            timeouts,
            per_address: AddressCounts::new(config.max_connections_per_ip),
            metrics,
        };
        tasks.spawn(accept_loop(
            self.listener,
            serving,
            stop.clone(),
            tasks.clone(),
        ));
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests, closing sockets");
        stop.cancel();
        hub.close_all(CloseReason::ShuttingDown);
        tasks.close();
        // Each connection ends by itself within the drain time; the margin
        // covers the last responses' writes.
        if tokio::time::timeout(DRAIN_TIMEOUT * 2, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
        // Sockets that authenticated while the listener drained get closed too.
        hub.close_all(CloseReason::ShuttingDown);
        hub.drained(SOCKET_CLOSE_TIMEOUT).await;
        // Nothing is left to tell: the feed and the dispatcher stop, and
        // are waited for, so no task of this server outlives it.
        for task in feed.into_iter().chain([dispatcher]) {
            task.abort();
            let _ = task.await;
        }
        let _ = cleanup.await;
        let _ = presence.await;
        let _ = relay_choice.await;
        let _ = path_plans.await;
        let _ = flusher.await;
        writes_stop.cancel();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        if tokio::time::timeout(SOCKET_CLOSE_TIMEOUT, self.service.store().close())
            .await
            .is_err()
        {
            tracing::warn!("database connections still busy at exit");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each config that used to panic once the server ran is refused by
    /// `start`, before it opens or binds anything.
    #[tokio::test]
    async fn start_refuses_unusable_settings_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        for (why, mut config, flags) in crate::config::tests::unusable() {
            config.listen = "127.0.0.1:0".into();
            config.database_url = Some(format!(
                "sqlite://{}",
                dir.path().join("control.db").display()
            ));
            match Server::start(config).await {
                Err(StartError::Settings(error)) => {
                    let named: Vec<_> = error.settings().iter().map(|s| s.flag()).collect();
                    assert_eq!(named, flags, "{why}");
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        assert!(
            !dir.path().join("control.db").exists(),
            "settings are checked before the database is opened"
        );
    }
}
