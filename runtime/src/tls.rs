//! Viewer TLS: the certificate the HTTPS listener presents, how it is loaded from PEM files, and
//! how it is swapped on a running node.
//!
//! The certificate and key are loaded while the config is validated (`[server] tls_cert` and
//! `tls_key`), so a pair that does not load is a config error naming the key and the file, at
//! start and on SIGHUP alike; a reload that fails keeps the running config and its certificate.
//! A reload that succeeds stores the new pair in the [`CertResolver`], which every handshake
//! reads: connections already open keep the session they negotiated, new ones get the new
//! certificate, and nothing is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A viewer that has not completed the TLS handshake by then is disconnected, so a silent TCP
/// connection does not hold a task and a socket forever. Ten seconds covers a handshake over
/// a slow mobile link several times over.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN protocols offered to viewers, in order of preference (RFC 7301): HTTP/2 first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate or key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("cannot load certificate chain from {}: {reason}", path.display())]
    Cert {
        /// The certificate file.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
    /// The key file could not be read, holds no PEM private key, or the key does not match.
    #[error("cannot load private key from {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
}

/// The crypto provider for viewer TLS: ring, as the rest of the node uses (no C build).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1),
/// and checks that the key belongs to the leaf certificate.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let cert_error = |reason: String| CertError::Cert {
        path: cert.to_owned(),
        reason,
    };
    let key_error = |reason: String| CertError::Key {
        path: key.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(pem_reason(&e)))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in the file".to_owned()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| key_error(pem_reason(&e)))?;
    CertifiedKey::from_der(chain, private_key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => key_error(format!(
            "the key does not match the certificate in {}",
            cert.display()
        )),
        other => key_error(other.to_string()),
    })
}

fn pem_reason(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as Pem;
    match error {
        Pem::Io(io) => io.to_string(),
        Pem::NoItemsFound => "no PEM item of the expected kind in the file".to_owned(),
        other => format!("not valid PEM: {other}"),
    }
}

/// The certificate viewers are shown, swappable while connections use the previous one.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver presenting `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        CertResolver {
            current: ArcSwap::new(key),
        }
    }

    /// Presents `key` from the next handshake on.
    pub fn rotate(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }

    /// The certificate presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertResolver {
    // One certificate for every name: SNI is not used to pick one (a node serves one site's
    // names, covered by one certificate's SANs).
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server config for the viewer listener: TLS 1.3 and 1.2, ALPN `h2` then
/// `http/1.1`, certificates from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    #[test]
    fn loads_a_pair_and_refuses_mismatches_and_garbage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = pair(dir.path(), "a.test");
        let (_, other_key) = pair(dir.path(), "b.test");
        assert!(load_certified_key(&cert, &key).is_ok());

        let e = load_certified_key(&cert, &other_key)
            .expect_err("mismatch")
            .to_string();
        assert!(
            e.contains("does not match") && e.contains("b.test-key.pem"),
            "{e}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").expect("write");
        let e = load_certified_key(&garbage, &key)
            .expect_err("garbage")
            .to_string();
        assert!(
            e.contains("certificate") && e.contains("garbage.pem"),
            "{e}"
        );
        let e = load_certified_key(&cert, &garbage)
            .expect_err("garbage key")
            .to_string();
        assert!(
            e.contains("private key") && e.contains("garbage.pem"),
            "{e}"
        );

        let missing = dir.path().join("missing.pem");
        let e = load_certified_key(&missing, &key)
            .expect_err("missing")
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
