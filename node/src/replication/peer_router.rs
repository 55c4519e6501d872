//! The peer-request router: each subsystem's message goes to the service
//! that serves it, and internal errors become the wire's [`PeerError`].

use super::coordinator::Coordinator;
use super::replica::Replica;
use crate::cluster::admin::define_bucket;
use crate::cluster::gossip;
use crate::cluster::gossip::Spread;
use crate::cluster::member::MemberState;
use crate::cluster::membership::Membership;
use crate::net::identity::Caller;
use crate::repair::exchange::AntiEntropy;
use crate::repair::hints::Hints;
use crate::repair::transfer::Transfers;
use crate::rpc::batch;
use crate::rpc::peer::{
    ClusterRequest, ClusterResponse, PeerError, PeerRequest, PeerResponse, ReapRequest,
    ReapResponse, ReplicaRequest, ReplicaResponse, TransferRequest,
};
use kvorum_client::proto::ErrorReply;
use kvorum_client::proto::Response;
use kvorum_ring::NodeId;
use std::sync::Arc;

/// Serves the peer requests this node receives.
pub struct PeerRouter {
    me: NodeId,
    s: RouterServices,
    /// The node's client frame bound (a batch's answer is sized from it).
    max_frame_bytes: usize,
}

/// What the router hands requests to.
pub struct RouterServices {
    /// Coordinates forwarded client writes.
    pub coordinator: Arc<Coordinator>,
    /// The local replica.
    pub replica: Replica,
    /// The hint store (this node as a fallback).
    pub hints: Hints,
    /// Members and ring.
    pub membership: Arc<Membership>,
    /// What gossip spreads: buckets and context secrets.
    pub spread: Spread,
    /// Anti-entropy.
    pub anti_entropy: Arc<AntiEntropy>,
    /// Range transfers.
    pub transfers: Transfers,
}

impl PeerRouter {
    /// A router over the node's services.
    pub fn new(services: RouterServices, max_frame_bytes: usize) -> Self {
        Self {
            me: services.membership.me_id().clone(),
            s: services,
            max_frame_bytes,
        }
    }

    /// Serves one peer request from `caller` (a node certificate). A
    /// request that says it comes from another node than the certificate
    /// names is refused.
    pub async fn serve(&self, caller: &Caller, req: PeerRequest) -> PeerResponse {
        if let Some(claimed) = req.claimed_sender() {
            if caller.name.as_deref() != Some(claimed.as_str()) {
                tracing::warn!(certificate = caller.name_or_dash(), %claimed, "a peer claims another node's id; refused");
                return PeerError::Refused(format!(
                    "the certificate of {} cannot speak for {claimed}",
                    caller.name_or_dash()
                ))
                .into();
            }
        }
        match req {
            PeerRequest::Replica(req) => self.replica_request(req).await.into(),
            PeerRequest::Batch(bodies) => {
                batch::serve(&bodies, self.max_frame_bytes, |req| {
                    self.replica_request(req)
                })
                .await
            }
            PeerRequest::Forward(req) => {
                if req.is_admin() {
                    let refused = ErrorReply::BadRequest("admin requests are not forwarded".into());
                    return PeerResponse::Forwarded(Response::Error(refused));
                }
                PeerResponse::Forwarded(self.s.coordinator.handle(req, true).await)
            }
            PeerRequest::Cluster(req) => self.cluster_request(req).await.into(),
            PeerRequest::Aae(req) => self.s.anti_entropy.serve(req).await.into(),
            PeerRequest::Transfer(req) => {
                // A removed node takes no more data: it would hold it for
                // nobody (it still answers streams and digests).
                if matches!(req, TransferRequest::MergeBatch { .. }) {
                    if let Err(e) = self.check_not_removed() {
                        return e.into();
                    }
                }
                self.s.transfers.serve(req).await.into()
            }
            PeerRequest::Reap(ReapRequest::Reap { key, hash }) => {
                match self.s.replica.reap(key, hash).await {
                    Ok(_) => PeerResponse::Reap(ReapResponse::Reaped),
                    Err(e) => PeerError::from(e).into(),
                }
            }
        }
    }

    /// Serves a replica request (alone or in a batch).
    async fn replica_request(&self, req: ReplicaRequest) -> Result<ReplicaResponse, PeerError> {
        match req {
            ReplicaRequest::Read { key } => Ok(ReplicaResponse::State(self.s.replica.read(&key)?)),
            ReplicaRequest::Partitions {
                bucket,
                after,
                limit,
            } => {
                let (keys, complete) =
                    self.s
                        .replica
                        .partitions(&bucket, after.as_deref(), limit as usize)?;
                Ok(ReplicaResponse::Partitions { keys, complete })
            }
            ReplicaRequest::Range {
                low,
                high,
                reverse,
                limit,
                max_bytes,
            } => {
                let (items, complete) = self.s.replica.range(
                    low.as_bound(),
                    high.as_bound(),
                    reverse,
                    limit as usize,
                    max_bytes as usize,
                )?;
                Ok(ReplicaResponse::Range { items, complete })
            }
            ReplicaRequest::Write { key, state } => {
                self.check_not_removed()?;
                // A delete (nothing live from now on) is taken: it is how
                // space is freed.
                if let Err(full) = self.check_disk() {
                    let now = self.s.coordinator.env.clock.wall_ms();
                    if state.dead_since().is_none_or(|t| t > now) {
                        return Err(full);
                    }
                }
                self.check_overloaded()?;
                self.s.replica.merge(key.clone(), state).await?;
                // Checked once stored, against the view of that moment.
                if !self.s.transfers.owns(&key) {
                    self.s.transfers.hand_off_soon();
                }
                Ok(ReplicaResponse::Stored)
            }
            ReplicaRequest::Repair { key, state } => {
                self.check_not_removed()?;
                self.s.replica.merge(key.clone(), state).await?;
                // Checked once stored, against the view of that moment.
                if !self.s.transfers.owns(&key) {
                    self.s.transfers.hand_off_soon();
                }
                Ok(ReplicaResponse::Stored)
            }
            ReplicaRequest::HintedWrite { owner, key, state } => {
                self.check_not_removed()?;
                self.check_disk()?;
                self.check_overloaded()?;
                state
                    .validate()
                    .map_err(|e| PeerError::InvalidState(e.to_string()))?;
                state
                    .check_bounds(&self.s.replica.peer_limits())
                    .map_err(|e| PeerError::InvalidState(e.to_string()))?;
                self.s
                    .hints
                    .add(&owner, &key, state)
                    .await
                    .map_err(|e| PeerError::Storage(e.to_string()))?;
                Ok(ReplicaResponse::Stored)
            }
        }
    }

    async fn cluster_request(&self, req: ClusterRequest) -> Result<ClusterResponse, PeerError> {
        match req {
            ClusterRequest::Gossip {
                from: _,
                members,
                buckets,
                secrets,
                access,
            } => {
                let (spread, membership) = (&self.s.spread, &self.s.membership);
                Ok(gossip::serve(membership, spread, members, buckets, secrets, access).await)
            }
            ClusterRequest::Access(entries) => {
                crate::access::admin::store_pushed(&self.s.spread.access, entries).await
            }
            ClusterRequest::DefineBucket { name, props } => {
                define_bucket(&self.s.spread.buckets, &self.s.membership, &name, props).await
            }
            ClusterRequest::Ping => Ok(ClusterResponse::Pong),
        }
    }

    /// Refuses data on a node that was removed from the cluster.
    fn check_not_removed(&self) -> Result<(), PeerError> {
        if self.s.membership.my_state() == MemberState::Removed {
            return Err(PeerError::Removed {
                node: self.me.to_string(),
            });
        }
        Ok(())
    }

    /// Refuses a client write (a coordinator's replica write or hint) while
    /// this node's disk is below the free-space watermark.
    fn check_disk(&self) -> Result<(), PeerError> {
        match self.s.replica.store().refuses_client_writes() {
            Some(full) => Err(PeerError::Storage(format!("{}: {full}", self.me))),
            None => Ok(()),
        }
    }

    /// Refuses a client write (a coordinator's replica write or hint)
    /// while this node's storage engine holds a commit back (see
    /// `Store::overloaded`): the coordinator turns to a fallback at once
    /// instead of waiting out its timeout.
    fn check_overloaded(&self) -> Result<(), PeerError> {
        match self.s.replica.store().overloaded() {
            Some(busy) => {
                self.s
                    .coordinator
                    .metrics
                    .counter(crate::metrics::OVERLOADED_REFUSALS, &[("side", "replica")])
                    .increment(1);
                Err(PeerError::Storage(format!("{}: {busy}", self.me)))
            }
            None => Ok(()),
        }
    }
}
