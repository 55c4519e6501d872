//! Refusals: wrong ops, merges of two types, size limits, and map states breaking the invariants; a refused update or merge changes nothing.

use super::*;
// Not the test module `map` that `super::*` brings: `data::value::map`.
use crate::data::value::map;

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
    let Body::Map(m) = &s.body else {
        unreachable!()
    };
    // Through the serialized form: (clock, fields, pending), none pending.
    type Fields = BTreeMap<FieldKey, map::FieldState>;
    let (clock, fields, _): (VClock<Actor>, Fields, u8) =
        postcard::from_bytes(&postcard::to_stdvec(m).unwrap()).unwrap();
    let rebuild = |clock: VClock<Actor>, fields: Fields| {
        let bytes = postcard::to_stdvec(&(clock, fields, 0u8)).unwrap();
        Body::Map(postcard::from_bytes::<MapState>(&bytes).unwrap())
    };
    assert_eq!(rebuild(clock.clone(), fields.clone()), s.body);
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
