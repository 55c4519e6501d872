//! The admin requests about access: grants, revocations, the list, and
//! certificate reloads. A change is made on the answering node, then sent
//! to every other member at once; gossip carries it to any that missed it.

use super::list::{Access, AccessError, Entries};
use crate::cluster::fanout::ask_every_other;
use crate::cluster::membership::Membership;
use crate::net::reload::ReloaderSlot;
use crate::rpc::peer::{ClusterRequest, ClusterResponse, PeerError};
use crate::rpc::transport::Transport;
use kvorum_client::proto::{ErrorReply, Request, Response};
use kvorum_client::CertificateStatus;
use std::sync::Arc;
use std::time::Duration;

/// What the access requests work with.
pub struct AccessAdmin {
    /// The node's access list.
    pub access: Access,
    /// The members a change is sent to.
    pub membership: Arc<Membership>,
    /// How they are reached.
    pub transport: Arc<dyn Transport>,
    /// How long each may take to answer.
    pub timeout: Duration,
    /// Reloads this node's certificates (if it has any).
    pub reloader: ReloaderSlot,
}

impl AccessAdmin {
    /// Serves `Grant`, `Revoke`, `Access` and `ReloadCertificates`.
    pub async fn handle(&self, req: Request) -> Result<Response, ErrorReply> {
        let invalid = |e: AccessError| match e {
            AccessError::Invalid(why) => ErrorReply::BadRequest(why),
            AccessError::Storage(e) => ErrorReply::Internal(e.to_string()),
        };
        match req {
            Request::Grant(g) => {
                self.access.grant(g).await.map_err(invalid)?;
                self.push().await?;
            }
            Request::Revoke(r) => {
                self.access.revoke(r).await.map_err(invalid)?;
                self.push().await?;
            }
            Request::Access => {}
            Request::ReloadCertificates => {
                let reloader = self.reloader.get().ok_or_else(|| {
                    ErrorReply::Refused("this node has no certificates to reload".into())
                })?;
                let own = reloader
                    .reload()
                    .map_err(|e| ErrorReply::Refused(e.to_string()))?;
                return Ok(Response::Reloaded(CertificateStatus {
                    node: own.name_or_dash().to_string(),
                    serial: own.serial,
                    not_after: own.not_after,
                }));
            }
            _ => return Err(ErrorReply::BadRequest("not an access request".into())),
        }
        Ok(Response::Access(self.access.view()))
    }

    /// Sends the whole list to every other member; fails (after storing
    /// the change here) if one did not confirm, naming it: gossip will
    /// still carry the change there.
    async fn push(&self) -> Result<(), ErrorReply> {
        let req = ClusterRequest::Access(self.access.entries());
        ask_every_other(&self.transport, &self.membership, req, self.timeout)
            .await
            .all_confirmed("the change", |r| matches!(r, ClusterResponse::AccessStored))
    }
}

/// Serves a member's push of the access list.
pub async fn store_pushed(access: &Access, entries: Entries) -> Result<ClusterResponse, PeerError> {
    access
        .merge(entries)
        .await
        .map_err(|e| PeerError::Storage(e.to_string()))?;
    Ok(ClusterResponse::AccessStored)
}
