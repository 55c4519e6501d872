use super::*;
use kvorum_ring::NodeId;

fn actor(s: &str) -> Actor {
    Actor {
        node: NodeId::new(s),
        epoch: 1,
    }
}

fn limits() -> ValueLimits {
    ValueLimits {
        max_siblings: 100,
        max_set_members: 1000,
        max_map_fields: 100,
        max_state_bytes: 1 << 20,
    }
}

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
