//! Bucket types and convergent data types on a real cluster: typed errors,
//! cluster-wide bucket definitions that survive restarts, the semantics of
//! each type through different coordinators, bounds, and counters and sets
//! under partitions (Jepsen's counter and set checks).

mod common;

use common::{PeerProbe, TestCluster, TEST_TIMEOUT};
use kvorum_client::proto::Limit;
use kvorum_client::DataValue;
use kvorum_client::{
    Admin, BucketProps, BucketType, CausalContext, Error, ErrorReply, FieldKind, FieldValue,
    MapUpdate, ReadOptions, WriteOptions,
};
use kvorum_node::data::value::Reading;
use kvorum_node::net::faults::Faults;
use kvorum_node::replication::replica::storage_key;
use std::collections::BTreeSet;
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};
use std::time::Duration;

const FAST: &str = "[failure_detector]\nheartbeat_interval_ms = 100\nacceptable_pause_ms = 400\n\
                    [anti_entropy]\ninterval_ms = 300\n\
                    [hints]\ndelivery_interval_ms = 200\n";

fn server_error(r: Result<impl std::fmt::Debug, Error>) -> ErrorReply {
    match r {
        Err(Error::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

async fn create(admin: &Admin, name: &str, t: BucketType) {
    admin
        .create_bucket(name, BucketProps::new(t).n(3).r(2).w(2))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_cluster_wide_typed_and_survive_restarts() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = TestCluster::start(3, "").await;
        c.wait_all_reachable().await;
        let client = c.client_of(&c.addrs[..1]);
        let admin = c.admin_of(&c.addrs[..1]);
        create(&admin, "hits", BucketType::Counter).await;
        // Idempotent with equal props; a conflict with other props.
        create(&admin, "hits", BucketType::Counter).await;
        let e = server_error(
            admin
                .create_bucket("hits", BucketProps::new(BucketType::Set))
                .await,
        );
        assert!(
            matches!(e, ErrorReply::BucketConflict { ref existing, .. } if existing.bucket_type == BucketType::Counter),
            "{e:?}"
        );
        let e = server_error(
            admin
                .create_bucket("bad", BucketProps::new(BucketType::Set).n(2).w(3))
                .await,
        );
        assert!(matches!(e, ErrorReply::BadRequest(_)), "{e:?}");
        // Every node knows it at once (creation waits for every member).
        for addr in &c.addrs {
            let list = c.admin_of(&[*addr]).buckets().await.unwrap();
            assert!(
                list.contains(&("hits".into(), BucketProps::new(BucketType::Counter))),
                "{addr}: {list:?}"
            );
        }
        // Unknown buckets and wrong types: typed errors, nothing changes.
        let e = server_error(client.get("nope", b"k").await);
        assert_eq!(e, ErrorReply::UnknownBucket("nope".into()));
        let e = server_error(client.counter("nope", b"k").increment(1).await);
        assert_eq!(e, ErrorReply::UnknownBucket("nope".into()));
        let wrong = |e: ErrorReply, t: BucketType| {
            assert!(
                matches!(e, ErrorReply::WrongType { bucket_type, .. } if bucket_type == t),
                "{e:?}"
            )
        };
        wrong(server_error(client.get("hits", b"k").await), BucketType::Counter);
        wrong(
            server_error(client.put("hits", b"k", b"v", &CausalContext::empty()).await),
            BucketType::Counter,
        );
        wrong(
            server_error(client.set("hits", b"k").add(b"x").await),
            BucketType::Counter,
        );
        wrong(
            server_error(client.counter("default", b"k").increment(1).await),
            BucketType::Register,
        );
        assert!(!client.get("default", b"k").await.unwrap().is_found());
        assert_eq!(client.counter("hits", b"k").value().await.unwrap(), 0);
        // A garbage context is refused.
        let e = server_error(
            client
                .set("sets", b"k")
                .remove(b"x", &CausalContext(vec![2, 0xff, 0xff]))
                .await,
        );
        assert_eq!(e, ErrorReply::UnknownBucket("sets".into()));
        create(&c.admin(), "sets", BucketType::Set).await;
        let e = server_error(
            client
                .set("sets", b"k")
                .remove(b"x", &CausalContext(vec![2, 0xff, 0xff]))
                .await,
        );
        assert!(matches!(e, ErrorReply::InvalidContext(_)), "{e:?}");
        // Definitions survive a restart, and the restarted node serves them.
        client.counter("hits", b"k").increment(2).await.unwrap();
        c.stop(2).await;
        c.restart(2).await;
        c.wait_all_reachable().await;
        let via2 = c.client_of(&c.addrs[1..2]);
        assert!(c
            .admin_of(&c.addrs[1..2])
            .buckets()
            .await
            .unwrap()
            .iter()
            .any(|(n, p)| n == "hits" && p.bucket_type == BucketType::Counter));
        via2.counter("hits", b"k").increment(3).await.unwrap();
        let v = via2
            .counter("hits", b"k")
            .read_options(ReadOptions::r(3))
            .value()
            .await
            .unwrap();
        assert_eq!(v, 5);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_type_behaves_through_different_coordinators_and_is_bounded() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(
            3,
            "[limits]\nmax_set_members = 5\nmax_map_fields = 5\n[anti_entropy]\nenabled = false\n",
        )
        .await;
        c.wait_all_reachable().await;
        let (a, b) = (c.client_of(&c.addrs[..1]), c.client_of(&c.addrs[1..2]));
        for (name, t) in [
            ("hits", BucketType::Counter),
            ("tags", BucketType::Set),
            ("carts", BucketType::Map),
            ("names", BucketType::Lww),
        ] {
            create(&c.admin_of(&c.addrs[..1]), name, t).await;
        }
        let all = WriteOptions::w(3);
        let r3 = ReadOptions::r(3);

        // Counter: increments through two coordinators add up.
        let (ca, cb) = (
            a.counter("hits", b"page").write_options(all),
            b.counter("hits", b"page").write_options(all),
        );
        let (x, y) = tokio::join!(ca.increment(10), cb.increment(-3));
        x.unwrap();
        y.unwrap();
        ca.increment(1).await.unwrap();
        assert_eq!(ca.value().await.unwrap(), 8);

        // Set: a remove removes only the adds its read observed.
        let (sa, sb) = (
            a.set("tags", b"post").write_options(all).read_options(r3),
            b.set("tags", b"post").write_options(all).read_options(r3),
        );
        sa.add_all([b"x".to_vec(), b"y".to_vec()]).await.unwrap();
        let seen = sa.members().await.unwrap();
        assert_eq!(seen.members, vec![b"x".to_vec(), b"y".to_vec()]);
        sb.add(b"x").await.unwrap(); // a new add of x, unseen by `seen`
        sa.update(vec![], vec![b"x".to_vec(), b"y".to_vec()], &seen.context)
            .await
            .unwrap();
        assert_eq!(sb.members().await.unwrap().members, vec![b"x".to_vec()]);
        // An empty context removes nothing.
        sa.remove(b"x", &CausalContext::empty()).await.unwrap();
        assert!(sa.members().await.unwrap().contains(b"x"));

        // Map: concurrent updates of different fields both survive.
        let (ma, mb) = (
            a.map("carts", b"alice").write_options(all).read_options(r3),
            b.map("carts", b"alice").write_options(all).read_options(r3),
        );
        let (x, y) = tokio::join!(
            ma.update(
                MapUpdate::new()
                    .increment("apples", 2)
                    .add("notes", b"gift")
            ),
            mb.update(
                MapUpdate::new()
                    .increment("pears", 1)
                    .set_register("comment", b"hi")
            ),
        );
        x.unwrap();
        y.unwrap();
        let read = ma.fetch().await.unwrap();
        assert_eq!(
            read.value.get("apples", FieldKind::Counter),
            Some(&FieldValue::Counter(2))
        );
        assert_eq!(
            read.value.get("pears", FieldKind::Counter),
            Some(&FieldValue::Counter(1))
        );
        // Two register writes with the same context through one coordinator
        // stay siblings (no lost update).
        let (x, y) = tokio::join!(
            ma.update(
                MapUpdate::new()
                    .set_register("comment", b"one")
                    .context(&read.context)
            ),
            ma.update(
                MapUpdate::new()
                    .set_register("comment", b"two")
                    .context(&read.context)
            ),
        );
        x.unwrap();
        y.unwrap();
        let after = mb.fetch().await.unwrap();
        let comment = match after.value.get("comment", FieldKind::Register) {
            Some(FieldValue::Register(v)) => v.iter().cloned().collect::<BTreeSet<_>>(),
            other => panic!("comment: {other:?}"),
        };
        assert_eq!(
            comment,
            BTreeSet::from([b"one".to_vec(), b"two".to_vec()]),
            "both concurrent writes survive as siblings"
        );
        // A field removal concurrent with an update of the field: the update
        // survives (the removal only removes what its read saw).
        let seen = ma.fetch().await.unwrap();
        mb.update(MapUpdate::new().increment("pears", 5))
            .await
            .unwrap();
        ma.update(
            MapUpdate::new()
                .remove_field("pears", FieldKind::Counter)
                .remove_field("apples", FieldKind::Counter)
                .context(&seen.context),
        )
        .await
        .unwrap();
        let after = ma.fetch().await.unwrap();
        assert_eq!(after.value.get("apples", FieldKind::Counter), None);
        assert!(
            after.value.get("pears", FieldKind::Counter).is_some(),
            "{:?}",
            after.value
        );

        // LWW: the later write wins, a delete removes.
        a.put("names", b"u1", b"first", &CausalContext::empty())
            .await
            .unwrap();
        b.put("names", b"u1", b"second", &CausalContext::empty())
            .await
            .unwrap();
        let v = a.get_with("names", b"u1", r3).await.unwrap();
        assert_eq!(v.siblings, vec![b"second".to_vec()]);
        a.delete("names", b"u1", &CausalContext::empty())
            .await
            .unwrap();
        assert!(!b.get_with("names", b"u1", r3).await.unwrap().is_found());

        // Bounds: typed errors, and nothing changes.
        let big = a.set("tags", b"big");
        big.add_all((0..5u8).map(|i| vec![i])).await.unwrap();
        let e = server_error(big.add(b"six").await);
        assert!(
            matches!(
                e,
                ErrorReply::TooLarge {
                    what: Limit::SetMembers,
                    size: 6,
                    max: 5
                }
            ),
            "{e:?}"
        );
        assert_eq!(big.members().await.unwrap().members.len(), 5);
        let wide = a.map("carts", b"wide");
        let e = server_error(
            wide.update(
                MapUpdate::new()
                    .enable("a")
                    .enable("b")
                    .enable("c")
                    .enable("d")
                    .enable("e")
                    .enable("f"),
            )
            .await,
        );
        assert!(
            matches!(
                e,
                ErrorReply::TooLarge {
                    what: Limit::MapFields,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(wide.fetch().await.unwrap().value.fields.is_empty());
        c.shutdown().await;
    })
    .await
    .unwrap();
}

fn now_ms() -> u64 {
    use kvorum_node::util::clock::Clock;
    kvorum_node::util::clock::SystemClock.wall_ms()
}

/// Reads the counter value node `addr` stores.
async fn stored_counter(probe: &PeerProbe, addr: std::net::SocketAddr, skey: &[u8]) -> i64 {
    match probe.stored_state(addr, skey).await {
        None => 0,
        Some(s) => match s.read(now_ms()) {
            Reading::Data(Some(DataValue::Counter(v)), _) => v,
            Reading::Data(None, _) => 0,
            other => panic!("not a counter: {other:?}"),
        },
    }
}

/// Members node `addr` stores for a set key.
async fn stored_members(
    probe: &PeerProbe,
    addr: std::net::SocketAddr,
    skey: &[u8],
) -> BTreeSet<Vec<u8>> {
    match probe
        .stored_state(addr, skey)
        .await
        .as_ref()
        .map(|s| s.read(now_ms()))
    {
        Some(Reading::Data(Some(DataValue::Set(m)), _)) => m.into_iter().collect(),
        Some(Reading::Data(None, _)) | None => BTreeSet::new(),
        other => panic!("not a set: {other:?}"),
    }
}

/// Partitions the cluster in two ways while `run` is set, then heals.
async fn nemesis(c: &TestCluster, faults: &Faults, phase: Duration) {
    let a = &c.addrs;
    faults.partition(&a[..1], &a[1..]);
    tokio::time::sleep(phase).await;
    faults.heal();
    tokio::time::sleep(phase / 2).await;
    faults.partition(&a[..2], &a[2..]);
    tokio::time::sleep(phase).await;
    faults.heal();
}

/// Makes every node exchange with every peer, until a round repairs nothing.
async fn converge(c: &TestCluster) {
    for _ in 0..10 {
        let mut repaired = 0;
        for addr in &c.addrs {
            let (_, keys) = c.admin_of(&[*addr]).repair().await.unwrap();
            repaired += keys;
        }
        if repaired == 0 {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_increments_under_partitions_are_counted_once() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let faults = Faults::new(7);
        let c = TestCluster::start_with_faults(4, FAST, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        create(&c.admin(), "hits", BucketType::Counter).await;
        let acked = Arc::new(AtomicU64::new(0));
        let attempted = Arc::new(AtomicU64::new(0));
        let run = Arc::new(AtomicBool::new(true));
        let mut workers = Vec::new();
        for i in 0..3 {
            let client = c.client_of(&c.addrs[i..i + 1]);
            let (acked, attempted, run) = (acked.clone(), attempted.clone(), run.clone());
            workers.push(tokio::spawn(async move {
                let counter = client
                    .counter("hits", b"total")
                    .write_options(WriteOptions::w(2).timeout_ms(1000));
                let mut by = 1 + i as u64;
                while run.load(Ordering::SeqCst) {
                    attempted.fetch_add(by, Ordering::SeqCst);
                    match counter.increment(by as i64).await {
                        Ok(()) => {
                            acked.fetch_add(by, Ordering::SeqCst);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                    by = by % 3 + 1;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        nemesis(&c, &faults, Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.store(false, Ordering::SeqCst);
        for w in workers {
            w.await.unwrap();
        }
        let (acked, attempted) = (
            acked.load(Ordering::SeqCst),
            attempted.load(Ordering::SeqCst),
        );
        assert!(
            acked > 0 && attempted > acked,
            "acked {acked} of {attempted}: the nemesis bit"
        );
        c.wait_all_reachable().await;
        converge(&c).await;
        // Every replica of the key (and every node, fallbacks included, for
        // those that hold it) ends between the acknowledged and the attempted sum.
        let probe = PeerProbe::new(&c.node_tls(1));
        let skey = storage_key("hits", b"total");
        let ring = kvorum_ring::Ring::new(
            (1..=4).map(|i| kvorum_ring::Member::new(format!("n{i}"))),
            kvorum_ring::DEFAULT_VNODES,
        );
        let replicas = ring.item_preference_list(&skey, 3);
        let mut values = Vec::new();
        for id in &replicas {
            let idx: usize = id.as_str()[1..].parse().unwrap();
            values.push(stored_counter(&probe, c.addrs[idx - 1], &skey).await);
        }
        for v in &values {
            assert!(
                (acked as i64..=attempted as i64).contains(v),
                "replica value {v} outside [{acked}, {attempted}] (all: {values:?})"
            );
        }
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "replicas differ: {values:?}"
        );
        let read = c
            .client()
            .counter("hits", b"total")
            .read_options(ReadOptions::r(3))
            .value()
            .await
            .unwrap();
        assert_eq!(read, values[0]);
        eprintln!("counter: acked {acked}, attempted {attempted}, final {read}");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_adds_and_removes_under_partitions_converge_without_resurrection() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let faults = Faults::new(11);
        let c = TestCluster::start_with_faults(3, FAST, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        create(&c.admin(), "tags", BucketType::Set).await;
        let run = Arc::new(AtomicBool::new(true));
        let mut workers = Vec::new();
        for i in 0..3usize {
            let client = c.client_of(&c.addrs[i..i + 1]);
            let run = run.clone();
            workers.push(tokio::spawn(async move {
                let set = client
                    .set("tags", b"s")
                    .write_options(WriteOptions::w(2).timeout_ms(1000))
                    .read_options(ReadOptions::r(2).timeout_ms(1000));
                // (element, add acknowledged, remove attempted, remove acknowledged)
                let mut log: Vec<(Vec<u8>, bool, bool, bool)> = Vec::new();
                let mut j = 0u32;
                while run.load(Ordering::SeqCst) {
                    let e = format!("c{i}-{j}").into_bytes();
                    let added = set.add(&e).await.is_ok();
                    let mut entry = (e.clone(), added, false, false);
                    if added && j % 3 == 0 {
                        // Remove it again, with a read that saw the add.
                        if let Ok(read) = set.members().await {
                            if read.contains(&e) {
                                entry.2 = true;
                                entry.3 = set.remove(&e, &read.context).await.is_ok();
                            }
                        }
                    }
                    if !added {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    log.push(entry);
                    j += 1;
                }
                log
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        nemesis(&c, &faults, Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.store(false, Ordering::SeqCst);
        let mut log = Vec::new();
        for w in workers {
            log.extend(w.await.unwrap());
        }
        c.wait_all_reachable().await;
        converge(&c).await;
        let probe = PeerProbe::new(&c.node_tls(1));
        let skey = storage_key("tags", b"s");
        let mut finals = Vec::new();
        for addr in &c.addrs {
            finals.push(stored_members(&probe, *addr, &skey).await);
        }
        assert!(
            finals.windows(2).all(|w| w[0] == w[1]),
            "replicas differ after heal and anti-entropy"
        );
        let fin = &finals[0];
        let (mut kept, mut removed, mut failed_adds) = (0, 0, 0);
        for (e, added, rm_tried, rm_acked) in &log {
            let name = String::from_utf8_lossy(e);
            if *rm_acked {
                // Adds are per client and unique: nothing concurrent re-adds it.
                assert!(!fin.contains(e), "{name} was removed and came back");
                removed += 1;
            } else if *added && !rm_tried {
                assert!(fin.contains(e), "acknowledged add {name} lost");
                kept += 1;
            } else if !added {
                failed_adds += 1;
            }
        }
        assert!(kept > 0 && removed > 0, "kept {kept}, removed {removed}");
        assert!(failed_adds > 0, "the nemesis made some adds fail");
        let read = c
            .client()
            .set("tags", b"s")
            .read_options(ReadOptions::r(3))
            .members()
            .await
            .unwrap();
        assert_eq!(&read.members.into_iter().collect::<BTreeSet<_>>(), fin);
        eprintln!("set: {kept} kept, {removed} removed, {failed_adds} adds failed");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shopping_cart_example_runs_against_a_cluster() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        c.wait_all_reachable().await;
        let (phone, laptop) = (c.client_of(&c.addrs[..1]), c.client_of(&c.addrs[1..2]));
        cart_example::run(&c.admin_of(&c.addrs[..1]), &phone, &laptop)
            .await
            .unwrap();
        c.shutdown().await;
    })
    .await
    .unwrap();
}

// The example program itself, so the test runs exactly what users read.
#[path = "../../examples/shopping_cart.rs"]
#[allow(dead_code)]
mod cart_example;
