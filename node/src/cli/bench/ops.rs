//! The operations of a run against the cluster (a workload's reads,
//! updates, inserts and increments; the baseline's echo request), as the
//! driver calls them, and the short names of their errors.

use super::driver::{OpError, OpFn};
use super::workload::ITEMS_PER_PARTITION;
use super::workload::{item_of, key_of, partition_of, sort_of, KeyChooser, Op, Workload};
use super::{BUCKET, COUNTER_BUCKET};
use kvorum_client::proto::{RangeQuery, SortBound};
use kvorum_client::{
    Admin, BucketProps, BucketType, CausalContext, Client, ReadOptions, WriteOptions,
};
use kvorum_node::util::LockExt;
use rand::rngs::SmallRng;
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Shared state of the operations of a run.
pub(super) struct Ops {
    pub(super) client: Client,
    pub(super) chooser: KeyChooser,
    pub(super) value: Vec<u8>,
    /// The last context seen for each loaded key: updates supersede it, so
    /// that updates replace values instead of piling up siblings.
    pub(super) contexts: Vec<Mutex<CausalContext>>,
    /// Index of the next new key (workload w).
    pub(super) next_new: AtomicU64,
    /// Draws a loaded partition (workloads e and range).
    pub(super) partitions: KeyChooser,
    /// Index of the next new item (workload e's inserts).
    pub(super) next_item: AtomicU64,
    /// Writes sent so far (the share of them forwarded is reported).
    pub(super) writes: AtomicU64,
    pub(super) read: ReadOptions,
    pub(super) write: WriteOptions,
}

impl Ops {
    fn remember(&self, k: u64, ctx: CausalContext) {
        if let Some(slot) = self.contexts.get(k as usize) {
            *slot.locked() = ctx;
        }
    }

    fn context(&self, k: u64) -> CausalContext {
        self.contexts
            .get(k as usize)
            .map(|slot| slot.locked().clone())
            .unwrap_or_default()
    }

    /// A range read of partition `p`: `len` items from its item `start`.
    async fn scan(&self, p: u64, start: u64, len: u32) -> Result<(), OpError> {
        let q = RangeQuery::new(BUCKET, &partition_of(p))
            .between(SortBound::Included(sort_of(start)), SortBound::Unbounded)
            .limit(len)
            .options(self.read);
        let page = self.client.read_page(&q).await.map_err(op_error)?;
        if page.items.is_empty() {
            return Err(OpError {
                kind: "empty_page".into(),
                message: format!("loaded partition {p} read empty from item {start}"),
            });
        }
        Ok(())
    }

    /// Writes item `i` of the loaded partitions, or (`into`) a new item
    /// into loaded partition `into`.
    async fn put_item(&self, i: u64, into: Option<u64>) -> Result<(), OpError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let (pk, sort) = match into {
            None => item_of(i),
            Some(p) => (partition_of(p), format!("n{i:012}").into_bytes()),
        };
        self.client
            .partition(BUCKET, &pk)
            .put_with(&sort, &self.value, &CausalContext::empty(), self.write)
            .await
            .map_err(op_error)?;
        Ok(())
    }

    async fn run(&self, op: Op, k: u64) -> Result<(), OpError> {
        let key = key_of(k);
        match op {
            Op::Read => {
                let v = self
                    .client
                    .get_with(BUCKET, &key, self.read)
                    .await
                    .map_err(op_error)?;
                let found = v.is_found();
                self.remember(k, v.context);
                if !found {
                    return Err(OpError {
                        kind: "not_found".into(),
                        message: format!("loaded key {k} not found"),
                    });
                }
            }
            Op::Update | Op::Insert => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                let ctx = self.context(k);
                let new = self
                    .client
                    .put_with(BUCKET, &key, &self.value, &ctx, self.write)
                    .await
                    .map_err(op_error)?;
                self.remember(k, new);
            }
            // Scans run through `scan` (they need more than a key).
            Op::Scan => self.scan(k, 0, ITEMS_PER_PARTITION as u32).await?,
            Op::Increment => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                self.client
                    .counter(COUNTER_BUCKET, &key)
                    .write_options(self.write)
                    .increment(1)
                    .await
                    .map_err(op_error)?;
            }
            // The echo is the baseline's request (an admin request, to the
            // echo server), never one of a workload's.
            Op::Echo => {
                return Err(OpError {
                    kind: "not_a_workload_op".into(),
                    message: "echo runs only in the baseline".into(),
                })
            }
        }
        Ok(())
    }
}

/// A short, bounded name for a client error (the report's key).
fn op_error(e: kvorum_client::Error) -> OpError {
    use kvorum_client::Error as E;
    let kind = match &e {
        E::Server(reply) => format!("server/{}", variant_name(&format!("{reply:?}"))),
        E::NoNodeAvailable(_) => "no_node_available".into(),
        E::OutcomeUnknown { .. } => "outcome_unknown".into(),
        E::Timeout { .. } => "timeout".into(),
        E::Protocol(_) => "protocol".into(),
        other => variant_name(&format!("{other:?}")).to_ascii_lowercase(),
    };
    OpError {
        kind,
        message: e.to_string(),
    }
}

fn variant_name(debug: &str) -> String {
    debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The load of workloads e and range: operation `i` writes item `i`.
pub(super) fn item_load_fn(ops: &Arc<Ops>) -> OpFn {
    let ops = ops.clone();
    Arc::new(move |i: u64, _rng: &mut SmallRng| {
        let ops = ops.clone();
        Box::pin(async move { (Op::Insert, ops.put_item(i, None).await) })
    })
}

/// The operations of workloads on items (e, range).
fn item_fn(ops: Arc<Ops>, workload: Workload) -> OpFn {
    Arc::new(move |_i: u64, rng: &mut SmallRng| {
        let op = workload.next_op(rng);
        let p = ops.partitions.next(rng);
        let ops = ops.clone();
        match (workload, op) {
            (Workload::E, Op::Scan) => {
                // YCSB E: a scan of 1 to 100 items from a random item.
                let start = rng.random_range(0..ITEMS_PER_PARTITION);
                let len = rng.random_range(1..=ITEMS_PER_PARTITION as u32);
                Box::pin(async move { (op, ops.scan(p, start, len).await) })
            }
            (_, Op::Insert) => {
                let i = ops.next_item.fetch_add(1, Ordering::Relaxed);
                Box::pin(async move { (op, ops.put_item(i, Some(p)).await) })
            }
            _ => Box::pin(async move { (op, ops.run(op, p).await) }),
        }
    })
}

pub(super) fn op_fn(ops: &Arc<Ops>, workload: Option<Workload>) -> OpFn {
    if let Some(w) = workload.filter(|w| w.needs_items()) {
        return item_fn(ops.clone(), w);
    }
    let ops = ops.clone();
    Arc::new(move |i: u64, rng: &mut SmallRng| {
        let (op, k) = match workload {
            // The load phase: key i.
            None => (Op::Insert, i),
            Some(w) => {
                let op = w.next_op(rng);
                let k = match op {
                    Op::Insert => ops.next_new.fetch_add(1, Ordering::Relaxed),
                    _ => ops.chooser.next(rng),
                };
                (op, k)
            }
        };
        let ops = ops.clone();
        Box::pin(async move { (op, ops.run(op, k).await) })
    })
}

/// The baseline's request: a bucket creation with an empty name (a few
/// bytes), which the echo server answers with its one-byte reply.
pub(super) async fn echo_request(client: &Admin) -> Result<(), kvorum_client::Error> {
    client
        .create_bucket("", BucketProps::new(BucketType::Register))
        .await
}

pub(super) fn echo_fn(client: Admin) -> OpFn {
    let ops = Arc::new(client);
    Arc::new(move |_i: u64, _rng: &mut SmallRng| {
        let client = ops.clone();
        Box::pin(async move { (Op::Echo, echo_request(&client).await.map_err(op_error)) })
    })
}

/// Keys stored by the bench so far (loaded, then new ones of workload w).
pub(super) fn stored(ops: &Ops) -> u64 {
    ops.next_new.load(Ordering::Relaxed)
}
