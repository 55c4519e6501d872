//! The simulated clients: each sends real `kvorum-client` requests
//! ([`Request`]) through the in-memory network to a node it picks, and
//! records what completed in the [`History`].

use crate::history::{Entry, History, Op, Workload};
use crate::net::SimNet;
use kvorum_client::proto::{
    CausalContext, ItemKey, ItemOp, RangeQuery, ReadOptions, Request, Response, WriteOptions,
};
use kvorum_client::{DataOp, DataValue};
use kvorum_ring::NodeId;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a client waits for an answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// The key a workload's key number names.
pub fn key_name(k: u32) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

/// A register value: `id;covered,covered,...`.
pub fn encode_write(id: u64, covers: &[u64]) -> Vec<u8> {
    let covers: Vec<String> = covers.iter().map(u64::to_string).collect();
    format!("{id};{}", covers.join(",")).into_bytes()
}

/// The id and covered writes of a register value.
pub fn decode_write(v: &[u8]) -> Option<(u64, Vec<u64>)> {
    let s = std::str::from_utf8(v).ok()?;
    let (id, covers) = s.split_once(';')?;
    Some((
        id.parse().ok()?,
        covers.split(',').filter_map(|c| c.parse().ok()).collect(),
    ))
}

/// A set element's bytes.
pub fn encode_elem(x: u64) -> Vec<u8> {
    x.to_be_bytes().to_vec()
}

/// The elements of a set value (bytes that are not 8 long are skipped; the
/// checker reports them through the count).
pub fn decode_elems(v: &[Vec<u8>]) -> BTreeSet<u64> {
    v.iter()
        .filter_map(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .collect()
}

/// The id an item's sort key names.
pub fn decode_id(sort: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(sort).ok().map(u64::from_be_bytes)
}

/// Register contexts the clients kept from earlier reads, by key: the
/// writes each read saw and its context. A client that writes with one
/// later is an application that stored a context (in a cookie, a form)
/// and came back with it, maybe after the key was deleted and reaped: its
/// write may supersede only what that read saw. Shared by every client,
/// and by both rounds of load of a run (before and after the reaps).
pub type Kept = Arc<Mutex<BTreeMap<u32, (Vec<u64>, CausalContext)>>>;

/// What one client does.
pub struct Client {
    /// Its number.
    pub id: usize,
    /// The network.
    pub net: SimNet,
    /// The nodes it may send to.
    pub nodes: Vec<NodeId>,
    /// Keys per workload.
    pub keys: u32,
    /// The workloads it mixes.
    pub workloads: Vec<Workload>,
    /// Its randomness.
    pub rng: StdRng,
    /// The history.
    pub history: History,
    /// Unique ids of writes and elements, shared by every client.
    pub ids: Arc<AtomicU64>,
    /// Set when the clients should stop.
    pub stop: Arc<AtomicBool>,
    /// Longest pause between two operations.
    pub think: Duration,
    /// Contexts kept from earlier reads.
    pub kept: Kept,
}

impl Client {
    /// A client with randomness from `seed`.
    pub fn seeded(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    /// Runs operations until told to stop.
    pub async fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let think = self.rng.random_range(0..=self.think.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(think)).await;
            let w = self.workloads[self.rng.random_range(0..self.workloads.len())];
            let key = self.rng.random_range(0..self.keys);
            let node = self.nodes[self.rng.random_range(0..self.nodes.len())].clone();
            match w {
                Workload::Register => self.register(&node, key).await,
                Workload::Counter => self.counter(&node, key).await,
                Workload::Set => self.set(&node, key).await,
                Workload::Range => self.range(&node, key).await,
            }
        }
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    async fn call(&self, node: &NodeId, req: Request) -> Option<Response> {
        self.net.client_call(node, req, CLIENT_TIMEOUT).await
    }

    fn record(&self, w: Workload, key: u32, op: Op, ok: bool, invoked_ms: u64) {
        self.history.op(Entry {
            client: self.id,
            workload: w,
            key,
            op,
            ok,
            invoked_ms,
            completed_ms: self.history.now_ms(),
        });
    }

    /// Reads the register, then writes a new value with the read's
    /// context (the value names the writes the read saw). Sometimes it
    /// keeps the read's context for later, and sometimes it writes with a
    /// kept one instead of reading (see [`Kept`]).
    async fn register(&mut self, node: &NodeId, key: u32) {
        let w = Workload::Register;
        let stale = if self.rng.random_bool(0.1) {
            self.kept.lock().ok().and_then(|k| k.get(&key).cloned())
        } else {
            None
        };
        let (covers, context) = match stale {
            Some(kept) => kept,
            None => {
                let read = Request::Get {
                    bucket: w.bucket().into(),
                    key: key_name(key),
                    options: ReadOptions::default(),
                    at_least: None,
                };
                let (covers, context) = match self.call(node, read).await {
                    Some(Response::Value {
                        siblings, context, ..
                    }) => (
                        siblings
                            .iter()
                            .filter_map(|v| decode_write(v))
                            .map(|(id, _)| id)
                            .collect::<Vec<_>>(),
                        context,
                    ),
                    Some(Response::NotFound { context, .. }) => (Vec::new(), context),
                    _ => return,
                };
                // Keep the first context read of the key, and now and then
                // a newer one.
                if let Ok(mut kept) = self.kept.lock() {
                    if !kept.contains_key(&key) || self.rng.random_bool(0.05) {
                        kept.insert(key, (covers.clone(), context.clone()));
                    }
                }
                (covers, context)
            }
        };
        let id = self.next_id();
        let invoked = self.history.now_ms();
        if !covers.is_empty() && self.rng.random_bool(0.15) {
            let delete = Request::Delete {
                bucket: w.bucket().into(),
                key: key_name(key),
                context,
                options: WriteOptions::default(),
            };
            let ok = matches!(
                self.call(node, delete).await,
                Some(Response::Written { .. })
            );
            self.record(w, key, Op::Delete { id, covers }, ok, invoked);
            return;
        }
        let put = Request::Put {
            bucket: w.bucket().into(),
            key: key_name(key),
            value: encode_write(id, &covers),
            context,
            options: WriteOptions::default(),
        };
        let ok = matches!(self.call(node, put).await, Some(Response::Written { .. }));
        self.record(w, key, Op::Write { id, covers }, ok, invoked);
    }

    /// Inserts a new item (strict W: counted on the partition's own
    /// replicas only, so a scan at R sees it once acknowledged), or scans
    /// the partition in small pages, forward or in reverse.
    async fn range(&mut self, node: &NodeId, key: u32) {
        let w = Workload::Range;
        if self.rng.random_bool(0.25) {
            let invoked = self.history.now_ms();
            let limit = self.rng.random_range(2..=6);
            let reverse = self.rng.random_bool(0.3);
            let mut q = RangeQuery::new(w.bucket(), &key_name(key)).limit(limit);
            q.reverse = reverse;
            let (mut seen, mut disorder, mut last) = (BTreeSet::new(), false, None::<u64>);
            loop {
                let page = match self.call(node, Request::Range(q.clone())).await {
                    Some(Response::Page(p)) => p,
                    _ => return,
                };
                for item in &page.items {
                    let Some(id) = decode_id(&item.sort) else {
                        disorder = true;
                        continue;
                    };
                    let in_order = last.is_none_or(|l| if reverse { id < l } else { id > l });
                    disorder |= !in_order || !seen.insert(id);
                    last = Some(id);
                }
                match page.next {
                    Some(next) => q.after = Some(next),
                    None => break,
                }
            }
            self.record(w, key, Op::Scan { seen, disorder }, true, invoked);
            return;
        }
        let id = self.next_id();
        let invoked = self.history.now_ms();
        let put = Request::Item {
            key: ItemKey::new(w.bucket(), &key_name(key), &encode_elem(id)),
            op: ItemOp::put(
                &encode_elem(id),
                &CausalContext::empty(),
                WriteOptions::default().strict(),
            ),
        };
        let ok = matches!(self.call(node, put).await, Some(Response::Written { .. }));
        self.record(w, key, Op::Insert(id), ok, invoked);
    }

    async fn update(&self, node: &NodeId, w: Workload, key: u32, op: DataOp) -> bool {
        let req = Request::Update {
            bucket: w.bucket().into(),
            key: key_name(key),
            op,
            context: CausalContext::empty(),
            options: WriteOptions::default(),
        };
        matches!(self.call(node, req).await, Some(Response::Written { .. }))
    }

    async fn counter(&mut self, node: &NodeId, key: u32) {
        let delta = if self.rng.random_bool(0.7) {
            self.rng.random_range(1..=5)
        } else {
            -self.rng.random_range(1..=3)
        };
        let invoked = self.history.now_ms();
        let ok = self
            .update(node, Workload::Counter, key, DataOp::Increment(delta))
            .await;
        self.record(Workload::Counter, key, Op::Inc(delta), ok, invoked);
    }

    async fn set(&mut self, node: &NodeId, key: u32) {
        let w = Workload::Set;
        if self.rng.random_bool(0.2) {
            let invoked = self.history.now_ms();
            let read = Request::Fetch {
                bucket: w.bucket().into(),
                key: key_name(key),
                options: ReadOptions::default(),
                at_least: None,
            };
            let seen = match self.call(node, read).await {
                Some(Response::Data {
                    value: DataValue::Set(v),
                    ..
                }) => decode_elems(&v),
                Some(Response::NotFound { .. }) => BTreeSet::new(),
                _ => return,
            };
            self.record(w, key, Op::Read(seen), true, invoked);
            return;
        }
        let x = self.next_id();
        let invoked = self.history.now_ms();
        let op = DataOp::SetUpdate {
            add: vec![encode_elem(x)],
            remove: vec![],
        };
        let ok = self.update(node, w, key, op).await;
        self.record(w, key, Op::Add(x), ok, invoked);
    }
}
