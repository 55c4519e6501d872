//! Records: canonical encodings of sets and maps, clock contexts, register records of the first format, format-2 bytes of the other types, and format-2 map records converted.

use super::*;

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
    assert_eq!(decode_record(&old).unwrap(), Body::Register(r).into());
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

/// A map record of format 2 (a `crdts::Map`), written by the previous code
/// (commit 6ae56ed), decodes into the same map: same values, same clock,
/// and its deferred removals become pending ones. Built as: through c,
/// {add s x, enable f, write r "rc"}; through a at time 10, {n += 5, add s
/// y z, lww l "A", write r "ra"} on another replica; through b there,
/// n -= 2; then through a with the context of c's read (not yet seen
/// there), {remove x from s, remove field g (set), remove field r
/// (register), write r2 "v2"}: the removal of r was deferred.
const MAP_RECORD_V2: &str = include_str!("../map_record_v2.hex");

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
    match &old.body {
        Body::Map(m) => assert_eq!(m.pending_count(), 3, "fields g and r, values of r2"),
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
        match &all.body {
            Body::Map(m) => assert_eq!(m.pending_count(), 0),
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
