//! The admin service: the operator requests of the client protocol
//! (status, ring, leave, remove, join, repair, bucket listing and
//! creation, backup pages, restore batches and verify digests; access
//! requests go to [`crate::access::admin`]), served by the node that
//! receives them.

use super::buckets::{Buckets, DefineError};
use super::fanout::ask_every_other;
use super::liveness::Liveness;
use super::member::MemberState;
use super::membership::Membership;
use super::meta::MemberStore;
use crate::access::admin::AccessAdmin;
use crate::access::gate::Gatekeeper;
use crate::access::list::Access;
use crate::backup::Backups;
use crate::net::reload::ReloaderSlot;
use crate::repair::exchange::AntiEntropy;
use crate::repair::transfer::{PlaceError, Transfers};
use crate::replication::replica::Replica;
use crate::replication::settings::{Limits, Replication};
use crate::rpc::peer::{ClusterRequest, ClusterResponse, PeerError};
use crate::rpc::transport::Transport;
use kvorum_client::proto::{
    ClusterStatus, ErrorReply, MemberStatus, Request, Response, RingRange, TransferStatus,
};
use kvorum_client::BucketProps;
use kvorum_client::QuarantinedRecord;
use kvorum_ring::NodeId;
use std::sync::Arc;

/// Serves the admin requests of the client protocol on this node.
pub struct Admin {
    me: NodeId,
    s: AdminServices,
    replication: Replication,
    limits: Limits,
}

/// What the admin service works with.
pub struct AdminServices {
    /// Members and ring.
    pub membership: Arc<Membership>,
    /// The buckets this node knows.
    pub buckets: Buckets,
    /// Which peers are up.
    pub liveness: Arc<Liveness>,
    /// How peers are reached (bucket definitions go to every member).
    pub transport: Arc<dyn Transport>,
    /// Anti-entropy (`Request::Repair`).
    pub anti_entropy: Arc<AntiEntropy>,
    /// Range transfers (progress for status).
    pub transfers: Transfers,
    /// Persists the member list after an admin change.
    pub member_store: MemberStore,
    /// The access list.
    pub access: Access,
    /// When node certificates expire (status).
    pub gate: Gatekeeper,
    /// Reloads this node's certificates.
    pub reloader: ReloaderSlot,
    /// The local replica (quarantined records).
    pub replica: Replica,
    /// Backup snapshots of this node.
    pub backups: Backups,
}

impl Admin {
    /// The admin service over the node's services.
    pub fn new(services: AdminServices, replication: Replication, limits: Limits) -> Self {
        Self {
            me: services.membership.me_id().clone(),
            s: services,
            replication,
            limits,
        }
    }

    /// Serves one admin request (anything else is refused).
    pub async fn handle(&self, req: Request) -> Response {
        let served = match req {
            Request::Status => Ok(Response::Status(Box::new(self.cluster_status()))),
            Request::Leave { node } => self.leave(&node).await,
            Request::Remove { node } => self.remove(&node).await,
            Request::Join { node, seed } => self.join(&node, &seed).await,
            Request::Ring { n } => self.ring_ranges(n),
            Request::Repair => {
                let (exchanges, keys) = self.s.anti_entropy.repair_all().await;
                Ok(Response::Repaired { exchanges, keys })
            }
            Request::ListBuckets => Ok(Response::Buckets(
                self.s
                    .buckets
                    .all()
                    .into_iter()
                    .map(|(name, p)| (name, p.into()))
                    .collect(),
            )),
            Request::ListBucketProps => Ok(Response::BucketProps(self.s.buckets.all())),
            Request::CreateBucket { name, props } => self.create_bucket(name, props.into()).await,
            Request::DefineBucket { name, props } => self.create_bucket(name, props).await,
            req @ (Request::Grant(_)
            | Request::Revoke(_)
            | Request::Access
            | Request::ReloadCertificates) => {
                let access = AccessAdmin {
                    access: self.s.access.clone(),
                    membership: self.s.membership.clone(),
                    transport: self.s.transport.clone(),
                    timeout: self.replication.request_timeout,
                    reloader: self.s.reloader.clone(),
                };
                access.handle(req).await
            }
            Request::Quarantined => self.quarantined(),
            Request::Disk => Ok(Response::Disk(self.disk())),
            Request::Backup(step) => self.s.backups.serve(step).await.map(Response::Backup),
            Request::Restore { records } => self.restore(records).await,
            Request::Digest(query) => self
                .s
                .anti_entropy
                .digest(query)
                .await
                .map(Response::Digest),
            _ => Err(ErrorReply::BadRequest("not an admin request".into())),
        };
        served.unwrap_or_else(Response::Error)
    }

    /// Places a restore's records on their owners.
    async fn restore(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Response, ErrorReply> {
        match self.s.transfers.place(records).await {
            Ok(p) => Ok(Response::Restored {
                records: u32::try_from(p.records).unwrap_or(u32::MAX),
                sent: u32::try_from(p.sent).unwrap_or(u32::MAX),
            }),
            Err(PlaceError::Invalid(why)) => Err(ErrorReply::BadRequest(why)),
            Err(PlaceError::Owner(e)) => Err(ErrorReply::Unavailable(format!(
                "not every owner took its records ({e}); send them again"
            ))),
        }
    }

    /// Defines a bucket here and on every other member; succeeds only when
    /// every member stored it.
    async fn create_bucket(
        &self,
        name: String,
        props: BucketProps,
    ) -> Result<Response, ErrorReply> {
        self.limits.check_key(&name, b"")?;
        props.validate().map_err(ErrorReply::BadRequest)?;
        let define_err = |e: DefineError| match e {
            DefineError::Conflict { name, existing } => ErrorReply::BucketConflict {
                bucket: name,
                existing: existing.into(),
            },
            DefineError::Invalid(why) => ErrorReply::BadRequest(why),
            DefineError::Storage(e) => ErrorReply::Internal(e.to_string()),
        };
        if self
            .s
            .buckets
            .define(&name, props)
            .await
            .map_err(define_err)?
        {
            // Keys of the bucket may be here already (replica writes of a
            // coordinator that knew it first): they move to its N.
            self.s.membership.touch();
        }
        let req = ClusterRequest::DefineBucket {
            name: name.clone(),
            props,
        };
        let timeout = self.replication.request_timeout;
        let answers = ask_every_other(&self.s.transport, &self.s.membership, req, timeout).await;
        // A member that holds the bucket with other props: a conflict.
        for (_, answer) in &answers.answers {
            if let Ok(ClusterResponse::Conflict(existing)) = answer {
                return Err(ErrorReply::BucketConflict {
                    bucket: name,
                    existing: (*existing).into(),
                });
            }
        }
        answers.all_confirmed(&format!("bucket {name:?}"), |r| {
            matches!(r, ClusterResponse::BucketDefined)
        })?;
        Ok(Response::BucketCreated)
    }

    /// This node's disk against its free-space watermark.
    fn disk(&self) -> kvorum_client::DiskStatus {
        use crate::storage::disk::Pressure;
        use kvorum_client::DiskRefusal;
        let store = self.s.replica.store();
        let disk = store.disk();
        kvorum_client::DiskStatus {
            node: self.me.to_string(),
            free_bytes: disk.map_or(0, |d| d.space.free),
            total_bytes: disk.map_or(0, |d| d.space.total),
            watermark_bytes: disk.map_or(0, |d| d.client_floor),
            refusing: match disk.map(|d| d.pressure) {
                None => DiskRefusal::Unknown,
                Some(Pressure::None) => DiskRefusal::None,
                Some(Pressure::Clients) => DiskRefusal::ClientWrites,
                Some(Pressure::All) => DiskRefusal::AllWrites,
            },
            storage_failed: store.failure().map(|e| e.to_string()),
        }
    }

    fn quarantined(&self) -> Result<Response, ErrorReply> {
        let list = self
            .s
            .replica
            .quarantined()
            .map_err(|e| ErrorReply::Internal(e.to_string()))?;
        Ok(Response::Quarantined(
            list.into_iter()
                .map(|q| {
                    // (The record's fields predate sorted partitions: an
                    // item's sort key is named in `why`.)
                    let (bucket, key, why) = match kvorum_ring::item::decode(&q.key) {
                        Some((b, pk, [])) => (b.to_string(), pk, q.why),
                        Some((b, pk, sort)) => {
                            let hex: String = sort.iter().map(|x| format!("{x:02x}")).collect();
                            (
                                b.to_string(),
                                pk,
                                format!("{} (the item of sort key {hex})", q.why),
                            )
                        }
                        None => ("?".to_string(), q.key.clone(), q.why),
                    };
                    QuarantinedRecord {
                        bucket,
                        key,
                        bytes: q.bytes.len() as u64,
                        why,
                        at_ms: q.at_ms,
                    }
                })
                .collect(),
        ))
    }

    fn cluster_status(&self) -> ClusterStatus {
        let view = self.s.membership.view();
        let report = self.s.transfers.report();
        ClusterStatus {
            node: self.me.to_string(),
            members: view
                .members
                .values()
                .map(|m| MemberStatus {
                    id: m.id.to_string(),
                    addr: m.addr.to_string(),
                    zone: m.zone.clone(),
                    state: m.state.as_str().to_string(),
                    reachable: m.state != MemberState::Removed && self.s.liveness.is_up(&m.id),
                    ownership_ppm: (view.write_ring.ownership(&m.id) * 1e6).round() as u32,
                })
                .collect(),
            in_transition: view.in_transition(),
            waiting_for: report.waiting_for.iter().map(|n| n.to_string()).collect(),
            transfers: report
                .sources
                .into_iter()
                .map(|p| TransferStatus {
                    source: p.source.to_string(),
                    scanned: p.scanned,
                    total: p.total,
                    keys: p.keys,
                    bytes: p.bytes,
                    done: p.done,
                })
                .collect(),
            certificates: self.s.gate.certificates(),
        }
    }

    /// Persists the member list after an admin change.
    async fn save(&self) -> Result<(), ErrorReply> {
        self.s
            .member_store
            .save()
            .await
            .map_err(|e| ErrorReply::Internal(format!("cannot persist the member list: {e}")))
    }

    /// The largest N of any bucket: the fewest owners the cluster needs.
    fn max_n(&self) -> usize {
        self.s
            .buckets
            .all()
            .into_iter()
            .map(|(_, p)| usize::from(p.n))
            .max()
            .unwrap_or(1)
    }

    /// Refuses a change that would leave fewer owners than `max_n`.
    fn check_capacity(&self, without: &NodeId, what: &str) -> Result<(), ErrorReply> {
        let view = self.s.membership.view();
        let remaining = view
            .live_members()
            .filter(|m| m.state.owns() && m.id != *without)
            .count();
        if remaining == 0 {
            return Err(ErrorReply::Refused(format!(
                "{without} is the last node of the cluster: it cannot {what}"
            )));
        }
        let n = self.max_n();
        if remaining < n {
            return Err(ErrorReply::Refused(format!(
                "after {without} would {what}, {remaining} node(s) would remain, \
                 too few to hold N={n} replicas of every key (add a node first)"
            )));
        }
        Ok(())
    }

    async fn leave(&self, node: &str) -> Result<Response, ErrorReply> {
        if node != self.me.as_str() {
            return Err(ErrorReply::Refused(format!(
                "this is {}, not {node}: send leave to the node that should leave",
                self.me
            )));
        }
        match self.s.membership.my_state() {
            MemberState::Leaving => {
                return Ok(Response::Accepted(format!(
                    "{} is already leaving",
                    self.me
                )))
            }
            MemberState::Removed => {
                return Err(ErrorReply::Refused(format!("{} has already left", self.me)))
            }
            MemberState::Joining => {
                return Err(ErrorReply::Refused(format!(
                    "{} is still joining; wait until it is up",
                    self.me
                )))
            }
            MemberState::Up => {}
        }
        if self.s.membership.view().in_transition() {
            return Err(ErrorReply::Refused(
                "another topology change is in progress; retry once it completes \
                 (kvorum admin status)"
                    .into(),
            ));
        }
        self.check_capacity(&self.me, "leave")?;
        self.s.membership.set_my_state(MemberState::Leaving);
        self.save().await?;
        Ok(Response::Accepted(format!(
            "{} is leaving: its ranges stream to their new owners, then it is removed \
             (watch kvorum admin status)",
            self.me
        )))
    }

    async fn remove(&self, node: &str) -> Result<Response, ErrorReply> {
        let id = NodeId::new(node);
        let Some(m) = self.s.membership.get(&id) else {
            return Err(ErrorReply::Refused(format!("no member is called {node:?}")));
        };
        if id == self.me {
            return Err(ErrorReply::Refused(format!(
                "{node} is this node: use kvorum admin leave to decommission a live node"
            )));
        }
        match m.state {
            MemberState::Removed => {
                return Ok(Response::Accepted(format!("{node} is already removed")))
            }
            MemberState::Leaving => {
                return Ok(Response::Accepted(format!("{node} is already leaving")))
            }
            _ => {}
        }
        if self.s.liveness.is_up(&id) {
            return Err(ErrorReply::Refused(format!(
                "{node} is up as this node sees it: decommission it with kvorum admin leave \
                 on that node, or stop it first"
            )));
        }
        // A joining node owns nothing yet: it goes at once.
        if m.state == MemberState::Joining {
            self.s.membership.mark(&id, MemberState::Removed);
            self.save().await?;
            return Ok(Response::Accepted(format!("{node} (joining) removed")));
        }
        if self.s.membership.view().in_transition() {
            return Err(ErrorReply::Refused(
                "another topology change is in progress; retry once it completes \
                 (kvorum admin status), or remove the joining node it waits for"
                    .into(),
            ));
        }
        self.check_capacity(&id, "be removed")?;
        self.s.membership.mark(&id, MemberState::Leaving);
        self.save().await?;
        Ok(Response::Accepted(format!(
            "{node} is being removed: its ranges are re-replicated from the surviving \
             replicas (watch kvorum admin status)"
        )))
    }

    async fn join(&self, node: &str, seed: &str) -> Result<Response, ErrorReply> {
        if node != self.me.as_str() {
            return Err(ErrorReply::Refused(format!(
                "this is {}, not {node}: send join to the node that should join",
                self.me
            )));
        }
        let seed: std::net::SocketAddr = seed
            .parse()
            .map_err(|e| ErrorReply::BadRequest(format!("seed {seed:?}: {e}")))?;
        let others = self
            .s
            .membership
            .members()
            .into_iter()
            .filter(|m| m.id != self.me)
            .count();
        if others > 0 {
            return Err(ErrorReply::Refused(format!(
                "{} is already in a cluster of {} nodes",
                self.me,
                others + 1
            )));
        }
        self.s.membership.add_seeds([seed]);
        self.s.membership.set_my_state(MemberState::Joining);
        self.save().await?;
        Ok(Response::Accepted(format!(
            "{} is joining through {seed}: it streams in its ranges, then serves them",
            self.me
        )))
    }

    fn ring_ranges(&self, n: Option<u8>) -> Result<Response, ErrorReply> {
        let ring = self.s.membership.ring();
        let n = usize::from(n.unwrap_or(self.replication.n));
        if n == 0 {
            return Err(ErrorReply::BadRequest("n must be at least 1".into()));
        }
        let tokens = ring.tokens();
        let mut ranges: Vec<RingRange> = Vec::new();
        let mut prev = tokens.last().copied().unwrap_or(0);
        for t in tokens {
            let owners: Vec<String> = ring
                .preference_list_at(t, n)
                .into_iter()
                .map(|x| x.to_string())
                .collect();
            match ranges.last_mut() {
                Some(last) if last.owners == owners => last.end = t,
                _ => ranges.push(RingRange {
                    start: prev,
                    end: t,
                    owners,
                }),
            }
            prev = t;
        }
        Ok(Response::Ring(ranges))
    }
}

/// Stores a bucket definition sent by a peer; a new one moves placement.
pub async fn define_bucket(
    buckets: &Buckets,
    membership: &Membership,
    name: &str,
    props: BucketProps,
) -> Result<ClusterResponse, PeerError> {
    match buckets.define(name, props).await {
        Ok(changed) => {
            if changed {
                membership.touch();
            }
            Ok(ClusterResponse::BucketDefined)
        }
        Err(DefineError::Conflict { existing, .. }) => Ok(ClusterResponse::Conflict(existing)),
        Err(DefineError::Invalid(why)) => Err(PeerError::Refused(why)),
        Err(DefineError::Storage(e)) => Err(PeerError::Storage(e.to_string())),
    }
}
