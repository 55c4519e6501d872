//! The `map` bucket type: a causal-context observed-remove map (the map of
//! Almeida, Shoker and Baquero, *Delta State Replicated Data Types*, 2018,
//! as in Riak's `riak_dt_map` and Akka's `ORMap`), with state-based merges.
//!
//! # State
//! - `clock`: every map dot this state has seen. A map dot `(actor, n)` is
//!   the `n`-th field operation the actor coordinated on this key; every
//!   field operation takes one (a whole-field removal's is held by no
//!   field).
//! - `fields`: per field (name, kind), the dots that still support it and
//!   its contents, each content tagged with the dot of the operation that
//!   made it (a set member with the dots of its adds, a register value with
//!   the dot of its write, …).
//! - `pending`: removals whose context holds dots this state has not seen
//!   yet (see below).
//!
//! **Why a version vector and no dot cloud.** Dots of one actor are always
//! contiguous in a stored state: only the actor's own node issues them,
//! each as one more than the highest it has seen, on a record that holds
//! every dot it issued (map records are never reaped, and a node whose data
//! is lost comes back as a new actor, see [`Actor`]); and replicas exchange
//! whole states, whose clocks are unions of such prefixes. Dot clouds are
//! needed for delta propagation (a delta's context is not a prefix), which
//! Kvorum does not do. A client's context is the clock of a read, so it is
//! a version vector too.
//!
//! # Merge (the dot-store join)
//! In each field, a dot is kept if both sides hold it, or if one side holds
//! it and the other side's clock has not seen it (a dot the other side has
//! seen but no longer holds was removed there); the clocks are joined.
//! Then every pending removal drops the dots it covers, pending clocks are
//! cut to the actors where they are still ahead of the clock, and fields
//! left without dots disappear. The result is a normal form, so equal
//! states are equal values with equal bytes.
//!
//! # Operations (at the coordinating replica, with the client's context `K`)
//! - *remove field*: drops every dot of the field (support and contents)
//!   that `K` covers. Nothing else: an update the context did not see keeps
//!   the field, with only that update's effect.
//! - *set remove* / *flag disable*: drops the member's add dots (the
//!   flag's enable dots) that `K` covers, and adds its dot to the field's
//!   support (so the field stays, empty or disabled).
//! - *register write*: drops the values whose dots `K` covers, adds the
//!   value under the new dot.
//! - *add*, *enable*, *increment*, *lww write*: add their dot (the context
//!   plays no part).
//! - *remove field* takes a dot too, that no field holds (as if a field had
//!   been added and removed): every operation advances the clock, so a
//!   session can tell from a state's clock whether it has seen an update.
//!
//! A removal whose context holds dots the coordinator has not seen yet (the
//! client read another replica) also records the context under
//! `pending[(field, scope)]`: when those dots arrive by merge, the ones of
//! that field and scope are dropped. It must be recorded per field: merging
//! `K` into the map's own clock instead would also drop the unseen updates
//! of *other* fields that the client read and did not remove. A pending
//! entry is a pure function of the removals' contexts and the clock (the
//! join of the contexts, cut at the clock), so the merge stays commutative,
//! associative and idempotent; once the clock covers it, it is gone.
//!
//! # Compaction (what keeps the metadata bounded)
//! An actor's new operation on a field replaces its own older dot of the
//! same role: its support dot, its add dot of each member it adds, its
//! enable dot, its counter entry (whose totals it carries forward, as
//! Riak's embedded counter does); an LWW write replaces every write the
//! coordinator holds of the field (they carry lower stamps). This never
//! changes what a removal can observe: a context covers an actor's dots up
//! to a counter, so whatever covers the new dot covers the actor's older
//! one; and it comes from a replica that received the coordinator's whole
//! state with the new dot, so it covers the LWW writes the new one
//! replaced. The one exception is the counter: an increment concurrent with
//! a removal of the field, coordinated by an actor whose earlier increments
//! the removal saw, brings those back with it (the actor's entry is one
//! total). Keeping each increment apart instead would grow the state with
//! every increment, forever.
//!
//! The map of record format 2, and its conversion to this one, are in
//! `legacy` (`map/legacy.rs`).

pub(crate) mod legacy;

use super::{clamp, Stamp};
use crate::data::register::{Actor, DecodeError, Dot, RegValue};
use crdts::{CmRDT, CvRDT, VClock};
use kvorum_client::{FieldKind, FieldValue, MapOp, MapValue};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A map field's identity: its name and its type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FieldKey {
    /// Field name.
    pub name: String,
    /// Field type.
    pub kind: FieldKind,
}

/// Dots, each with a payload.
pub type DotFun<V> = BTreeMap<Dot, V>;
/// A set of dots.
pub type DotSet = DotFun<()>;

/// Whether `clock` covers `dot`.
fn seen(clock: &VClock<Actor>, dot: &Dot) -> bool {
    dot.1 <= clock.get(&dot.0)
}

/// The dot-store join: keeps a dot both sides hold, or one side holds and
/// the other side's clock never saw. (A dot both hold carries one payload;
/// if two ever differed, the larger is kept, so the join stays
/// deterministic.)
fn join_dots<V: Ord>(
    mine: &mut DotFun<V>,
    my_clock: &VClock<Actor>,
    theirs: DotFun<V>,
    their_clock: &VClock<Actor>,
) {
    mine.retain(|d, _| theirs.contains_key(d) || !seen(their_clock, d));
    for (d, v) in theirs {
        match mine.get_mut(&d) {
            Some(held) => {
                if v > *held {
                    *held = v;
                }
            }
            None => {
                if !seen(my_clock, &d) {
                    mine.insert(d, v);
                }
            }
        }
    }
}

/// Replaces `actor`'s dots in `dots` by `dot` (compaction: see the module
/// docs).
fn replace_own(dots: &mut DotSet, dot: &Dot) {
    dots.retain(|d, _| d.0 != dot.0);
    dots.insert(dot.clone(), ());
}

/// A counter entry: an actor's increments and decrements, as of its dot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Totals {
    inc: u64,
    dec: u64,
}

/// One LWW write of a field: its stamp, then its value (the order in which
/// writes win).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LwwWrite {
    stamp: Stamp,
    value: Vec<u8>,
}

/// The contents of a field, each tagged with map dots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldData {
    /// Per actor, the dot of its latest increment of the field and its
    /// totals since the field was last removed at its coordinator.
    Counter(DotFun<Totals>),
    /// Per member, the dots of its adds (per actor, the latest).
    Set(BTreeMap<Vec<u8>, DotSet>),
    /// The dots of its enables (per actor, the latest); enabled while any.
    Flag(DotSet),
    /// Writes not superseded at their coordinator; the highest stamp wins.
    Lww(DotFun<LwwWrite>),
    /// The values not superseded by a write that saw them (siblings).
    Register(DotFun<Vec<u8>>),
}

/// What a removal acts on inside a field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// The whole field: support and contents (a field removal).
    Field,
    /// The add dots of one member of a set field (a set remove).
    Member(Vec<u8>),
    /// The enables of a flag field (a disable) or the values of a register
    /// field (a write).
    Values,
}

/// A removal's target: a field, and what of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    key: FieldKey,
    scope: Scope,
}

/// One field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldState {
    /// Per actor, the dot of its latest operation on the field: the field
    /// exists while any is live (so an update that removes members, or
    /// disables the flag, keeps the field, empty).
    support: DotSet,
    data: FieldData,
}

impl FieldData {
    fn empty(kind: FieldKind) -> Self {
        match kind {
            FieldKind::Counter => FieldData::Counter(DotFun::new()),
            FieldKind::Set => FieldData::Set(BTreeMap::new()),
            FieldKind::Flag => FieldData::Flag(DotSet::new()),
            FieldKind::Lww => FieldData::Lww(DotFun::new()),
            FieldKind::Register => FieldData::Register(DotFun::new()),
        }
    }

    fn kind(&self) -> FieldKind {
        match self {
            FieldData::Counter(_) => FieldKind::Counter,
            FieldData::Set(_) => FieldKind::Set,
            FieldData::Flag(_) => FieldKind::Flag,
            FieldData::Lww(_) => FieldKind::Lww,
            FieldData::Register(_) => FieldKind::Register,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            FieldData::Counter(c) => c.is_empty(),
            FieldData::Set(s) => s.is_empty(),
            FieldData::Flag(f) => f.is_empty(),
            FieldData::Lww(w) => w.is_empty(),
            FieldData::Register(r) => r.is_empty(),
        }
    }

    fn dots(&self) -> Vec<&Dot> {
        match self {
            FieldData::Counter(c) => c.keys().collect(),
            FieldData::Set(s) => s.values().flat_map(|d| d.keys()).collect(),
            FieldData::Flag(f) => f.keys().collect(),
            FieldData::Lww(w) => w.keys().collect(),
            FieldData::Register(r) => r.keys().collect(),
        }
    }

    /// Keeps the dots of `scope` for which `keep` holds.
    fn retain(&mut self, scope: &Scope, keep: impl Fn(&Dot) -> bool) {
        match (self, scope) {
            (FieldData::Counter(c), Scope::Field) => c.retain(|d, _| keep(d)),
            (FieldData::Set(s), Scope::Field) => {
                for dots in s.values_mut() {
                    dots.retain(|d, _| keep(d));
                }
                s.retain(|_, dots| !dots.is_empty());
            }
            (FieldData::Set(s), Scope::Member(m)) => {
                if let Some(dots) = s.get_mut(m) {
                    dots.retain(|d, _| keep(d));
                    if dots.is_empty() {
                        s.remove(m);
                    }
                }
            }
            (FieldData::Flag(f), Scope::Field | Scope::Values) => f.retain(|d, _| keep(d)),
            (FieldData::Lww(w), Scope::Field) => w.retain(|d, _| keep(d)),
            (FieldData::Register(r), Scope::Field | Scope::Values) => r.retain(|d, _| keep(d)),
            // A scope another kind of field does not have.
            _ => {}
        }
    }

    /// The dot-store join of two contents of the same kind.
    fn join(&mut self, mine: &VClock<Actor>, other: FieldData, theirs: &VClock<Actor>) {
        match (self, other) {
            (FieldData::Counter(a), FieldData::Counter(b)) => join_dots(a, mine, b, theirs),
            (FieldData::Flag(a), FieldData::Flag(b)) => join_dots(a, mine, b, theirs),
            (FieldData::Lww(a), FieldData::Lww(b)) => join_dots(a, mine, b, theirs),
            (FieldData::Register(a), FieldData::Register(b)) => join_dots(a, mine, b, theirs),
            (FieldData::Set(a), FieldData::Set(mut b)) => {
                let members: BTreeSet<Vec<u8>> = a.keys().chain(b.keys()).cloned().collect();
                for m in members {
                    let mut dots = a.remove(&m).unwrap_or_default();
                    join_dots(&mut dots, mine, b.remove(&m).unwrap_or_default(), theirs);
                    if !dots.is_empty() {
                        a.insert(m, dots);
                    }
                }
            }
            // Kinds differ (never: the kind is part of the key, and states
            // are validated): the other side's contents are left out, and
            // ours still lose what the other side removed.
            (a, _) => a.join(mine, FieldData::empty(a.kind()), theirs),
        }
    }

    fn value(&self) -> FieldValue {
        match self {
            FieldData::Counter(c) => {
                let sum: i128 = c
                    .values()
                    .map(|t| i128::from(t.inc) - i128::from(t.dec))
                    .sum();
                FieldValue::Counter(clamp(sum))
            }
            // Byte strings in key order: sorted.
            FieldData::Set(s) => FieldValue::Set(s.keys().cloned().collect()),
            FieldData::Flag(f) => FieldValue::Flag(!f.is_empty()),
            FieldData::Lww(w) => FieldValue::Lww(
                w.values()
                    .max()
                    .map(|w| w.value.clone())
                    .unwrap_or_default(),
            ),
            // In dot order.
            FieldData::Register(r) => FieldValue::Register(r.values().cloned().collect()),
        }
    }
}

impl FieldState {
    fn new(kind: FieldKind) -> Self {
        Self {
            support: DotSet::new(),
            data: FieldData::empty(kind),
        }
    }

    fn is_empty(&self) -> bool {
        self.support.is_empty() && self.data.is_empty()
    }

    fn retain(&mut self, scope: &Scope, keep: impl Fn(&Dot) -> bool) {
        if *scope == Scope::Field {
            self.support.retain(|d, _| keep(d));
        }
        self.data.retain(scope, keep);
    }

    fn dots(&self) -> impl Iterator<Item = &Dot> {
        self.support.keys().chain(self.data.dots())
    }
}

/// A map of typed fields (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapState {
    clock: VClock<Actor>,
    fields: BTreeMap<FieldKey, FieldState>,
    pending: BTreeMap<Target, VClock<Actor>>,
}

impl MapState {
    /// The empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every map dot this state has seen: the context a read hands out.
    pub fn clock(&self) -> &VClock<Actor> {
        &self.clock
    }

    /// Fields held.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// The largest number of members of a set field.
    pub fn max_set_members(&self) -> usize {
        self.fields
            .values()
            .map(|f| match &f.data {
                FieldData::Set(s) => s.len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// Removals still waiting for dots this state has not seen.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The fields and their values, in key order.
    pub fn value(&self) -> MapValue {
        let fields = self
            .fields
            .iter()
            .map(|(k, f)| (k.name.clone(), k.kind, f.data.value()))
            .collect();
        MapValue { fields }
    }

    /// Removes every field this state holds: each of their dots is in the
    /// clock, so the removal is observed-remove (a replica's merge drops
    /// them; dots this state never saw stay). A key that expired starts
    /// afresh this way.
    pub fn clear_observed(&mut self) {
        self.fields.clear();
    }

    /// The dot-store join (see the module docs).
    pub fn merge(&mut self, other: MapState) {
        let MapState {
            clock: their_clock,
            fields: mut theirs,
            pending,
        } = other;
        let keys: BTreeSet<FieldKey> = self.fields.keys().chain(theirs.keys()).cloned().collect();
        for key in keys {
            let mut mine = self
                .fields
                .remove(&key)
                .unwrap_or_else(|| FieldState::new(key.kind));
            let other = theirs
                .remove(&key)
                .unwrap_or_else(|| FieldState::new(key.kind));
            join_dots(&mut mine.support, &self.clock, other.support, &their_clock);
            if mine.data.kind() != key.kind {
                mine.data = FieldData::empty(key.kind);
            }
            mine.data.join(&self.clock, other.data, &their_clock);
            if !mine.is_empty() {
                self.fields.insert(key, mine);
            }
        }
        self.clock.merge(their_clock);
        for (target, ctx) in pending {
            self.pending.entry(target).or_default().merge(ctx);
        }
        self.settle();
    }

    /// Applies the pending removals, cuts them to where they are still
    /// ahead of the clock, and drops fields left without dots: the normal
    /// form every operation and merge ends in.
    fn settle(&mut self) {
        for (target, ctx) in &self.pending {
            if let Some(f) = self.fields.get_mut(&target.key) {
                f.retain(&target.scope, |d| !seen(ctx, d));
            }
        }
        let clock = &self.clock;
        self.pending.retain(|_, ctx| {
            ctx.dots.retain(|a, n| *n > clock.get(a));
            !ctx.is_empty()
        });
        self.fields.retain(|_, f| !f.is_empty());
    }

    /// Removes what `ctx` covers of `target`, now and when unseen dots it
    /// covers arrive.
    fn remove(&mut self, target: Target, ctx: &VClock<Actor>) {
        if let Some(f) = self.fields.get_mut(&target.key) {
            f.retain(&target.scope, |d| !seen(ctx, d));
            if f.is_empty() {
                // Gone at once: a later operation of the same update finds
                // no field (as it would in an update of its own).
                self.fields.remove(&target.key);
            }
        }
        if ctx.dots.iter().any(|(a, n)| *n > self.clock.get(a)) {
            self.pending.entry(target).or_default().merge(ctx.clone());
        }
    }

    /// Applies a client's field operations as `me` at `now_ms`, with the
    /// context `ctx` of the client's read.
    pub fn update(&mut self, me: &Actor, ops: Vec<MapOp>, ctx: VClock<Actor>, now_ms: u64) {
        // A context claiming dots of this replica's actor that it never
        // issued (only it issues them, and it holds them all) is cut at the
        // ones it did: no removal in the update may cover a dot the update
        // takes.
        let mut ctx = ctx;
        let own = self.clock.get(me);
        if ctx.get(me) > own {
            if own == 0 {
                ctx.dots.remove(me);
            } else {
                ctx.dots.insert(me.clone(), own);
            }
        }
        for op in ops {
            self.apply(me, op, &ctx, now_ms);
        }
        self.settle();
    }

    /// One field operation.
    fn apply(&mut self, me: &Actor, op: MapOp, ctx: &VClock<Actor>, now_ms: u64) {
        let (name, kind) = op.field();
        let key = FieldKey {
            name: name.to_string(),
            kind,
        };
        let target = |scope| Target {
            key: key.clone(),
            scope,
        };
        // Every field operation but a field removal takes a fresh dot that
        // supports the field (a set remove or flag disable too, even of a
        // field this replica does not hold yet: what an operation leaves
        // must not depend on which replica coordinated it). A field removal
        // takes a dot that no field holds (as if a field had been added and
        // removed), so that every update advances the clock and its version
        // shows it to sessions.
        let mut removals = Vec::new();
        if let MapOp::RemoveField { .. } = op {
            let counter = self.clock.get(me).saturating_add(1);
            self.clock.apply(crdts::Dot::new(me.clone(), counter));
            removals.push(target(Scope::Field));
        } else {
            let counter = self.clock.get(me).saturating_add(1);
            self.clock.apply(crdts::Dot::new(me.clone(), counter));
            let dot = (me.clone(), counter);
            let field = self
                .fields
                .entry(key.clone())
                .or_insert_with(|| FieldState::new(kind));
            replace_own(&mut field.support, &dot);
            match (&mut field.data, op) {
                (FieldData::Counter(c), MapOp::Increment { by, .. }) => {
                    let mut t = Totals::default();
                    c.retain(|d, held| {
                        if d.0 == *me {
                            t.inc = t.inc.saturating_add(held.inc);
                            t.dec = t.dec.saturating_add(held.dec);
                        }
                        d.0 != *me
                    });
                    if by >= 0 {
                        t.inc = t.inc.saturating_add(by.unsigned_abs());
                    } else {
                        t.dec = t.dec.saturating_add(by.unsigned_abs());
                    }
                    c.insert(dot, t);
                }
                (FieldData::Set(s), MapOp::Add { members, .. }) => {
                    for m in members {
                        replace_own(s.entry(m).or_default(), &dot);
                    }
                }
                (FieldData::Set(_), MapOp::Remove { members, .. }) => {
                    removals.extend(members.into_iter().map(|m| target(Scope::Member(m))));
                }
                (FieldData::Flag(f), MapOp::Flag { enable: true, .. }) => replace_own(f, &dot),
                (FieldData::Flag(_), MapOp::Flag { enable: false, .. }) => {
                    removals.push(target(Scope::Values));
                }
                (FieldData::Lww(w), MapOp::SetLww { value, .. }) => {
                    // Above every stamp held, so the write wins here and
                    // supersedes them all, even if the clock stepped back.
                    let held = w.values().map(|x| x.stamp.ms).max().unwrap_or(0);
                    let stamp = Stamp {
                        ms: now_ms.max(held.saturating_add(1)),
                        actor: Some(me.clone()),
                    };
                    w.clear();
                    w.insert(dot, LwwWrite { stamp, value });
                }
                (FieldData::Register(r), MapOp::SetRegister { value, .. }) => {
                    // The context never covers the new dot (see `update`).
                    r.insert(dot, value);
                    removals.push(target(Scope::Values));
                }
                // Contents of another kind than the key's (never: states are
                // validated); the dot still supports the field.
                _ => {}
            }
        }
        for t in removals {
            self.remove(t, ctx);
        }
    }

    /// Checks the invariants every state this code builds keeps: each dot
    /// is in the clock, and each field's contents have its key's kind. A
    /// state from a peer that breaks them is refused.
    pub fn validate(&self) -> Result<(), DecodeError> {
        for (key, f) in &self.fields {
            if f.data.kind() != key.kind {
                return Err(DecodeError::Inconsistent(format!(
                    "map field {:?} of kind {} holds {} contents",
                    key.name,
                    key.kind,
                    f.data.kind()
                )));
            }
            if let Some(d) = f.dots().find(|d| !seen(&self.clock, d)) {
                return Err(DecodeError::Inconsistent(format!(
                    "map dot {d:?} outside its context"
                )));
            }
        }
        Ok(())
    }
}
