//! Scenarios the fault suite cannot time: each drives a simulated cluster
//! through one interleaving, on virtual time, and checks what clients read.

use kvorum_client::proto::{CausalContext, ReadOptions, Request, Response, WriteOptions};
use kvorum_client::{BucketProps, BucketType};
use kvorum_node::cluster::member::MemberState;
use kvorum_sim::cluster::{Shape, SimCluster, Status};
use kvorum_sim::history::Workload;
use kvorum_sim::nemesis::Action;
use kvorum_sim::net::SimNet;
use kvorum_sim::{run, Plan};
use std::time::Duration;
use tokio::time::{sleep, Instant};

const KEYS: u32 = 40;

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Starts the founders, waits for them, makes the register bucket.
async fn formed(shape: Shape, seed: u64) -> SimCluster {
    let mut c = SimCluster::new(shape, seed, SimNet::new(seed));
    for i in 0..shape.nodes {
        c.start(i).await.unwrap();
        sleep(Duration::from_millis(300)).await;
    }
    assert!(c.settle(Duration::from_secs(60)).await, "the cluster forms");
    let create = Request::CreateBucket {
        name: "reg".into(),
        props: BucketProps {
            bucket_type: BucketType::Register,
            n: 3,
            r: 2,
            w: 2,
        },
    };
    let n1 = c.machines[0].id.clone();
    let made = c.net.client_call(&n1, create, Duration::from_secs(5)).await;
    assert!(matches!(made, Some(Response::BucketCreated)), "{made:?}");
    c
}

fn key(k: u32) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

/// Writes `v{k}` to every key through machine `via`; each must be
/// acknowledged.
async fn write_all(c: &SimCluster, via: usize) {
    let node = c.machines[via].id.clone();
    for k in 0..KEYS {
        let put = Request::Put {
            bucket: "reg".into(),
            key: key(k),
            value: format!("v{k}").into_bytes(),
            context: CausalContext::empty(),
            options: WriteOptions::default(),
        };
        let r = c.net.client_call(&node, put, Duration::from_secs(5)).await;
        assert!(matches!(r, Some(Response::Written { .. })), "k{k}: {r:?}");
    }
}

/// Keys whose read through machine `via` (R = 2) misses its value.
async fn missing_through(c: &SimCluster, via: usize) -> Vec<u32> {
    let node = c.machines[via].id.clone();
    let mut missing = Vec::new();
    for k in 0..KEYS {
        let get = Request::Get {
            bucket: "reg".into(),
            key: key(k),
            options: ReadOptions::r(2),
            at_least: None,
        };
        let want = format!("v{k}").into_bytes();
        match c.net.client_call(&node, get, Duration::from_secs(5)).await {
            Some(Response::Value { siblings, .. }) if siblings.contains(&want) => {}
            _ => missing.push(k),
        }
    }
    missing
}

/// Waits until machines `who` see machine `joined` up, with no ring change
/// pending; false after `limit`.
async fn seen_up(c: &SimCluster, who: &[usize], joined: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let id = c.machines[joined].id.clone();
    while Instant::now() < deadline {
        let done = who.iter().all(|&i| {
            c.machines[i].node.as_ref().is_some_and(|n| {
                let v = n.view();
                v.members
                    .get(&id)
                    .is_some_and(|m| m.state == MemberState::Up)
                    && !v.in_transition()
                    && v.prev_read_ring.is_none()
            })
        });
        if done {
            return true;
        }
        sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A coordinator that heard nothing while a join completed (a gossip round
/// behind, or more) reads every key through the ring it knows, right
/// after the network heals and before any gossip reaches it.
#[test]
fn a_coordinator_behind_reads_across_a_completed_change() {
    paused().block_on(async {
        let shape = Shape {
            nodes: 4,
            spares: 1,
            n: 3,
            r: 2,
            w: 2,
        };
        let mut c = formed(shape, 11).await;
        write_all(&c, 1).await;
        // n1 hears nothing from now on (its own messages still go out).
        let ids: Vec<_> = c.machines.iter().map(|m| m.id.clone()).collect();
        c.net.partition(&ids[1..], &ids[..1], true);
        c.machines[4].status = Status::Member;
        c.start(4).await.unwrap();
        let completed = seen_up(&c, &[1, 2, 3, 4], 4, Duration::from_secs(120)).await;
        c.net.heal();
        let n1_view = c.machines[0].node.as_ref().unwrap().view();
        assert!(
            n1_view
                .members
                .get(&ids[4])
                .is_none_or(|m| m.state != MemberState::Up),
            "n1 must still be behind when it reads"
        );
        let missing = missing_through(&c, 0).await;
        assert!(
            missing.is_empty(),
            "through n1, behind (change completed elsewhere: {completed}), keys {missing:?} \
             missed their acknowledged values"
        );
    });
}

/// A node stopped before a join restarts with its older member list and
/// coordinates reads at once.
#[test]
fn a_node_restarted_with_an_older_member_list_reads_every_value() {
    paused().block_on(async {
        let shape = Shape {
            nodes: 4,
            spares: 1,
            n: 3,
            r: 2,
            w: 2,
        };
        let mut c = formed(shape, 12).await;
        write_all(&c, 1).await;
        c.stop(3).await;
        c.machines[4].status = Status::Member;
        c.start(4).await.unwrap();
        let completed = seen_up(&c, &[0, 1, 2, 4], 4, Duration::from_secs(120)).await;
        c.start(3).await.unwrap();
        let missing = missing_through(&c, 3).await;
        assert!(
            missing.is_empty(),
            "through n4, restarted with an older list (join completed: {completed}), keys \
             {missing:?} missed their acknowledged values"
        );
        assert!(c.settle(Duration::from_secs(120)).await, "the five settle");
        for via in 0..5 {
            assert!(
                missing_through(&c, via).await.is_empty(),
                "through n{}",
                via + 1
            );
        }
    });
}

/// The plan of the two scripted scenarios: clients on every workload for
/// 30 virtual seconds.
fn scripted(nodes: usize, spares: usize, script: Vec<(Duration, Action)>) -> Plan {
    Plan {
        shape: Shape {
            nodes,
            spares,
            n: 3,
            r: 2,
            w: 2,
        },
        clients: 4,
        keys: 6,
        workloads: Workload::ALL.to_vec(),
        think: Duration::from_millis(50),
        faults: Vec::new(),
        nemesis_every: Duration::from_secs(1),
        duration: Duration::from_secs(30),
        script,
    }
}

/// A join, a leave and a removal asked for at the same instant, under
/// load: the cluster serializes them, and no acknowledged write is lost.
#[test]
fn concurrent_topology_changes_lose_nothing() {
    let s = |secs| Duration::from_secs(secs);
    let plan = scripted(
        5,
        1,
        vec![
            (s(3), Action::Join(5)),
            (s(3), Action::Leave(4)),
            (s(3), Action::Remove(3)),
        ],
    );
    let r = run(21, plan);
    assert!(r.failures.is_empty(), "{:#?}\n{}", r.failures, r.history);
    assert!(r.acked > 100, "the clients did work: {}", r.acked);
}

/// Hints held for a node race its removal: the node is killed under load
/// (writes for it become hints), then removed while the hints wait.
#[test]
fn hint_delivery_racing_a_removal_loses_nothing() {
    let s = |secs| Duration::from_secs(secs);
    let plan = scripted(
        4,
        0,
        vec![
            (s(2), Action::Crash(3, false)),
            (s(3), Action::Restart(3)),
            (s(3), Action::Remove(3)),
        ],
    );
    let r = run(22, plan);
    assert!(r.failures.is_empty(), "{:#?}\n{}", r.failures, r.history);
    assert!(r.acked > 100, "the clients did work: {}", r.acked);
}
