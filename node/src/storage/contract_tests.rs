//! The [`Engine`] contract (see the module doc of `storage`), written once
//! and run against every engine: [`FjallEngine`] on a real directory and
//! [`MemoryEngine`]. A simulation on the memory engine then tells the truth
//! about a node on fjall.

use super::{BatchItem, Engine, FjallEngine, MemoryEngine, Record, Space};
use Space::{Data, Hints, Meta};

/// An engine under test, and how to stop and open it again.
trait Fixture: Sized {
    /// A new, empty engine.
    fn open() -> Self;
    /// The engine.
    fn engine(&self) -> &dyn Engine;
    /// Stops the engine and opens what it left on its disk: fjall drops
    /// its database and opens the directory again; memory loses power.
    fn reopen(self) -> Self;
    /// Bytes the engine holds for its data: the files under fjall's
    /// directory but its journals (whose bound `fjall.rs` tests), the memory
    /// engine's committed keys and values.
    fn disk_bytes(&self) -> u64;
    /// A new engine holding `records`, synced.
    fn holding(records: Vec<BatchItem>) -> Self {
        let f = Self::open();
        f.engine().commit(records, true).unwrap();
        f
    }
}

struct Fjall {
    // Declared first: the database closes before its directory goes.
    engine: FjallEngine,
    dir: tempfile::TempDir,
}

impl Fixture for Fjall {
    fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path()).unwrap();
        Fjall { engine, dir }
    }
    fn engine(&self) -> &dyn Engine {
        &self.engine
    }
    fn reopen(self) -> Self {
        let Fjall { engine, dir } = self;
        drop(engine);
        let engine = FjallEngine::open(dir.path()).unwrap();
        Fjall { engine, dir }
    }
    fn disk_bytes(&self) -> u64 {
        fn walk(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let meta = e.metadata().unwrap();
                    if meta.is_dir() {
                        walk(&e.path())
                    } else if e.path().extension().is_some_and(|x| x == "jnl") {
                        0
                    } else {
                        // Allocated bytes, as `du` counts them: fjall
                        // preallocates its active journal sparsely.
                        std::os::unix::fs::MetadataExt::blocks(&meta) * 512
                    }
                })
                .sum()
        }
        walk(self.dir.path())
    }
}

struct Memory(MemoryEngine);

impl Fixture for Memory {
    fn open() -> Self {
        Memory(MemoryEngine::new())
    }
    fn engine(&self) -> &dyn Engine {
        &self.0
    }
    fn reopen(self) -> Self {
        Memory(self.0.crash())
    }
    fn disk_bytes(&self) -> u64 {
        self.0.size().unwrap().disk_bytes
    }
}

fn put(space: Space, key: &[u8], value: &[u8]) -> BatchItem {
    (space, key.to_vec(), Some(value.to_vec()))
}

fn delete(space: Space, key: &[u8]) -> BatchItem {
    (space, key.to_vec(), None)
}

fn get(e: &dyn Engine, space: Space, key: &[u8]) -> Option<Vec<u8>> {
    e.get(space, key).unwrap()
}

/// The keys of some records.
fn keys(records: Vec<Record>) -> Vec<Vec<u8>> {
    records.into_iter().map(|(k, _)| k).collect()
}

fn byte_strings(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}

/// A commit is read back by `get`; a later one overwrites it.
fn a_committed_write_reads_back<F: Fixture>() {
    let f = F::open();
    let e = f.engine();
    assert_eq!(get(e, Data, b"k"), None);
    e.commit(vec![put(Data, b"k", b"v1")], false).unwrap();
    assert_eq!(get(e, Data, b"k"), Some(b"v1".to_vec()));
    e.commit(vec![put(Data, b"k", b"v2")], true).unwrap();
    assert_eq!(get(e, Data, b"k"), Some(b"v2".to_vec()));
}

/// Every write and delete of a batch, across spaces, is applied by one commit.
fn a_batch_applies_all_its_writes_and_deletes<F: Fixture>() {
    let f = F::holding(vec![put(Data, b"a", b"1"), put(Hints, b"h", b"1")]);
    let e = f.engine();
    let batch = vec![
        delete(Data, b"a"),
        put(Data, b"b", b"2"),
        put(Meta, b"m", b"2"),
        delete(Hints, b"h"),
        put(Data, b"c", b"2"),
    ];
    e.commit(batch, false).unwrap();
    assert_eq!(get(e, Data, b"a"), None);
    assert_eq!(get(e, Data, b"b"), Some(b"2".to_vec()));
    assert_eq!(get(e, Data, b"c"), Some(b"2".to_vec()));
    assert_eq!(get(e, Meta, b"m"), Some(b"2".to_vec()));
    assert_eq!(get(e, Hints, b"h"), None);
}

/// When a batch names a key twice, its later item wins (the store's group
/// commit puts two updates of one key in one batch).
fn a_later_item_of_a_batch_wins<F: Fixture>() {
    let f = F::holding(vec![put(Data, b"gone", b"old")]);
    let e = f.engine();
    let batch = vec![
        put(Data, b"twice", b"1"),
        put(Data, b"twice", b"2"),
        put(Data, b"gone", b"new"),
        delete(Data, b"gone"),
        delete(Data, b"back"),
        put(Data, b"back", b"3"),
    ];
    e.commit(batch, true).unwrap();
    assert_eq!(get(e, Data, b"twice"), Some(b"2".to_vec()));
    assert_eq!(get(e, Data, b"gone"), None);
    assert_eq!(get(e, Data, b"back"), Some(b"3".to_vec()));
}

/// One key in two spaces is two records.
fn spaces_are_separate<F: Fixture>() {
    let f = F::holding(vec![put(Data, b"k", b"data"), put(Meta, b"k", b"meta")]);
    let e = f.engine();
    assert_eq!(get(e, Data, b"k"), Some(b"data".to_vec()));
    assert_eq!(get(e, Meta, b"k"), Some(b"meta".to_vec()));
    assert_eq!(get(e, Hints, b"k"), None);
    assert!(e.scan(Hints, b"", 10).unwrap().is_empty());
    assert!(e.scan_after(Hints, None, 10).unwrap().is_empty());
    e.commit(vec![delete(Meta, b"k")], true).unwrap();
    assert_eq!(get(e, Data, b"k"), Some(b"data".to_vec()));
    assert_eq!(keys(e.scan(Data, b"", 10).unwrap()), [b"k"]);
}

/// The keys the scan tests store, written out of order.
const SCAN_KEYS: [&[u8]; 8] = [
    b"p/b", b"q/a", b"p/\xff", b"p", b"o/z", b"p/a", b"p0", b"p/c",
];

fn with_scan_keys<F: Fixture>() -> F {
    F::holding(SCAN_KEYS.iter().map(|k| put(Data, k, k)).collect())
}

/// A scan returns the records under a prefix, in key order, the first
/// `limit` of them.
fn scan_returns_a_prefix_in_key_order_up_to_the_limit<F: Fixture>() {
    let f = with_scan_keys::<F>();
    let e = f.engine();
    let scan = |prefix: &[u8], limit| keys(e.scan(Data, prefix, limit).unwrap());
    let under_p: [&[u8]; 4] = [b"p/a", b"p/b", b"p/c", b"p/\xff"];
    assert_eq!(scan(b"p/", 10), byte_strings(&under_p));
    assert_eq!(scan(b"p/", 2), byte_strings(&under_p[..2]));
    assert_eq!(scan(b"p/", 0), byte_strings(&[]));
    assert_eq!(scan(b"r", 10), byte_strings(&[]));
    let mut all = SCAN_KEYS.to_vec();
    all.sort();
    assert_eq!(scan(b"", 100), byte_strings(&all));
    let records = e.scan(Data, b"p/b", 10).unwrap();
    assert_eq!(records, [(b"p/b".to_vec(), b"p/b".to_vec())], "values too");
}

/// A scan after a key starts just past it (present or not), from the first
/// key when there is none, in key order, the first `limit` records; pages
/// of it walk the whole space.
fn scan_after_resumes_past_a_key_in_key_order<F: Fixture>() {
    let f = with_scan_keys::<F>();
    let e = f.engine();
    let after = |key: Option<&[u8]>, limit| keys(e.scan_after(Data, key, limit).unwrap());
    let mut all = SCAN_KEYS.to_vec();
    all.sort();
    assert_eq!(after(None, 3), byte_strings(&all[..3]));
    assert_eq!(after(Some(b"p"), 2), byte_strings(&[b"p/a", b"p/b"]));
    assert_eq!(after(Some(b"p/bb"), 2), byte_strings(&[b"p/c", b"p/\xff"]));
    assert_eq!(after(Some(b"q/a"), 5), byte_strings(&[]));
    assert_eq!(after(Some(b"p"), 0), byte_strings(&[]));
    let mut walked = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    loop {
        let page = after(last.as_deref(), 2);
        let Some(end) = page.last().cloned() else {
            break;
        };
        walked.extend(page);
        last = Some(end);
    }
    assert_eq!(walked, byte_strings(&all));
}

/// A visit sees what the same scan returns, key and value, in order, and
/// stops where the visitor says.
fn visit_after_sees_what_scan_after_returns<F: Fixture>() {
    let f = with_scan_keys::<F>();
    let e = f.engine();
    for (after, limit) in [
        (None, 3),
        (Some(&b"p"[..]), 2),
        (Some(b"p/bb"), 9),
        (Some(b"q/a"), 5),
    ] {
        let mut seen = Vec::new();
        let count = e
            .visit_after(Data, after, limit, &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(count, seen.len());
        assert_eq!(
            seen,
            e.scan_after(Data, after, limit).unwrap(),
            "after {after:?}"
        );
    }
    let mut seen = 0;
    let count = e
        .visit_after(Data, None, 100, &mut |_, _| {
            seen += 1;
            seen < 2
        })
        .unwrap();
    assert_eq!((count, seen), (2, 2), "the visit stops after the second");
}

/// A snapshot sees every space as it was when taken: later writes,
/// deletes and a whole batch across spaces are invisible to it, and its
/// visits page like the engine's own.
fn a_snapshot_keeps_the_moment_it_was_taken<F: Fixture>() {
    let f = with_scan_keys::<F>();
    let e = f.engine();
    e.commit(vec![put(Meta, b"floor", b"1")], true).unwrap();
    let before = e.scan_after(Data, None, 100).unwrap();
    let snap = e.snapshot().unwrap();
    e.commit(
        vec![
            put(Data, b"p/new", b"x"),
            delete(Data, &before[0].0),
            put(Data, &before[1].0, b"changed"),
            put(Meta, b"floor", b"2"),
        ],
        true,
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut last = None;
        let count = snap
            .visit_after(Data, after.as_deref(), 2, &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                last = Some(k.to_vec());
                true
            })
            .unwrap();
        if count == 0 {
            break;
        }
        after = last;
    }
    assert_eq!(seen, before, "the snapshot's data is the data it saw");
    assert_eq!(snap.get(Meta, b"floor").unwrap(), Some(b"1".to_vec()));
    assert_eq!(snap.get(Data, b"p/new").unwrap(), None);
    assert_eq!(get(e, Meta, b"floor"), Some(b"2".to_vec()));
}

/// A range read returns the keys between its bounds (each included or
/// not), ascending or, in reverse, descending from the high end, the first
/// `limit` of that order; an empty or inverted range returns nothing.
fn range_reads_between_bounds_both_ways<F: Fixture>() {
    use std::ops::Bound::{self, Excluded, Included, Unbounded};
    let f = with_scan_keys::<F>();
    let e = f.engine();
    let range = |low: Bound<&[u8]>, high: Bound<&[u8]>, reverse, limit| {
        keys(e.range(Data, low, high, reverse, limit).unwrap())
    };
    let under_p: [&[u8]; 4] = [b"p/a", b"p/b", b"p/c", b"p/\xff"];
    let inc = |k: &'static [u8]| Included(k);
    let exc = |k: &'static [u8]| Excluded(k);
    assert_eq!(
        range(inc(b"p/a"), inc(b"p/c"), false, 10),
        byte_strings(&under_p[..3])
    );
    assert_eq!(
        range(exc(b"p/a"), exc(b"p/c"), false, 10),
        byte_strings(&under_p[1..2])
    );
    assert_eq!(
        range(inc(b"p/"), exc(b"p0"), false, 2),
        byte_strings(&under_p[..2])
    );
    let mut down = under_p.to_vec();
    down.reverse();
    assert_eq!(range(inc(b"p/"), exc(b"p0"), true, 10), byte_strings(&down));
    assert_eq!(
        range(inc(b"p/"), exc(b"p0"), true, 2),
        byte_strings(&down[..2])
    );
    assert_eq!(
        range(exc(b"p/a"), inc(b"p/c"), true, 10),
        byte_strings(&[b"p/c", b"p/b"])
    );
    let mut all = SCAN_KEYS.to_vec();
    all.sort();
    assert_eq!(range(Unbounded, Unbounded, false, 100), byte_strings(&all));
    // Empty and inverted ranges.
    assert_eq!(
        range(exc(b"p/a"), exc(b"p/a"), false, 10),
        byte_strings(&[])
    );
    assert_eq!(range(inc(b"p/c"), inc(b"p/a"), true, 10), byte_strings(&[]));
    assert_eq!(
        range(inc(b"p/b"), inc(b"p/b"), true, 10),
        byte_strings(&[b"p/b"])
    );
}

/// A deleted key is gone from reads and scans; deleting a missing key is
/// no error.
fn a_deleted_key_is_gone<F: Fixture>() {
    let f = F::holding(vec![put(Data, b"a", b"1"), put(Data, b"b", b"1")]);
    let e = f.engine();
    e.commit(vec![delete(Data, b"a")], true).unwrap();
    e.commit(vec![delete(Data, b"never")], true).unwrap();
    assert_eq!(get(e, Data, b"a"), None);
    assert_eq!(keys(e.scan(Data, b"", 10).unwrap()), [b"b"]);
    assert_eq!(keys(e.scan_after(Data, None, 10).unwrap()), [b"b"]);
}

/// What a sync or a synced commit covered is there after a reopen (for
/// memory, after a power loss): puts and deletes alike.
fn synced_writes_survive_a_reopen<F: Fixture>() {
    let f = F::holding(vec![put(Data, b"a", b"1"), put(Meta, b"gone", b"1")]);
    let e = f.engine();
    e.commit(vec![put(Data, b"b", b"2")], false).unwrap();
    e.commit(vec![delete(Meta, b"gone")], false).unwrap();
    e.sync().unwrap();
    let f = f.reopen();
    let e = f.engine();
    assert_eq!(get(e, Data, b"a"), Some(b"1".to_vec()));
    assert_eq!(get(e, Data, b"b"), Some(b"2".to_vec()), "synced by sync()");
    assert_eq!(get(e, Meta, b"gone"), None, "a delete synced by sync()");
    e.commit(vec![put(Hints, b"c", b"3")], false).unwrap();
    e.commit(vec![put(Data, b"d", b"4")], true).unwrap();
    let f = f.reopen();
    let e = f.engine();
    let covered = "a synced commit covers the commits before it";
    assert_eq!(get(e, Hints, b"c"), Some(b"3".to_vec()), "{covered}");
    assert_eq!(keys(e.scan(Data, b"", 10).unwrap()), [b"a", b"b", b"d"]);
}

/// Memory only (a real power loss cannot be had in a test): a power loss
/// loses the commits since the last sync, puts and deletes, and keeps the
/// rest.
#[test]
fn memory_a_power_loss_loses_unsynced_commits() {
    let f = Memory::holding(vec![put(Data, b"a", b"1"), put(Data, b"c", b"1")]);
    let e = f.engine();
    e.commit(vec![put(Data, b"a", b"2")], false).unwrap();
    e.commit(vec![put(Meta, b"b", b"2")], false).unwrap();
    e.commit(vec![delete(Data, b"c")], false).unwrap();
    assert_eq!(get(e, Data, b"a"), Some(b"2".to_vec()), "read back");
    let f = f.reopen();
    let e = f.engine();
    assert_eq!(get(e, Data, b"a"), Some(b"1".to_vec()));
    assert_eq!(get(e, Meta, b"b"), None);
    assert_eq!(get(e, Data, b"c"), Some(b"1".to_vec()));
}

/// A compaction keeps every live key, drops the removed ones, and (for an
/// engine that counts keys) brings the count back to the live keys.
fn a_compaction_keeps_live_keys_and_drops_removed_ones<F: Fixture>() {
    let f = F::open();
    let e = f.engine();
    let key = |i: u32| format!("k{i:04}").into_bytes();
    e.commit((0..2000).map(|i| put(Data, &key(i), b"v")).collect(), false)
        .unwrap();
    e.commit(
        (0..2000)
            .filter(|i| i % 4 != 0)
            .map(|i| delete(Data, &key(i)))
            .collect(),
        true,
    )
    .unwrap();
    e.compact().unwrap();
    for i in 0..2000 {
        let want = (i % 4 == 0).then(|| b"v".to_vec());
        assert_eq!(get(e, Data, &key(i)), want, "key {i}");
    }
    if let Some(size) = e.size() {
        assert_eq!(size.keys, 500, "the removed keys' tombstones are gone");
    }
}

/// A compaction gives back the bytes of removed keys, the tables it replaced
/// included: with three quarters of 4 MiB of incompressible values removed,
/// the engine holds less than the live quarter and 1 MiB of overhead.
fn a_compaction_returns_the_space_of_removed_keys<F: Fixture>() {
    let f = F::open();
    let e = f.engine();
    let key = |i: u32| format!("k{i:04}").into_bytes();
    let mut seed = 1;
    let mut value = || {
        seed += 1;
        noise(1024, seed)
    };
    for chunk in 0..8u32 {
        let batch = (chunk * 512..(chunk + 1) * 512)
            .map(|i| (Data, key(i), Some(value())))
            .collect();
        e.commit(batch, false).unwrap();
    }
    e.commit(
        (0..4096)
            .filter(|i| i % 4 != 0)
            .map(|i| delete(Data, &key(i)))
            .collect(),
        true,
    )
    .unwrap();
    e.compact().unwrap();
    let live = 1024 * (1024 + 5);
    let held = f.disk_bytes();
    assert!(
        held < live + (1 << 20),
        "{held} bytes held for {live} live bytes after a compaction"
    );
    assert_eq!(get(e, Data, &key(4)).map(|v| v.len()), Some(1024));
    assert_eq!(get(e, Data, &key(5)), None);
}

/// `len` incompressible bytes (xorshift from `seed`): fjall compresses its
/// journal and tables.
pub(super) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs each contract test against each engine: `fjall::<test>` and
/// `memory::<test>`.
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod fjall {
            $(#[test] fn $test() { super::$test::<super::Fjall>() })*
        }
        mod memory {
            $(#[test] fn $test() { super::$test::<super::Memory>() })*
        }
    };
}

contract!(
    a_committed_write_reads_back,
    a_batch_applies_all_its_writes_and_deletes,
    a_later_item_of_a_batch_wins,
    spaces_are_separate,
    scan_returns_a_prefix_in_key_order_up_to_the_limit,
    scan_after_resumes_past_a_key_in_key_order,
    visit_after_sees_what_scan_after_returns,
    a_snapshot_keeps_the_moment_it_was_taken,
    range_reads_between_bounds_both_ways,
    a_deleted_key_is_gone,
    synced_writes_survive_a_reopen,
    a_compaction_keeps_live_keys_and_drops_removed_ones,
    a_compaction_returns_the_space_of_removed_keys,
);
