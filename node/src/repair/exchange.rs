//! Anti-entropy exchanges (Dynamo §4.7): compare the hash trees shared with
//! a peer top-down and merge the differing keys both ways. The trees
//! themselves are in [`crate::repair::aae`]; this is the shell that talks to peers.

use crate::cluster::member::MemberState;
use crate::cluster::membership::Membership;
use crate::data::value;
use crate::repair::aae::{self, Trees, PER_BRANCH};
use crate::replication::replica::{self, Replica};
use crate::rpc::call::{ask, CallError};
use crate::rpc::peer::{
    AaeRequest, AaeResponse, Message, PeerError, ReapRequest, ReapResponse, ReplicaRequest,
    ReplicaResponse,
};
use crate::rpc::transport::Transport;
use crate::storage::StorageError;
use crate::util::{LockExt, NodeEnv};
mod build;
mod verify;

use build::Build;
use kvorum_ring::NodeId;
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// Anti-entropy settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AaeConfig {
    /// Whether the periodic exchanges run (`kvorum admin repair` works either way).
    pub enabled: bool,
    /// Time between two exchanges (each with the next peer in turn).
    pub interval: Duration,
    /// Most keys one exchange repairs (the rest wait for the next one).
    pub max_keys_per_exchange: usize,
    /// Timeout of each call of an exchange.
    pub call_timeout: Duration,
    /// Most exchanges this node runs at once.
    pub sessions_max: usize,
    /// Age a tombstone must reach, on top of being held by every replica,
    /// before it is removed: longer than any hint or in-flight write lives.
    pub tombstone_grace: Duration,
}

/// Most tombstones one reaping round examines.
const REAP_BATCH: usize = 256;

/// A node compacts its storage once a wave of removals stops, if the
/// records removed (reaped or dropped) since its last compaction are at
/// least 1/`COMPACT_SHARE` of the records it holds: a major compaction
/// rewrites all the data, so its cost is paid once per 1 % of garbage.
const COMPACT_SHARE: u64 = 100;

/// Reaping checks of one round that run at once.
const REAP_CONCURRENCY: usize = 32;

/// Segments of the key index counted into the trees per step of a build
/// (at start-up, or when the placement changes): 1/2,048 of the keys,
/// about 5,000 at 10 M. A step reads them on the writer thread, so writes
/// wait for one step at most.
pub const REPLACE_STEP: u32 = 8;

/// Longest a peer's anti-entropy request waits for this node's trees to
/// follow a new placement (below the default call timeout of 5 s).
pub const SERVE_REFRESH_WAIT: Duration = Duration::from_secs(2);

/// Most leaf segments one exchange lists keys for (on either side).
pub const MAX_SEGMENTS_PER_EXCHANGE: usize = 256;

impl Default for AaeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(10),
            max_keys_per_exchange: 1000,
            call_timeout: Duration::from_secs(5),
            sessions_max: 1,
            // The default hint TTL plus twice the default request-time cap
            // and twice the default read timeout (see config.rs).
            tombstone_grace: crate::repair::hints::HintConfig::default().ttl
                + Duration::from_secs(260),
        }
    }
}

/// Why an exchange stopped.
#[derive(Debug, thiserror::Error)]
pub enum AaeError {
    /// A peer call failed.
    #[error("peer {peer}: {source}")]
    Peer {
        /// The peer.
        peer: NodeId,
        /// What failed.
        source: CallError,
    },
    /// The peer answered something unexpected.
    #[error("peer {0} answered unexpectedly")]
    Unexpected(NodeId),
    /// Local storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The trees are still being built from storage after a start (or
    /// their build failed: see the node's log); no exchange runs on trees
    /// that miss keys.
    #[error("anti-entropy trees not built: {0}")]
    NotBuilt(&'static str),
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct AaeStats {
    /// Exchanges completed.
    pub exchanges: AtomicU64,
    /// Keys found different and merged both ways.
    pub keys_repaired: AtomicU64,
}

/// Runs anti-entropy exchanges for one node.
pub struct AntiEntropy {
    metrics: Arc<crate::metrics::Metrics>,
    me: NodeId,
    replica: Replica,
    transport: Arc<dyn Transport>,
    membership: Arc<Membership>,
    config: AaeConfig,
    stats: AaeStats,
    /// Bounds concurrent exchanges (periodic and on demand share it).
    sessions: tokio::sync::Semaphore,
    /// Where the next reaping round starts.
    reap_cursor: Mutex<Option<Vec<u8>>>,
    /// Held by the one thread that steps a build of the trees.
    stepping: Arc<tokio::sync::Mutex<()>>,
    /// Where the start-up build of the trees ([`AntiEntropy::load`])
    /// stands: exchanges run once it is done.
    built: tokio::sync::watch::Sender<Build>,
    /// The node's clocks, and where the tree stepper runs.
    env: NodeEnv,
}

impl AntiEntropy {
    /// The runner of this node.
    pub fn new(
        replica: Replica,
        transport: Arc<dyn Transport>,
        membership: Arc<Membership>,
        config: AaeConfig,
        metrics: Arc<crate::metrics::Metrics>,
        env: NodeEnv,
    ) -> Self {
        Self {
            env,
            metrics,
            me: membership.me().id.clone(),
            replica,
            transport,
            membership,
            config,
            stats: AaeStats::default(),
            sessions: tokio::sync::Semaphore::new(config.sessions_max.max(1)),
            reap_cursor: Mutex::new(None),
            stepping: Default::default(),
            built: tokio::sync::watch::channel(Build::Running).0,
        }
    }

    /// Counters.
    pub fn stats(&self) -> &AaeStats {
        &self.stats
    }

    /// Expired records this node's replica removed since it started.
    pub fn expired_removed(&self) -> u64 {
        self.replica.expired_removed()
    }

    /// Settings.
    pub fn config(&self) -> &AaeConfig {
        &self.config
    }

    fn trees(&self) -> &Arc<Mutex<Trees>> {
        self.replica.trees()
    }

    /// The key index entries of `segments`, read from storage on a
    /// blocking worker (up to [`MAX_SEGMENTS_PER_EXCHANGE`] segments, about
    /// 150,000 entries at 10 M keys).
    async fn entries(&self, segments: &[u32]) -> Result<Vec<aae::Entry>, StorageError> {
        let store = self.replica.store().clone();
        let segments = segments.to_vec();
        self.env
            .workers
            .run_blocking(move || {
                let mut out = Vec::new();
                for s in segments {
                    out.extend(aae::index::read(s..s.saturating_add(1), |p| {
                        store.scan(crate::storage::Space::Index, p, usize::MAX)
                    })?);
                }
                Ok(out)
            })
            .await
            .map_err(StorageError::Engine)?
    }

    /// Serves a peer's anti-entropy request (redoing the trees first if the
    /// placement changed: both sides must compare trees of the same ring).
    /// If that takes longer than [`SERVE_REFRESH_WAIT`] (a very large
    /// store), the request is refused and the peer tries at its next
    /// exchange.
    pub async fn serve(&self, req: AaeRequest) -> Result<AaeResponse, PeerError> {
        let ready = async {
            self.until_built().await;
            self.refresh().await;
        };
        if tokio::time::timeout(SERVE_REFRESH_WAIT, ready)
            .await
            .is_err()
        {
            return Err(PeerError::RetryLater(
                "anti-entropy trees are being built (at start-up) or redone for a new ring".into(),
            ));
        }
        if let Err(e) = self.ready() {
            return Err(PeerError::RetryLater(e.to_string()));
        }
        Ok(match req {
            AaeRequest::Branches { from } => {
                AaeResponse::Branches(replica::lock(self.trees()).branches(&from))
            }
            AaeRequest::Leaves { from, branches } => {
                AaeResponse::Leaves(replica::lock(self.trees()).leaves(&from, &branches))
            }
            AaeRequest::Keys { from, mut segments } => {
                segments.sort_unstable();
                segments.dedup();
                segments.truncate(MAX_SEGMENTS_PER_EXCHANGE);
                let entries = self
                    .entries(&segments)
                    .await
                    .map_err(|e| PeerError::Storage(e.to_string()))?;
                AaeResponse::Keys(replica::lock(self.trees()).keys(&from, entries))
            }
        })
    }

    async fn call<M: Message>(&self, peer: &NodeId, req: M) -> Result<M::Answer, AaeError> {
        ask(&*self.transport, peer, req, self.config.call_timeout)
            .await
            .map_err(|source| AaeError::Peer {
                peer: peer.clone(),
                source,
            })
    }

    /// One exchange with `peer`; returns how many keys were merged.
    pub async fn exchange(&self, peer: &NodeId) -> Result<usize, AaeError> {
        use crate::metrics as m;
        // A removed node owns nothing: merging a peer's keys into it would
        // only leave data there for nobody.
        if self.membership.my_state() == MemberState::Removed {
            return Ok(0);
        }
        // Not waited for (nor counted): `admin repair` and the periodic
        // round come back at once, and a stopping node is not held up.
        self.ready()?;
        let started = self.env.clock.now();
        let r = self.exchange_once(peer).await;
        let outcome = if r.is_ok() { "ok" } else { "error" };
        self.metrics
            .counter(m::AAE_EXCHANGES, &[("outcome", outcome)])
            .increment(1);
        self.metrics
            .histogram(m::AAE_EXCHANGE_DURATION, &[])
            .record(self.env.clock.since(started));
        r
    }

    async fn exchange_once(&self, peer: &NodeId) -> Result<usize, AaeError> {
        let Ok(_session) = self.sessions.acquire().await else {
            return Ok(0); // closed: the node is stopping
        };
        self.refresh().await;
        let unexpected = || AaeError::Unexpected(peer.clone());
        let from = self.me.clone();
        let AaeResponse::Branches(remote) = self
            .call(peer, AaeRequest::Branches { from: from.clone() })
            .await?
        else {
            return Err(unexpected());
        };
        let local = replica::lock(self.trees()).branches(peer);
        if remote.len() != local.len() {
            return Err(unexpected());
        }
        let branches = aae::differing(&local, &remote);
        let mut repaired = 0;
        if !branches.is_empty() {
            let req = AaeRequest::Leaves {
                from: from.clone(),
                branches: branches.clone(),
            };
            let AaeResponse::Leaves(remote) = self.call(peer, req).await? else {
                return Err(unexpected());
            };
            let local = replica::lock(self.trees()).leaves(peer, &branches);
            let mut segments = Vec::new();
            for ((b, l), (rb, r)) in local.iter().zip(&remote) {
                if b == rb && l.len() == r.len() {
                    segments.extend(aae::differing(l, r).into_iter().map(|i| b * PER_BRANCH + i));
                }
            }
            self.metrics
                .counter(crate::metrics::AAE_DIFFERING_SEGMENTS, &[])
                .increment(segments.len() as u64);
            // Bound what one exchange lists (the rest waits for the next).
            segments.truncate(MAX_SEGMENTS_PER_EXCHANGE);
            let req = AaeRequest::Keys {
                from: from.clone(),
                segments: segments.clone(),
            };
            let AaeResponse::Keys(remote) = self.call(peer, req).await? else {
                return Err(unexpected());
            };
            let entries = self.entries(&segments).await?;
            let local = replica::lock(self.trees()).keys(peer, entries);
            let mut keys = aae::differing_keys(&local, &remote);
            keys.truncate(self.config.max_keys_per_exchange);
            for key in keys {
                repaired += self.merge_both_ways(peer, key).await?;
            }
        }
        self.stats.exchanges.fetch_add(1, Ordering::Relaxed);
        self.stats
            .keys_repaired
            .fetch_add(repaired as u64, Ordering::Relaxed);
        if repaired > 0 {
            tracing::info!(%peer, keys = repaired, "anti-entropy repaired differing keys");
        }
        Ok(repaired)
    }

    /// Pulls the peer's state of `key` into the local replica, then pushes
    /// the merged state back.
    ///
    /// A key one side lacks while the other holds it deleted or expired
    /// for longer than the grace is being reaped (a round removes it
    /// replica by replica): it is not copied back. The side that holds it
    /// runs the reaping check for it at once (absent counts as removed), so
    /// a replica that missed a removal does not keep the key for ever.
    async fn merge_both_ways(&self, peer: &NodeId, key: Vec<u8>) -> Result<usize, AaeError> {
        let remote = match self
            .call(peer, ReplicaRequest::Read { key: key.clone() })
            .await?
        {
            ReplicaResponse::State(s) => s,
            ReplicaResponse::Stored
            | ReplicaResponse::Range { .. }
            | ReplicaResponse::Partitions { .. } => return Err(AaeError::Unexpected(peer.clone())),
        };
        let before = self.reap_before();
        let reaping = |s: &value::State| s.dead_since().is_some_and(|t| t <= before);
        let here = self
            .replica
            .read(&key)
            .map_err(|e| StorageError::Engine(e.to_string()))?;
        let hash = |s: &value::State| aae::state_hash(&value::encode_record(s));
        match (&here, &remote) {
            // Equal by now (a write that was in flight when the trees were
            // compared has reached both): nothing to repair.
            (Some(l), Some(r)) if hash(l) == hash(r) => return Ok(0),
            // Gone from both by now (reaped meanwhile).
            (None, None) => return Ok(0),
            (None, Some(r)) if reaping(r) => return Ok(0),
            (Some(l), None) if reaping(l) && !self.membership.view().in_transition() => {
                if let Err(e) = self.reap_one(&key, before).await {
                    tracing::debug!(error = %e, "reaping check of a key a peer lacks failed");
                }
                return Ok(0);
            }
            _ => {}
        }
        if let Some(remote) = remote {
            if let Err(e) = self.replica.merge(key.clone(), remote).await {
                tracing::warn!(%peer, error = %e, "anti-entropy: remote state not merged");
            }
        }
        let local = self
            .replica
            .read(&key)
            .map_err(|e| StorageError::Engine(e.to_string()))?;
        if let Some(state) = local {
            match self
                .call(peer, ReplicaRequest::Repair { key, state })
                .await?
            {
                ReplicaResponse::Stored => {}
                ReplicaResponse::State(_)
                | ReplicaResponse::Range { .. }
                | ReplicaResponse::Partitions { .. } => {
                    return Err(AaeError::Unexpected(peer.clone()))
                }
            }
        }
        Ok(1)
    }

    /// Removes tombstones and expired keys that are safe to remove (Dynamo
    /// leaves this open; Cassandra's `gc_grace` timer alone is how deleted
    /// data comes back). For each key this node is the first replica of
    /// that holds only deletes or expired data, dead for longer than the
    /// grace period: read the key from every
    /// replica of its preference list; only if every one answers with exactly
    /// this node's state (same hash) is the key removed, on every replica,
    /// each removing it only if its state still has that hash. The grace
    /// period outlives every hint and in-flight write that could still carry
    /// an older value, so nothing can resurrect the key afterwards. A replica
    /// that misses the removal keeps the tombstone; anti-entropy spreads it
    /// back and a later round removes it again. Returns the keys removed here.
    pub async fn reap(&self) -> usize {
        // A node streaming in a range could still receive a state older
        // than the tombstone from a source: no reaping until the change
        // completes.
        if self.membership.view().in_transition() {
            return 0;
        }
        let before = self.reap_before();
        // Batches of candidates, each checked REAP_CONCURRENCY keys at a
        // time, while a batch comes back full and for at most half an
        // interval (exchanges run between rounds): a node with many expired
        // keys reaps thousands per round, not one batch per interval.
        let started = self.env.clock.now();
        let budget = self.config.interval / 2;
        let mut removed = 0;
        loop {
            // Rotate through the candidates, so keys that cannot be reaped
            // yet (a replica down) do not hold back the others.
            let after = self.reap_cursor.locked().take();
            let candidates = replica::lock(self.trees()).reapable(
                before,
                self.config.tombstone_grace,
                REAP_BATCH,
                after.as_deref(),
            );
            *self.reap_cursor.locked() = candidates.last().cloned();
            let full = candidates.len() == REAP_BATCH;
            let before_batch = removed;
            for chunk in candidates.chunks(REAP_CONCURRENCY) {
                let checks = chunk.iter().map(|key| self.reap_one(key, before)).collect();
                for outcome in crate::util::join::join_all(checks).await {
                    match outcome {
                        Ok(true) => removed += 1,
                        Ok(false) => {}
                        Err(e) => tracing::debug!(error = %e, "tombstone not reaped yet"),
                    }
                }
            }
            // A batch that removed nothing (a replica down) ends the round.
            if !full || removed == before_batch || self.env.clock.since(started) >= budget {
                break;
            }
        }
        if removed > 0 {
            tracing::info!(keys = removed, "dead keys removed (held by every replica)");
        } else {
            self.compact_if_due().await;
        }
        removed
    }

    /// Once a wave of removals is over here (a round that reaped nothing),
    /// compacts storage if the records removed since the last time are at
    /// least 1/[`COMPACT_SHARE`] of the records stored (the engine's
    /// count, tombstones included): an LSM engine keeps a removed key's
    /// space until a compaction meets its tombstone, and a cluster whose
    /// keys only expire writes nothing that would trigger one.
    async fn compact_if_due(&self) {
        let removed = self.replica.removed();
        // An engine that cannot say its size: no major compaction on a
        // guess.
        let Some(stored) = self.replica.store().size().map(|s| s.keys) else {
            return;
        };
        if removed == 0 || removed.saturating_mul(COMPACT_SHARE) < stored {
            return;
        }
        let removed = self.replica.take_removed();
        let started = self.env.clock.now();
        match self.replica.store().compact().await {
            Ok(()) => tracing::info!(
                removed,
                elapsed_ms = self.env.clock.since(started).as_millis() as u64,
                "storage compacted after removals"
            ),
            Err(e) => tracing::warn!(error = %e, "storage compaction failed"),
        }
    }

    /// States dead (deleted or expired) before this time, by this node's
    /// clock, are past the grace.
    fn reap_before(&self) -> u64 {
        self.env
            .clock
            .wall_ms()
            .saturating_sub(self.config.tombstone_grace.as_millis() as u64)
    }

    /// Removes `key` from every replica if each holds exactly this node's
    /// dead state, or nothing (a replica without the key holds no older
    /// value that could come back).
    async fn reap_one(&self, key: &[u8], before: u64) -> Result<bool, AaeError> {
        let Some(local) = self
            .replica
            .read(key)
            .map_err(|e| StorageError::Engine(e.to_string()))?
        else {
            return Ok(false);
        };
        // Dead (deleted or expired) since before the grace, as it is now.
        let hash = aae::state_hash(&value::encode_record(&local));
        // Held for the grace here, as this very state (not an older
        // tombstone the trees still hold while this one's hook is pending).
        if local.dead_since().is_none_or(|t| t > before)
            || !replica::lock(self.trees()).held_dead_for(key, hash, self.config.tombstone_grace)
        {
            return Ok(false);
        }
        let mut replicas = replica::lock(self.trees()).replicas(key);
        // Every other member is asked too, not only the key's replicas: a
        // node that no longer owns the key may still hold a copy it has not
        // handed off (its pass blocked by an owner it cannot reach), and
        // pushed after the reap, that copy would bring the deleted value
        // back (swarm seed 9948). Such a member answers with another state
        // and the key waits; members holding this exact tombstone reap too.
        let others: Vec<NodeId> = self
            .peers()
            .into_iter()
            .filter(|p| !replicas.contains(p))
            .collect();
        let check = !crate::util::plant::planted(crate::util::plant::Bug::EarlyReap);
        // The replicas first (the cheaper, likelier refusal), then the others.
        for node in replicas.iter().filter(|n| check && **n != self.me) {
            if self.holds(node, key, hash).await?.is_none() {
                return Ok(false); // not every replica holds this exact tombstone yet
            }
        }
        let mut holders = Vec::new();
        for node in others.iter().filter(|_| check) {
            match self.holds(node, key, hash).await? {
                None => return Ok(false), // a copy not handed off yet
                Some(true) => holders.push(node.clone()),
                Some(false) => {}
            }
        }
        // Holders first: one that missed its Reap would push the tombstone
        // back to owners that had removed it (harmless, but churn).
        holders.append(&mut replicas);
        for node in holders.iter().filter(|n| **n != self.me) {
            let reap = ReapRequest::Reap {
                key: key.to_vec(),
                hash,
            };
            // A replica that refuses keeps its tombstone: anti-entropy
            // spreads it back, and a later round removes it again.
            match self.call(node, reap).await {
                Ok(ReapResponse::Reaped) => {}
                Err(
                    e @ AaeError::Peer {
                        source: CallError::Transport(_),
                        ..
                    },
                ) => return Err(e),
                Err(e) => tracing::debug!(%node, error = %e, "tombstone not reaped there"),
            }
        }
        self.replica
            .reap(key.to_vec(), hash)
            .await
            .map_err(|e| StorageError::Engine(e.to_string()).into())
    }

    /// What `node` holds of `key`, against the tombstone state hashing to
    /// `hash`: `Some(true)` that state, `Some(false)` no record, `None`
    /// another state (or an answer that is not a state). Unreachable: the
    /// transport's error.
    async fn holds(&self, node: &NodeId, key: &[u8], hash: u64) -> Result<Option<bool>, AaeError> {
        let read = ReplicaRequest::Read { key: key.to_vec() };
        match self.call(node, read).await {
            Ok(ReplicaResponse::State(None)) => Ok(Some(false)),
            Ok(ReplicaResponse::State(Some(s))) => {
                Ok((aae::state_hash(&value::encode_record(&s)) == hash).then_some(true))
            }
            Err(
                e @ AaeError::Peer {
                    source: CallError::Transport(_),
                    ..
                },
            ) => Err(e),
            _ => Ok(None),
        }
    }

    /// Every other member, in id order (the exchange partners; a peer that
    /// shares no keys with this node has an empty tree and costs one message).
    pub fn peers(&self) -> Vec<NodeId> {
        self.membership
            .members()
            .into_iter()
            .map(|m| m.id)
            .filter(|id| *id != self.me)
            .collect()
    }

    /// The root of the tree this node shares with each peer: two replicas
    /// hold the same states in their shared ranges when their roots for
    /// each other are equal (the simulator's convergence check).
    pub fn roots(&self) -> Vec<(NodeId, u64)> {
        let peers = self.peers();
        let trees = replica::lock(self.trees());
        peers
            .into_iter()
            .map(|p| {
                let root = trees.root(&p);
                (p, root)
            })
            .collect()
    }

    /// An exchange with every peer now (`kvorum admin repair`): (exchanges
    /// completed, keys repaired).
    pub async fn repair_all(&self) -> (u32, u64) {
        let (mut done, mut keys) = (0, 0);
        for peer in self.peers() {
            match self.exchange(&peer).await {
                Ok(k) => {
                    done += 1;
                    keys += k as u64;
                }
                Err(e) => tracing::warn!(%peer, error = %e, "anti-entropy exchange failed"),
            }
        }
        (done, keys)
    }
}
