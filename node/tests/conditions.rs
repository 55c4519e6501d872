//! Conditional writes over real QUIC: ten clients racing `if_absent` on one
//! key in a healthy cluster (exactly one wins, the others get
//! `PreconditionFailed`); the same race across a partition (both sides may
//! win; after healing both values are there as siblings, none lost);
//! `if_match` with a stale context (refused, with the current context,
//! which then succeeds); conditions on typed updates; and the metric.
//!
//! `KVORUM_PLANT=condition-race` plants the bug of checking conditions
//! wherever a write lands, unserialized: the healthy race then lets more
//! than one writer win (docs/testing.md).

mod common;

use common::{metric, until, TestCluster};
use kvorum_client::{
    BucketProps, BucketType, CausalContext, Client, Error, ErrorReply, ReadOptions, WriteOptions,
};
use kvorum_node::net::faults::Faults;
use kvorum_ring::NodeId;
use std::time::Duration;

/// The tests start clusters: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn precondition_failed(e: &Error) -> bool {
    matches!(e, Error::Server(ErrorReply::PreconditionFailed { .. }))
}

/// Ten clients put `if_absent` on `key` at once; returns how many were
/// acknowledged and how many got `PreconditionFailed`.
async fn race(clients: &[Client], bucket: &str, key: &[u8]) -> (usize, usize) {
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let (client, bucket, key) = (client.clone(), bucket.to_string(), key.to_vec());
        tasks.push(tokio::spawn(async move {
            let value = format!("writer {i}");
            client
                .put_with(
                    &bucket,
                    &key,
                    value.as_bytes(),
                    &CausalContext::empty(),
                    WriteOptions::default().if_absent(),
                )
                .await
        }));
    }
    let (mut won, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) if precondition_failed(&e) => refused += 1,
            Err(e) => panic!("a racing write failed otherwise: {e}"),
        }
    }
    (won, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_if_absent_writes_let_exactly_one_win_and_if_match_refuses_a_stale_context() {
    let _serial = SERIAL.lock().await;
    if std::env::var("KVORUM_PLANT").as_deref() == Ok("condition-race") {
        kvorum_node::util::plant::plant(Some(kvorum_node::util::plant::Bug::ConditionRace));
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = TestCluster::start(3, "").await;
        c.wait_all_reachable().await;
        // Each racer sends through a different node first (round robin from
        // its own start), as independent application servers would.
        let clients: Vec<Client> = (0..10)
            .map(|i| {
                let n = c.addrs.len();
                let order: Vec<_> = (0..n).map(|k| c.addrs[(i + k) % n]).collect();
                c.client_of(&order)
            })
            .collect();
        for round in 0..5 {
            let key = format!("user:{round}");
            let (won, refused) = race(&clients, "default", key.as_bytes()).await;
            assert_eq!(
                (won, refused),
                (1, 9),
                "round {round}: {won} won, {refused} refused"
            );
            let read = c.client().get("default", key.as_bytes()).await.unwrap();
            assert_eq!(read.siblings.len(), 1, "round {round}: {:?}", read.siblings);
        }
        let failed: f64 = c
            .nodes
            .iter()
            .flatten()
            .map(|n| {
                metric(
                    n,
                    "kvorum_precondition_failures_total",
                    &[("condition", "if_absent")],
                )
            })
            .sum();
        assert_eq!(failed, 45.0, "every refused write is counted once");

        // if_match: a write with the context of an older read is refused,
        // with the current value and context; that context then works.
        let client = c.client();
        let empty = CausalContext::empty();
        let ctx1 = client.put("default", b"doc", b"v1", &empty).await.unwrap();
        client.put("default", b"doc", b"v2", &ctx1).await.unwrap();
        let stale = client
            .put_with(
                "default",
                b"doc",
                b"v3",
                &ctx1,
                WriteOptions::default().if_match(),
            )
            .await
            .unwrap_err();
        let Error::Server(ErrorReply::PreconditionFailed { current, .. }) = stale else {
            panic!("expected PreconditionFailed, got {stale}");
        };
        let kvorum_client::proto::Response::Value {
            siblings, context, ..
        } = *current
        else {
            panic!("the current read is a value");
        };
        assert_eq!(siblings, vec![b"v2".to_vec()]);
        client
            .put_with(
                "default",
                b"doc",
                b"v3",
                &context,
                WriteOptions::default().if_match(),
            )
            .await
            .unwrap();
        let read = client.get("default", b"doc").await.unwrap();
        assert_eq!(
            read.siblings,
            vec![b"v3".to_vec()],
            "v1's context was refused"
        );

        // A typed update: the first if_absent increment wins, the second
        // is refused; LWW buckets refuse if_match (no context).
        let admin = c.admin();
        admin
            .create_bucket("hits", BucketProps::new(BucketType::Counter))
            .await
            .unwrap();
        admin
            .create_bucket("last", BucketProps::new(BucketType::Lww))
            .await
            .unwrap();
        let hits = client
            .counter("hits", b"page")
            .write_options(WriteOptions::default().if_absent());
        hits.increment(1).await.unwrap();
        let again = hits.increment(1).await.unwrap_err();
        assert!(precondition_failed(&again), "{again}");
        assert_eq!(client.counter("hits", b"page").value().await.unwrap(), 1);
        let lww = client
            .put_with(
                "last",
                b"k",
                b"v",
                &empty,
                WriteOptions::default().if_match(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(lww, Error::Server(ErrorReply::BadRequest(_))),
            "{lww}"
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_absent_across_a_partition_may_let_both_sides_win_but_loses_neither() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let faults = Faults::new(11);
        let extra = "[failure_detector]\nheartbeat_interval_ms = 100\nacceptable_pause_ms = 400\n";
        let c = TestCluster::start_with_faults(3, extra, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        c.admin()
            .create_bucket(
                "names",
                BucketProps::new(BucketType::Register).n(3).r(1).w(1),
            )
            .await
            .unwrap();
        // n1 alone on one side; each side sees the other down.
        faults.partition(&c.addrs[..1], &c.addrs[1..]);
        until("both sides see the cut", Duration::from_secs(15), || {
            !c.nodes[0].as_ref().unwrap().sees_up(&NodeId::new("n2"))
                && !c.nodes[1].as_ref().unwrap().sees_up(&NodeId::new("n1"))
        })
        .await;
        let left = c.client_of(&c.addrs[..1]);
        let right = c.client_of(&c.addrs[1..2]);
        let put = |client: Client, v: &'static [u8]| async move {
            client
                .put_with(
                    "names",
                    b"alice",
                    v,
                    &CausalContext::empty(),
                    WriteOptions::w(1).if_absent(),
                )
                .await
        };
        let (a, b) = tokio::join!(put(left, b"left"), put(right, b"right"));
        let acked: Vec<&[u8]> = [(a, &b"left"[..]), (b, &b"right"[..])]
            .into_iter()
            .filter_map(|(r, v)| r.ok().map(|_| v))
            .collect();
        assert!(!acked.is_empty(), "neither side could write");
        faults.heal();
        // After healing, every acknowledged value is on the replicas.
        let all = c.client();
        let mut last = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let read = all.get_with("names", b"alice", ReadOptions::r(3)).await;
            if let Ok(read) = read {
                last = read.siblings.clone();
                if acked.iter().all(|v| read.siblings.iter().any(|s| s == v)) {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "acknowledged {acked:?}, read {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "acknowledged: {:?}; read after healing: {:?}",
            acked
                .iter()
                .map(|v| String::from_utf8_lossy(v))
                .collect::<Vec<_>>(),
            last.iter()
                .map(|v| String::from_utf8_lossy(v))
                .collect::<Vec<_>>()
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_usernames_example_runs_against_a_cluster() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(90), async {
        let c = TestCluster::start(3, "").await;
        c.wait_all_reachable().await;
        let (admin, client) = (c.admin(), c.client());
        for run in ["a", "b"] {
            usernames_example::run(&admin, &client, run).await.unwrap();
        }
        admin.close().await;
        client.close().await;
        c.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

// The example program itself, so the test runs exactly what users read.
#[path = "../../examples/usernames.rs"]
#[allow(dead_code)]
mod usernames_example;
