//! [`Measured`]: an [`Engine`] wrapper that times each call of the engine
//! it wraps into the node's metrics.

use std::sync::Arc;

use super::{BatchItem, Engine, EngineSize, Record, Space, StorageError};

/// An engine that times each call into the node's metrics.
pub struct Measured {
    inner: Arc<dyn Engine>,
    read: metrics::Histogram,
    write: metrics::Histogram,
    sync: metrics::Histogram,
    batch: metrics::Histogram,
}

impl Measured {
    /// Wraps `inner`, recording into `m`.
    pub fn new(inner: Arc<dyn Engine>, m: &crate::metrics::Metrics) -> Self {
        use crate::metrics as k;
        Self {
            inner,
            read: m.histogram(k::STORAGE_READ_DURATION, &[]),
            write: m.histogram(k::STORAGE_WRITE_DURATION, &[]),
            sync: m.histogram(k::STORAGE_SYNC_DURATION, &[]),
            batch: m.histogram(k::STORAGE_BATCH_UPDATES, &[]),
        }
    }
}

impl Engine for Measured {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let t = std::time::Instant::now();
        let r = self.inner.get(space, key);
        self.read.record(t.elapsed());
        r
    }

    fn commit(&self, batch: Vec<BatchItem>, sync: bool) -> Result<(), StorageError> {
        self.batch.record(batch.len() as f64);
        let t = std::time::Instant::now();
        let r = self.inner.commit(batch, sync);
        let took = t.elapsed();
        self.write.record(took);
        if sync {
            self.sync.record(took);
        }
        r
    }

    fn sync(&self) -> Result<(), StorageError> {
        let t = std::time::Instant::now();
        let r = self.inner.sync();
        self.sync.record(t.elapsed());
        r
    }

    fn scan(&self, space: Space, prefix: &[u8], limit: usize) -> Result<Vec<Record>, StorageError> {
        self.inner.scan(space, prefix, limit)
    }

    fn scan_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.inner.scan_after(space, after, limit)
    }

    fn visit_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, StorageError> {
        self.inner.visit_after(space, after, limit, visit)
    }

    fn range(
        &self,
        space: Space,
        low: std::ops::Bound<&[u8]>,
        high: std::ops::Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.inner.range(space, low, high, reverse, limit)
    }

    fn size(&self) -> Option<EngineSize> {
        self.inner.size()
    }

    fn compact(&self) -> Result<(), StorageError> {
        self.inner.compact()
    }

    fn snapshot(&self) -> Result<std::sync::Arc<dyn super::EngineSnapshot>, StorageError> {
        self.inner.snapshot()
    }

    fn disk_space(&self) -> Option<super::disk::Space> {
        self.inner.disk_space()
    }
}
