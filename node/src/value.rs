//! The replicated state of one key, for every bucket type, and how an update
//! is applied to it. Pure: no IO, no clock (the caller passes the time).
//!
//! | bucket type | state | update at the coordinating replica |
//! |---|---|---|
//! | `register` | [`Register`] (dotted version vectors, siblings) | [`Register::write`] |
//! | `counter` | `crdts::PNCounter` (one entry per actor) | `inc_many` / `dec_many` |
//! | `set` | `crdts::Orswot` (observed-remove, no tombstones) | add with a fresh dot; remove with the client's clock |
//! | `map` | `crdts::Map` of [`Field`]s keyed by (name, kind) | one map dot per field operation |
//! | `lww` | `crdts::LWWReg` marked by a [`Stamp`] | the coordinator's wall clock, above the stored stamp |
//!
//! Every path that moves state between nodes (read merge, read repair,
//! hinted handoff, anti-entropy) calls [`State::merge`], the type's CRDT
//! join: commutative, associative and idempotent (property-tested below).
//!
//! Records are encoded canonically (`crdts` keeps `HashMap`s, whose order
//! varies): equal states give equal bytes, so anti-entropy compares hashes
//! of stored bytes.

use crate::register::{Actor, DecodeError, Dot, DotContext, RegValue, Register};
use crdts::{
    ctx::RmCtx, lwwreg::LWWReg, map::Map, orswot::Orswot, pncounter::PNCounter, CmRDT, CvRDT,
    ResetRemove, VClock,
};
use kvorum_client::proto::Limit;
use kvorum_client::{BucketType, DataOp, DataValue, FieldKind, FieldValue, MapOp, MapValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A set of byte strings.
pub type SetState = Orswot<Vec<u8>, Actor>;
/// A map of typed fields.
pub type MapState = Map<FieldKey, Field, Actor>;
/// A last-writer-wins register; `None` is a delete.
pub type LwwState = LWWReg<Option<Vec<u8>>, Stamp>;

/// The marker of an LWW write: the coordinator's wall clock in Unix
/// milliseconds (raised above the stamp it already holds for the key), then
/// the coordinating actor to break ties. Unique per write, so the merge is
/// commutative; its risk is clock skew (see docs/data-types.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Unix milliseconds at the coordinator.
    pub ms: u64,
    /// The coordinator (`None` only in the empty register).
    pub actor: Option<Actor>,
}

/// A map field's identity: its name and its type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FieldKey {
    /// Field name.
    pub name: String,
    /// Field type.
    pub kind: FieldKind,
}

/// A counter inside a map. Per actor: the map dot of its latest increment
/// and its totals, so a field removal can forget exactly the actors whose
/// increments the remover saw (`crdts::PNCounter` counts its own dots, which
/// a map's removal clock cannot address).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldCounter {
    entries: BTreeMap<Actor, CounterEntry>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CounterEntry {
    dot: u64,
    inc: u64,
    dec: u64,
}

impl FieldCounter {
    fn apply(&mut self, actor: Actor, dot: u64, by: i64) {
        let e = self.entries.entry(actor).or_default();
        if dot > e.dot {
            e.dot = dot;
            if by >= 0 {
                e.inc = e.inc.saturating_add(by.unsigned_abs());
            } else {
                e.dec = e.dec.saturating_add(by.unsigned_abs());
            }
        }
    }

    fn merge(&mut self, other: FieldCounter) {
        for (a, o) in other.entries {
            let e = self.entries.entry(a).or_default();
            // An actor's later state includes its earlier one; equal dots
            // hold equal totals (max keeps the join commutative regardless).
            if (o.dot, o.inc, o.dec) > (e.dot, e.inc, e.dec) {
                *e = o;
            }
        }
    }

    fn reset_remove(&mut self, clock: &VClock<Actor>) {
        self.entries.retain(|a, e| e.dot > clock.get(a));
    }

    fn value(&self) -> i64 {
        let sum: i128 = self
            .entries
            .values()
            .map(|e| i128::from(e.inc) - i128::from(e.dec))
            .sum();
        clamp(sum)
    }
}

/// An LWW register inside a map. Per actor: its latest write (the map dot
/// it took, its stamp, its value); the field's value is the write with the
/// highest stamp. Kept per actor and map dot, like [`FieldCounter`], so a
/// field removal forgets exactly the writes the remover saw: a single
/// `LWWReg` cannot forget its value, so after a removal concurrent with a
/// write, replicas kept the removed value or the concurrent one depending on
/// the order of their merges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldLww {
    writes: BTreeMap<Actor, LwwWrite>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct LwwWrite {
    dot: u64,
    stamp: Stamp,
    value: Vec<u8>,
}

impl FieldLww {
    /// The winning write: highest stamp (stamps are unique per write; the
    /// value breaks a tie deterministically all the same).
    fn latest(&self) -> Option<&LwwWrite> {
        self.writes
            .values()
            .max_by(|a, b| (&a.stamp, &a.value).cmp(&(&b.stamp, &b.value)))
    }

    fn apply(&mut self, actor: Actor, write: LwwWrite) {
        let mut one = BTreeMap::new();
        one.insert(actor, write);
        self.merge(FieldLww { writes: one });
    }

    fn merge(&mut self, other: FieldLww) {
        for (a, o) in other.writes {
            match self.writes.get_mut(&a) {
                // An actor's later write (higher dot) supersedes its earlier.
                Some(e) if *e >= o => {}
                Some(e) => *e = o,
                None => {
                    self.writes.insert(a, o);
                }
            }
        }
    }

    fn reset_remove(&mut self, clock: &VClock<Actor>) {
        self.writes.retain(|a, w| w.dot > clock.get(a));
    }
}

/// The value of one map field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Field {
    /// Not yet written (the map's default for a new field).
    #[default]
    Empty,
    /// A counter.
    Counter(FieldCounter),
    /// A set.
    Set(SetState),
    /// An enable-wins flag: enabled while it holds an unremoved enable dot.
    Flag(Orswot<(), Actor>),
    /// An LWW register.
    Lww(FieldLww),
    /// A multi-value register.
    Register(Register),
}

/// An update of one field, made at the coordinator with the map's dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldOp {
    /// Add `by` as `actor`'s increment with map dot `dot`.
    Counter {
        /// The coordinator.
        actor: Actor,
        /// The map dot's counter.
        dot: u64,
        /// Amount.
        by: i64,
    },
    /// A set operation, and the map dot it takes.
    Set(crdts::Dot<Actor>, crdts::orswot::Op<Vec<u8>, Actor>),
    /// A flag operation (add or remove of the unit member), and its map dot.
    Flag(crdts::Dot<Actor>, crdts::orswot::Op<(), Actor>),
    /// An LWW write by `actor` with map dot `dot`.
    Lww {
        /// The coordinator.
        actor: Actor,
        /// The map dot's counter.
        dot: u64,
        /// The write's stamp.
        stamp: Stamp,
        /// The value.
        value: Vec<u8>,
    },
    /// A register write under the map's dot.
    Register {
        /// The map dot.
        dot: Dot,
        /// What the writer observed.
        ctx: DotContext,
        /// The value.
        value: Vec<u8>,
    },
}

impl Field {
    fn kind_rank(&self) -> u8 {
        match self {
            Field::Empty => 0,
            Field::Counter(_) => 1,
            Field::Set(_) => 2,
            Field::Flag(_) => 3,
            Field::Lww(_) => 4,
            Field::Register(_) => 5,
        }
    }

    fn value(&self) -> Option<FieldValue> {
        Some(match self {
            Field::Empty => return None,
            Field::Counter(c) => FieldValue::Counter(c.value()),
            Field::Set(s) => FieldValue::Set(sorted_members(s)),
            Field::Flag(f) => FieldValue::Flag(!f.read().val.is_empty()),
            Field::Lww(r) => {
                FieldValue::Lww(r.latest().map(|w| w.value.clone()).unwrap_or_default())
            }
            Field::Register(r) => FieldValue::Register(r.read().0),
        })
    }
}

impl CmRDT for Field {
    type Op = FieldOp;
    type Validation = std::convert::Infallible;

    fn validate_op(&self, _op: &FieldOp) -> Result<(), Self::Validation> {
        Ok(())
    }

    fn apply(&mut self, op: FieldOp) {
        if matches!(self, Field::Empty) {
            *self = match &op {
                FieldOp::Counter { .. } => Field::Counter(FieldCounter::default()),
                FieldOp::Set(..) => Field::Set(Orswot::new()),
                FieldOp::Flag(..) => Field::Flag(Orswot::new()),
                FieldOp::Lww { .. } => Field::Lww(FieldLww::default()),
                FieldOp::Register { .. } => Field::Register(Register::new()),
            };
        }
        match (self, op) {
            (Field::Counter(c), FieldOp::Counter { actor, dot, by }) => c.apply(actor, dot, by),
            (Field::Set(s), FieldOp::Set(dot, op)) => apply_set_op(s, dot, op),
            (Field::Flag(f), FieldOp::Flag(dot, op)) => apply_set_op(f, dot, op),
            (
                Field::Lww(r),
                FieldOp::Lww {
                    actor,
                    dot,
                    stamp,
                    value,
                },
            ) => r.apply(actor, LwwWrite { dot, stamp, value }),
            (Field::Register(r), FieldOp::Register { dot, ctx, value }) => {
                // The map entry's clock now covers every dot of this actor
                // up to the write's (map dots are issued in order, by the
                // replica that holds all of them), and the register's
                // context must too: the map's merge leaves it to the
                // register to drop a stale copy of a value it no longer
                // holds (a field removed and written again). The floor
                // claims those dots without removing any value (concurrent
                // writes through one actor stay siblings); the write then
                // takes exactly the map dot.
                let (actor, counter) = dot;
                let floor = counter.saturating_sub(1);
                // Cannot fail: the new counter is the map dot's.
                let _ = r.write(&actor, &ctx, RegValue::Data(value), floor);
            }
            // A field's kind is part of its key, so ops always match it.
            _ => {}
        }
    }
}

impl CvRDT for Field {
    type Validation = std::convert::Infallible;

    fn validate_merge(&self, _other: &Self) -> Result<(), Self::Validation> {
        Ok(())
    }

    fn merge(&mut self, other: Field) {
        match (&mut *self, other) {
            (_, Field::Empty) => {}
            (Field::Counter(a), Field::Counter(b)) => a.merge(b),
            (Field::Set(a), Field::Set(b)) => a.merge(b),
            (Field::Flag(a), Field::Flag(b)) => a.merge(b),
            (Field::Lww(a), Field::Lww(b)) => a.merge(b),
            (Field::Register(a), Field::Register(b)) => a.merge(b),
            // Empty on our side, or (never, kinds are keys) two kinds: a
            // fixed order keeps the join deterministic.
            (mine, theirs) => {
                if theirs.kind_rank() > mine.kind_rank() {
                    *mine = theirs;
                }
            }
        }
    }
}

impl ResetRemove<Actor> for Field {
    fn reset_remove(&mut self, clock: &VClock<Actor>) {
        match self {
            Field::Empty => {}
            Field::Counter(c) => c.reset_remove(clock),
            Field::Lww(r) => r.reset_remove(clock),
            Field::Set(s) => s.reset_remove(clock),
            Field::Flag(f) => f.reset_remove(clock),
            Field::Register(r) => r.reset_remove(clock),
        }
    }
}

/// Applies a set (or flag) operation of a map field. The map dot enters the
/// set's clock even for a remove (as an add of nothing), so the set's clock
/// always equals its map entry's clock, which `crdts::Map`'s reset-remove
/// merge relies on: otherwise a field removal that covers the set's dots but
/// not the remove's map dot keeps the entry but empties the set's clock, and
/// a stale copy of the field merged later brings the removed members back.
fn apply_set_op<M: std::hash::Hash + Eq + Clone>(
    s: &mut Orswot<M, Actor>,
    dot: crdts::Dot<Actor>,
    op: crdts::orswot::Op<M, Actor>,
) {
    s.apply(op);
    s.apply(crdts::orswot::Op::Add {
        dot,
        members: Vec::new(),
    });
}

/// Joins two LWW registers: the higher stamp, and on equal stamps the higher
/// value, so the join stays commutative even if a stamp is issued twice (a
/// coordinator whose copy of the key was reaped has no stamp to go above: a
/// clock set back can make it reissue the reaped delete's stamp).
fn lww_join(a: &mut LwwState, b: LwwState) {
    if (&b.marker, &b.val) > (&a.marker, &a.val) {
        *a = b;
    }
}

/// The replicated state of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// A multi-value register.
    Register(Register),
    /// A PN counter.
    Counter(PNCounter<Actor>),
    /// An observed-remove set.
    Set(SetState),
    /// A map of fields.
    Map(MapState),
    /// A last-writer-wins register.
    Lww(LwwState),
}

/// Why an update or merge was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The stored or incoming state has another type than the bucket's.
    #[error("state of type {found} where {expected} was expected")]
    TypeMismatch {
        /// The bucket's type.
        expected: BucketType,
        /// The state's type.
        found: BucketType,
    },
    /// The update does not apply to the key's type.
    #[error("a {op} does not apply to a {bucket_type} key")]
    WrongOp {
        /// The key's type.
        bucket_type: BucketType,
        /// The operation.
        op: &'static str,
    },
    /// The client's context is malformed.
    #[error(transparent)]
    Context(#[from] DecodeError),
    /// The result would exceed a configured bound.
    #[error("{what} too large: {size}{unit} (max {max})", unit = what.unit())]
    TooLarge {
        /// The bound.
        what: Limit,
        /// The size it would reach.
        size: u64,
        /// The bound's value.
        max: u64,
    },
}

/// Bounds on one key's state, checked when a client update is applied
/// (never when merging a peer's state: refusing that would stop
/// convergence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueLimits {
    /// Values (siblings) of a register.
    pub max_siblings: usize,
    /// Members of a set, or of one set field of a map.
    pub max_set_members: usize,
    /// Fields of a map.
    pub max_map_fields: usize,
    /// Bytes of the encoded state.
    pub max_state_bytes: usize,
}

/// A client update, as the coordinating replica applies it.
#[derive(Debug, Clone)]
pub enum Update {
    /// A register write (or delete: a tombstone value).
    Register {
        /// What the client read.
        ctx: DotContext,
        /// The value or tombstone.
        value: RegValue,
    },
    /// An LWW write; `None` deletes.
    Lww(Option<Vec<u8>>),
    /// A counter, set or map update.
    Data {
        /// The operation.
        op: DataOp,
        /// What the client read (removes act on it).
        ctx: VClock<Actor>,
    },
}

/// What a read of a state shows a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Register: live values and the context to write with.
    Register(Vec<Vec<u8>>, DotContext),
    /// LWW: the value, if not deleted.
    Lww(Option<Vec<u8>>),
    /// Counter, set or map: the value (`None`: no data) and its clock.
    Data(Option<DataValue>, VClock<Actor>),
}

impl State {
    /// The empty state of a bucket type.
    pub fn empty(t: BucketType) -> State {
        match t {
            BucketType::Register => State::Register(Register::new()),
            BucketType::Counter => State::Counter(PNCounter::new()),
            BucketType::Set => State::Set(Orswot::new()),
            BucketType::Map => State::Map(Map::new()),
            BucketType::Lww => State::Lww(LWWReg {
                val: None,
                marker: Stamp::default(),
            }),
        }
    }

    /// The bucket type this state belongs to.
    pub fn bucket_type(&self) -> BucketType {
        match self {
            State::Register(_) => BucketType::Register,
            State::Counter(_) => BucketType::Counter,
            State::Set(_) => BucketType::Set,
            State::Map(_) => BucketType::Map,
            State::Lww(_) => BucketType::Lww,
        }
    }

    /// Joins `other` into this state (the type's CRDT merge). States of two
    /// types are refused and nothing changes.
    pub fn merge(&mut self, other: State) -> Result<(), ValueError> {
        match (self, other) {
            (State::Register(a), State::Register(b)) => a.merge(b),
            (State::Counter(a), State::Counter(b)) => a.merge(b),
            (State::Set(a), State::Set(b)) => a.merge(b),
            (State::Map(a), State::Map(b)) => a.merge(b),
            (State::Lww(a), State::Lww(b)) => lww_join(a, b),
            (a, b) => {
                return Err(ValueError::TypeMismatch {
                    expected: a.bucket_type(),
                    found: b.bucket_type(),
                })
            }
        }
        Ok(())
    }

    /// Checks a state received from a peer.
    pub fn validate(&self) -> Result<(), DecodeError> {
        match self {
            State::Register(r) => r.validate(),
            _ => Ok(()),
        }
    }

    /// Applies a client's update as `me` (the coordinating replica) at
    /// `now_ms`; `floor` is the register dot floor (see [`Register::write`]).
    /// Returns the context to hand the client: the register write's own
    /// context, or empty for the other types (an update's result must not
    /// claim values the client never read). A refused update changes
    /// nothing.
    pub fn coordinate(
        &mut self,
        me: &Actor,
        update: Update,
        floor: u64,
        now_ms: u64,
        limits: &ValueLimits,
    ) -> Result<Vec<u8>, ValueError> {
        // Applied to a copy: the bounds are checked on the result.
        let mut next = self.clone();
        let context = next.apply_update(me, update, floor, now_ms, limits)?;
        *self = next;
        Ok(context)
    }

    fn apply_update(
        &mut self,
        me: &Actor,
        update: Update,
        floor: u64,
        now_ms: u64,
        limits: &ValueLimits,
    ) -> Result<Vec<u8>, ValueError> {
        let context = match (&mut *self, update) {
            (State::Register(reg), Update::Register { ctx, value }) => {
                let own = reg.write(me, &ctx, value, floor)?;
                let count = reg.value_count();
                if count > limits.max_siblings {
                    return Err(too_large(Limit::Siblings, count, limits.max_siblings));
                }
                crate::register::encode_context(&own)
            }
            (State::Lww(reg), Update::Lww(value)) => {
                let ms = now_ms.max(reg.marker.ms.saturating_add(1));
                reg.update(
                    value,
                    Stamp {
                        ms,
                        actor: Some(me.clone()),
                    },
                );
                Vec::new()
            }
            (
                State::Counter(c),
                Update::Data {
                    op: DataOp::Increment(by),
                    ..
                },
            ) => {
                let op = if by >= 0 {
                    c.inc_many(me.clone(), by.unsigned_abs())
                } else {
                    c.dec_many(me.clone(), by.unsigned_abs())
                };
                c.apply(op);
                Vec::new()
            }
            (
                State::Set(s),
                Update::Data {
                    op: DataOp::SetUpdate { add, remove },
                    ctx,
                },
            ) => {
                if !remove.is_empty() {
                    s.apply(s.rm_all(remove, RmCtx { clock: ctx }));
                }
                if !add.is_empty() {
                    let add_ctx = s.read_ctx().derive_add_ctx(me.clone());
                    s.apply(s.add_all(add, add_ctx));
                }
                let count = s.read().val.len();
                if count > limits.max_set_members {
                    return Err(too_large(Limit::SetMembers, count, limits.max_set_members));
                }
                Vec::new()
            }
            (
                State::Map(m),
                Update::Data {
                    op: DataOp::MapUpdate(ops),
                    ctx,
                },
            ) => {
                for op in ops {
                    apply_map_op(m, me, op, &ctx, now_ms);
                }
                let fields = m.len().val;
                if fields > limits.max_map_fields {
                    return Err(too_large(Limit::MapFields, fields, limits.max_map_fields));
                }
                for e in m.values() {
                    if let Field::Set(s) = e.val {
                        let count = s.read().val.len();
                        if count > limits.max_set_members {
                            return Err(too_large(
                                Limit::SetMembers,
                                count,
                                limits.max_set_members,
                            ));
                        }
                    }
                }
                Vec::new()
            }
            (state, update) => {
                return Err(ValueError::WrongOp {
                    bucket_type: state.bucket_type(),
                    op: match update {
                        Update::Register { .. } => "register write",
                        Update::Lww(_) => "lww write",
                        Update::Data { op, .. } => op.name(),
                    },
                })
            }
        };
        let size = encode_record(self).len();
        if size > limits.max_state_bytes {
            return Err(too_large(Limit::State, size, limits.max_state_bytes));
        }
        Ok(context)
    }

    /// What a client sees of this state.
    pub fn read(&self) -> Reading {
        match self {
            State::Register(r) => {
                let (values, ctx) = r.read();
                Reading::Register(values, ctx.clone())
            }
            State::Lww(r) => Reading::Lww(r.val.clone()),
            State::Counter(c) => {
                // A counter key exists once it has any entry.
                let v = (*c != PNCounter::new()).then(|| DataValue::Counter(counter_value(c)));
                Reading::Data(v, VClock::new())
            }
            State::Set(s) => {
                let members = sorted_members(s);
                let clock = s.clock();
                let v = (!clock.is_empty()).then_some(DataValue::Set(members));
                Reading::Data(v, clock)
            }
            State::Map(m) => {
                let clock = m.read_ctx().add_clock;
                let fields = m
                    .iter()
                    .filter_map(|e| {
                        let (k, f) = e.val;
                        f.value().map(|v| (k.name.clone(), k.kind, v))
                    })
                    .collect();
                let v = (!clock.is_empty()).then_some(DataValue::Map(MapValue { fields }));
                Reading::Data(v, clock)
            }
        }
    }

    /// When the state holds only deletes (register tombstones, or an LWW
    /// delete), the time of the latest one: a candidate for reaping.
    pub fn tombstone_only(&self) -> Option<u64> {
        match self {
            State::Register(r) => r.tombstone_only(),
            State::Lww(r) if r.val.is_none() && r.marker.ms > 0 => Some(r.marker.ms),
            _ => None,
        }
    }

    /// The highest register dot counter `actor` issued on this key.
    pub fn own_counter(&self, actor: &Actor) -> u64 {
        match self {
            State::Register(r) => r.own_counter(actor),
            _ => 0,
        }
    }
}

fn too_large(what: Limit, size: usize, max: usize) -> ValueError {
    ValueError::TooLarge {
        what,
        size: size as u64,
        max: max as u64,
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The counter's value, clamped to `i64` (its `BigInt` printed and parsed:
/// `crdts` does not re-export the `num` types).
fn counter_value(c: &PNCounter<Actor>) -> i64 {
    let text = c.read().to_string();
    match text.parse::<i64>() {
        Ok(v) => v,
        Err(_) if text.starts_with('-') => i64::MIN,
        Err(_) => i64::MAX,
    }
}

fn sorted_members(s: &SetState) -> Vec<Vec<u8>> {
    let mut m: Vec<Vec<u8>> = s.read().val.into_iter().collect();
    m.sort();
    m
}

/// Applies one field operation of a map update. Each takes a fresh map dot.
/// Removes inside a field act on what the client observed *and* this
/// replica holds (the field's own clock), so they never wait in a deferred
/// list for dots of other fields that the field will never see.
fn apply_map_op(m: &mut MapState, me: &Actor, op: MapOp, ctx: &VClock<Actor>, now_ms: u64) {
    let (name, kind) = op.field();
    let key = FieldKey {
        name: name.to_string(),
        kind,
    };
    let current = m.get(&key).val;
    let add_ctx = m.read_ctx().derive_add_ctx(me.clone());
    let field_op = match op {
        MapOp::RemoveField { .. } => {
            let rm = m.rm(key, RmCtx { clock: ctx.clone() });
            m.apply(rm);
            return;
        }
        MapOp::Increment { by, .. } => FieldOp::Counter {
            actor: add_ctx.dot.actor.clone(),
            dot: add_ctx.dot.counter,
            by,
        },
        MapOp::Add { members, .. } => FieldOp::Set(
            add_ctx.dot.clone(),
            crdts::orswot::Op::Add {
                dot: add_ctx.dot.clone(),
                members,
            },
        ),
        MapOp::Remove { members, .. } => match current {
            Some(Field::Set(s)) => FieldOp::Set(
                add_ctx.dot.clone(),
                crdts::orswot::Op::Rm {
                    clock: observed(ctx, &s.clock()),
                    members,
                },
            ),
            _ => return, // nothing observed to remove
        },
        MapOp::Flag { enable: true, .. } => FieldOp::Flag(
            add_ctx.dot.clone(),
            crdts::orswot::Op::Add {
                dot: add_ctx.dot.clone(),
                members: vec![()],
            },
        ),
        MapOp::Flag { enable: false, .. } => match current {
            Some(Field::Flag(f)) => FieldOp::Flag(
                add_ctx.dot.clone(),
                crdts::orswot::Op::Rm {
                    clock: observed(ctx, &f.clock()),
                    members: vec![()],
                },
            ),
            _ => return,
        },
        MapOp::SetLww { value, .. } => {
            let held = match &current {
                Some(Field::Lww(r)) => r.latest().map_or(0, |w| w.stamp.ms),
                _ => 0,
            };
            FieldOp::Lww {
                actor: add_ctx.dot.actor.clone(),
                dot: add_ctx.dot.counter,
                stamp: Stamp {
                    ms: now_ms.max(held.saturating_add(1)),
                    actor: Some(me.clone()),
                },
                value,
            }
        }
        MapOp::SetRegister { value, .. } => {
            // A context claiming this replica's own future dots (never
            // issued: only this replica issues them) is cut below the new
            // dot, which the register write must take.
            let mut ctx = ctx.clone();
            if ctx.get(me) >= add_ctx.dot.counter {
                ctx.dots.insert(me.clone(), add_ctx.dot.counter - 1);
            }
            FieldOp::Register {
                dot: (add_ctx.dot.actor.clone(), add_ctx.dot.counter),
                ctx: DotContext::from_clock(ctx),
                value,
            }
        }
    };
    let up = m.update(key, add_ctx, |_, _| field_op);
    m.apply(up);
}

/// The part of a field's clock the client's context covers: per actor, the
/// lower of the two counters (a greatest lower bound; `VClock::intersection`
/// keeps only the actors whose counters are *equal*, which drops every actor
/// whose later map dots went to other fields).
fn observed(ctx: &VClock<Actor>, field: &VClock<Actor>) -> VClock<Actor> {
    let mut c = ctx.clone();
    c.glb(field);
    c
}

// ---------------------------------------------------------------------------
// Records and contexts

/// Persisted form of a key's state. The enum tag is the format version.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum StoredRecord {
    /// Register-only records (before bucket types).
    V1(Register),
    /// Any bucket type.
    V2(State),
}

/// [`StoredRecord::V2`] by reference, so encoding does not copy the state
/// (serde writes a reference exactly like the value).
#[derive(Serialize)]
enum StoredRecordRef<'a> {
    #[allow(dead_code)] // only here to give `V2` its tag
    V1(&'a Register),
    V2(&'a State),
}

/// Encodes a key's state for storage, canonically: equal states give equal
/// bytes whatever order their `HashMap`s iterate in.
pub fn encode_record(state: &State) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail.
    let plain = postcard::to_stdvec(&StoredRecordRef::V2(state)).unwrap_or_default();
    match state {
        // No hash maps inside: already canonical.
        State::Register(_) | State::Counter(_) | State::Lww(_) => plain,
        State::Set(_) | State::Map(_) => match postcard::from_bytes::<canon::Record>(&plain) {
            Ok(mut mirror) => {
                mirror.sort();
                postcard::to_stdvec(&mirror).unwrap_or(plain)
            }
            // The mirror types are tested to match; fall back to the plain form.
            Err(_) => plain,
        },
    }
}

/// Decodes a stored record.
pub fn decode_record(bytes: &[u8]) -> Result<State, DecodeError> {
    match postcard::from_bytes::<StoredRecord>(bytes) {
        Ok(StoredRecord::V1(r)) => Ok(State::Register(r)),
        Ok(StoredRecord::V2(s)) => Ok(s),
        Err(e) => Err(DecodeError::Malformed(e.to_string())),
    }
}

/// Version byte of a set or map context (register contexts start with 1).
const CLOCK_CONTEXT_VERSION: u8 = 2;

/// Encodes a set or map read's clock as the opaque bytes clients hold.
pub fn encode_clock(clock: &VClock<Actor>) -> Vec<u8> {
    if clock.is_empty() {
        return Vec::new();
    }
    let mut out = vec![CLOCK_CONTEXT_VERSION];
    out.extend(postcard::to_stdvec(clock).unwrap_or_default());
    out
}

/// Decodes a set or map context; the empty byte string is the empty clock.
pub fn decode_clock(bytes: &[u8]) -> Result<VClock<Actor>, DecodeError> {
    match bytes.split_first() {
        None => Ok(VClock::new()),
        Some((&CLOCK_CONTEXT_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))
        }
        Some((&v, _)) => Err(DecodeError::ContextVersion(v)),
    }
}

/// Mirrors of the stored types with every hash map as a sortable list. They
/// serialize exactly like the originals (postcard writes a map as a length
/// and its pairs, a list of pairs the same way), so sorting them gives the
/// canonical bytes of the original.
mod canon {
    use super::{Actor, CounterEntry, FieldLww, Register, Stamp};
    use crdts::{lwwreg::LWWReg, pncounter::PNCounter, VClock};
    use kvorum_client::FieldKind;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    pub(super) enum Record {
        V1(Register),
        V2(State),
    }

    #[derive(Serialize, Deserialize)]
    pub(super) enum State {
        Register(Register),
        Counter(PNCounter<Actor>),
        Set(Orswot<Vec<u8>>),
        Map(Map),
        Lww(LWWReg<Option<Vec<u8>>, Stamp>),
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Orswot<M> {
        clock: VClock<Actor>,
        entries: Vec<(M, VClock<Actor>)>,
        deferred: Vec<(VClock<Actor>, Vec<M>)>,
    }

    /// A `FieldKey` (name, kind), as serialized.
    type Key = (String, FieldKind);

    #[derive(Serialize, Deserialize)]
    pub(super) struct Map {
        clock: VClock<Actor>,
        entries: Vec<(Key, Entry)>,
        deferred: Vec<(VClock<Actor>, Vec<Key>)>,
    }

    #[derive(Serialize, Deserialize)]
    struct Entry {
        clock: VClock<Actor>,
        val: Field,
    }

    #[derive(Serialize, Deserialize)]
    struct FieldCounter {
        entries: BTreeMap<Actor, CounterEntry>,
    }

    #[derive(Serialize, Deserialize)]
    enum Field {
        Empty,
        Counter(FieldCounter),
        Set(Orswot<Vec<u8>>),
        Flag(Orswot<()>),
        Lww(FieldLww),
        Register(Register),
    }

    fn clock_bytes(c: &VClock<Actor>) -> Vec<u8> {
        postcard::to_stdvec(c).unwrap_or_default()
    }

    impl<M: Ord> Orswot<M> {
        fn sort(&mut self) {
            self.entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, members) in &mut self.deferred {
                members.sort();
            }
            self.deferred.sort_by_cached_key(|(c, _)| clock_bytes(c));
        }
    }

    impl Record {
        pub(super) fn sort(&mut self) {
            let Record::V2(state) = self else { return };
            match state {
                State::Set(s) => s.sort(),
                State::Map(m) => {
                    // Entries come from a BTreeMap: already in key order.
                    for (_, e) in &mut m.entries {
                        match &mut e.val {
                            Field::Set(s) => s.sort(),
                            Field::Flag(f) => f.sort(),
                            _ => {}
                        }
                    }
                    m.deferred.sort_by_cached_key(|(c, _)| clock_bytes(c));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
