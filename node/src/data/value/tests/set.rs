//! Sets: observed-remove semantics (removes act on the adds their context saw, and wait for them when ahead).

use super::*;

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
