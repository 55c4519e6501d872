//! This node as a replica: read a key's state, coordinate a write into it,
//! merge a state that another node sent. Knows nothing of the network.

use crate::register::{self, Actor, DecodeError, DotContext, RegValue, Register};
use crate::storage::{Space, StorageError, Store};
use crdts::CvRDT;

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
}

impl Replica {
    /// The replica that coordinates writes as `me`, over `store`.
    pub fn new(me: Actor, store: Store, max_siblings: usize) -> Self {
        Self {
            me,
            store,
            max_siblings,
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
        self.store
            .update(Space::Data, key, move |current| {
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
                (Some(register::encode_record(&reg)), Ok((reg, own)))
            })
            .await?
    }

    /// Merges a state another node sent into the local one, durably.
    pub async fn merge(&self, key: Vec<u8>, incoming: Register) -> Result<(), ReplicaError> {
        incoming.validate()?;
        self.store
            .update(Space::Data, key, move |current| {
                let mut local = match decode_current(current) {
                    Ok(r) => r,
                    Err(e) => return (None, Err(e)),
                };
                let before = local.clone();
                local.merge(incoming);
                if local == before {
                    (None, Ok(())) // nothing new: no write, no sync
                } else {
                    (Some(register::encode_record(&local)), Ok(()))
                }
            })
            .await?
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
