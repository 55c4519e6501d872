//! Client sessions on a real cluster (real QUIC on 127.0.0.1, real fjall,
//! injected partitions): read-your-writes and monotonic reads (Terry et al.,
//! *Session Guarantees for Weakly Consistent Replicated Data*, 1994) at
//! R = W = 1, for registers and every convergent type, and the per-read
//! replica report. Each guarantee is shown next to the same read without a
//! session returning the older value, so the tests can fail.
//!
//! Anti-entropy is off (a stale replica stays stale until read repair);
//! the failure detector is fast, so coordinators stop waiting for replicas
//! they cannot reach.

mod common;

use common::{metric, until, PeerProbe, TestCluster, TEST_TIMEOUT};
use kvorum_client::{
    BucketProps, BucketType, CausalContext, Client, Error, FieldKind, MapUpdate, ReadOptions,
    WriteOptions,
};
use kvorum_node::net::faults::Faults;
use kvorum_node::replication::replica::storage_key;
use kvorum_ring::NodeId;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CONFIG: &str = "[failure_detector]\nheartbeat_interval_ms = 100\nacceptable_pause_ms = 400\n\
                      [anti_entropy]\nenabled = false\n\
                      [replication]\nread_repair_chance = 0.0\n";

fn seed() -> u64 {
    let seed = std::env::var("KVORUM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    eprintln!("seed: {seed} (replay with KVORUM_TEST_SEED={seed})");
    seed
}

/// Cuts node `i` (1-based) off from every other node (clients still reach
/// it) and waits until every node's failure detector sees the cut.
async fn isolate(c: &TestCluster, faults: &Faults, i: usize) {
    let me = c.addrs[i - 1];
    let others: Vec<SocketAddr> = c.addrs.iter().copied().filter(|a| *a != me).collect();
    faults.partition(&[me], &others);
    let id = NodeId::new(format!("n{i}"));
    until(
        "the cut is seen on both sides",
        Duration::from_secs(15),
        || {
            c.nodes.iter().enumerate().all(|(j, n)| {
                let n = n.as_ref().unwrap();
                if j + 1 == i {
                    (1..=c.nodes.len())
                        .filter(|k| *k != i)
                        .all(|k| !n.sees_up(&NodeId::new(format!("n{k}"))))
                } else {
                    !n.sees_up(&id)
                }
            })
        },
    )
    .await;
}

/// A client whose round robin starts at node `first` (1-based) and goes on
/// in address order: its first request goes to `first`, its second to the
/// next node, and so on.
fn client_from(c: &TestCluster, first: usize) -> Client {
    let n = c.addrs.len();
    let order: Vec<SocketAddr> = (0..n).map(|k| c.addrs[(first - 1 + k) % n]).collect();
    c.client_of(&order)
}

fn stale_reads(c: &TestCluster, i: usize) -> f64 {
    metric(
        c.nodes[i - 1].as_ref().unwrap(),
        "kvorum_requests_total",
        &[("outcome", "stale")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_its_write_at_r1_when_the_written_replica_is_cut_off() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let faults = Faults::new(seed());
        let mut c = TestCluster::start_with_faults(3, CONFIG, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let all = c.client();
        let empty = CausalContext::empty();
        let mut v1 = Vec::new();
        for key in [&b"k"[..], b"k2"] {
            v1.push(
                all.put_with("default", key, b"v1", &empty, WriteOptions::w(3))
                    .await
                    .unwrap(),
            );
        }
        isolate(&c, &faults, 2).await;

        // The session writes v2 through n2 at W = 1 (only n2 has it) and
        // reads at R = 1 starting at n1, which cannot reach n2.
        let session = client_from(&c, 2).session();
        session
            .put_with("default", b"k", b"v2", &v1[0], WriteOptions::w(1))
            .await
            .unwrap();
        let stale_before = stale_reads(&c, 1);
        let read = session
            .get_with("default", b"k", ReadOptions::r(1))
            .await
            .unwrap();
        assert_eq!(read.siblings, vec![b"v2".to_vec()], "read your write");
        assert!(
            stale_reads(&c, 1) > stale_before,
            "n1 was asked first and refused to answer with v1"
        );
        // Without a session the same read through n1 returns the older value.
        let plain = c
            .client_of(&c.addrs[..1])
            .get_with("default", b"k", ReadOptions::r(1))
            .await
            .unwrap();
        assert_eq!(plain.siblings, vec![b"v1".to_vec()], "no session: stale");
        assert_eq!((plain.report.asked, plain.report.answered), (1, 1));

        // With the written replica gone, the session fails with a typed
        // error within the timeout, never with v1.
        let session = client_from(&c, 2).session();
        session
            .put_with("default", b"k2", b"v2", &v1[1], WriteOptions::w(1))
            .await
            .unwrap();
        c.stop(2).await;
        let started = Instant::now();
        let read = session
            .get_with("default", b"k2", ReadOptions::r(1).timeout_ms(1500))
            .await;
        let took = started.elapsed();
        match read {
            Err(Error::Stale { attempts, .. }) => assert!(attempts >= 2, "{attempts}"),
            other => panic!("expected Error::Stale, got {other:?}"),
        }
        assert!(took < Duration::from_millis(1500 + 1000), "{took:?}");
        let plain = c
            .client_of(&c.addrs[..1])
            .get_with("default", b"k2", ReadOptions::r(1))
            .await
            .unwrap();
        assert_eq!(plain.siblings, vec![b"v1".to_vec()], "no session: stale");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_reads_are_monotonic_across_coordinators_with_a_lagging_replica() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let faults = Faults::new(seed());
        let mut c = TestCluster::start_with_faults(3, CONFIG, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let all = c.client();
        let mut ctx = Vec::new();
        for key in [&b"k"[..], b"k2"] {
            let empty = CausalContext::empty();
            ctx.push(
                all.put_with("default", key, b"v1", &empty, WriteOptions::w(3))
                    .await
                    .unwrap(),
            );
        }
        // n3 misses v2 of both keys while it is down, and lags once back
        // (no hints: a 3-node cluster has no fallback; no anti-entropy).
        // Session A writes k2; k is for the reads without a session.
        c.stop(3).await;
        let n1 = c.client_of(&c.addrs[..1]);
        // A coordinator's write to a replica that is down runs until the
        // write's deadline (a replica that answers after the quorum still
        // gets it): short deadlines, waited out below before n3 is back,
        // so that n3 does not get v2 from a connect still under way.
        let w2 = WriteOptions::w(2).timeout_ms(800);
        n1.put_with("default", b"k", b"v2", &ctx[0], w2)
            .await
            .unwrap();
        let a = client_from(&c, 1).session();
        a.put_with("default", b"k2", b"v2", &ctx[1], w2)
            .await
            .unwrap();
        // Without a session, first a read of v2 (n3 is down, so this read
        // repairs nothing there) ...
        let r1 = ReadOptions::r(1);
        let first = n1.get_with("default", b"k", r1).await.unwrap();
        assert_eq!(first.siblings, vec![b"v2".to_vec()]);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        c.restart(3).await;
        c.wait_all_reachable().await;
        let probe = PeerProbe::new(&c.node_tls(1));
        for key in [&b"k"[..], b"k2"] {
            let at_n3 = probe.stored(c.addrs[2], &storage_key("default", key)).await;
            assert_eq!(at_n3.unwrap().read(0).0, vec![b"v1".to_vec()], "n3 lags");
        }
        // ... then v1 through n3: older than what was read before.
        let n3 = c.client_of(&c.addrs[2..]);
        let second = n3.get_with("default", b"k", r1).await.unwrap();
        assert_eq!(
            second.siblings,
            vec![b"v1".to_vec()],
            "no session: went back"
        );

        // Session B, handed A's version of k2, reads through n3, n1, n2, n3,
        // ... and never goes back. Its first read is coordinated by n3, the
        // lagging replica, which waits past R = 1 for a replica with v2.
        let session = client_from(&c, 3).session();
        let v = a.version("default", b"k2").expect("A holds a version");
        session.observe("default", b"k2", &v);
        let stale_before = stale_reads(&c, 3);
        for i in 0..6 {
            let read = session.get_with("default", b"k2", r1).await.unwrap();
            assert_eq!(read.siblings, vec![b"v2".to_vec()], "read {i}");
            if i == 0 {
                assert!(read.report.answered >= 2, "{:?}", read.report);
                assert!(!read.report.agreed, "n3 was behind: {:?}", read.report);
            }
        }
        assert_eq!(stale_reads(&c, 3), stale_before, "n3 answered itself");

        // n3 cut off and lagging again (v3 written without it): a session
        // read that starts there is refused by n3 and served by another.
        isolate(&c, &faults, 3).await;
        let read = n1
            .get_with("default", b"k2", ReadOptions::r(2))
            .await
            .unwrap();
        n1.put_with("default", b"k2", b"v3", &read.context, WriteOptions::w(2))
            .await
            .unwrap();
        let session = client_from(&c, 1).session();
        for i in 0..6 {
            let read = session.get_with("default", b"k2", r1).await.unwrap();
            assert_eq!(read.siblings, vec![b"v3".to_vec()], "read {i}");
        }
        assert!(stale_reads(&c, 3) > stale_before, "n3 refused");
        let plain = n3.get_with("default", b"k2", r1).await.unwrap();
        assert_eq!(plain.siblings, vec![b"v2".to_vec()], "no session: stale");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// Read-your-writes for every convergent type, each with an update the
/// other replicas miss (n2 is cut off and takes it at W = 1): counter
/// increments, set removes, map field removals, LWW writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_read_their_writes_for_every_data_type() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let faults = Faults::new(seed());
        let c = TestCluster::start_with_faults(3, CONFIG, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let all = c.client();
        for (name, t) in [
            ("counters", BucketType::Counter),
            ("sets", BucketType::Set),
            ("maps", BucketType::Map),
            ("lwws", BucketType::Lww),
        ] {
            c.admin()
                .create_bucket(name, BucketProps::new(t))
                .await
                .unwrap();
        }
        let w3 = WriteOptions::w(3);
        all.counter("counters", b"c")
            .write_options(w3)
            .increment(1)
            .await
            .unwrap();
        let set = all.set("sets", b"s").write_options(w3);
        set.add_all([b"x".to_vec(), b"y".to_vec()]).await.unwrap();
        let set_ctx = set.members().await.unwrap().context;
        let map = all.map("maps", b"m").write_options(w3);
        map.update(MapUpdate::new().increment("n", 1).add("tags", b"t"))
            .await
            .unwrap();
        let map_ctx = map.fetch().await.unwrap().context;
        all.put_with("lwws", b"l", b"v1", &CausalContext::empty(), w3)
            .await
            .unwrap();
        isolate(&c, &faults, 2).await;
        let (w1, r1) = (WriteOptions::w(1), ReadOptions::r(1));
        let plain = c.client_of(&c.addrs[..1]);

        // Each session's first request (the update) goes to n2, its read
        // starts at n1.
        let s = client_from(&c, 2).session();
        let counter = s
            .counter("counters", b"c")
            .write_options(w1)
            .read_options(r1);
        counter.increment(5).await.unwrap();
        assert_eq!(counter.value().await.unwrap(), 6);
        let no_session = plain.counter("counters", b"c").read_options(r1);
        assert_eq!(no_session.value().await.unwrap(), 1);

        let s = client_from(&c, 2).session();
        let set = s.set("sets", b"s").write_options(w1).read_options(r1);
        set.remove(b"x", &set_ctx).await.unwrap();
        assert_eq!(set.members().await.unwrap().members, vec![b"y".to_vec()]);
        let no_session = plain.set("sets", b"s").read_options(r1);
        assert!(no_session.members().await.unwrap().contains(b"x"));

        let s = client_from(&c, 2).session();
        let map = s.map("maps", b"m").write_options(w1).read_options(r1);
        map.update(
            MapUpdate::new()
                .remove_field("tags", FieldKind::Set)
                .context(&map_ctx),
        )
        .await
        .unwrap();
        let read = map.fetch().await.unwrap();
        assert!(read.value.get("tags", FieldKind::Set).is_none(), "{read:?}");
        assert!(read.value.get("n", FieldKind::Counter).is_some());
        let no_session = plain.map("maps", b"m").read_options(r1);
        let read = no_session.fetch().await.unwrap();
        assert!(read.value.get("tags", FieldKind::Set).is_some());

        let s = client_from(&c, 2).session();
        s.put_with("lwws", b"l", b"v2", &CausalContext::empty(), w1)
            .await
            .unwrap();
        let read = s.get_with("lwws", b"l", r1).await.unwrap();
        assert_eq!(read.siblings, vec![b"v2".to_vec()]);
        let read = plain.get_with("lwws", b"l", r1).await.unwrap();
        assert_eq!(read.siblings, vec![b"v1".to_vec()]);

        // Every session read above was first refused by n1.
        assert!(stale_reads(&c, 1) >= 4.0, "{}", stale_reads(&c, 1));
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// The per-read report: replicas asked, answered, and whether they agreed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_reports_how_many_replicas_answered_and_whether_they_agreed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, CONFIG).await;
        c.wait_all_reachable().await;
        let client = c.client();
        let empty = CausalContext::empty();
        client
            .put_with("default", b"k", b"v", &empty, WriteOptions::w(3))
            .await
            .unwrap();
        let read = client
            .get_with("default", b"k", ReadOptions::r(3))
            .await
            .unwrap();
        assert_eq!(
            read.report.to_string(),
            "3 of 3 replicas answered (R=3), they agreed"
        );
        let missing = client
            .get_with("default", b"missing", ReadOptions::r(2))
            .await
            .unwrap();
        assert!(!missing.is_found());
        assert_eq!((missing.report.asked, missing.report.r), (2, 2));
        assert!(missing.report.answered >= 2 && missing.report.agreed);
        // (Disagreement is shown by the monotonic-reads test above.)
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// Range pages in a session: the session's item write (W = 1, on the one
/// replica that is cut off) is in its next page at R = 1 through any
/// node, where a page without the session misses it; and with the written
/// replica stopped, the session's page fails with `Error::Stale` instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_page_holds_its_item_write_at_r1_when_the_written_replica_is_cut_off() {
    use kvorum_client::proto::RangeQuery;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let faults = Faults::new(seed());
        let mut c = TestCluster::start_with_faults(3, CONFIG, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let empty = CausalContext::empty();
        c.client()
            .partition("default", b"feed")
            .put_with(b"m1", b"one", &empty, WriteOptions::w(3))
            .await
            .unwrap();
        isolate(&c, &faults, 2).await;
        let sorts = |p: &kvorum_client::proto::Page| -> Vec<Vec<u8>> {
            p.items.iter().map(|i| i.sort.clone()).collect()
        };
        let query = RangeQuery::new("default", b"feed").options(ReadOptions::r(1));

        // Written through n2 at W = 1: only n2 holds m2.
        let session = client_from(&c, 2).session();
        session
            .put_item(
                "default",
                b"feed",
                b"m2",
                b"two",
                &empty,
                WriteOptions::w(1),
            )
            .await
            .unwrap();
        let stale_before: f64 = (1..=3).map(|i| stale_reads(&c, i)).sum();
        let page = session.read_page(&query).await.unwrap();
        assert_eq!(
            sorts(&page),
            [b"m1".to_vec(), b"m2".to_vec()],
            "read your write"
        );
        assert!(
            (1..=3).map(|i| stale_reads(&c, i)).sum::<f64>() > stale_before,
            "a node without m2 was asked first and refused to answer"
        );
        // Without a session, the same page through n1 misses it.
        let plain = c.client_of(&c.addrs[..1]).read_page(&query).await.unwrap();
        assert_eq!(sorts(&plain), [b"m1".to_vec()], "no session: stale");
        // Monotonic: one item alone, through the session, still has it.
        let item = session
            .get_item("default", b"feed", b"m2", ReadOptions::r(1))
            .await
            .unwrap();
        assert_eq!(item.map(|i| i.sort), Some(b"m2".to_vec()));

        // The written replica gone: a typed error within the timeout.
        let session = client_from(&c, 2).session();
        session
            .put_item(
                "default",
                b"feed",
                b"m3",
                b"three",
                &empty,
                WriteOptions::w(1),
            )
            .await
            .unwrap();
        c.stop(2).await;
        let started = Instant::now();
        let mut q = query.clone();
        q.options.timeout_ms = Some(1500);
        match session.read_page(&q).await {
            Err(Error::Stale { attempts, .. }) => assert!(attempts >= 2, "{attempts}"),
            other => panic!("expected Error::Stale, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_millis(1500 + 1000));
        c.shutdown().await;
    })
    .await
    .unwrap();
}
