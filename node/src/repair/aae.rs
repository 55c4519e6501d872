//! Active anti-entropy (Dynamo §4.7) with XOR-combined "tictac" hash trees
//! (as Riak's tictac AAE): pure bookkeeping, no IO.
//!
//! For every peer it shares keys with, a node keeps one tree over exactly the
//! keys both should hold (the keys whose preference list holds both). Two
//! peers' trees for each other are equal iff they hold the same states of
//! those keys. A tree has [`SEGMENTS`] leaves in [`BRANCHES`] branches; a key
//! falls in a segment by a hash of its storage key, and contributes
//! `xxh3(key ++ state hash)` to its leaf by XOR. So an update is O(1) per
//! peer (XOR out the old contribution, XOR in the new), the order of updates
//! does not matter, and no exchange rescans storage. The state hash is xxh3
//! of the stored record, whose encoding is canonical (the register keeps
//! `BTreeMap`s; CRATES.md warns that `crdts`' own encodings are not).
//!
//! An exchange compares branch hashes, then the leaves of differing
//! branches, then lists the keys of differing leaves only, so its cost grows
//! with the differences, not with the data. The keys and state hashes come
//! from the **key index on disk** ([`index`]): `segment ++ key → state
//! hash`, in [`crate::storage::Space::Index`], which the store writes in
//! the same batch as every data change. Memory holds only the trees (a
//! leaf per segment per peer) and the tombstone-only keys, not a byte per
//! key. The trees are built from the index at start-up and redone from it
//! when the ring changes, a few segments at a time, each read at one cut
//! of the write stream ([`Trees::begin`], [`Trees::replace`],
//! [`Trees::count`]); writes meanwhile keep both the old and the new trees.

mod digest;
pub mod index;

pub use digest::leaf_of;
pub use index::Entry;

use crate::util::clock::SharedClock;
use kvorum_ring::{NodeId, Ring};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Leaves per tree.
pub const SEGMENTS: u32 = 16_384;
/// Branches per tree; each covers `SEGMENTS / BRANCHES` leaves.
pub const BRANCHES: u32 = 128;
/// Leaves per branch.
pub const PER_BRANCH: u32 = SEGMENTS / BRANCHES;

/// A key's replication factor, from its storage key (buckets have their own N).
pub type NOf = std::sync::Arc<dyn Fn(&[u8]) -> usize + Send + Sync>;

/// The same replication factor for every key.
pub fn fixed_n(n: usize) -> NOf {
    std::sync::Arc::new(move |_| n)
}

/// The hash of a stored record (a key's state).
pub fn state_hash(record: &[u8]) -> u64 {
    xxh3_64(record)
}

/// The segment (leaf) of a storage key.
pub fn segment(key: &[u8]) -> u32 {
    // A seed distinct from the ring's token hash, so segments and ring
    // positions are independent.
    (xxh3_64_with_seed(key, 0x6161_6531) % u64::from(SEGMENTS)) as u32
}

fn contribution(key: &[u8], hash: u64) -> u64 {
    // xxh3 of key ++ hash; on the stack for the usual key sizes (this runs
    // twice on every write), in a buffer small enough that zeroing it costs
    // nothing next to the hash.
    let len = key.len() + 8;
    let on_stack = |stack: &mut [u8]| {
        stack[..key.len()].copy_from_slice(key);
        stack[key.len()..len].copy_from_slice(&hash.to_le_bytes());
        xxh3_64(&stack[..len])
    };
    if len <= 72 {
        return on_stack(&mut [0u8; 72]);
    }
    if len <= 264 {
        return on_stack(&mut [0u8; 264]);
    }
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(key);
    buf.extend_from_slice(&hash.to_le_bytes());
    xxh3_64(&buf)
}

/// The trees and tombstone-only keys of one node.
#[derive(Clone)]
pub struct Trees {
    me: NodeId,
    n: NOf,
    ring: Ring,
    /// Placement version the ring came from (`None`: never built).
    version: Option<u64>,
    /// Peer → leaf hashes.
    trees: HashMap<NodeId, Vec<u64>>,
    /// Keys whose state holds only tombstones, with the latest delete time
    /// and when this node first held that state (the candidates for
    /// reaping).
    tombstones: BTreeMap<Vec<u8>, Dead>,
    /// The node's clock, for [`Dead::seen`] (`None`: in pure tests).
    clock: Option<SharedClock>,
    /// The trees of a new ring being built, segment by segment.
    pending: Option<Pending>,
}

/// A tombstone-only key: its latest delete time (by the clock of the
/// coordinator that deleted), and when this node first held this state (by
/// its own monotonic clock). Reaping needs both past the grace, so a
/// coordinator whose wall clock runs behind cannot make a tombstone look
/// old (swarm seed 9512: a delete stamped 23 s in the past was reaped 1.4 s
/// after it was acknowledged, with a grace of 16 s), and no wall-clock jump
/// here can either.
#[derive(Clone, Debug)]
struct Dead {
    at_ms: u64,
    /// The state hash of the tombstone-only state.
    hash: u64,
    seen: Option<tokio::time::Instant>,
}

impl Dead {
    /// Held here for at least `grace` by `clock` (always, without either).
    fn held_for(&self, clock: Option<&SharedClock>, grace: std::time::Duration) -> bool {
        match (&self.seen, clock) {
            (Some(seen), Some(clock)) => clock.since(*seen) >= grace,
            _ => true,
        }
    }
}

/// Trees for a new ring, built from the index in segment order: segments
/// below `next` are done (and kept up to date by writes), the rest are not
/// yet counted.
#[derive(Clone)]
struct Pending {
    ring: Ring,
    version: u64,
    next: u32,
    trees: HashMap<NodeId, Vec<u64>>,
}

/// The peers that replicate `key` together with `me` on `ring`.
fn peers_on(ring: &Ring, me: &NodeId, n: &NOf, key: &[u8]) -> Vec<NodeId> {
    let pref = ring.item_preference_list(key, n(key));
    if !pref.contains(me) {
        return Vec::new();
    }
    pref.into_iter().filter(|p| p != me).collect()
}

fn xor_into(trees: &mut HashMap<NodeId, Vec<u64>>, peers: Vec<NodeId>, seg: u32, delta: u64) {
    for p in peers {
        trees.entry(p).or_insert_with(|| vec![0; SEGMENTS as usize])[seg as usize] ^= delta;
    }
}

impl Trees {
    /// Empty trees of node `me` on `ring`, where `n` gives each key's
    /// replication factor (its bucket's N).
    pub fn new(me: NodeId, n: NOf, ring: Ring) -> Self {
        Self {
            me,
            n,
            ring,
            version: None,
            trees: HashMap::new(),
            tombstones: BTreeMap::new(),
            clock: None,
            pending: None,
        }
    }

    /// Trees that note, by `clock`, when each tombstone was first held
    /// here (the node's; [`Trees::new`] alone notes nothing, and the grace
    /// then runs from the delete time only).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The ring the trees are for.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The placement version the trees were built for.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The placement version of the trees being built, if any.
    pub fn pending_version(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.version)
    }

    /// The peers that replicate `key` together with this node.
    fn peers_of(&self, key: &[u8]) -> Vec<NodeId> {
        peers_on(&self.ring, &self.me, &self.n, key)
    }

    /// Starts building the trees of `ring` (placement `version`) from
    /// nothing, as at start-up: every tree and tombstone-only key is
    /// dropped, and [`Trees::count`] counts the index in, segment by
    /// segment. Until it is done the trees have no version.
    pub fn begin(&mut self, ring: Ring, version: u64) {
        self.ring = ring.clone();
        self.version = None;
        self.trees.clear();
        self.tombstones.clear();
        self.pending = Some(Pending {
            ring,
            version,
            next: 0,
            trees: HashMap::new(),
        });
    }

    /// Starts building the trees of `ring` (placement `version`) from the
    /// index; [`Trees::count`] does the work. Until it is done, the current
    /// trees stay in use. Replaces a build of an older version; a version
    /// not newer than the trees or the build in progress is ignored.
    pub fn replace(&mut self, ring: Ring, version: u64) {
        if self.version >= Some(version) || self.pending_version() >= Some(version) {
            return;
        }
        self.pending = Some(Pending {
            ring,
            version,
            next: 0,
            trees: HashMap::new(),
        });
    }

    /// Drops the build in progress (after a failure part-way through a
    /// segment); the next [`Trees::replace`] starts over.
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    /// The next (up to `segments`) segments the build in progress needs
    /// counted, if one is in progress.
    pub fn to_count(&self, segments: u32) -> Option<Range<u32>> {
        self.pending
            .as_ref()
            .map(|p| p.next..p.next.saturating_add(segments).min(SEGMENTS))
    }

    /// Counts the index entries of `segments` (every one of them, as the
    /// index holds them now: the caller reads them at the same cut of the
    /// write stream as this call, see [`crate::storage::Store::on_writer`])
    /// into the build in progress, which must need exactly those next; when
    /// every segment is counted, its trees become the trees. Returns true
    /// when no build is left.
    pub fn count(&mut self, segments: Range<u32>, entries: &[Entry]) -> bool {
        let Some(p) = self.pending.as_mut().filter(|p| p.next == segments.start) else {
            return self.pending.is_none();
        };
        for e in entries {
            let seg = segment(&e.key);
            debug_assert!(segments.contains(&seg));
            let peers = peers_on(&p.ring, &self.me, &self.n, &e.key);
            xor_into(&mut p.trees, peers, seg, contribution(&e.key, e.hash));
        }
        p.next = segments.end.min(SEGMENTS);
        let done = p.next >= SEGMENTS;
        // The tombstone-only keys, as they are at this cut.
        for e in entries {
            self.note_dead(&e.key, e.hash, e.dead);
        }
        if !done {
            return false;
        }
        if let Some(p) = self.pending.take() {
            self.ring = p.ring;
            self.version = Some(p.version);
            self.trees = p.trees;
        }
        true
    }

    /// Records that `key`'s state went from hashing to `old` to hashing to
    /// `new` (`None`: no record), and whether it now holds only tombstones
    /// (with the latest delete time). Each committed change is recorded
    /// once, in commit order (the store's indexer hook does it).
    pub fn update(
        &mut self,
        key: &[u8],
        old: Option<u64>,
        new: Option<u64>,
        tombstone: Option<u64>,
    ) {
        match new {
            Some(h) => self.note_dead(key, h, tombstone),
            None => {
                self.tombstones.remove(key);
            }
        }
        if old == new {
            return;
        }
        let delta =
            old.map_or(0, |h| contribution(key, h)) ^ new.map_or(0, |h| contribution(key, h));
        self.xor(key, segment(key), delta);
    }

    /// Notes whether `key`, whose state hashes to `hash`, holds only
    /// tombstones: the same state again (a build reading what a hook
    /// recorded) keeps when it was first held.
    fn note_dead(&mut self, key: &[u8], hash: u64, tombstone: Option<u64>) {
        match tombstone {
            Some(t)
                if self
                    .tombstones
                    .get(key)
                    .is_some_and(|d| d.at_ms == t && d.hash == hash) => {}
            Some(t) => {
                let seen = self.clock.as_ref().map(|c| c.now());
                self.tombstones.insert(
                    key.to_vec(),
                    Dead {
                        at_ms: t,
                        hash,
                        seen,
                    },
                );
            }
            None if !self.tombstones.is_empty() => {
                self.tombstones.remove(key);
            }
            None => {}
        }
    }

    fn xor(&mut self, key: &[u8], seg: u32, delta: u64) {
        let peers = self.peers_of(key);
        xor_into(&mut self.trees, peers, seg, delta);
        // A segment the new trees already counted follows every write too.
        if let Some(p) = self.pending.as_mut().filter(|p| seg < p.next) {
            let peers = peers_on(&p.ring, &self.me, &self.n, key);
            xor_into(&mut p.trees, peers, seg, delta);
        }
    }

    /// Tombstone-only keys this node is the first replica of, deleted before
    /// `before_ms` and held here for at least `grace` (by the node's
    /// monotonic clock): up to `limit` of them, in key order starting after
    /// key `after` and wrapping around, each at most once.
    pub fn reapable(
        &self,
        before_ms: u64,
        grace: std::time::Duration,
        limit: usize,
        after: Option<&[u8]>,
    ) -> Vec<Vec<u8>> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let tail = match after {
            Some(k) => self.tombstones.range::<[u8], _>((Excluded(k), Unbounded)),
            None => self.tombstones.range::<[u8], _>((Unbounded, Unbounded)),
        };
        // With a cursor, wrap around to the keys up to it.
        let head = after.map(|k| self.tombstones.range::<[u8], _>((Unbounded, Included(k))));
        tail.chain(head.into_iter().flatten())
            .filter(|(_, d)| d.at_ms < before_ms && d.held_for(self.clock.as_ref(), grace))
            .filter(|(k, _)| {
                self.ring.item_preference_list(k, (self.n)(k)).first() == Some(&self.me)
            })
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect()
    }

    /// Whether this node has held `key` as a tombstone whose state hashes
    /// to `hash` for at least `grace` by its monotonic clock (see
    /// [`Trees::reapable`]; without a clock, whether it holds that
    /// tombstone at all).
    pub fn held_dead_for(&self, key: &[u8], hash: u64, grace: std::time::Duration) -> bool {
        self.tombstones
            .get(key)
            .is_some_and(|d| d.hash == hash && d.held_for(self.clock.as_ref(), grace))
    }

    /// The replicas of `key` (the preference list).
    pub fn replicas(&self, key: &[u8]) -> Vec<NodeId> {
        self.ring.item_preference_list(key, (self.n)(key))
    }

    /// Rebuilds everything from `(key, state hash)` of every stored key, for
    /// `ring` of placement `version`.
    pub fn rebuild(
        &mut self,
        ring: Ring,
        version: u64,
        records: impl IntoIterator<Item = (Vec<u8>, u64, Option<u64>)>,
    ) {
        self.ring = ring;
        self.version = Some(version);
        self.pending = None;
        self.trees.clear();
        self.tombstones.clear();
        for (k, h, t) in records {
            self.update(&k, None, Some(h), t);
        }
    }

    fn tree(&self, peer: &NodeId) -> Option<&Vec<u64>> {
        self.trees.get(peer)
    }

    /// The branch hashes of the tree shared with `peer`.
    pub fn branches(&self, peer: &NodeId) -> Vec<u64> {
        let Some(t) = self.tree(peer) else {
            return vec![0; BRANCHES as usize];
        };
        t.chunks(PER_BRANCH as usize)
            .map(|c| c.iter().fold(0, |a, h| a ^ h))
            .collect()
    }

    /// The leaves of the given branches of the tree shared with `peer`.
    pub fn leaves(&self, peer: &NodeId, branches: &[u32]) -> Vec<(u32, Vec<u64>)> {
        branches
            .iter()
            .filter(|b| **b < BRANCHES)
            .map(|b| {
                let range = (*b * PER_BRANCH) as usize..((*b + 1) * PER_BRANCH) as usize;
                let leaves = self
                    .tree(peer)
                    .map_or_else(|| vec![0; PER_BRANCH as usize], |t| t[range].to_vec());
                (*b, leaves)
            })
            .collect()
    }

    /// The keys (and state hashes) of index `entries` that this node
    /// shares with `peer`.
    pub fn keys(&self, peer: &NodeId, entries: Vec<Entry>) -> Vec<(Vec<u8>, u64)> {
        entries
            .into_iter()
            .filter(|e| self.peers_of(&e.key).contains(peer))
            .map(|e| (e.key, e.hash))
            .collect()
    }

    /// The root hash of the tree shared with `peer` (0 when empty).
    pub fn root(&self, peer: &NodeId) -> u64 {
        self.branches(peer).iter().fold(0, |a, h| a ^ h)
    }

    /// Whether `other` holds the same trees (a peer's tree of only zero
    /// leaves counts as no tree) and reaping candidates.
    pub fn agrees_with(&self, other: &Trees) -> bool {
        let zeros = vec![0; SEGMENTS as usize];
        let peers = self.trees.keys().chain(other.trees.keys());
        peers
            .into_iter()
            .all(|p| self.trees.get(p).unwrap_or(&zeros) == other.trees.get(p).unwrap_or(&zeros))
            && self.tombstones.len() == other.tombstones.len()
            && self
                .tombstones
                .iter()
                .zip(other.tombstones.iter())
                .all(|((a, x), (b, y))| a == b && x.at_ms == y.at_ms && x.hash == y.hash)
    }
}

/// Indices where two equally long hash lists differ.
pub fn differing(a: &[u64], b: &[u64]) -> Vec<u32> {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i as u32)
        .collect()
}

/// Keys whose states differ between two listings (missing on either side included).
pub fn differing_keys(local: &[(Vec<u8>, u64)], remote: &[(Vec<u8>, u64)]) -> Vec<Vec<u8>> {
    let l: BTreeMap<&Vec<u8>, u64> = local.iter().map(|(k, h)| (k, *h)).collect();
    let r: BTreeMap<&Vec<u8>, u64> = remote.iter().map(|(k, h)| (k, *h)).collect();
    let mut out: Vec<Vec<u8>> = l
        .iter()
        .filter(|(k, h)| r.get(*k) != Some(h))
        .map(|(k, _)| (*k).clone())
        .collect();
    out.extend(
        r.keys()
            .filter(|k| !l.contains_key(*k))
            .map(|k| (*k).clone()),
    );
    out
}

#[cfg(test)]
mod tests;
