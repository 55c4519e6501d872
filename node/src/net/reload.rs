//! Certificate reloads: read the node's certificate, key and CA bundle
//! again and serve new connections with them, without a restart (SIGHUP,
//! or `kvorum admin reload-certs`). Open connections keep what they were
//! authenticated with.

use super::identity::{self, Caller, Role};
use super::{server_config, IDLE_TIMEOUT};
use crate::config::TlsPaths;
use kvorum_client::proto::ALPN_PEER;
use kvorum_client::tls::{quic_client_config, TlsError, TlsMaterial};

/// Why a reload was refused; the node keeps what it had.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files are missing or unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The certificate is not this node's.
    #[error("the new certificate is not node {expected}'s: {found}")]
    NotThisNode {
        /// The node's id.
        expected: String,
        /// What the certificate is.
        found: String,
    },
}

/// Reloads one node's TLS material into its endpoint.
pub struct Reloader {
    paths: TlsPaths,
    node: String,
    endpoint: quinn::Endpoint,
    /// Takes the configuration peers are dialled with.
    dial_with: Box<dyn Fn(quinn::ClientConfig) + Send + Sync>,
    on_reload: Box<dyn Fn(&Caller) + Send + Sync>,
}

impl Reloader {
    /// A reloader of node `node`'s files `paths` into `endpoint` (new
    /// incoming connections) and `dial_with` (new outgoing ones);
    /// `on_reload` learns the certificate it now serves with.
    pub fn new(
        paths: TlsPaths,
        node: String,
        endpoint: quinn::Endpoint,
        dial_with: Box<dyn Fn(quinn::ClientConfig) + Send + Sync>,
        on_reload: Box<dyn Fn(&Caller) + Send + Sync>,
    ) -> Self {
        Self {
            paths,
            node,
            endpoint,
            dial_with,
            on_reload,
        }
    }

    /// Reads the files again; if they hold a valid node certificate of this
    /// node, new connections (in and out) use them.
    pub fn reload(&self) -> Result<Caller, ReloadError> {
        let tls = TlsMaterial::from_files(&self.paths.ca, &self.paths.cert, &self.paths.key)?;
        let own = own_certificate(&tls, &self.node)?;
        let server = server_config(&tls)?;
        let client = quic_client_config(&tls, ALPN_PEER, IDLE_TIMEOUT)?;
        self.endpoint.set_server_config(Some(server));
        (self.dial_with)(client);
        (self.on_reload)(&own);
        tracing::info!(serial = %own.serial, not_after = own.not_after, "certificates reloaded");
        Ok(own)
    }
}

/// The identity of a node's own certificate, if it is node `node`'s.
pub fn own_certificate(tls: &TlsMaterial, node: &str) -> Result<Caller, ReloadError> {
    let leaf = tls
        .chain()
        .first()
        .ok_or_else(|| ReloadError::NotThisNode {
            expected: node.to_string(),
            found: "an empty chain".into(),
        })?;
    let own = identity::of_certificate(leaf).map_err(|e| ReloadError::NotThisNode {
        expected: node.to_string(),
        found: e.to_string(),
    })?;
    if own.role != Role::Node || own.name.as_deref() != Some(node) {
        return Err(ReloadError::NotThisNode {
            expected: node.to_string(),
            found: format!("{} {}", own.role, own.name_or_dash()),
        });
    }
    Ok(own)
}

/// Where a node's [`Reloader`] is found once its endpoint is up: empty in a
/// node without certificates (the simulator's), which then refuses
/// `ReloadCertificates`.
pub type ReloaderSlot = std::sync::Arc<std::sync::OnceLock<std::sync::Arc<Reloader>>>;
