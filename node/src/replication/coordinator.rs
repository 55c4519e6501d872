//! The coordinator's dispatch: one client data request (get, fetch, put,
//! delete, typed update) is checked ([`super::checks`]) and handed to the
//! read path ([`super::read`]) or the write path ([`super::write`]).
//! Admin requests are served by [`crate::cluster::admin`], peer requests by
//! [`super::peer_router`].

use super::checks::wrong_type;
use super::quorum::{quorum, QuorumStatus, QuorumTracker};
use crate::access::contexts::ContextKeys;
use crate::cluster::buckets::Buckets;
use crate::cluster::liveness::Liveness;
use crate::cluster::membership::Membership;
use crate::data::register::{self, DotContext, RegValue};
use crate::data::value::{self, Body, Reading, State, Update};
use crate::metrics::{self, Metrics};
use crate::replication::replica::Replica;
use crate::replication::settings::{Limits, Replication};
use crate::rpc::transport::Transport;
use crate::util::NodeEnv;
use kvorum_client::proto::{
    CausalContext, Condition, ErrorReply, ItemKey, ItemOp, ReplicaOutcome, Request, Response,
};
use kvorum_client::{BucketProps, BucketType, ReadReport, Version};
use kvorum_ring::item;
use kvorum_ring::NodeId;
use std::{sync::Arc, time::Duration};

/// W, timeout and strictness of one write.
#[derive(Debug, Clone, Copy)]
pub(super) struct WriteQuorum {
    pub(super) w: usize,
    pub(super) timeout: Duration,
    pub(super) strict: bool,
}

/// Largest causal context (or version to read at) a request may carry. A
/// context holds about one entry per node that coordinated writes of the
/// key: a few hundred bytes.
pub(super) const MAX_CONTEXT_BYTES: usize = 64 * 1024;

/// Time a forwarding node keeps for the replica's answer to come back: the
/// replica runs the write in what is left of the request's time less this,
/// so the whole forwarded write ends by the request's timeout (the
/// caller's deadline, docs/data-model.md).
pub(super) const FORWARD_MARGIN: Duration = Duration::from_millis(100);

/// Coordinates client data requests on this node.
pub struct Coordinator {
    pub(super) me: NodeId,
    pub(super) buckets: Buckets,
    pub(super) replica: Replica,
    pub(super) membership: Arc<Membership>,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) liveness: Arc<Liveness>,
    pub(super) replication: Replication,
    pub(super) limits: Limits,
    pub(super) metrics: Arc<Metrics>,
    /// Seals the contexts handed to clients and opens those they return.
    pub(super) contexts: ContextKeys,
    /// The node's clocks (LWW stamps, tombstones) and randomness (which
    /// reads ask every replica).
    pub(super) env: NodeEnv,
    /// Turns of the remote replicas a read asks first (spreads a hot key's
    /// reads over its replicas).
    pub(super) read_turn: std::sync::atomic::AtomicUsize,
    /// One permit per watch this node may run at once.
    pub(super) watches: Arc<tokio::sync::Semaphore>,
    /// Runs one key's conditional writes one at a time.
    pub(super) condition_locks: super::conditions::ConditionLocks,
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
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// The cluster's context secrets.
    pub contexts: ContextKeys,
    /// The node's clocks and randomness.
    pub env: NodeEnv,
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
            metrics,
            contexts,
            env,
        } = services;
        Self {
            me: membership.me_id().clone(),
            buckets,
            replica,
            membership,
            transport,
            liveness,
            replication,
            limits,
            metrics,
            contexts,
            env,
            read_turn: Default::default(),
            watches: Arc::new(tokio::sync::Semaphore::new(limits.max_watches)),
            condition_locks: Default::default(),
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
    pub(super) fn count_replies(&self, op: &'static str, tracker: &QuorumTracker) {
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
            Request::Range(query) => self.range(query).await,
            Request::Batch(ops) => self.batch(ops, forwarded).await,
            Request::Watch { target, timeout_ms } => self.watch(target, timeout_ms).await,
            Request::DeleteRange { query, options } => self.delete_range(query, options).await,
            Request::Placement { known } => {
                let view = self.membership.view();
                if known == Some(crate::cluster::placement::view_id(&view)) {
                    return Ok(Response::Unchanged);
                }
                let placement = crate::cluster::placement::placement(&view, self.replication.n);
                Ok(Response::Placement(Box::new(placement)))
            }
            Request::ListPartitions {
                bucket,
                after,
                limit,
                timeout_ms,
            } => {
                self.list_partitions(bucket, after, limit, timeout_ms)
                    .await
            }
            req => match item_request(req) {
                Some((key, op)) => self.serve_item(key, op, forwarded).await,
                // Admin requests (`Request::is_admin`) are served by the
                // node's admin service, never coordinated.
                None => Err(ErrorReply::BadRequest(
                    "an admin request is not coordinated (it is served by the node's admin service)"
                        .into(),
                )),
            },
        }
    }

    /// Serves one operation on one item.
    pub(super) async fn serve_item(
        &self,
        key: ItemKey,
        op: ItemOp,
        forwarded: bool,
    ) -> Result<Response, ErrorReply> {
        let ItemKey {
            ref bucket,
            partition: ref pk,
            ref sort,
        } = key;
        self.check_sort_key(sort)?;
        let skey = item::storage_key(bucket, pk, sort);
        match op {
            ItemOp::Get { options, at_least } => {
                let (_, state, report) = self
                    .read_request(bucket, pk, &skey, options, at_least.as_ref(), true)
                    .await?;
                if let Reading::Register(siblings, ctx) = &state.read(self.env.clock.lww_ms()) {
                    if !siblings.is_empty() {
                        self.metrics
                            .histogram(metrics::READ_SIBLINGS, &[])
                            .record(siblings.len() as f64);
                        self.metrics
                            .histogram(metrics::VCLOCK_ENTRIES, &[])
                            .record(ctx.entries() as f64);
                    }
                }
                // (The bucket's type was checked: a register or LWW state.)
                Ok(self.answer(&skey, &state, report))
            }
            ItemOp::Fetch { options, at_least } => {
                let (props, state, report) = self
                    .read_request(bucket, pk, &skey, options, at_least.as_ref(), false)
                    .await?;
                if !matches!(state.body, Body::Counter(_) | Body::Set(_) | Body::Map(_)) {
                    return Err(ErrorReply::Internal(format!(
                        "stored state of key does not match bucket type {}",
                        props.bucket_type
                    )));
                }
                Ok(self.answer(&skey, &state, report))
            }
            ItemOp::Put {
                ref value,
                ref context,
                options,
                condition,
                ..
            } => {
                let props = self.bucket(bucket, pk)?;
                self.check_value(value)?;
                let update = match props.bucket_type {
                    BucketType::Register => Update::Register {
                        ctx: self.context(&skey, context)?,
                        value: RegValue::Data(value.clone()),
                    },
                    BucketType::Lww => Update::Lww(Some(value.clone())),
                    _ => return Err(wrong_type(bucket, props, "put (use a typed update)")),
                };
                let q = self.write_quorum(options, props)?;
                let req = forwardable(key.clone(), op.clone());
                if condition != Condition::None {
                    return self
                        .conditional_write(req, skey, props, update, q, condition, forwarded)
                        .await;
                }
                self.write(req, skey, props, update, q, forwarded).await
            }
            ItemOp::Delete {
                ref context,
                options,
            } => {
                let props = self.bucket(bucket, pk)?;
                let update = match props.bucket_type {
                    BucketType::Register => Update::Register {
                        ctx: self.context(&skey, context)?,
                        value: RegValue::Tombstone {
                            deleted_ms: self.env.clock.wall_ms(),
                        },
                    },
                    BucketType::Lww => Update::Lww(None),
                    _ => return Err(wrong_type(bucket, props, "delete")),
                };
                let q = self.write_quorum(options, props)?;
                let req = forwardable(key.clone(), op.clone());
                self.write(req, skey, props, update, q, forwarded).await
            }
            ItemOp::Update {
                op: ref data_op,
                ref context,
                options,
                condition,
                ..
            } => {
                let props = self.bucket(bucket, pk)?;
                if data_op.bucket_type() != props.bucket_type {
                    return Err(wrong_type(bucket, props, data_op.name()));
                }
                self.check_op(data_op)?;
                let ctx = self.check_context_size(context).and_then(|()| {
                    let raw = self.open_context(&skey, context)?;
                    value::decode_clock(raw).map_err(|e| ErrorReply::InvalidContext(e.to_string()))
                })?;
                let update = Update::Data {
                    op: data_op.clone(),
                    ctx,
                };
                let q = self.write_quorum(options, props)?;
                let req = forwardable(key.clone(), op.clone());
                if condition != Condition::None {
                    return self
                        .conditional_write(req, skey, props, update, q, condition, forwarded)
                        .await;
                }
                self.write(req, skey, props, update, q, forwarded).await
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
        skey: &[u8],
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
        let (state, report) = self
            .read(
                skey.to_vec(),
                props,
                r,
                timeout,
                options.repair_before_answer,
                at_least,
            )
            .await?;
        Ok((props, state, report))
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

    pub(super) fn timeout(&self, asked_ms: Option<u32>) -> Duration {
        match asked_ms {
            Some(0) | None => self.replication.request_timeout,
            // Bounded so a client cannot park work on the node for hours.
            Some(ms) => Duration::from_millis(ms.into()).min(self.limits.max_request_timeout),
        }
    }

    fn context(&self, skey: &[u8], ctx: &CausalContext) -> Result<DotContext, ErrorReply> {
        self.check_context_size(ctx)?;
        let raw = self.open_context(skey, ctx)?;
        register::decode_context(raw).map_err(|e| ErrorReply::InvalidContext(e.to_string()))
    }

    /// The raw context of `ctx`, if this cluster sealed it for the item
    /// (see [`crate::access::contexts`] and [`item::seal_subject`]).
    fn open_context<'a>(
        &self,
        skey: &[u8],
        ctx: &'a CausalContext,
    ) -> Result<&'a [u8], ErrorReply> {
        self.contexts
            .open(&item::seal_subject(skey), ctx)
            .map_err(|e| ErrorReply::InvalidContext(e.to_string()))
    }

    pub(super) fn preference_list(&self, skey: &[u8], n: u8) -> Result<Vec<NodeId>, ErrorReply> {
        let pref = self.membership.ring().item_preference_list(skey, n.into());
        if pref.is_empty() {
            return Err(ErrorReply::Unavailable("the ring is empty".into()));
        }
        Ok(pref)
    }
}

/// A request of the key-value API as the operation on its item (the empty
/// sort key); `None` for requests that are not about one item.
fn item_request(req: Request) -> Option<(ItemKey, ItemOp)> {
    Some(match req {
        Request::Item { key, op } => (key, op),
        Request::Get {
            bucket,
            key,
            options,
            at_least,
        } => (
            ItemKey::single(&bucket, &key),
            ItemOp::Get { options, at_least },
        ),
        Request::Fetch {
            bucket,
            key,
            options,
            at_least,
        } => (
            ItemKey::single(&bucket, &key),
            ItemOp::Fetch { options, at_least },
        ),
        Request::Put {
            bucket,
            key,
            value,
            context,
            options,
        } => (
            ItemKey::single(&bucket, &key),
            ItemOp::Put {
                value,
                context,
                options,
                condition: options.condition,
                ttl_ms: options.ttl_ms(),
            },
        ),
        Request::Delete {
            bucket,
            key,
            context,
            options,
        } => (
            ItemKey::single(&bucket, &key),
            ItemOp::Delete { context, options },
        ),
        Request::Update {
            bucket,
            key,
            op,
            context,
            options,
        } => (
            ItemKey::single(&bucket, &key),
            ItemOp::Update {
                op,
                context,
                options,
                condition: options.condition,
                ttl_ms: options.ttl_ms(),
            },
        ),
        _ => return None,
    })
}

/// The request a write forwards to a replica that coordinates it.
fn forwardable(key: ItemKey, op: ItemOp) -> Request {
    Request::Item { key, op }
}
