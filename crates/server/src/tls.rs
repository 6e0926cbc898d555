//! Built-in TLS (rustls with the ring provider): HTTPS and WSS on the
//! listen address, from PEM files, reloaded on SIGHUP or when the files
//! change, so a renewed certificate is picked up without a restart.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::telemetry::error_chain;

/// How often the certificate files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Why the certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the certificate and key do not make a TLS configuration")]
    Config(#[from] rustls::Error),
}

/// The certificate and key files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// A server configuration from the files, as they are now.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|source| TlsError::Read {
                path: self.cert.clone(),
                source,
            })?
            .collect::<Result<_, _>>()
            .map_err(|source| TlsError::Read {
                path: self.cert.clone(),
                source,
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate(self.cert.clone()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|source| TlsError::Read {
            path: self.key.clone(),
            source,
        })?;
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn modified(&self) -> Option<(SystemTime, SystemTime)> {
        let time = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Some((time(&self.cert)?, time(&self.key)?))
    }
}

/// The acceptor in use, replaced whole when the certificate is reloaded.
pub type SharedAcceptor = Arc<parking_lot::RwLock<TlsAcceptor>>;

/// Reloads the configuration on SIGHUP and when the files change; a file
/// that does not load keeps the previous configuration (and says so).
/// Ends when `stop` is cancelled.
pub async fn reload(files: TlsFiles, acceptor: SharedAcceptor, stop: CancellationToken) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = files.modified();
    let mut ticker = tokio::time::interval(WATCH_EVERY);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match &mut hangup {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            () = stop.cancelled() => return,
            _ = signalled => "SIGHUP",
            _ = ticker.tick() => {
                let now = files.modified();
                if now == seen {
                    continue;
                }
                seen = now;
                "the certificate files changed"
            }
        };
        match files.load() {
            Ok(config) => {
                *acceptor.write() = TlsAcceptor::from(config);
                tracing::info!(reason = why, "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::warn!(reason = why, error = %error_chain(&error), "TLS certificate not reloaded; keeping the previous one");
            }
        }
    }
}
