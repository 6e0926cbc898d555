//! How the client trusts a server on `https://` and `wss://`: rustls with
//! the ring provider (as the server), the platform's roots by default,
//! extra roots for a private CA or a self-signed deployment, or the
//! server's certificate pinned by its SHA-256.

use std::{fmt, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use sha2::{Digest, Sha256};

use crate::error::{ClientError, Result};

/// Which server certificates the client accepts.
///
/// By default, any certificate for the server's name that chains to one of
/// the platform's trusted roots (the system's certificate store). For a
/// deployment with its own CA, or a self-signed certificate, add its
/// certificate as a root ([`TlsConfig::with_root_pem`]), and, if the
/// platform's roots should not count, drop them
/// ([`TlsConfig::without_platform_roots`]). Pinning
/// ([`TlsConfig::with_pinned_sha256`]) accepts exactly the certificates
/// whose SHA-256 is pinned, whoever issued them and whatever name they
/// carry; the handshake's signature is still verified, so only the holder
/// of the pinned certificate's key gets through.
///
/// ```
/// use lanrage_client::TlsConfig;
///
/// let pin = [0x5a; 32]; // the SHA-256 of the server's DER certificate
/// let tls = TlsConfig::default().with_pinned_sha256(pin);
/// assert_eq!(tls.pins().len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct TlsConfig {
    no_platform_roots: bool,
    roots: Vec<CertificateDer<'static>>,
    pins: Vec<[u8; 32]>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("platform_roots", &!self.no_platform_roots)
            .field("extra_roots", &self.roots.len())
            .field(
                "pins",
                &self.pins.iter().map(|p| hex(p)).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl TlsConfig {
    /// Trusts the certificates of a PEM bundle (one or more
    /// `-----BEGIN CERTIFICATE-----` blocks) as roots, beside the
    /// platform's. Fails if the bundle holds no certificate.
    pub fn with_root_pem(mut self, pem: &[u8]) -> Result<Self> {
        let certificates = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Config(format!("cannot read the PEM roots: {e}")))?;
        if certificates.is_empty() {
            return Err(ClientError::Config(
                "the PEM roots hold no certificate".into(),
            ));
        }
        self.roots.extend(certificates);
        Ok(self)
    }

    /// Trusts a DER certificate as a root, beside the platform's.
    pub fn with_root_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.roots.push(CertificateDer::from(der.into()));
        self
    }

    /// Trusts only the roots added here, not the platform's.
    pub fn without_platform_roots(mut self) -> Self {
        self.no_platform_roots = true;
        self
    }

    /// Accepts a server certificate whose DER encoding has this SHA-256
    /// (several pins may be given, for a certificate rollover). Once a pin
    /// is set, roots no longer matter.
    pub fn with_pinned_sha256(mut self, fingerprint: [u8; 32]) -> Self {
        self.pins.push(fingerprint);
        self
    }

    /// [`TlsConfig::with_pinned_sha256`] from hex, as `openssl x509
    /// -fingerprint -sha256` prints it (colons and case do not matter).
    pub fn with_pinned_sha256_hex(self, fingerprint: &str) -> Result<Self> {
        let digits: String = fingerprint.chars().filter(|c| *c != ':').collect();
        let bad = || ClientError::Config(format!("{fingerprint:?} is not a SHA-256 in hex"));
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut pin = [0u8; 32];
        for (byte, pair) in pin.iter_mut().zip(digits.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(self.with_pinned_sha256(pin))
    }

    /// The pinned fingerprints.
    pub fn pins(&self) -> &[[u8; 32]] {
        &self.pins
    }

    /// The rustls configuration this describes, for HTTP and the socket
    /// alike (each sets its own ALPN).
    pub(crate) fn client_config(&self) -> Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("cannot set up TLS: {e}")))?;
        let config = if self.pins.is_empty() {
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(self.root_store()?), provider)
                    .build()
                    .map_err(|e| ClientError::Config(format!("cannot set up TLS: {e}")))?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    pins: self.pins.clone(),
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth()
        };
        Ok(config)
    }

    /// The rustls configuration of a client whose server is plain HTTP:
    /// it trusts no certificate at all, so nothing (a redirect, say) ever
    /// goes over TLS unverified, and it needs no roots.
    pub(crate) fn refusing_config() -> Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pins: Vec::new(),
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth())
    }

    fn root_store(&self) -> Result<RootCertStore> {
        let mut store = RootCertStore::empty();
        for root in &self.roots {
            store
                .add(root.clone())
                .map_err(|e| ClientError::Config(format!("unusable root certificate: {e}")))?;
        }
        if !self.no_platform_roots {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!(%error, "a platform root could not be loaded");
            }
            // A broken entry in the platform's store costs that root only.
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, "platform roots loaded");
        }
        if store.is_empty() {
            return Err(ClientError::Config(
                "no trusted root certificate: the platform has none, and none was added".into(),
            ));
        }
        Ok(store)
    }
}

/// Accepts the certificates whose SHA-256 is pinned, and verifies the
/// handshake's signature with the provider's algorithms, so presenting a
/// copy of the certificate without its key does not pass.
#[derive(Debug)]
struct PinnedVerifier {
    pins: Vec<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let fingerprint: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if self.pins.contains(&fingerprint) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate (SHA-256 {}) is not the pinned one",
                hex(&fingerprint)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_reads_from_hex_with_or_without_colons() {
        let colons = "5A:".repeat(31) + "5A";
        let plain = "5a".repeat(32);
        for text in [colons.as_str(), plain.as_str()] {
            let tls = TlsConfig::default()
                .with_pinned_sha256_hex(text)
                .expect("valid hex");
            assert_eq!(tls.pins(), [[0x5a; 32]]);
        }
        for bad in ["", "5a", &"zz".repeat(32), &"5a".repeat(33)] {
            assert!(
                TlsConfig::default().with_pinned_sha256_hex(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_pem_without_certificates_is_refused() {
        assert!(TlsConfig::default().with_root_pem(b"not a pem").is_err());
    }

    #[test]
    fn without_any_root_there_is_nothing_to_trust() {
        let error = TlsConfig::default()
            .without_platform_roots()
            .client_config()
            .expect_err("no roots");
        assert!(matches!(error, ClientError::Config(_)), "{error}");
    }
}
