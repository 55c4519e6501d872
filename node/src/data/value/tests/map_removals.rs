//! Maps: removals of whole fields (reset-remove against concurrent updates, merge-order independence, fields removed and written again) and pending removals.

use super::*;

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
        match all.read(0) {
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
    assert_eq!(x.read(0), y.read(0));
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
    let pending = |s: &State| match &s.body {
        Body::Map(m) => m.pending_count(),
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
