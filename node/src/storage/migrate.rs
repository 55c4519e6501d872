//! The storage-key migration to partitions: every key of format 1 (`u16
//! bucket length | bucket | key`, before sorted partitions) becomes the
//! storage key of its item, the partition `key` with the empty sort key
//! ([`kvorum_ring::item`]). Records are not touched; placement does not
//! change (an item's token is its format-1 key's), so no data moves between
//! nodes.
//!
//! It runs once, at start, before the store opens. It is safe to stop at
//! any point: each batch deletes old keys and writes their new ones in one
//! atomic commit, keys of format 1 sort before every key of today's (so the
//! ones left are at the front of the data space), and hint keys are
//! recognized by their inner key. A marker in the meta space ends it.

use super::{BatchItem, Engine, Space, StorageError};
use kvorum_ring::item;

/// The marker: the data and hint keys are of format 2.
const FORMAT_KEY: &[u8] = b"key-format";
const FORMAT_2: &[u8] = &[2];
/// Keys rewritten per atomic batch.
const CHUNK: usize = 1_000;
/// Where a data key that is not a key of either format is moved aside
/// (it could not be read before either: its bucket is not UTF-8).
const UNREADABLE_PREFIX: &[u8] = b"migrate/unreadable/";

/// What one migration rewrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Data records moved to their new key.
    pub data: u64,
    /// Hints moved to their new key.
    pub hints: u64,
    /// Data records whose key was of neither format (moved to the meta
    /// space, under `migrate/unreadable/`).
    pub unreadable: u64,
}

/// Rewrites the keys of format 1 of `engine` (see the module doc); does
/// nothing once it has completed.
pub fn to_items(engine: &dyn Engine) -> Result<Migrated, StorageError> {
    let mut done = Migrated::default();
    if engine.get(Space::Meta, FORMAT_KEY)?.as_deref() == Some(FORMAT_2) {
        return Ok(done);
    }
    // The data space: the keys of format 1 are its first ones.
    loop {
        let records = engine.scan_after(Space::Data, None, CHUNK)?;
        let old: Vec<_> = records
            .into_iter()
            .take_while(|(k, _)| item::is_format_1(k))
            .collect();
        if old.is_empty() {
            break;
        }
        let mut batch: Vec<BatchItem> = Vec::with_capacity(2 * old.len());
        for (k, v) in old {
            match item::from_format_1(&k) {
                Some(new) => {
                    done.data += 1;
                    batch.push((Space::Data, new, Some(v)));
                }
                None => {
                    done.unreadable += 1;
                    let aside = [UNREADABLE_PREFIX, &k].concat();
                    batch.push((Space::Meta, aside, Some(v)));
                }
            }
            batch.push((Space::Data, k, None));
        }
        engine.commit(batch, true)?;
    }
    // The hint space: `u16 owner length | owner | storage key`, in owner
    // order; a rewritten hint sorts after its old key and is skipped when
    // the scan meets it.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let records = engine.scan_after(Space::Hints, after.as_deref(), CHUNK)?;
        let Some((last, _)) = records.last() else {
            break;
        };
        after = Some(last.clone());
        let mut batch: Vec<BatchItem> = Vec::new();
        for (k, v) in records {
            let Some(split) = owner_end(&k) else { continue };
            let (owner, skey) = k.split_at(split);
            if !item::is_format_1(skey) {
                continue;
            }
            if let Some(new) = item::from_format_1(skey) {
                done.hints += 1;
                batch.push((Space::Hints, [owner, &new].concat(), Some(v)));
            }
            // (A hint for a key of neither format could never be delivered.)
            batch.push((Space::Hints, k, None));
        }
        if !batch.is_empty() {
            engine.commit(batch, true)?;
        }
    }
    engine.commit(
        vec![(Space::Meta, FORMAT_KEY.to_vec(), Some(FORMAT_2.to_vec()))],
        true,
    )?;
    Ok(done)
}

/// Where the owner part of a hint key ends.
fn owner_end(k: &[u8]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*k.first()?, *k.get(1)?]));
    (k.len() >= 2 + len).then_some(2 + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;

    /// A key of format 1, as today's nodes before this change wrote them.
    fn format_1(bucket: &str, key: &[u8]) -> Vec<u8> {
        let mut out = (bucket.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(bucket.as_bytes());
        out.extend_from_slice(key);
        out
    }

    fn hint(owner: &str, skey: &[u8]) -> Vec<u8> {
        let mut out = (owner.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(owner.as_bytes());
        out.extend_from_slice(skey);
        out
    }

    #[test]
    fn format_1_keys_become_items_with_the_empty_sort_key_and_stay_so() {
        let e = MemoryEngine::new();
        let mut batch = Vec::new();
        for i in 0..2_500u32 {
            batch.push((
                Space::Data,
                format_1("b", &i.to_be_bytes()),
                Some(i.to_le_bytes().to_vec()),
            ));
        }
        batch.push((Space::Data, format_1("b", b"a\0z"), Some(b"zero".to_vec())));
        batch.push((
            Space::Data,
            b"\x00\x02\xff\xfe".to_vec(),
            Some(b"bad".to_vec()),
        ));
        batch.push((
            Space::Hints,
            hint("n2", &format_1("b", b"h")),
            Some(b"hint".to_vec()),
        ));
        e.commit(batch, true).unwrap();

        let done = to_items(&e).unwrap();
        assert_eq!(
            done,
            Migrated {
                data: 2_501,
                hints: 1,
                unreadable: 1
            }
        );
        for i in 0..2_500u32 {
            let new = item::storage_key("b", &i.to_be_bytes(), b"");
            assert_eq!(
                e.get(Space::Data, &new).unwrap(),
                Some(i.to_le_bytes().to_vec())
            );
        }
        let zero = item::storage_key("b", b"a\0z", b"");
        assert_eq!(e.get(Space::Data, &zero).unwrap(), Some(b"zero".to_vec()));
        let all = e.scan_after(Space::Data, None, usize::MAX).unwrap();
        assert_eq!(all.len(), 2_501);
        assert!(all.iter().all(|(k, _)| !item::is_format_1(k)));
        let hint_key = hint("n2", &item::storage_key("b", b"h", b""));
        assert_eq!(
            e.get(Space::Hints, &hint_key).unwrap(),
            Some(b"hint".to_vec())
        );
        assert_eq!(e.scan_after(Space::Hints, None, 10).unwrap().len(), 1);
        // Done once: a later start finds the marker.
        assert_eq!(to_items(&e).unwrap(), Migrated::default());
    }

    #[test]
    fn a_migration_stopped_halfway_completes_on_the_next_start() {
        let e = MemoryEngine::new();
        let mut batch = Vec::new();
        for i in 0..10u8 {
            batch.push((Space::Data, format_1("b", &[i]), Some(vec![i])));
        }
        e.commit(batch, true).unwrap();
        // Halfway: five rewritten by an earlier run, no marker.
        let mut half = Vec::new();
        for i in 0..5u8 {
            half.push((Space::Data, format_1("b", &[i]), None));
            half.push((
                Space::Data,
                item::storage_key("b", &[i], b""),
                Some(vec![i]),
            ));
        }
        e.commit(half, true).unwrap();
        assert_eq!(to_items(&e).unwrap().data, 5);
        for i in 0..10u8 {
            let k = item::storage_key("b", &[i], b"");
            assert_eq!(e.get(Space::Data, &k).unwrap(), Some(vec![i]));
        }
        assert_eq!(e.scan_after(Space::Data, None, 100).unwrap().len(), 10);
    }
}
