//! Tests of `data::value`. This file: the helpers and strategies the others share.
//! `expiry.rs`: times to live of every type (laws on random histories, restarts, records);
//! `laws.rs`: merge laws and convergence of every type on random histories (proptest);
//! `register.rs`, `counter.rs`, `set.rs`, `lww.rs`: each type's semantics;
//! `map.rs`: map field updates, concurrent writes, set removes and flag disables;
//! `map_removals.rs`: removals of whole map fields and pending removals;
//! `records.rs`: record formats, canonical encodings, clock contexts, migrations;
//! `refusals.rs`: wrong ops, type mismatches, size limits, invalid peer states.

use super::record::{canon, plain_record, CLOCK_CONTEXT_VERSION};
use super::*;
use crate::data::register::{decode_context, Dot, DotContext};
use kvorum_client::{FieldKind, FieldValue, MapOp};
use kvorum_ring::NodeId;
use proptest::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

mod counter;
mod expiry;
mod laws;
mod lww;
mod map;
mod map_removals;
mod records;
mod refusals;
mod register;
mod set;

fn actor(s: &str) -> Actor {
    Actor {
        node: NodeId::new(s),
        epoch: 1,
    }
}

fn limits() -> ValueLimits {
    ValueLimits {
        max_siblings: 100,
        max_set_members: 1000,
        max_map_fields: 100,
        max_state_bytes: 1 << 20,
    }
}

// ---------------------------------------------------------------------------
// Helpers

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn strings(v: &[Vec<u8>]) -> Vec<String> {
    v.iter()
        .map(|x| String::from_utf8(x.clone()).unwrap())
        .collect()
}

/// `a ⊔ b`, as a new state.
fn joined(a: &State, b: &State) -> State {
    let mut m = a.clone();
    m.merge(b.clone()).expect("states of one type");
    m
}

/// Applies `u` as `who` at time 1 with roomy limits.
fn apply(s: &mut State, who: &Actor, u: Update) -> Vec<u8> {
    s.coordinate(who, u, 0, 1, &limits())
        .expect("update applies")
}

fn inc(by: i64) -> Update {
    Update::Data {
        op: DataOp::Increment(by),
        ctx: VClock::new(),
    }
}

fn set_up(add: &[&str], remove: &[&str], ctx: VClock<Actor>) -> Update {
    Update::Data {
        op: DataOp::SetUpdate {
            add: add.iter().map(|m| b(m)).collect(),
            remove: remove.iter().map(|m| b(m)).collect(),
        },
        ctx,
    }
}

fn map_up(ops: Vec<MapOp>, ctx: VClock<Actor>) -> Update {
    Update::Data {
        op: DataOp::MapUpdate(ops),
        ctx,
    }
}

fn m_inc(field: &str, by: i64) -> MapOp {
    MapOp::Increment {
        field: field.into(),
        by,
    }
}

fn m_add(field: &str, members: &[&str]) -> MapOp {
    MapOp::Add {
        field: field.into(),
        members: members.iter().map(|m| b(m)).collect(),
    }
}

fn m_rm(field: &str, members: &[&str]) -> MapOp {
    MapOp::Remove {
        field: field.into(),
        members: members.iter().map(|m| b(m)).collect(),
    }
}

fn m_flag(field: &str, enable: bool) -> MapOp {
    MapOp::Flag {
        field: field.into(),
        enable,
    }
}

fn m_reg(field: &str, value: &str) -> MapOp {
    MapOp::SetRegister {
        field: field.into(),
        value: b(value),
    }
}

fn m_lww(field: &str, value: &str) -> MapOp {
    MapOp::SetLww {
        field: field.into(),
        value: b(value),
    }
}

fn m_drop(field: &str, kind: FieldKind) -> MapOp {
    MapOp::RemoveField {
        field: field.into(),
        kind,
    }
}

/// The clock a read of a counter, set or map hands the client.
fn read_clock(s: &State) -> VClock<Actor> {
    match s.read(0) {
        Reading::Data(_, c) => c,
        other => panic!("not a data reading: {other:?}"),
    }
}

fn counter(s: &State) -> Option<i64> {
    match s.read(0) {
        Reading::Data(Some(DataValue::Counter(v)), _) => Some(v),
        Reading::Data(None, _) => None,
        other => panic!("not a counter: {other:?}"),
    }
}

fn members(s: &State) -> Vec<String> {
    match s.read(0) {
        Reading::Data(Some(DataValue::Set(m)), _) => strings(&m),
        Reading::Data(None, _) => Vec::new(),
        other => panic!("not a set: {other:?}"),
    }
}

fn field(s: &State, name: &str, kind: FieldKind) -> Option<FieldValue> {
    match s.read(0) {
        Reading::Data(Some(DataValue::Map(m)), _) => m.get(name, kind).cloned(),
        Reading::Data(None, _) => None,
        other => panic!("not a map: {other:?}"),
    }
}

/// A set field's members, or a register field's values, sorted.
fn field_strings(s: &State, name: &str, kind: FieldKind) -> Option<Vec<String>> {
    match field(s, name, kind)? {
        FieldValue::Set(m) | FieldValue::Register(m) => {
            let mut v = strings(&m);
            v.sort();
            Some(v)
        }
        other => panic!("not a set or register field: {other:?}"),
    }
}

fn lww(s: &State) -> Option<String> {
    match s.read(0) {
        Reading::Lww(v) => v.map(|v| String::from_utf8(v).unwrap()),
        other => panic!("not an lww: {other:?}"),
    }
}

fn stamp(s: &State) -> Stamp {
    match &s.body {
        Body::Lww(r) => r.marker.clone(),
        other => panic!("not an lww: {other:?}"),
    }
}

/// The bytes `encode_record` would write without canonicalization.
fn plain_bytes(s: &State) -> Vec<u8> {
    plain_record(s)
}

/// The insides of an `Orswot` (private in `crdts`), read through its
/// serialized form.
#[derive(Deserialize)]
struct OrswotView<M> {
    _clock: VClock<Actor>,
    _entries: Vec<(M, VClock<Actor>)>,
    deferred: Vec<(VClock<Actor>, Vec<M>)>,
}

fn view<T: Serialize, V: serde::de::DeserializeOwned>(x: &T) -> V {
    postcard::from_bytes(&postcard::to_stdvec(x).unwrap()).unwrap()
}

/// Deferred removes of a set state.
fn set_deferred(s: &State) -> usize {
    match &s.body {
        Body::Set(s) => view::<_, OrswotView<Vec<u8>>>(s).deferred.len(),
        other => panic!("not a set: {other:?}"),
    }
}

/// One non-empty state of every type.
fn samples() -> Vec<State> {
    let a = actor("a");
    let mut out = Vec::new();
    for t in [
        BucketType::Register,
        BucketType::Counter,
        BucketType::Set,
        BucketType::Map,
        BucketType::Lww,
    ] {
        let mut s = State::empty(t);
        let u = match t {
            BucketType::Register => Update::Register {
                ctx: DotContext::new(),
                value: RegValue::Data(b("v")),
            },
            BucketType::Counter => inc(3),
            BucketType::Set => set_up(&["m"], &[], VClock::new()),
            BucketType::Map => map_up(vec![m_inc("n", 1), m_add("s", &["m"])], VClock::new()),
            BucketType::Lww => Update::Lww(Some(b("v"))),
        };
        apply(&mut s, &a, u);
        out.push(s);
    }
    out
}

// ---------------------------------------------------------------------------
// Property tests: random histories at three replicas

const ACTORS: [&str; 3] = ["a", "b", "c"];

/// Where an update's causal context comes from.
#[derive(Debug, Clone)]
enum Ctx {
    /// A blind update.
    Empty,
    /// A read of replica `i` just now.
    Now(usize),
    /// An earlier read of some replica (stale), by index into past reads.
    Past(usize),
}

/// One step of a history.
#[derive(Debug, Clone)]
enum Step<O> {
    /// Replica `at` coordinates `op` as its own actor at time `now` (which
    /// may go backwards), with the context `ctx` read at `now`, and a time
    /// to live `ttl`.
    Update {
        at: usize,
        op: O,
        ctx: Ctx,
        now: u64,
        ttl: Option<u64>,
    },
    /// Replica `to` merges replica `from`'s state.
    Sync { from: usize, to: usize },
}

fn ctx_strategy() -> impl Strategy<Value = Ctx> {
    prop_oneof![
        1 => Just(Ctx::Empty),
        2 => (0usize..3).prop_map(Ctx::Now),
        1 => any::<usize>().prop_map(Ctx::Past),
    ]
}

fn steps<O: std::fmt::Debug + Clone>(
    op: impl Strategy<Value = O>,
) -> impl Strategy<Value = Vec<Step<O>>> {
    steps_of(op, Just(None))
}

/// Histories whose updates have times to live half the time (short ones,
/// so that keys expire between updates and are written again after).
fn steps_ttl<O: std::fmt::Debug + Clone>(
    op: impl Strategy<Value = O>,
) -> impl Strategy<Value = Vec<Step<O>>> {
    steps_of(op, proptest::option::of(1u64..5))
}

fn steps_of<O: std::fmt::Debug + Clone>(
    op: impl Strategy<Value = O>,
    ttl: impl Strategy<Value = Option<u64>>,
) -> impl Strategy<Value = Vec<Step<O>>> {
    let step = prop_oneof![
        3 => (0usize..3, op, ctx_strategy(), 0u64..8, ttl)
            .prop_map(|(at, op, ctx, now, ttl)| Step::Update { at, op, ctx, now, ttl }),
        2 => (0usize..3, 0usize..3).prop_map(|(from, to)| Step::Sync { from, to }),
    ];
    proptest::collection::vec(step, 1..32)
}

/// One applied update, for the reference models.
struct Event<'a, O> {
    at: usize,
    op: &'a O,
    /// The read the context came from (`None`: blind).
    read: Option<&'a Reading>,
    before: &'a State,
    after: &'a State,
}

/// The outcome of a history.
struct History {
    /// Each replica's final state.
    finals: Vec<State>,
    /// Every state any replica went through (the empty one included).
    snapshots: Vec<State>,
}

/// What sessions rely on (docs/consistency.md, Sessions): a state whose
/// version dominates another state's version contains it (their join is
/// the first), and a state whose version dominates a write's version
/// contains the coordinator's state as of that write.
fn check_versions(snapshots: &[State], writes: &[(Version, State)]) -> Result<(), TestCaseError> {
    let versions: Vec<Version> = snapshots.iter().map(State::version).collect();
    for (x, vx) in snapshots.iter().zip(&versions) {
        for (y, vy) in snapshots.iter().zip(&versions) {
            if vy.dominates(vx) {
                prop_assert_eq!(
                    encode_record(&joined(x, y)),
                    encode_record(y),
                    "version {:?} dominates {:?} but the state does not contain\n{:?}\nin\n{:?}",
                    vy,
                    vx,
                    x,
                    y
                );
            }
        }
        for (wv, after) in writes {
            if vx.dominates(wv) {
                prop_assert_eq!(
                    encode_record(&joined(after, x)),
                    encode_record(x),
                    "state of version {:?} dominates write {:?} but lacks it",
                    vx,
                    wv
                );
            }
        }
    }
    Ok(())
}

/// Runs `steps` on three replicas of type `t`. `update` turns an op and the
/// read its context comes from into the client's update; `event` sees each
/// applied update. Checks on the way that every update is an inflation
/// (`before ⊔ after == after`: a stale copy can never undo it) and every
/// merge too.
fn run<O>(
    t: BucketType,
    steps: &[Step<O>],
    update: impl Fn(&O, Option<&Reading>, u64) -> Update,
    mut event: impl FnMut(Event<'_, O>),
) -> Result<History, TestCaseError> {
    let actors = ACTORS.map(actor);
    let mut reps = vec![State::empty(t); 3];
    let mut reads: Vec<Reading> = Vec::new();
    let mut snapshots = vec![State::empty(t)];
    let mut writes: Vec<(Version, State)> = Vec::new();
    for s in steps {
        match s {
            Step::Update {
                at,
                op,
                ctx,
                now,
                ttl,
            } => {
                let read = match ctx {
                    Ctx::Empty => None,
                    Ctx::Now(i) => Some(reps[*i].read(*now)),
                    Ctx::Past(k) if !reads.is_empty() => Some(reads[k % reads.len()].clone()),
                    Ctx::Past(_) => None,
                };
                let before = reps[*at].clone();
                let (_, written) = reps[*at]
                    .coordinate_versioned(
                        &actors[*at],
                        update(op, read.as_ref(), *now),
                        0,
                        *now,
                        ttl.map(|t| now + t),
                        &limits(),
                    )
                    .map_err(|e| TestCaseError::fail(format!("update refused: {e}")))?;
                let after_version = reps[*at].version();
                prop_assert!(after_version.dominates(&written), "{:?}", written);
                prop_assert!(
                    after_version.dominates(&before.version()),
                    "an update's version grows"
                );
                // (An increment by 0 changes nothing: nothing to see.)
                prop_assert!(
                    before == reps[*at] || !before.version().dominates(&written),
                    "every update takes a fresh event: {:?}",
                    written
                );
                if before != reps[*at] {
                    writes.push((written, reps[*at].clone()));
                }
                event(Event {
                    at: *at,
                    op,
                    read: read.as_ref(),
                    before: &before,
                    after: &reps[*at],
                });
                same(
                    &joined(&before, &reps[*at]),
                    &reps[*at],
                    "update is an inflation",
                )?;
                reads.extend(read);
                reads.push(reps[*at].read(*now));
                snapshots.push(reps[*at].clone());
            }
            Step::Sync { from, to } => {
                let before = reps[*to].clone();
                let src = reps[*from].clone();
                reps[*to].merge(src.clone()).unwrap();
                let v = reps[*to].version();
                prop_assert!(v.dominates(&src.version()) && v.dominates(&before.version()));
                same(
                    &joined(&src, &reps[*to]),
                    &reps[*to],
                    "merge is an upper bound",
                )?;
                same(
                    &joined(&before, &reps[*to]),
                    &reps[*to],
                    "merge is an upper bound",
                )?;
                snapshots.push(reps[*to].clone());
            }
        }
    }
    check_versions(&snapshots, &writes)?;
    Ok(History {
        finals: reps,
        snapshots,
    })
}

/// Equal states: equal canonical bytes, equal reads and `==` (crdts'
/// `HashMap`s compare by content).
fn same(x: &State, y: &State, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        encode_record(x),
        encode_record(y),
        "{}: bytes differ\n{:?}\n{:?}",
        what,
        x,
        y
    );
    for t in [0, 4, 8, 16] {
        prop_assert_eq!(x.read(t), y.read(t), "{}: reads differ at {}", what, t);
    }
    prop_assert_eq!(x, y, "{}: states differ", what);
    Ok(())
}

/// The merge laws on triples of `snapshots`, and the record round trip of
/// every snapshot.
fn check_laws(snapshots: &[State], picks: &[[usize; 3]]) -> Result<(), TestCaseError> {
    let n = snapshots.len();
    for p in picks {
        let [x, y, z] = p.map(|i| &snapshots[i % n]);
        same(&joined(x, y), &joined(y, x), "commutativity")?;
        same(
            &joined(&joined(x, y), z),
            &joined(x, &joined(y, z)),
            "associativity",
        )?;
        same(&joined(x, x), x, "idempotence")?;
        same(&joined(x, &joined(x, y)), &joined(x, y), "absorption")?;
    }
    for s in snapshots {
        check_record(s)?;
    }
    Ok(())
}

/// `decode(encode(s)) == s`, and the decoded copy (whose hash maps iterate
/// in another order) encodes to the same bytes. For sets and maps, the
/// canonical mirror reads the plain encoding and writes it back unchanged
/// (so it lays out exactly what the stored types do, and `encode_record`
/// never takes its fallback).
fn check_record(s: &State) -> Result<(), TestCaseError> {
    let bytes = encode_record(s);
    prop_assert!(record_is_current(&bytes));
    let back = decode_record(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, s);
    prop_assert_eq!(encode_record(&back), bytes.clone());
    prop_assert_eq!(back.read(0), s.read(0));
    prop_assert!(s.validate().is_ok());
    if matches!(s.body, Body::Set(_) | Body::Map(_)) {
        let plain = plain_bytes(s);
        let mirror = postcard::from_bytes::<canon::Record>(&plain);
        prop_assert!(mirror.is_ok(), "the mirror does not read {:?}", s);
        prop_assert_eq!(postcard::to_stdvec(&mirror.unwrap()).unwrap(), plain);
    }
    Ok(())
}

/// Shuffles `v` by `seed` (splitmix64 Fisher-Yates).
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

/// Every replica merges every final state (its own too) in its own random
/// order: all end equal, with identical bytes. The join of every state the
/// history went through, in two random orders, is that same state.
fn check_convergence(
    h: &History,
    orders: &[Vec<usize>; 3],
    seed: u64,
) -> Result<State, TestCaseError> {
    let mut reps = h.finals.clone();
    for (rep, order) in reps.iter_mut().zip(orders) {
        for &j in order {
            rep.merge(h.finals[j].clone()).unwrap();
        }
    }
    same(&reps[0], &reps[1], "convergence")?;
    same(&reps[0], &reps[2], "convergence")?;
    for s in [seed, seed ^ 0x5555] {
        let mut all: Vec<&State> = h.snapshots.iter().collect();
        shuffle(&mut all, s);
        let mut acc = all[0].clone();
        for x in &all[1..] {
            acc.merge((*x).clone()).unwrap();
        }
        same(&acc, &reps[0], "join of the whole history")?;
    }
    Ok(reps.swap_remove(0))
}

fn orders() -> impl Strategy<Value = [Vec<usize>; 3]> {
    let o = || Just(vec![0usize, 1, 2]).prop_shuffle();
    (o(), o(), o()).prop_map(|(x, y, z)| [x, y, z])
}

fn picks() -> impl Strategy<Value = Vec<[usize; 3]>> {
    proptest::collection::vec(any::<[usize; 3]>(), 6)
}

fn dot_context(read: Option<&Reading>) -> DotContext {
    match read {
        Some(Reading::Register(_, c)) => c.clone(),
        _ => DotContext::new(),
    }
}

fn clock_of(read: Option<&Reading>) -> VClock<Actor> {
    match read {
        Some(Reading::Data(_, c)) => c.clone(),
        _ => VClock::new(),
    }
}

fn member() -> impl Strategy<Value = Vec<u8>> {
    (0u8..4).prop_map(|m| vec![b'm', b'0' + m])
}

/// A map operation on two field names and every kind; `removals`: field
/// removals too.
fn map_op(removals: bool) -> BoxedStrategy<MapOp> {
    let name = || prop_oneof![Just("f".to_string()), Just("g".to_string())];
    let members = || proptest::collection::vec(member(), 1..3);
    let kind = prop_oneof![
        Just(FieldKind::Counter),
        Just(FieldKind::Set),
        Just(FieldKind::Flag),
        Just(FieldKind::Lww),
        Just(FieldKind::Register),
    ];
    let ops = prop_oneof![
        (name(), -3i64..4).prop_map(|(field, by)| MapOp::Increment { field, by }),
        (name(), members()).prop_map(|(field, members)| MapOp::Add { field, members }),
        (name(), members()).prop_map(|(field, members)| MapOp::Remove { field, members }),
        (name(), any::<bool>()).prop_map(|(field, enable)| MapOp::Flag { field, enable }),
        (name(), 0u8..4).prop_map(|(field, v)| MapOp::SetLww {
            field,
            value: vec![v]
        }),
        (name(), 0u8..4).prop_map(|(field, v)| MapOp::SetRegister {
            field,
            value: vec![v]
        }),
    ];
    if !removals {
        return ops.boxed();
    }
    let remove = (name(), kind).prop_map(|(field, kind)| MapOp::RemoveField { field, kind });
    prop_oneof![5 => ops, 1 => remove].boxed()
}

/// Every map field operation applied: the operation, the map dot it took
/// (if any), and the context it was made with.
type MapLog = Vec<(MapOp, Option<Dot>, VClock<Actor>)>;

/// The converged map against the observed-remove semantics, from the log of
/// every operation: a field exists while an operation on it took a dot that
/// no removal of the field covered; a set holds the members with such an
/// add that no remove of the member covered; a flag is enabled while such
/// an enable is not covered by a disable; a register holds the values of
/// such writes that no write of the field covered; a counter never removed
/// holds the sum of its increments. (LWW fields: existence only, their
/// values are checked by the unit tests.)
fn check_map_model(all: &State, log: &MapLog) -> Result<(), TestCaseError> {
    let covered = |ctx: &VClock<Actor>, d: &Dot| d.1 <= ctx.get(&d.0);
    let kinds = [
        FieldKind::Counter,
        FieldKind::Set,
        FieldKind::Flag,
        FieldKind::Lww,
        FieldKind::Register,
    ];
    for name in ["f", "g"] {
        for kind in kinds {
            let on: Vec<&(MapOp, Option<Dot>, VClock<Actor>)> = log
                .iter()
                .filter(|(op, _, _)| op.field() == (name, kind))
                .collect();
            // Covered by an operation of this field matching `what`.
            let covered_by = |what: &dyn Fn(&MapOp) -> bool, d: &Dot| {
                on.iter().any(|(op, _, ctx)| what(op) && covered(ctx, d))
            };
            let removal = |op: &MapOp| matches!(op, MapOp::RemoveField { .. });
            let live: Vec<(&MapOp, &Dot)> = on
                .iter()
                .filter_map(|(op, dot, _)| Some((op, dot.as_ref()?)))
                .filter(|(_, d)| !covered_by(&removal, d))
                .collect();
            let got = field(all, name, kind);
            if live.is_empty() {
                prop_assert_eq!(got, None, "field {} {}", name, kind);
                continue;
            }
            let expected = match kind {
                FieldKind::Set => {
                    let mut present: BTreeSet<Vec<u8>> = BTreeSet::new();
                    for &(op, d) in &live {
                        let MapOp::Add { members: added, .. } = op else {
                            continue;
                        };
                        for m in added {
                            let rm = |o: &MapOp| match o {
                                MapOp::Remove { members, .. } => members.contains(m),
                                _ => false,
                            };
                            if !covered_by(&rm, d) {
                                present.insert(m.clone());
                            }
                        }
                    }
                    FieldValue::Set(present.into_iter().collect())
                }
                FieldKind::Flag => {
                    let disable = |o: &MapOp| matches!(o, MapOp::Flag { enable: false, .. });
                    FieldValue::Flag(live.iter().any(|(op, d)| {
                        matches!(op, MapOp::Flag { enable: true, .. }) && !covered_by(&disable, d)
                    }))
                }
                FieldKind::Register => {
                    let write = |o: &MapOp| matches!(o, MapOp::SetRegister { .. });
                    let mut values: Vec<Vec<u8>> = live
                        .iter()
                        .filter(|(_, d)| !covered_by(&write, d))
                        .filter_map(|(op, _)| match op {
                            MapOp::SetRegister { value, .. } => Some(value.clone()),
                            _ => None,
                        })
                        .collect();
                    values.sort();
                    let got = match got {
                        Some(FieldValue::Register(mut v)) => {
                            v.sort();
                            Some(FieldValue::Register(v))
                        }
                        other => other,
                    };
                    prop_assert_eq!(got, Some(FieldValue::Register(values)), "field {}", name);
                    continue;
                }
                FieldKind::Counter if !on.iter().any(|(op, _, _)| removal(op)) => {
                    let sum: i64 = on
                        .iter()
                        .filter_map(|e| match &e.0 {
                            MapOp::Increment { by, .. } => Some(*by),
                            _ => None,
                        })
                        .sum();
                    FieldValue::Counter(sum)
                }
                FieldKind::Counter | FieldKind::Lww => {
                    prop_assert!(got.is_some(), "field {} {} exists", name, kind);
                    continue;
                }
            };
            prop_assert_eq!(got, Some(expected), "field {} {}", name, kind);
        }
    }
    Ok(())
}

/// `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A set update: members to add and to remove.
type SetOp = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The bytes of a hex string (test fixtures).
pub(crate) fn unhex(hex: &str) -> Vec<u8> {
    let hex = hex.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}
