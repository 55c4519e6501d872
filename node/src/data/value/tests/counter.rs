//! Counters: increments and decrements sum, saturation at the i64 bounds, versions as per-actor totals.

use super::*;

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

#[test]
fn an_increment_that_would_overflow_a_replicas_total_is_refused_and_changes_nothing() {
    // Issue 23: three increments by i64::MAX through one replica wrapped its
    // running total; the third was acknowledged and the value did not move.
    let a = actor("a");
    let mut s = State::empty(BucketType::Counter);
    apply(&mut s, &a, inc(i64::MAX));
    apply(&mut s, &a, inc(i64::MAX)); // 2^64 - 2: still counted
    let before = s.clone();
    let refused = s.coordinate(&a, inc(i64::MAX), 0, 1, &limits());
    assert!(
        matches!(
            refused,
            Err(ValueError::CounterOverflow { by: i64::MAX, .. })
        ),
        "{refused:?}"
    );
    assert_eq!(s, before, "a refused increment changes nothing");
    // Decrements have a total of their own.
    apply(&mut s, &a, inc(-1));
    assert_eq!(
        counter(&s),
        Some(i64::MAX),
        "the value saturates, the totals do not wrap"
    );
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
