//! Backups, restores and verification: the node's side of `kvorum admin
//! backup`, `restore` and `verify`.
//!
//! - **Backup** ([`Backups`]): a storage snapshot of this node (one
//!   sequence number across its spaces: writes go on, the snapshot does not
//!   see them), read page by page in storage-key order by the admin
//!   command, with a manifest: data epoch, dot floor, members, buckets.
//!   At most [`MAX_OPEN`] snapshots at once; one unread for [`IDLE`] is
//!   released by a periodic check (a snapshot keeps the engine from
//!   dropping what it sees, so an abandoned one must not stay).
//! - **Restore**: records of a backup handed to any node of a new cluster
//!   are placed on their owners by the transfer machinery's handoff steps
//!   (digest, then merge of what an owner lacks; see
//!   [`crate::repair::transfer::Transfers::place`]).
//! - **Verify**: a digest of the keys this node holds as first replica
//!   (see [`crate::repair::exchange::AntiEntropy::digest`]).
//!
//! `file` is the on-disk format of a backup directory, which the admin
//! command writes and reads.

pub mod file;

use crate::cluster::buckets::Buckets;
use crate::cluster::membership::Membership;
use crate::metrics::{self, Metrics};
use crate::replication::replica::Replica;
use crate::storage::{EngineSnapshot, Space, StorageError, Store};
use crate::util::clock::SharedClock;
use crate::util::LockExt;
use kvorum_client::proto::{BackupAnswer, BackupManifest, BackupStep, ErrorReply, MemberStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Most backup snapshots open at once on a node.
pub const MAX_OPEN: usize = 4;
/// A snapshot unread for this long is released.
pub const IDLE: Duration = Duration::from_secs(60);
/// Largest page a node answers, in bytes of keys and records (a page
/// holds at least one record, whatever its size).
pub const MAX_PAGE_BYTES: u32 = 8 << 20;

/// The format of the records a backup holds: the node's stored record
/// format (`data::value::record`), read by every later build.
pub const RECORD_FORMAT: u32 = 1;

/// This node's open backup snapshots.
#[derive(Clone)]
pub struct Backups {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    replica: Replica,
    membership: Arc<Membership>,
    buckets: Buckets,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    open: Mutex<HashMap<u64, Open>>,
    /// The next snapshot id (starts at a random value: ids of an earlier
    /// run of the node are not reused).
    next_id: std::sync::atomic::AtomicU64,
}

struct Open {
    snapshot: Arc<dyn EngineSnapshot>,
    began: Instant,
    used: Instant,
}

impl Backups {
    /// The backup service over this node's storage; ids start at `first_id`.
    pub fn new(
        store: Store,
        replica: Replica,
        membership: Arc<Membership>,
        buckets: Buckets,
        metrics: Arc<Metrics>,
        clock: SharedClock,
        first_id: u64,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                replica,
                membership,
                buckets,
                metrics,
                clock,
                open: Mutex::new(HashMap::new()),
                next_id: std::sync::atomic::AtomicU64::new(first_id),
            }),
        }
    }

    /// Serves one step of an admin's backup.
    pub async fn serve(&self, step: BackupStep) -> Result<BackupAnswer, ErrorReply> {
        match step {
            BackupStep::Begin => self.begin().map(|m| BackupAnswer::Begun(Box::new(m))),
            BackupStep::Page {
                id,
                after,
                max_bytes,
            } => self.page(id, after, max_bytes).await,
            BackupStep::End { id } => {
                self.end(id);
                Ok(BackupAnswer::Ended)
            }
        }
    }

    fn begin(&self) -> Result<BackupManifest, ErrorReply> {
        let inner = &self.inner;
        let mut open = inner.open.locked();
        if open.len() >= MAX_OPEN {
            return Err(ErrorReply::Unavailable(format!(
                "{MAX_OPEN} backups of this node are being read; end one (or wait {} s for an idle one to be released)",
                IDLE.as_secs()
            )));
        }
        let snapshot = inner.store.snapshot().map_err(internal)?;
        let id = inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = inner.clock.now();
        open.insert(
            id,
            Open {
                snapshot,
                began: now,
                used: now,
            },
        );
        inner
            .metrics
            .gauge(metrics::BACKUPS_OPEN, &[])
            .set(open.len() as f64);
        drop(open);
        let me = inner.membership.me_id().clone();
        let members = inner
            .membership
            .all_members()
            .into_iter()
            .map(|m| MemberStatus {
                id: m.id.to_string(),
                addr: m.addr.to_string(),
                zone: m.zone.clone(),
                state: m.state.as_str().to_string(),
                // Not recorded in a backup (see BackupManifest::members).
                reachable: false,
                ownership_ppm: 0,
            })
            .collect();
        Ok(BackupManifest {
            node: me.to_string(),
            snapshot: id,
            taken_ms: inner.clock.wall_ms(),
            epoch: inner.replica.actor().epoch,
            dot_floor: inner.replica.dot_floor(),
            record_format: RECORD_FORMAT,
            members,
            buckets: inner.buckets.all(),
            keys: inner.store.size().map_or(0, |s| s.keys),
        })
    }

    async fn page(
        &self,
        id: u64,
        after: Option<Vec<u8>>,
        max_bytes: u32,
    ) -> Result<BackupAnswer, ErrorReply> {
        let snapshot = {
            let mut open = self.inner.open.locked();
            let Some(o) = open.get_mut(&id) else {
                return Err(ErrorReply::BadRequest(format!(
                    "no backup snapshot {id} on this node (ended, released after {} s idle, or taken by an earlier run of the node): begin again",
                    IDLE.as_secs()
                )));
            };
            o.used = self.inner.clock.now();
            o.snapshot.clone()
        };
        let budget = u64::from(max_bytes.clamp(1, MAX_PAGE_BYTES));
        let workers = self.inner.store.workers();
        let read = workers
            .run_blocking(move || read_page(&*snapshot, after, budget))
            .await
            .map_err(ErrorReply::Internal)?;
        let (records, next, bytes) = read.map_err(internal)?;
        let m = &self.inner.metrics;
        m.counter(metrics::BACKUP_RECORDS, &[])
            .increment(records.len() as u64);
        m.counter(metrics::BACKUP_BYTES, &[]).increment(bytes);
        Ok(BackupAnswer::Page { records, next })
    }

    fn end(&self, id: u64) {
        let mut open = self.inner.open.locked();
        if let Some(o) = open.remove(&id) {
            self.ended(&o, open.len());
        }
    }

    fn ended(&self, o: &Open, still_open: usize) {
        let m = &self.inner.metrics;
        m.gauge(metrics::BACKUPS_OPEN, &[]).set(still_open as f64);
        m.gauge(metrics::BACKUP_LAST_DURATION, &[])
            .set(self.inner.clock.since(o.began).as_secs_f64());
    }

    /// Releases the snapshots unread for [`IDLE`] (the node calls it
    /// periodically).
    pub fn release_idle(&self) {
        let clock = &self.inner.clock;
        let mut open = self.inner.open.locked();
        let idle: Vec<u64> = open
            .iter()
            .filter(|(_, o)| clock.since(o.used) >= IDLE)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            if let Some(o) = open.remove(&id) {
                tracing::info!(id, "backup snapshot released after being idle");
                self.ended(&o, open.len());
            }
        }
    }

    /// Snapshots open now.
    pub fn open(&self) -> usize {
        self.inner.open.locked().len()
    }
}

/// A page's records: (key, record) pairs after `after` up to `budget`
/// bytes (the first whatever its size), where the next page starts, and
/// its bytes.
type PageRead = (Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>, u64);

fn read_page(
    snapshot: &dyn EngineSnapshot,
    after: Option<Vec<u8>>,
    budget: u64,
) -> Result<PageRead, StorageError> {
    const CHUNK: usize = 1024;
    let mut records = Vec::new();
    let mut bytes = 0u64;
    let mut cursor = after;
    loop {
        let mut full = false;
        let visited =
            snapshot.visit_after(Space::Data, cursor.as_deref(), CHUNK, &mut |k, v| {
                let size = (k.len() + v.len()) as u64;
                // A record that would pass the budget starts the next page
                // (a page's first record goes in whatever its size).
                if !records.is_empty() && bytes + size > budget {
                    full = true;
                    return false;
                }
                bytes += size;
                records.push((k.to_vec(), v.to_vec()));
                true
            })?;
        if full {
            let next = records.last().map(|(k, _)| k.clone());
            return Ok((records, next, bytes));
        }
        if visited < CHUNK {
            return Ok((records, None, bytes));
        }
        cursor = records.last().map(|(k, _)| k.clone());
    }
}

fn internal(e: StorageError) -> ErrorReply {
    ErrorReply::Internal(format!("backup: {e}"))
}
