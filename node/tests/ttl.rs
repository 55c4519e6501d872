//! Expiry over real QUIC (docs/data-types.md "Expiry"):
//! - a key with a time to live reads as not found from its expiry on,
//!   through every node and every R, and through every read path (get,
//!   typed fetches of every type, range pages, batches, sessions,
//!   conditions); a bucket's default applies; a write after expiry starts
//!   afresh; and examples/expiry.rs runs;
//! - under a partition (delayed hints) and with a replica stopped from
//!   before the expiry until past the grace (its hints dropped: it returns
//!   with the older values), the expired value never reads as live again
//!   at any R, nor the value it replaced, and its record is reaped from
//!   every replica (`KVORUM_PLANT=expiry-dropped`, replicas that drop the
//!   expiry of what peers send, brings expired values back);
//! - with one node's clock ahead and one behind (within the documented
//!   tolerance): nothing resurrects and nothing is reaped early;
//! - thousands of expiring keys and no faults: anti-entropy repairs 0 keys,
//!   while the keys expire and while they are reaped.
//!
//! `KVORUM_PLANT=expiry-ignored` plants the bug of reads that ignore
//! expiry: the first test then fails (docs/testing.md).

mod common;

use common::{metric, PeerProbe, TestCluster};
use kvorum_client::{BucketProps, BucketType, CausalContext, Client, ReadOptions, WriteOptions};
use kvorum_node::net::faults::Faults;
use kvorum_node::replication::replica::storage_key;
use kvorum_ring::{Member, Ring, DEFAULT_VNODES};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The tests start clusters: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FAST: &str = "[failure_detector]\nheartbeat_interval_ms = 100\nacceptable_pause_ms = 400\n\
                    [anti_entropy]\ninterval_ms = 300\n\
                    [hints]\ndelivery_interval_ms = 200\n";

/// [`FAST`] with a grace of 7 s (short hint TTL, request cap and read
/// timeout make it legal), so expired keys are reaped within the test.
fn short_grace() -> String {
    format!("{FAST}ttl_secs = 1\n[limits]\nmax_request_timeout_ms = 2000\nrequest_read_timeout_ms = 1000\n")
        .replace("[anti_entropy]\n", "[anti_entropy]\ntombstone_grace_secs = 7\n")
}

fn plant() {
    use kvorum_node::util::plant::{plant, Bug};
    match std::env::var("KVORUM_PLANT").as_deref() {
        Ok("expiry-ignored") => plant(Some(Bug::ExpiryIgnored)),
        Ok("expiry-dropped") => plant(Some(Bug::ExpiryDropped)),
        _ => {}
    }
}

fn ttl(secs: u64) -> WriteOptions {
    WriteOptions::default().ttl(Duration::from_secs(secs))
}

async fn create(c: &TestCluster, name: &str, props: BucketProps) {
    c.admin().create_bucket(name, props).await.unwrap();
}

/// Whether a get of `key` through `client` at `r` finds a value.
async fn found(client: &Client, bucket: &str, key: &[u8], r: u8) -> bool {
    client
        .get_with(bucket, key, ReadOptions::r(r))
        .await
        .unwrap()
        .is_found()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_key_reads_as_not_found_through_every_node_r_and_read_path() {
    let _serial = SERIAL.lock().await;
    plant();
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = TestCluster::start(3, FAST).await;
        c.wait_all_reachable().await;
        create(&c, "hits", BucketProps::new(BucketType::Counter)).await;
        create(&c, "tags", BucketProps::new(BucketType::Set)).await;
        create(&c, "carts", BucketProps::new(BucketType::Map)).await;
        create(&c, "last", BucketProps::new(BucketType::Lww)).await;
        create(
            &c,
            "cache",
            BucketProps::new(BucketType::Register).default_ttl(Duration::from_secs(3)),
        )
        .await;
        c.grant_every_bucket().await;
        let client = c.client();
        let empty = CausalContext::empty();
        let began = Instant::now();
        // Every type with a 3 s TTL, an item, a bucket default, and keys
        // that live for ever beside them.
        let old = client.put("default", b"k", b"old", &empty).await.unwrap();
        let k_ctx = client
            .put_with("default", b"k", b"v", &old, ttl(3))
            .await
            .unwrap();
        let _ = k_ctx;
        client.put("default", b"keep", b"v", &empty).await.unwrap();
        client
            .put_with("last", b"l", b"v", &empty, ttl(3))
            .await
            .unwrap();
        client
            .counter("hits", b"c")
            .write_options(ttl(3))
            .increment(5)
            .await
            .unwrap();
        client
            .set("tags", b"s")
            .write_options(ttl(3))
            .add(b"m")
            .await
            .unwrap();
        client
            .map("carts", b"m")
            .write_options(ttl(3))
            .update(kvorum_client::MapUpdate::new().increment("n", 1))
            .await
            .unwrap();
        let p = client.partition("default", b"p");
        p.put_with(b"a", b"expiring", &empty, ttl(3)).await.unwrap();
        p.put(b"b", b"kept", &empty).await.unwrap();
        client.put("cache", b"d", b"v", &empty).await.unwrap();
        let written = began.elapsed();
        assert!(written < Duration::from_secs(2), "writes took {written:?}");

        // Before expiry: there, through every node and R.
        for (i, addr) in c.addrs.iter().enumerate() {
            let via = c.client_of(&[*addr]);
            for r in 1..=3u8 {
                for (bucket, key) in [("default", &b"k"[..]), ("last", b"l"), ("cache", b"d")] {
                    if began.elapsed() < Duration::from_millis(2_800) {
                        assert!(
                            found(&via, bucket, key, r).await,
                            "{bucket}/{key:?} via n{} r={r}",
                            i + 1
                        );
                    }
                }
            }
        }
        assert_eq!(client.counter("hits", b"c").value().await.unwrap(), 5);

        // From expiry on (3 s after the writes were acknowledged, plus a
        // small tolerance): not found, everywhere, by every path.
        tokio::time::sleep(
            (written + Duration::from_millis(3_100)).saturating_sub(began.elapsed()),
        )
        .await;
        for (i, addr) in c.addrs.iter().enumerate() {
            let via = c.client_of(&[*addr]);
            for r in 1..=3u8 {
                for (bucket, key) in [("default", &b"k"[..]), ("last", b"l"), ("cache", b"d")] {
                    assert!(
                        !found(&via, bucket, key, r).await,
                        "{bucket}/{key:?} via n{} r={r}",
                        i + 1
                    );
                }
                assert!(
                    found(&via, "default", b"keep", r).await,
                    "a key without a TTL stays"
                );
                let ro = ReadOptions::r(r);
                let hits = via
                    .counter("hits", b"c")
                    .read_options(ro)
                    .read()
                    .await
                    .unwrap();
                assert_eq!(hits.value, 0, "counter via n{} r={r}", i + 1);
                let tags = via
                    .set("tags", b"s")
                    .read_options(ro)
                    .members()
                    .await
                    .unwrap();
                assert!(tags.members.is_empty(), "set via n{} r={r}", i + 1);
                let cart = via
                    .map("carts", b"m")
                    .read_options(ro)
                    .fetch()
                    .await
                    .unwrap();
                assert!(cart.value.fields.is_empty(), "map via n{} r={r}", i + 1);
            }
            let page = via
                .partition("default", b"p")
                .page(&p.range())
                .await
                .unwrap();
            let sorts: Vec<&[u8]> = page.items.iter().map(|i| i.sort.as_slice()).collect();
            assert_eq!(sorts, vec![&b"b"[..]], "range page via n{}", i + 1);
            let outcomes = via
                .batch()
                .get("default", b"p", b"a")
                .get("default", b"k", b"")
                .send()
                .await
                .unwrap();
            for o in outcomes {
                match o.unwrap() {
                    kvorum_client::Outcome::Read(v) => assert!(!v.is_found(), "batch get"),
                    other => panic!("unexpected {other:?}"),
                }
            }
            let session = via.session();
            assert!(
                !session.get("default", b"k").await.unwrap().is_found(),
                "session get"
            );
        }
        // An expired key is absent for a condition; the write after expiry
        // starts afresh: neither the expired value nor the one it replaced
        // comes back as a sibling.
        client
            .put_with(
                "default",
                b"k",
                b"fresh",
                &empty,
                WriteOptions::default().if_absent(),
            )
            .await
            .unwrap();
        let read = client
            .get_with("default", b"k", ReadOptions::r(3))
            .await
            .unwrap();
        assert_eq!(read.siblings, vec![b"fresh".to_vec()]);
        client.counter("hits", b"c").increment(1).await.unwrap();
        assert_eq!(
            client.counter("hits", b"c").value().await.unwrap(),
            1,
            "restarted from 0"
        );
        client.set("tags", b"s").add(b"n").await.unwrap();
        let tags = client.set("tags", b"s").members().await.unwrap();
        assert_eq!(tags.members, vec![b"n".to_vec()]);

        let expired: f64 = c
            .nodes
            .iter()
            .flatten()
            .map(|n| metric(n, "kvorum_items_expired_total", &[]))
            .sum();
        assert!(
            expired >= 10.0,
            "reads that hid expired data are counted: {expired}"
        );
        // The example program, against this cluster.
        expiry_example::run(&c.admin(), &client, "t").await.unwrap();
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// The preference list of `key` in `bucket` on a ring of `count` nodes, as
/// addresses.
fn replicas(c: &TestCluster, count: usize, bucket: &str, key: &[u8]) -> (Vec<u8>, Vec<SocketAddr>) {
    let ring = Ring::new(
        (1..=count).map(|i| Member::new(format!("n{i}"))),
        DEFAULT_VNODES,
    );
    let skey = storage_key(bucket, key);
    let addrs = ring
        .item_preference_list(&skey, 3)
        .into_iter()
        .map(|n| c.addrs[n.as_str()[1..].parse::<usize>().unwrap() - 1])
        .collect();
    (skey, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_values_never_come_back_under_faults_and_are_reaped_everywhere() {
    let _serial = SERIAL.lock().await;
    plant();
    tokio::time::timeout(Duration::from_secs(150), async {
        let faults = Faults::new(0x77_1e);
        let mut c = TestCluster::start_with_faults(4, &short_grace(), Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let (left, right) = (c.client_of(&c.addrs[..2]), c.client_of(&c.addrs[2..]));
        let keys: Vec<String> = (0..12).map(|k| format!("k{k}")).collect();
        // Old values, without a TTL, on every replica.
        for k in &keys {
            left.put_with(
                "default",
                k.as_bytes(),
                b"old",
                &CausalContext::empty(),
                WriteOptions::w(3),
            )
            .await
            .unwrap();
        }
        // Half the keys: replaced by an expiring value on one side of a
        // partition (the other side keeps the old value and then the
        // replacement's hints are delayed by the partition).
        faults.partition(&c.addrs[..2], &c.addrs[2..]);
        let write = |client: Client, key: String| async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(read) = client
                    .get_with("default", key.as_bytes(), ReadOptions::r(1))
                    .await
                {
                    let opts = WriteOptions::w(2).ttl(Duration::from_secs(2));
                    if client
                        .put_with("default", key.as_bytes(), b"expiring", &read.context, opts)
                        .await
                        .is_ok()
                    {
                        return;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "write of {key} never acknowledged"
                );
            }
        };
        for k in &keys[..6] {
            write(left.clone(), k.clone()).await;
        }
        let still = right
            .get_with("default", b"k0", ReadOptions::r(1))
            .await
            .unwrap();
        assert_eq!(
            still.siblings,
            vec![b"old".to_vec()],
            "the right side has not seen it"
        );
        faults.heal();
        // The other half: replaced while a replica is stopped, and it stays
        // down past the expiry, the hint TTL (its hints are dropped) and
        // the grace: it comes back with the old values only.
        c.stop(4).await;
        let rest = c.client_of(&c.addrs[..3]);
        for k in &keys[6..] {
            write(rest.clone(), k.clone()).await;
        }
        let expired_at = Instant::now() + Duration::from_secs(2);
        tokio::time::sleep_until((expired_at + Duration::from_secs(8)).into()).await;
        c.restart(4).await;
        c.wait_all_reachable().await;
        // From expiry on, the expiring value never reads as live through
        // any node at any R; once converged, the old value does not
        // either (the expiring write had replaced it).
        let probe = PeerProbe::new(&c.node_tls(1));
        let clients: Vec<Client> = c.addrs.iter().map(|a| c.client_of(&[*a])).collect();
        let mut converged = false;
        let deadline = Instant::now() + Duration::from_secs(100);
        loop {
            for (i, via) in clients.iter().enumerate() {
                for k in &keys {
                    for r in 1..=3u8 {
                        let Ok(read) = via
                            .get_with("default", k.as_bytes(), ReadOptions::r(r))
                            .await
                        else {
                            continue;
                        };
                        assert!(
                            !read.siblings.contains(&b"expiring".to_vec()),
                            "{k} expired value back via n{} r={r}",
                            i + 1
                        );
                        if converged {
                            assert!(
                                !read.is_found(),
                                "{k} back via n{} r={r}: {:?}",
                                i + 1,
                                read.siblings
                            );
                        }
                    }
                }
            }
            // Reaped from every replica: done.
            let mut held = 0;
            for k in &keys {
                let (skey, addrs) = replicas(&c, 4, "default", k.as_bytes());
                for a in addrs {
                    held += usize::from(probe.stored_state(a, &skey).await.is_some());
                }
            }
            if held == 0 {
                break;
            }
            converged = converged || {
                let r3 = clients[0].clone();
                let mut all = true;
                for k in &keys {
                    all &= r3
                        .get_with("default", k.as_bytes(), ReadOptions::r(3))
                        .await
                        .is_ok_and(|r| !r.is_found());
                }
                all
            };
            assert!(
                Instant::now() < deadline,
                "{held} expired records still held"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Removed everywhere, and still not found (nothing resurrects).
        tokio::time::sleep(Duration::from_secs(2)).await;
        for k in &keys {
            assert!(
                !found(&clients[0], "default", k.as_bytes(), 3).await,
                "{k} resurrected"
            );
            let (skey, addrs) = replicas(&c, 4, "default", k.as_bytes());
            for a in addrs {
                assert!(
                    probe.stored_state(a, &skey).await.is_none(),
                    "{k} back on {a}"
                );
            }
        }
        let reaped: f64 = c
            .nodes
            .iter()
            .flatten()
            .map(|n| metric(n, "kvorum_expired_reaped_total", &[]))
            .sum();
        assert!(
            reaped >= 1.0,
            "reaping of expired keys is counted: {reaped}"
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_ahead_and_behind_neither_resurrect_nor_reap_early() {
    let _serial = SERIAL.lock().await;
    // n1 1.5 s ahead, n2 1.5 s behind, n3 on time: within the tolerance
    // docs/data-types.md gives for this config (a grace of 7 s).
    const SKEW_MS: u64 = 1_500;
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = TestCluster::start_skewed(3, &short_grace(), None, &[1_500, -1_500, 0]).await;
        c.wait_all_reachable().await;
        let clients: Vec<Client> = c.addrs.iter().map(|a| c.client_of(&[*a])).collect();
        let keys: Vec<String> = (0..9).map(|k| format!("k{k}")).collect();
        let ttl_ms = 4_000u64;
        // Each node coordinates three keys: expiry is stamped by the
        // coordinator's clock.
        let began = Instant::now();
        for (i, k) in keys.iter().enumerate() {
            clients[i % 3]
                .put_with(
                    "default",
                    k.as_bytes(),
                    b"v",
                    &CausalContext::empty(),
                    WriteOptions::w(3).ttl(Duration::from_millis(ttl_ms)),
                )
                .await
                .unwrap();
        }
        let written = began.elapsed();
        // A key's absolute expiry is at most 4 s + 1.5 s after the writes
        // (a coordinator ahead), by true time; a reader 1.5 s behind sees it
        // 1.5 s later. From then on nothing reads it, ever.
        let hidden_everywhere = began + written + Duration::from_millis(ttl_ms + 2 * SKEW_MS + 200);
        // Until the earliest expiry by true time (a coordinator behind, a
        // reader ahead: 4 s - 3 s), every node still holds every key.
        let probe = PeerProbe::new(&c.node_tls(1));
        let no_reap_before =
            began + Duration::from_millis(ttl_ms - 2 * SKEW_MS) + Duration::from_secs(7);
        let mut gone_at = None;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let now = Instant::now();
            for (i, via) in clients.iter().enumerate() {
                for k in &keys {
                    for r in 1..=3u8 {
                        let read = via
                            .get_with("default", k.as_bytes(), ReadOptions::r(r))
                            .await
                            .unwrap();
                        if now > hidden_everywhere {
                            assert!(!read.is_found(), "{k} back via n{} r={r}", i + 1);
                        }
                    }
                }
            }
            let mut held = 0;
            for k in &keys {
                let skey = storage_key("default", k.as_bytes());
                for a in &c.addrs {
                    held += usize::from(probe.stored_state(*a, &skey).await.is_some());
                }
            }
            if Instant::now() < no_reap_before {
                assert_eq!(held, 27, "reaped early (before expiry plus the grace)");
            }
            if held == 0 {
                gone_at.get_or_insert(Instant::now());
                if Instant::now() > hidden_everywhere + Duration::from_secs(1) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{held} expired records still held"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_expiring_keys_and_no_faults_make_anti_entropy_repair_nothing() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(150), async {
        let extra = short_grace().replace("interval_ms = 300", "interval_ms = 100");
        let c = TestCluster::start(3, &extra).await;
        c.wait_all_reachable().await;
        create(&c, "tags", BucketProps::new(BucketType::Set)).await;
        create(&c, "last", BucketProps::new(BucketType::Lww)).await;
        c.grant_every_bucket().await;
        let client = c.client();
        let empty = CausalContext::empty();
        // 3,000 keys of three types, each written to all three replicas
        // (W = 3), expiring 6-8 s later.
        let mut tasks = Vec::new();
        for chunk in 0..30u32 {
            let client = client.clone();
            let empty = empty.clone();
            tasks.push(tokio::spawn(async move {
                for k in chunk * 100..(chunk + 1) * 100 {
                    let key = format!("k{k}");
                    let opts =
                        WriteOptions::w(3).ttl(Duration::from_millis(6_000 + u64::from(k % 2_000)));
                    match k % 3 {
                        0 => client
                            .put_with("default", key.as_bytes(), b"v", &empty, opts)
                            .await
                            .map(|_| ()),
                        1 => client
                            .put_with("last", key.as_bytes(), b"v", &empty, opts)
                            .await
                            .map(|_| ()),
                        _ => {
                            client
                                .set("tags", key.as_bytes())
                                .write_options(opts)
                                .add(b"m")
                                .await
                        }
                    }
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let repaired = |c: &TestCluster| -> f64 {
            c.nodes
                .iter()
                .flatten()
                .map(|n| metric(n, "kvorum_aae_keys_repaired_total", &[]))
                .sum()
        };
        let exchanges = |c: &TestCluster| -> f64 {
            c.nodes
                .iter()
                .flatten()
                .map(|n| metric(n, "kvorum_aae_exchanges_total", &[("outcome", "ok")]))
                .sum()
        };
        let start = exchanges(&c);
        // An exchange that runs while a write is on its way to the third
        // replica sees a real difference and repairs it: that is before
        // expiry has any part, and not counted here. Exchanges under way
        // when the writes end are let finish (the count stays put for a
        // second), well before the first key expires.
        let writes_done = Instant::now();
        let mut written = repaired(&c);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = repaired(&c);
            if now == written {
                break;
            }
            written = now;
        }
        assert!(
            writes_done.elapsed() < Duration::from_secs(5),
            "exchanges settled late"
        );
        // While they expire (no reaping before the 7 s grace)...
        tokio::time::sleep_until((writes_done + Duration::from_secs(9)).into()).await;
        assert_eq!(
            repaired(&c),
            written,
            "anti-entropy repaired keys while they expired"
        );
        // ...and while they are reaped: until every record is gone.
        let probe = PeerProbe::new(&c.node_tls(1));
        let deadline = Instant::now() + Duration::from_secs(100);
        let sample: BTreeSet<u32> = (0..3000).step_by(97).collect();
        loop {
            let mut held = 0;
            for k in &sample {
                let bucket = ["default", "last", "tags"][(*k % 3) as usize];
                let skey = storage_key(bucket, format!("k{k}").as_bytes());
                for a in &c.addrs {
                    held += usize::from(probe.stored_state(*a, &skey).await.is_some());
                }
            }
            if held == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still held: {held} of the sample"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Every key, not only the sample, once reaping is over.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut held = 0;
            for k in 0..3000u32 {
                let bucket = ["default", "last", "tags"][(k % 3) as usize];
                let skey = storage_key(bucket, format!("k{k}").as_bytes());
                for a in &c.addrs {
                    held += usize::from(probe.stored_state(*a, &skey).await.is_some());
                }
            }
            if held == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{held} records still held");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(exchanges(&c) > start + 10.0, "exchanges ran meanwhile");
        assert_eq!(
            repaired(&c),
            written,
            "anti-entropy repaired keys while they were reaped"
        );
        let reaped: f64 = c
            .nodes
            .iter()
            .flatten()
            .map(|n| metric(n, "kvorum_expired_reaped_total", &[]))
            .sum();
        assert_eq!(reaped, 9000.0, "every key reaped once on each replica");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

// The example program itself, so the test runs exactly what users read.
#[path = "../../examples/expiry.rs"]
#[allow(dead_code)]
mod expiry_example;
