//! Registers through `State`: an update returns its own context, deletes are tombstones.

use super::*;

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
    assert!(matches!(r.read(0), Reading::Register(v, _) if v == vec![b("y")]));
    assert_eq!(r.dead_since(), None);
    let Reading::Register(_, all) = r.read(0) else {
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
    assert_eq!(r.dead_since(), Some(11));
    assert_eq!(r.own_counter(&a), 4);
}
