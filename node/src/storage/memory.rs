//! [`MemoryEngine`]: an [`Engine`] held in memory, for the deterministic
//! simulator. It keeps the whole engine contract of the module doc, and it
//! models the disk under it: what was synced, and what was committed since
//! the last sync (in the OS page cache, in a real engine). [`MemoryEngine::crash`]
//! is a power loss, which loses the second; [`MemoryEngine::kill`] is a
//! `kill -9` of the process, which loses neither. No clock, no randomness, no
//! threads: the same calls give the same state.

use std::{collections::BTreeMap, ops::Bound, sync::Mutex};

use super::{BatchItem, Engine, EngineSize, EngineSnapshot, Record, Space, StorageError};
use crate::util::LockExt;

/// The in-memory engine: one ordered map per [`Space`] behind one lock, so
/// a batch is applied whole before any reader sees it.
///
/// A crash or a kill returns a new engine, the one a restarted node opens,
/// and cuts this one off: every later call of it fails. So a thread of the
/// stopped node that still holds it (a store's writer, which syncs and
/// records a clean close when it stops) reaches no disk.
#[derive(Default)]
pub struct MemoryEngine {
    state: Mutex<State>,
}

/// The longest key fjall takes (see the engine contract).
const KEY_BYTES_MAX: usize = u16::MAX as usize;

/// One space's records, in key order.
type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every space's tree, at the index [`slot`] gives it.
type Spaces = [Tree; 4];

#[derive(Default, Clone)]
struct State {
    /// What reads see: every committed batch.
    committed: Spaces,
    /// What a power loss keeps: every batch committed before the last sync.
    synced: Spaces,
    /// The writes committed since the last sync, in commit order; applied
    /// to `synced`, they give `committed`.
    unsynced: Vec<BatchItem>,
    /// Set by a crash or a kill: this handle belongs to a stopped node.
    down: bool,
}

impl MemoryEngine {
    /// An empty engine, as on a new disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// A power loss: every write committed since the last sync is lost.
    /// Returns the engine a restarted node opens, holding what was synced;
    /// this one is cut off (its later calls fail). Calling it again gives
    /// the same disk again.
    pub fn crash(&self) -> MemoryEngine {
        self.restart(true)
    }

    /// A `kill -9` of the process: the machine lives on, and with it every
    /// committed write, synced or not (a later [`MemoryEngine::crash`] of
    /// the returned engine can still lose the unsynced ones). Returns the
    /// engine a restarted node opens; this one is cut off.
    pub fn kill(&self) -> MemoryEngine {
        self.restart(false)
    }

    /// How many writes a power loss would lose now (the writes committed
    /// since the last sync).
    pub fn unsynced_writes(&self) -> usize {
        self.state.locked().unsynced.len()
    }

    fn restart(&self, power_lost: bool) -> MemoryEngine {
        let mut s = self.state.locked();
        if power_lost {
            s.committed = s.synced.clone();
            s.unsynced.clear();
        }
        s.down = true;
        let state = State {
            down: false,
            ..s.clone()
        };
        MemoryEngine {
            state: Mutex::new(state),
        }
    }

    /// Runs `f` on the state, unless this handle was cut off.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StorageError> {
        let mut s = self.state.locked();
        if s.down {
            return Err(StorageError::Engine(
                "this in-memory engine was stopped by a crash or a kill".into(),
            ));
        }
        Ok(f(&mut s))
    }
}

impl State {
    fn sync(&mut self) {
        for (space, key, value) in self.unsynced.drain(..) {
            apply(&mut self.synced, space, key, value);
        }
    }
}

/// The index of a space's tree in [`Spaces`].
fn slot(space: Space) -> usize {
    match space {
        Space::Data => 0,
        Space::Meta => 1,
        Space::Hints => 2,
        Space::Index => 3,
    }
}

fn apply(spaces: &mut Spaces, space: Space, key: Vec<u8>, value: Option<Vec<u8>>) {
    let tree = &mut spaces[slot(space)];
    match value {
        Some(v) => tree.insert(key, v),
        None => tree.remove(&key),
    };
}

/// Up to `limit` records of `tree` from `from` on, while `keep` holds.
/// Whether `(low, high)` is a range `BTreeMap::range` takes (it panics
/// on a start above the end, or equal ends both excluded).
pub(super) fn valid_range(low: Bound<&[u8]>, high: Bound<&[u8]>) -> bool {
    match (low, high) {
        (Bound::Included(l), Bound::Included(h)) => l <= h,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(h) | Bound::Included(h)) => l < h,
        _ => true,
    }
}

fn collect<'a>(
    tree: &'a Tree,
    from: Bound<&'a [u8]>,
    keep: impl Fn(&[u8]) -> bool,
    limit: usize,
) -> Vec<Record> {
    tree.range::<[u8], _>((from, Bound::Unbounded))
        .take_while(|(k, _)| keep(k))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Engine for MemoryEngine {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(|s| s.committed[slot(space)].get(key).cloned())
    }

    fn commit(&self, batch: Vec<BatchItem>, sync: bool) -> Result<(), StorageError> {
        // fjall panics on these keys: refuse them, so that a simulation
        // shows a node that writes one.
        let bad_key = |(_, k, _): &&BatchItem| k.is_empty() || k.len() > KEY_BYTES_MAX;
        if let Some((_, key, _)) = batch.iter().find(bad_key) {
            return Err(StorageError::Engine(format!(
                "a key of {} bytes (keys are 1 to {KEY_BYTES_MAX} bytes)",
                key.len()
            )));
        }
        self.with(|s| {
            for (space, key, value) in &batch {
                apply(&mut s.committed, *space, key.clone(), value.clone());
            }
            s.unsynced.extend(batch);
            if sync {
                s.sync();
            }
        })
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.with(State::sync)
    }

    fn scan(&self, space: Space, prefix: &[u8], limit: usize) -> Result<Vec<Record>, StorageError> {
        self.with(|s| {
            let tree = &s.committed[slot(space)];
            collect(
                tree,
                Bound::Included(prefix),
                |k| k.starts_with(prefix),
                limit,
            )
        })
    }

    fn scan_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.with(|s| collect(&s.committed[slot(space)], from, |_| true, limit))
    }

    fn range(
        &self,
        space: Space,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        if !valid_range(low, high) {
            return Ok(Vec::new());
        }
        self.with(|s| {
            let span = s.committed[slot(space)].range::<[u8], _>((low, high));
            let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
            if reverse {
                span.rev().take(limit).map(clone).collect()
            } else {
                span.take(limit).map(clone).collect()
            }
        })
    }

    /// The bytes of every space's keys and values (as `disk_bytes`), and
    /// the exact count of [`Space::Data`]'s keys. `None` once cut off.
    fn size(&self) -> Option<EngineSize> {
        self.with(|s| {
            let bytes = s.committed.iter().flatten();
            EngineSize {
                disk_bytes: bytes.map(|(k, v)| (k.len() + v.len()) as u64).sum(),
                keys: s.committed[slot(Space::Data)].len() as u64,
            }
        })
        .ok()
    }

    /// A copy of the committed spaces (the simulator's data is small).
    fn snapshot(&self) -> Result<std::sync::Arc<dyn EngineSnapshot>, StorageError> {
        self.with(|s| {
            std::sync::Arc::new(MemorySnapshot(s.committed.clone()))
                as std::sync::Arc<dyn EngineSnapshot>
        })
    }
}

/// A copy of an in-memory engine's committed spaces.
struct MemorySnapshot(Spaces);

impl EngineSnapshot for MemorySnapshot {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0[slot(space)].get(key).cloned())
    }

    fn visit_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, StorageError> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut visited = 0;
        for (k, v) in self.0[slot(space)]
            .range::<[u8], _>((from, Bound::Unbounded))
            .take(limit)
        {
            visited += 1;
            if !visit(k, v) {
                break;
            }
        }
        Ok(visited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &[u8], value: &[u8]) -> BatchItem {
        (Space::Data, key.to_vec(), Some(value.to_vec()))
    }

    #[test]
    fn a_stopped_engine_refuses_every_call_and_its_successor_serves() {
        let old = MemoryEngine::new();
        old.commit(vec![put(b"k", b"v")], true).unwrap();
        let new = old.crash();
        assert!(old.get(Space::Data, b"k").is_err());
        assert!(old.commit(vec![put(b"late", b"v")], true).is_err());
        assert!(old.sync().is_err(), "a stopped store's last sync fails");
        assert!(old.scan(Space::Data, b"", 10).is_err());
        assert!(old.scan_after(Space::Data, None, 10).is_err());
        assert_eq!(old.size(), None);
        assert_eq!(new.get(Space::Data, b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(new.get(Space::Data, b"late").unwrap(), None);
        assert_eq!(
            old.crash().scan(Space::Data, b"", 10).unwrap(),
            new.scan(Space::Data, b"", 10).unwrap(),
            "a second crash of the stopped engine gives the same disk"
        );
    }

    #[test]
    fn a_kill_keeps_unsynced_writes_and_a_later_power_loss_loses_them() {
        let engine = MemoryEngine::new();
        engine.commit(vec![put(b"synced", b"v")], true).unwrap();
        engine.commit(vec![put(b"cached", b"v")], false).unwrap();
        assert_eq!(engine.unsynced_writes(), 1);
        let restarted = engine.kill();
        assert_eq!(
            restarted.get(Space::Data, b"cached").unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(
            restarted.unsynced_writes(),
            1,
            "still only in the page cache"
        );
        let after_power_loss = restarted.crash();
        assert_eq!(after_power_loss.get(Space::Data, b"cached").unwrap(), None);
        assert_eq!(
            after_power_loss.get(Space::Data, b"synced").unwrap(),
            Some(b"v".to_vec())
        );
    }

    #[test]
    fn a_batch_with_a_key_fjall_cannot_hold_is_refused_whole() {
        let engine = MemoryEngine::new();
        for bad in [Vec::new(), vec![7; KEY_BYTES_MAX + 1]] {
            let batch = vec![put(b"fine", b"v"), (Space::Meta, bad, Some(b"v".to_vec()))];
            assert!(engine.commit(batch, true).is_err());
        }
        assert_eq!(engine.get(Space::Data, b"fine").unwrap(), None);
        let longest = vec![7; KEY_BYTES_MAX];
        engine.commit(vec![put(&longest, b"v")], true).unwrap();
    }

    #[test]
    fn size_counts_the_data_keys_and_the_bytes_of_every_space() {
        let engine = MemoryEngine::new();
        let meta = (Space::Meta, b"m".to_vec(), Some(b"12".to_vec()));
        engine
            .commit(vec![put(b"a", b"1"), put(b"bb", b"22"), meta], false)
            .unwrap();
        engine
            .commit(vec![(Space::Data, b"a".to_vec(), None)], false)
            .unwrap();
        let size = engine.size().unwrap();
        assert_eq!(size.keys, 1);
        assert_eq!(size.disk_bytes, 4 + 3);
    }
}
