//! Maps: concurrent field updates, register, flag and LWW field semantics, set removes and flag disables by the read context (also ahead of the coordinator), bounded metadata.

use super::*;

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
        match &all.body {
            Body::Map(m) => assert_eq!(m.pending_count(), 0),
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
