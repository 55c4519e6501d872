//! Expiry: the merge laws and convergence of every type on random histories
//! whose writes have times to live (proptest), and the rules of
//! `State::coordinate_versioned`, `State::read` and `State::dead_since`:
//! what expired reads as absent, a write after expiry starts afresh without
//! bringing anything expired back, nothing a restart had not seen is lost.

use super::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(96), failure_persistence: None, ..ProptestConfig::default() })]

    /// Registers with expiring values.
    #[test]
    fn register_merge_laws_with_expiry(
        steps in steps_ttl(proptest::option::of(0u8..6)),
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

    /// Counters with lifetimes and restarts (floors).
    #[test]
    fn counter_merge_laws_with_expiry(
        steps in steps_ttl(-5i64..6),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let h = run(BucketType::Counter, &steps, |by, _, _| inc(*by), |_| {})?;
        check_laws(&h.snapshots, &picks)?;
        check_convergence(&h, &orders, seed)?;
    }

    /// Sets with lifetimes and restarts (observed members removed).
    #[test]
    fn set_merge_laws_with_expiry(
        steps in steps_ttl((proptest::collection::vec(member(), 0..3), proptest::collection::vec(member(), 0..3))),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let h = run(
            BucketType::Set,
            &steps,
            |(add, remove): &SetOp, read, _| Update::Data {
                op: DataOp::SetUpdate { add: add.clone(), remove: remove.clone() },
                ctx: clock_of(read),
            },
            |_| {},
        )?;
        check_laws(&h.snapshots, &picks)?;
        check_convergence(&h, &orders, seed)?;
    }

    /// Maps with lifetimes and restarts (observed fields removed).
    #[test]
    fn map_merge_laws_with_expiry(
        steps in steps_ttl(proptest::collection::vec(map_op(true), 1..4)),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let h = run(
            BucketType::Map,
            &steps,
            |ops: &Vec<MapOp>, read, _| map_up(ops.clone(), clock_of(read)),
            |_| {},
        )?;
        check_laws(&h.snapshots, &picks)?;
        check_convergence(&h, &orders, seed)?;
    }

    /// LWW registers whose writes may have times to live: the converged
    /// value is the highest stamp's, and it expires exactly when that
    /// write's own time to live says (another write's never applies).
    #[test]
    fn lww_merge_laws_with_expiry(
        steps in steps_ttl(proptest::option::of(0u8..6)),
        picks in picks(),
        orders in orders(),
        seed in any::<u64>(),
    ) {
        let mut writes: Vec<(Stamp, Option<Vec<u8>>, Option<u64>)> = Vec::new();
        let ttls: Vec<Option<u64>> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Update { ttl, now, .. } => Some(ttl.map(|t| now + t)),
                Step::Sync { .. } => None,
            })
            .collect();
        let mut i = 0;
        let h = run(
            BucketType::Lww,
            &steps,
            |op, _, _| Update::Lww(op.map(|v| vec![v])),
            |e| {
                writes.push((stamp(e.after), e.op.map(|v| vec![v]), ttls[i]));
                i += 1;
            },
        )?;
        check_laws(&h.snapshots, &picks)?;
        let all = check_convergence(&h, &orders, seed)?;
        let last = writes.iter().max_by(|x, y| x.0.cmp(&y.0));
        for t in 0..16 {
            let live = last.and_then(|(_, v, expires)| {
                v.clone().filter(|_| expires.is_none_or(|e| t < e))
            });
            prop_assert_eq!(all.read(t), Reading::Lww(live), "at {}", t);
        }
    }
}

fn reg_put(s: &mut State, who: &Actor, v: &str, ctx: DotContext, now: u64, ttl: Option<u64>) {
    let u = Update::Register {
        ctx,
        value: RegValue::Data(b(v)),
    };
    s.coordinate_versioned(who, u, 0, now, ttl.map(|t| now + t), &limits())
        .expect("applies");
}

fn live(s: &State, now: u64) -> Vec<String> {
    match s.read(now) {
        Reading::Register(v, _) => strings(&v),
        Reading::Lww(v) => v.map(|v| strings(&[v])).unwrap_or_default(),
        Reading::Data(Some(DataValue::Set(m)), _) => strings(&m),
        Reading::Data(Some(DataValue::Counter(c)), _) => vec![c.to_string()],
        Reading::Data(Some(DataValue::Map(m)), _) => m
            .fields
            .iter()
            .map(|(name, _, v)| format!("{name}={v:?}"))
            .collect(),
        Reading::Data(None, _) => Vec::new(),
    }
}

fn at(s: &mut State, who: &Actor, u: Update, now: u64, ttl: Option<u64>) {
    s.coordinate_versioned(who, u, 0, now, ttl.map(|t| now + t), &limits())
        .expect("applies");
}

#[test]
fn a_register_value_expires_at_its_time_everywhere_and_a_later_write_replaces_it() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Register);
    reg_put(&mut ra, &a, "v1", DotContext::new(), 100, Some(50));
    let stale = ra.clone();
    assert_eq!(live(&ra, 149), ["v1"]);
    assert_eq!(live(&ra, 150), Vec::<String>::new(), "expired at 150");
    assert_eq!(ra.dead_since(), Some(150));
    assert!(ra.expiring() && ra.hides_expired(150) && !ra.hides_expired(149));
    // A blind write after expiry replaces the expired value: no sibling.
    let mut rb = ra.clone();
    reg_put(&mut rb, &b_, "v2", DotContext::new(), 200, None);
    assert_eq!(live(&rb, 200), ["v2"]);
    assert_eq!(rb.dead_since(), None, "v2 lives for ever");
    // A stale copy holding the expired value brings nothing back, in
    // either order, at any time.
    for m in [joined(&rb, &stale), joined(&stale, &rb)] {
        assert_eq!(live(&m, 120), ["v2"]);
        assert_eq!(live(&m, 10_000), ["v2"]);
    }
}

#[test]
fn concurrent_register_values_expire_one_by_one() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ra = State::empty(BucketType::Register);
    let mut rb = State::empty(BucketType::Register);
    reg_put(&mut ra, &a, "short", DotContext::new(), 100, Some(10));
    reg_put(&mut rb, &b_, "forever", DotContext::new(), 100, None);
    let m = joined(&ra, &rb);
    assert_eq!(live(&m, 105), ["short", "forever"]);
    assert_eq!(live(&m, 110), ["forever"]);
    assert_eq!(m.dead_since(), None, "a value without expiry keeps the key");
    let mut both = State::empty(BucketType::Register);
    reg_put(&mut both, &b_, "longer", DotContext::new(), 100, Some(50));
    let m = joined(&ra, &both);
    assert_eq!(
        m.dead_since(),
        Some(150),
        "dead once the last value expired"
    );
}

#[test]
fn an_expired_set_restarts_without_its_members_and_keeps_what_it_had_not_seen() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut sa = State::empty(BucketType::Set);
    at(
        &mut sa,
        &a,
        set_up(&["old"], &[], VClock::new()),
        100,
        Some(10),
    );
    let mut sb = sa.clone();
    // b adds a member a never sees before it restarts the key.
    at(
        &mut sb,
        &b_,
        set_up(&["unseen"], &[], VClock::new()),
        105,
        None,
    );
    assert_eq!(live(&sa, 109), ["old"]);
    assert!(live(&sa, 110).is_empty(), "expired");
    assert_eq!(sa.dead_since(), Some(110));
    at(
        &mut sa,
        &a,
        set_up(&["new"], &[], VClock::new()),
        200,
        Some(100),
    );
    assert_eq!(live(&sa, 200), ["new"], "the expired member is gone");
    for m in [joined(&sa, &sb), joined(&sb, &sa)] {
        // "old" was removed (observed); "unseen" survives; the restart's
        // lifetime (the later stamp) governs.
        assert_eq!(live(&m, 200), ["new", "unseen"]);
        assert_eq!(m.life.expires_ms, Some(300));
        assert!(live(&m, 300).is_empty());
    }
}

#[test]
fn an_update_without_a_ttl_keeps_the_lifetime_and_one_with_a_ttl_renews_it() {
    let a = actor("a");
    let mut s = State::empty(BucketType::Set);
    at(
        &mut s,
        &a,
        set_up(&["x"], &[], VClock::new()),
        100,
        Some(10),
    );
    at(&mut s, &a, set_up(&["y"], &[], VClock::new()), 105, None);
    assert_eq!(s.life.expires_ms, Some(110), "kept");
    at(
        &mut s,
        &a,
        set_up(&["z"], &[], VClock::new()),
        108,
        Some(10),
    );
    assert_eq!(s.life.expires_ms, Some(118), "renewed");
    assert_eq!(live(&s, 117), ["x", "y", "z"]);
}

#[test]
fn an_expired_counter_starts_from_zero_and_counts_increments_it_had_not_seen() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut ca = State::empty(BucketType::Counter);
    at(&mut ca, &a, inc(5), 100, Some(10));
    let mut cb = ca.clone();
    at(&mut cb, &b_, inc(2), 105, None); // concurrent, never seen by a's restart
    assert_eq!(counter(&ca), Some(5));
    assert_eq!(live(&ca, 110), Vec::<String>::new());
    assert_eq!(ca.dead_since(), None, "counters are never reaped");
    at(&mut ca, &a, inc(1), 200, Some(60));
    assert_eq!(live(&ca, 200), ["1"], "restarted from zero");
    for m in [joined(&ca, &cb), joined(&cb, &ca)] {
        assert_eq!(live(&m, 200), ["3"], "b's unseen increment counts");
        assert!(live(&m, 260).is_empty());
    }
}

#[test]
fn an_expired_map_restarts_without_its_fields() {
    let a = actor("a");
    let mut s = State::empty(BucketType::Map);
    at(
        &mut s,
        &a,
        map_up(vec![m_inc("n", 1), m_add("s", &["m"])], VClock::new()),
        100,
        Some(10),
    );
    let stale = s.clone();
    assert!(live(&s, 110).is_empty());
    at(
        &mut s,
        &a,
        map_up(vec![m_flag("f", true)], VClock::new()),
        120,
        None,
    );
    assert_eq!(
        s.life.expires_ms, None,
        "written again without a ttl: for ever"
    );
    for m in [joined(&s, &stale), joined(&stale, &s)] {
        assert_eq!(live(&m, 10_000), ["f=Flag(true)"]);
    }
}

#[test]
fn an_lww_lifetime_applies_to_its_own_write_only() {
    let (a, b_) = (actor("a"), actor("b"));
    let mut x = State::empty(BucketType::Lww);
    let mut y = State::empty(BucketType::Lww);
    at(&mut x, &a, Update::Lww(Some(b("ttl"))), 100, Some(10));
    at(&mut y, &b_, Update::Lww(Some(b("later"))), 105, None);
    for m in [joined(&x, &y), joined(&y, &x)] {
        assert_eq!(live(&m, 1_000), ["later"], "the winner has no ttl");
        assert_eq!(m.dead_since(), None);
    }
    assert_eq!(live(&x, 110), Vec::<String>::new());
    assert_eq!(x.dead_since(), Some(110));
    // An older write without a ttl (a delayed hint) does not revive it.
    let mut old = State::empty(BucketType::Lww);
    at(&mut old, &b_, Update::Lww(Some(b("older"))), 50, None);
    assert!(live(&joined(&x, &old), 200).is_empty());
}

#[test]
fn states_with_a_lifetime_use_record_format_4_and_the_others_keep_theirs() {
    let a = actor("a");
    for t in [
        BucketType::Counter,
        BucketType::Set,
        BucketType::Map,
        BucketType::Lww,
    ] {
        let mut plain = State::empty(t);
        let u = |t| match t {
            BucketType::Counter => inc(1),
            BucketType::Set => set_up(&["m"], &[], VClock::new()),
            BucketType::Map => map_up(vec![m_inc("n", 1)], VClock::new()),
            _ => Update::Lww(Some(b("v"))),
        };
        at(&mut plain, &a, u(t), 100, None);
        assert!(plain.life.is_default(), "{t}: no lifetime without a ttl");
        assert_ne!(encode_record(&plain)[0], 3, "{t}");
        let mut timed = State::empty(t);
        at(&mut timed, &a, u(t), 100, Some(10));
        let bytes = encode_record(&timed);
        assert_eq!(bytes[0], 3, "{t}: format 4");
        assert_eq!(decode_record(&bytes).unwrap(), timed);
        assert!(record_is_current(&bytes));
    }
    // A register's expiring value is a value variant of its own: format 2.
    let mut r = State::empty(BucketType::Register);
    reg_put(&mut r, &a, "v", DotContext::new(), 100, Some(10));
    assert_eq!(encode_record(&r)[0], 1);
    assert_eq!(decode_record(&encode_record(&r)).unwrap(), r);
}
