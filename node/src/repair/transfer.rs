//! Topology changes: range streaming, completion, and ownership handoff.
//!
//! While the read and write rings differ ([`crate::cluster::membership`]), every
//! coordinator writes to both preference lists of a key, and each node that
//! gains ranges streams them in:
//!
//! 1. **Barrier.** A gainer starts only once every live member has seen the
//!    current view (its gossip entry's `seen_view`), so every write from then
//!    on already reaches it.
//! 2. **Stream.** It asks each live member of the read ring for the records
//!    of the keys it gains ([`TransferRequest::Stream`]), batch by batch in
//!    storage-key order, merging each batch durably before asking for the
//!    next and persisting the cursor, so a crash of either side resumes
//!    where it stopped. The stream reads each key's latest state; together
//!    with the writes the gainer gets since the barrier it covers everything
//!    (the snapshot-plus-catch-up of a log follower, without holding a
//!    snapshot open across crashes: states merge, so reading a key twice or
//!    late is harmless).
//! 3. **Completion.** The gainer publishes `synced_view`. Once every gainer
//!    has, every joining node is marked up and every leaving one removed,
//!    in one change of the view, by any node (all write the same entries),
//!    so no read ring between them is ever formed.
//! 4. **Handoff.** Once the rings agree again (and every member not
//!    removed, down or not, has seen that: it may still read the previous
//!    ring), a node holding keys it no longer owns offers each owner
//!    their hashes ([`TransferRequest::Digest`]), sends the states an owner lacks
//!    ([`TransferRequest::MergeBatch`]), and drops a key only when every owner
//!    acknowledged it, and only if it did not change meanwhile.
//!
//! Transfers are bounded: at most [`TransferConfig::max_concurrent`]
//! streams in at once per node, the same number of stream batches served at
//! once, and batches of [`TransferConfig::batch_bytes`].
//!
//! # Layout
//! - this file: the [`Transfers`] service (config, errors, the step loop),
//!   barrier and completion, the gainer's streaming loop and the source's
//!   side of a stream, and the dispatch of a peer's [`TransferRequest`].
//! - `handoff`: step 4, both sides (the losing node's digest, merge batch and
//!   drop of unowned keys; the owner's answers).
//! - `progress`: the persisted stream cursors ([`SourceProgress`]), the
//!   admin status report ([`TransferReport`]) and the transfer gauges.

use crate::cluster::buckets::Buckets;
use crate::cluster::liveness::Liveness;
use crate::cluster::member::MemberState;
use crate::cluster::membership::{Membership, View};
use crate::data::value::{self, State};
use crate::metrics::{self, Metrics};
use crate::replication::replica::{Replica, ReplicaError};
use crate::rpc::call::ask;
use crate::rpc::peer::{PeerError, TransferRequest, TransferResponse};
use crate::rpc::transport::Transport;
use crate::storage::{Space, StorageError};
use crate::util::clock::SharedClock;
use crate::util::LockExt;
use kvorum_ring::NodeId;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

mod handoff;
mod place;
mod progress;

pub use place::{PlaceError, Placed};
use progress::{load_progress, save_progress};
pub use progress::{SourceProgress, TransferReport};

/// Range transfer settings (`[transfers]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferConfig {
    /// Streams a node pulls at once, and stream batches it serves at once.
    pub max_concurrent: usize,
    /// Bytes of records per stream batch.
    pub batch_bytes: u32,
    /// How often a node checks for work (barrier, completion, handoff).
    pub interval: Duration,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            batch_bytes: 512 * 1024,
            interval: Duration::from_millis(500),
        }
    }
}

/// Keys a stream call scans at most before answering (even with an empty
/// batch), so one call never holds a source for long.
const SCAN_PER_CALL: u64 = 20_000;
/// Records read from storage at a time.
const SCAN_CHUNK: usize = 512;
/// How often a settled node checks again for keys it does not own (writes
/// of a coordinator whose view lagged, hints delivered late).
const HANDOFF_RECHECK: Duration = Duration::from_secs(60);
/// How soon a handoff pass that left keys behind is repeated.
const HANDOFF_RETRY: Duration = Duration::from_secs(2);
/// Bound on one peer call of a transfer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a transfer step failed (retried at the next interval).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Local storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A peer call failed.
    #[error("{peer}: {reason}")]
    Peer {
        /// The peer.
        peer: NodeId,
        /// What went wrong.
        reason: String,
    },
    /// The view changed under the transfer.
    #[error("the ring view changed")]
    ViewChanged,
    /// This node's view has no member holding data, but it has seeds: it
    /// has not heard the cluster yet (a one-way partition, a seed slow to
    /// answer), so streaming from nobody would bring it up empty.
    #[error("no member in this node's view holds data yet: waiting to hear the cluster")]
    NoReaders,
    /// A record could not be merged into the local replica.
    #[error("merging a record: {0}")]
    Merge(#[from] ReplicaError),
    /// A merge task stopped before it finished (the node is stopping).
    #[error("a merge stopped: {0}")]
    Aborted(String),
}

/// The node's transfer machinery (cheap to clone).
#[derive(Clone)]
pub struct Transfers {
    inner: Arc<Inner>,
}

struct Inner {
    me: NodeId,
    member_store: crate::cluster::meta::MemberStore,
    membership: Arc<Membership>,
    replica: Replica,
    transport: Arc<dyn Transport>,
    liveness: Arc<Liveness>,
    buckets: Buckets,
    config: TransferConfig,
    serving: Semaphore,
    progress: Mutex<BTreeMap<NodeId, SourceProgress>>,
    /// Streams being pulled right now.
    active: AtomicU64,
    /// [`Transfers::gainers`] of the last view asked about.
    #[allow(clippy::type_complexity)]
    gainers: Mutex<Option<(u64, Vec<usize>, BTreeMap<NodeId, u64>)>>,
    /// The view of the last handoff pass (drop of keys no longer owned),
    /// and when the next one is due.
    handed_off: Mutex<Option<(u64, tokio::time::Instant)>>,
    /// When the last handoff pass ended: a foreign key waits
    /// [`HANDOFF_RETRY`] after it, so a coordinator stuck on an old view
    /// cannot make this node rescan its data back to back.
    last_pass: Mutex<Option<tokio::time::Instant>>,
    /// A key this node does not own arrived since the last pass began
    /// ([`Transfers::hand_off_soon`]): the next step hands off at once.
    foreign: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

impl Transfers {
    /// The machinery; nothing runs until [`Transfers::run`].
    #[allow(clippy::too_many_arguments)] // the module's whole context, passed once
    pub fn new(
        member_store: crate::cluster::meta::MemberStore,
        membership: Arc<Membership>,
        replica: Replica,
        transport: Arc<dyn Transport>,
        liveness: Arc<Liveness>,
        buckets: Buckets,
        config: TransferConfig,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Self {
        let progress = load_progress(&replica).unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                me: membership.me_id().clone(),
                member_store,
                membership,
                replica,
                transport,
                liveness,
                buckets,
                serving: Semaphore::new(config.max_concurrent),
                config,
                progress: Mutex::new(progress),
                active: AtomicU64::new(0),
                gainers: Mutex::new(None),
                handed_off: Mutex::new(None),
                last_pass: Mutex::new(None),
                foreign: std::sync::atomic::AtomicBool::new(false),
                metrics,
                clock,
            }),
        }
    }

    /// Whether this node owns `key` in its current view (is in its read or
    /// write preference list).
    pub fn owns(&self, key: &[u8]) -> bool {
        let view = self.inner.membership.view();
        let n = self.inner.buckets.n_of_key(key);
        let me = &self.inner.me;
        view.read_ring.item_preference_list(key, n).contains(me)
            || view.write_ring.item_preference_list(key, n).contains(me)
    }

    /// A key this node does not own ([`Transfers::owns`]) was stored here:
    /// a hint delivered, or a coordinator a gossip round behind writing,
    /// after this node's last handoff pass. The next step hands it off,
    /// not the recheck a minute away: a copy a non-owner keeps is outside
    /// the reaper's every-replica check, and pushed after the key's
    /// tombstone was reaped it would bring back deleted values (swarm seed
    /// 8096: a hint delivered to a former owner 0.2 s after its pass, and
    /// pushed 60 s later).
    pub fn hand_off_soon(&self) {
        self.inner.foreign.store(true, Ordering::Release);
    }

    /// The replication factors in use (the default and every bucket's).
    fn ns(&self) -> Vec<usize> {
        let mut ns: Vec<usize> = self
            .inner
            .buckets
            .all()
            .into_iter()
            .map(|(_, p)| p.n.into())
            .collect();
        ns.sort_unstable();
        ns.dedup();
        ns
    }

    /// The nodes that gain ranges in `view` (computed once per view and
    /// set of replication factors: it walks every range of both rings).
    fn gainers(&self, view: &View) -> BTreeMap<NodeId, u64> {
        let ns = self.ns();
        let mut cache = lock(&self.inner.gainers);
        if let Some((hash, cached_ns, g)) = &*cache {
            if *hash == view.hash && *cached_ns == ns {
                return g.clone();
            }
        }
        let g = view.gainers(&ns);
        *cache = Some((view.hash, ns, g.clone()));
        g
    }

    /// Runs until shutdown: every interval, one step.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.inner.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Steps that found no member holding data (a joiner that has heard
        // nobody): a warning on the first and every 60th, naming the seeds.
        let mut unheard = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                r = self.step() => match r {
                    Err(TransferError::NoReaders) => {
                        if unheard % 60 == 0 {
                            let seeds = self.inner.membership.seeds();
                            tracing::warn!(?seeds, "joining: no member holding data is known yet; waiting to hear one from the seeds (a node founding a cluster lists no seeds)");
                        }
                        unheard = unheard.wrapping_add(1);
                    }
                    Err(e) => tracing::info!(error = %e, "range transfer step failed; retrying"),
                    Ok(()) => unheard = 0,
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One step: found a cluster, stream in, complete a change, or hand off.
    pub async fn step(&self) -> Result<(), TransferError> {
        let m = &self.inner.membership;
        let view = m.view();
        let me = m.me();
        if view.prev_read_ring.is_some() && self.seen_by_all(&view) {
            m.settled(view.hash);
        }
        // A node with nobody to stream from founds the cluster: no seeds, or
        // it has heard of other members and none holds data yet (a whole
        // cluster starting at once).
        if me.state == MemberState::Joining
            && view.read_ring.is_empty()
            && (m.seeds().is_empty() || view.live_members().count() > 1)
        {
            tracing::info!("no member holds data yet: this node is up");
            m.set_my_state(MemberState::Up);
            self.inner.member_store.save().await?;
            return Ok(());
        }
        if view.in_transition() {
            let gainers = self.gainers(&view);
            let pending: Vec<&NodeId> = gainers
                .keys()
                .filter(|g| {
                    view.members
                        .get(*g)
                        .is_some_and(|x| x.synced_view != view.hash)
                })
                .collect();
            if pending.is_empty() {
                if self.complete(&view) {
                    self.inner.member_store.save().await?;
                }
                return Ok(());
            }
            if pending.contains(&&self.inner.me) && self.barrier(&view) {
                self.stream_in(&view).await?;
                self.inner.member_store.save().await?;
            }
            return Ok(());
        }
        let now = self.inner.clock.now();
        let rested = lock(&self.inner.last_pass).is_none_or(|t| now >= t + HANDOFF_RETRY);
        let due = match *lock(&self.inner.handed_off) {
            Some((hash, next)) => hash != view.hash || now >= next,
            None => true,
        } || (rested && self.inner.foreign.load(Ordering::Acquire));
        // Not while a member may still read the previous ring (down by the
        // failure detector or not): a key dropped here could be the copy
        // its read there finds.
        if due && self.seen_by_all(&view) {
            // Cleared before the pass reads: a key stored during the pass
            // sets it again, for the next.
            self.inner.foreign.store(false, Ordering::Release);
            // A pass that left keys behind (an owner down, a key written
            // meanwhile) is repeated soon; a clean one is checked again now
            // and then (keys written late by a coordinator whose view lagged).
            let result = self.hand_off(&view).await;
            let again = match result {
                Ok(true) => HANDOFF_RECHECK,
                _ => HANDOFF_RETRY,
            };
            *lock(&self.inner.last_pass) = Some(self.inner.clock.now());
            *lock(&self.inner.handed_off) = Some((view.hash, self.inner.clock.now() + again));
            result?;
        }
        Ok(())
    }

    /// Every member not removed has seen `view`, down or not: only then
    /// may writes stop reaching the previous read ring. A member this
    /// node's failure detector counts as down may still serve (its pings
    /// lost, or restarted and not yet seen up) on the ring it last knew,
    /// and read there what a write to the new ring alone never sent it
    /// (swarm seed 278). A member down for good holds the previous ring's
    /// group until it is removed.
    ///
    /// A member the change removed counts too, unless it is down: a leaver
    /// that has not heard it left still serves reads on its ring (swarm
    /// seed 5387), and hears it by gossip, which it goes on exchanging
    /// once removed. One that is down (stopped, or removed because it
    /// died) holds nothing up.
    fn seen_by_all(&self, view: &View) -> bool {
        view.live_members().all(|m| m.seen_view == view.hash)
            && view
                .departed()
                .all(|m| m.seen_view == view.hash || !self.inner.liveness.is_up(&m.id))
    }

    /// Every live member (by the failure detector) has seen the view.
    fn barrier(&self, view: &View) -> bool {
        view.live_members().all(|m| {
            m.seen_view == view.hash || (m.id != self.inner.me && !self.inner.liveness.is_up(&m.id))
        })
    }

    /// Every gainer holds its ranges: joining nodes go up and leaving ones
    /// are removed, all in one change of this node's view (any node may
    /// complete a change; all write the same entries). Returns whether
    /// this node's view changed.
    fn complete(&self, view: &View) -> bool {
        // Every joiner at once, whoever marks them, in one change: a joiner
        // that went up alone while another still joined would make a read
        // ring that no write ring of the change was (its ranges there were
        // streamed to the other joiner, not to it; swarm seeds 3994, 7409).
        let changes: Vec<(NodeId, MemberState)> = view
            .live_members()
            .filter_map(|m| match m.state {
                MemberState::Joining => Some((m.id.clone(), MemberState::Up)),
                MemberState::Leaving => Some((m.id.clone(), MemberState::Removed)),
                _ => None,
            })
            .collect();
        if changes.is_empty() {
            return false;
        }
        tracing::info!(
            ?changes,
            "every gained range is streamed in: the change completes"
        );
        self.inner.membership.mark_all(view.hash, &changes)
    }

    /// Streams in this node's gained ranges from every reader. A reader
    /// being removed while down is skipped (its ranges come from the
    /// surviving replicas); any other reader that is down holds the stream
    /// until it is back or removed: a write acknowledged by few replicas
    /// (W = 1) may be on that reader alone.
    async fn stream_in(&self, view: &View) -> Result<(), TransferError> {
        // The founding case (no seeds, or every member joining at once) went
        // up in `step`; here an empty read ring means the cluster is unheard.
        if view.read_ring.is_empty() {
            return Err(TransferError::NoReaders);
        }
        let mut sources = Vec::new();
        for m in view.read_ring.members() {
            if m.id == self.inner.me {
                continue;
            }
            let leaving = view
                .members
                .get(&m.id)
                .is_some_and(|x| x.state == MemberState::Leaving);
            if self.inner.liveness.is_up(&m.id) {
                sources.push(m.id.clone());
            } else if !leaving {
                return Err(TransferError::Peer {
                    peer: m.id.clone(),
                    reason: "down: its ranges stream in when it is back (or remove it)".into(),
                });
            }
        }
        {
            let mut p = lock(&self.inner.progress);
            p.retain(|_, s| s.view == view.hash);
            for s in &sources {
                p.entry(s.clone()).or_insert_with(|| SourceProgress {
                    source: s.clone(),
                    view: view.hash,
                    after: None,
                    scanned: 0,
                    total: 0,
                    keys: 0,
                    bytes: 0,
                    done: false,
                });
            }
        }
        let limit = Arc::new(Semaphore::new(self.inner.config.max_concurrent));
        let mut streams = tokio::task::JoinSet::new();
        for source in sources {
            let (this, limit, hash) = (self.clone(), limit.clone(), view.hash);
            streams.spawn(async move {
                let _permit = limit.acquire().await;
                this.stream_from(&source, hash).await
            });
        }
        let mut result = Ok(());
        while let Some(r) = streams.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => {
                    result = Err(TransferError::Peer {
                        peer: self.inner.me.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        result?;
        if self.inner.membership.view_hash() != view.hash {
            return Err(TransferError::ViewChanged);
        }
        tracing::info!("every gained range streamed in");
        self.inner.membership.set_synced(view.hash);
        Ok(())
    }

    /// One source's stream, from where it stopped.
    async fn stream_from(&self, source: &NodeId, hash: u64) -> Result<(), TransferError> {
        let inner = &self.inner;
        inner.active.fetch_add(1, Ordering::Relaxed);
        let _active = scopeguard(|| {
            inner.active.fetch_sub(1, Ordering::Relaxed);
        });
        let keys_in = inner
            .metrics
            .counter(metrics::TRANSFER_KEYS, &[("direction", "in")]);
        let bytes_in = inner
            .metrics
            .counter(metrics::TRANSFER_BYTES, &[("direction", "in")]);
        loop {
            let Some(mut p) = lock(&inner.progress).get(source).cloned() else {
                return Ok(());
            };
            if p.done {
                return Ok(());
            }
            if inner.membership.view_hash() != hash {
                return Err(TransferError::ViewChanged);
            }
            let req = TransferRequest::Stream {
                from: inner.me.clone(),
                view: hash,
                after: p.after.clone(),
                max_bytes: inner.config.batch_bytes,
            };
            let peer_err = |reason: String| TransferError::Peer {
                peer: source.clone(),
                reason,
            };
            let (records, next, scanned, total, bytes) =
                match ask(&*inner.transport, source, req, CALL_TIMEOUT).await {
                    Ok(TransferResponse::Records {
                        records,
                        next,
                        scanned,
                        total,
                        bytes,
                    }) => (records, next, scanned, total, bytes),
                    Ok(other) => return Err(peer_err(format!("unexpected answer {other:?}"))),
                    Err(e) => return Err(peer_err(e.to_string())),
                };
            let n = records.len() as u64;
            self.merge_all(records).await?;
            p.after = next.clone();
            p.done = next.is_none();
            p.scanned += scanned;
            p.total = total.max(p.scanned);
            p.keys += n;
            p.bytes += bytes;
            keys_in.increment(n);
            bytes_in.increment(bytes);
            save_progress(&inner.replica, &p).await?;
            lock(&inner.progress).insert(source.clone(), p.clone());
            if p.done {
                tracing::info!(%source, keys = p.keys, bytes = p.bytes, "range stream complete");
                return Ok(());
            }
        }
    }

    /// Merges records durably, all at once (the writes share syncs).
    async fn merge_all(&self, records: Vec<(Vec<u8>, State)>) -> Result<(), TransferError> {
        let mut merges = tokio::task::JoinSet::new();
        for (key, state) in records {
            let replica = self.inner.replica.clone();
            merges.spawn(async move { replica.merge(key, state).await });
        }
        while let Some(r) = merges.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(TransferError::Merge(e)),
                Err(e) => return Err(TransferError::Aborted(e.to_string())),
            }
        }
        Ok(())
    }

    /// Serves a peer's transfer request.
    pub async fn serve(&self, req: TransferRequest) -> Result<TransferResponse, PeerError> {
        match req {
            TransferRequest::Stream {
                from,
                view,
                after,
                max_bytes,
            } => self.serve_stream(from, view, after, max_bytes).await,
            TransferRequest::Digest { keys } => self.serve_digest(&keys),
            TransferRequest::MergeBatch { records } => self.serve_merge(records).await,
        }
    }

    /// Serves one batch of a stream to a gainer.
    pub async fn serve_stream(
        &self,
        from: NodeId,
        view: u64,
        after: Option<Vec<u8>>,
        max_bytes: u32,
    ) -> Result<TransferResponse, PeerError> {
        let inner = self.inner.clone();
        let snapshot = inner.membership.view();
        if snapshot.hash != view {
            return Err(PeerError::RetryLater(
                "ring view differs from the streaming node's; retry once gossip converges".into(),
            ));
        }
        let Ok(_permit) = inner.serving.try_acquire() else {
            return Err(PeerError::RetryLater(
                "busy: too many range transfers at once".into(),
            ));
        };
        let ns = self.clone();
        let workers = inner.replica.store().workers();
        let answer = workers
            .run_blocking(move || {
                let store = ns.inner.replica.store();
                let mut records = Vec::new();
                let (mut bytes, mut scanned) = (0u64, 0u64);
                let mut cursor = after;
                loop {
                    let chunk = store.scan_after(Space::Data, cursor.as_deref(), SCAN_CHUNK)?;
                    let end = chunk.len() < SCAN_CHUNK;
                    for (key, record) in chunk {
                        scanned += 1;
                        let n = ns.inner.buckets.n_of_key(&key);
                        if snapshot.gains(&from, &key, n) {
                            match value::decode_record(&record) {
                                Ok(state) => {
                                    bytes += record.len() as u64;
                                    records.push((key.clone(), state));
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "undecodable record not streamed")
                                }
                            }
                        }
                        cursor = Some(key);
                        if bytes >= u64::from(max_bytes) || scanned >= SCAN_PER_CALL {
                            let total = store.size().map_or(0, |s| s.keys);
                            return Ok::<_, StorageError>((records, cursor, scanned, total, bytes));
                        }
                    }
                    if end {
                        let total = store.size().map_or(0, |s| s.keys);
                        return Ok((records, None, scanned, total, bytes));
                    }
                }
            })
            .await;
        match answer {
            Ok(Ok((records, next, scanned, total, bytes))) => {
                let m = &inner.metrics;
                m.counter(metrics::TRANSFER_KEYS, &[("direction", "out")])
                    .increment(records.len() as u64);
                m.counter(metrics::TRANSFER_BYTES, &[("direction", "out")])
                    .increment(bytes);
                Ok(TransferResponse::Records {
                    records,
                    next,
                    scanned,
                    total,
                    bytes,
                })
            }
            Ok(Err(e)) => Err(PeerError::Storage(e.to_string())),
            Err(e) => Err(PeerError::Storage(format!("the scan stopped: {e}"))),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.locked()
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
