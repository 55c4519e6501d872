//! Tests of the trees, kept from a key index as the store keeps it.

use super::*;
use kvorum_ring::Member;
use std::time::Duration;

/// Trees with the key index they are kept from: what the store's indexer
/// does on disk ([`index::TreeIndex`]), in memory.
struct Model {
    t: Trees,
    /// (segment, key) → (state hash, delete time), in index order.
    index: BTreeMap<(u32, Vec<u8>), (u64, Option<u64>)>,
}

impl Model {
    fn new(t: Trees) -> Self {
        Self {
            t,
            index: BTreeMap::new(),
        }
    }

    /// A commit of `key`'s new state.
    fn update(&mut self, key: &[u8], hash: u64, dead: Option<u64>) {
        let slot = (segment(key), key.to_vec());
        let old = self.index.insert(slot, (hash, dead)).map(|o| o.0);
        self.t.update(key, old, Some(hash), dead);
    }

    /// A commit removing `key`.
    fn remove(&mut self, key: &[u8]) {
        let old = self
            .index
            .remove(&(segment(key), key.to_vec()))
            .map(|o| o.0);
        self.t.update(key, old, None, None);
    }

    /// The index entries of `segments`, in segment order.
    fn entries(&self, segments: Range<u32>) -> Vec<Entry> {
        self.index
            .range((segments.start, Vec::new())..(segments.end, Vec::new()))
            .map(|((_, k), (hash, dead))| Entry {
                key: k.clone(),
                hash: *hash,
                dead: *dead,
            })
            .collect()
    }

    fn keys(&self, peer: &NodeId, segments: &[u32]) -> Vec<(Vec<u8>, u64)> {
        let entries = segments
            .iter()
            .flat_map(|s| self.entries(*s..s + 1))
            .collect();
        self.t.keys(peer, entries)
    }

    /// One step of the build in progress; true when none is left.
    fn step(&mut self, segments: u32) -> bool {
        match self.t.to_count(segments) {
            None => true,
            Some(r) => {
                let entries = self.entries(r.clone());
                self.t.count(r, &entries)
            }
        }
    }
}

fn ring() -> Ring {
    Ring::new((1..=3).map(|i| Member::new(format!("n{i}"))), 64)
}

fn id(s: &str) -> NodeId {
    NodeId::new(s)
}

#[test]
fn equal_data_gives_equal_trees_in_any_update_order() {
    let (mut a, mut b) = (
        Model::new(Trees::new(id("n1"), fixed_n(3), ring())),
        Model::new(Trees::new(id("n2"), fixed_n(3), ring())),
    );
    let keys: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_be_bytes().to_vec()).collect();
    for k in &keys {
        a.update(k, 1, None);
        a.update(k, 2, None);
    }
    for k in keys.iter().rev() {
        b.update(k, 2, None);
    }
    assert_eq!(a.t.branches(&id("n2")), b.t.branches(&id("n1")));
    assert_ne!(a.t.root(&id("n2")), 0);
}

#[test]
fn a_difference_is_found_down_to_its_key() {
    let (mut a, mut b) = (
        Model::new(Trees::new(id("n1"), fixed_n(3), ring())),
        Model::new(Trees::new(id("n2"), fixed_n(3), ring())),
    );
    for i in 0..1000u32 {
        let k = i.to_be_bytes().to_vec();
        a.update(&k, 7, None);
        if i != 123 {
            b.update(&k, 7, None);
        }
    }
    b.update(&5u32.to_be_bytes(), 8, None);
    let db = differing(&a.t.branches(&id("n2")), &b.t.branches(&id("n1")));
    assert!(!db.is_empty() && db.len() <= 2);
    let (la, lb) = (a.t.leaves(&id("n2"), &db), b.t.leaves(&id("n1"), &db));
    let segs: Vec<u32> = la
        .iter()
        .zip(&lb)
        .flat_map(|((br, x), (_, y))| {
            differing(x, y)
                .into_iter()
                .map(move |i| br * PER_BRANCH + i)
        })
        .collect();
    let mut keys = differing_keys(&a.keys(&id("n2"), &segs), &b.keys(&id("n1"), &segs));
    keys.sort();
    assert_eq!(
        keys,
        vec![5u32.to_be_bytes().to_vec(), 123u32.to_be_bytes().to_vec()]
    );
}

#[test]
fn reaping_candidates_rotate_from_a_cursor() {
    let mut m = Model::new(Trees::new(
        id("n1"),
        fixed_n(1),
        Ring::new([Member::new("n1")], 8),
    ));
    for i in 0..5u8 {
        m.update(&[i], u64::from(i), Some(10));
    }
    assert_eq!(
        m.t.reapable(100, Duration::ZERO, 2, None),
        vec![vec![0], vec![1]]
    );
    assert_eq!(
        m.t.reapable(100, Duration::ZERO, 2, Some(&[1])),
        vec![vec![2], vec![3]]
    );
    assert_eq!(
        m.t.reapable(100, Duration::ZERO, 3, Some(&[3])),
        vec![vec![4], vec![0], vec![1]]
    );
    assert_eq!(
        m.t.reapable(100, Duration::ZERO, 9, Some(&[3])).len(),
        5,
        "each at most once"
    );
    assert!(
        m.t.reapable(5, Duration::ZERO, 9, None).is_empty(),
        "too young"
    );
    m.update(&[0], 99, None); // written again: no longer a tombstone
    assert_eq!(m.t.reapable(100, Duration::ZERO, 1, None), vec![vec![1]]);
}

/// The grace also runs on this node's monotonic clock from when it first
/// held the tombstone: a delete stamped long ago by a coordinator whose
/// wall clock runs behind is not reapable at once.
#[test]
fn a_tombstone_is_reapable_only_once_held_here_for_the_grace() {
    /// A monotonic clock moved by hand.
    struct Manual(std::sync::Mutex<tokio::time::Instant>);
    impl crate::util::clock::Clock for Manual {
        fn now(&self) -> tokio::time::Instant {
            *self.0.lock().unwrap()
        }
        fn wall_ms(&self) -> u64 {
            0
        }
    }
    let manual = std::sync::Arc::new(Manual(std::sync::Mutex::new(tokio::time::Instant::now())));
    let advance = |d: Duration| *manual.0.lock().unwrap() += d;
    let mut m = Model::new(
        Trees::new(id("n1"), fixed_n(1), Ring::new([Member::new("n1")], 8))
            .with_clock(manual.clone()),
    );
    let grace = Duration::from_secs(16);
    m.update(&[1], 1, Some(10)); // stamped at 10 ms: long past any cutoff
    assert!(
        m.t.reapable(100, grace, 9, None).is_empty(),
        "held here 0 s"
    );
    advance(Duration::from_secs(10));
    m.update(&[1], 1, Some(10)); // the same state again: no new start
    advance(Duration::from_secs(6));
    assert_eq!(m.t.reapable(100, grace, 9, None), vec![vec![1]]);
    m.update(&[1], 2, Some(20)); // a newer delete: held from now
    assert!(m.t.reapable(100, grace, 9, None).is_empty());
}

#[test]
fn applying_the_same_state_twice_changes_nothing() {
    let mut m = Model::new(Trees::new(id("n1"), fixed_n(3), ring()));
    m.update(b"k", 5, None);
    let once = m.t.branches(&id("n2"));
    m.update(b"k", 5, None);
    assert_eq!(m.t.branches(&id("n2")), once);
    m.remove(b"k");
    m.remove(b"k");
    assert!(m.t.branches(&id("n2")).iter().all(|h| *h == 0));
}

#[test]
fn a_new_ring_done_in_steps_equals_a_rebuild_despite_writes_meanwhile() {
    let ring4 = Ring::new((1..=4).map(|i| Member::new(format!("n{i}"))), 64);
    let mut m = Model::new(Trees::new(id("n1"), fixed_n(2), ring()));
    m.t.rebuild(ring(), 1, std::iter::empty());
    // What the node holds, as the index should see it.
    let mut held: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for i in 0..3000u32 {
        let k = i.to_be_bytes().to_vec();
        m.update(&k, u64::from(i), None);
        held.insert(k, u64::from(i));
    }
    let before = m.t.branches(&id("n2"));
    m.t.replace(ring4.clone(), 2);
    let mut round = 0u32;
    while !m.step(500) {
        // The old trees serve until the new ones are complete.
        assert_eq!(m.t.version(), Some(1));
        round += 1;
        // Writes to segments done and not yet done, removals, new keys.
        for i in (round * 7..3000).step_by(97) {
            let k = i.to_be_bytes().to_vec();
            m.update(&k, u64::from(i) + 10_000 * u64::from(round), None);
            held.insert(k, u64::from(i) + 10_000 * u64::from(round));
        }
        for i in (round * 11..3000).step_by(389) {
            let k = i.to_be_bytes().to_vec();
            m.remove(&k);
            held.remove(&k);
        }
        let k = (100_000 + round).to_be_bytes().to_vec();
        m.update(&k, 5, None);
        held.insert(k, 5);
    }
    assert!(round > 10, "the build took several steps");
    assert_eq!(m.t.version(), Some(2));
    assert_eq!(m.t.pending_version(), None);
    let mut fresh = Trees::new(id("n1"), fixed_n(2), ring4.clone());
    fresh.rebuild(ring4, 2, held.into_iter().map(|(k, h)| (k, h, None)));
    for p in ["n2", "n3", "n4"] {
        assert_eq!(
            m.t.branches(&id(p)),
            fresh.branches(&id(p)),
            "tree with {p}"
        );
    }
    assert_ne!(
        m.t.branches(&id("n2")),
        before,
        "the ring's change moved keys"
    );
}

#[test]
fn a_build_for_an_older_placement_never_replaces_a_newer_one() {
    let ring4 = Ring::new((1..=4).map(|i| Member::new(format!("n{i}"))), 64);
    let mut m = Model::new(Trees::new(id("n1"), fixed_n(2), ring()));
    m.t.rebuild(ring(), 1, std::iter::empty());
    let keys: Vec<(Vec<u8>, u64, Option<u64>)> = (0..500u32)
        .map(|i| (i.to_be_bytes().to_vec(), u64::from(i), None))
        .collect();
    for (k, h, _) in &keys {
        m.update(k, *h, None);
    }
    m.t.replace(ring4.clone(), 3);
    assert!(!m.step(100));
    m.t.replace(ring(), 2); // a caller that read an older placement
    assert_eq!(m.t.pending_version(), Some(3));
    m.t.replace(ring4.clone(), 3); // the same: the build goes on
    while !m.step(1000) {}
    assert_eq!(m.t.version(), Some(3));
    m.t.replace(ring(), 2);
    m.t.replace(ring4.clone(), 3);
    assert_eq!(m.t.pending_version(), None, "not newer than the trees");
    // An abandoned build starts over from the first segment.
    m.t.replace(ring(), 4);
    assert!(!m.step(4000)); // about a quarter of the keys
    m.t.abandon();
    m.t.replace(ring(), 4);
    while !m.step(1000) {}
    let mut fresh = Trees::new(id("n1"), fixed_n(2), ring());
    fresh.rebuild(ring(), 4, keys);
    assert_eq!(m.t.branches(&id("n2")), fresh.branches(&id("n2")));
    assert_eq!(m.t.branches(&id("n3")), fresh.branches(&id("n3")));
}

/// A measurement, not a check of speed (docs/architecture.md quotes
/// it): `cargo test --release -p kvorum-node --lib replace_cost --
/// --ignored --nocapture`.
#[test]
#[ignore = "a measurement at 1 M keys; run it by name"]
fn replace_cost_at_a_million_keys() {
    let members = |n: u32| (1..=n).map(|i| Member::new(format!("n{i}")));
    let (r3, r4) = (Ring::new(members(3), 1024), Ring::new(members(4), 1024));
    let records: Vec<(Vec<u8>, u64, Option<u64>)> = (0..1_000_000u32)
        .map(|i| {
            let mut k = b"\x00\x05bench".to_vec();
            k.extend_from_slice(format!("key{i:08}").as_bytes());
            (k, u64::from(i), None)
        })
        .collect();
    let mut m = Model::new(Trees::new(id("n1"), fixed_n(3), r3.clone()));
    let started = std::time::Instant::now();
    for (k, h, _) in &records {
        m.update(k, *h, None);
    }
    eprintln!("built from 1 M records in {:?}", started.elapsed());
    m.t.replace(r4.clone(), 2);
    let (started, mut steps, mut longest) = (std::time::Instant::now(), 0, Duration::ZERO);
    loop {
        let step = std::time::Instant::now();
        let done = m.step(crate::repair::exchange::REPLACE_STEP);
        longest = longest.max(step.elapsed());
        steps += 1;
        if done {
            break;
        }
    }
    eprintln!(
        "redone for 3 -> 4 nodes in {:?}, {steps} steps, the longest {longest:?}",
        started.elapsed()
    );
    assert_eq!(
        steps,
        SEGMENTS.div_ceil(crate::repair::exchange::REPLACE_STEP)
    );
    let mut fresh = Trees::new(id("n1"), fixed_n(3), r4.clone());
    fresh.rebuild(r4, 2, records);
    assert_eq!(m.t.branches(&id("n4")), fresh.branches(&id("n4")));
}

/// A measurement, not a check of speed (docs/performance.md quotes it):
/// the cost of a write's tree update with 300,000 keys held, as in the
/// bench's write runs. `cargo test --release -p kvorum-node --lib
/// update_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run it by name"]
fn update_cost_at_300k_keys() {
    let members = (1..=3).map(|i| Member::new(format!("n{i}")));
    let ring = Ring::new(members, 1024);
    let key = |i: u64| {
        let mut k = b"\x00\x05bench".to_vec();
        k.extend_from_slice(format!("key{i:08}").as_bytes());
        k
    };
    let mut t = Trees::new(id("n1"), fixed_n(3), ring);
    for i in 0..300_000u64 {
        t.update(&key(i), None, Some(i), None);
    }
    // Keys made before the clock starts: half updates of held keys,
    // half new keys, in a scrambled order.
    let keys: Vec<Vec<u8>> = (0..400_000u64)
        .map(|i| key(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 600_000))
        .collect();
    let started = std::time::Instant::now();
    for (i, k) in keys.iter().enumerate() {
        t.update(k, Some(i as u64), Some(i as u64 + 1_000_000), None);
    }
    let per = started.elapsed() / keys.len() as u32;
    eprintln!("tree update with 300,000+ keys held: {per:?} each");
    assert!(t.root(&id("n2")) != 0);
}

#[test]
fn rebuild_equals_incremental_updates() {
    let mut inc = Trees::new(id("n1"), fixed_n(2), ring());
    let records: Vec<(Vec<u8>, u64)> = (0..300u32)
        .map(|i| (i.to_be_bytes().to_vec(), u64::from(i)))
        .collect();
    for (k, h) in &records {
        inc.update(k, None, Some(*h), None);
    }
    let mut reb = Trees::new(id("n1"), fixed_n(2), ring());
    reb.rebuild(ring(), 1, records.into_iter().map(|(k, h)| (k, h, None)));
    for p in ["n2", "n3"] {
        assert_eq!(inc.branches(&id(p)), reb.branches(&id(p)));
    }
}

/// The start-up build counts the index in, segment by segment, while
/// writes go on: the trees and the tombstone-only keys end as a rebuild
/// from what the index holds at the end gives them.
#[test]
fn a_start_up_build_with_writes_meanwhile_equals_a_rebuild() {
    let mut m = Model::new(Trees::new(id("n1"), fixed_n(2), ring()));
    for i in 0..3000u32 {
        let dead = (i % 5 == 0).then_some(u64::from(i));
        m.update(&i.to_be_bytes(), u64::from(i), dead);
    }
    // A restart: the trees start from nothing, the index is on disk.
    m.t = Trees::new(id("n1"), fixed_n(2), ring());
    m.t.begin(ring(), 7);
    let mut round = 0u32;
    while !m.step(300) {
        assert_eq!(m.t.version(), None, "not built yet");
        round += 1;
        for i in (round * 13..3000).step_by(101) {
            let dead = (round % 2 == 0).then_some(u64::from(round));
            m.update(
                &i.to_be_bytes(),
                u64::from(i) + 10_000 * u64::from(round),
                dead,
            );
        }
        for i in (round * 17..3000).step_by(409) {
            m.remove(&i.to_be_bytes());
        }
    }
    assert!(round > 10, "the build took several steps");
    assert_eq!(m.t.version(), Some(7));
    let mut fresh = Trees::new(id("n1"), fixed_n(2), ring());
    fresh.rebuild(
        ring(),
        7,
        m.index.iter().map(|((_, k), (h, d))| (k.clone(), *h, *d)),
    );
    assert!(m.t.agrees_with(&fresh));
    assert!(!m.t.reapable(u64::MAX, Duration::ZERO, 10, None).is_empty());
}
