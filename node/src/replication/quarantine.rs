//! Quarantine of undecodable records: a stored record that cannot be
//! decoded (a bad sector, a bug of an old version) is moved aside, counted,
//! and listed (`kvorum admin quarantine`); read repair or anti-entropy then
//! writes a good copy from the other replicas in its place.
//!
//! Before the record goes, the node starts a new data epoch: the record
//! may have held dots this node issued, and without it the node could not
//! know to issue above them (the same rule as after a crash, see
//! `start.rs`). The quarantined bytes stay in the node's metadata until an
//! operator removes the data directory's copy.

use super::replica::{Replica, ReplicaError};
use crate::data::value;
use crate::storage::{Change, Space, StorageError};
use crate::util::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `Meta` key prefix of quarantined records (then the storage key).
const PREFIX: &[u8] = b"quarantine/";

/// Most quarantined records a listing returns.
pub const MAX_LISTED: usize = 1000;

/// What quarantining needs from outside the replica: a new data epoch,
/// persisted before it is used, and the metric.
pub struct QuarantineHooks {
    /// Starts a new data epoch.
    /// (Given the replica, not holding it: the replica holds these hooks.)
    pub rotate_epoch:
        Arc<dyn Fn(Replica) -> BoxFuture<'static, Result<(), StorageError>> + Send + Sync>,
    /// Counts quarantined records.
    pub counter: metrics::Counter,
    /// Stamps quarantined records.
    pub clock: crate::util::clock::SharedClock,
}

/// A record kept aside.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Quarantined {
    /// Storage key.
    pub key: Vec<u8>,
    /// Why it could not be decoded.
    pub why: String,
    /// When it was moved aside (wall-clock milliseconds).
    pub at_ms: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Replica {
    /// Moves the undecodable record of `key` aside (see the module
    /// documentation). Returns whether the key now holds no undecodable
    /// record (false: quarantine is not wired, as in unit tests, and the
    /// record stays).
    pub async fn quarantine(&self, key: &[u8], why: &str) -> Result<bool, ReplicaError> {
        let Some(hooks) = self.quarantine_hooks() else {
            return Ok(false);
        };
        let store = self.store().clone();
        let Some(bytes) = store.get(Space::Data, key)? else {
            return Ok(true);
        };
        if value::decode_record(&bytes).is_ok() {
            return Ok(true);
        }
        (hooks.rotate_epoch)(self.clone()).await?;
        let kept = Quarantined {
            key: key.to_vec(),
            why: why.to_string(),
            at_ms: hooks.clock.wall_ms(),
            bytes: bytes.clone(),
        };
        let encoded = postcard::to_stdvec(&kept)
            .map_err(|e| StorageError::Corrupt(format!("quarantine record: {e}")))?;
        let mut meta_key = PREFIX.to_vec();
        meta_key.extend_from_slice(key);
        store
            .update(Space::Meta, meta_key, move |_| (Some(encoded), ()))
            .await?;
        // Two paths may find the record at once (a read, an exchange): the
        // one whose delete took it counts it and says so.
        let moved = store
            .change_then(Space::Data, key.to_vec(), move |current| match current {
                Ok(Some(b)) if b == bytes.as_slice() => (Change::Delete, true, None),
                _ => (Change::Keep, false, None),
            })
            .await?;
        if !moved {
            return Ok(true);
        }
        hooks.counter.increment(1);
        tracing::error!(
            key = %crate::net::identity::hex(key),
            why,
            "undecodable record quarantined (kvorum admin quarantine lists it); \
             read repair or anti-entropy will write a good copy"
        );
        Ok(true)
    }

    /// Quarantines `key` in the background (from a path that cannot wait).
    pub(super) fn quarantine_later(&self, key: &[u8], why: String) {
        if self.quarantine_hooks().is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (me, key) = (self.clone(), key.to_vec());
        runtime.spawn(async move {
            if let Err(e) = me.quarantine(&key, &why).await {
                tracing::warn!(error = %e, "could not quarantine an undecodable record");
            }
        });
    }

    /// The records this node quarantined (at most [`MAX_LISTED`]).
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, StorageError> {
        self.store()
            .scan(Space::Meta, PREFIX, MAX_LISTED)?
            .into_iter()
            .map(|(_, v)| {
                postcard::from_bytes(&v)
                    .map_err(|_| StorageError::Corrupt("quarantine record".into()))
            })
            .collect()
    }
}
