//! The core cluster on real QUIC and real disks: quorum reads and writes,
//! failures, versions and siblings, deletes (Dynamo §4.4, §4.5).

mod common;

use common::{TestCluster, TEST_TIMEOUT};
use kvorum_client::proto::{OpKind, ReplicaOutcome};
use kvorum_client::{CausalContext, Error, ErrorReply, ReadOptions, WriteOptions};

fn w(n: u8) -> WriteOptions {
    WriteOptions::w(n)
}

fn r(n: u8) -> ReadOptions {
    ReadOptions::r(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_writes_and_reads_at_every_level() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        let client = c.client();
        let empty = CausalContext::empty();
        client
            .put_with("default", b"k2", b"v2", &empty, w(2))
            .await
            .unwrap();
        assert_eq!(
            client
                .get_with("default", b"k2", r(2))
                .await
                .unwrap()
                .single(),
            Some(&b"v2"[..])
        );
        client
            .put_with("default", b"k1", b"v1", &empty, w(1))
            .await
            .unwrap();
        // W=1 returns after the coordinator's own write; give replication a moment
        // before an R=1 read that any replica may answer.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            client
                .get_with("default", b"k1", r(1))
                .await
                .unwrap()
                .single(),
            Some(&b"v1"[..])
        );
        client
            .put_with("default", b"k3", b"v3", &empty, w(3))
            .await
            .unwrap();
        // After W=3 every replica has it: each node alone (R=1 through each) sees it.
        for addr in &c.addrs {
            let one = c.client_of(&[*addr]);
            assert_eq!(
                one.get_with("default", b"k3", r(1)).await.unwrap().single(),
                Some(&b"v3"[..])
            );
        }
        assert_eq!(
            client
                .get_with("default", b"k3", r(3))
                .await
                .unwrap()
                .single(),
            Some(&b"v3"[..])
        );
        // A key never written reads as not found, at any R.
        assert!(!client
            .get_with("default", b"nope", r(3))
            .await
            .unwrap()
            .is_found());
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorums_survive_one_stopped_node_and_fail_typed_with_two() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = TestCluster::start(3, "").await;
        let client = c.client();
        let empty = CausalContext::empty();
        client.put_with("default", b"before", b"x", &empty, w(3)).await.unwrap();
        c.stop(3).await;
        client.put_with("default", b"during", b"y", &empty, w(2)).await.unwrap();
        assert_eq!(client.get_with("default", b"during", r(2)).await.unwrap().single(), Some(&b"y"[..]));
        assert_eq!(client.get_with("default", b"before", r(2)).await.unwrap().single(), Some(&b"x"[..]));
        c.stop(2).await;
        let started = std::time::Instant::now();
        let err = client.put_with("default", b"after", b"z", &empty, w(2)).await.unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the failure is bounded in time");
        match err {
            Error::Server(ErrorReply::Quorum(f)) => {
                assert_eq!(f.op, OpKind::Write);
                assert_eq!((f.needed, f.succeeded), (2, 1), "{f}");
                assert_eq!(f.replicas.len(), 3);
                let failed: Vec<_> = f.replicas.iter().filter(|(_, o)| *o != ReplicaOutcome::Ok).collect();
                assert_eq!(failed.len(), 2, "{f}");
                let msg = f.to_string();
                assert!(msg.contains("1 of 2"), "{msg}");
                assert!(msg.contains("n2") && msg.contains("n3"), "{msg}");
            }
            other => panic!("expected a quorum error, got {other:?}"),
        }
        // R=2 fails the same way; R=1 still reads what the survivor holds.
        let err = client.get_with("default", b"before", r(2)).await.unwrap_err();
        assert!(matches!(err, Error::Server(ErrorReply::Quorum(ref f)) if f.needed == 2 && f.succeeded == 1), "{err:?}");
        assert_eq!(client.get_with("default", b"before", r(1)).await.unwrap().single(), Some(&b"x"[..]));
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_with_one_context_become_siblings_and_resolve() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        let client = c.client();
        client
            .put_with("default", b"k", b"base", &CausalContext::empty(), w(3))
            .await
            .unwrap();
        let read = client.get_with("default", b"k", r(3)).await.unwrap();
        assert_eq!(read.single(), Some(&b"base"[..]));
        // Two writers with the same context, at the same time.
        let (a, b) = tokio::join!(
            client.put_with("default", b"k", b"alice", &read.context, w(3)),
            client.put_with("default", b"k", b"bob", &read.context, w(3)),
        );
        a.unwrap();
        b.unwrap();
        let both = client.get_with("default", b"k", r(3)).await.unwrap();
        let mut sibs = both.siblings.clone();
        sibs.sort();
        assert_eq!(sibs, vec![b"alice".to_vec(), b"bob".to_vec()]);
        // The same two writes through one coordinator also stay siblings.
        let one = c.client_of(&c.addrs[..1]);
        one.put_with("default", b"k2", b"base", &CausalContext::empty(), w(3))
            .await
            .unwrap();
        let ctx = one.get_with("default", b"k2", r(3)).await.unwrap().context;
        one.put_with("default", b"k2", b"x", &ctx, w(3))
            .await
            .unwrap();
        one.put_with("default", b"k2", b"y", &ctx, w(3))
            .await
            .unwrap();
        assert_eq!(
            one.get_with("default", b"k2", r(3))
                .await
                .unwrap()
                .siblings
                .len(),
            2
        );
        // A put with the merged context leaves one value.
        client
            .put_with("default", b"k", b"merged", &both.context, w(3))
            .await
            .unwrap();
        let after = client.get_with("default", b"k", r(3)).await.unwrap();
        assert_eq!(after.siblings, vec![b"merged".to_vec()]);
        // A put without a context on an existing key adds a sibling.
        client
            .put_with("default", b"k", b"blind", &CausalContext::empty(), w(3))
            .await
            .unwrap();
        assert_eq!(
            client
                .get_with("default", b"k", r(3))
                .await
                .unwrap()
                .siblings
                .len(),
            2
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_get_is_not_found_and_a_later_put_revives() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        let client = c.client();
        client
            .put_with("default", b"k", b"v", &CausalContext::empty(), w(2))
            .await
            .unwrap();
        let read = client.get_with("default", b"k", r(2)).await.unwrap();
        client
            .delete_with("default", b"k", &read.context, w(2))
            .await
            .unwrap();
        let gone = client.get_with("default", b"k", r(2)).await.unwrap();
        assert!(!gone.is_found());
        assert!(
            !gone.context.is_empty(),
            "a tombstone's context is returned"
        );
        let gone3 = client.get_with("default", b"k", r(3)).await.unwrap();
        assert!(!gone3.is_found());
        client
            .put_with("default", b"k", b"again", &gone.context, w(2))
            .await
            .unwrap();
        assert_eq!(
            client
                .get_with("default", b"k", r(2))
                .await
                .unwrap()
                .siblings,
            vec![b"again".to_vec()]
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_moves_to_another_node_when_one_is_down() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = TestCluster::start(3, "").await;
        let client = c.client();
        c.stop(1).await;
        // Round-robin would send some of these to n1: each must still succeed.
        for i in 0..6u8 {
            client
                .put_with("default", &[i], b"v", &CausalContext::empty(), w(2))
                .await
                .unwrap();
            assert!(client
                .get_with("default", &[i], r(2))
                .await
                .unwrap()
                .is_found());
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_replica_forwards_writes_to_a_replica() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // N=2 on 3 nodes: every node coordinates some keys it does not hold.
        let c = TestCluster::start(3, "[replication]\nn = 2\n").await;
        let ring = kvorum_ring::Ring::new(
            (1..=3).map(|i| kvorum_ring::Member::new(format!("n{i}"))),
            kvorum_ring::DEFAULT_VNODES,
        );
        let mut forwarded = 0;
        for (i, addr) in c.addrs.iter().enumerate() {
            let me = kvorum_ring::NodeId::new(format!("n{}", i + 1));
            let one = c.client_of(&[*addr]);
            for k in 0..20u8 {
                let key = [k, i as u8];
                let pref = ring.item_preference_list(
                    &kvorum_node::replication::replica::storage_key("default", &key),
                    2,
                );
                forwarded += usize::from(!pref.contains(&me));
                one.put_with("default", &key, b"v", &CausalContext::empty(), w(2))
                    .await
                    .unwrap();
                assert_eq!(
                    one.get_with("default", &key, r(2)).await.unwrap().single(),
                    Some(&b"v"[..])
                );
            }
        }
        assert!(
            forwarded >= 5,
            "only {forwarded} of 60 writes needed forwarding"
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_example_runs_against_a_cluster() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        siblings_example::run(&c.admin(), &c.client())
            .await
            .unwrap();
        c.shutdown().await;
    })
    .await
    .unwrap();
}

// The example program itself, so the test runs exactly what users read.
#[path = "../../examples/siblings.rs"]
#[allow(dead_code)]
mod siblings_example;
