//! Topology changes while the cluster serves: join with streaming,
//! decommission, removal of a dead node, a joiner killed mid-stream, zones,
//! and how fast gossip spreads a change. Every change runs under continuous
//! writes; a checker then reads every acknowledged key at R = N and checks
//! that each node holds exactly the keys its ranges own.

mod common;

use common::{metric, TestCluster};
use kvorum_client::{CausalContext, Client, ReadOptions, WriteOptions};
use kvorum_node::cluster::member::MemberState;
use kvorum_node::replication::replica::storage_key;
use kvorum_ring::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// These tests run clusters of up to twelve nodes: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fast anti-entropy: it spreads the odd write whose quorum failed after
/// reaching one replica, so the final placement check can be exact.
const EXTRA: &str = "[anti_entropy]\ninterval_ms = 500\n";

/// Writes unique keys `w<i>` (value: i) at W=2 until stopped; returns the
/// acknowledged ones.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u32>>>,
    failed: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(client: Client, first: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(0));
        let task = {
            let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = first;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("w{i}");
                    match client
                        .put_with(
                            "default",
                            key.as_bytes(),
                            &i.to_be_bytes(),
                            &CausalContext::empty(),
                            WriteOptions::w(2).timeout_ms(2000),
                        )
                        .await
                    {
                        Ok(_) => acked.lock().unwrap().push(i),
                        Err(_) => *failed.lock().unwrap() += 1,
                    }
                    i += 1;
                }
                client.close().await;
            })
        };
        Self {
            stop,
            acked,
            failed,
            task,
        }
    }

    fn acked_so_far(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn finish(self) -> (Vec<u32>, u32) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().clone();
        let failed = *self.failed.lock().unwrap();
        (acked, failed)
    }
}

/// Waits until the writer acknowledged `more` further writes.
async fn let_writes_land(w: &Writer, more: usize) {
    let target = w.acked_so_far() + more;
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.acked_so_far() < target {
        assert!(Instant::now() < deadline, "writes stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged key reads back at R = N through `client` (repairing
/// any replica that lacks it before answering).
async fn check_acked_readable(client: &Client, acked: &[u32]) {
    let opts = ReadOptions {
        r: Some(3),
        repair_before_answer: true,
        timeout_ms: Some(3000),
        ..ReadOptions::default()
    };
    let mut lost = Vec::new();
    for &i in acked {
        let got = client
            .get_with("default", format!("w{i}").as_bytes(), opts)
            .await
            .unwrap_or_else(|e| panic!("read w{i}: {e}"));
        if !got.siblings.contains(&i.to_be_bytes().to_vec()) {
            lost.push(i);
        }
    }
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

/// Placement check: every written key is held only by its replicas (the
/// nodes that no longer own a range dropped it), and every acknowledged key
/// by all of them. Polls: handoff runs in the background.
async fn check_placement(c: &TestCluster, acked: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match placement_errors(c, acked) {
            None => return,
            Some(e) if Instant::now() > deadline => panic!("placement: {e}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn placement_errors(c: &TestCluster, acked: &[u32]) -> Option<String> {
    let live: Vec<_> = c.nodes.iter().flatten().collect();
    let ring = live[0].view().read_ring.clone();
    // The writer's keys: partitions `w…` of `default`.
    let written = |k: &[u8]| {
        kvorum_ring::item::decode(k)
            .is_some_and(|(b, pk, _)| b == "default" && pk.starts_with(b"w"))
    };
    let mut holders: BTreeMap<Vec<u8>, BTreeSet<NodeId>> = BTreeMap::new();
    for n in &live {
        for k in n.data_keys().unwrap() {
            if written(&k) {
                holders.entry(k).or_default().insert(n.id().clone());
            }
        }
    }
    for (k, h) in &holders {
        let owners: BTreeSet<NodeId> = ring.item_preference_list(k, 3).into_iter().collect();
        if !h.is_subset(&owners) {
            return Some(format!("{h:?} hold a key owned by {owners:?}"));
        }
    }
    for i in acked {
        let k = storage_key("default", format!("w{i}").as_bytes());
        let owners: BTreeSet<NodeId> = ring.item_preference_list(&k, 3).into_iter().collect();
        let h = holders.get(&k).cloned().unwrap_or_default();
        if h != owners {
            return Some(format!("w{i} held by {h:?}, owned by {owners:?}"));
        }
    }
    None
}

/// Waits until every running node sees `node` in `state`.
async fn until_state(c: &TestCluster, node: &str, state: MemberState, limit: Duration) {
    let id = NodeId::new(node);
    let deadline = Instant::now() + limit;
    loop {
        let seen = c
            .nodes
            .iter()
            .flatten()
            .all(|n| n.view().members.get(&id).is_some_and(|m| m.state == state));
        if seen {
            return;
        }
        assert!(Instant::now() < deadline, "{node} not {state:?} everywhere");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_grows_from_three_to_five_while_writing() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(240), async {
        let mut c = TestCluster::start(3, EXTRA).await;
        let writer = Writer::start(c.client(), 0);
        let_writes_land(&writer, 200).await;
        for k in [4usize, 5] {
            let i = c.add_node(None, EXTRA).await;
            assert_eq!(i, k);
            // Until its ranges are streamed in, it is joining.
            let_writes_land(&writer, 50).await;
            c.wait_for_members(k).await;
            let streamed = metric(
                c.nodes[k - 1].as_ref().unwrap(),
                "kvorum_transfer_keys_total",
                &[("direction", "in")],
            );
            assert!(streamed > 0.0, "n{k} streamed nothing in");
            let_writes_land(&writer, 100).await;
        }
        let (acked, failed) = writer.finish().await;
        eprintln!("{} writes acknowledged, {failed} failed", acked.len());
        check_acked_readable(&c.client(), &acked).await;
        check_placement(&c, &acked, Duration::from_secs(60)).await;
        let dropped: f64 = c
            .nodes
            .iter()
            .flatten()
            .map(|n| metric(n, "kvorum_handoff_keys_dropped_total", &[]))
            .sum();
        assert!(dropped > 0.0, "old owners dropped the moved keys");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decommission_one_node_of_five_then_remove_a_killed_one() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(240), async {
        let mut c = TestCluster::start(5, EXTRA).await;
        let writer = Writer::start(c.client_of(&c.addrs[..3]), 0);
        let_writes_land(&writer, 200).await;

        // Decommission n5: only n5 itself accepts it.
        let n1 = c.admin_of(&c.addrs[..1]);
        let refused = n1.leave("n5").await.unwrap_err();
        assert!(refused.to_string().contains("not n5"), "{refused}");
        let n5 = c.admin_of(&c.addrs[4..5]);
        n5.leave("n5").await.unwrap();
        until_state(&c, "n5", MemberState::Removed, Duration::from_secs(60)).await;
        let_writes_land(&writer, 100).await;
        // n5 drops everything it held (the new owners streamed it) and takes
        // no more data. (A late arrival would wait for the 60 s recheck.)
        let deadline = Instant::now() + Duration::from_secs(90);
        while !c.nodes[4].as_ref().unwrap().data_keys().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "n5 still holds data");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        n5.close().await;
        c.stop(5).await;

        // Kill n4, then remove it.
        c.stop(4).await;
        let err = n1.remove_node("n9").await.unwrap_err();
        assert!(err.to_string().contains("no member"), "{err}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match n1.remove_node("n4").await {
                Ok(_) => break,
                // Until n1's failure detector suspects n4, it refuses.
                Err(e) if e.to_string().contains("is up") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("remove n4: {e}"),
            }
        }
        until_state(&c, "n4", MemberState::Removed, Duration::from_secs(60)).await;
        let_writes_land(&writer, 100).await;
        // Three nodes hold N=3: none may go now.
        let err = n1.remove_node("n2").await.unwrap_err();
        assert!(err.to_string().contains("is up"), "{err}");
        let err = n1.leave("n1").await.unwrap_err();
        assert!(err.to_string().contains("too few"), "{err}");
        n1.close().await;

        let (acked, failed) = writer.finish().await;
        eprintln!("{} writes acknowledged, {failed} failed", acked.len());
        check_acked_readable(&c.client_of(&c.addrs[..3]), &acked).await;
        check_placement(&c, &acked, Duration::from_secs(60)).await;
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_and_a_source_killed_mid_stream_resume_and_complete() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(240), async {
        // Small stream batches and one stream at a time: the join takes
        // many calls, so it can be interrupted halfway.
        let extra = "[anti_entropy]\ninterval_ms = 500\n[transfers]\ninterval_ms = 100\n\
                     batch_bytes = 4096\nmax_concurrent = 1\n";
        let mut c = TestCluster::start(3, extra).await;
        // Preload: 1500 keys with 1 KiB values.
        let client = c.client();
        let big = vec![7u8; 1024];
        for i in 0..1500u32 {
            client
                .put_with(
                    "default",
                    format!("p{i}").as_bytes(),
                    &big,
                    &CausalContext::empty(),
                    WriteOptions::w(2),
                )
                .await
                .unwrap();
        }
        let writer = Writer::start(c.client_of(&c.addrs[..3]), 0);
        let k = c.add_node(None, extra).await;
        // Wait until it has streamed some keys, but not all.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = c.nodes[k - 1].as_ref().unwrap();
            let got = metric(n, "kvorum_transfer_keys_total", &[("direction", "in")]);
            if got >= 300.0 {
                assert_eq!(n.view().members[n.id()].state, MemberState::Joining);
                break;
            }
            assert!(Instant::now() < deadline, "the stream did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = metric(
            c.nodes[k - 1].as_ref().unwrap(),
            "kvorum_transfer_keys_total",
            &[("direction", "in")],
        );
        c.restart(k).await; // stopped mid-stream, started again
                            // Right after the restart it reports the streams it resumes: their
                            // cursors were persisted with every batch.
        let status = c
            .admin_of(&c.addrs[k - 1..k])
            .cluster_status()
            .await
            .unwrap();
        let resumed: u64 = status.transfers.iter().map(|t| t.keys).sum();
        eprintln!(
            "streamed {before} keys before the restart; resumes with {resumed} recorded: {:?}",
            status.transfers
        );
        assert!(
            resumed > 0,
            "the restarted node resumes from its persisted progress"
        );
        assert!(status.in_transition && status.waiting_for.contains(&format!("n{k}")));
        // A source crashes too (stopped and started again mid-stream): the
        // stream waits for it and resumes.
        c.restart(1).await;
        // Small batches, one stream at a time, a sync per batch: slow on
        // purpose.
        c.wait_for_members_within(k, Duration::from_secs(120)).await;
        let after = metric(
            c.nodes[k - 1].as_ref().unwrap(),
            "kvorum_transfer_keys_total",
            &[("direction", "in")],
        );
        eprintln!("streamed {after} keys after the restart");
        assert!(after > 0.0, "the restarted stream finished the job");
        let_writes_land(&writer, 100).await;
        let (acked, _) = writer.finish().await;
        check_acked_readable(&c.client(), &acked).await;
        check_placement(&c, &acked, Duration::from_secs(60)).await;
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preference_lists_span_three_zones_and_a_lost_zone_keeps_quorums() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(180), async {
        let mut c = TestCluster::start_zoned(6, &["a", "b", "c"], EXTRA).await;
        let client = c.client();
        let admin = c.admin();
        let (_, members) = admin.status().await.unwrap();
        let zone: BTreeMap<String, String> = members
            .iter()
            .map(|m| (m.id.clone(), m.zone.clone().unwrap()))
            .collect();
        let ranges = admin.ring(Some(3)).await.unwrap();
        assert!(ranges.len() > 100, "{} ranges", ranges.len());
        for r in &ranges {
            let zones: BTreeSet<&String> = r.owners.iter().map(|o| &zone[o]).collect();
            assert_eq!(zones.len(), 3, "{:?} spans {zones:?}", r.owners);
        }
        for i in 0..200u32 {
            client
                .put_with(
                    "default",
                    format!("z{i}").as_bytes(),
                    &i.to_be_bytes(),
                    &CausalContext::empty(),
                    WriteOptions::w(2),
                )
                .await
                .unwrap();
        }
        // Zone c (nodes 3 and 6) goes down.
        c.stop(3).await;
        c.stop(6).await;
        let alive: Vec<_> = [0usize, 1, 3, 4].iter().map(|&i| c.addrs[i]).collect();
        let client = c.client_of(&alive);
        for i in 0..200u32 {
            let got = client
                .get_with("default", format!("z{i}").as_bytes(), ReadOptions::r(2))
                .await
                .unwrap_or_else(|e| panic!("read z{i} with zone c down: {e}"));
            assert_eq!(got.siblings, vec![i.to_be_bytes().to_vec()]);
            client
                .put_with(
                    "default",
                    format!("y{i}").as_bytes(),
                    b"v",
                    &CausalContext::empty(),
                    WriteOptions::w(2).strict(),
                )
                .await
                .unwrap_or_else(|e| panic!("strict write y{i} with zone c down: {e}"));
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gossip_spreads_a_change_to_ten_nodes_within_a_few_rounds() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(180), async {
        // 100 ms gossip rounds (common::config).
        let round = Duration::from_millis(100);
        let mut c = TestCluster::start(10, "[anti_entropy]\nenabled = false\n").await;
        let mut rounds = Vec::new();
        for _ in 0..2 {
            // The change: a new node contacts its seed, n1. Measure from the
            // moment n1 knows it until all ten old nodes do.
            let k = c.add_node(None, "[anti_entropy]\nenabled = false\n").await;
            let id = NodeId::new(format!("n{k}"));
            let knows = |n: &kvorum_node::RunningNode| n.view().members.contains_key(&id);
            let deadline = Instant::now() + Duration::from_secs(20);
            while !knows(c.nodes[0].as_ref().unwrap()) {
                assert!(Instant::now() < deadline, "the seed never heard of n{k}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let t0 = Instant::now();
            // Rounds as the seed counts them (a loaded machine stretches a
            // round beyond its 100 ms).
            let rounds_now = |c: &TestCluster| -> u64 {
                c.nodes[..10].iter().flatten().map(|n| n.gossip_rounds()).sum()
            };
            let r0 = rounds_now(&c);
            while !c.nodes[..10].iter().flatten().all(knows) {
                assert!(Instant::now() < deadline, "the change did not spread");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let took = t0.elapsed();
            // Rounds per node, on average over the ten (a loaded machine
            // stretches a round beyond its nominal 100 ms).
            let r = (rounds_now(&c) - r0) as f64 / 10.0;
            eprintln!(
                "n{k} known to all ten nodes {took:?} after the seed: {r:.1} gossip rounds per node \
                 ({:.1} nominal 100 ms rounds)",
                took.as_secs_f64() / round.as_secs_f64()
            );
            rounds.push(r);
            c.wait_for_members_within(k, Duration::from_secs(60)).await;
        }
        let worst = rounds.iter().cloned().fold(0.0, f64::max);
        // Documented bound (docs/architecture.md, "Gossip"): 5 rounds.
        assert!(worst <= 5.0, "took {worst:.1} rounds");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_that_formed_apart_merge_through_a_seed_outside_them() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        // n1 founds a group; n2 joins it through n1, with a second seed
        // where nothing listens yet (a node not started, or unreachable).
        let mut c = TestCluster::start(1, "").await;
        let later = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap();
        let n1 = c.addrs[0];
        c.add_node_with_seeds(None, "", &[n1, later]).await;
        c.wait_for_members(2).await;
        // n3 comes up there with no seeds: a group of its own. Only n2's
        // seed list links the two groups, and n2 knows members already.
        // (No metrics listener: its port would be `later` + 2000.)
        c.add_node_on(later, None, "[metrics]\nenabled = false\n", &[])
            .await;
        c.wait_for_members_within(3, Duration::from_secs(30)).await;
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_node_joins_a_cluster_by_admin_command() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(180), async {
        let mut c = TestCluster::start(3, EXTRA).await;
        let client = c.client();
        for i in 0..100u32 {
            client
                .put_with(
                    "default",
                    format!("w{i}").as_bytes(),
                    &i.to_be_bytes(),
                    &CausalContext::empty(),
                    WriteOptions::w(2),
                )
                .await
                .unwrap();
        }
        // n4 starts without seeds: a cluster of its own.
        let k = c.add_node_with_seeds(None, EXTRA, &[]).await;
        let n4 = c.admin_of(&c.addrs[k - 1..k]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = n4.cluster_status().await.unwrap();
            if s.members.len() == 1 && s.members[0].state == "up" {
                break;
            }
            assert!(Instant::now() < deadline, "n4 alone never came up: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A member of a cluster cannot be told to join another one.
        let n1 = c.admin_of(&c.addrs[..1]);
        let err = n1
            .join("n1", &c.addrs[k - 1].to_string())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already in a cluster"), "{err}");
        n4.join("n4", &c.addrs[0].to_string()).await.unwrap();
        c.wait_for_members_within(k, Duration::from_secs(60)).await;
        let acked: Vec<u32> = (0..100).collect();
        check_acked_readable(&c.client(), &acked).await;
        check_placement(&c, &acked, Duration::from_secs(60)).await;
        c.shutdown().await;
    })
    .await
    .unwrap();
}
