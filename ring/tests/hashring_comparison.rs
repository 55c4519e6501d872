//! Why Kvorum does not place keys with `hashring` 0.3.6 (a required crate of
//! the project, see DESIGN.md "Placement" and CRATES.md).
//!
//! Each test *measures* one defect of `hashring` 0.3.6 and asserts that it is
//! still there, next to what `kvorum_ring::Ring` does instead. If a future
//! `hashring` fixes a defect, its test fails: that is the signal to reconsider
//! the choice (and to update `docs/ring.md`, which quotes these figures).
//! Everything is deterministic: fixed node names, fixed keys `key-{i}`.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::hash::BuildHasher;

use hashring::{DefaultHashBuilder, HashRing};
use kvorum_ring::{Member, Ring};

const NODES: usize = 5;
const VNODES: u32 = 128;
/// Keys per statistical measurement.
const KEYS: usize = 10_000;
/// Keys per length check (every key behaves the same; a sample suffices).
const LENGTH_KEYS: usize = 1_000;

thread_local! {
    /// Clones of [`VNode`] made on this thread (each test runs on its own).
    static VNODE_CLONES: Cell<usize> = const { Cell::new(0) };
}

/// One virtual node as `hashring` wants it: its position is the derived
/// `Hash` of this value.
#[derive(Debug, Hash, PartialEq)]
struct VNode {
    node: String,
    index: u32,
}

impl Clone for VNode {
    /// Counts clones, to show how much `get_with_replicas` copies.
    fn clone(&self) -> VNode {
        VNODE_CLONES.with(|clones| clones.set(clones.get() + 1));
        VNode {
            node: self.node.clone(),
            index: self.index,
        }
    }
}

fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

/// 5 nodes x 128 vnodes = 640 ring entries.
fn hashring_ring() -> HashRing<VNode> {
    let mut ring = HashRing::new();
    ring.batch_add(
        (0..NODES)
            .flat_map(|n| {
                (0..VNODES).map(move |index| VNode {
                    node: node_name(n),
                    index,
                })
            })
            .collect(),
    );
    ring
}

fn kvorum_ring() -> Ring {
    Ring::new((0..NODES).map(|n| Member::new(node_name(n))), VNODES)
}

fn key(i: usize) -> String {
    format!("key-{i}")
}

// Defect 1: `get_with_replicas(key, n)` returns n + 1 entries whenever n is
// smaller than the number of ring entries (it computes `replicas + 1`).
#[test]
fn get_with_replicas_returns_one_entry_too_many() {
    let ring = hashring_ring();
    for n in 1..=4 {
        let lengths: BTreeSet<usize> = (0..LENGTH_KEYS)
            .map(|i| {
                ring.get_with_replicas(&key(i), n)
                    .map_or(0, |entries| entries.len())
            })
            .collect();
        println!("hashring get_with_replicas(key, {n}): lengths {lengths:?}");
        assert_eq!(lengths, BTreeSet::from([n + 1]), "asked for {n}");
    }
    let ours = kvorum_ring();
    assert!((0..KEYS).all(|i| ours.preference_list(key(i).as_bytes(), 3).len() == 3));
}

// Defect 2: when n equals the number of ring entries it still adds one, and
// the cyclic walk hands back the first entry twice.
#[test]
fn get_with_replicas_repeats_an_entry_when_n_equals_the_ring_size() {
    let mut ring: HashRing<VNode> = HashRing::new();
    for n in 0..3 {
        ring.add(VNode {
            node: node_name(n),
            index: 0,
        });
    }
    let entries = ring
        .get_with_replicas(&"user:42", 3)
        .expect("the ring is not empty");
    println!("hashring get_with_replicas(key, 3) on 3 entries: {entries:?}");
    assert_eq!(entries.len(), 4);
    assert_eq!(entries.first(), entries.last(), "the walk wrapped around");

    let ours = Ring::new((0..3).map(|n| Member::new(node_name(n))), 1);
    assert_eq!(ours.preference_list(b"user:42", 3).len(), 3);
}

// Defect 3: consecutive entries are vnodes, not physical nodes, and
// `get_with_replicas` does not skip a node it already returned, so a
// "3-replica" list often names fewer than 3 machines. Expected with 5 nodes:
// 1 - (4/5)(3/5) = 52% of keys get fewer than 3 nodes in 3 entries.
#[test]
fn get_with_replicas_does_not_skip_vnodes_of_the_same_node() {
    let ring = hashring_ring();
    let ours = kvorum_ring();
    let mut short_in_first_three = 0usize;
    let mut short_in_all_returned = 0usize;
    for i in 0..KEYS {
        let entries = ring
            .get_with_replicas(&key(i), 3)
            .expect("the ring is not empty");
        let distinct = |take: usize| {
            entries
                .iter()
                .take(take)
                .map(|vnode| vnode.node.as_str())
                .collect::<BTreeSet<_>>()
                .len()
        };
        if distinct(3) < 3 {
            short_in_first_three += 1;
        }
        // Even the one extra entry it returns does not make up for it.
        if distinct(entries.len()) < 3 {
            short_in_all_returned += 1;
        }
        let list = ours.preference_list(key(i).as_bytes(), 3);
        assert_eq!(list.iter().collect::<BTreeSet<_>>().len(), 3);
    }
    let first_three = short_in_first_three as f64 / KEYS as f64;
    let all_returned = short_in_all_returned as f64 / KEYS as f64;
    println!(
        "hashring, {NODES} nodes x {VNODES} vnodes, get_with_replicas(key, 3): \
         {:.1}% of keys have < 3 distinct nodes in the first 3 entries, \
         {:.1}% in all 4 returned entries (kvorum-ring: 0%)",
        first_three * 100.0,
        all_returned * 100.0
    );
    assert!(
        first_three > 0.40,
        "fewer short lists than expected: {first_three}"
    );
    assert!(
        all_returned > 0.10,
        "fewer short lists than expected: {all_returned}"
    );
}

// Defect 4: every `get_with_replicas` call clones and rotates the whole ring
// (all 640 entries) to return a handful; `get` clones nothing. Counted with a
// clone-counting node type, not timed.
#[test]
fn get_with_replicas_clones_the_whole_ring_per_call() {
    let ring = hashring_ring();
    VNODE_CLONES.with(|clones| clones.set(0));
    let _ = ring.get(&"user:42");
    let by_get = VNODE_CLONES.with(Cell::get);
    let _ = ring.get_with_replicas(&"user:42", 2);
    let by_get_with_replicas = VNODE_CLONES.with(Cell::get) - by_get;
    println!(
        "hashring clones per call on {} entries: get {by_get}, get_with_replicas(key, 2) {by_get_with_replicas}",
        ring.len()
    );
    assert_eq!(by_get, 0);
    assert!(
        by_get_with_replicas >= ring.len(),
        "cloned {by_get_with_replicas} of {} entries",
        ring.len()
    );
}

// Defect 5: positions come from `T: Hash` through SipHash, so a key's place
// depends on the Rust *type* it is hashed as, not on its bytes (`str` hashes
// its bytes plus a 0xff terminator, `[u8]` a length prefix plus its bytes),
// and on integer widths that differ by platform. std documents that this
// data "should not be considered stable between compiler versions" nor
// portable across platforms. kvorum-ring hashes bytes with xxh3 only.
#[test]
fn hashring_positions_depend_on_the_rust_type_not_the_bytes() {
    let ring = hashring_ring();
    let disagreeing = (0..KEYS)
        .filter(|&i| {
            let text = key(i);
            let as_str = ring.get(&text.as_str()).map(|vnode| vnode.node.clone());
            let as_bytes = ring.get(&text.as_bytes()).map(|vnode| vnode.node.clone());
            as_str != as_bytes
        })
        .count();
    let fraction = disagreeing as f64 / KEYS as f64;
    println!(
        "hashring: {:.1}% of keys map to another node when hashed as &[u8] instead of &str",
        fraction * 100.0
    );
    // Expected 1 - 1/5 = 80% if the two positions are unrelated.
    assert!(fraction > 0.5, "only {fraction} disagree");

    // A vnode index typed `usize` is hashed at the target's pointer width.
    let hasher = DefaultHashBuilder;
    assert_ne!(hasher.hash_one(7usize), hasher.hash_one(7u32));
    #[cfg(target_pointer_width = "64")]
    assert_eq!(hasher.hash_one(7usize), hasher.hash_one(7u64));

    // kvorum-ring: one key, one position, whatever type held the bytes.
    let text = key(0);
    assert_eq!(
        Ring::key_token(text.as_bytes()),
        Ring::key_token(text.clone().into_bytes().as_slice())
    );
}
