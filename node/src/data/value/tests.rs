use super::*;
use crate::data::register::{decode_context, Dot, DotContext};
use kvorum_client::{FieldKind, FieldValue, MapOp};
use kvorum_ring::NodeId;
use proptest::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

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

#[test]
fn set_encoding_is_canonical() {
    let mut a = State::empty(BucketType::Set);
    let mut b = State::empty(BucketType::Set);
    let members: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i]).collect();
    for m in &members {
        let u = Update::Data {
            op: DataOp::SetUpdate {
                add: vec![m.clone()],
                remove: vec![],
            },
            ctx: VClock::new(),
        };
        a.coordinate(&actor("a"), u, 0, 1, &limits()).unwrap();
    }
    b.merge(a.clone()).unwrap();
    assert_eq!(a, b);
    assert_eq!(encode_record(&a), encode_record(&b));
    assert_eq!(decode_record(&encode_record(&a)).unwrap(), a);
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
    match s.read() {
        Reading::Data(_, c) => c,
        other => panic!("not a data reading: {other:?}"),
    }
}

fn counter(s: &State) -> Option<i64> {
    match s.read() {
        Reading::Data(Some(DataValue::Counter(v)), _) => Some(v),
        Reading::Data(None, _) => None,
        other => panic!("not a counter: {other:?}"),
    }
}

fn members(s: &State) -> Vec<String> {
    match s.read() {
        Reading::Data(Some(DataValue::Set(m)), _) => strings(&m),
        Reading::Data(None, _) => Vec::new(),
        other => panic!("not a set: {other:?}"),
    }
}

fn field(s: &State, name: &str, kind: FieldKind) -> Option<FieldValue> {
    match s.read() {
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
    match s.read() {
        Reading::Lww(v) => v.map(|v| String::from_utf8(v).unwrap()),
        other => panic!("not an lww: {other:?}"),
    }
}

fn stamp(s: &State) -> Stamp {
    match s {
        State::Lww(r) => r.marker.clone(),
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
    match s {
        State::Set(s) => view::<_, OrswotView<Vec<u8>>>(s).deferred.len(),
        other => panic!("not a set: {other:?}"),
    }
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
    /// may go backwards), with the context `ctx`.
    Update {
        at: usize,
        op: O,
        ctx: Ctx,
        now: u64,
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
    let step = prop_oneof![
        3 => (0usize..3, op, ctx_strategy(), 0u64..8)
            .prop_map(|(at, op, ctx, now)| Step::Update { at, op, ctx, now }),
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
            Step::Update { at, op, ctx, now } => {
                let read = match ctx {
                    Ctx::Empty => None,
                    Ctx::Now(i) => Some(reps[*i].read()),
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
                reads.push(reps[*at].read());
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
    prop_assert_eq!(x.read(), y.read(), "{}: reads differ", what);
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
    prop_assert_eq!(back.read(), s.read());
    prop_assert!(s.validate().is_ok());
    if matches!(s, State::Set(_) | State::Map(_)) {
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

proptest! {
    // 96 cases unless PROPTEST_CASES says otherwise (for longer runs).
    #![proptest_config(ProptestConfig { cases: cases(96), failure_persistence: None, ..ProptestConfig::default() })]

    /// Registers: writes and deletes with blind, current or stale contexts.
    #[test]
    fn register_merge_laws_and_convergence(
        steps in steps(proptest::option::of(0u8..6)),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let h = run(
            BucketType::Register,
            &steps,
            |op, read, now| Update::Register {
                ctx: dot_context(read),
                value: match op {
                    Some(v) => RegValue::Data(vec![*v]),
                    None => RegValue::Tombstone { deleted_ms: now },
                },
            },
            |_| {},
        )?;
        check_laws(&h.snapshots, &picks)?;
        check_convergence(&h, &orders, seed)?;
    }

    /// Counters: the converged value is the sum of every increment.
    #[test]
    fn counter_merge_laws_and_convergence(
        steps in steps(-5i64..6),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let mut sum = 0i64;
        let h = run(BucketType::Counter, &steps, |by, _, _| inc(*by), |e| sum += *e.op)?;
        check_laws(&h.snapshots, &picks)?;
        let all = check_convergence(&h, &orders, seed)?;
        let any_effect = steps.iter().any(|s| matches!(s, Step::Update { op, .. } if *op != 0));
        prop_assert_eq!(counter(&all), any_effect.then_some(sum));
    }

    /// Sets: the converged members are exactly those with an add (dot) that
    /// no remove of that member covered (observed-remove, add wins).
    #[test]
    fn set_merge_laws_and_convergence(
        steps in steps((proptest::collection::vec(member(), 0..3), proptest::collection::vec(member(), 0..3))),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let actors = ACTORS.map(actor);
        let mut adds: Vec<(Vec<u8>, Actor, u64)> = Vec::new();
        let mut removes: Vec<(Vec<u8>, VClock<Actor>)> = Vec::new();
        let h = run(
            BucketType::Set,
            &steps,
            |(add, remove): &SetOp, read, _| Update::Data {
                op: DataOp::SetUpdate { add: add.clone(), remove: remove.clone() },
                ctx: clock_of(read),
            },
            |e| {
                let (add, remove) = e.op;
                let ctx = clock_of(e.read);
                removes.extend(remove.iter().map(|m| (m.clone(), ctx.clone())));
                let me = &actors[e.at];
                let dot = read_clock(e.before).get(me) + 1;
                adds.extend(add.iter().map(|m| (m.clone(), me.clone(), dot)));
                if !add.is_empty() {
                    assert_eq!(read_clock(e.after).get(me), dot, "the add's dot");
                }
            },
        )?;
        check_laws(&h.snapshots, &picks)?;
        let all = check_convergence(&h, &orders, seed)?;
        let expected: BTreeSet<Vec<u8>> = adds
            .iter()
            .filter(|(m, a, d)| !removes.iter().any(|(r, c)| r == m && c.get(a) >= *d))
            .map(|(m, _, _)| m.clone())
            .collect();
        let got: BTreeSet<Vec<u8>> = match all.read() {
            Reading::Data(Some(DataValue::Set(m)), _) => m.into_iter().collect(),
            _ => BTreeSet::new(),
        };
        prop_assert_eq!(got, expected);
        prop_assert_eq!(set_deferred(&all), 0, "every remove's clock was reached");
    }

    /// Maps: 1-3 field operations per update on two names and every kind
    /// (set removes and flag disables with the read's context), without
    /// removals of whole fields. Converged counter fields hold the sum of
    /// their increments.
    #[test]
    fn map_merge_laws_and_convergence(
        steps in steps(proptest::collection::vec(map_op(false), 1..4)),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        let h = run(
            BucketType::Map,
            &steps,
            |ops: &Vec<MapOp>, read, _| map_up(ops.clone(), clock_of(read)),
            |e| {
                for op in e.op {
                    if let MapOp::Increment { field, by } = op {
                        *sums.entry(field.clone()).or_default() += by;
                    }
                }
            },
        )?;
        check_laws(&h.snapshots, &picks)?;
        let all = check_convergence(&h, &orders, seed)?;
        for name in ["f", "g"] {
            prop_assert_eq!(
                field(&all, name, FieldKind::Counter),
                sums.get(name).map(|v| FieldValue::Counter(*v))
            );
        }
    }

    /// The same with removals of whole fields, whose context may be ahead of
    /// the coordinator (a read of another replica: pending removals). The
    /// converged map is checked against the observed-remove semantics (see
    /// `check_map_model`).
    #[test]
    fn map_merge_laws_and_convergence_with_field_removals(
        steps in steps(proptest::collection::vec(map_op(true), 1..4)),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let actors = ACTORS.map(actor);
        let mut log: MapLog = Vec::new();
        let h = run(
            BucketType::Map,
            &steps,
            |ops: &Vec<MapOp>, read, _| map_up(ops.clone(), clock_of(read)),
            |e| {
                // The dot each operation took: applied one at a time, they
                // take the same dots as in one update.
                let (me, ctx) = (&actors[e.at], clock_of(e.read));
                let mut s = e.before.clone();
                for op in e.op {
                    let before = read_clock(&s).get(me);
                    apply(&mut s, me, map_up(vec![op.clone()], ctx.clone()));
                    let after = read_clock(&s).get(me);
                    // A field removal's dot is held by no field.
                    let holds = after > before && !matches!(op, MapOp::RemoveField { .. });
                    log.push((op.clone(), holds.then(|| (me.clone(), after)), ctx.clone()));
                }
                assert_eq!(read_clock(&s), read_clock(e.after), "the same dots one at a time");
            },
        )?;
        check_laws(&h.snapshots, &picks)?;
        let all = check_convergence(&h, &orders, seed)?;
        check_map_model(&all, &log)?;
    }

    /// LWW registers: the converged value is the one of the highest stamp,
    /// whatever the (possibly backwards) clock did.
    #[test]
    fn lww_merge_laws_and_convergence(
        steps in steps(proptest::option::of(0u8..6)),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let mut writes: Vec<(Stamp, Option<Vec<u8>>)> = Vec::new();
        let h = run(
            BucketType::Lww,
            &steps,
            |op, _, _| Update::Lww(op.map(|v| vec![v])),
            |e| {
                let s = stamp(e.after);
                assert!(s > stamp(e.before), "a write raises the stamp");
                writes.push((s, e.op.map(|v| vec![v])));
            },
        )?;
        check_laws(&h.snapshots, &picks)?;
        let all = check_convergence(&h, &orders, seed)?;
        let stamps: BTreeSet<&Stamp> = writes.iter().map(|w| &w.0).collect();
        prop_assert_eq!(stamps.len(), writes.len(), "stamps are unique");
        let last = writes.iter().max_by(|x, y| x.0.cmp(&y.0));
        prop_assert_eq!(all.read(), Reading::Lww(last.and_then(|w| w.1.clone())));
    }
}

// ---------------------------------------------------------------------------
// Counters

#[test]
fn counter_increments_and_decrements_sum() {
    let (a, b_, c) = (actor("a"), actor("b"), actor("c"));
    let mut ra = State::empty(BucketType::Counter);
    assert_eq!(counter(&ra), None, "an empty counter reads as no data");
    let (mut rb, mut rc) = (ra.clone(), ra.clone());
    apply(&mut ra, &a, inc(5));
    apply(&mut ra, &a, inc(-2));
    apply(&mut rb, &b_, inc(10));
    apply(&mut rc, &c, inc(-7));
    apply(&mut rc, &c, inc(-1));
    let ab = joined(&ra, &rb);
    apply(&mut rb, &b_, inc(4)); // after b's state was copied: concurrent
    let all = joined(&joined(&ab, &rc), &rb);
    assert_eq!(counter(&all), Some(5 - 2 + 10 - 7 - 1 + 4));
    assert_eq!(counter(&joined(&rc, &ab)), Some(5 - 2 + 10 - 7 - 1));
    // A stale copy merged again changes nothing.
    assert_eq!(joined(&all, &ra), all);
    assert_eq!(
        read_clock(&all),
        VClock::new(),
        "counters hand out no clock"
    );
}

#[test]
fn counter_value_saturates_at_the_i64_bounds() {
    let mut up = State::empty(BucketType::Counter);
    apply(&mut up, &actor("a"), inc(i64::MAX));
    apply(&mut up, &actor("b"), inc(i64::MAX));
    assert_eq!(counter(&up), Some(i64::MAX));
    let mut down = State::empty(BucketType::Counter);
    apply(&mut down, &actor("a"), inc(i64::MIN));
    apply(&mut down, &actor("b"), inc(i64::MIN));
    assert_eq!(counter(&down), Some(i64::MIN));
    apply(&mut down, &actor("c"), inc(i64::MAX));
    apply(&mut down, &actor("c"), inc(i64::MAX));
    assert_eq!(counter(&down), Some(-2));
}

// ---------------------------------------------------------------------------
// Sets

#[test]
fn set_remove_removes_only_the_observed_adds() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Set);
    apply(&mut ra, &a, set_up(&["x", "y"], &[], VClock::new()));
    let mut rb = ra.clone();
    let seen = read_clock(&ra);
    // After the read: b adds x again (concurrently), and a re-adds y itself.
    apply(&mut rb, &b_, set_up(&["x"], &[], VClock::new()));
    apply(&mut ra, &a, set_up(&["y"], &[], VClock::new()));
    // The client removes both with the context of its read, through a.
    apply(&mut ra, &a, set_up(&[], &["x", "y"], seen));
    assert_eq!(
        members(&ra),
        vec!["y"],
        "the re-add after the read survives"
    );
    let all = joined(&ra, &rb);
    assert_eq!(
        members(&all),
        vec!["x", "y"],
        "add wins over a concurrent remove"
    );
    assert_eq!(members(&joined(&rb, &ra)), vec!["x", "y"]);

    // A remove with the context of a read that saw everything removes it.
    let mut done = all.clone();
    apply(&mut done, &b_, set_up(&[], &["x", "y"], read_clock(&all)));
    assert!(members(&done).is_empty());
    assert_eq!(members(&joined(&rb, &done)), Vec::<String>::new());
    assert_eq!(members(&joined(&ra, &done)), Vec::<String>::new());
}

#[test]
fn set_remove_with_an_empty_context_removes_nothing() {
    let mut s = State::empty(BucketType::Set);
    apply(&mut s, &actor("a"), set_up(&["x"], &[], VClock::new()));
    let before = encode_record(&s);
    let clock = read_clock(&s);
    apply(&mut s, &actor("b"), set_up(&[], &["x"], VClock::new()));
    assert_eq!(members(&s), vec!["x"]);
    // Only the clock changed: the update's own dot (held by no member).
    let mut expected = clock.clone();
    expected.apply(crdts::Dot::new(actor("b"), 1));
    assert_eq!(read_clock(&s), expected);
    assert_ne!(encode_record(&s), before);
    // Removing and adding in one update: the add (fresh dot) stays.
    let seen = read_clock(&s);
    apply(&mut s, &actor("a"), set_up(&["z"], &["z"], seen));
    assert_eq!(members(&s), vec!["x", "z"]);
}

#[test]
fn set_remove_ahead_of_the_replica_waits_for_the_adds_it_saw() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Set);
    apply(&mut ra, &a, set_up(&["x"], &[], VClock::new()));
    apply(&mut ra, &a, set_up(&["y"], &[], VClock::new()));
    // The client read a, but the remove is coordinated by b, which has seen
    // nothing yet: b defers it.
    let mut rb = State::empty(BucketType::Set);
    apply(&mut rb, &b_, set_up(&["w"], &["x"], read_clock(&ra)));
    assert_eq!(set_deferred(&rb), 1);
    assert_eq!(members(&rb), vec!["w"]);
    for all in [joined(&ra, &rb), joined(&rb, &ra)] {
        assert_eq!(members(&all), vec!["w", "y"]);
        assert_eq!(set_deferred(&all), 0, "applied once seen");
    }
}

// ---------------------------------------------------------------------------
// Maps

#[test]
fn map_concurrent_updates_of_different_fields_both_survive() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Map);
    apply(&mut ra, &a, map_up(vec![m_inc("n", 1)], VClock::new()));
    let mut rb = ra.clone();
    apply(
        &mut ra,
        &a,
        map_up(vec![m_add("s", &["x"]), m_inc("n", 2)], VClock::new()),
    );
    apply(
        &mut rb,
        &b_,
        map_up(
            vec![m_reg("r", "v"), m_flag("f", true), m_inc("n", 4)],
            VClock::new(),
        ),
    );
    for all in [joined(&ra, &rb), joined(&rb, &ra)] {
        assert_eq!(
            field(&all, "n", FieldKind::Counter),
            Some(FieldValue::Counter(7))
        );
        assert_eq!(
            field_strings(&all, "s", FieldKind::Set),
            Some(vec!["x".into()])
        );
        assert_eq!(
            field_strings(&all, "r", FieldKind::Register),
            Some(vec!["v".into()])
        );
        assert_eq!(
            field(&all, "f", FieldKind::Flag),
            Some(FieldValue::Flag(true))
        );
    }
    // A name holds one field per kind.
    let mut m = State::empty(BucketType::Map);
    apply(
        &mut m,
        &a,
        map_up(vec![m_inc("x", 1), m_add("x", &["e"])], VClock::new()),
    );
    assert_eq!(
        field(&m, "x", FieldKind::Counter),
        Some(FieldValue::Counter(1))
    );
    assert_eq!(
        field_strings(&m, "x", FieldKind::Set),
        Some(vec!["e".into()])
    );
}

/// The state both removal tests start from, at replica a: counter `n` (a +5,
/// b +10), set `s` {x} and register `r` "v1", all seen by replica b.
fn map_before_removal() -> State {
    let mut s = State::empty(BucketType::Map);
    apply(
        &mut s,
        &actor("a"),
        map_up(
            vec![m_inc("n", 5), m_add("s", &["x"]), m_reg("r", "v1")],
            VClock::new(),
        ),
    );
    apply(
        &mut s,
        &actor("b"),
        map_up(vec![m_inc("n", 10)], VClock::new()),
    );
    s
}

fn remove_nsr(s: &mut State, who: &Actor, ctx: VClock<Actor>) {
    let ops = vec![
        m_drop("n", FieldKind::Counter),
        m_drop("s", FieldKind::Set),
        m_drop("r", FieldKind::Register),
    ];
    apply(s, who, map_up(ops, ctx));
}

fn update_nsr(s: &mut State, who: &Actor) {
    // Blind updates (no context): made without seeing the removal.
    let ops = vec![m_inc("n", 3), m_add("s", &["y"]), m_reg("r", "v2")];
    apply(s, who, map_up(ops, VClock::new()));
}

/// A field removal concurrent with an update of that field, the update made
/// through ANOTHER coordinator than the one whose dots the remover saw: the
/// field survives with exactly the unobserved updates (reset-remove):
/// - counter: only the concurrent increment, 3 (a's 5 and b's 10 are gone);
/// - set: only the concurrent add, {y} (x was observed: removed);
/// - register: only the concurrent write, {v2} (v1 was observed: removed).
#[test]
fn map_field_removal_concurrent_with_an_update_elsewhere_keeps_the_unseen_update() {
    let base = map_before_removal();
    let (mut remover, mut updater) = (base.clone(), base.clone());
    remove_nsr(&mut remover, &actor("b"), read_clock(&base));
    assert_eq!(field(&remover, "n", FieldKind::Counter), None);
    assert_eq!(field(&remover, "s", FieldKind::Set), None);
    assert_eq!(field(&remover, "r", FieldKind::Register), None);
    update_nsr(&mut updater, &actor("c"));
    for all in [joined(&remover, &updater), joined(&updater, &remover)] {
        assert_eq!(
            field(&all, "n", FieldKind::Counter),
            Some(FieldValue::Counter(3))
        );
        assert_eq!(
            field_strings(&all, "s", FieldKind::Set),
            Some(vec!["y".into()])
        );
        assert_eq!(
            field_strings(&all, "r", FieldKind::Register),
            Some(vec!["v2".into()])
        );
    }
}

/// The same race, but the concurrent update goes through the coordinator
/// (a) whose earlier dots the remover saw. The removal drops exactly the
/// dots it saw, whoever made them:
/// - set: {y} (x, added by a and observed, stays removed);
/// - register: {v2} (a's observed v1 is gone);
/// - counter: 8 = a's whole total (5 + 3); b's 10 (b's latest increment was
///   seen by the remover) is gone. The one documented exception: a counter
///   field keeps one entry per actor (its total, as of its latest dot, as in
///   Riak's embedded counter), so a's new increment carries a's earlier,
///   observed ones forward. Keeping each increment apart would make the
///   state grow with every increment.
///
/// (`crdts::Map`, the previous implementation, kept x and v1 here too, and
/// with a third replica its outcome depended on the order of the merges:
/// see `map_field_removal_merges_do_not_depend_on_their_order`.)
#[test]
fn map_field_removal_concurrent_with_an_update_through_the_same_actor() {
    let base = map_before_removal();
    let (mut remover, mut updater) = (base.clone(), base.clone());
    remove_nsr(&mut remover, &actor("b"), read_clock(&base));
    update_nsr(&mut updater, &actor("a"));
    for all in [joined(&remover, &updater), joined(&updater, &remover)] {
        assert_eq!(
            field(&all, "n", FieldKind::Counter),
            Some(FieldValue::Counter(8))
        );
        assert_eq!(
            field_strings(&all, "s", FieldKind::Set),
            Some(vec!["y".into()])
        );
        assert_eq!(
            field_strings(&all, "r", FieldKind::Register),
            Some(vec!["v2".into()])
        );
    }
}

#[test]
fn map_field_removal_that_saw_everything_removes_the_field_everywhere() {
    let base = map_before_removal();
    let mut remover = base.clone();
    remove_nsr(&mut remover, &actor("c"), read_clock(&base));
    for all in [joined(&remover, &base), joined(&base, &remover)] {
        match all.read() {
            Reading::Data(Some(DataValue::Map(m)), _) => assert!(m.fields.is_empty(), "{m:?}"),
            other => panic!("{other:?}"),
        }
    }
    // Re-created later: starts from zero.
    let mut again = joined(&remover, &base);
    apply(
        &mut again,
        &actor("a"),
        map_up(vec![m_inc("n", 1)], VClock::new()),
    );
    assert_eq!(
        field(&again, "n", FieldKind::Counter),
        Some(FieldValue::Counter(1))
    );
}

/// Removes inside a set field and disabling a flag act on what the client's
/// read observed, even when other fields (or other actors) moved the map's
/// clock past the field's own.
#[test]
fn map_set_remove_and_flag_disable_act_on_the_read_context() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut m = State::empty(BucketType::Map);
    apply(
        &mut m,
        &b_,
        map_up(vec![m_add("s", &["x"]), m_flag("f", true)], VClock::new()),
    );
    apply(
        &mut m,
        &a,
        map_up(vec![m_add("s", &["y"]), m_inc("n", 1)], VClock::new()),
    );
    apply(&mut m, &b_, map_up(vec![m_inc("n", 1)], VClock::new()));
    let seen = read_clock(&m);
    apply(
        &mut m,
        &a,
        map_up(vec![m_rm("s", &["x", "y"]), m_flag("f", false)], seen),
    );
    assert_eq!(field_strings(&m, "s", FieldKind::Set), Some(vec![]));
    assert_eq!(
        field(&m, "f", FieldKind::Flag),
        Some(FieldValue::Flag(false))
    );
    // With an empty context, neither removes anything.
    apply(
        &mut m,
        &a,
        map_up(vec![m_add("s", &["z"]), m_flag("f", true)], VClock::new()),
    );
    apply(
        &mut m,
        &a,
        map_up(vec![m_rm("s", &["z"]), m_flag("f", false)], VClock::new()),
    );
    assert_eq!(
        field_strings(&m, "s", FieldKind::Set),
        Some(vec!["z".into()])
    );
    assert_eq!(
        field(&m, "f", FieldKind::Flag),
        Some(FieldValue::Flag(true))
    );
}

/// The lost-update trap of `MVReg`: two writes through the same coordinator
/// with the same context must both survive (as siblings), never one
/// silently replacing the other.
#[test]
fn map_register_field_concurrent_writes_through_one_actor_are_siblings() {
    let a = actor("a");
    let mut m = State::empty(BucketType::Map);
    apply(&mut m, &a, map_up(vec![m_reg("r", "base")], VClock::new()));
    let seen = read_clock(&m);
    apply(&mut m, &a, map_up(vec![m_reg("r", "w1")], seen.clone()));
    apply(&mut m, &a, map_up(vec![m_reg("r", "w2")], seen.clone()));
    assert_eq!(
        field_strings(&m, "r", FieldKind::Register),
        Some(vec!["w1".into(), "w2".into()])
    );
    // Also when another field's update moved the map's clock in between,
    // and with a concurrent write with that context at another replica.
    let mut other = m.clone();
    apply(
        &mut m,
        &a,
        map_up(vec![m_inc("n", 1), m_reg("r", "w3")], seen.clone()),
    );
    apply(
        &mut other,
        &actor("b"),
        map_up(vec![m_reg("r", "w4")], seen),
    );
    let all = joined(&m, &other);
    assert_eq!(
        field_strings(&all, "r", FieldKind::Register),
        Some(vec!["w1".into(), "w2".into(), "w3".into(), "w4".into()])
    );
    // A write with the context of a read of all resolves them.
    let ctx = read_clock(&all);
    let mut resolved = all.clone();
    apply(&mut resolved, &a, map_up(vec![m_reg("r", "one")], ctx));
    assert_eq!(
        field_strings(&resolved, "r", FieldKind::Register),
        Some(vec!["one".into()])
    );
    assert_eq!(joined(&all, &resolved), resolved);
}

/// A map register write supersedes what its client read, even values the
/// coordinator has not received yet (the register keeps the client's
/// context), and only those.
#[test]
fn map_register_field_write_supersedes_what_its_client_saw() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut rb = State::empty(BucketType::Map);
    apply(&mut rb, &b_, map_up(vec![m_reg("g", "x")], VClock::new()));
    // The client read b, and writes through a, which has not seen b's write.
    let mut ra = State::empty(BucketType::Map);
    apply(&mut ra, &a, map_up(vec![m_reg("g", "y")], read_clock(&rb)));
    for both in [joined(&ra, &rb), joined(&rb, &ra)] {
        assert_eq!(
            field_strings(&both, "g", FieldKind::Register),
            Some(vec!["y".into()])
        );
    }
    // A blind write at b meanwhile is a sibling.
    apply(&mut rb, &b_, map_up(vec![m_reg("g", "z")], VClock::new()));
    assert_eq!(
        field_strings(&joined(&ra, &rb), "g", FieldKind::Register),
        Some(vec!["y".into(), "z".into()])
    );
}

/// A removed register field written again: a stale copy of its old value
/// must not come back (the new register's context covers the old dots).
#[test]
fn map_register_field_removed_and_written_again_drops_stale_values() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Map);
    apply(&mut ra, &a, map_up(vec![m_reg("g", "old")], VClock::new()));
    let stale = ra.clone();
    let mut rb = ra.clone();
    apply(
        &mut rb,
        &b_,
        map_up(vec![m_drop("g", FieldKind::Register)], read_clock(&ra)),
    );
    ra.merge(rb.clone()).unwrap();
    apply(&mut ra, &a, map_up(vec![m_reg("g", "new")], VClock::new()));
    for all in [
        joined(&ra, &stale),
        joined(&stale, &ra),
        joined(&joined(&stale, &rb), &ra),
        joined(&stale, &joined(&rb, &ra)),
    ] {
        assert_eq!(
            field_strings(&all, "g", FieldKind::Register),
            Some(vec!["new".into()])
        );
    }
}

/// Regression (`crdts::Map`, the previous implementation): a field removal
/// whose context saw some of an actor's updates of the field, merged with a
/// later update of the field by the same actor, gave a result that depended
/// on the order of the merges. That map kept one clock entry per actor and
/// field (its latest dot), so once the entry said `c:2`, it could not tell
/// that `c:1` had been removed: merged into a replica holding the field,
/// the removal reset exactly the dots it saw (m0 went, m1 stayed); merged
/// into a replica without the field, a later copy of the field with `c:2`
/// came back whole (m0 resurrected). Here the removal (through a, which has
/// seen none of c's adds) is pending until c's dots arrive, and drops
/// exactly c:1 in either order.
#[test]
fn map_field_removal_merges_do_not_depend_on_their_order() {
    let (a, c) = (actor("a"), actor("c"));
    let mut x = State::empty(BucketType::Map);
    apply(&mut x, &c, map_up(vec![m_add("g", &["m0"])], VClock::new()));
    let mut z = x.clone();
    apply(&mut z, &c, map_up(vec![m_add("g", &["m1"])], VClock::new()));
    // A client read x and removes the field through a, which has seen
    // nothing yet: a defers the removal.
    let mut y = State::empty(BucketType::Map);
    apply(
        &mut y,
        &a,
        map_up(vec![m_drop("g", FieldKind::Set)], read_clock(&x)),
    );
    let left = joined(&joined(&x, &y), &z);
    let right = joined(&x, &joined(&y, &z));
    assert_eq!(
        field_strings(&right, "g", FieldKind::Set),
        Some(vec!["m1".into()])
    );
    assert_eq!(
        field_strings(&left, "g", FieldKind::Set),
        Some(vec!["m1".into()]),
        "m0 resurrected"
    );
}

/// Regression: a set remove (or flag disable) takes a map dot that the set's
/// own clock did not record, so a field removal that covered the set's dots
/// but not that one kept the field but emptied its clock; merging a stale
/// copy of the field then brought the removed members back, and merges of
/// the same states in different orders disagreed.
#[test]
fn map_set_field_emptied_by_a_removal_stays_empty() {
    let b_ = actor("b");
    let mut rb = State::empty(BucketType::Map);
    apply(
        &mut rb,
        &b_,
        map_up(vec![m_add("s", &["x"]), m_flag("f", true)], VClock::new()),
    );
    let stale = rb.clone();
    let seen = read_clock(&rb);
    // Removes with no context remove nothing, but take map dots.
    apply(
        &mut rb,
        &b_,
        map_up(vec![m_rm("s", &["x"]), m_flag("f", false)], VClock::new()),
    );
    apply(
        &mut rb,
        &b_,
        map_up(
            vec![m_drop("s", FieldKind::Set), m_drop("f", FieldKind::Flag)],
            seen,
        ),
    );
    assert_eq!(field_strings(&rb, "s", FieldKind::Set), Some(vec![]));
    assert_eq!(
        field(&rb, "f", FieldKind::Flag),
        Some(FieldValue::Flag(false))
    );
    for all in [joined(&rb, &stale), joined(&stale, &rb)] {
        assert_eq!(all, rb, "the stale copy is older: nothing changes");
        assert_eq!(encode_record(&all), encode_record(&rb));
    }
}

/// Regression: an LWW field kept one `LWWReg`, which a field removal cannot
/// reset, so the value of a write the remover saw outlived the removal on
/// some replicas (depending on merge order) but not on others.
#[test]
fn map_lww_field_removal_forgets_exactly_the_writes_it_saw() {
    let (a, b_, c) = (actor("a"), actor("b"), actor("c"));
    let mut ra = State::empty(BucketType::Map);
    ra.coordinate(
        &a,
        map_up(vec![m_lww("l", "A")], VClock::new()),
        0,
        5,
        &limits(),
    )
    .unwrap();
    let mut rc = State::empty(BucketType::Map);
    rc.coordinate(
        &c,
        map_up(vec![m_lww("l", "C")], VClock::new()),
        0,
        9,
        &limits(),
    )
    .unwrap();
    // b saw only c's (later) write, and removes the field.
    let mut rb = rc.clone();
    apply(
        &mut rb,
        &b_,
        map_up(vec![m_drop("l", FieldKind::Lww)], read_clock(&rc)),
    );
    let orders = [
        joined(&joined(&ra, &rc), &rb),
        joined(&ra, &joined(&rc, &rb)),
        joined(&joined(&ra, &rb), &rc),
        joined(&rb, &joined(&rc, &ra)),
    ];
    for all in &orders {
        assert_eq!(
            field(all, "l", FieldKind::Lww),
            Some(FieldValue::Lww(b("A")))
        );
        assert_eq!(encode_record(all), encode_record(&orders[0]));
    }
}

#[test]
fn map_flag_enable_wins() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Map);
    apply(&mut ra, &a, map_up(vec![m_flag("f", true)], VClock::new()));
    let mut rb = ra.clone();
    let seen = read_clock(&rb);
    apply(&mut rb, &b_, map_up(vec![m_flag("f", false)], seen.clone()));
    assert_eq!(
        field(&rb, "f", FieldKind::Flag),
        Some(FieldValue::Flag(false))
    );
    // Without a concurrent enable, the disable holds everywhere.
    assert_eq!(
        field(&joined(&ra, &rb), "f", FieldKind::Flag),
        Some(FieldValue::Flag(false))
    );
    // A concurrent enable (the disabler did not see it) wins.
    apply(&mut ra, &a, map_up(vec![m_flag("f", true)], seen));
    for all in [joined(&ra, &rb), joined(&rb, &ra)] {
        assert_eq!(
            field(&all, "f", FieldKind::Flag),
            Some(FieldValue::Flag(true))
        );
    }
}

#[test]
fn map_lww_field_later_write_wins() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Map);
    ra.coordinate(
        &a,
        map_up(vec![m_lww("l", "first")], VClock::new()),
        0,
        100,
        &limits(),
    )
    .unwrap();
    let mut rb = ra.clone();
    // b's clock is behind, but its write is later than what it holds.
    rb.coordinate(
        &b_,
        map_up(vec![m_lww("l", "second")], VClock::new()),
        0,
        50,
        &limits(),
    )
    .unwrap();
    for all in [joined(&ra, &rb), joined(&rb, &ra)] {
        assert_eq!(
            field(&all, "l", FieldKind::Lww),
            Some(FieldValue::Lww(b("second")))
        );
    }
}

/// A removed LWW field written again by the same coordinator in the same
/// millisecond (or with its clock set back) gets a stamp equal to the one of
/// its first value, which a replica that missed the removal still holds.
/// The merge must still converge.
#[test]
fn map_lww_field_rewritten_after_removal_with_an_equal_stamp_converges() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Map);
    ra.coordinate(
        &a,
        map_up(vec![m_lww("l", "old")], VClock::new()),
        0,
        5,
        &limits(),
    )
    .unwrap();
    let stale = ra.clone(); // replica c: never sees the removal
    let mut rb = ra.clone();
    apply(
        &mut rb,
        &b_,
        map_up(vec![m_drop("l", FieldKind::Lww)], read_clock(&ra)),
    );
    ra.merge(rb).unwrap();
    assert_eq!(field(&ra, "l", FieldKind::Lww), None);
    ra.coordinate(
        &a,
        map_up(vec![m_lww("l", "new")], VClock::new()),
        0,
        5,
        &limits(),
    )
    .unwrap();
    let (x, y) = (joined(&ra, &stale), joined(&stale, &ra));
    assert_eq!(encode_record(&x), encode_record(&y));
    assert_eq!(x.read(), y.read());
}

// ---------------------------------------------------------------------------
// LWW

#[test]
fn lww_later_stamp_wins_and_equal_times_break_by_actor() {
    let (a, b_) = (actor("a"), actor("b"));
    let empty = State::empty(BucketType::Lww);
    assert_eq!(lww(&empty), None);
    assert_eq!(
        empty.tombstone_only(),
        None,
        "the empty register is no delete"
    );
    let (mut ra, mut rb) = (empty.clone(), empty.clone());
    ra.coordinate(&a, Update::Lww(Some(b("at-a"))), 0, 20, &limits())
        .unwrap();
    rb.coordinate(&b_, Update::Lww(Some(b("at-b"))), 0, 10, &limits())
        .unwrap();
    for all in [joined(&ra, &rb), joined(&rb, &ra)] {
        assert_eq!(lww(&all).as_deref(), Some("at-a"));
    }
    // Same millisecond: the higher actor wins, in either merge order.
    let (mut ra, mut rb) = (empty.clone(), empty.clone());
    ra.coordinate(&a, Update::Lww(Some(b("at-a"))), 0, 20, &limits())
        .unwrap();
    rb.coordinate(&b_, Update::Lww(Some(b("at-b"))), 0, 20, &limits())
        .unwrap();
    for all in [joined(&ra, &rb), joined(&rb, &ra)] {
        assert_eq!(lww(&all).as_deref(), Some("at-b"));
    }
}

#[test]
fn lww_writes_at_one_coordinator_always_raise_the_stamp() {
    let a = actor("a");
    let mut r = State::empty(BucketType::Lww);
    let mut last = stamp(&r);
    for (i, now) in [100u64, 100, 40, 0, 101, 7].into_iter().enumerate() {
        let before = r.clone();
        r.coordinate(&a, Update::Lww(Some(vec![i as u8])), 0, now, &limits())
            .unwrap();
        let s = stamp(&r);
        assert!(s > last, "{s:?} after {last:?} (now {now})");
        assert!(s.ms >= now);
        assert_eq!(
            r.read(),
            Reading::Lww(Some(vec![i as u8])),
            "the new write wins"
        );
        assert_eq!(joined(&before, &r), r);
        last = s;
    }
    // Another replica that saw those writes also writes above them.
    let mut other = r.clone();
    other
        .coordinate(&actor("b"), Update::Lww(Some(b("later"))), 0, 3, &limits())
        .unwrap();
    assert_eq!(lww(&joined(&r, &other)).as_deref(), Some("later"));
}

/// Stamps are unique per write, except that a coordinator whose copy of a
/// key was reaped has no stamp to stay above: two writes with one stamp and
/// different values must still merge the same way in either order.
#[test]
fn lww_equal_stamps_merge_deterministically() {
    let a = actor("a");
    let (mut x, mut y) = (State::empty(BucketType::Lww), State::empty(BucketType::Lww));
    x.coordinate(&a, Update::Lww(Some(b("x"))), 0, 7, &limits())
        .unwrap();
    y.coordinate(&a, Update::Lww(None), 0, 7, &limits())
        .unwrap();
    assert_eq!(stamp(&x), stamp(&y));
    assert_eq!(joined(&x, &y), joined(&y, &x));
    assert_eq!(lww(&joined(&y, &x)).as_deref(), Some("x"));
}

#[test]
fn lww_delete_is_a_tombstone() {
    let a = actor("a");
    let mut r = State::empty(BucketType::Lww);
    r.coordinate(&a, Update::Lww(Some(b("x"))), 0, 10, &limits())
        .unwrap();
    assert_eq!(r.tombstone_only(), None);
    r.coordinate(&a, Update::Lww(None), 0, 30, &limits())
        .unwrap();
    assert_eq!(lww(&r), None);
    assert_eq!(r.tombstone_only(), Some(30));
    r.coordinate(&a, Update::Lww(Some(b("y"))), 0, 20, &limits())
        .unwrap();
    assert_eq!(lww(&r).as_deref(), Some("y"), "a later write supersedes it");
    assert_eq!(r.tombstone_only(), None);
}

// ---------------------------------------------------------------------------
// Registers through `State`

#[test]
fn register_update_returns_its_own_context_and_deletes_are_tombstones() {
    let a = actor("a");
    let mut r = State::empty(BucketType::Register);
    let own = apply(
        &mut r,
        &a,
        Update::Register {
            ctx: DotContext::new(),
            value: RegValue::Data(b("x")),
        },
    );
    let own = decode_context(&own).unwrap();
    assert!(own.contains(&(a.clone(), 1)) && !own.contains(&(a.clone(), 2)));
    apply(
        &mut r,
        &a,
        Update::Register {
            ctx: DotContext::new(),
            value: RegValue::Data(b("y")),
        },
    );
    // Deleting with the first write's context leaves y.
    apply(
        &mut r,
        &a,
        Update::Register {
            ctx: own,
            value: RegValue::Tombstone { deleted_ms: 9 },
        },
    );
    assert!(matches!(r.read(), Reading::Register(v, _) if v == vec![b("y")]));
    assert_eq!(r.tombstone_only(), None);
    let Reading::Register(_, all) = r.read() else {
        unreachable!()
    };
    apply(
        &mut r,
        &a,
        Update::Register {
            ctx: all,
            value: RegValue::Tombstone { deleted_ms: 11 },
        },
    );
    assert_eq!(r.tombstone_only(), Some(11));
    assert_eq!(r.own_counter(&a), 4);
}

// ---------------------------------------------------------------------------
// Refusals

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

#[test]
fn wrong_op_is_refused_and_changes_nothing() {
    let updates: Vec<(BucketType, Update, &str)> = vec![
        (
            BucketType::Register,
            Update::Register {
                ctx: DotContext::new(),
                value: RegValue::Data(b("w")),
            },
            "register write",
        ),
        (BucketType::Lww, Update::Lww(Some(b("w"))), "lww write"),
        (BucketType::Counter, inc(1), "counter increment"),
        (
            BucketType::Set,
            set_up(&["w"], &[], VClock::new()),
            "set update",
        ),
        (
            BucketType::Map,
            map_up(vec![m_inc("w", 1)], VClock::new()),
            "map update",
        ),
    ];
    for s in samples() {
        for (t, u, name) in &updates {
            if *t == s.bucket_type() {
                continue;
            }
            let mut x = s.clone();
            let err = x
                .coordinate(&actor("b"), u.clone(), 0, 1, &limits())
                .unwrap_err();
            assert_eq!(
                err,
                ValueError::WrongOp {
                    bucket_type: s.bucket_type(),
                    op: name,
                }
            );
            assert_eq!(x, s);
            assert_eq!(encode_record(&x), encode_record(&s));
        }
    }
}

#[test]
fn merging_two_types_is_refused_and_changes_nothing() {
    let all = samples();
    for s in &all {
        for o in &all {
            let mut x = s.clone();
            let r = x.merge(o.clone());
            if s.bucket_type() == o.bucket_type() {
                assert_eq!(r, Ok(()));
                continue;
            }
            assert_eq!(
                r,
                Err(ValueError::TypeMismatch {
                    expected: s.bucket_type(),
                    found: o.bucket_type(),
                })
            );
            assert_eq!(&x, s);
            assert_eq!(encode_record(&x), encode_record(s));
        }
        // The empty state of another type too.
        let other = if s.bucket_type() == BucketType::Set {
            BucketType::Map
        } else {
            BucketType::Set
        };
        let mut x = s.clone();
        assert!(x.merge(State::empty(other)).is_err());
        assert_eq!(&x, s);
    }
}

/// Applies `u` with `limits`, expecting `TooLarge { what, size, max }` and
/// no change at all.
fn refused(s: &State, u: Update, l: ValueLimits, what: Limit, size: u64, max: u64) {
    let mut x = s.clone();
    let err = x.coordinate(&actor("a"), u, 0, 1, &l).unwrap_err();
    assert_eq!(err, ValueError::TooLarge { what, size, max });
    assert_eq!(&x, s, "a refused update changes nothing");
    assert_eq!(encode_record(&x), encode_record(s));
}

#[test]
fn limits_are_enforced_and_a_refused_update_changes_nothing() {
    let a = actor("a");
    let small = ValueLimits {
        max_siblings: 2,
        max_set_members: 2,
        max_map_fields: 2,
        max_state_bytes: 1 << 20,
    };

    // Set members.
    let mut set = State::empty(BucketType::Set);
    set.coordinate(&a, set_up(&["x", "y"], &[], VClock::new()), 0, 1, &small)
        .unwrap();
    refused(
        &set,
        set_up(&["z"], &[], VClock::new()),
        small,
        Limit::SetMembers,
        3,
        2,
    );
    // Adding and removing at once stays within the bound.
    let mut ok = set.clone();
    ok.coordinate(&a, set_up(&["z"], &["x"], read_clock(&set)), 0, 1, &small)
        .unwrap();
    assert_eq!(members(&ok), vec!["y", "z"]);

    // Members of a map's set field, and map fields.
    let mut map = State::empty(BucketType::Map);
    map.coordinate(
        &a,
        map_up(vec![m_add("s", &["x", "y"]), m_inc("n", 1)], VClock::new()),
        0,
        1,
        &small,
    )
    .unwrap();
    refused(
        &map,
        map_up(vec![m_add("s", &["z"])], VClock::new()),
        small,
        Limit::SetMembers,
        3,
        2,
    );
    refused(
        &map,
        map_up(vec![m_flag("f", true)], VClock::new()),
        small,
        Limit::MapFields,
        3,
        2,
    );
    refused(
        &map,
        map_up(
            vec![m_inc("n", 1), m_lww("s", "same name, other kind")],
            VClock::new(),
        ),
        small,
        Limit::MapFields,
        3,
        2,
    );

    // Register siblings.
    let mut reg = State::empty(BucketType::Register);
    for v in ["x", "y"] {
        reg.coordinate(
            &a,
            Update::Register {
                ctx: DotContext::new(),
                value: RegValue::Data(b(v)),
            },
            0,
            1,
            &small,
        )
        .unwrap();
    }
    let blind = Update::Register {
        ctx: DotContext::new(),
        value: RegValue::Data(b("z")),
    };
    refused(&reg, blind, small, Limit::Siblings, 3, 2);

    // Encoded state bytes, for every type.
    for s in samples() {
        let size = encode_record(&s).len();
        let tight = ValueLimits {
            max_state_bytes: size,
            ..limits()
        };
        let u = match s.bucket_type() {
            BucketType::Register => Update::Register {
                ctx: DotContext::new(),
                value: RegValue::Data(vec![7; 64]),
            },
            BucketType::Counter => inc(1),
            BucketType::Set => Update::Data {
                op: DataOp::SetUpdate {
                    add: vec![vec![7; 64]],
                    remove: vec![],
                },
                ctx: VClock::new(),
            },
            BucketType::Map => map_up(
                vec![MapOp::SetLww {
                    field: "big".into(),
                    value: vec![7; 64],
                }],
                VClock::new(),
            ),
            BucketType::Lww => Update::Lww(Some(vec![7; 64])),
        };
        let mut x = s.clone();
        let mut grown = s.clone();
        // By another actor (a new counter entry) so that every type grows.
        grown
            .coordinate(&actor("z"), u.clone(), 0, 1, &limits())
            .unwrap();
        let want = encode_record(&grown).len() as u64;
        assert!(want > size as u64);
        let err = x.coordinate(&actor("z"), u, 0, 1, &tight).unwrap_err();
        assert_eq!(
            err,
            ValueError::TooLarge {
                what: Limit::State,
                size: want,
                max: size as u64,
            },
            "{:?}",
            s.bucket_type()
        );
        assert_eq!(x, s, "a refused update changes nothing");
    }
}

// ---------------------------------------------------------------------------
// Encoding

#[test]
fn clock_contexts_round_trip_and_bad_ones_are_refused() {
    assert_eq!(encode_clock(&VClock::new()), Vec::<u8>::new());
    assert_eq!(decode_clock(&[]).unwrap(), VClock::new());
    let mut m = State::empty(BucketType::Map);
    apply(
        &mut m,
        &actor("a"),
        map_up(vec![m_inc("n", 1)], VClock::new()),
    );
    apply(
        &mut m,
        &actor("b"),
        map_up(vec![m_inc("n", 1)], VClock::new()),
    );
    let clock = read_clock(&m);
    let bytes = encode_clock(&clock);
    assert_eq!(bytes[0], CLOCK_CONTEXT_VERSION);
    assert_eq!(decode_clock(&bytes).unwrap(), clock);
    assert_eq!(decode_clock(&[9, 0]), Err(DecodeError::ContextVersion(9)));
    assert!(matches!(
        decode_clock(&[CLOCK_CONTEXT_VERSION, 0xff]),
        Err(DecodeError::Malformed(_))
    ));
    assert!(decode_record(&[0xff, 0xff]).is_err());
}

#[test]
fn register_records_of_the_first_format_still_decode() {
    let mut r = Register::new();
    r.write(&actor("a"), &DotContext::new(), RegValue::Data(b("x")), 0)
        .unwrap();
    // The first format: an enum whose only variant held a register.
    #[derive(serde::Serialize)]
    enum FirstFormat {
        V1(Register),
    }
    let old = postcard::to_stdvec(&FirstFormat::V1(r.clone())).unwrap();
    assert_eq!(decode_record(&old).unwrap(), State::Register(r));
}

/// Records of the types other than map are written exactly as before the
/// map changed (format 2; bytes from commit 6ae56ed), so their stored bytes
/// and anti-entropy hashes stay the same.
#[test]
fn records_of_other_types_keep_their_format_2_bytes() {
    let golden = [
        (BucketType::Register, "01000101610101000101610101000176"),
        (BucketType::Counter, "0101010161010300"),
        (BucketType::Set, "0102010161010101016d010161010100"),
        (BucketType::Lww, "01040101760101016101"),
    ];
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for s in samples() {
        if let Some((_, want)) = golden.iter().find(|(t, _)| *t == s.bucket_type()) {
            assert_eq!(hex(&encode_record(&s)), *want, "{:?}", s.bucket_type());
        }
    }
}

/// Maps holding pending removals (each coordinated by a replica that had
/// seen none of what its client read) are equal, with equal bytes, however
/// they were merged; when the dots they wait for arrive, each removes only
/// what its client saw of its own field and scope, and once the clock
/// covers them they are gone.
#[test]
fn map_pending_removals_are_canonical_and_act_only_on_their_target() {
    // Six writers, each on its own replica.
    let mut parts = Vec::new();
    for i in 0..6 {
        let mine = format!("m{i}");
        let mut s = State::empty(BucketType::Map);
        let ops = vec![
            m_add("s", &["q", &mine]),
            m_flag("f", true),
            m_reg("r", &mine),
            m_inc("n", 1),
            m_add("g", &["x"]),
        ];
        apply(&mut s, &actor(&format!("n{i}")), map_up(ops, VClock::new()));
        parts.push(s);
    }
    let ahead = parts
        .iter()
        .fold(State::empty(BucketType::Map), |acc, p| joined(&acc, p));
    // Six removals through replicas that saw nothing, with the context of a
    // read of `ahead` plus a dot of an actor z<i> that has issued nothing
    // yet (so they stay pending even once `ahead` arrives).
    let z = |i: usize| actor(&format!("z{i}"));
    let mut removals = Vec::new();
    for i in 0..6 {
        let mut ctx = read_clock(&ahead);
        ctx.apply(crdts::Dot::new(z(i), 1 + i as u64));
        let ops = match i % 3 {
            0 => vec![m_rm("s", &["q"]), m_drop("g", FieldKind::Set)],
            1 => vec![m_flag("f", false), m_reg("r", &format!("w{i}"))],
            _ => vec![
                m_drop("n", FieldKind::Counter),
                m_rm("s", &[&format!("m{i}")]),
            ],
        };
        let mut s = State::empty(BucketType::Map);
        apply(&mut s, &actor(&format!("r{i}")), map_up(ops, ctx));
        removals.push(s);
    }
    let pending = |s: &State| match s {
        State::Map(m) => m.pending_count(),
        other => panic!("not a map: {other:?}"),
    };
    let reference = removals
        .iter()
        .fold(State::empty(BucketType::Map), |acc, p| joined(&acc, p));
    // (s, q), (g), (f), (r), (n), (s, m2), (s, m5).
    assert_eq!(pending(&reference), 7);
    check_record(&reference).unwrap();
    let all = joined(&ahead, &reference);
    let expect = |all: &State| {
        assert_eq!(
            field_strings(all, "s", FieldKind::Set),
            Some(vec!["m0".into(), "m1".into(), "m3".into(), "m4".into()])
        );
        assert_eq!(field(all, "g", FieldKind::Set), None);
        assert_eq!(field(all, "n", FieldKind::Counter), None);
        assert_eq!(
            field(all, "f", FieldKind::Flag),
            Some(FieldValue::Flag(false))
        );
        assert_eq!(
            field_strings(all, "r", FieldKind::Register),
            Some(vec!["w1".into(), "w4".into()])
        );
    };
    expect(&all);
    assert_eq!(pending(&all), 7, "the z dots are still ahead");
    let bytes = encode_record(&all);
    for seed in 0..16u64 {
        let mut order = removals.clone();
        shuffle(&mut order, seed);
        let r = order
            .iter()
            .fold(State::empty(BucketType::Map), |acc, p| joined(&acc, p));
        assert_eq!(r, reference, "seed {seed}");
        assert_eq!(encode_record(&r), encode_record(&reference));
        let mut order: Vec<State> = removals.iter().chain(&parts).cloned().collect();
        shuffle(&mut order, seed);
        let x = order
            .iter()
            .fold(State::empty(BucketType::Map), |acc, p| joined(&acc, p));
        assert_eq!(x, all, "seed {seed}");
        assert_eq!(encode_record(&x), bytes, "seed {seed}");
        check_record(&x).unwrap();
    }
    // The z actors issue their dots: z1's are register writes of r, which
    // removal 1 (context z1:2) covers; the others go to a counter no
    // removal targets.
    let mut late = Vec::new();
    for i in 0..6 {
        let mut s = State::empty(BucketType::Map);
        for _ in 0..=i {
            let op = if i == 1 {
                m_reg("r", "late")
            } else {
                m_inc("other", 1)
            };
            apply(&mut s, &z(i), map_up(vec![op], VClock::new()));
        }
        late.push(s);
    }
    let done = late.iter().fold(all.clone(), |acc, p| joined(&acc, p));
    assert_eq!(pending(&done), 0, "every pending clock was reached");
    expect(&done);
    assert_eq!(
        field(&done, "other", FieldKind::Counter),
        Some(FieldValue::Counter(1 + 3 + 4 + 5 + 6))
    );
    let mut order: Vec<State> = late
        .iter()
        .chain(&removals)
        .chain(&parts)
        .cloned()
        .collect();
    shuffle(&mut order, 7);
    let x = order
        .iter()
        .fold(State::empty(BucketType::Map), |acc, p| joined(&acc, p));
    assert_eq!(x, done);
    assert_eq!(encode_record(&x), encode_record(&done));
}

/// The regression a map-wide record of a removal's context would bring:
/// merging the client's context into the map's clock would drop the
/// updates of *other* fields that the client read and the coordinator had
/// not received yet.
#[test]
fn map_removal_ahead_of_the_coordinator_keeps_the_other_fields_it_saw() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Map);
    apply(
        &mut ra,
        &a,
        map_up(
            vec![m_add("s", &["x"]), m_inc("n", 2), m_reg("r", "v")],
            VClock::new(),
        ),
    );
    // The client read a, and removes s through b, which has seen nothing.
    let mut rb = State::empty(BucketType::Map);
    apply(
        &mut rb,
        &b_,
        map_up(vec![m_drop("s", FieldKind::Set)], read_clock(&ra)),
    );
    let mut own = VClock::new();
    own.apply(crdts::Dot::new(b_.clone(), 1));
    assert_eq!(
        read_clock(&rb),
        own,
        "the removal took one dot, held by no field"
    );
    for all in [joined(&ra, &rb), joined(&rb, &ra)] {
        assert_eq!(field(&all, "s", FieldKind::Set), None);
        assert_eq!(
            field(&all, "n", FieldKind::Counter),
            Some(FieldValue::Counter(2))
        );
        assert_eq!(
            field_strings(&all, "r", FieldKind::Register),
            Some(vec!["v".into()])
        );
    }
}

/// Removes inside fields (set members, flag enables) whose context is ahead
/// of the coordinator act when the dots arrive, and only on that member.
#[test]
fn map_set_remove_and_flag_disable_ahead_of_the_coordinator_apply_on_arrival() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Map);
    apply(
        &mut ra,
        &a,
        map_up(
            vec![m_add("s", &["x", "y"]), m_flag("f", true)],
            VClock::new(),
        ),
    );
    let seen = read_clock(&ra);
    // Through b, which holds the fields from an earlier blind update of
    // its own but has not seen a's.
    let mut rb = State::empty(BucketType::Map);
    apply(
        &mut rb,
        &b_,
        map_up(vec![m_add("s", &["z"]), m_flag("f", true)], VClock::new()),
    );
    let before = rb.clone();
    apply(
        &mut rb,
        &b_,
        map_up(vec![m_rm("s", &["x"]), m_flag("f", false)], seen),
    );
    assert_eq!(
        field_strings(&rb, "s", FieldKind::Set),
        Some(vec!["z".into()]),
        "b's own add was not in the context"
    );
    assert_eq!(
        field(&rb, "f", FieldKind::Flag),
        Some(FieldValue::Flag(true)),
        "b's own enable was not in the context"
    );
    for all in [
        joined(&ra, &rb),
        joined(&rb, &ra),
        joined(&joined(&before, &ra), &rb),
    ] {
        assert_eq!(
            field_strings(&all, "s", FieldKind::Set),
            Some(vec!["y".into(), "z".into()])
        );
        assert_eq!(
            field(&all, "f", FieldKind::Flag),
            Some(FieldValue::Flag(true))
        );
        match &all {
            State::Map(m) => assert_eq!(m.pending_count(), 0),
            other => panic!("{other:?}"),
        }
    }
}

/// What a set remove or flag disable leaves does not depend on whether its
/// coordinator held the field yet.
#[test]
fn map_set_remove_and_flag_disable_leave_the_same_whoever_coordinates() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Map);
    apply(
        &mut ra,
        &a,
        map_up(vec![m_add("s", &["x"]), m_flag("f", true)], VClock::new()),
    );
    let seen = read_clock(&ra);
    let ops = vec![m_rm("s", &["x"]), m_flag("f", false)];
    let mut through_a = ra.clone();
    apply(&mut through_a, &a, map_up(ops.clone(), seen.clone()));
    let mut through_b = State::empty(BucketType::Map);
    apply(&mut through_b, &b_, map_up(ops, seen));
    for all in [joined(&ra, &through_a), joined(&ra, &through_b)] {
        assert_eq!(field_strings(&all, "s", FieldKind::Set), Some(vec![]));
        assert_eq!(
            field(&all, "f", FieldKind::Flag),
            Some(FieldValue::Flag(false))
        );
    }
}

/// A map's metadata does not grow with the number of operations: per
/// field, one support dot per actor; per set member and flag, one add dot
/// per actor; per counter, one entry per actor; per LWW field, the writes
/// not superseded.
#[test]
fn map_metadata_stays_bounded_under_repeated_updates() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut s = State::empty(BucketType::Map);
    let round = |s: &mut State, who: &Actor, i: u64| {
        let ops = vec![
            m_inc("n", 1),
            m_add("s", &["x"]),
            m_rm("s", &["y"]),
            m_flag("f", i % 2 == 0),
            m_lww("l", "v"),
        ];
        s.coordinate(who, map_up(ops, read_clock(s)), 0, i, &limits())
            .unwrap();
    };
    // Once every number in the state (dots, totals, stamps) is a two-byte
    // varint, as many rounds again as it takes to keep them so: the state
    // does not grow by a byte.
    for i in 0..131 {
        round(&mut s, &a, i);
        round(&mut s, &b_, i);
    }
    let size = encode_record(&s).len();
    for i in 131..1001 {
        round(&mut s, &a, i);
        round(&mut s, &b_, i);
    }
    assert_eq!(encode_record(&s).len(), size, "{s:?}");
    assert_eq!(
        field(&s, "n", FieldKind::Counter),
        Some(FieldValue::Counter(2002))
    );
}

/// A map state from a peer whose dots lie outside its clock, or whose field
/// contents do not match the field's kind, is refused.
#[test]
fn map_states_breaking_the_invariants_are_refused() {
    let mut s = State::empty(BucketType::Map);
    apply(
        &mut s,
        &actor("a"),
        map_up(vec![m_add("s", &["x"]), m_inc("n", 1)], VClock::new()),
    );
    assert_eq!(s.validate(), Ok(()));
    let State::Map(m) = &s else { unreachable!() };
    // Through the serialized form: (clock, fields, pending), none pending.
    type Fields = BTreeMap<FieldKey, map::FieldState>;
    let (clock, fields, _): (VClock<Actor>, Fields, u8) =
        postcard::from_bytes(&postcard::to_stdvec(m).unwrap()).unwrap();
    let rebuild = |clock: VClock<Actor>, fields: Fields| {
        let bytes = postcard::to_stdvec(&(clock, fields, 0u8)).unwrap();
        State::Map(postcard::from_bytes::<MapState>(&bytes).unwrap())
    };
    assert_eq!(rebuild(clock.clone(), fields.clone()), s);
    // A clock that lost a's dots.
    let bad = rebuild(VClock::new(), fields.clone());
    assert!(matches!(bad.validate(), Err(DecodeError::Inconsistent(_))));
    // A counter key holding the set's contents.
    let mut swapped = fields.clone();
    let set = swapped
        .remove(&FieldKey {
            name: "s".into(),
            kind: FieldKind::Set,
        })
        .unwrap();
    swapped.insert(
        FieldKey {
            name: "s".into(),
            kind: FieldKind::Counter,
        },
        set,
    );
    let bad = rebuild(clock, swapped);
    assert!(matches!(bad.validate(), Err(DecodeError::Inconsistent(_))));
}

/// A map record of format 2 (a `crdts::Map`), written by the previous code
/// (commit 6ae56ed), decodes into the same map: same values, same clock,
/// and its deferred removals become pending ones. Built as: through c,
/// {add s x, enable f, write r "rc"}; through a at time 10, {n += 5, add s
/// y z, lww l "A", write r "ra"} on another replica; through b there,
/// n -= 2; then through a with the context of c's read (not yet seen
/// there), {remove x from s, remove field g (set), remove field r
/// (register), write r2 "v2"}: the removal of r was deferred.
const MAP_RECORD_V2: &str = include_str!("map_record_v2.hex");

/// The bytes of a hex string (test fixtures).
pub(crate) fn unhex(hex: &str) -> Vec<u8> {
    let hex = hex.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn map_records_of_format_2_are_converted() {
    let bytes = unhex(MAP_RECORD_V2);
    assert!(!record_is_current(&bytes), "rewritten when next merged");
    let old = decode_record(&bytes).unwrap();
    assert_eq!(old.validate(), Ok(()));
    let mut clock = VClock::new();
    clock.apply(crdts::Dot::new(actor("a"), 6));
    clock.apply(crdts::Dot::new(actor("b"), 1));
    assert_eq!(read_clock(&old), clock);
    let expect = |s: &State, with_c: bool| {
        assert_eq!(
            field(s, "n", FieldKind::Counter),
            Some(FieldValue::Counter(3))
        );
        assert_eq!(field(s, "l", FieldKind::Lww), Some(FieldValue::Lww(b("A"))));
        assert_eq!(
            field_strings(s, "r", FieldKind::Register),
            Some(vec!["ra".into()])
        );
        assert_eq!(
            field_strings(s, "r2", FieldKind::Register),
            Some(vec!["v2".into()])
        );
        let mut members = vec!["y".to_string(), "z".to_string()];
        if with_c {
            members.insert(0, "x".into());
        }
        assert_eq!(field_strings(s, "s", FieldKind::Set), Some(members));
        let flag = with_c.then_some(FieldValue::Flag(true));
        assert_eq!(field(s, "f", FieldKind::Flag), flag);
    };
    expect(&old, false);
    check_record(&old).unwrap();
    assert_eq!(encode_record(&old)[..2], [2, 3], "re-encoded in format 3");
    assert!(record_is_current(&encode_record(&old)));
    match &old {
        State::Map(m) => assert_eq!(m.pending_count(), 3, "fields g and r, values of r2"),
        other => panic!("{other:?}"),
    }
    // c's updates arrive: the deferred removal of r drops c's value.
    let mut rc = State::empty(BucketType::Map);
    apply(
        &mut rc,
        &actor("c"),
        map_up(
            vec![m_add("s", &["x"]), m_flag("f", true), m_reg("r", "rc")],
            VClock::new(),
        ),
    );
    for all in [joined(&old, &rc), joined(&rc, &old)] {
        expect(&all, true);
        match &all {
            State::Map(m) => assert_eq!(m.pending_count(), 0),
            other => panic!("{other:?}"),
        }
    }
}

/// The same for a set with deferred removes (a remove coordinated with a
/// context ahead of the replica).
#[test]
fn set_encoding_is_canonical_with_deferred_removes() {
    let actors: Vec<Actor> = (0..6).map(|i| actor(&format!("n{i}"))).collect();
    let mut reference = State::empty(BucketType::Set);
    let mut ahead = State::empty(BucketType::Set);
    for (i, who) in actors.iter().enumerate() {
        apply(
            &mut ahead,
            who,
            set_up(&["q", &format!("a{i}")], &[], VClock::new()),
        );
    }
    // Each remove is coordinated by its own replica r<i>, with the clock
    // of a read of `ahead` plus a dot of r<i> it has not issued yet: every
    // remove clock is distinct and ahead of the replicas below.
    let mut updates = Vec::new();
    for i in 0..6 {
        let who = actor(&format!("r{i}"));
        let mut ctx = read_clock(&ahead);
        ctx.apply(crdts::Dot::new(who.clone(), 40 + i as u64));
        let remove = ["q", &format!("r{i}"), "a0"];
        updates.push((who, set_up(&[&format!("m{i}")], &remove, ctx)));
    }
    for (who, u) in &updates {
        apply(&mut reference, who, u.clone());
    }
    assert_eq!(set_deferred(&reference), 6);
    let bytes = encode_record(&reference);
    let mut plains = BTreeSet::new();
    for seed in 0..16u64 {
        let mut order = updates.clone();
        shuffle(&mut order, seed);
        let mut s = State::empty(BucketType::Set);
        for (who, u) in order {
            apply(&mut s, &who, u);
        }
        assert_eq!(s, reference);
        plains.insert(plain_bytes(&s));
        assert_eq!(encode_record(&s), bytes, "seed {seed}");
        check_record(&s).unwrap();
        // Then all the adds they wait for arrive: every remove applies.
        let all = joined(&s, &ahead);
        assert_eq!(all, joined(&ahead, &reference));
        assert_eq!(
            members(&all),
            vec!["a1", "a2", "a3", "a4", "a5", "m0", "m1", "m2", "m3", "m4", "m5"]
        );
        assert_eq!(set_deferred(&all), 6, "the extra dots are still ahead");
    }
    assert!(plains.len() > 1, "hash map orders never differed");
}

#[test]
fn counter_versions_are_per_actor_totals() {
    let mut s = State::empty(BucketType::Counter);
    apply(&mut s, &actor("a"), inc(5));
    apply(&mut s, &actor("b"), inc(-2));
    let id = |n: &str| actor(n).id();
    assert_eq!(
        s.version(),
        Version::Counter {
            inc: [(id("a"), 5)].into(),
            dec: [(id("b"), 2)].into(),
        }
    );
}
