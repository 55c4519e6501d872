//! The replicated state of one key, for every bucket type, and how an update
//! is applied to it. Pure: no IO, no clock (the caller passes the time).
//!
//! | bucket type | state | update at the coordinating replica |
//! |---|---|---|
//! | `register` | [`Register`] (dotted version vectors, siblings) | [`Register::write`] |
//! | `counter` | `crdts::PNCounter` (one entry per actor) | `inc_many` / `dec_many` |
//! | `set` | `crdts::Orswot` (observed-remove, no tombstones) | add with a fresh dot; remove with the client's clock |
//! | `map` | [`MapState`]: a causal-context observed-remove map of typed fields keyed by (name, kind) | one map dot per field operation; removals drop exactly the dots the client's context covers |
//! | `lww` | `crdts::LWWReg` marked by a [`Stamp`] | the coordinator's wall clock, above the stored stamp |
//!
//! Every path that moves state between nodes (read merge, read repair,
//! hinted handoff, anti-entropy) calls [`State::merge`], the type's CRDT
//! join: commutative, associative and idempotent (property-tested below).
//!
//! Records are encoded canonically (`crdts` sets keep `HashMap`s, whose
//! order varies, and are re-sorted; maps hold only ordered collections):
//! equal states give equal bytes, so anti-entropy compares hashes of stored
//! bytes.
//!
//! # Layout
//! - this file: [`Body`] (a key's data by type), its updates, merges and
//!   reads, and the bounds and errors of an update.
//! - `life`: [`State`], the data with its lifetime ([`Life`]): expiry,
//!   restarts after expiry, reads at a time, reaping candidates.
//! - [`map`]: the `map` type's state, [`MapState`].
//! - `record`: the stored record of a state (versions, migrations,
//!   canonical bytes) and the clock contexts of set and map reads; its
//!   functions are re-exported here.

mod life;
pub mod map;
mod record;

pub use life::{Life, State};
pub use map::{FieldKey, MapState};
pub(crate) use record::LegacyState;
pub use record::{decode_clock, decode_record, encode_clock, encode_record, record_is_current};

use crate::data::register::{Actor, DecodeError, DotContext, RegValue, Register};
use crdts::{
    ctx::RmCtx, lwwreg::LWWReg, orswot::Orswot, pncounter::PNCounter, CmRDT, CvRDT, VClock,
};
use kvorum_client::proto::Limit;
use kvorum_client::{ActorId, BucketType, DataOp, DataValue, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A set of byte strings.
pub type SetState = Orswot<Vec<u8>, Actor>;
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

/// Joins two LWW registers: the higher stamp, and on equal stamps the higher
/// value, so the join stays commutative even if a stamp is issued twice (a
/// coordinator whose copy of the key was reaped has no stamp to go above: a
/// clock set back can make it reissue the reaped delete's stamp).
fn lww_join(a: &mut LwwState, b: LwwState) {
    if (&b.marker, &b.val) > (&a.marker, &a.val) {
        *a = b;
    }
}

/// The data of one key, by bucket type (its lifetime is [`Life`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
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
    /// An increment (or decrement) would take this replica's running total
    /// of the counter past what it can count (2^64 - 1 in each direction).
    #[error("the counter's total here is {total}: an increment by {by} would overflow it")]
    CounterOverflow {
        /// The coordinating replica's running total in the increment's
        /// direction.
        total: u64,
        /// The increment asked for.
        by: i64,
    },
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

/// Bounds on one key's state, checked when a client update is applied,
/// and (scaled by [`PEER_BOUND_FACTOR`]) on every state a peer sends.
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

/// How far beyond the client bounds a state from a peer may be. Client
/// updates through different coordinators can each reach a bound before
/// their states merge, so an honest merged state may exceed it; a peer
/// merge is refused only beyond this factor (a node certificate cannot make
/// a replica store arbitrarily large states, and an honest cluster never
/// reaches it: it would take that many coordinators each filling the bound
/// with different values concurrently).
pub const PEER_BOUND_FACTOR: usize = 4;

impl ValueLimits {
    /// The bounds a state from a peer is held to: these, times
    /// [`PEER_BOUND_FACTOR`].
    pub fn for_peers(&self) -> ValueLimits {
        let f = |v: usize| v.saturating_mul(PEER_BOUND_FACTOR);
        ValueLimits {
            max_siblings: f(self.max_siblings),
            max_set_members: f(self.max_set_members),
            max_map_fields: f(self.max_map_fields),
            max_state_bytes: f(self.max_state_bytes),
        }
    }
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

impl Body {
    /// The empty data of a bucket type.
    pub fn empty(t: BucketType) -> Body {
        match t {
            BucketType::Register => Body::Register(Register::new()),
            BucketType::Counter => Body::Counter(PNCounter::new()),
            BucketType::Set => Body::Set(Orswot::new()),
            BucketType::Map => Body::Map(MapState::new()),
            BucketType::Lww => Body::Lww(LWWReg {
                val: None,
                marker: Stamp::default(),
            }),
        }
    }

    /// The bucket type this state belongs to.
    pub fn bucket_type(&self) -> BucketType {
        match self {
            Body::Register(_) => BucketType::Register,
            Body::Counter(_) => BucketType::Counter,
            Body::Set(_) => BucketType::Set,
            Body::Map(_) => BucketType::Map,
            Body::Lww(_) => BucketType::Lww,
        }
    }

    /// Joins `other` into this state (the type's CRDT merge). States of two
    /// types are refused and nothing changes.
    pub fn merge(&mut self, other: Body) -> Result<(), ValueError> {
        match (self, other) {
            (Body::Register(a), Body::Register(b)) => a.merge(b),
            (Body::Counter(a), Body::Counter(b)) => a.merge(b),
            (Body::Set(a), Body::Set(b)) => a.merge(b),
            (Body::Map(a), Body::Map(b)) => a.merge(b),
            (Body::Lww(a), Body::Lww(b)) => lww_join(a, b),
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
            Body::Register(r) => r.validate(),
            Body::Map(m) => m.validate(),
            _ => Ok(()),
        }
    }

    /// Applies a client's update as `me` at `now_ms` (see
    /// [`State::coordinate_versioned`]); a register value with
    /// `expires_ms` is written as an expiring value, and a register write
    /// covers the values expired at `now_ms` (it replaces them).
    fn apply_update(
        &mut self,
        me: &Actor,
        update: Update,
        floor: u64,
        now_ms: u64,
        expires_ms: Option<u64>,
    ) -> Result<(Vec<u8>, Version), ValueError> {
        let written = match (&mut *self, update) {
            (Body::Register(reg), Update::Register { mut ctx, value }) => {
                for dot in reg.expired_dots(now_ms) {
                    ctx.insert(dot);
                }
                let value = match (value, expires_ms) {
                    (RegValue::Data(value), Some(expires_ms)) => {
                        RegValue::Expiring { value, expires_ms }
                    }
                    (value, _) => value,
                };
                #[cfg(feature = "test-hooks")]
                let ctx = if crate::util::plant::planted(crate::util::plant::Bug::LostUpdate) {
                    reg.context().clone()
                } else {
                    ctx
                };
                let own = reg.write(me, &ctx, value, floor)?;
                (crate::data::register::encode_context(&own), own.version())
            }
            (Body::Lww(reg), Update::Lww(value)) => {
                let ms = now_ms.max(reg.marker.ms.saturating_add(1));
                reg.update(
                    value,
                    Stamp {
                        ms,
                        actor: Some(me.clone()),
                    },
                );
                let version = Version::Stamp {
                    ms,
                    actor: Some(me.id()),
                };
                (Vec::new(), version)
            }
            (
                Body::Counter(c),
                Update::Data {
                    op: DataOp::Increment(by),
                    ..
                },
            ) => {
                // The actor's running total is a u64 dot counter: one that
                // would wrap makes an op the counter ignores, acknowledged
                // but lost. Refused instead.
                let (inc, dec) = counter_totals(c);
                let held = if by >= 0 { &inc } else { &dec };
                let total = held.get(&me.id()).copied().unwrap_or(0);
                if total.checked_add(by.unsigned_abs()).is_none() {
                    return Err(ValueError::CounterOverflow { total, by });
                }
                let op = if by >= 0 {
                    c.inc_many(me.clone(), by.unsigned_abs())
                } else {
                    c.dec_many(me.clone(), by.unsigned_abs())
                };
                c.apply(op);
                let (inc, dec) = counter_totals(c);
                let own = |t: &BTreeMap<ActorId, u64>| {
                    t.iter()
                        .filter(|(a, _)| **a == me.id())
                        .map(|(a, n)| (a.clone(), *n))
                        .collect()
                };
                let version = Version::Counter {
                    inc: own(&inc),
                    dec: own(&dec),
                };
                (Vec::new(), version)
            }
            (
                Body::Set(s),
                Update::Data {
                    op: DataOp::SetUpdate { add, remove },
                    ctx,
                },
            ) => {
                if !remove.is_empty() {
                    s.apply(s.rm_all(remove, RmCtx { clock: ctx }));
                }
                // Adds take a fresh dot; an update that only removes takes
                // one too (an add of no member), so its version shows it.
                let add_ctx = s.read_ctx().derive_add_ctx(me.clone());
                s.apply(s.add_all(add, add_ctx));
                (Vec::new(), own_dots(me, &s.clock()))
            }
            (
                Body::Map(m),
                Update::Data {
                    op: DataOp::MapUpdate(ops),
                    ctx,
                },
            ) => {
                m.update(me, ops, ctx, now_ms);
                (Vec::new(), own_dots(me, m.clock()))
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
        Ok(written)
    }

    /// Checks this state against `limits`: siblings, set members, map
    /// fields, encoded bytes. Client updates are checked with the node's
    /// limits, states from peers with [`ValueLimits::for_peers`].
    pub fn check_bounds(&self, limits: &ValueLimits) -> Result<(), ValueError> {
        match self {
            Body::Register(reg) => {
                let count = reg.value_count();
                if count > limits.max_siblings {
                    return Err(too_large(Limit::Siblings, count, limits.max_siblings));
                }
            }
            Body::Set(s) => {
                let count = s.read().val.len();
                if count > limits.max_set_members {
                    return Err(too_large(Limit::SetMembers, count, limits.max_set_members));
                }
            }
            Body::Map(m) => {
                let fields = m.field_count();
                if fields > limits.max_map_fields {
                    return Err(too_large(Limit::MapFields, fields, limits.max_map_fields));
                }
                let count = m.max_set_members();
                if count > limits.max_set_members {
                    return Err(too_large(Limit::SetMembers, count, limits.max_set_members));
                }
            }
            Body::Counter(_) | Body::Lww(_) => {}
        }
        // The record is this encoding behind a one-byte format tag; sized
        // without building it (a peer merge checks every incoming state).
        let size = postcard::experimental::serialized_size(self)
            .map_or(usize::MAX, |s| s.saturating_add(1));
        if size > limits.max_state_bytes {
            return Err(too_large(Limit::State, size, limits.max_state_bytes));
        }
        Ok(())
    }

    /// The version of this state: what it has seen, in the form sessions
    /// compare (see [`Version`]). Monotone: a merge's version dominates the
    /// versions of both sides.
    pub fn version(&self) -> Version {
        match self {
            Body::Register(r) => r.read(0).1.version(),
            Body::Counter(c) => {
                let (inc, dec) = counter_totals(c);
                Version::Counter { inc, dec }
            }
            Body::Set(s) => clock_version(&s.clock()),
            Body::Map(m) => clock_version(m.clock()),
            Body::Lww(r) => Version::Stamp {
                ms: r.marker.ms,
                actor: r.marker.actor.as_ref().map(Actor::id),
            },
        }
    }

    /// What a client sees of this data at `now_ms` (a counter without
    /// a restart floor; see [`State::read`]).
    fn read(&self, now_ms: u64) -> Reading {
        match self {
            Body::Register(r) => {
                let (values, ctx) = r.read(now_ms);
                Reading::Register(values, ctx.clone())
            }
            Body::Lww(r) => Reading::Lww(r.val.clone()),
            Body::Counter(c) => {
                // A counter key exists once it has any entry.
                let v = (*c != PNCounter::new()).then(|| DataValue::Counter(counter_value(c)));
                Reading::Data(v, VClock::new())
            }
            Body::Set(s) => {
                let members = sorted_members(s);
                let clock = s.clock();
                let v = (!clock.is_empty()).then_some(DataValue::Set(members));
                Reading::Data(v, clock)
            }
            Body::Map(m) => {
                let clock = m.clock().clone();
                let v = (!clock.is_empty()).then(|| DataValue::Map(m.value()));
                Reading::Data(v, clock)
            }
        }
    }

    /// The highest register dot counter `actor` issued on this key.
    pub fn own_counter(&self, actor: &Actor) -> u64 {
        match self {
            Body::Register(r) => r.own_counter(actor),
            _ => 0,
        }
    }
}

/// A clock as a version of dots.
fn clock_version(clock: &VClock<Actor>) -> Version {
    Version::Dots {
        vv: clock.dots.iter().map(|(a, n)| (a.id(), *n)).collect(),
        cloud: Default::default(),
    }
}

/// The version of an update of a set or map by `me`: its own latest event.
/// A state whose clock has it descends from the coordinator's state as of
/// the update (only `me` issues its events, one after another on its copy).
fn own_dots(me: &Actor, clock: &VClock<Actor>) -> Version {
    Version::Dots {
        vv: [(me.id(), clock.get(me))].into(),
        cloud: Default::default(),
    }
}

/// A counter's per-actor totals of increments and decrements (`crdts`
/// keeps them private: they are read through the counter's serde form,
/// which is two version vectors).
fn counter_totals(c: &PNCounter<Actor>) -> (BTreeMap<ActorId, u64>, BTreeMap<ActorId, u64>) {
    #[derive(Deserialize)]
    struct GCounterForm {
        inner: VClock<Actor>,
    }
    #[derive(Deserialize)]
    struct PNCounterForm {
        p: GCounterForm,
        n: GCounterForm,
    }
    let ids = |v: VClock<Actor>| v.dots.into_iter().map(|(a, n)| (a.id(), n)).collect();
    // Both forms are plain data; the round trip is tested to match.
    postcard::to_stdvec(c)
        .ok()
        .and_then(|b| postcard::from_bytes::<PNCounterForm>(&b).ok())
        .map(|f| (ids(f.p.inner), ids(f.n.inner)))
        .unwrap_or_default()
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

#[cfg(test)]
pub(crate) mod tests;
