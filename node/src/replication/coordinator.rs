//! One client request → fan-out to the key's preference list → wait for R or
//! W → merge → answer. Reaches peers only through [`Transport`].

use crate::cluster::buckets::{Buckets, DefineError};
use crate::cluster::liveness::Liveness;
use crate::cluster::membership::Membership;
use crate::data::register::{self, DotContext, RegValue};
use crate::data::value::{self, Reading, State, Update, ValueError};
use crate::metrics::{self, Metrics};
use crate::repair::exchange::AntiEntropy;
use crate::repair::hints::Hints;
use crate::repair::transfer::Transfers;
use crate::replication::replica::{storage_key, Replica, ReplicaError};
use crate::replication::settings::{Limits, Replication};
use crate::rpc::peer::MemberState;
use crate::rpc::peer::{PeerRequest, PeerResponse};
use crate::rpc::transport::{Transport, TransportError};
use crate::util::time::{lww_clock_ms, now_ms};
use kvorum_client::proto::{
    CausalContext, ClusterStatus, ErrorReply, Limit, MemberStatus, OpKind, QuorumFailure,
    ReplicaOutcome, Request, Response, RingRange, StaleRead, TransferStatus,
};
use kvorum_client::{BucketProps, BucketType, DataOp, MapOp, ReadReport, Version};
use kvorum_ring::NodeId;
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;

/// W, timeout and strictness of one write.
#[derive(Debug, Clone, Copy)]
struct WriteQuorum {
    w: usize,
    timeout: Duration,
    strict: bool,
}

/// Largest causal context (or version to read at) a request may carry. A
/// context holds about one entry per node that coordinated writes of the
/// key: a few hundred bytes.
const MAX_CONTEXT_BYTES: usize = 64 * 1024;

/// Extra time a forwarding node waits beyond the request timeout.
const FORWARD_SLACK: Duration = Duration::from_secs(1);

/// Where a quorum stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumStatus {
    /// Enough replicas succeeded.
    Met,
    /// Not yet decided.
    Pending,
    /// Too many replicas failed for the quorum ever to be met.
    Failed,
}

/// Bookkeeping of one quorum: who was asked, who answered how. Pure.
///
/// A quorum is one or more groups of replicas, each with its own count
/// (during a topology change a write needs W of the key's current replicas
/// *and* W of its future ones). A fallback asked in place of a replica
/// counts for that replica's groups.
#[derive(Debug, Clone)]
pub struct QuorumTracker {
    /// (replicas, how many of them must succeed)
    groups: Vec<(Vec<NodeId>, usize)>,
    /// (node asked, the replica it stands in for, outcome so far)
    replicas: Vec<(NodeId, Option<NodeId>, Option<ReplicaOutcome>)>,
}

impl QuorumTracker {
    /// A quorum of `needed` among `replicas`.
    pub fn new(needed: usize, replicas: &[NodeId]) -> Self {
        Self::joint(vec![(replicas.to_vec(), needed)])
    }

    /// A quorum of every group: `needed` successes among its replicas.
    /// Every replica of every group is asked (once).
    pub fn joint(groups: Vec<(Vec<NodeId>, usize)>) -> Self {
        let mut replicas: Vec<(NodeId, Option<NodeId>, Option<ReplicaOutcome>)> = Vec::new();
        for (g, _) in &groups {
            for n in g {
                if !replicas.iter().any(|(r, _, _)| r == n) {
                    replicas.push((n.clone(), None, None));
                }
            }
        }
        Self { groups, replicas }
    }

    /// A quorum of `needed` among `replicas`, none of them asked yet:
    /// [`QuorumTracker::ask`] adds them as they are asked. Until then a
    /// replica neither counts as pending nor as failed.
    pub fn unasked(needed: usize, replicas: &[NodeId]) -> Self {
        Self {
            groups: vec![(replicas.to_vec(), needed)],
            replicas: Vec::new(),
        }
    }

    /// Adds a replica of the quorum as asked (see [`QuorumTracker::unasked`]).
    pub fn ask(&mut self, node: &NodeId) {
        if !self.asked(node) {
            self.replicas.push((node.clone(), None, None));
        }
    }

    /// How many replicas were asked.
    pub fn asked_count(&self) -> usize {
        self.replicas.len()
    }

    /// Adds a node to ask in place of replica `owner` (a fallback of a
    /// sloppy quorum).
    pub fn add(&mut self, node: &NodeId, owner: &NodeId) {
        if !self.asked(node) {
            self.replicas
                .push((node.clone(), Some(owner.clone()), None));
        }
    }

    /// Records every replica that has not answered as timed out.
    pub fn expire(&mut self) {
        for (_, _, o) in &mut self.replicas {
            if o.is_none() {
                *o = Some(ReplicaOutcome::Timeout);
            }
        }
    }

    /// What each replica asked did so far (`None`: no answer yet).
    pub fn outcomes(&self) -> impl Iterator<Item = Option<&ReplicaOutcome>> {
        self.replicas.iter().map(|(_, _, o)| o.as_ref())
    }

    /// The replicas asked that have not answered yet.
    pub fn pending(&self) -> impl Iterator<Item = &NodeId> {
        self.replicas
            .iter()
            .filter(|(_, _, o)| o.is_none())
            .map(|(n, _, _)| n)
    }

    /// Whether `node` is already among the replicas asked.
    pub fn asked(&self, node: &NodeId) -> bool {
        self.replicas.iter().any(|(n, _, _)| n == node)
    }

    /// Records what `node` did; a second outcome for a node is ignored.
    pub fn record(&mut self, node: &NodeId, outcome: ReplicaOutcome) {
        if let Some((_, _, slot @ None)) = self.replicas.iter_mut().find(|(n, _, _)| n == node) {
            *slot = Some(outcome);
        }
    }

    /// Successful replicas so far.
    pub fn succeeded(&self) -> usize {
        self.replicas
            .iter()
            .filter(|(_, _, o)| o == &Some(ReplicaOutcome::Ok))
            .count()
    }

    /// (successes, still pending) counting for group `g`.
    fn group_counts(&self, g: &[NodeId]) -> (usize, usize) {
        let (mut ok, mut pending) = (0, 0);
        for (n, owner, o) in &self.replicas {
            if !g.contains(owner.as_ref().unwrap_or(n)) {
                continue;
            }
            match o {
                Some(ReplicaOutcome::Ok) => ok += 1,
                None => pending += 1,
                Some(_) => {}
            }
        }
        (ok, pending)
    }

    /// Met, pending or failed.
    pub fn status(&self) -> QuorumStatus {
        let mut status = QuorumStatus::Met;
        for (g, needed) in &self.groups {
            let (ok, pending) = self.group_counts(g);
            if ok >= *needed {
                continue;
            }
            if ok + pending < *needed {
                return QuorumStatus::Failed;
            }
            status = QuorumStatus::Pending;
        }
        status
    }

    /// The failure report (of the first group not met); replicas that never
    /// answered count as timed out.
    pub fn failure(&self, op: OpKind) -> QuorumFailure {
        let (needed, succeeded) = self
            .groups
            .iter()
            .map(|(g, needed)| (*needed, self.group_counts(g).0))
            .find(|(needed, ok)| ok < needed)
            .unwrap_or_else(|| (self.groups.first().map_or(0, |g| g.1), self.succeeded()));
        QuorumFailure {
            op,
            needed: u8::try_from(needed).unwrap_or(u8::MAX),
            succeeded: u8::try_from(succeeded).unwrap_or(u8::MAX),
            replicas: self
                .replicas
                .iter()
                .map(|(n, _, o)| (n.to_string(), o.clone().unwrap_or(ReplicaOutcome::Timeout)))
                .collect(),
        }
    }
}

/// Turns a transport failure into what the client is told about that replica.
fn outcome_of(e: &TransportError) -> ReplicaOutcome {
    match e {
        TransportError::Timeout => ReplicaOutcome::Timeout,
        TransportError::Unreachable(why) => ReplicaOutcome::Unreachable(why.clone()),
        TransportError::Lost(why) => ReplicaOutcome::Failed(format!("connection lost: {why}")),
        TransportError::Protocol(why) => ReplicaOutcome::Failed(why.clone()),
    }
}

/// Coordinates client requests on this node.
pub struct Coordinator {
    me: NodeId,
    buckets: Buckets,
    replica: Replica,
    membership: Arc<Membership>,
    transport: Arc<dyn Transport>,
    liveness: Arc<Liveness>,
    hints: Hints,
    anti_entropy: Arc<AntiEntropy>,
    transfers: Transfers,
    member_store: crate::cluster::meta::MemberStore,
    replication: Replication,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Turns of the remote replicas a read asks first (spreads a hot key's
    /// reads over its replicas).
    read_turn: std::sync::atomic::AtomicUsize,
}

/// What a coordinator works with (the node's services).
pub struct Services {
    /// The buckets this node knows.
    pub buckets: Buckets,
    /// The local replica.
    pub replica: Replica,
    /// Members and ring.
    pub membership: Arc<Membership>,
    /// How peers are reached.
    pub transport: Arc<dyn Transport>,
    /// Which peers are up.
    pub liveness: Arc<Liveness>,
    /// The hint store (this node as a fallback).
    pub hints: Hints,
    /// Anti-entropy (served to peers, and on `Request::Repair`).
    pub anti_entropy: Arc<AntiEntropy>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// Range transfers (served to peers; progress for status).
    pub transfers: Transfers,
    /// Persists the member list after an admin change.
    pub member_store: crate::cluster::meta::MemberStore,
}

impl Coordinator {
    /// A coordinator over the node's services.
    pub fn new(services: Services, replication: Replication, limits: Limits) -> Self {
        let Services {
            buckets,
            replica,
            membership,
            transport,
            liveness,
            hints,
            anti_entropy,
            metrics,
            transfers,
            member_store,
        } = services;
        Self {
            member_store,
            me: membership.me_id().clone(),
            transfers,
            buckets,
            replica,
            membership,
            transport,
            liveness,
            hints,
            anti_entropy,
            replication,
            limits,
            metrics,
            read_turn: Default::default(),
        }
    }

    /// The bucket type of `bucket` as a metric label (`unknown` if none).
    pub fn bucket_type_label(&self, bucket: &str) -> &'static str {
        match self.buckets.get(bucket) {
            Some(p) => p.bucket_type.as_str(),
            None => "unknown",
        }
    }

    /// Counts the replica answers a quorum decision was made on; replicas
    /// still silent when a quorum failed count as timed out.
    /// Counts the replica answers a quorum was decided on (replicas still
    /// pending when it was decided are not counted; at the deadline they
    /// were recorded as timed out) and, if it failed, the failure with the
    /// reason the recorded answers give.
    fn count_replies(&self, op: &'static str, tracker: &QuorumTracker) {
        for outcome in tracker.outcomes().flatten() {
            let label = match outcome {
                ReplicaOutcome::Ok => "ok",
                ReplicaOutcome::Timeout => "timeout",
                ReplicaOutcome::Unreachable(_) => "unreachable",
                ReplicaOutcome::Failed(_) => "error",
            };
            self.metrics
                .counter(
                    metrics::REPLICA_RESPONSES,
                    &[("op", op), ("outcome", label)],
                )
                .increment(1);
        }
        if tracker.status() != QuorumStatus::Met {
            let reason = metrics::quorum_failure_reason(tracker.outcomes().flatten());
            self.metrics
                .counter(metrics::QUORUM_FAILURES, &[("op", op), ("reason", reason)])
                .increment(1);
        }
    }

    /// Serves one client request. `forwarded` is true when another node sent
    /// it here to coordinate (it is then never forwarded again).
    pub async fn handle(&self, req: Request, forwarded: bool) -> Response {
        match self.serve(req, forwarded).await {
            Ok(r) => r,
            Err(e) => Response::Error(e),
        }
    }

    async fn serve(&self, req: Request, forwarded: bool) -> Result<Response, ErrorReply> {
        match req {
            Request::Status => Ok(Response::Status(self.cluster_status())),
            Request::Leave { node } => self.leave(&node).await,
            Request::Remove { node } => self.remove(&node).await,
            Request::Join { node, seed } => self.join(&node, &seed).await,
            Request::Ring { n } => self.ring_ranges(n),
            Request::Repair => {
                let (exchanges, keys) = self.anti_entropy.repair_all().await;
                Ok(Response::Repaired { exchanges, keys })
            }
            Request::ListBuckets => Ok(Response::Buckets(self.buckets.all())),
            Request::CreateBucket { name, props } => self.create_bucket(name, props).await,
            Request::Get {
                bucket,
                key,
                options,
                at_least,
            } => {
                let (_, state, report) = self
                    .read_request(&bucket, &key, options, at_least.as_ref(), true)
                    .await?;
                let version = state.version();
                let reading = state.read();
                if let Reading::Register(siblings, ctx) = &reading {
                    if !siblings.is_empty() {
                        self.metrics
                            .histogram(metrics::READ_SIBLINGS, &[])
                            .record(siblings.len() as f64);
                        self.metrics
                            .histogram(metrics::VCLOCK_ENTRIES, &[])
                            .record(ctx.entries() as f64);
                    }
                }
                Ok(match reading {
                    Reading::Register(siblings, ctx) if !siblings.is_empty() => Response::Value {
                        siblings,
                        context: CausalContext(register::encode_context(&ctx)),
                        version,
                        report,
                    },
                    Reading::Register(_, ctx) => Response::NotFound {
                        context: CausalContext(register::encode_context(&ctx)),
                        version,
                        report,
                    },
                    Reading::Lww(Some(v)) => Response::Value {
                        siblings: vec![v],
                        context: CausalContext::empty(),
                        version,
                        report,
                    },
                    _ => Response::NotFound {
                        context: CausalContext::empty(),
                        version,
                        report,
                    },
                })
            }
            Request::Fetch {
                bucket,
                key,
                options,
                at_least,
            } => {
                let (props, state, report) = self
                    .read_request(&bucket, &key, options, at_least.as_ref(), false)
                    .await?;
                let version = state.version();
                Ok(match state.read() {
                    Reading::Data(Some(value), clock) => Response::Data {
                        value,
                        context: CausalContext(value::encode_clock(&clock)),
                        version,
                        report,
                    },
                    Reading::Data(None, clock) => Response::NotFound {
                        context: CausalContext(value::encode_clock(&clock)),
                        version,
                        report,
                    },
                    _ => {
                        return Err(ErrorReply::Internal(format!(
                            "stored state of key does not match bucket type {}",
                            props.bucket_type
                        )))
                    }
                })
            }
            Request::Put {
                ref bucket,
                ref key,
                ref value,
                ref context,
                options,
            } => {
                let props = self.bucket(bucket, key)?;
                self.check_value(value)?;
                let update = match props.bucket_type {
                    BucketType::Register => Update::Register {
                        ctx: self.context(context)?,
                        value: RegValue::Data(value.clone()),
                    },
                    BucketType::Lww => Update::Lww(Some(value.clone())),
                    _ => return Err(wrong_type(bucket, props, "put (use a typed update)")),
                };
                let q = self.write_quorum(options, props)?;
                let skey = storage_key(bucket, key);
                self.write(req.clone(), skey, props, update, q, forwarded)
                    .await
            }
            Request::Delete {
                ref bucket,
                ref key,
                ref context,
                options,
            } => {
                let props = self.bucket(bucket, key)?;
                let update = match props.bucket_type {
                    BucketType::Register => Update::Register {
                        ctx: self.context(context)?,
                        value: RegValue::Tombstone {
                            deleted_ms: now_ms(),
                        },
                    },
                    BucketType::Lww => Update::Lww(None),
                    _ => return Err(wrong_type(bucket, props, "delete")),
                };
                let q = self.write_quorum(options, props)?;
                let skey = storage_key(bucket, key);
                self.write(req.clone(), skey, props, update, q, forwarded)
                    .await
            }
            Request::Update {
                ref bucket,
                ref key,
                ref op,
                ref context,
                options,
            } => {
                let props = self.bucket(bucket, key)?;
                if op.bucket_type() != props.bucket_type {
                    return Err(wrong_type(bucket, props, op.name()));
                }
                self.check_op(op)?;
                let ctx = self.check_context_size(context).and_then(|()| {
                    value::decode_clock(&context.0)
                        .map_err(|e| ErrorReply::InvalidContext(e.to_string()))
                })?;
                let update = Update::Data {
                    op: op.clone(),
                    ctx,
                };
                let q = self.write_quorum(options, props)?;
                let skey = storage_key(bucket, key);
                self.write(req.clone(), skey, props, update, q, forwarded)
                    .await
            }
        }
    }

    /// A `get` (`register_like`) or typed read: checks the bucket and its
    /// type (and that of the version the read must reach), then reads at
    /// the request's or the bucket's R.
    async fn read_request(
        &self,
        bucket: &str,
        key: &[u8],
        options: kvorum_client::ReadOptions,
        at_least: Option<&Version>,
        register_like: bool,
    ) -> Result<(BucketProps, State, ReadReport), ErrorReply> {
        let props = self.bucket(bucket, key)?;
        if props.bucket_type.is_register_like() != register_like {
            let op = if register_like {
                "get (use a typed read)"
            } else {
                "typed read (use get)"
            };
            return Err(wrong_type(bucket, props, op));
        }
        let r = quorum(options.r, props.r, props.n)?;
        let timeout = self.timeout(options.timeout_ms);
        let at_least = match at_least {
            Some(v) if !v.is_empty() => {
                self.check_version(v, props.bucket_type)?;
                Some(v)
            }
            _ => None,
        };
        let skey = storage_key(bucket, key);
        let (state, report) = self
            .read(
                skey,
                props,
                r,
                timeout,
                options.repair_before_answer,
                at_least,
            )
            .await?;
        Ok((props, state, report))
    }

    /// A version a read must reach: bounded like a context, and of the kind
    /// the bucket type produces.
    fn check_version(&self, v: &Version, t: BucketType) -> Result<(), ErrorReply> {
        let size = postcard::to_stdvec(v).map_or(usize::MAX, |b| b.len());
        self.check_context_size(&CausalContext(vec![0; size.min(MAX_CONTEXT_BYTES + 1)]))?;
        let fits = matches!(
            (t, v),
            (
                BucketType::Register | BucketType::Set | BucketType::Map,
                Version::Dots { .. }
            ) | (BucketType::Counter, Version::Counter { .. })
                | (BucketType::Lww, Version::Stamp { .. })
        );
        if !fits {
            return Err(ErrorReply::InvalidContext(format!(
                "the version to read at is not one of a {t} key"
            )));
        }
        Ok(())
    }

    /// The props of `bucket` after checking the names' sizes; unknown
    /// buckets are refused.
    fn bucket(&self, bucket: &str, key: &[u8]) -> Result<BucketProps, ErrorReply> {
        self.check_key(bucket, key)?;
        self.buckets
            .get(bucket)
            .ok_or_else(|| ErrorReply::UnknownBucket(bucket.to_string()))
    }

    fn check_value(&self, value: &[u8]) -> Result<(), ErrorReply> {
        if value.len() > self.limits.max_value_bytes {
            return Err(too_large(
                Limit::Value,
                value.len(),
                self.limits.max_value_bytes,
            ));
        }
        Ok(())
    }

    /// Bounds of an update's parts: members and values like values, field
    /// names like keys.
    fn check_op(&self, op: &DataOp) -> Result<(), ErrorReply> {
        match op {
            DataOp::Increment(_) => Ok(()),
            DataOp::SetUpdate { add, remove } => {
                if add.is_empty() && remove.is_empty() {
                    return Err(ErrorReply::BadRequest("empty set update".into()));
                }
                add.iter()
                    .chain(remove)
                    .try_for_each(|m| self.check_value(m))
            }
            DataOp::MapUpdate(ops) => {
                if ops.is_empty() {
                    return Err(ErrorReply::BadRequest("empty map update".into()));
                }
                for op in ops {
                    let (name, _) = op.field();
                    if name.len() > self.limits.max_key_bytes {
                        return Err(too_large(Limit::Key, name.len(), self.limits.max_key_bytes));
                    }
                    match op {
                        MapOp::Add { members, .. } | MapOp::Remove { members, .. } => {
                            members.iter().try_for_each(|m| self.check_value(m))?
                        }
                        MapOp::SetLww { value, .. } | MapOp::SetRegister { value, .. } => {
                            self.check_value(value)?
                        }
                        MapOp::Increment { .. }
                        | MapOp::Flag { .. }
                        | MapOp::RemoveField { .. } => {}
                    }
                }
                Ok(())
            }
        }
    }

    fn write_quorum(
        &self,
        options: kvorum_client::WriteOptions,
        props: BucketProps,
    ) -> Result<WriteQuorum, ErrorReply> {
        Ok(WriteQuorum {
            w: quorum(options.w, props.w, props.n)?,
            timeout: self.timeout(options.timeout_ms),
            strict: options.strict,
        })
    }

    /// Defines a bucket here and on every other member; succeeds only when
    /// every member stored it.
    async fn create_bucket(
        &self,
        name: String,
        props: BucketProps,
    ) -> Result<Response, ErrorReply> {
        self.check_key(&name, b"")?;
        props.validate().map_err(ErrorReply::BadRequest)?;
        let define_err = |e: DefineError| match e {
            DefineError::Conflict { name, existing } => ErrorReply::BucketConflict {
                bucket: name,
                existing,
            },
            DefineError::Invalid(why) => ErrorReply::BadRequest(why),
            DefineError::Storage(e) => ErrorReply::Internal(e.to_string()),
        };
        if self
            .buckets
            .define(&name, props)
            .await
            .map_err(define_err)?
        {
            // Keys of the bucket may be here already (replica writes of a
            // coordinator that knew it first): they move to its N.
            self.membership.touch();
        }
        let others: Vec<NodeId> = self
            .membership
            .members()
            .into_iter()
            .map(|m| m.id)
            .filter(|id| *id != self.me)
            .collect();
        let mut calls = tokio::task::JoinSet::new();
        for node in &others {
            let (transport, node) = (self.transport.clone(), node.clone());
            let req = PeerRequest::DefineBucket {
                name: name.clone(),
                props,
            };
            let timeout = self.replication.request_timeout;
            calls.spawn(async move { (node.clone(), transport.call(&node, req, timeout).await) });
        }
        let mut missing = Vec::new();
        while let Some(joined) = calls.join_next().await {
            let Ok((node, answer)) = joined else { continue };
            match answer {
                Ok(PeerResponse::Ack) => {}
                Ok(PeerResponse::Conflict(existing)) => {
                    return Err(ErrorReply::BucketConflict {
                        bucket: name,
                        existing,
                    })
                }
                Ok(other) => missing.push(format!("{node} ({other:?})")),
                Err(e) => missing.push(format!("{node} ({e})")),
            }
        }
        if missing.is_empty() {
            Ok(Response::BucketCreated)
        } else {
            Err(ErrorReply::Unavailable(format!(
                "bucket {name:?} is stored on {} of {} members; not confirmed by {}. \
                 It spreads by gossip; create it again to confirm",
                1 + others.len() - missing.len(),
                1 + others.len(),
                missing.join(", ")
            )))
        }
    }

    fn cluster_status(&self) -> ClusterStatus {
        let view = self.membership.view();
        let report = self.transfers.report();
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
                    reachable: m.state != MemberState::Removed && self.liveness.is_up(&m.id),
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
        }
    }

    /// Persists the member list after an admin change.
    async fn save(&self) -> Result<(), ErrorReply> {
        self.member_store
            .save()
            .await
            .map_err(|e| ErrorReply::Internal(format!("cannot persist the member list: {e}")))
    }

    /// The largest N of any bucket: the fewest owners the cluster needs.
    fn max_n(&self) -> usize {
        self.buckets
            .all()
            .into_iter()
            .map(|(_, p)| usize::from(p.n))
            .max()
            .unwrap_or(1)
    }

    /// Refuses a change that would leave fewer owners than `max_n`.
    fn check_capacity(&self, without: &NodeId, what: &str) -> Result<(), ErrorReply> {
        let view = self.membership.view();
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
        match self.membership.my_state() {
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
        if self.membership.view().in_transition() {
            return Err(ErrorReply::Refused(
                "another topology change is in progress; retry once it completes \
                 (kvorum admin status)"
                    .into(),
            ));
        }
        self.check_capacity(&self.me, "leave")?;
        self.membership.set_my_state(MemberState::Leaving);
        self.save().await?;
        Ok(Response::Accepted(format!(
            "{} is leaving: its ranges stream to their new owners, then it is removed \
             (watch kvorum admin status)",
            self.me
        )))
    }

    async fn remove(&self, node: &str) -> Result<Response, ErrorReply> {
        let id = NodeId::new(node);
        let Some(m) = self.membership.get(&id) else {
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
        if self.liveness.is_up(&id) {
            return Err(ErrorReply::Refused(format!(
                "{node} is up as this node sees it: decommission it with kvorum admin leave \
                 on that node, or stop it first"
            )));
        }
        // A joining node owns nothing yet: it goes at once.
        if m.state == MemberState::Joining {
            self.membership.mark(&id, MemberState::Removed);
            self.save().await?;
            return Ok(Response::Accepted(format!("{node} (joining) removed")));
        }
        if self.membership.view().in_transition() {
            return Err(ErrorReply::Refused(
                "another topology change is in progress; retry once it completes \
                 (kvorum admin status), or remove the joining node it waits for"
                    .into(),
            ));
        }
        self.check_capacity(&id, "be removed")?;
        self.membership.mark(&id, MemberState::Leaving);
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
        self.membership.add_seeds([seed]);
        self.membership.set_my_state(MemberState::Joining);
        self.save().await?;
        Ok(Response::Accepted(format!(
            "{} is joining through {seed}: it streams in its ranges, then serves them",
            self.me
        )))
    }

    fn ring_ranges(&self, n: Option<u8>) -> Result<Response, ErrorReply> {
        let ring = self.membership.ring();
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

    fn check_key(&self, bucket: &str, key: &[u8]) -> Result<(), ErrorReply> {
        if bucket.is_empty() {
            return Err(ErrorReply::BadRequest("empty bucket name".into()));
        }
        if bucket.len() > self.limits.max_bucket_bytes {
            return Err(too_large(
                Limit::Bucket,
                bucket.len(),
                self.limits.max_bucket_bytes,
            ));
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(too_large(Limit::Key, key.len(), self.limits.max_key_bytes));
        }
        Ok(())
    }

    fn timeout(&self, asked_ms: Option<u32>) -> Duration {
        match asked_ms {
            Some(0) | None => self.replication.request_timeout,
            // Bounded so a client cannot park work on the node for hours.
            Some(ms) => Duration::from_millis(ms.into()).min(self.limits.max_request_timeout),
        }
    }

    fn check_context_size(&self, ctx: &CausalContext) -> Result<(), ErrorReply> {
        if ctx.0.len() > MAX_CONTEXT_BYTES {
            return Err(too_large(Limit::Context, ctx.0.len(), MAX_CONTEXT_BYTES));
        }
        Ok(())
    }

    fn context(&self, ctx: &CausalContext) -> Result<DotContext, ErrorReply> {
        self.check_context_size(ctx)?;
        register::decode_context(&ctx.0).map_err(|e| ErrorReply::InvalidContext(e.to_string()))
    }

    fn preference_list(&self, skey: &[u8], n: u8) -> Result<Vec<NodeId>, ErrorReply> {
        let pref = self.membership.ring().preference_list(skey, n.into());
        if pref.is_empty() {
            return Err(ErrorReply::Unavailable("the ring is empty".into()));
        }
        Ok(pref)
    }

    /// Reads a key at quorum R and returns the merge of the answers
    /// (repairing stale replicas), with what the replicas did.
    ///
    /// With `at_least` (a session's version), R answers are not enough:
    /// the coordinator keeps merging answers, up to every replica, until
    /// the merge's version dominates `at_least`; if the replicas that
    /// answered in time (or every one not suspected down) do not reach it,
    /// the read fails with [`ErrorReply::Stale`] rather than answer older
    /// data.
    async fn read(
        &self,
        skey: Vec<u8>,
        props: BucketProps,
        r: usize,
        timeout: Duration,
        repair_before_answer: bool,
        at_least: Option<&Version>,
    ) -> Result<(State, ReadReport), ErrorReply> {
        let bucket_type = props.bucket_type;
        let pref = self.preference_list(&skey, props.n)?;
        let mut tracker = QuorumTracker::unasked(r, &pref);
        let (tx, mut rx) = mpsc::channel(pref.len());
        // R replicas are asked first (R answers are what the quorum needs;
        // asking all N would cost a third more peer calls at N = 3, R = 2),
        // every replica on a `read_repair_chance` share of reads so that the
        // others are read-repaired too. Another replica is asked when one
        // fails, when R have not answered after `read_retry_after` (a
        // speculative retry: a stalled replica costs that delay, not the
        // timeout), and when the answers do not reach a session's version.
        let mut unasked = self.read_order(&pref);
        let first = if rand::random::<f64>() < self.replication.read_repair_chance {
            pref.len()
        } else {
            r
        };
        for node in unasked
            .drain(..first.min(unasked.len()))
            .collect::<Vec<_>>()
        {
            self.ask_read(&mut tracker, node, &skey, timeout, &tx);
        }
        // The state each replica that answered holds (none: the empty state).
        let mut answers: Vec<(NodeId, State)> = Vec::new();
        let mut merged = State::empty(bucket_type);
        let deadline = tokio::time::Instant::now() + timeout;
        // (Within half the request's time, so that a short timeout still
        // leaves room for the retry.)
        let retry_after = self.replication.read_retry_after.min(timeout / 2);
        let mut retry_at = tokio::time::Instant::now() + retry_after;
        let usable = move |s: &State| s.validate().is_ok() && s.bucket_type() == bucket_type;
        let reached = |m: &State| at_least.is_none_or(|v| m.version().dominates(v));
        loop {
            let (ok, pending) = tracker.group_counts(&pref);
            // Too few asked to still meet R (some failed): ask as many more.
            // R met below a session's version: ask every replica left.
            let more = if ok + pending < r {
                r - ok - pending
            } else if ok >= r && !reached(&merged) {
                unasked.len()
            } else {
                0
            };
            if more > 0 && !unasked.is_empty() {
                for node in unasked.drain(..more.min(unasked.len())).collect::<Vec<_>>() {
                    self.ask_read(&mut tracker, node, &skey, timeout, &tx);
                }
                continue;
            }
            match tracker.status() {
                QuorumStatus::Failed => break,
                QuorumStatus::Met if reached(&merged) => break,
                // The replicas still silent are all suspected down: waiting
                // for them would only spend the session's time.
                QuorumStatus::Met if tracker.pending().all(|n| !self.liveness.is_up(n)) => break,
                _ => {}
            }
            let speculate = !unasked.is_empty() && tracker.status() == QuorumStatus::Pending;
            let until = if speculate {
                retry_at.min(deadline)
            } else {
                deadline
            };
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some((node, Ok(state)))) => {
                    match state.unwrap_or_else(|| State::empty(bucket_type)) {
                        s if usable(&s) => {
                            tracker.record(&node, ReplicaOutcome::Ok);
                            // Types were checked: the merge cannot fail.
                            let _ = merged.merge(s.clone());
                            answers.push((node, s));
                        }
                        _ => tracker.record(
                            &node,
                            ReplicaOutcome::Failed("inconsistent state or type".into()),
                        ),
                    }
                }
                Ok(Some((node, Err(outcome)))) => tracker.record(&node, outcome),
                // (This loop holds a sender: not reached.)
                Ok(None) => break,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    // A speculative retry: R answers are late.
                    if let Some(node) = unasked.pop_front() {
                        self.metrics
                            .counter(metrics::READ_SPECULATIVE_RETRIES, &[])
                            .increment(1);
                        self.ask_read(&mut tracker, node, &skey, timeout, &tx);
                    }
                    retry_at = tokio::time::Instant::now() + retry_after;
                }
                Err(_) => {
                    // The deadline: whoever has not answered timed out.
                    tracker.expire();
                    break;
                }
            }
        }
        // Late answers go to the repair below, which ends once every replica
        // asked answered (every sender is gone) or at the deadline.
        drop(tx);
        self.count_replies("read", &tracker);
        if tracker.status() != QuorumStatus::Met {
            return Err(ErrorReply::Quorum(tracker.failure(OpKind::Read)));
        }
        let report = ReadReport {
            asked: u8::try_from(tracker.asked_count()).unwrap_or(u8::MAX),
            r: u8::try_from(r).unwrap_or(u8::MAX),
            answered: u8::try_from(answers.len()).unwrap_or(u8::MAX),
            agreed: answers.iter().all(|(_, s)| *s == merged),
        };
        if !reached(&merged) {
            return Err(ErrorReply::Stale(StaleRead {
                asked: report.asked,
                answered: report.answered,
                replicas: tracker.failure(OpKind::Read).replicas,
            }));
        }
        // Read repair (Dynamo §4.7 / §5): replicas whose state differs from
        // the merge get the merge, now if the request asked, else after the
        // answer; replicas that answer after the quorum are repaired too.
        let repair = Repair {
            me: self.me.clone(),
            key: skey,
            replica: self.replica.clone(),
            transport: self.transport.clone(),
            deadline,
            sent: self.metrics.counter(metrics::READ_REPAIRS, &[]),
        };
        let needed_repair = self.metrics.counter(metrics::READS_REPAIRED, &[]);
        let mut repaired = Vec::new();
        let mut repaired_before = false;
        if repair_before_answer {
            let stale: Vec<NodeId> = answers
                .iter()
                .filter(|(_, s)| *s != merged)
                .map(|(n, _)| n.clone())
                .collect();
            repair.send(&merged, &stale).await;
            repaired_before = !stale.is_empty();
            repaired = answers.iter().map(|(n, _)| n.clone()).collect();
        }
        let answer_state = merged.clone();
        let answer = merged.clone();
        tokio::spawn(async move {
            // Late answers, until every replica answered or the deadline.
            // (A replica that answered with an error is skipped, not the end.)
            while let Ok(Some((node, answer))) =
                tokio::time::timeout_at(repair.deadline, rx.recv()).await
            {
                let Ok(state) = answer else { continue };
                let s = state.unwrap_or_else(|| State::empty(bucket_type));
                if usable(&s) && merged.merge(s.clone()).is_ok() {
                    answers.push((node, s));
                }
            }
            let stale: Vec<NodeId> = answers
                .iter()
                .filter(|(n, s)| *s != merged && !(repaired.contains(n) && answer_state == merged))
                .map(|(n, _)| n.clone())
                .collect();
            if repaired_before || !stale.is_empty() {
                needed_repair.increment(1);
            }
            repair.send(&merged, &stale).await;
        });
        Ok((answer, report))
    }

    /// The replicas of `pref` in the order a read asks them: this node
    /// first (its answer costs no round trip), then the replicas the failure
    /// detector sees up, from a turn that moves with every read (so a hot
    /// key's reads spread over its replicas), then the suspected ones.
    fn read_order(&self, pref: &[NodeId]) -> std::collections::VecDeque<NodeId> {
        let mut order = std::collections::VecDeque::with_capacity(pref.len());
        let (mut up, mut down): (Vec<&NodeId>, Vec<&NodeId>) = pref
            .iter()
            .filter(|n| **n != self.me)
            .partition(|n| self.liveness.is_up(n));
        if !up.is_empty() {
            let turn = self
                .read_turn
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let k = turn % up.len();
            up.rotate_left(k);
        }
        if pref.contains(&self.me) {
            order.push_back(self.me.clone());
        }
        order.extend(up.drain(..).chain(down.drain(..)).cloned());
        order
    }

    /// Asks `node` for its state of `skey`; the answer arrives on `tx`
    /// (this node's own at once).
    fn ask_read(
        &self,
        tracker: &mut QuorumTracker,
        node: NodeId,
        skey: &[u8],
        timeout: Duration,
        tx: &mpsc::Sender<(NodeId, Result<Option<State>, ReplicaOutcome>)>,
    ) {
        tracker.ask(&node);
        if node == self.me {
            let res = self
                .replica
                .read(skey)
                .map_err(|e| ReplicaOutcome::Failed(e.to_string()));
            // The channel holds one answer per replica: this one fits.
            let _ = tx.try_send((node, res));
            return;
        }
        let tx = tx.clone();
        let transport = self.transport.clone();
        let key = skey.to_vec();
        tokio::spawn(async move {
            let res = match transport
                .call(&node, PeerRequest::Read { key }, timeout)
                .await
            {
                Ok(PeerResponse::State(s)) => Ok(s),
                Ok(PeerResponse::Error(e)) => Err(ReplicaOutcome::Failed(e)),
                Ok(other) => Err(ReplicaOutcome::Failed(format!(
                    "unexpected answer {other:?}"
                ))),
                Err(e) => Err(outcome_of(&e)),
            };
            let _ = tx.send((node, res)).await;
        });
    }

    async fn write(
        &self,
        req: Request,
        skey: Vec<u8>,
        props: BucketProps,
        update: Update,
        q: WriteQuorum,
        forwarded: bool,
    ) -> Result<Response, ErrorReply> {
        let WriteQuorum { w, timeout, strict } = q;
        // One reading of the view for the whole request.
        let view = self.membership.view();
        let n = usize::from(props.n);
        let pref = view.read_ring.preference_list(&skey, n);
        if pref.is_empty() {
            return Err(ErrorReply::Unavailable("the ring is empty".into()));
        }
        if !pref.contains(&self.me) {
            if forwarded {
                return Err(ErrorReply::Unavailable(format!(
                    "{} is not a replica of the key (ring views differ); retry",
                    self.me
                )));
            }
            return self.forward(req, &pref, timeout).await;
        }
        // A joint quorum while the replicas of the key change: W among its
        // current replicas, W among its future ones (during a topology
        // change), and W among its replicas before the last change (until
        // every live member has seen that change: a coordinator a gossip
        // round behind still reads there). The write reaches every group,
        // so it stays on W replicas whichever view a reader holds.
        let mut groups = vec![(pref.clone(), w)];
        if view.in_transition() {
            let future = view.write_ring.preference_list(&skey, n);
            if future != pref {
                groups.push((future.clone(), w.min(future.len())));
            }
        }
        if let Some(prev) = &view.prev_read_ring {
            let before = prev.preference_list(&skey, n);
            if before != pref && !before.is_empty() {
                groups.push((before.clone(), w.min(before.len())));
            }
        }
        let mut targets: Vec<NodeId> = Vec::new();
        for (g, _) in &groups {
            for node in g {
                if !targets.contains(node) {
                    targets.push(node.clone());
                }
            }
        }
        let mut tracker = QuorumTracker::joint(groups);
        let local = tokio::time::timeout(
            timeout,
            self.replica
                .coordinate(skey.clone(), props.bucket_type, update, lww_clock_ms()),
        );
        let ((state, own, version), durable) = match local.await {
            Err(_) => {
                return Err(ErrorReply::Internal(
                    "local write timed out (storage stalled)".into(),
                ))
            }
            Ok(Ok(x)) => x,
            Ok(Err(ReplicaError::Value(ValueError::TooLarge { what, size, max }))) => {
                return Err(ErrorReply::TooLarge { what, size, max });
            }
            Ok(Err(ReplicaError::Value(ValueError::Context(e)))) => {
                return Err(ErrorReply::InvalidContext(e.to_string()))
            }
            Ok(Err(e)) => return Err(ErrorReply::Internal(format!("local write failed: {e}"))),
        };
        // Sloppy quorum (Dynamo §4.6): a replica that is down, or that fails
        // fast, is replaced by the next healthy node clockwise past the
        // preference list, which keeps the write as a hint for it and counts
        // toward W. Strict requests use the preference list only.
        let mut fallbacks: std::collections::VecDeque<NodeId> = if strict {
            Default::default()
        } else {
            // Not a leaving node: it is about to go, with its hints.
            let leaving = |id: &NodeId| {
                view.members
                    .get(id)
                    .is_some_and(|m| m.state == MemberState::Leaving)
            };
            view.read_ring
                .walk(&skey)
                .filter(|n| !targets.contains(n) && !leaving(n))
                .cloned()
                .collect()
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fan = Fanout {
            key: skey,
            state,
            timeout,
            transport: self.transport.clone(),
            tx,
        };
        for node in targets.iter().filter(|n| **n != self.me) {
            // A suspected replica is replaced by a fallback; with no
            // fallback left it is still tried, since a suspicion can be
            // false (a starved heartbeat) and trying costs one timeout.
            if !strict
                && !self.liveness.is_up(node)
                && self.hand_to_fallback(&fan, &mut tracker, &mut fallbacks, node)
            {
                tracker.record(
                    node,
                    ReplicaOutcome::Unreachable("down (failure detector)".into()),
                );
            } else {
                fan.direct(node.clone());
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        // The answer waits for this replica's own outcome too (its sync
        // overlaps the others'): a write is acknowledged only once the
        // coordinating node holds it durably, so a read through this node
        // sees it whatever R and W (docs/consistency.md), and an error names
        // every replica that holds the write.
        // This replica's copy counts once it is durable; the other replicas
        // got the state meanwhile (their syncs overlap with this one). It
        // has no fallback: a store that failed a commit takes no writes
        // (storage::run_batch).
        let mut durable = std::pin::pin!(durable.wait());
        let mut local: Option<ReplicaOutcome> = None;
        while tracker.status() == QuorumStatus::Pending || local.is_none() {
            let answer = tokio::select! {
                done = &mut durable, if local.is_none() => {
                    let outcome = match done {
                        Ok(()) => ReplicaOutcome::Ok,
                        Err(e) => ReplicaOutcome::Failed(format!("local write failed: {e}")),
                    };
                    tracker.record(&self.me, outcome.clone());
                    local = Some(outcome);
                    continue;
                }
                answer = tokio::time::timeout_at(deadline, rx.recv()) => answer,
            };
            match answer {
                Ok(Some((node, owner, outcome))) => {
                    let failed_fast = matches!(
                        outcome,
                        ReplicaOutcome::Unreachable(_) | ReplicaOutcome::Failed(_)
                    );
                    tracker.record(&node, outcome);
                    if failed_fast && !strict {
                        let owner = owner.unwrap_or(node);
                        self.hand_to_fallback(&fan, &mut tracker, &mut fallbacks, &owner);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    // The deadline: whoever has not answered timed out.
                    tracker.expire();
                    break;
                }
            }
        }
        self.count_replies("write", &tracker);
        // The coordinator's own write failed or did not finish in time: the
        // others may hold it; the outcome is unknown, as after a timeout.
        match local {
            Some(ReplicaOutcome::Failed(e)) => return Err(ErrorReply::Internal(e)),
            None => {
                return Err(ErrorReply::Internal(
                    "local write timed out (storage stalled)".into(),
                ))
            }
            Some(_) => {}
        }
        if tracker.status() != QuorumStatus::Met {
            return Err(ErrorReply::Quorum(tracker.failure(OpKind::Write)));
        }
        Ok(Response::Written {
            context: CausalContext(own),
            version,
        })
    }

    /// Sends the write for `owner` to the next fallback, as a hint: the
    /// first one the failure detector sees up, or, if every one left is
    /// suspected, the first of those (a suspicion may be false, and failing
    /// the write without trying is worse than one more timeout). Returns
    /// whether a fallback was found.
    fn hand_to_fallback(
        &self,
        fan: &Fanout,
        tracker: &mut QuorumTracker,
        fallbacks: &mut std::collections::VecDeque<NodeId>,
        owner: &NodeId,
    ) -> bool {
        fallbacks.retain(|f| *f != self.me && !tracker.asked(f));
        let pick = fallbacks
            .iter()
            .position(|f| self.liveness.is_up(f))
            .or((!fallbacks.is_empty()).then_some(0));
        match pick.and_then(|i| fallbacks.remove(i)) {
            Some(f) => {
                tracker.add(&f, owner);
                fan.hinted(f, owner.clone());
                true
            }
            None => false,
        }
    }

    /// Hands a write to a replica of its key, trying them in preference order.
    async fn forward(
        &self,
        req: Request,
        pref: &[NodeId],
        timeout: Duration,
    ) -> Result<Response, ErrorReply> {
        let mut tracker = QuorumTracker::new(1, pref);
        // The replica runs its own quorum with `timeout`: wait a little longer
        // so its typed answer (success or quorum error) arrives first.
        let wait = timeout + FORWARD_SLACK;
        let mut order: Vec<&NodeId> = pref.iter().collect();
        order.sort_by_key(|n| !self.liveness.is_up(n)); // stable: up nodes first
        for node in order {
            match self
                .transport
                .call(node, PeerRequest::Forward(req.clone()), wait)
                .await
            {
                Ok(PeerResponse::Forwarded(resp)) => return Ok(resp),
                Ok(PeerResponse::Error(e)) => tracker.record(node, ReplicaOutcome::Failed(e)),
                Ok(other) => tracker.record(
                    node,
                    ReplicaOutcome::Failed(format!("unexpected answer {other:?}")),
                ),
                // Only a forward that was never sent may go to another
                // replica: one that was sent may have been applied, and a
                // second copy would be a spurious sibling.
                Err(e @ TransportError::Unreachable(_)) => tracker.record(node, outcome_of(&e)),
                Err(e) => {
                    tracker.record(node, outcome_of(&e));
                    break;
                }
            }
        }
        self.count_replies("write", &tracker);
        Err(ErrorReply::Quorum(tracker.failure(OpKind::Write)))
    }

    /// Serves a peer's request to this replica.
    pub async fn serve_peer(&self, req: PeerRequest) -> PeerResponse {
        // A removed node takes no more data: it would hold it for nobody
        // (writes are refused in serve_write, alone or in a batch).
        if matches!(req, PeerRequest::MergeBatch { .. })
            && self.membership.my_state() == MemberState::Removed
        {
            return PeerResponse::Error(format!("{} was removed from the cluster", self.me));
        }
        match req {
            PeerRequest::Batch(bodies) if bodies.len() > crate::rpc::peer::MAX_BATCH => {
                PeerResponse::Error(format!(
                    "a batch of {} requests: at most {} are taken",
                    bodies.len(),
                    crate::rpc::peer::MAX_BATCH
                ))
            }
            PeerRequest::Batch(bodies) => {
                let answers = bodies.iter().map(|body| {
                    let req = postcard::from_bytes::<PeerRequest>(body);
                    async move {
                        match req {
                            Ok(
                                req @ (PeerRequest::Write { .. } | PeerRequest::HintedWrite { .. }),
                            ) => self.serve_write(req).await,
                            Ok(PeerRequest::Read { key }) => self.serve_read(&key),
                            Ok(_) => PeerResponse::Error(
                                "a batch holds only writes, hinted writes and reads".into(),
                            ),
                            Err(e) => PeerResponse::Error(format!("malformed request: {e}")),
                        }
                    }
                });
                // What the asking node reads (transport::Link::exchange_frame).
                let max = self
                    .limits
                    .max_frame_bytes
                    .saturating_mul(crate::net::PEER_FRAME_FACTOR);
                crate::rpc::peer::batch_answer(join_all(answers.collect()).await, max)
            }
            PeerRequest::Gossip { members, buckets } => {
                self.membership.merge(members);
                crate::cluster::gossip::merge_buckets(&self.buckets, &self.membership, buckets)
                    .await;
                PeerResponse::Members {
                    members: self.membership.all_members(),
                    buckets: self.buckets.defined(),
                }
            }
            PeerRequest::DefineBucket { name, props } => {
                match self.buckets.define(&name, props).await {
                    Ok(changed) => {
                        if changed {
                            self.membership.touch();
                        }
                        PeerResponse::Ack
                    }
                    Err(DefineError::Conflict { existing, .. }) => PeerResponse::Conflict(existing),
                    Err(e) => PeerResponse::Error(e.to_string()),
                }
            }
            PeerRequest::Read { key } => self.serve_read(&key),
            req @ (PeerRequest::Write { .. } | PeerRequest::HintedWrite { .. }) => {
                self.serve_write(req).await
            }
            PeerRequest::Forward(req) => PeerResponse::Forwarded(self.handle(req, true).await),
            PeerRequest::Ping => PeerResponse::Pong,
            PeerRequest::Reap { key, hash } => match self.replica.reap(key, hash).await {
                Ok(_) => PeerResponse::Ack,
                Err(e) => PeerResponse::Error(e.to_string()),
            },
            ref aae @ (PeerRequest::AaeBranches { .. }
            | PeerRequest::AaeLeaves { .. }
            | PeerRequest::AaeKeys { .. }) => match self.anti_entropy.serve(aae).await {
                Some(r) => r,
                None => PeerResponse::Error("anti-entropy not running".into()),
            },
            PeerRequest::Stream {
                from,
                view,
                after,
                max_bytes,
            } => {
                self.transfers
                    .serve_stream(from, view, after, max_bytes)
                    .await
            }
            PeerRequest::Digest { keys } => self.transfers.serve_digest(&keys),
            PeerRequest::MergeBatch { records } => self.transfers.serve_merge(records).await,
        }
    }

    /// Serves a `Read` (alone or in a batch).
    fn serve_read(&self, key: &[u8]) -> PeerResponse {
        match self.replica.read(key) {
            Ok(state) => PeerResponse::State(state),
            Err(e) => PeerResponse::Error(e.to_string()),
        }
    }

    /// Serves a `Write` or a `HintedWrite` (alone or in a batch).
    async fn serve_write(&self, req: PeerRequest) -> PeerResponse {
        if self.membership.my_state() == MemberState::Removed {
            return PeerResponse::Error(format!("{} was removed from the cluster", self.me));
        }
        match req {
            PeerRequest::Write { key, state } => match self.replica.merge(key, state).await {
                Ok(()) => PeerResponse::Ack,
                Err(e) => PeerResponse::Error(e.to_string()),
            },
            PeerRequest::HintedWrite { owner, key, state } => match state.validate() {
                Err(e) => PeerResponse::Error(e.to_string()),
                Ok(()) => match self.hints.add(&owner, &key, state).await {
                    Ok(()) => PeerResponse::Ack,
                    Err(e) => PeerResponse::Error(e.to_string()),
                },
            },
            _ => PeerResponse::Error("not a write".into()),
        }
    }
}

/// The replica writes of one coordinated write; each answer comes back on
/// `tx` as (node, owner if it was a hint, outcome). Detached tasks: a replica
/// that answers after the quorum still gets the write (each task ends at the
/// deadline either way).
struct Fanout {
    key: Vec<u8>,
    state: State,
    timeout: Duration,
    transport: Arc<dyn Transport>,
    tx: mpsc::UnboundedSender<(NodeId, Option<NodeId>, ReplicaOutcome)>,
}

impl Fanout {
    fn direct(&self, node: NodeId) {
        let req = PeerRequest::Write {
            key: self.key.clone(),
            state: self.state.clone(),
        };
        self.send(node, None, req);
    }

    fn hinted(&self, fallback: NodeId, owner: NodeId) {
        let req = PeerRequest::HintedWrite {
            owner: owner.clone(),
            key: self.key.clone(),
            state: self.state.clone(),
        };
        self.send(fallback, Some(owner), req);
    }

    fn send(&self, node: NodeId, owner: Option<NodeId>, req: PeerRequest) {
        let (tx, transport, timeout) = (self.tx.clone(), self.transport.clone(), self.timeout);
        tokio::spawn(async move {
            let outcome = match transport.call(&node, req, timeout).await {
                Ok(PeerResponse::Ack) => ReplicaOutcome::Ok,
                Ok(PeerResponse::Error(e)) => ReplicaOutcome::Failed(e),
                Ok(other) => ReplicaOutcome::Failed(format!("unexpected answer {other:?}")),
                Err(e) => outcome_of(&e),
            };
            let _ = tx.send((node, owner, outcome));
        });
    }
}

/// Sends a merged state to stale replicas of a key (read repair).
struct Repair {
    me: NodeId,
    key: Vec<u8>,
    replica: Replica,
    transport: Arc<dyn Transport>,
    deadline: tokio::time::Instant,
    /// Counts the repairs sent.
    sent: ::metrics::Counter,
}

impl Repair {
    /// Merges `state` into each of `stale` (this node locally), waiting for
    /// the acknowledgements until the deadline. Failures are logged: the
    /// next read or anti-entropy repairs what this one could not.
    async fn send(&self, state: &State, stale: &[NodeId]) {
        self.sent.increment(stale.len() as u64);
        let mut calls = tokio::task::JoinSet::new();
        for node in stale {
            if *node == self.me {
                if let Err(e) = self.replica.merge(self.key.clone(), state.clone()).await {
                    tracing::warn!(error = %e, "local read repair failed");
                }
                continue;
            }
            let (transport, node) = (self.transport.clone(), node.clone());
            let req = PeerRequest::Write {
                key: self.key.clone(),
                state: state.clone(),
            };
            let left = self
                .deadline
                .saturating_duration_since(tokio::time::Instant::now());
            calls.spawn(async move {
                if let Err(e) = transport.call(&node, req, left).await {
                    tracing::debug!(%node, error = %e, "read repair not delivered");
                }
            });
        }
        while calls.join_next().await.is_some() {}
    }
}

/// R or W: the request's, else the bucket's default; within 1..=N.
fn quorum(asked: Option<u8>, default: u8, n: u8) -> Result<usize, ErrorReply> {
    match asked.unwrap_or(default) {
        q if (1..=n).contains(&q) => Ok(q.into()),
        q => Err(ErrorReply::InvalidQuorum { requested: q, n }),
    }
}

fn wrong_type(bucket: &str, props: BucketProps, op: &str) -> ErrorReply {
    ErrorReply::WrongType {
        bucket: bucket.to_string(),
        bucket_type: props.bucket_type,
        op: op.to_string(),
    }
}

fn too_large(what: Limit, size: usize, max: usize) -> ErrorReply {
    ErrorReply::TooLarge {
        what,
        size: size as u64,
        max: max as u64,
    }
}

/// Runs `futures` concurrently on this task and returns their outputs in
/// order (each is polled again on every wake-up of the task: for the small
/// batches of [`PeerRequest::Batch`]).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<NodeId> {
        v.iter().map(|s| NodeId::new(*s)).collect()
    }

    #[test]
    fn quorum_is_met_after_enough_successes() {
        let mut t = QuorumTracker::new(2, &ids(&["a", "b", "c"]));
        assert_eq!(t.status(), QuorumStatus::Pending);
        t.record(&NodeId::new("a"), ReplicaOutcome::Ok);
        assert_eq!(t.status(), QuorumStatus::Pending);
        t.record(&NodeId::new("c"), ReplicaOutcome::Ok);
        assert_eq!(t.status(), QuorumStatus::Met);
    }

    #[test]
    fn quorum_fails_as_soon_as_it_cannot_be_met() {
        let mut t = QuorumTracker::new(2, &ids(&["a", "b", "c"]));
        t.record(&NodeId::new("a"), ReplicaOutcome::Ok);
        t.record(
            &NodeId::new("b"),
            ReplicaOutcome::Unreachable("down".into()),
        );
        assert_eq!(t.status(), QuorumStatus::Pending);
        t.record(&NodeId::new("c"), ReplicaOutcome::Timeout);
        assert_eq!(t.status(), QuorumStatus::Failed);
        let f = t.failure(OpKind::Write);
        assert_eq!((f.needed, f.succeeded), (2, 1));
        assert_eq!(
            f.replicas[1],
            ("b".to_string(), ReplicaOutcome::Unreachable("down".into()))
        );
        assert!(f.to_string().contains("1 of 2"), "{f}");
    }

    #[test]
    fn duplicate_and_unknown_answers_are_ignored() {
        let mut t = QuorumTracker::new(2, &ids(&["a", "b"]));
        t.record(&NodeId::new("a"), ReplicaOutcome::Ok);
        t.record(&NodeId::new("a"), ReplicaOutcome::Ok);
        t.record(&NodeId::new("zz"), ReplicaOutcome::Ok);
        assert_eq!(t.status(), QuorumStatus::Pending);
        // Pending replicas are reported as timed out.
        assert_eq!(
            t.failure(OpKind::Read).replicas[1].1,
            ReplicaOutcome::Timeout
        );
    }

    #[test]
    fn quorum_larger_than_the_replica_list_fails_at_once() {
        let t = QuorumTracker::new(3, &ids(&["a", "b"]));
        assert_eq!(t.status(), QuorumStatus::Failed);
    }
}
