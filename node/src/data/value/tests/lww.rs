//! LWW registers: stamps (later wins, ties broken by actor, always raised at one coordinator), deterministic merges of equal stamps, tombstones.

use super::*;

#[test]
fn lww_later_stamp_wins_and_equal_times_break_by_actor() {
    let (a, b_) = (actor("a"), actor("b"));
    let empty = State::empty(BucketType::Lww);
    assert_eq!(lww(&empty), None);
    assert_eq!(empty.dead_since(), None, "the empty register is no delete");
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
            r.read(0),
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
    assert_eq!(r.dead_since(), None);
    r.coordinate(&a, Update::Lww(None), 0, 30, &limits())
        .unwrap();
    assert_eq!(lww(&r), None);
    assert_eq!(r.dead_since(), Some(30));
    r.coordinate(&a, Update::Lww(Some(b("y"))), 0, 20, &limits())
        .unwrap();
    assert_eq!(lww(&r).as_deref(), Some("y"), "a later write supersedes it");
    assert_eq!(r.dead_since(), None);
}
