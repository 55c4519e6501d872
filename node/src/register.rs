//! The multi-value register: plain values with vector clocks and siblings.
//!
//! Values are `crdts::MVReg<RegValue, Actor>`. This module is pure: no IO, no
//! clock, no randomness; the replica and coordinator call it.
//!
//! # How a write gets its version (and why actors carry a *lane*)
//! A write carries the client's causal context `ctx` (the clock of the read it
//! replaces). The coordinating replica, serialized per key by the store, gives
//! the new value the clock `ctx + dot`, where `dot = (actor, local[actor] + 1)`
//! is fresh because `local` (the replica's merged clock of the key) covers
//! every dot this actor ever issued for the key. This is the Dynamo recipe and
//! the one CRATES.md prescribes: a dot derived from the client's (possibly
//! empty) context alone would be dominated and silently dropped by `apply`.
//!
//! Plain vector clocks cannot express "has seen (n1, 2) but not (n1, 1)", so
//! with one actor per node two concurrent writes with the same context
//! coordinated by the same node would get `{ctx, n1:1}` and `{ctx, n1:2}`, and
//! the second would silently supersede the first: a lost update (the reason
//! Riak moved to dotted version vectors). We keep `MVReg` and plain clocks but
//! let a node act under several *lanes*: actor = (node id, lane). The new value
//! takes the lowest lane whose entry is not the only thing distinguishing a
//! sibling the client did not see from `ctx`; then every unseen sibling stays
//! concurrent with the new value, and every seen one is dominated. Lanes are
//! only opened by concurrent writes through one node, so a clock has at most
//! one entry per (node, concurrent writer) ever seen for the key.
//!
//! # Merge laws (property-tested below)
//! `merge` is commutative, associative and idempotent (the MVReg CvRDT merge).

use crdts::{CmRDT, CvRDT, Dot, MVReg, VClock};
use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};

/// An actor of the vector clocks: a node acting under one lane.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The coordinating node.
    pub node: NodeId,
    /// The lane (0 unless concurrent writes with one context met at this node).
    pub lane: u32,
}

/// A register value: bytes, or the tombstone a delete writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegValue {
    /// A live value.
    Data(Vec<u8>),
    /// A delete.
    Tombstone,
}

/// The replicated state of one key.
pub type Register = MVReg<RegValue, Actor>;

/// A vector clock over [`Actor`]s; the decoded form of a causal context.
pub type Clock = VClock<Actor>;

/// Persisted form of a key's state. The enum tag is the format version:
/// a new format adds a variant and a conversion from the old one.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum StoredRecord {
    V1(Register),
}

/// Version byte that starts every encoded causal context.
const CONTEXT_VERSION: u8 = 1;

/// Why a causal context or record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The context was not issued by this cluster's protocol version.
    #[error("unknown causal context version {0}")]
    ContextVersion(u8),
    /// The bytes are not a well-formed context or record.
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Encodes a key's state for storage.
pub fn encode_record(reg: &Register) -> Vec<u8> {
    // Serializing a plain struct into a Vec cannot fail.
    postcard::to_stdvec(&StoredRecord::V1(reg.clone())).unwrap_or_default()
}

/// Decodes a stored record.
pub fn decode_record(bytes: &[u8]) -> Result<Register, DecodeError> {
    match postcard::from_bytes::<StoredRecord>(bytes) {
        Ok(StoredRecord::V1(r)) => Ok(r),
        Err(e) => Err(DecodeError::Malformed(e.to_string())),
    }
}

/// Encodes a clock as an opaque causal context.
pub fn encode_context(clock: &Clock) -> Vec<u8> {
    if clock.is_empty() {
        return Vec::new();
    }
    let mut out = vec![CONTEXT_VERSION];
    // Appending to a Vec cannot fail.
    out.extend(postcard::to_stdvec(clock).unwrap_or_default());
    out
}

/// Decodes a causal context; the empty context is the empty clock.
pub fn decode_context(bytes: &[u8]) -> Result<Clock, DecodeError> {
    match bytes.split_first() {
        None => Ok(Clock::new()),
        Some((&CONTEXT_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))
        }
        Some((&v, _)) => Err(DecodeError::ContextVersion(v)),
    }
}

/// The live values of a register (tombstones left out) and its context.
pub fn read_view(reg: &Register) -> (Vec<Vec<u8>>, Clock) {
    let read = reg.read();
    let live = read
        .val
        .into_iter()
        .filter_map(|v| match v {
            RegValue::Data(d) => Some(d),
            RegValue::Tombstone => None,
        })
        .collect();
    (live, read.add_clock)
}

/// Number of values (live or tombstone) the register holds.
pub fn sibling_count(reg: &Register) -> usize {
    reg.read().val.len()
}

/// Coordinates a write of `value` with client context `ctx` at `node`, whose
/// current state of the key is `local`. Returns the new state (to store and
/// replicate) and the clock of the written value (the context to hand back).
pub fn coordinate_write(
    local: &Register,
    ctx: &Clock,
    node: &NodeId,
    value: RegValue,
) -> (Register, Clock) {
    let lane = pick_lane(local, ctx, node);
    let actor = Actor {
        node: node.clone(),
        lane,
    };
    let local_clock = local.read_ctx().add_clock;
    // Beyond both what this replica and what the client saw, so the new value
    // is never dominated (even if this replica lost a periodic-sync interval).
    let dot = Dot::new(
        actor.clone(),
        local_clock.get(&actor).max(ctx.get(&actor)) + 1,
    );
    let mut clock = ctx.clone();
    clock.apply(dot);
    let mut next = local.clone();
    next.apply(crdts::mvreg::Op::Put {
        clock: clock.clone(),
        val: value,
    });
    (next, clock)
}

/// The lowest lane of `node` whose actor is not the sole entry by which some
/// sibling of `local` exceeds `ctx` (see the module doc).
fn pick_lane(local: &Register, ctx: &Clock, node: &NodeId) -> u32 {
    let mut blocked = std::collections::BTreeSet::new();
    for (clock, _) in sibling_clocks(local) {
        let mut exceeding = clock
            .iter()
            .filter(|d| d.counter > ctx.get(d.actor))
            .map(|d| d.actor.clone());
        if let (Some(only), None) = (exceeding.next(), exceeding.next()) {
            if &only.node == node {
                blocked.insert(only.lane);
            }
        }
    }
    (0..).find(|l| !blocked.contains(l)).unwrap_or(0)
}

/// The clocks of the register's values. MVReg keeps them private, so they are
/// read back through its serde form (a list of (clock, value) pairs).
fn sibling_clocks(reg: &Register) -> Vec<(Clock, RegValue)> {
    #[derive(Deserialize)]
    struct Raw {
        vals: Vec<(Clock, RegValue)>,
    }
    postcard::to_stdvec(reg)
        .ok()
        .and_then(|b| postcard::from_bytes::<Raw>(&b).ok())
        .map(|r| r.vals)
        .unwrap_or_default()
}

/// Merges `other` into `into` (the MVReg CvRDT merge).
pub fn merge(into: &mut Register, other: Register) {
    into.merge(other);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s)
    }

    fn data(s: &str) -> RegValue {
        RegValue::Data(s.as_bytes().to_vec())
    }

    fn live(reg: &Register) -> Vec<String> {
        let mut v: Vec<String> = read_view(reg)
            .0
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_without_context_on_empty_key_is_kept() {
        let (reg, clock) = coordinate_write(&Register::new(), &Clock::new(), &n("a"), data("x"));
        assert_eq!(live(&reg), vec!["x"]);
        assert!(!clock.is_empty());
    }

    #[test]
    fn write_with_context_supersedes_what_it_saw() {
        let (r1, _) = coordinate_write(&Register::new(), &Clock::new(), &n("a"), data("x"));
        let (_, ctx) = read_view(&r1);
        let (r2, _) = coordinate_write(&r1, &ctx, &n("a"), data("y"));
        assert_eq!(live(&r2), vec!["y"]);
    }

    #[test]
    fn write_without_context_on_existing_key_adds_a_sibling() {
        let (r1, _) = coordinate_write(&Register::new(), &Clock::new(), &n("a"), data("x"));
        let (r2, _) = coordinate_write(&r1, &Clock::new(), &n("a"), data("y"));
        assert_eq!(live(&r2), vec!["x", "y"]);
    }

    // The lost update plain node-actor clocks would allow: two writers read
    // the same context and write through the same coordinator.
    #[test]
    fn concurrent_writes_with_one_context_through_one_node_both_survive() {
        let (r1, _) = coordinate_write(&Register::new(), &Clock::new(), &n("a"), data("base"));
        let (_, ctx) = read_view(&r1);
        let (r2, _) = coordinate_write(&r1, &ctx, &n("a"), data("w1"));
        let (r3, _) = coordinate_write(&r2, &ctx, &n("a"), data("w2"));
        let (r4, _) = coordinate_write(&r3, &ctx, &n("a"), data("w3"));
        assert_eq!(live(&r4), vec!["w1", "w2", "w3"]);
        // A write with the merged context resolves them to one value.
        let (_, merged) = read_view(&r4);
        let (r5, _) = coordinate_write(&r4, &merged, &n("a"), data("resolved"));
        assert_eq!(live(&r5), vec!["resolved"]);
    }

    #[test]
    fn concurrent_writes_through_two_nodes_merge_to_siblings() {
        let (base, _) = coordinate_write(&Register::new(), &Clock::new(), &n("a"), data("base"));
        let (_, ctx) = read_view(&base);
        let (ra, _) = coordinate_write(&base, &ctx, &n("a"), data("from-a"));
        let (rb, _) = coordinate_write(&base, &ctx, &n("b"), data("from-b"));
        let mut m = ra.clone();
        merge(&mut m, rb);
        assert_eq!(live(&m), vec!["from-a", "from-b"]);
    }

    #[test]
    fn delete_hides_the_value_and_keeps_a_context() {
        let (r1, _) = coordinate_write(&Register::new(), &Clock::new(), &n("a"), data("x"));
        let (_, ctx) = read_view(&r1);
        let (r2, _) = coordinate_write(&r1, &ctx, &n("a"), RegValue::Tombstone);
        let (vals, ctx2) = read_view(&r2);
        assert!(vals.is_empty());
        assert!(!ctx2.is_empty());
        let (r3, _) = coordinate_write(&r2, &ctx2, &n("b"), data("again"));
        assert_eq!(live(&r3), vec!["again"]);
        assert_eq!(sibling_count(&r3), 1, "the tombstone is superseded");
    }

    #[test]
    fn context_and_record_round_trip_and_reject_garbage() {
        let (r1, clock) = coordinate_write(&Register::new(), &Clock::new(), &n("a"), data("x"));
        assert_eq!(decode_context(&encode_context(&clock)).unwrap(), clock);
        assert_eq!(decode_context(&[]).unwrap(), Clock::new());
        assert!(decode_context(&[9, 1, 2]).is_err());
        assert!(decode_context(&[CONTEXT_VERSION, 0xff, 0xff]).is_err());
        assert_eq!(decode_record(&encode_record(&r1)).unwrap(), r1);
        assert!(decode_record(&[7, 7, 7]).is_err());
    }

    /// A random history: writes at random nodes with random (possibly stale)
    /// contexts, replicated in a random order.
    fn history() -> impl Strategy<Value = Vec<(u8, u8, bool)>> {
        proptest::collection::vec((0u8..3, 0u8..4, any::<bool>()), 1..12)
    }

    fn build(ops: &[(u8, u8, bool)]) -> Vec<Register> {
        // Three replicas; op (node, ctx_from, tombstone): node coordinates with
        // the context of replica ctx_from (3 = empty context).
        let nodes = [n("a"), n("b"), n("c")];
        let mut reps = [Register::new(), Register::new(), Register::new()];
        let mut states = Vec::new();
        for (i, &(node, ctx_from, tomb)) in ops.iter().enumerate() {
            let ctx = if ctx_from == 3 {
                Clock::new()
            } else {
                read_view(&reps[ctx_from as usize]).1
            };
            let v = if tomb {
                RegValue::Tombstone
            } else {
                RegValue::Data(vec![i as u8])
            };
            let (next, _) = coordinate_write(&reps[node as usize], &ctx, &nodes[node as usize], v);
            reps[node as usize] = next.clone();
            states.push(next);
        }
        states
    }

    fn merged(regs: &[Register]) -> Register {
        let mut m = Register::new();
        for r in regs {
            merge(&mut m, r.clone());
        }
        m
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent(ops in history(), seed in any::<u64>()) {
            let states = build(&ops);
            let a = states[seed as usize % states.len()].clone();
            let b = states[(seed / 7) as usize % states.len()].clone();
            let c = states[(seed / 49) as usize % states.len()].clone();
            let mut ab = a.clone(); merge(&mut ab, b.clone());
            let mut ba = b.clone(); merge(&mut ba, a.clone());
            prop_assert_eq!(&ab, &ba);
            let mut ab_c = ab.clone(); merge(&mut ab_c, c.clone());
            let mut bc = b.clone(); merge(&mut bc, c.clone());
            let mut a_bc = a.clone(); merge(&mut a_bc, bc);
            prop_assert_eq!(&ab_c, &a_bc);
            let mut aa = a.clone(); merge(&mut aa, a.clone());
            prop_assert_eq!(&aa, &a);
        }

        #[test]
        fn replicas_converge_in_any_merge_order(ops in history()) {
            let states = build(&ops);
            let forward = merged(&states);
            let mut rev = states.clone();
            rev.reverse();
            prop_assert_eq!(forward, merged(&rev));
        }
    }
}
