//! This node as a replica: read a key's state, coordinate a write into it,
//! merge a state that another node sent. Knows nothing of the network.

use crate::data::register::{Actor, DecodeError};
use crate::data::value::{self, State, Update, ValueError, ValueLimits};
use crate::repair::aae::{self, Trees};
use crate::replication::quarantine::QuarantineHooks;
use crate::rpc::peer::PeerError;
use crate::storage::{Change, Durable, Space, StorageError, Store};
use crate::util::lock::ReadExt;
use crate::util::LockExt;
use kvorum_client::BucketType;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

/// A replica's records of a range: (storage key, state), in the range's
/// order.
pub type RangeRecords = Vec<(Vec<u8>, State)>;

/// Most records one range read of a replica returns, whatever it is asked.
const MAX_RANGE_RECORDS: usize = 10_000;

/// Why a replica operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicaError {
    /// The store failed; nothing is acknowledged.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A state from a peer is malformed.
    #[error("invalid state: {0}")]
    Invalid(#[from] DecodeError),
    /// The update or merge was refused (wrong type, bad context, too large).
    #[error(transparent)]
    Value(#[from] ValueError),
    /// The stored record of the key cannot be decoded; it is being
    /// quarantined (see [`crate::replication::quarantine`]).
    #[error("stored record cannot be decoded (quarantined; it will be repaired): {0}")]
    Undecodable(String),
}

impl From<ReplicaError> for PeerError {
    /// A replica's failure as a peer's answer says it.
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::Storage(e) => PeerError::Storage(e.to_string()),
            e @ ReplicaError::Undecodable(_) => PeerError::Storage(e.to_string()),
            e @ (ReplicaError::Invalid(_) | ReplicaError::Value(_)) => {
                PeerError::InvalidState(e.to_string())
            }
        }
    }
}

/// The storage key of (bucket, key) of the key-value API: the partition
/// `key` with the empty sort key (see [`kvorum_ring::item`]).
pub fn storage_key(bucket: &str, key: &[u8]) -> Vec<u8> {
    kvorum_ring::item::storage_key(bucket, key, b"")
}

/// The bucket name of a storage key (see [`kvorum_ring::item`]).
pub fn bucket_of(skey: &[u8]) -> Option<&str> {
    kvorum_ring::item::bucket_of(skey)
}

/// A coordinated update: the key's new state, the context handed to the
/// client, the version of the write.
pub type Coordinated = (State, Vec<u8>, kvorum_client::Version);

/// The local replica.
#[derive(Clone)]
pub struct Replica {
    /// The actor that issues this node's dots; its epoch changes when the
    /// node drops keys it handed off (see [`Replica::set_epoch`]).
    me: Arc<std::sync::RwLock<Actor>>,
    store: Store,
    limits: ValueLimits,
    trees: Arc<Mutex<Trees>>,
    /// Highest counter this node's actor issued on any key whose record was
    /// since reaped; kept in `Meta` (see [`crate::data::register::Register::write`]).
    dot_floor: Arc<AtomicU64>,
    /// What quarantining an undecodable record needs (set once wired).
    quarantine: Arc<std::sync::OnceLock<QuarantineHooks>>,
    /// The storage key of every write this replica applied, for the
    /// watches this node coordinates (sent only while one listens).
    changes: tokio::sync::broadcast::Sender<Vec<u8>>,
    /// Records removed (reaped or dropped) since storage was last compacted.
    removed: Arc<AtomicU64>,
    /// Expired records reaped here since start.
    expired_removed: Arc<AtomicU64>,
}

/// `Meta` key of the dot floor.
const DOT_FLOOR_KEY: &[u8] = b"dot-floor";

impl Replica {
    /// The replica that coordinates writes as `me`, over `store`, keeping
    /// the anti-entropy `trees` and key index up to date with every write:
    /// it makes them the store's indexer, so every change of the data
    /// space, whoever makes it, moves them (a store has one: a second
    /// replica over the same store is refused).
    pub fn new(
        me: Actor,
        store: Store,
        limits: ValueLimits,
        trees: Arc<Mutex<Trees>>,
    ) -> Result<Self, StorageError> {
        let indexer = Arc::new(crate::repair::aae::index::TreeIndex::new(&trees));
        if !store.set_indexer(indexer) {
            return Err(StorageError::Engine(
                "the store already has an indexer (another replica over it)".into(),
            ));
        }
        let floor = match store.get(Space::Meta, DOT_FLOOR_KEY)? {
            Some(b) => u64::from_le_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("dot floor".into()))?,
            ),
            None => 0,
        };
        Ok(Self {
            me: Arc::new(std::sync::RwLock::new(me)),
            store,
            limits,
            trees,
            dot_floor: Arc::new(AtomicU64::new(floor)),
            removed: Arc::new(AtomicU64::new(0)),
            expired_removed: Arc::new(AtomicU64::new(0)),
            quarantine: Default::default(),
            changes: tokio::sync::broadcast::channel(1024).0,
        })
    }

    /// The storage keys this replica writes from now on (a receiver that
    /// falls behind gets `Lagged`: anything may have changed).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Vec<u8>> {
        self.changes.subscribe()
    }

    fn changed(&self, key: &[u8]) {
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(key.to_vec());
        }
    }

    /// Wires quarantine of undecodable records (see
    /// [`crate::replication::quarantine`]); until then such a record stays
    /// and its key fails.
    pub fn set_quarantine(&self, hooks: QuarantineHooks) {
        let _ = self.quarantine.set(hooks);
    }

    pub(super) fn quarantine_hooks(&self) -> Option<&QuarantineHooks> {
        self.quarantine.get()
    }

    /// The actor this node coordinates as now.
    pub fn actor(&self) -> Actor {
        self.me.read_locked().clone()
    }

    /// Coordinates as a new epoch from now on (persist it first). A node
    /// that drops keys it handed off may own them again later, and would
    /// then coordinate from an empty state: as a new actor, its counter
    /// totals and dots start fresh instead of going back below what the
    /// other replicas hold of its old actor.
    pub fn set_epoch(&self, epoch: u64) {
        self.me.locked().epoch = epoch;
    }

    /// The bounds a state from a peer is held to.
    pub fn peer_limits(&self) -> ValueLimits {
        self.limits.for_peers()
    }

    /// The local state of a key. An undecodable record fails the read and
    /// is quarantined in the background.
    pub fn read(&self, key: &[u8]) -> Result<Option<State>, ReplicaError> {
        match self.store.get(Space::Data, key)? {
            None => Ok(None),
            Some(bytes) => value::decode_record(&bytes).map(Some).map_err(|e| {
                self.quarantine_later(key, e.to_string());
                ReplicaError::Undecodable(e.to_string())
            }),
        }
    }

    /// This replica's records between `low` and `high` (storage keys), in
    /// key order or, when `reverse`, descending: at most `limit` of them
    /// (at least one) and, past the first, no more than about `max_bytes`
    /// bytes. Also whether they are all it holds in the range. A record
    /// that does not decode is left out and quarantined (as a read does):
    /// the range's other replicas answer for it.
    pub fn range(
        &self,
        low: std::ops::Bound<&[u8]>,
        high: std::ops::Bound<&[u8]>,
        reverse: bool,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(RangeRecords, bool), ReplicaError> {
        let limit = limit.clamp(1, MAX_RANGE_RECORDS);
        let records = self.store.range(Space::Data, low, high, reverse, limit)?;
        let mut complete = records.len() < limit;
        let mut bytes = 0usize;
        let mut items = Vec::with_capacity(records.len());
        for (key, record) in records {
            if !items.is_empty() && bytes + key.len() + record.len() > max_bytes {
                complete = false;
                break;
            }
            bytes += key.len() + record.len();
            match value::decode_record(&record) {
                Ok(state) => items.push((key, state)),
                Err(e) => self.quarantine_later(&key, e.to_string()),
            }
        }
        if items.is_empty() && !complete {
            // No key to say how far the answer reaches.
            return Err(ReplicaError::Undecodable(
                "no record of the range's first page decodes".into(),
            ));
        }
        Ok((items, complete))
    }

    /// The partition keys of `bucket` this replica holds items of, past
    /// `after`, in byte order: at most `limit` (1 to 10,000), each found
    /// with one seek past the previous partition. Also whether they are
    /// all it holds past `after`.
    pub fn partitions(
        &self,
        bucket: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, bool), ReplicaError> {
        use kvorum_ring::item;
        use std::ops::Bound::{Excluded, Included};
        let limit = limit.clamp(1, MAX_RANGE_RECORDS);
        let past = |prefix: &[u8]| {
            let mut p = prefix.to_vec();
            while let Some(last) = p.pop() {
                if last < 0xff {
                    p.push(last + 1);
                    return p;
                }
            }
            p
        };
        let end = past(&item::bucket_prefix(bucket));
        let mut from = match after {
            Some(pk) => past(&item::partition_prefix(bucket, pk)),
            None => item::bucket_prefix(bucket),
        };
        let mut keys = Vec::new();
        while keys.len() < limit {
            let first = self
                .store
                .range(Space::Data, Included(&from), Excluded(&end), false, 1)?;
            let Some((key, _)) = first.into_iter().next() else {
                return Ok((keys, true));
            };
            let Some((_, pk, _)) = item::decode(&key) else {
                // Not a storage key of an item: step past it.
                from = [key.as_slice(), &[0]].concat();
                continue;
            };
            from = past(&item::partition_prefix(bucket, &pk));
            keys.push(pk);
        }
        Ok((keys, false))
    }

    /// The anti-entropy trees this replica maintains.
    pub fn trees(&self) -> &Arc<Mutex<Trees>> {
        &self.trees
    }

    /// The store (for rebuilding the trees from a full scan).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Coordinates a client update of a key of type `bucket_type`: applies
    /// it to the local state as this node's actor (a register write takes a
    /// fresh dot), and returns the key's new state (to replicate), the
    /// context to hand the client and the version of the write, as soon as
    /// the update is applied, with the [`Durable`] that resolves once it is
    /// stored under the sync policy. The caller may send the state to the
    /// other replicas meanwhile; it must not count this replica's copy
    /// before `Durable::wait` returns `Ok`. (Should the node crash first,
    /// the dot of this write may be on other replicas and not here: the
    /// node then restarts as a new epoch, see `node::start`, so it never
    /// issues that dot again for another write.)
    pub async fn coordinate(
        &self,
        key: Vec<u8>,
        bucket_type: BucketType,
        update: Update,
        now_ms: u64,
        expires_ms: Option<u64>,
    ) -> Result<(Coordinated, Durable), ReplicaError> {
        let me = self.actor();
        let limits = self.limits;
        let floor = self.dot_floor.clone();
        let k2 = key.clone();
        let (out, durable) = self
            .store
            .change_early(Space::Data, key, move |current| {
                let mut state = match decode_current(current, bucket_type) {
                    Ok(s) => s,
                    Err(e) => return (Change::Keep, Err(e), None),
                };
                let floor = if crate::util::plant::planted(crate::util::plant::Bug::DotReuse) {
                    0
                } else {
                    floor.load(Ordering::SeqCst)
                };
                let (ctx, version) = match state
                    .coordinate_versioned(&me, update, floor, now_ms, expires_ms, &limits)
                {
                    Ok(written) => written,
                    Err(e) => return (Change::Keep, Err(e.into()), None),
                };
                let change = Change::Record {
                    bytes: value::encode_record(&state),
                    dead_since: state.dead_since(),
                };
                (change, Ok((state, ctx, version)), None)
            })
            .await?;
        if let Err(ReplicaError::Undecodable(why)) = &out {
            self.quarantine_later(&k2, why.clone());
        }
        let out = out?;
        self.changed(&k2);
        Ok((out, durable))
    }

    /// Merges a state another node sent into the local one, durably.
    pub async fn merge(&self, key: Vec<u8>, incoming: State) -> Result<(), ReplicaError> {
        incoming.validate()?;
        // A peer's state is held to the client bounds (with room for
        // concurrent updates through several coordinators).
        incoming.check_bounds(&self.peer_limits())?;
        let merged = self.merge_with_repair(key.clone(), incoming).await;
        if merged.is_ok() {
            self.changed(&key);
        }
        merged
    }

    async fn merge_with_repair(&self, key: Vec<u8>, incoming: State) -> Result<(), ReplicaError> {
        #[cfg(feature = "test-hooks")]
        let incoming = if crate::util::plant::planted(crate::util::plant::Bug::ExpiryDropped) {
            incoming.without_expiry()
        } else {
            incoming
        };
        match self.merge_once(key.clone(), incoming).await {
            // The local record cannot be decoded: move it aside and take
            // the incoming state in its place (the repair).
            Err(Unmerged::Undecodable(why, incoming)) => {
                if !self.quarantine(&key, &why).await? {
                    return Err(ReplicaError::Undecodable(why));
                }
                self.merge_once(key, *incoming)
                    .await
                    .map_err(Unmerged::into_error)
            }
            done => done.map_err(Unmerged::into_error),
        }
    }

    async fn merge_once(&self, key: Vec<u8>, incoming: State) -> Result<(), Unmerged> {
        self.store
            .change_then(Space::Data, key, move |current| {
                // A record of an older format is rewritten even if nothing
                // changed, so that replicas holding equal states hold equal
                // bytes (anti-entropy compares hashes of them).
                let outdated = matches!(&current, Ok(Some(b)) if !value::record_is_current(b));
                let mut local = match decode_current(current, incoming.bucket_type()) {
                    Ok(r) => r,
                    Err(ReplicaError::Undecodable(why)) => {
                        let back = Unmerged::Undecodable(why, Box::new(incoming));
                        return (Change::Keep, Err(back), None);
                    }
                    Err(e) => return (Change::Keep, Err(Unmerged::Failed(e)), None),
                };
                let before = local.clone();
                if let Err(e) = local.merge(incoming) {
                    return (Change::Keep, Err(Unmerged::Failed(e.into())), None);
                }
                if local == before && !outdated {
                    (Change::Keep, Ok(()), None) // nothing new: no write, no sync
                } else {
                    let change = Change::Record {
                        bytes: value::encode_record(&local),
                        dead_since: local.dead_since(),
                    };
                    (change, Ok(()), None)
                }
            })
            .await
            .map_err(|e| Unmerged::Failed(e.into()))?
    }
}

/// Why a merge did not happen.
enum Unmerged {
    /// The local record cannot be decoded; the incoming state comes back.
    Undecodable(String, Box<State>),
    /// Anything else.
    Failed(ReplicaError),
}

impl Unmerged {
    fn into_error(self) -> ReplicaError {
        match self {
            Unmerged::Undecodable(why, _) => ReplicaError::Undecodable(why),
            Unmerged::Failed(e) => e,
        }
    }
}

impl Replica {
    /// Removes the key's state if it is still the one whose hash is
    /// `expected` and holds only tombstones (reaping, see
    /// [`crate::repair::exchange::AntiEntropy::reap`]). Returns whether it was removed.
    pub async fn reap(&self, key: Vec<u8>, expected: u64) -> Result<bool, ReplicaError> {
        self.delete_if(key, expected, true).await
    }

    /// Removes the key's state if it is still the one whose hash is
    /// `expected` (ownership handoff: every owner was seen to hold it).
    /// Returns whether it was removed.
    pub async fn drop_if(&self, key: Vec<u8>, expected: u64) -> Result<bool, ReplicaError> {
        self.delete_if(key, expected, false).await
    }

    /// Removes the key's state if its hash is still `expected` (and, with
    /// `tombstones_only`, it holds only tombstones), after making the dot
    /// floor cover every dot this node issued on it, durably, so that
    /// removing the record can never lead it to issue one of them again.
    async fn delete_if(
        &self,
        key: Vec<u8>,
        expected: u64,
        tombstones_only: bool,
    ) -> Result<bool, ReplicaError> {
        if !self.raise_floor(&key).await? {
            return Ok(false);
        }
        // (removed, whether what was removed had expired)
        // Essential: it frees space, so it runs below the disk's reserve.
        let (removed, expired) = self
            .store
            .change_essential(Space::Data, key, move |current| match current {
                Ok(Some(bytes)) if aae::state_hash(bytes) == expected => {
                    let state = value::decode_record(bytes).ok();
                    let dead = state.as_ref().is_some_and(|r| r.dead_since().is_some());
                    if tombstones_only && !dead {
                        return (Change::Keep, (false, false), None);
                    }
                    let expired = tombstones_only && state.is_some_and(|r| r.expiring());
                    (Change::Delete, (true, expired), None)
                }
                _ => (Change::Keep, (false, false), None),
            })
            .await?;
        if removed {
            self.removed.fetch_add(1, Ordering::Relaxed);
        }
        if expired {
            self.expired_removed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Records removed (reaped or dropped) since the last call: the caller
    /// compacts storage when they are many (see
    /// [`crate::repair::exchange::AntiEntropy::reap`]).
    pub fn take_removed(&self) -> u64 {
        self.removed.swap(0, Ordering::Relaxed)
    }

    /// Expired records this replica removed (reaped) since it started.
    pub fn expired_removed(&self) -> u64 {
        self.expired_removed.load(Ordering::Relaxed)
    }

    /// Records removed since the last [`Replica::take_removed`].
    pub fn removed(&self) -> u64 {
        self.removed.load(Ordering::Relaxed)
    }

    /// The dot floor: no dot of this node's actor at or below it is
    /// issued again (see [`Replica::raise_floor`]).
    pub fn dot_floor(&self) -> u64 {
        self.dot_floor.load(Ordering::SeqCst)
    }

    /// Makes the dot floor cover every dot this node issued on `key`,
    /// durably, before its record is removed; false if there is no record.
    async fn raise_floor(&self, key: &[u8]) -> Result<bool, ReplicaError> {
        let own = match self.read(key)? {
            Some(state) => state.own_counter(&self.actor()),
            None => return Ok(false),
        };
        if own > self.dot_floor.load(Ordering::SeqCst) {
            let floor = self.dot_floor.clone();
            // Essential: a record is removed after it, which frees space.
            self.store
                .change_essential(Space::Meta, DOT_FLOOR_KEY.to_vec(), move |current| {
                    // An unreadable floor counts as 0: `own` is written.
                    let stored = current
                        .ok()
                        .flatten()
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_le_bytes);
                    let new = stored.max(own);
                    floor.fetch_max(new, Ordering::SeqCst);
                    (Change::Put(new.to_le_bytes().to_vec()), (), None)
                })
                .await?;
        }
        Ok(true)
    }
}

/// Locks the trees; a poisoned lock still holds consistent XOR sums (every
/// update is a few XORs), so keep using it.
pub fn lock(trees: &Mutex<Trees>) -> std::sync::MutexGuard<'_, Trees> {
    trees.locked()
}

/// The stored state of a key, or the empty state of `bucket_type`.
fn decode_current(
    current: Result<Option<&[u8]>, StorageError>,
    bucket_type: BucketType,
) -> Result<State, ReplicaError> {
    match current? {
        None => Ok(State::empty(bucket_type)),
        Some(bytes) => {
            value::decode_record(bytes).map_err(|e| ReplicaError::Undecodable(e.to_string()))
        }
    }
}
