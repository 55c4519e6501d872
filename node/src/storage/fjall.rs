//! [`FjallEngine`]: the node's on-disk [`Engine`], over fjall (an LSM tree
//! with a write-ahead journal). A batch is one fjall write batch, atomic
//! across keyspaces; a synced commit fsyncs the journal.

use std::path::Path;

use super::{BatchItem, Engine, EngineSize, Record, Space, StorageError};

/// The fjall engine: one database in the node's data directory, one keyspace
/// per [`Space`].
pub struct FjallEngine {
    db: fjall::Database,
    data: fjall::Keyspace,
    meta: fjall::Keyspace,
    hints: fjall::Keyspace,
}

impl FjallEngine {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Engine(e.to_string()))?;
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
        Ok(Self {
            db,
            data,
            meta,
            hints,
        })
    }

    fn space(&self, s: Space) -> &fjall::Keyspace {
        match s {
            Space::Data => &self.data,
            Space::Meta => &self.meta,
            Space::Hints => &self.hints,
        }
    }
}

fn engine(e: impl std::fmt::Display) -> StorageError {
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
        b.commit().map_err(engine)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db.persist(fjall::PersistMode::SyncAll).map_err(engine)
    }

    fn compact(&self) -> Result<(), StorageError> {
        // A removal is a tombstone until a compaction meets it, and a
        // cluster that only expires keys writes nothing that would trigger
        // one. The memtable goes to disk first (the tombstones it holds,
        // and the journal files it pins), then a major compaction drops
        // the tombstones and the values they hide.
        self.data.rotate_memtable_and_wait().map_err(engine)?;
        self.data.major_compact().map_err(engine)
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

    fn scan_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        use std::ops::Bound;
        let from = match after {
            Some(k) => Bound::Excluded(k.to_vec()),
            None => Bound::Unbounded,
        };
        self.space(space)
            .range::<Vec<u8>, _>((from, Bound::Unbounded))
            .take(limit)
            .map(|g| {
                let (k, v) = g.into_inner().map_err(engine)?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }
}
