//! Tests of the membership view: gossip merges, rings, states.

use super::*;

/// The ids of a ring's members, in ring order.
fn ids(r: &Ring) -> Vec<String> {
    r.members().iter().map(|x| x.id.to_string()).collect()
}

fn info(id: &str, state: MemberState, version: u64) -> MemberInfo {
    MemberInfo {
        id: NodeId::new(id),
        addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
        zone: None,
        version,
        state,
        state_since: version,
        seen_view: 0,
        synced_view: 0,
    }
}

fn membership(id: &str, state: MemberState, known: Vec<MemberInfo>) -> Membership {
    Membership::new(info(id, state, 1), known, 64, false)
}

#[test]
fn merge_is_order_independent() {
    let news = vec![
        info("b", MemberState::Up, 3),
        info("b", MemberState::Leaving, 4),
        info("c", MemberState::Joining, 1),
        info("c", MemberState::Up, 2),
        info("d", MemberState::Up, 5),
        info("d", MemberState::Removed, 5), // same version: Removed wins
    ];
    let mut orders = vec![news.clone(), news.iter().rev().cloned().collect()];
    orders.push(vec![
        news[5].clone(),
        news[0].clone(),
        news[3].clone(),
        news[1].clone(),
        news[4].clone(),
        news[2].clone(),
    ]);
    let lists: Vec<Vec<MemberInfo>> = orders
        .into_iter()
        .map(|order| {
            let m = membership("a", MemberState::Up, vec![]);
            for one in order {
                m.merge(vec![one]);
            }
            m.all_members()
                .into_iter()
                .filter(|x| x.id.as_str() != "a")
                .collect()
        })
        .collect();
    assert_eq!(lists[0], lists[1]);
    assert_eq!(lists[0], lists[2]);
    let states: Vec<_> = lists[0].iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        [MemberState::Leaving, MemberState::Up, MemberState::Removed]
    );
}

#[test]
fn rings_follow_states() {
    let m = membership(
        "a",
        MemberState::Up,
        vec![
            info("b", MemberState::Joining, 1),
            info("c", MemberState::Leaving, 1),
            info("d", MemberState::Removed, 1),
        ],
    );
    let v = m.view();
    assert_eq!(ids(&v.read_ring), ["a", "c"]);
    assert_eq!(ids(&v.write_ring), ["a", "b"]);
    assert!(v.in_transition());
    let gainers = v.gainers(&[2]);
    assert!(gainers.contains_key(&NodeId::new("b")), "{gainers:?}");
    assert!(!gainers.contains_key(&NodeId::new("c")));
    assert_eq!(m.members().len(), 3, "the removed member is not listed");
}

/// Two members changing at once (a joiner, a leaver): the rings
/// between are those with one of them done; one change alone has none.
#[test]
fn rings_between_cover_each_change_done_alone() {
    let m = membership(
        "a",
        MemberState::Up,
        vec![
            info("b", MemberState::Joining, 1),
            info("c", MemberState::Leaving, 1),
        ],
    );
    let v = m.view();
    let mut between: Vec<_> = v.between_rings.iter().map(|r| ids(r)).collect();
    between.sort();
    // b up with c still leaving; c removed with b still joining.
    assert_eq!(between, [vec!["a"], vec!["a", "b", "c"]]);
    let one = membership(
        "a",
        MemberState::Up,
        vec![info("b", MemberState::Joining, 1)],
    );
    assert!(one.view().between_rings.is_empty());
}

#[test]
fn news_of_this_node_is_overruled_unless_it_removes_it() {
    let m = membership("a", MemberState::Up, vec![]);
    m.merge(vec![info("a", MemberState::Up, 9)]);
    let me = m.me();
    assert_eq!((me.state, me.version > 9), (MemberState::Up, true));
    m.merge(vec![info("a", MemberState::Leaving, me.version + 3)]);
    assert_eq!(m.me().state, MemberState::Leaving);

    let fresh = Membership::new(info("a", MemberState::Joining, 1), vec![], 64, true);
    fresh.merge(vec![info("a", MemberState::Removed, 7)]);
    assert_eq!(
        fresh.me().state,
        MemberState::Joining,
        "a wiped node rejoins"
    );
    assert!(fresh.me().version > 7);
}

#[test]
fn a_joiner_adopts_news_that_it_is_up_unless_wiped_since_it_synced() {
    let synced = |mut m: MemberInfo, view: u64| {
        m.synced_view = view;
        m
    };
    // Another node completed the change this joiner synced: it is up.
    let m = Membership::new(info("a", MemberState::Joining, 1), vec![], 64, true);
    m.set_synced(42);
    m.merge(vec![synced(info("a", MemberState::Up, 7), 42)]);
    assert_eq!(m.me().state, MemberState::Up);
    assert!(m.me().version > 7);
    // Restarted on its data (not fresh): up, whatever it last persisted.
    let m = membership("a", MemberState::Joining, vec![]);
    m.merge(vec![synced(info("a", MemberState::Up, 7), 42)]);
    assert_eq!(m.me().state, MemberState::Up);
    // Wiped after it synced: the ranges are gone, it joins again.
    let wiped = Membership::new(info("a", MemberState::Joining, 1), vec![], 64, true);
    wiped.merge(vec![synced(info("a", MemberState::Up, 7), 42)]);
    assert_eq!(
        wiped.me().state,
        MemberState::Joining,
        "a wiped joiner joins again"
    );
    assert!(wiped.me().version > 7);
}

#[test]
fn completing_a_change_marks_every_member_in_one_change() {
    let m = membership(
        "a",
        MemberState::Up,
        vec![
            info("b", MemberState::Joining, 1),
            info("c", MemberState::Joining, 1),
            info("d", MemberState::Leaving, 1),
        ],
    );
    let before = m.view().read_ring.clone();
    let hash = m.view().hash;
    assert!(
        !m.mark_all(hash ^ 1, &[(NodeId::new("b"), MemberState::Up)]),
        "another view"
    );
    assert!(m.mark_all(
        hash,
        &[
            (NodeId::new("b"), MemberState::Up),
            (NodeId::new("c"), MemberState::Up),
            (NodeId::new("d"), MemberState::Removed),
        ]
    ));
    let v = m.view();
    assert_eq!(ids(&v.read_ring).len(), 3);
    assert_eq!(v.read_ring, v.write_ring);
    // The previous ring is the one before the change, not one between.
    assert_eq!(v.prev_read_ring.as_deref(), Some(&*before));
    assert!(
        !m.mark_all(m.view().hash, &[(NodeId::new("b"), MemberState::Up)]),
        "nothing changed"
    );
}

#[test]
fn the_view_hash_names_the_rings() {
    let a = membership("a", MemberState::Up, vec![info("b", MemberState::Up, 1)]);
    let b = membership("b", MemberState::Up, vec![info("a", MemberState::Up, 4)]);
    assert_eq!(a.view_hash(), b.view_hash());
    b.mark(&NodeId::new("a"), MemberState::Leaving);
    assert_ne!(a.view_hash(), b.view_hash());
    a.merge(b.all_members());
    assert_eq!(
        a.view_hash(),
        b.view_hash(),
        "{:?}\n{:?}",
        a.all_members(),
        b.all_members()
    );
    assert_eq!(a.me().state, MemberState::Leaving);
}

#[test]
fn placement_moves_with_the_read_ring_only() {
    let m = membership("a", MemberState::Up, vec![info("b", MemberState::Up, 1)]);
    let (p0, v0) = (m.placement_ring().0, m.version());
    // A member's newer entry that moves no key (its seen view).
    let mut b = info("b", MemberState::Up, 2);
    b.seen_view = 42;
    assert!(m.merge(vec![b]));
    m.set_synced(7);
    assert!(m.version() > v0, "the view changed");
    assert_eq!(m.placement_ring().0, p0, "no key moved");
    // A joining member is not in the read ring yet; up, it is.
    m.merge(vec![info("c", MemberState::Joining, 1)]);
    assert_eq!(m.placement_ring().0, p0);
    m.merge(vec![info("c", MemberState::Up, 2)]);
    let (p1, ring) = m.placement_ring();
    assert!(p1 > p0);
    assert_eq!(ring.members().len(), 3);
    // A bucket's N learned by gossip.
    m.touch();
    assert!(m.placement_ring().0 > p1);
}
