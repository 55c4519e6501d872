//! The anti-entropy key index on disk, in [`Space::Index`]: one entry per
//! stored key, `segment (2 bytes, big-endian) ++ storage key → state hash
//! (8 bytes LE) [++ delete time (8 bytes LE) when the state holds only
//! tombstones]`. Sorted by segment, so an exchange lists a segment's keys
//! with one prefix read, and a build of the trees reads the index in
//! segment order without touching the values.
//!
//! [`TreeIndex`] is the store's [`Indexer`]: every change of
//! [`Space::Data`] writes its entry in the same batch (so the index never
//! disagrees with the data, whatever a crash cuts), and after the commit
//! moves the trees from the old state hash to the new one.

use super::{segment, state_hash, Trees, SEGMENTS};
use crate::data::value;
use crate::storage::{BatchItem, Engine, Hook, Indexer, Record, Space, StorageError};
use crate::util::LockExt;
use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};

/// One key of the index: its storage key, state hash and, when its state
/// holds only tombstones, the latest delete time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The storage key.
    pub key: Vec<u8>,
    /// The hash of its record ([`state_hash`]).
    pub hash: u64,
    /// When it holds only tombstones: since when (ms).
    pub dead: Option<u64>,
}

/// The index key of storage key `key`.
pub fn index_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.len());
    k.extend_from_slice(&prefix(segment(key)));
    k.extend_from_slice(key);
    k
}

/// The index key prefix of segment `seg`.
pub fn prefix(seg: u32) -> [u8; 2] {
    // SEGMENTS fits in 16 bits.
    (seg as u16).to_be_bytes()
}

/// The index value of a state hashing to `hash`.
fn encode(hash: u64, dead: Option<u64>) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&hash.to_le_bytes());
    if let Some(t) = dead {
        v.extend_from_slice(&t.to_le_bytes());
    }
    v
}

/// Decodes a stored index record.
pub fn decode(key: &[u8], value: &[u8]) -> Result<Entry, StorageError> {
    let corrupt =
        || StorageError::Corrupt(format!("anti-entropy index entry of {} bytes", value.len()));
    let word = |b: &[u8]| -> Result<u64, StorageError> {
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| corrupt())?))
    };
    if key.len() < 3 {
        return Err(StorageError::Corrupt(format!(
            "anti-entropy index key of {} bytes",
            key.len()
        )));
    }
    let (hash, dead) = match value.len() {
        8 => (word(value)?, None),
        16 => (word(&value[..8])?, Some(word(&value[8..])?)),
        _ => return Err(corrupt()),
    };
    Ok(Entry {
        key: key[2..].to_vec(),
        hash,
        dead,
    })
}

/// The entry of a record: its state hash, and its delete time when it
/// holds only tombstones (an undecodable record counts as live: it is
/// quarantined when read). The delete time is `known` when the update
/// that wrote the record said it; it is decoded from the record otherwise.
fn entry_of(record: &[u8], known: Option<Option<u64>>) -> (u64, Option<u64>) {
    let decoded = || {
        value::decode_record(record)
            .ok()
            .and_then(|r| r.dead_since())
    };
    let dead = match known {
        Some(dead) => {
            debug_assert_eq!(dead, decoded(), "the delete time an update said");
            dead
        }
        None => decoded(),
    };
    (state_hash(record), dead)
}

/// The index entries of `segments`, in segment order, read by `scan` (a
/// prefix read of [`Space::Index`]).
pub fn read(
    segments: Range<u32>,
    scan: impl Fn(&[u8]) -> Result<Vec<Record>, StorageError>,
) -> Result<Vec<Entry>, StorageError> {
    let mut out = Vec::new();
    for seg in segments.start..segments.end.min(SEGMENTS) {
        for (k, v) in scan(&prefix(seg))? {
            out.push(decode(&k, &v)?);
        }
    }
    Ok(out)
}

/// The store's [`Indexer`]: the index entry of every data change, and the
/// trees moved after its commit. It holds the trees weakly: they hold the
/// bucket settings, which hold the store, whose writer holds this; a
/// strong handle would keep the store open after the node let it go.
pub struct TreeIndex(Weak<Mutex<Trees>>);

impl TreeIndex {
    /// The indexer that keeps `trees` (while anything else holds them).
    pub fn new(trees: &Arc<Mutex<Trees>>) -> Self {
        Self(Arc::downgrade(trees))
    }
}

impl Indexer for TreeIndex {
    fn index_key(&self, key: &[u8]) -> Vec<u8> {
        index_key(key)
    }

    fn index(
        &self,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
        dead_since: Option<Option<u64>>,
    ) -> (Option<Vec<u8>>, Option<Hook>) {
        // The hash the trees counted for the key (an entry too short to
        // hold one counts as none).
        let old = old
            .and_then(|v| v.get(..8))
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
        let new = new.map(|r| entry_of(r, dead_since));
        let (trees, key) = (self.0.clone(), key.to_vec());
        let hook: Hook = Box::new(move || {
            if let Some(trees) = trees.upgrade() {
                trees
                    .locked()
                    .update(&key, old, new.map(|n| n.0), new.and_then(|n| n.1));
            }
        });
        (new.map(|(hash, dead)| encode(hash, dead)), Some(hook))
    }
}

/// `Meta` key saying the index holds every data key (its value: the
/// index format, [`FORMAT`]).
const BUILT_KEY: &[u8] = b"aae/index-format";

/// The index format this code writes.
const FORMAT: u8 = 1;

/// Records read or written per batch while the index is built.
const CHUNK: usize = 1024;

/// Whether a release without the key index ran on this node's data since
/// this release last closed it cleanly (a downgrade, then this release
/// again): what it wrote or removed is not in the index. Then the index is
/// marked unbuilt, so [`ensure`] builds it again from the data before the
/// node serves. Told by the clean-close marks (`storage::CLOSED_BY_KEY`):
/// such a release takes this release's mark at its start and writes its
/// own, empty, at its clean close. The note is removed here, so a crash of
/// this release (which leaves none) counts as nobody: its own commits keep
/// the index in the same batch. Call it before the store starts.
pub fn forget_if_written_behind(engine: &dyn Engine) -> Result<bool, StorageError> {
    use crate::storage::{CLEAN_CLOSE_KEY, CLOSED_BY_KEY, CLOSED_WITH_INDEX};
    if engine.get(Space::Meta, CLOSED_BY_KEY)?.is_none() {
        return Ok(false);
    }
    let mark = engine.get(Space::Meta, CLEAN_CLOSE_KEY)?;
    let behind = mark.as_deref() != Some(CLOSED_WITH_INDEX);
    let mut batch = vec![(Space::Meta, CLOSED_BY_KEY.to_vec(), None)];
    if behind {
        batch.push((Space::Meta, BUILT_KEY.to_vec(), None));
    }
    engine.commit(batch, true)?;
    Ok(behind)
}

/// Makes sure the index holds an entry for every data key: a node whose
/// data was written by a version without the index gets it built here,
/// once, in batches, before the store starts (the engine alone, no other
/// writer). Returns how many keys were indexed (0 when it was there).
pub fn ensure(engine: &dyn Engine) -> Result<u64, StorageError> {
    if engine.get(Space::Meta, BUILT_KEY)?.as_deref() == Some(&[FORMAT]) {
        return Ok(0);
    }
    // Whatever a build cut short left goes first.
    loop {
        let stale = engine.scan_after(Space::Index, None, CHUNK)?;
        if stale.is_empty() {
            break;
        }
        let batch = stale
            .into_iter()
            .map(|(k, _)| (Space::Index, k, None))
            .collect();
        engine.commit(batch, false)?;
    }
    let (mut after, mut keys) = (None::<Vec<u8>>, 0u64);
    loop {
        let mut batch: Vec<BatchItem> = Vec::with_capacity(CHUNK);
        let mut last = None;
        engine.visit_after(Space::Data, after.as_deref(), CHUNK, &mut |k, v| {
            let (hash, dead) = entry_of(v, None);
            batch.push((Space::Index, index_key(k), Some(encode(hash, dead))));
            last = Some(k.to_vec());
            true
        })?;
        let Some(last) = last else { break };
        keys += batch.len() as u64;
        engine.commit(batch, false)?;
        after = Some(last);
    }
    engine.commit(
        vec![(Space::Meta, BUILT_KEY.to_vec(), Some(vec![FORMAT]))],
        true,
    )?;
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;

    /// An older release that writes data between two runs of this one (a
    /// downgrade, then an upgrade) leaves keys the index lacks: the stamp
    /// of this release's clean close shows it, and the index is built
    /// again. A clean restart with nobody between, and a restart after a
    /// crash, build nothing. On fjall in a temporary directory, closed
    /// cleanly by the real store.
    #[tokio::test]
    async fn data_written_behind_this_release_is_indexed_again() {
        use crate::storage::{FjallEngine, Store, SyncPolicy, CLEAN_CLOSE_KEY};
        let dir = tempfile::tempdir().unwrap();
        let open = || Arc::new(FjallEngine::open(dir.path()).unwrap());
        async fn close_cleanly(engine: Arc<FjallEngine>) {
            let (store, closed) = Store::start(engine, SyncPolicy::Always);
            drop(store);
            assert!(closed.wait(std::time::Duration::from_secs(10)).await);
        }
        let put = |e: &FjallEngine, k: &[u8]| {
            e.commit(vec![(Space::Data, k.to_vec(), Some(k.to_vec()))], true)
                .unwrap()
        };
        // This release: a key and its index, closed cleanly.
        let e = open();
        put(&e, b"a");
        assert!(!forget_if_written_behind(&*e).unwrap(), "no stamp yet");
        assert_eq!(ensure(&*e).unwrap(), 1);
        close_cleanly(e).await;
        // Started again with nobody between: nothing to build.
        let e = open();
        assert!(!forget_if_written_behind(&*e).unwrap(), "a clean restart");
        assert_eq!(ensure(&*e).unwrap(), 0);
        close_cleanly(e).await;
        // A release before the index: it takes the mark at its start,
        // writes a key without the index, and closes cleanly (an empty mark).
        let older_release = |crashed: bool| {
            let e = open();
            let mark = |v: Option<Vec<u8>>| {
                e.commit(vec![(Space::Meta, CLEAN_CLOSE_KEY.to_vec(), v)], true)
                    .unwrap()
            };
            mark(None);
            put(&e, b"b");
            if !crashed {
                mark(Some(Vec::new()));
            }
        };
        older_release(false);
        let e = open();
        assert!(forget_if_written_behind(&*e).unwrap(), "written behind");
        assert_eq!(ensure(&*e).unwrap(), 2, "built again, with the new key");
        let all = read(0..SEGMENTS, |p| e.scan(Space::Index, p, usize::MAX)).unwrap();
        assert!(all.iter().any(|x| x.key == b"b"));
        close_cleanly(e).await;
        // The same, the older release crashing (no mark at all).
        older_release(true);
        let e = open();
        assert!(
            forget_if_written_behind(&*e).unwrap(),
            "written behind, crashed"
        );
        assert_eq!(ensure(&*e).unwrap(), 2);
        // A crash (no clean close): nothing to build.
        drop(e);
        let e = open();
        assert!(!forget_if_written_behind(&*e).unwrap(), "after a crash");
        assert_eq!(ensure(&*e).unwrap(), 0);
    }

    #[test]
    fn an_entry_round_trips_and_a_bad_one_is_an_error() {
        let k = index_key(b"some/key");
        assert_eq!(&k[..2], &prefix(segment(b"some/key")));
        for dead in [None, Some(7)] {
            let e = decode(&k, &encode(42, dead)).unwrap();
            assert_eq!(
                e,
                Entry {
                    key: b"some/key".to_vec(),
                    hash: 42,
                    dead
                }
            );
        }
        assert!(matches!(
            decode(&k, &[1, 2, 3]),
            Err(StorageError::Corrupt(_))
        ));
        assert!(matches!(
            decode(&[1], &encode(1, None)),
            Err(StorageError::Corrupt(_))
        ));
    }

    /// Data written without an index (an older version) gets one entry per
    /// key, stale entries go, and a second call does nothing.
    #[test]
    fn ensure_indexes_every_data_key_once() {
        let e = MemoryEngine::new();
        let mut batch: Vec<BatchItem> = (0..2_500u32)
            .map(|i| {
                (
                    Space::Data,
                    format!("k{i}").into_bytes(),
                    Some(vec![i as u8]),
                )
            })
            .collect();
        batch.push((Space::Index, index_key(b"gone"), Some(encode(1, None))));
        e.commit(batch, true).unwrap();
        assert_eq!(ensure(&e).unwrap(), 2_500);
        let all = read(0..SEGMENTS, |p| e.scan(Space::Index, p, usize::MAX)).unwrap();
        assert_eq!(all.len(), 2_500);
        assert!(all.iter().all(|x| x.key != b"gone"));
        let k7 = all.iter().find(|x| x.key == b"k7").unwrap();
        assert_eq!(k7.hash, state_hash(&[7]));
        assert_eq!(ensure(&e).unwrap(), 0);
    }
}
