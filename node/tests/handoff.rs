//! Failure detection, sloppy quorum and hinted handoff (Dynamo §4.6) on real
//! QUIC and real disks.

mod common;

use common::{metric, until, PeerProbe, TestCluster};
use kvorum_client::{CausalContext, Error, ErrorReply, ReplicaOutcome, WriteOptions};
use kvorum_node::replication::replica::storage_key;
use kvorum_ring::{Member, NodeId, Ring, DEFAULT_VNODES};
use std::time::{Duration, Instant};

/// Fast failure detection and hint delivery for tests.
/// Anti-entropy is off, so only hinted handoff can bring a replica up to date.
const FAST: &str = "[failure_detector]\nheartbeat_interval_ms = 100\nacceptable_pause_ms = 400\n\
                    [anti_entropy]\nenabled = false\n\
                    [hints]\ndelivery_interval_ms = 200\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_seen_down_and_up_again() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let mut c = TestCluster::start(3, FAST).await;
        let n3 = NodeId::new("n3");
        let sees = |c: &TestCluster, i: usize| c.nodes[i - 1].as_ref().unwrap().sees_up(&n3);
        until("n3 seen up", Duration::from_secs(10), || {
            sees(&c, 1) && sees(&c, 2)
        })
        .await;
        c.stop(3).await;
        let stopped = Instant::now();
        until("n3 seen down", Duration::from_secs(10), || {
            !sees(&c, 1) && !sees(&c, 2)
        })
        .await;
        // Default settings bound this at 5 s; the fast test settings at ~1 s.
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "took {:?}",
            stopped.elapsed()
        );
        c.restart(3).await;
        until("n3 seen up again", Duration::from_secs(10), || {
            sees(&c, 1) && sees(&c, 2)
        })
        .await;
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_succeed_via_fallbacks_and_hints_alone_bring_the_owner_up_to_date() {
    tokio::time::timeout(Duration::from_secs(180), async {
        // 4 nodes, N = 3: every key has a fallback outside its preference list.
        let mut c = TestCluster::start(4, FAST).await;
        c.wait_all_reachable().await;
        let n4 = NodeId::new("n4");
        c.stop(4).await;
        until("n4 seen down", Duration::from_secs(10), || {
            c.nodes[..3]
                .iter()
                .all(|n| !n.as_ref().unwrap().sees_up(&n4))
        })
        .await;
        let client = c.client_of(&c.addrs[..3]);
        let ring = Ring::new(
            (1..=4).map(|i| Member::new(format!("n{i}"))),
            DEFAULT_VNODES,
        );
        let owned_by_n4: Vec<u32> = (0..1000u32)
            .filter(|i| {
                ring.item_preference_list(&storage_key("default", format!("k{i}").as_bytes()), 3)
                    .contains(&n4)
            })
            .collect();
        assert!(
            owned_by_n4.len() > 500,
            "n4 replicates {} of 1000 keys",
            owned_by_n4.len()
        );

        // 1,000 writes at W=2 while n4 is down: all acknowledged.
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in 0..10u32 {
            let client = client.clone();
            tasks.spawn(async move {
                for i in (chunk * 100)..(chunk * 100 + 100) {
                    let key = format!("k{i}");
                    client
                        .put_with(
                            "default",
                            key.as_bytes(),
                            &i.to_be_bytes(),
                            &CausalContext::empty(),
                            WriteOptions::w(2),
                        )
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(t) = tasks.join_next().await {
            t.unwrap();
        }
        // A fallback counts toward W: W=3 succeeds with one replica down;
        // strict W=3 (Riak's PW) does not.
        let key = format!("k{}", owned_by_n4[0]);
        client
            .put_with(
                "default",
                key.as_bytes(),
                b"w3",
                &CausalContext::empty(),
                WriteOptions::w(3),
            )
            .await
            .unwrap();
        let strict = client
            .put_with(
                "default",
                key.as_bytes(),
                b"w3s",
                &CausalContext::empty(),
                WriteOptions::w(3).strict(),
            )
            .await;
        // The coordinator gives up as soon as n4 fails (W=3 can no longer
        // be met), so the third replica may not have answered yet; what
        // matters is that no fallback was asked and n4 did not count.
        let pref: Vec<String> = ring
            .item_preference_list(&storage_key("default", key.as_bytes()), 3)
            .iter()
            .map(|n| n.to_string())
            .collect();
        match &strict {
            Err(Error::Server(ErrorReply::Quorum(f))) => {
                assert!(f.needed == 3 && f.succeeded < 3, "{f:?}");
                assert!(
                    f.replicas.iter().all(|(n, _)| pref.contains(n)),
                    "strict asked a fallback: {f:?}"
                );
                assert!(
                    f.replicas
                        .iter()
                        .any(|(n, o)| n == "n4" && *o != ReplicaOutcome::Ok),
                    "{f:?}"
                );
            }
            other => panic!("strict W=3 with n4 down: {other:?}"),
        }

        let held = |c: &TestCluster| {
            c.nodes[..3]
                .iter()
                .map(|n| n.as_ref().unwrap().hints_pending())
                .sum::<u64>()
        };
        until("hints stored", Duration::from_secs(10), || {
            held(&c) >= owned_by_n4.len() as u64
        })
        .await;

        // The hint metrics say the same.
        let sum = |c: &TestCluster, name: &str| -> f64 {
            c.nodes.iter().flatten().map(|n| metric(n, name, &[])).sum()
        };
        assert_eq!(sum(&c, "kvorum_hints_pending"), held(&c) as f64);
        assert!(sum(&c, "kvorum_hints_stored_total") >= owned_by_n4.len() as f64);
        assert!(sum(&c, "kvorum_hints_bytes") > 0.0);
        let oldest = c
            .nodes
            .iter()
            .flatten()
            .map(|n| metric(n, "kvorum_hint_oldest_age_seconds", &[]));
        assert!(
            oldest.clone().all(|a| a < 120.0),
            "{:?}",
            oldest.collect::<Vec<_>>()
        );

        // n4 comes back; no reads from here on.
        c.restart(4).await;
        until("hint queues drain", Duration::from_secs(60), || {
            held(&c) == 0
        })
        .await;
        assert_eq!(sum(&c, "kvorum_hints_pending"), 0.0);
        assert_eq!(sum(&c, "kvorum_hint_oldest_age_seconds"), 0.0);
        assert!(sum(&c, "kvorum_hints_delivered_total") >= owned_by_n4.len() as f64);
        let probe = PeerProbe::new(&c.node_tls(1));
        for i in 0..1000u32 {
            let skey = storage_key("default", format!("k{i}").as_bytes());
            for node in ring.item_preference_list(&skey, 3) {
                let idx: usize = node.as_str()[1..].parse().unwrap();
                let state = probe.stored(c.addrs[idx - 1], &skey).await;
                let values = state.map(|s| s.read(0).0).unwrap_or_default();
                assert!(
                    values.contains(&i.to_be_bytes().to_vec()),
                    "k{i} missing on {node}"
                );
            }
        }
        assert_eq!(
            c.nodes
                .iter()
                .flatten()
                .map(|n| n.hints_dropped())
                .sum::<u64>(),
            0
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_for_a_node_down_past_the_bound_are_dropped_and_counted() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let config = format!("{FAST}ttl_secs = 1\n");
        let mut c = TestCluster::start(4, &config).await;
        c.wait_all_reachable().await;
        let n4 = NodeId::new("n4");
        c.stop(4).await;
        until("n4 seen down", Duration::from_secs(10), || {
            c.nodes[..3]
                .iter()
                .all(|n| !n.as_ref().unwrap().sees_up(&n4))
        })
        .await;
        let client = c.client_of(&c.addrs[..3]);
        for i in 0..50u32 {
            client
                .put_with(
                    "default",
                    format!("k{i}").as_bytes(),
                    b"v",
                    &CausalContext::empty(),
                    WriteOptions::w(2),
                )
                .await
                .unwrap();
        }
        let pending = |c: &TestCluster| {
            c.nodes[..3]
                .iter()
                .map(|n| n.as_ref().unwrap().hints_pending())
                .sum::<u64>()
        };
        until("hints stored", Duration::from_secs(10), || pending(&c) > 0).await;
        // n4 stays down: past the TTL every hint is dropped and counted.
        until("hints dropped", Duration::from_secs(20), || {
            pending(&c) == 0
        })
        .await;
        let dropped: u64 = c.nodes[..3]
            .iter()
            .map(|n| n.as_ref().unwrap().hints_dropped())
            .sum();
        assert!(dropped > 0, "dropped hints are counted");
        c.shutdown().await;
    })
    .await
    .unwrap();
}
