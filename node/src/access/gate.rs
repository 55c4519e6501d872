//! What the serving loop asks of every connection: is its certificate
//! revoked? It also keeps when node certificates expire (the node's own,
//! and each peer's that connected), for `admin status` and the metric.

use super::list::Access;
use crate::net::identity::{Caller, Role};
use crate::util::lock::ReadExt;
use crate::util::LockExt;
use kvorum_client::CertificateStatus;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

/// The node's gate (cheap to clone).
#[derive(Clone)]
pub struct Gatekeeper {
    access: Access,
    own: Arc<RwLock<CertificateStatus>>,
    peers: Arc<Mutex<BTreeMap<String, CertificateStatus>>>,
}

impl Gatekeeper {
    /// A gate over `access`, for a node whose certificate is `own`.
    pub fn new(access: Access, own: CertificateStatus) -> Self {
        Self {
            access,
            own: Arc::new(RwLock::new(own)),
            peers: Default::default(),
        }
    }

    /// Replaces the node's own certificate (after a reload).
    pub fn set_own(&self, own: CertificateStatus) {
        *self.own.locked() = own;
    }

    /// The node's own certificate.
    pub fn own(&self) -> CertificateStatus {
        self.own.read_locked().clone()
    }

    /// The node's own certificate, then each peer's as last seen.
    pub fn certificates(&self) -> Vec<CertificateStatus> {
        let own = self.own();
        let mut out = vec![own.clone()];
        out.extend(
            self.peers
                .locked()
                .values()
                .filter(|c| c.node != own.node)
                .cloned(),
        );
        out
    }
}

impl crate::net::Gate for Gatekeeper {
    fn admits(&self, caller: &Caller) -> bool {
        if self.access.is_revoked(caller) {
            return false;
        }
        if caller.role == Role::Node {
            if let Some(name) = &caller.name {
                self.peers.locked().insert(
                    name.clone(),
                    CertificateStatus {
                        node: name.clone(),
                        serial: caller.serial.clone(),
                        not_after: caller.not_after,
                    },
                );
            }
        }
        true
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.access.revocations()
    }
}
