//! Durable storage: a small [`Engine`] trait over the embedded LSM (fjall),
//! and [`Store`], which serializes read-modify-write updates through one
//! writer thread with **group commit**: every update queued while the previous
//! batch was syncing joins the next batch, and the whole batch shares one
//! fsync. Synced writes then cost latency, not throughput.
//!
//! # Layout
//! ```text
//! node/src/storage/
//!   mod.rs       the Engine trait and its contract, spaces, errors, the sync policy
//!   fjall.rs     FjallEngine: the on-disk engine (fjall, one keyspace per space)
//!   memory.rs    MemoryEngine: the in-memory engine of simulations, with power loss
//!   measured.rs  Measured: an engine wrapper that times each call into the metrics
//!   store.rs     Store: serialized updates, the indexer, work on the writer thread
//!   store/writer.rs  the writer thread: group commit, fail-stop, the clean close
//!   disk.rs      the free-space watermark: client writes refused before the disk is full
//!   migrate.rs   the storage-key migration to sorted partitions, run once at start
//! ```
//!
//! # The `Engine` contract
//! Every engine ([`FjallEngine`], [`MemoryEngine`]) keeps it, and the tests of
//! `contract_tests.rs` check it on both:
//! - **Atomic batches.** [`Engine::commit`] applies every item of a batch or
//!   none: after a crash or power loss a batch is there whole or not at all,
//!   and once `commit` returned `Ok` every read ([`Engine::get`],
//!   [`Engine::scan`], [`Engine::scan_after`]) on any thread sees all of it.
//!   Reads are not snapshots: a read that runs during a commit may see part
//!   of its batch, and a scan that runs across commits may mix them (fjall
//!   reads the newest version of each key as it goes). [`MemoryEngine`],
//!   behind one lock, happens to show each batch whole: no caller may rely
//!   on that. Items apply in order: when a batch names a key twice, the
//!   later item wins (the store's group commit relies on it).
//! - **Keys** are 1 to 65,535 bytes long: fjall panics on others, and
//!   [`MemoryEngine`] refuses a batch that holds one.
//! - **Durability.** A commit with `sync: true` that returned `Ok` survives a
//!   power loss, and so does every commit before it. So does everything
//!   committed before an [`Engine::sync`] that returned `Ok`. A commit with
//!   `sync: false` survives the process (a crash or `kill -9`) but a power
//!   loss may lose it. After an `Err` from `commit` or `sync`, what the batch
//!   (or the engine) holds is unknown: the caller must not acknowledge it
//!   (the store stops taking writes, see [`Store::failed`]).
//! - **Scans** return a space's records in ascending byte order of their
//!   keys, at most `limit` of them, the first ones of that order; a range
//!   read in reverse returns the last ones, in descending order.
//! - **Spaces** are separate: a key of one [`Space`] is never seen in another.
//!
//! # The store's failure contract
//! When [`Store::update`] returns `Ok`, the update is on disk under
//! [`SyncPolicy::Always`] (it survives `kill -9` and power loss), or in the OS
//! page cache under [`SyncPolicy::Periodic`] (it survives `kill -9`; a power
//! loss may lose the last interval). When it returns `Err`, the update may or
//! may not be on disk and the caller must not acknowledge it.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

pub mod disk;
mod fjall;
mod measured;
mod memory;
pub mod migrate;
mod store;

#[cfg(test)]
mod contract_tests;

pub use self::fjall::FjallEngine;
pub use measured::Measured;
pub use memory::MemoryEngine;
pub use store::{Change, Closed, Durable, Hook, Indexer, Store};
pub(crate) use store::{CLEAN_CLOSE_KEY, CLOSED_BY_KEY, CLOSED_WITH_INDEX};

/// Key spaces of the node's database. Each is a separate LSM tree; a batch
/// can span them atomically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Replica data: one record per (bucket, key).
    Data,
    /// Node metadata (format version, known members).
    Meta,
    /// Hints: writes held for another replica (sloppy quorum).
    Hints,
    /// The index of [`Space::Data`] a [`store::Indexer`] keeps: the store
    /// writes it in the same batch as every data change (see
    /// [`Store::set_indexer`]).
    Index,
}

/// Storage failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The engine reported an error (IO, corruption).
    #[error("storage engine: {0}")]
    Engine(String),
    /// The writer thread has stopped (the node is shutting down).
    #[error("storage is closed")]
    Closed,
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The disk is (nearly) full: the write was refused below the
    /// free-space watermark before anything was written (see [`disk`]), or
    /// the engine failed a commit for want of space (then the store stops
    /// taking writes until the node restarts, which `kvorum start` does by
    /// itself once space is back).
    #[error("disk full: {0}")]
    DiskFull(String),
    /// The writer has been held on one commit for longer than the
    /// configured limit (`[storage] overloaded_after_ms`): a client write
    /// is refused before anything is queued (see
    /// [`store::Store::overloaded`]).
    #[error("overloaded: {0}")]
    Overloaded(String),
}

/// When replicas sync their writes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Sync every batch before acknowledging (the default). With group commit
    /// concurrent writes share one sync.
    Always,
    /// Acknowledge once written to the OS; sync every interval (Cassandra's
    /// `commitlog_sync: periodic`). A power loss can lose the last interval.
    Periodic(Duration),
}

/// A stored (key, value) pair.
pub type Record = (Vec<u8>, Vec<u8>);

/// One write of a batch: `None` deletes the key.
pub type BatchItem = (Space, Vec<u8>, Option<Vec<u8>>);

/// The storage engine behind [`Store`]. Implementations keep the contract
/// of the module doc: a committed batch is atomic, and durable when `sync`
/// is true; scans are in key order.
pub trait Engine: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Applies a batch atomically; fsyncs before returning when `sync`.
    fn commit(&self, batch: Vec<BatchItem>, sync: bool) -> Result<(), StorageError>;
    /// Syncs everything committed so far.
    fn sync(&self) -> Result<(), StorageError>;
    /// Up to `limit` (key, value) pairs of a space whose key starts with
    /// `prefix`, in key order.
    fn scan(&self, space: Space, prefix: &[u8], limit: usize) -> Result<Vec<Record>, StorageError>;
    /// Up to `limit` (key, value) pairs of a space whose key is after
    /// `after` (from the first key when `None`), in key order.
    fn scan_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError>;
    /// Calls `visit` with up to `limit` (key, value) pairs of a space whose
    /// key is after `after`, in key order, without copying them where the
    /// engine can (a pass over all the data keeps no chunk of it), until
    /// `visit` returns false; returns how many it visited.
    fn visit_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, StorageError> {
        let records = self.scan_after(space, after, limit)?;
        let mut visited = 0;
        for (k, v) in &records {
            visited += 1;
            if !visit(k, v) {
                break;
            }
        }
        Ok(visited)
    }
    /// Up to `limit` (key, value) pairs of a space whose key lies between
    /// `low` and `high`, in ascending key order, or descending when
    /// `reverse` (then the last ones of the range come first).
    fn range(
        &self,
        space: Space,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError>;
    /// Bytes on disk and (approximate) keys of the data space, if known.
    fn size(&self) -> Option<EngineSize> {
        None
    }
    /// Rewrites the data space so that the space of removed keys comes
    /// back (an LSM engine drops their tombstones and older versions);
    /// blocks until done. Engines that free space at once do nothing.
    fn compact(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// The free space of the filesystem the engine writes to, if it has
    /// one (the watermark of [`disk`] reads it).
    fn disk_space(&self) -> Option<disk::Space> {
        None
    }
    /// A consistent view of every space as of now, which later commits do
    /// not change (a backup reads one while writes go on). Holding it keeps
    /// the engine from dropping what it sees: keep it short-lived.
    fn snapshot(&self) -> Result<Arc<dyn EngineSnapshot>, StorageError>;
}

/// A point-in-time view of an engine's spaces (see [`Engine::snapshot`]).
pub trait EngineSnapshot: Send + Sync + 'static {
    /// Reads one key as of the snapshot.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// As [`Engine::visit_after`], as of the snapshot.
    fn visit_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, StorageError>;
}

/// How big an engine's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSize {
    /// Bytes the engine uses on disk (every space).
    pub disk_bytes: u64,
    /// Keys of [`Space::Data`], approximate.
    pub keys: u64,
}
