//! This node as a replica: read a key's state, coordinate a write into it,
//! merge a state that another node sent. Knows nothing of the network.

use crate::aae::{self, Trees};
use crate::register::{self, Actor, DecodeError, DotContext, RegValue, Register};
use crate::storage::{Change, Space, StorageError, Store};
use crdts::CvRDT;
use std::sync::{Arc, Mutex};

/// Why a replica operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicaError {
    /// The store failed; nothing is acknowledged.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The client's context cannot be used (e.g. a counter at its maximum).
    #[error("invalid causal context: {0}")]
    Context(#[from] DecodeError),
    /// The write would leave more values on the key than allowed.
    #[error("key would hold {count} values (max {max}): resolve its siblings first")]
    TooManySiblings {
        /// Values the key would hold.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// The storage key of (bucket, key): a length-prefixed bucket then the key, so
/// no two pairs share a storage key. Also the key's position input on the ring.
pub fn storage_key(bucket: &str, key: &[u8]) -> Vec<u8> {
    let b = bucket.as_bytes();
    let mut out = Vec::with_capacity(2 + b.len() + key.len());
    // Bucket names are bounded far below u16::MAX by the node's limits.
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
    out.extend_from_slice(key);
    out
}

/// The local replica.
#[derive(Clone)]
pub struct Replica {
    me: Actor,
    store: Store,
    max_siblings: usize,
    trees: Arc<Mutex<Trees>>,
}

impl Replica {
    /// The replica that coordinates writes as `me`, over `store`, keeping
    /// the anti-entropy `trees` up to date with every write.
    pub fn new(me: Actor, store: Store, max_siblings: usize, trees: Arc<Mutex<Trees>>) -> Self {
        Self {
            me,
            store,
            max_siblings,
            trees,
        }
    }

    /// The local state of a key.
    pub fn read(&self, key: &[u8]) -> Result<Option<Register>, ReplicaError> {
        match self.store.get(Space::Data, key)? {
            None => Ok(None),
            Some(bytes) => register::decode_record(&bytes)
                .map(Some)
                .map_err(|e| StorageError::Corrupt(e.to_string()).into()),
        }
    }

    /// The anti-entropy trees this replica maintains.
    pub fn trees(&self) -> &Arc<Mutex<Trees>> {
        &self.trees
    }

    /// The store (for rebuilding the trees from a full scan).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Coordinates a client write: gives `value` a fresh dot, removes what
    /// `ctx` covers, stores the result durably, and returns the key's new
    /// state (to replicate) and the write's own context.
    pub async fn coordinate(
        &self,
        key: Vec<u8>,
        ctx: DotContext,
        value: RegValue,
    ) -> Result<(Register, DotContext), ReplicaError> {
        let me = self.me.clone();
        let max = self.max_siblings;
        let trees = self.trees.clone();
        let k = key.clone();
        self.store
            .update(Space::Data, key, move |current| {
                let old = old_hash(&current);
                let mut reg = match decode_current(current) {
                    Ok(r) => r,
                    Err(e) => return (None, Err(e)),
                };
                let own = match reg.write(&me, &ctx, value) {
                    Ok(own) => own,
                    Err(e) => return (None, Err(e.into())),
                };
                let count = reg.value_count();
                if count > max {
                    return (None, Err(ReplicaError::TooManySiblings { count, max }));
                }
                let record = register::encode_record(&reg);
                // In the writer thread, so tree updates follow write order.
                lock(&trees).update(&k, old, aae::state_hash(&record), reg.tombstone_only());
                (Some(record), Ok((reg, own)))
            })
            .await?
    }

    /// Merges a state another node sent into the local one, durably.
    pub async fn merge(&self, key: Vec<u8>, incoming: Register) -> Result<(), ReplicaError> {
        incoming.validate()?;
        let trees = self.trees.clone();
        let k = key.clone();
        self.store
            .update(Space::Data, key, move |current| {
                let old = old_hash(&current);
                let mut local = match decode_current(current) {
                    Ok(r) => r,
                    Err(e) => return (None, Err(e)),
                };
                let before = local.clone();
                local.merge(incoming);
                if local == before {
                    (None, Ok(())) // nothing new: no write, no sync
                } else {
                    let record = register::encode_record(&local);
                    lock(&trees).update(&k, old, aae::state_hash(&record), local.tombstone_only());
                    (Some(record), Ok(()))
                }
            })
            .await?
    }
}

impl Replica {
    /// Removes the key's state if it is still the one whose hash is
    /// `expected` and holds only tombstones (reaping, see
    /// [`crate::repair::AntiEntropy::reap`]). Returns whether it was removed.
    pub async fn reap(&self, key: Vec<u8>, expected: u64) -> Result<bool, ReplicaError> {
        let trees = self.trees.clone();
        let k = key.clone();
        let removed = self
            .store
            .change(Space::Data, key, move |current| match current {
                Ok(Some(bytes)) if aae::state_hash(bytes) == expected => {
                    let tombstones_only =
                        register::decode_record(bytes).is_ok_and(|r| r.tombstone_only().is_some());
                    if !tombstones_only {
                        return (Change::Keep, false);
                    }
                    lock(&trees).remove(&k, expected);
                    (Change::Delete, true)
                }
                _ => (Change::Keep, false),
            })
            .await?;
        Ok(removed)
    }
}

/// Locks the trees; a poisoned lock still holds consistent XOR sums (every
/// update is a few XORs), so keep using it.
pub fn lock(trees: &Mutex<Trees>) -> std::sync::MutexGuard<'_, Trees> {
    trees.lock().unwrap_or_else(|e| e.into_inner())
}

fn old_hash(current: &Result<Option<&[u8]>, StorageError>) -> Option<u64> {
    match current {
        Ok(Some(bytes)) => Some(aae::state_hash(bytes)),
        _ => None,
    }
}

fn decode_current(current: Result<Option<&[u8]>, StorageError>) -> Result<Register, ReplicaError> {
    match current? {
        None => Ok(Register::new()),
        Some(bytes) => {
            register::decode_record(bytes).map_err(|e| StorageError::Corrupt(e.to_string()).into())
        }
    }
}
