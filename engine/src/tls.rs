//! TLS for the engine's one port (`https` and `wss`): the certificate chain and key from
//! PEM files, one rustls `ServerConfig` for every worker, and reload without dropping
//! connections.
//!
//! Contract:
//! - [`TlsSetup::load`] reads and checks both files (a certificate present, a key that
//!   rustls can use and that matches the certificate). At start-up an error stops the
//!   engine with the file and the problem named.
//! - The `ServerConfig` is built once; it picks its certificate through a resolver that
//!   reads the current [`CertifiedKey`] behind an `RwLock`, once per handshake (never on
//!   the data path, and the lock is held for an `Arc` clone only).
//! - [`TlsSetup::reload`] reads the files again and swaps the key in only when both parse
//!   and match: new handshakes then present the new certificate, connections already open
//!   go on with the keys agreed at their own handshake. A failed reload changes nothing
//!   and returns the error for the caller to log.
//! - Loading allocates and reads files (blocking); the binary calls `reload` from its
//!   signal loop, never from a worker.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use thiserror::Error;

/// Why a certificate or key could not be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The PEM file could not be read or holds no valid PEM of the expected kind.
    #[error("{path}: {what}: {source} (give a PEM file, e.g. --tls-cert fullchain.pem --tls-key privkey.pem)")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
        /// The parser's error.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no CERTIFICATE block found (the file for --tls-cert holds the certificate chain, leaf first)")]
    NoCertificate(PathBuf),
    /// rustls refused the key, or the key does not match the certificate.
    #[error("{key}: cannot use this key with {cert}: {source}")]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' error (unsupported key type, key mismatch).
        source: rustls::Error,
    },
    /// rustls refused the protocol versions (cannot happen with the ring provider).
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
}

/// Reads a certificate chain and its key from PEM files and checks that they match.
pub fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            path: cert.to_owned(),
            what: "reading certificates",
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
        path: key.to_owned(),
        what: "reading the private key (PKCS#8, PKCS#1 or SEC1)",
        source,
    })?;
    CertifiedKey::from_der(chain, private, provider).map_err(|source| TlsError::Key {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// The certificate new handshakes get; swapped by [`TlsSetup::reload`].
struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    fn get(&self) -> Arc<CertifiedKey> {
        // A writer that panicked left a whole `Arc` behind: still a valid key.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, key: CertifiedKey) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(key);
    }
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadableCert")
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The engine's TLS: the files, the shared `ServerConfig` and its reloadable certificate.
pub struct TlsSetup {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    cert: Arc<ReloadableCert>,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSetup")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl TlsSetup {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key) and builds the
    /// server configuration: TLS 1.2 and 1.3 with rustls' safe defaults (ring), ALPN
    /// `http/1.1`, no client certificates.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsSetup, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = load_certified_key(cert, key, &provider)?;
        let resolver = Arc::new(ReloadableCert {
            current: RwLock::new(Arc::new(first)),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // One protocol on this port; saying so lets a client that offers h2 settle at once.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsSetup {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            provider,
            cert: resolver,
            config: Arc::new(config),
        })
    }

    /// Reads and checks the files without installing what they hold: a caller that must
    /// not block on them (the binary's SIGHUP, which reads on a thread of its own with a
    /// timeout) installs the result with [`TlsSetup::install`].
    pub fn read_files(&self) -> Result<CertifiedKey, TlsError> {
        load_certified_key(&self.cert_path, &self.key_path, &self.provider)
    }

    /// Makes `key` (from [`TlsSetup::read_files`]) the certificate new handshakes get.
    pub fn install(&self, key: CertifiedKey) {
        self.cert.set(key);
    }

    /// Reads the files again; on success new handshakes use the new certificate. On error
    /// the certificate in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        self.cert.set(key);
        Ok(())
    }

    /// The configuration every worker's acceptor uses.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The leaf certificate in force (DER), for logs and tests.
    pub fn current_leaf(&self) -> Option<CertificateDer<'static>> {
        self.cert.get().cert.first().cloned()
    }
}
