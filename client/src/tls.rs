//! TLS material and QUIC client configuration.
//!
//! Every connection is TLS 1.3 with mutual authentication against the
//! cluster's CA, on the `ring` crypto provider only (see docs/architecture.md:
//! mixing providers makes rustls panic at run time).
//!
//! ```no_run
//! use kvorum_client::tls::{client_quic_config, TlsMaterial};
//! let tls = TlsMaterial::from_files("certs/ca.pem", "certs/client.pem", "certs/client.key")?;
//! let quic = client_quic_config(&tls)?; // TLS 1.3, ALPN kvorum-client/1, ring
//! # let _ = quic;
//! # Ok::<(), kvorum_client::TlsError>(())
//! ```

use crate::proto::ALPN_CLIENT;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::{path::Path, sync::Arc, time::Duration};

/// Why TLS material could not be loaded or used.
///
/// ```
/// use kvorum_client::{TlsError, TlsMaterial};
/// let err = TlsMaterial::from_pem("", "", "").unwrap_err();
/// assert!(matches!(&err, TlsError::NoCertificate(what) if what == "CA PEM"));
/// assert_eq!(err.to_string(), "no certificate found in CA PEM");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// A PEM input held no certificate.
    #[error("no certificate found in {0}")]
    NoCertificate(String),
    /// A PEM input held no private key.
    #[error("no private key found in {0}")]
    NoPrivateKey(String),
    /// A PEM input could not be parsed.
    #[error("invalid PEM in {what}: {reason}")]
    Pem {
        /// Which input.
        what: String,
        /// What the parser said.
        reason: String,
    },
    /// rustls refused the material (e.g. a key that does not match the certificate).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA certificate could not be used as a trust anchor.
    #[error("CA certificate rejected: {0}")]
    Ca(String),
}

/// The PEM material a party needs: the cluster CA, its own certificate chain
/// and its private key.
///
/// ```no_run
/// # fn main() -> Result<(), kvorum_client::TlsError> {
/// let tls = kvorum_client::TlsMaterial::from_files(
///     "kvorum-dev/certs/ca.pem",
///     "kvorum-dev/certs/client.pem",
///     "kvorum-dev/certs/client.key",
/// )?;
/// # let _ = tls; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsMaterial {
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_certs", &self.ca.len())
            .field("chain_certs", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Loads `DIR/ca.pem`, `DIR/NAME.pem` and `DIR/NAME.key`: the layout
    /// `kvorum cert` and `kvorum dev` write (`kvorum-dev/certs/client.pem`).
    ///
    /// ```no_run
    /// let tls = kvorum_client::TlsMaterial::from_dir("kvorum-dev/certs", "client")?;
    /// # Ok::<(), kvorum_client::TlsError>(())
    /// ```
    pub fn from_dir(dir: impl AsRef<Path>, name: &str) -> Result<Self, TlsError> {
        let dir = dir.as_ref();
        Self::from_files(
            dir.join("ca.pem"),
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }

    /// Loads the CA certificate, this party's certificate chain and its key
    /// from PEM files.
    ///
    /// ```no_run
    /// let tls = kvorum_client::TlsMaterial::from_files("ca.pem", "client.pem", "client.key");
    /// assert!(tls.is_ok());
    /// ```
    pub fn from_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TlsError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let (ca, cert, key) = (ca.as_ref(), cert.as_ref(), key.as_ref());
        Self::from_pem_named(
            (&read(ca)?, &ca.display().to_string()),
            (&read(cert)?, &cert.display().to_string()),
            (&read(key)?, &key.display().to_string()),
        )
    }

    /// Builds the material from PEM strings.
    ///
    /// ```
    /// // A self-signed certificate acts as its own CA here; a cluster has a real CA.
    /// let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
    /// let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    /// let tls = kvorum_client::TlsMaterial::from_pem(&cert, &cert, &key)?;
    /// assert_eq!((tls.ca_certs().len(), tls.chain().len()), (1, 1));
    /// # Ok::<(), kvorum_client::TlsError>(())
    /// ```
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Self::from_pem_named(
            (ca_pem, "CA PEM"),
            (cert_pem, "certificate PEM"),
            (key_pem, "key PEM"),
        )
    }

    fn from_pem_named(
        ca: (&str, &str),
        cert: (&str, &str),
        key: (&str, &str),
    ) -> Result<Self, TlsError> {
        let ca_certs = certs(ca.0, ca.1)?;
        let chain = certs(cert.0, cert.1)?;
        let key_der = rustls_pemfile::private_key(&mut key.0.as_bytes())
            .map_err(|e| TlsError::Pem {
                what: key.1.to_string(),
                reason: e.to_string(),
            })?
            .ok_or_else(|| TlsError::NoPrivateKey(key.1.to_string()))?;
        Ok(Self {
            ca: ca_certs,
            chain,
            key: Arc::new(key_der),
        })
    }

    /// The CA certificates (trust anchors).
    ///
    /// ```
    /// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
    /// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
    /// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
    /// assert_eq!(tls.ca_certs().len(), 1);
    /// # Ok::<(), kvorum_client::TlsError>(())
    /// ```
    pub fn ca_certs(&self) -> &[CertificateDer<'static>] {
        &self.ca
    }

    /// This party's certificate chain, leaf first.
    ///
    /// ```
    /// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
    /// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
    /// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
    /// assert_eq!(tls.chain().len(), 1); // just the leaf
    /// # Ok::<(), kvorum_client::TlsError>(())
    /// ```
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// This party's private key.
    ///
    /// ```
    /// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
    /// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
    /// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
    /// let key = tls.key(); // a fresh copy each call
    /// assert!(matches!(key, rustls::pki_types::PrivateKeyDer::Pkcs8(_)));
    /// # Ok::<(), kvorum_client::TlsError>(())
    /// ```
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The CA certificates as a rustls root store.
    ///
    /// ```
    /// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
    /// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
    /// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
    /// let roots = tls.root_store()?;
    /// assert_eq!(roots.len(), 1);
    /// # Ok::<(), kvorum_client::TlsError>(())
    /// ```
    pub fn root_store(&self) -> Result<rustls::RootCertStore, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in &self.ca {
            roots
                .add(c.clone())
                .map_err(|e| TlsError::Ca(e.to_string()))?;
        }
        Ok(roots)
    }
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what.to_string()));
    }
    Ok(certs)
}

/// The one crypto provider of the process (`ring`).
///
/// ```
/// // Build any other rustls configuration on this provider, never on another one.
/// let provider = kvorum_client::tls::crypto_provider();
/// let builder = rustls::ClientConfig::builder_with_provider(provider)
///     .with_protocol_versions(&[&rustls::version::TLS13]);
/// assert!(builder.is_ok());
/// ```
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// QUIC transport settings shared by clients and nodes: many concurrent
/// streams (one per request), keep-alives so idle connections to live peers
/// stay open, and an idle timeout so a dead peer's connection is dropped.
///
/// ```
/// use kvorum_client::tls::{client_quic_config, transport_config};
/// use std::{sync::Arc, time::Duration};
/// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
/// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
/// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
/// let mut quic = client_quic_config(&tls)?;
/// // Drop connections to silent nodes after 30 s instead of 10 s.
/// quic.transport_config(Arc::new(transport_config(Duration::from_secs(30))));
/// # Ok::<(), kvorum_client::TlsError>(())
/// ```
pub fn transport_config(idle_timeout: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(1024u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.keep_alive_interval(Some(idle_timeout / 3));
    // A Duration of a few seconds always fits QUIC's varint milliseconds.
    if let Ok(idle) = quinn::IdleTimeout::try_from(idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

/// A quinn client configuration that authenticates with `tls`, verifies the
/// node against the cluster CA and the node name, and offers `alpn`.
///
/// ```
/// use kvorum_client::{proto::ALPN_CLIENT, tls::quic_client_config};
/// use std::time::Duration;
/// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
/// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
/// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
/// let quic = quic_client_config(&tls, ALPN_CLIENT, Duration::from_secs(5))?;
/// # let _ = quic;
/// # Ok::<(), kvorum_client::TlsError>(())
/// ```
pub fn quic_client_config(
    tls: &TlsMaterial,
    alpn: &[u8],
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(tls.root_store()?)
        .with_client_auth_cert(tls.chain.clone(), tls.key())?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(transport_config(idle_timeout)));
    Ok(client)
}

/// The client configuration of application clients (ALPN [`ALPN_CLIENT`]).
///
/// ```
/// use kvorum_client::tls::client_quic_config;
/// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
/// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
/// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
/// // What `Client` uses; hand it to your own `quinn::Endpoint` if you need one.
/// let quic = client_quic_config(&tls)?;
/// # let _ = quic;
/// # Ok::<(), kvorum_client::TlsError>(())
/// ```
pub fn client_quic_config(tls: &TlsMaterial) -> Result<quinn::ClientConfig, TlsError> {
    quic_client_config(tls, ALPN_CLIENT, Duration::from_secs(10))
}
