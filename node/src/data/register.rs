//! The multi-value register: plain values with dotted version vectors.
//!
//! Pure: no IO, no clock, no randomness; the replica and coordinator call it.
//!
//! # Why not `crdts::MVReg`
//! `MVReg` tags each value with a full vector clock and drops values whose
//! clock is dominated. A write's clock must contain a fresh dot
//! `(actor, counter)`, and a vector-clock entry `actor: k` claims knowledge of
//! *every* dot `actor: 1..k`. So when a coordinator has issued dots the client
//! never saw, the new value dominates — and silently deletes — values the
//! client never read (the lost update that made Riak adopt dotted version
//! vectors). Giving the dot a per-write actor avoids that but grows every
//! clock by one entry per write, forever. We measured an intermediate scheme
//! ("lanes": several actors per node) and a model-based fuzz found lost
//! updates in it too.
//!
//! # The register (Preguiça et al., *Dotted Version Vectors*, 2012)
//! The state of a key is a [`DotContext`] `C` — every event this replica has
//! seen — plus the live values, each tagged with the single dot of the write
//! that made it. A write by actor `a` with the client's context `K`:
//! 1. takes the dot `d = (a, max(C[a], K[a]) + 1)`: fresh, because `C` holds
//!    every dot `a` ever issued for this key (actors are per node and per
//!    durable data directory, see [`Actor`]);
//! 2. removes exactly the values whose dots `K` contains;
//! 3. adds the new value under `d`, and sets `C := C ∪ K ∪ {d}`.
//!
//! The write's own context is `K ∪ {d}`, exactly: it covers what the client
//! saw plus its own write, never a sibling it did not see.
//!
//! Merge (the causal "dot-fun" join): keep a value if both sides have it or
//! the other side has never seen its dot; join the contexts. It is
//! commutative, associative and idempotent, and a value disappears only when
//! some write whose context contained its dot reached the replica (all
//! property-tested below against a reference model).

use crdts::{CmRDT, CvRDT, VClock};
use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The identity that issues dots: a node, in one epoch of its data.
///
/// A node's epoch is drawn at random when its data directory is created (and
/// at every start under the periodic sync policy, which can lose the last
/// writes of a crash): a node that restarts with lost or wiped data therefore
/// never reissues a dot it issued before.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The coordinating node.
    pub node: NodeId,
    /// The epoch of its data directory.
    pub epoch: u64,
}

impl Actor {
    /// This actor as a client-visible version entry.
    pub fn id(&self) -> kvorum_client::ActorId {
        kvorum_client::ActorId {
            node: self.node.to_string(),
            epoch: self.epoch,
        }
    }
}

/// One event: the `counter`-th write coordinated by `actor`.
pub type Dot = (Actor, u64);

/// A register value: bytes, or the tombstone a delete writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegValue {
    /// A live value.
    Data(#[serde(with = "kvorum_client::bytes")] Vec<u8>),
    /// A delete, and when its coordinator made it (Unix milliseconds; a
    /// guard for reaping, never its trigger).
    Tombstone {
        /// When the delete was coordinated.
        deleted_ms: u64,
    },
    /// A live value with a time to live: it reads as absent from
    /// `expires_ms` on, by the reading node's clock, on every replica and
    /// every copy of it (the time is absolute, stamped by the coordinator).
    /// A variant of its own, so records without expiry keep their bytes.
    Expiring {
        /// The value.
        #[serde(with = "kvorum_client::bytes")]
        value: Vec<u8>,
        /// When it expires (Unix milliseconds at the coordinator's clock).
        expires_ms: u64,
    },
}

impl RegValue {
    /// The value, if it is live at `now_ms`.
    pub fn live_at(&self, now_ms: u64) -> Option<&Vec<u8>> {
        match self {
            RegValue::Data(d) => Some(d),
            RegValue::Expiring { value, expires_ms } if now_ms < *expires_ms => Some(value),
            RegValue::Expiring { .. } | RegValue::Tombstone { .. } => None,
        }
    }

    /// When this value stopped (or stops) being live: a delete's time, an
    /// expiry; `None` for a value without one.
    pub fn dead_from(&self) -> Option<u64> {
        match self {
            RegValue::Data(_) => None,
            RegValue::Tombstone { deleted_ms } => Some(*deleted_ms),
            RegValue::Expiring { expires_ms, .. } => Some(*expires_ms),
        }
    }
}

/// A set of dots: a version vector (every actor's events `1..=n`) plus the
/// dots seen out of order (the "cloud"). Kept compact: no cloud dot is
/// covered by, or adjacent to, the vector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DotContext {
    vv: VClock<Actor>,
    cloud: BTreeSet<Dot>,
}

/// Why a context or record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The context was not issued by this cluster's protocol version.
    #[error("unknown causal context version {0}")]
    ContextVersion(u8),
    /// The bytes are not a well-formed context or record.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The state breaks an invariant (a value whose dot its context lacks).
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
    /// A counter in the context is so large the next dot would overflow.
    #[error("causal context counter out of range")]
    CounterOverflow,
}

impl DotContext {
    /// The empty context (a blind write).
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries of the context: actors of its version vector plus dots
    /// outside it.
    pub fn entries(&self) -> usize {
        self.vv.dots.len() + self.cloud.len()
    }

    /// True when no dot is in the context.
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.cloud.is_empty()
    }

    /// Whether the event `dot` is in the context.
    pub fn contains(&self, dot: &Dot) -> bool {
        dot.1 <= self.vv.get(&dot.0) || self.cloud.contains(dot)
    }

    /// The highest counter of `actor` in the context.
    fn max_counter(&self, actor: &Actor) -> u64 {
        let cloud = self
            .cloud
            .range((actor.clone(), 0)..=(actor.clone(), u64::MAX))
            .next_back();
        self.vv.get(actor).max(cloud.map_or(0, |d| d.1))
    }

    /// The context as a client-visible version (sessions compare them).
    pub fn version(&self) -> kvorum_client::Version {
        kvorum_client::Version::Dots {
            vv: self.vv.dots.iter().map(|(a, n)| (a.id(), *n)).collect(),
            cloud: self.cloud.iter().map(|(a, n)| (a.id(), *n)).collect(),
        }
    }

    /// Adds one dot.
    pub fn insert(&mut self, dot: Dot) {
        self.cloud.insert(dot);
        self.compact();
    }

    /// Adds every dot of `other`.
    pub fn join(&mut self, other: &DotContext) {
        self.vv.merge(other.vv.clone());
        self.cloud.extend(other.cloud.iter().cloned());
        self.compact();
    }

    fn compact(&mut self) {
        // The cloud is ordered by (actor, counter): one pass folds each
        // actor's run of consecutive dots into the vector.
        let cloud = std::mem::take(&mut self.cloud);
        for (actor, counter) in cloud {
            let have = self.vv.get(&actor);
            if counter == have + 1 {
                self.vv.apply(crdts::Dot::new(actor, counter));
            } else if counter > have {
                self.cloud.insert((actor, counter));
            }
        }
    }
}

/// The replicated state of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    context: DotContext,
    values: BTreeMap<Dot, RegValue>,
}

impl Register {
    /// The empty register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event this register has seen (a planted bug writes with it).
    #[cfg(feature = "test-hooks")]
    pub fn context(&self) -> &DotContext {
        &self.context
    }

    /// Applies a write by `actor` of `value` that replaces what `ctx` covers.
    /// Returns the write's own context (`ctx` plus the new dot).
    /// `floor` is the highest counter `actor` ever issued on a key whose
    /// record was since removed (tombstone reaping): the new dot lies above
    /// it, so no dot is ever issued twice even when a reaped key's record is
    /// gone here but its context lives on at another replica.
    pub fn write(
        &mut self,
        actor: &Actor,
        ctx: &DotContext,
        value: RegValue,
        floor: u64,
    ) -> Result<DotContext, DecodeError> {
        if floor > 0 {
            // Every dot of `actor` up to the floor on this key is either
            // already in this context or was never issued for this key, or
            // died with a reaped tombstone: claiming them supersedes nothing
            // live, and keeps the context compact (the new dot is contiguous).
            self.context.vv.apply(crdts::Dot::new(actor.clone(), floor));
            self.context.compact();
        }
        let counter = self
            .context
            .max_counter(actor)
            .max(ctx.max_counter(actor))
            .checked_add(1)
            .ok_or(DecodeError::CounterOverflow)?;
        let dot = (actor.clone(), counter);
        self.values.retain(|d, _| !ctx.contains(d));
        self.values.insert(dot.clone(), value);
        self.context.join(ctx);
        self.context.insert(dot.clone());
        let mut own = ctx.clone();
        own.insert(dot);
        Ok(own)
    }

    /// The values live at `now_ms` (tombstones and expired values left
    /// out), in dot order, and the context that covers everything this
    /// state has seen.
    pub fn read(&self, now_ms: u64) -> (Vec<Vec<u8>>, &DotContext) {
        let live = self
            .values
            .values()
            .filter_map(|v| v.live_at(now_ms).cloned())
            .collect();
        (live, &self.context)
    }

    /// The highest counter of `actor` this state has seen.
    pub fn own_counter(&self, actor: &Actor) -> u64 {
        self.context.max_counter(actor)
    }

    /// When every value held is a tombstone or expires, the time from which
    /// none is live (the latest delete or expiry, possibly still ahead): a
    /// candidate for reaping from then on.
    pub fn dead_since(&self) -> Option<u64> {
        let mut latest = None;
        for v in self.values.values() {
            latest = latest.max(Some(v.dead_from()?));
        }
        latest
    }

    /// Turns every expiring value into one without expiry (the planted bug
    /// `ExpiryDropped`).
    #[cfg(feature = "test-hooks")]
    pub fn drop_expiry(&mut self) {
        for v in self.values.values_mut() {
            if let RegValue::Expiring { value, .. } = v {
                *v = RegValue::Data(std::mem::take(value));
            }
        }
    }

    /// Whether some value held has a time to live.
    pub fn has_expiring(&self) -> bool {
        self.values
            .values()
            .any(|v| matches!(v, RegValue::Expiring { .. }))
    }

    /// The dots of the values expired at `now_ms`: a write covers them, so
    /// it replaces expired values instead of keeping them as siblings.
    pub fn expired_dots(&self, now_ms: u64) -> Vec<Dot> {
        self.values
            .iter()
            .filter(|(_, v)| matches!(v, RegValue::Expiring { expires_ms, .. } if now_ms >= *expires_ms))
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Values held, live or tombstone.
    pub fn value_count(&self) -> usize {
        self.values.len()
    }

    /// Checks the invariant every state this code builds keeps: each value's
    /// dot is in the context. A state from a peer that breaks it is refused.
    pub fn validate(&self) -> Result<(), DecodeError> {
        match self.values.keys().find(|d| !self.context.contains(d)) {
            Some(d) => Err(DecodeError::Inconsistent(format!(
                "value {d:?} outside its context"
            ))),
            None => Ok(()),
        }
    }
}

impl CvRDT for Register {
    type Validation = std::convert::Infallible;

    fn validate_merge(&self, _other: &Self) -> Result<(), Self::Validation> {
        Ok(())
    }

    /// Keeps a value if both sides hold it or the other side never saw its
    /// dot (so it was not removed there); joins the contexts.
    fn merge(&mut self, other: Self) {
        let Register { context, values } = other;
        self.values
            .retain(|d, _| values.contains_key(d) || !context.contains(d));
        for (d, v) in values {
            if !self.context.contains(&d) {
                self.values.insert(d, v);
            }
        }
        self.context.join(&context);
    }
}

/// Version byte that starts every encoded causal context.
const CONTEXT_VERSION: u8 = 1;

/// Encodes a context as the opaque bytes clients hold.
pub fn encode_context(ctx: &DotContext) -> Vec<u8> {
    if ctx.is_empty() {
        return Vec::new();
    }
    let size = postcard::experimental::serialized_size(ctx).unwrap_or(0);
    let mut out = Vec::with_capacity(1 + size);
    out.push(CONTEXT_VERSION);
    // Appending plain data to a Vec cannot fail.
    postcard::to_extend(ctx, out).unwrap_or_else(|_| vec![CONTEXT_VERSION])
}

/// Decodes a client's context; the empty byte string is the empty context.
pub fn decode_context(bytes: &[u8]) -> Result<DotContext, DecodeError> {
    match bytes.split_first() {
        None => Ok(DotContext::new()),
        Some((&CONTEXT_VERSION, rest)) => {
            let mut ctx: DotContext =
                postcard::from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
            ctx.compact();
            Ok(ctx)
        }
        Some((&v, _)) => Err(DecodeError::ContextVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn actor(s: &str) -> Actor {
        Actor {
            node: NodeId::new(s),
            epoch: 7,
        }
    }

    fn data(s: &str) -> RegValue {
        RegValue::Data(s.as_bytes().to_vec())
    }

    fn live(reg: &Register) -> Vec<String> {
        let mut v: Vec<String> = reg
            .read(0)
            .0
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        v.sort();
        v
    }

    fn merged(a: &Register, b: &Register) -> Register {
        let mut m = a.clone();
        m.merge(b.clone());
        m
    }

    #[test]
    fn write_with_a_context_supersedes_exactly_what_it_saw() {
        let mut r = Register::new();
        r.write(&actor("a"), &DotContext::new(), data("x"), 0)
            .unwrap();
        let seen = r.read(0).1.clone();
        r.write(&actor("a"), &DotContext::new(), data("blind"), 0)
            .unwrap();
        r.write(&actor("a"), &seen, data("y"), 0).unwrap();
        assert_eq!(live(&r), vec!["blind", "y"]);
    }

    #[test]
    fn concurrent_writes_with_one_context_through_one_node_all_survive() {
        let mut r = Register::new();
        r.write(&actor("a"), &DotContext::new(), data("base"), 0)
            .unwrap();
        let ctx = r.read(0).1.clone();
        for w in ["w1", "w2", "w3"] {
            r.write(&actor("a"), &ctx, data(w), 0).unwrap();
        }
        assert_eq!(live(&r), vec!["w1", "w2", "w3"]);
        let all = r.read(0).1.clone();
        r.write(&actor("a"), &all, data("resolved"), 0).unwrap();
        assert_eq!(live(&r), vec!["resolved"]);
        assert_eq!(r.value_count(), 1);
    }

    // The counter-example the lane scheme failed (review of the first
    // version): a value no client saw must survive.
    #[test]
    fn a_write_never_removes_a_value_its_client_did_not_see() {
        let (n, m, p) = (actor("n"), actor("m"), actor("p"));
        let empty = DotContext::new();
        let mut rn = Register::new();
        rn.write(&n, &empty, data("P"), 0).unwrap();
        let (mut rm, mut rp) = (rn.clone(), rn.clone());
        let p_ctx = rn.read(0).1.clone();
        rm.write(&m, &p_ctx, data("R"), 0).unwrap(); // acknowledged at m only
        let q_ctx = rm.write(&m, &empty, data("Q"), 0).unwrap(); // B's context: just Q
        rp.write(&p, &p_ctx, data("T"), 0).unwrap();
        rn.merge(rp.clone());
        rn.write(&n, &q_ctx, data("S"), 0).unwrap(); // B replaces Q, saw nothing else
        let all = merged(&merged(&rn, &rm), &rp);
        assert_eq!(live(&all), vec!["R", "S", "T"]);
    }

    // Review finding: after a reap removed a key's record on node B while a
    // replica still holds the tombstone, B must not reissue the tombstone's
    // dots, or that replica drops B's next (acknowledged) write.
    #[test]
    fn writes_after_a_reap_never_reuse_a_dot() {
        let b = actor("b");
        let mut at_b = Register::new();
        let ctx = at_b.write(&b, &DotContext::new(), data("v"), 0).unwrap();
        at_b.write(&b, &ctx, RegValue::Tombstone { deleted_ms: 1 }, 0)
            .unwrap();
        let at_c = at_b.clone(); // C still holds the tombstone
        let floor = at_b.own_counter(&b); // what B's reap persisted
        for (floor, survives) in [(floor, true), (0, false)] {
            let mut fresh = Register::new(); // B's record is gone
            fresh
                .write(&b, &DotContext::new(), data("new"), floor)
                .unwrap();
            let mut c = at_c.clone();
            c.merge(fresh);
            assert_eq!(live(&c) == vec!["new"], survives, "floor {floor}");
        }
    }

    #[test]
    fn the_floor_keeps_contexts_compact() {
        let a = actor("a");
        let mut r = Register::new();
        let mut ctx = DotContext::new();
        for i in 0..5 {
            ctx = r.write(&a, &ctx, data(&i.to_string()), 1000).unwrap();
        }
        assert!(r.context.cloud.is_empty(), "{:?}", r.context);
        assert_eq!(r.own_counter(&a), 1005);
    }

    #[test]
    fn a_writes_own_context_covers_only_it_and_what_it_replaced() {
        let mut r = Register::new();
        r.write(&actor("a"), &DotContext::new(), data("x"), 0)
            .unwrap();
        let mine = r
            .write(&actor("a"), &DotContext::new(), data("y"), 0)
            .unwrap();
        r.write(&actor("a"), &mine, data("y2"), 0).unwrap();
        assert_eq!(live(&r), vec!["x", "y2"]);
    }

    #[test]
    fn delete_hides_the_value_keeps_a_context_and_can_be_superseded() {
        let mut r = Register::new();
        r.write(&actor("a"), &DotContext::new(), data("x"), 0)
            .unwrap();
        let ctx = r.read(0).1.clone();
        r.write(&actor("a"), &ctx, RegValue::Tombstone { deleted_ms: 5 }, 0)
            .unwrap();
        assert_eq!(r.dead_since(), Some(5));
        let (vals, ctx2) = r.read(0);
        assert!(vals.is_empty());
        let ctx2 = ctx2.clone();
        r.write(&actor("b"), &ctx2, data("again"), 0).unwrap();
        assert_eq!(live(&r), vec!["again"]);
        assert_eq!(r.value_count(), 1, "the tombstone is superseded");
    }

    #[test]
    fn hostile_contexts_and_states_are_refused() {
        let a = actor("a");
        let mut ctx = DotContext::new();
        ctx.insert((a.clone(), u64::MAX));
        let mut r = Register::new();
        assert_eq!(
            r.write(&a, &ctx, data("x"), 0),
            Err(DecodeError::CounterOverflow)
        );
        assert_eq!(r, Register::new(), "a refused write changes nothing");
        let mut bad = Register::new();
        bad.values.insert((a, 3), data("x"));
        assert!(bad.validate().is_err());
        assert!(decode_context(&[9, 1, 2]).is_err());
        assert!(decode_context(&[CONTEXT_VERSION, 0xff, 0xff]).is_err());
        assert!(crate::data::value::decode_record(&[7, 7, 7]).is_err());
    }

    #[test]
    fn context_and_record_round_trip() {
        let mut r = Register::new();
        let own = r
            .write(&actor("a"), &DotContext::new(), data("x"), 0)
            .unwrap();
        assert_eq!(decode_context(&encode_context(&own)).unwrap(), own);
        assert_eq!(decode_context(&[]).unwrap(), DotContext::new());
        let state: crate::data::value::State = crate::data::value::Body::Register(r).into();
        let bytes = crate::data::value::encode_record(&state);
        assert_eq!(crate::data::value::decode_record(&bytes).unwrap(), state);
    }

    #[test]
    fn contexts_compact_out_of_order_dots() {
        let a = actor("a");
        let mut c = DotContext::new();
        c.insert((a.clone(), 3));
        c.insert((a.clone(), 1));
        assert!(c.contains(&(a.clone(), 3)) && !c.contains(&(a.clone(), 2)));
        c.insert((a.clone(), 2));
        assert!(c.cloud.is_empty());
        assert_eq!(c.vv.get(&a), 3);
    }

    // ---- model-based property tests ----------------------------------------

    /// One step of a random history on 3 replicas.
    #[derive(Debug, Clone)]
    enum Step {
        /// Replica `at` coordinates a write whose context comes from a read
        /// of the replicas in `read_from` (bit mask; 0 = blind write).
        Write { at: usize, read_from: u8 },
        /// Replica `to` merges the state of replica `from`.
        Sync { from: usize, to: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0usize..3, 0u8..8).prop_map(|(at, read_from)| Step::Write { at, read_from }),
            (0usize..3, 0usize..3).prop_map(|(from, to)| Step::Sync { from, to }),
        ]
    }

    /// Reference model: what each replica has *seen* (write ids) and what each
    /// write's context saw. A value is alive at a replica iff the replica saw
    /// it and saw no write whose context saw it.
    #[derive(Clone, Default)]
    struct Model {
        seen: [BTreeSet<usize>; 3],
    }

    fn alive(seen: &BTreeSet<usize>, saw: &[BTreeSet<usize>]) -> BTreeSet<usize> {
        seen.iter()
            .copied()
            .filter(|v| !seen.iter().any(|w| saw[*w].contains(v)))
            .collect()
    }

    fn ids(reg: &Register) -> BTreeSet<usize> {
        reg.read(0)
            .0
            .iter()
            .map(|d| usize::from_be_bytes(d.as_slice().try_into().unwrap()))
            .collect()
    }

    fn run(steps: &[Step]) -> Result<(), TestCaseError> {
        let actors = [actor("a"), actor("b"), actor("c")];
        let mut reps = [Register::new(), Register::new(), Register::new()];
        let mut model = Model::default();
        let mut saw: Vec<BTreeSet<usize>> = Vec::new();
        for s in steps {
            match *s {
                Step::Write { at, read_from } => {
                    let id = saw.len();
                    let (mut read, mut read_seen) = (Register::new(), BTreeSet::new());
                    for (i, rep) in reps.iter().enumerate() {
                        if read_from & (1 << i) != 0 {
                            read.merge(rep.clone());
                            read_seen.extend(model.seen[i].iter().copied());
                        }
                    }
                    // The read shows exactly the model's live values.
                    prop_assert_eq!(ids(&read), alive(&read_seen, &saw));
                    let ctx = read.read(0).1.clone();
                    let value = RegValue::Data(id.to_be_bytes().to_vec());
                    reps[at].write(&actors[at], &ctx, value, 0).unwrap();
                    saw.push(read_seen.clone());
                    model.seen[at].extend(read_seen);
                    model.seen[at].insert(id);
                }
                Step::Sync { from, to } => {
                    let src = reps[from].clone();
                    reps[to].merge(src);
                    let src_seen = model.seen[from].clone();
                    model.seen[to].extend(src_seen);
                }
            }
            for (i, rep) in reps.iter().enumerate() {
                prop_assert!(rep.validate().is_ok());
                prop_assert_eq!(ids(rep), alive(&model.seen[i], &saw), "replica {}", i);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Dynamo §4.4 with DVVs: after any history of writes (with contexts
        /// from reads of any replicas) and partial syncs, every replica holds
        /// exactly the values it saw that no write it saw had seen.
        #[test]
        fn replicas_hold_exactly_the_unsuperseded_values(steps in proptest::collection::vec(step(), 1..40)) {
            run(&steps)?;
        }

        #[test]
        fn merge_is_commutative_associative_idempotent(steps in proptest::collection::vec(step(), 1..30), pick in any::<[usize; 3]>()) {
            let actors = [actor("a"), actor("b"), actor("c")];
            let mut reps = [Register::new(), Register::new(), Register::new()];
            let mut states = vec![Register::new()];
            for s in &steps {
                match *s {
                    Step::Write { at, read_from } => {
                        let mut read = Register::new();
                        for (i, rep) in reps.iter().enumerate() {
                            if read_from & (1 << i) != 0 { read.merge(rep.clone()); }
                        }
                        let ctx = read.read(0).1.clone();
                        reps[at].write(&actors[at], &ctx, RegValue::Data(vec![states.len() as u8]), 0).unwrap();
                    }
                    Step::Sync { from, to } => { let s = reps[from].clone(); reps[to].merge(s); }
                }
                states.extend(reps.iter().cloned());
            }
            let [a, b, c] = pick.map(|i| states[i % states.len()].clone());
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a);
        }
    }
}
