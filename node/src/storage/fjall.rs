//! [`FjallEngine`]: the node's on-disk [`Engine`], over fjall (an LSM tree
//! with a write-ahead journal). A batch is one fjall write batch, atomic
//! across keyspaces; a synced commit fsyncs the journal.

use std::path::Path;

use super::{BatchItem, Engine, EngineSize, EngineSnapshot, Record, Space, StorageError};
use fjall::Readable;
use std::sync::Arc;

/// The fjall engine: one database in the node's data directory, one keyspace
/// per [`Space`].
pub struct FjallEngine {
    /// The data directory (its filesystem's free space is the watermark's).
    dir: std::path::PathBuf,
    /// A write or sync failed for want of space: fjall then poisons the
    /// database, and its later `Poisoned` errors are that full disk's.
    full: std::sync::atomic::AtomicBool,
    db: fjall::Database,
    data: fjall::Keyspace,
    meta: fjall::Keyspace,
    hints: fjall::Keyspace,
    index: fjall::Keyspace,
}

impl FjallEngine {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(engine)?;
        let db = fjall::Database::builder(dir.join("db"))
            .open()
            .map_err(engine)?;
        let data = db
            .keyspace("data", fjall::KeyspaceCreateOptions::default)
            .map_err(engine)?;
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .map_err(engine)?;
        let hints = db
            .keyspace("hints", fjall::KeyspaceCreateOptions::default)
            .map_err(engine)?;
        let index = db
            .keyspace("index", fjall::KeyspaceCreateOptions::default)
            .map_err(engine)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            full: std::sync::atomic::AtomicBool::new(false),
            db,
            data,
            meta,
            hints,
            index,
        })
    }

    /// A commit's or sync's error (see `full`).
    fn write_error(&self, e: fjall::Error) -> StorageError {
        use std::sync::atomic::Ordering;
        let poisoned = matches!(e, fjall::Error::Poisoned);
        match engine(e) {
            e @ StorageError::DiskFull(_) => {
                self.full.store(true, Ordering::Relaxed);
                e
            }
            e if poisoned && self.full.load(Ordering::Relaxed) => {
                StorageError::DiskFull(format!("{e} (after a write failed for want of space)"))
            }
            e => e,
        }
    }

    fn space(&self, s: Space) -> &fjall::Keyspace {
        match s {
            Space::Data => &self.data,
            Space::Meta => &self.meta,
            Space::Hints => &self.hints,
            Space::Index => &self.index,
        }
    }
}

/// `Meta` key of the time (ms since the epoch) of the last compaction,
/// written to move fjall's garbage collection on (see `compact`).
const COMPACTED_KEY: &[u8] = b"engine/compacted-at";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An engine error: [`StorageError::DiskFull`] when an IO error under it
/// says the disk is full (ENOSPC, or EDQUOT for a quota).
fn engine(e: impl std::error::Error + 'static) -> StorageError {
    let mut cause: Option<&dyn std::error::Error> = Some(&e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded
            {
                return StorageError::DiskFull(e.to_string());
            }
        }
        cause = c.source();
    }
    StorageError::Engine(e.to_string())
}

impl Engine for FjallEngine {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .space(space)
            .get(key)
            .map_err(engine)?
            .map(|v| v.to_vec()))
    }

    fn commit(&self, batch: Vec<BatchItem>, sync: bool) -> Result<(), StorageError> {
        let mut b = self.db.batch();
        for (space, key, value) in batch {
            match value {
                Some(v) => b.insert(self.space(space), key, v),
                None => b.remove(self.space(space), key),
            }
        }
        let b = if sync {
            b.durability(Some(fjall::PersistMode::SyncData))
        } else {
            b.durability(Some(fjall::PersistMode::Buffer))
        };
        b.commit().map_err(|e| self.write_error(e))
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .map_err(|e| self.write_error(e))
    }

    fn compact(&self) -> Result<(), StorageError> {
        // A removal is a tombstone until a compaction meets it, and a
        // cluster that only expires keys writes nothing that would trigger
        // one. Every keyspace's memtable goes to disk first: a journal
        // file is deleted only once no memtable holds writes from it. A
        // major compaction then drops the tombstones and the values they
        // hide. The tables it replaced stay in fjall's version history
        // until its garbage-collection watermark passes the compaction,
        // which only a later flush moves: a marker write to the meta space
        // and one more flush do it, and let the journal go.
        for space in [&self.data, &self.meta, &self.hints, &self.index] {
            space.rotate_memtable_and_wait().map_err(engine)?;
        }
        self.data.major_compact().map_err(engine)?;
        self.index.major_compact().map_err(engine)?;
        self.meta
            .insert(COMPACTED_KEY, now_ms().to_be_bytes())
            .map_err(engine)?;
        self.meta.rotate_memtable_and_wait().map_err(engine)
    }

    fn disk_space(&self) -> Option<super::disk::Space> {
        super::disk::space_of(&self.dir)
    }

    fn size(&self) -> Option<EngineSize> {
        Some(EngineSize {
            disk_bytes: self.db.disk_space().ok()?,
            keys: self.data.approximate_len() as u64,
        })
    }

    fn scan(&self, space: Space, prefix: &[u8], limit: usize) -> Result<Vec<Record>, StorageError> {
        self.space(space)
            .prefix(prefix)
            .take(limit)
            .map(|g| {
                let (k, v) = g.into_inner().map_err(engine)?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn range(
        &self,
        space: Space,
        low: std::ops::Bound<&[u8]>,
        high: std::ops::Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        if !super::memory::valid_range(low, high) {
            return Ok(Vec::new());
        }
        let owned = |b: std::ops::Bound<&[u8]>| b.map(<[u8]>::to_vec);
        let span = self
            .space(space)
            .range::<Vec<u8>, _>((owned(low), owned(high)));
        let ordered: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(span.rev())
        } else {
            Box::new(span)
        };
        ordered
            .take(limit)
            .map(|g| {
                let (k, v) = g.into_inner().map_err(engine)?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn visit_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, StorageError> {
        visit_records(self.space(space).range(past(after)), limit, visit)
    }

    fn scan_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.space(space)
            .range(past(after))
            .take(limit)
            .map(|g| {
                let (k, v) = g.into_inner().map_err(engine)?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn snapshot(&self) -> Result<Arc<dyn EngineSnapshot>, StorageError> {
        Ok(Arc::new(FjallSnapshot {
            snapshot: self.db.snapshot(),
            spaces: [
                self.data.clone(),
                self.meta.clone(),
                self.hints.clone(),
                self.index.clone(),
            ],
        }))
    }
}

/// The keys past `after` (every key when `None`).
fn past(after: Option<&[u8]>) -> (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>) {
    use std::ops::Bound;
    let from = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.to_vec()));
    (from, Bound::Unbounded)
}

/// Visits up to `limit` records of `records` (see [`Engine::visit_after`]).
fn visit_records(
    records: fjall::Iter,
    limit: usize,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<usize, StorageError> {
    let mut visited = 0;
    for g in records.take(limit) {
        let (k, v) = g.into_inner().map_err(engine)?;
        visited += 1;
        if !visit(&k, &v) {
            break;
        }
    }
    Ok(visited)
}

/// A fjall snapshot across the keyspaces (one sequence number).
struct FjallSnapshot {
    snapshot: fjall::Snapshot,
    /// Data, meta, hints, index.
    spaces: [fjall::Keyspace; 4],
}

impl FjallSnapshot {
    fn space(&self, s: Space) -> &fjall::Keyspace {
        match s {
            Space::Data => &self.spaces[0],
            Space::Meta => &self.spaces[1],
            Space::Hints => &self.spaces[2],
            Space::Index => &self.spaces[3],
        }
    }
}

impl EngineSnapshot for FjallSnapshot {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .snapshot
            .get(self.space(space), key)
            .map_err(engine)?
            .map(|v| v.to_vec()))
    }

    fn visit_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, StorageError> {
        let records = self.snapshot.range(self.space(space), past(after));
        visit_records(records, limit, visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes allocated under `dir`, as `du` counts them.
    fn allocated(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let meta = e.metadata().unwrap();
                if meta.is_dir() {
                    allocated(&e.path())
                } else {
                    std::os::unix::fs::MetadataExt::blocks(&meta) * 512
                }
            })
            .sum()
    }

    /// fjall deletes a journal file once no keyspace's memtable holds a
    /// write from it, and starts a new one past 64 MB. After a compaction
    /// the journals of removed data go too, although the meta space, which
    /// the node writes rarely, held a write from the first one: what stays
    /// is the active journal and the live data.
    #[test]
    fn a_compaction_lets_the_journals_of_removed_data_go() {
        let dir = tempfile::tempdir().unwrap();
        let e = FjallEngine::open(dir.path()).unwrap();
        e.commit(
            vec![(Space::Meta, b"m".to_vec(), Some(b"1".to_vec()))],
            false,
        )
        .unwrap();
        let value = super::super::contract_tests::noise(65_536, 1);
        let key = |i: u32| i.to_be_bytes().to_vec();
        let mut i = 0;
        while e.db.journal_count() < 2 {
            let batch = (i..i + 64)
                .map(|k| (Space::Data, key(k), Some(value.clone())))
                .collect();
            e.commit(batch, false).unwrap();
            // A flush is when fjall looks at the journal's size.
            e.data.rotate_memtable_and_wait().unwrap();
            i += 64;
            assert!(i < 4096, "no second journal after {i} writes of 64 KiB");
        }
        e.commit((0..i).map(|k| (Space::Data, key(k), None)).collect(), true)
            .unwrap();
        e.compact().unwrap();
        assert_eq!(e.db.journal_count(), 1, "only the active journal stays");
        let held = allocated(dir.path());
        assert!(
            held < 16 << 20,
            "{held} bytes held after removing {i} values of 64 KiB"
        );
    }
}
