//! Merge laws (commutative, associative, idempotent joins; every update and merge an inflation), record round trips and convergence of every type, on random histories at three replicas (proptest).

use super::*;

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
        let got: BTreeSet<Vec<u8>> = match all.read(0) {
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
        prop_assert_eq!(all.read(0), Reading::Lww(last.and_then(|w| w.1.clone())));
    }
}
