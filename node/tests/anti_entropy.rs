//! Merkle-tree anti-entropy alone (Dynamo §4.7) brings a replica that missed
//! writes back: no reads, and no hints (N = 3 on 3 nodes leaves no fallback).

mod common;

use common::{metric, PeerProbe, TestCluster};
use kvorum_client::{CausalContext, WriteOptions};
use kvorum_node::replication::replica::storage_key;
use std::time::{Duration, Instant};

const FAST_AAE: &str = "[anti_entropy]\ninterval_ms = 200\n";
const NO_AAE: &str = "[anti_entropy]\nenabled = false\n";
const KEYS: u32 = 300;

/// Writes KEYS keys at W=2 with n3 down.
async fn write_while_n3_is_down(c: &mut TestCluster) {
    c.stop(3).await;
    let client = c.client_of(&c.addrs[..2]);
    for i in 0..KEYS {
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
}

/// How many of the keys node `i` holds.
async fn held(c: &TestCluster, probe: &PeerProbe, i: usize) -> u32 {
    let mut n = 0;
    for k in 0..KEYS {
        let state = probe
            .stored(
                c.addrs[i - 1],
                &storage_key("default", format!("k{k}").as_bytes()),
            )
            .await;
        n += u32::from(state.is_some_and(|s| s.read(0).0 == vec![k.to_be_bytes().to_vec()]));
    }
    n
}

async fn converged(c: &TestCluster, probe: &PeerProbe) -> bool {
    for k in 0..KEYS {
        let key = storage_key("default", format!("k{k}").as_bytes());
        let first = probe.stored(c.addrs[0], &key).await;
        for i in 2..=3 {
            if probe.stored(c.addrs[i - 1], &key).await != first {
                return false;
            }
        }
    }
    true
}

/// Every pair of nodes has equal trees for each other (and they are not empty).
async fn trees_equal(c: &TestCluster, _probe: &PeerProbe) -> bool {
    // Node j asks node i for their shared tree with its own certificate
    // (a node may only ask in its own name).
    let probes: Vec<PeerProbe> = (1..=3).map(|i| PeerProbe::new(&c.node_tls(i))).collect();
    for i in 1..=3usize {
        for j in (i + 1)..=3usize {
            let a = probes[j - 1]
                .branches(c.addrs[i - 1], &format!("n{j}"))
                .await;
            let b = probes[i - 1]
                .branches(c.addrs[j - 1], &format!("n{i}"))
                .await;
            if a != b || a.iter().all(|h| *h == 0) {
                return false;
            }
        }
    }
    true
}

async fn until_converged(c: &TestCluster, probe: &PeerProbe, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !(held(c, probe, 3).await == KEYS
        && converged(c, probe).await
        && trees_equal(c, probe).await)
    {
        assert!(
            Instant::now() < deadline,
            "not converged: n3 holds {} of {KEYS}",
            held(c, probe, 3).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// n3 missed all KEYS writes; only anti-entropy exchanges can have merged
/// them (there are no reads and no fallbacks), so their counters cover them.
fn assert_repaired_by_anti_entropy(c: &TestCluster) {
    let repaired: u64 = c
        .nodes
        .iter()
        .flatten()
        .map(|n| n.aae_keys_repaired())
        .sum();
    assert!(
        repaired >= u64::from(KEYS),
        "anti-entropy merged only {repaired} keys"
    );
    // The metrics agree: keys repaired, differing segments found, exchanges
    // that succeeded and were timed.
    let sum = |name: &str, labels: &[(&str, &str)]| -> f64 {
        c.nodes
            .iter()
            .flatten()
            .map(|n| metric(n, name, labels))
            .sum()
    };
    assert_eq!(sum("kvorum_aae_keys_repaired_total", &[]), repaired as f64);
    assert!(sum("kvorum_aae_differing_segments_total", &[]) >= 1.0);
    let ok = sum("kvorum_aae_exchanges_total", &[("outcome", "ok")]);
    assert!(ok >= 1.0);
    assert!(sum("kvorum_aae_exchange_duration_seconds_count", &[]) >= ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_writes_converges_by_anti_entropy_alone() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut c = TestCluster::start(3, FAST_AAE).await;
        write_while_n3_is_down(&mut c).await;
        c.restart(3).await;
        let probe = PeerProbe::new(&c.node_tls(1));
        until_converged(&c, &probe, Duration::from_secs(60)).await;
        assert_repaired_by_anti_entropy(&c);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// A wiped node is a new node with an old name: it joins again, streaming
/// its ranges in before it serves them (anti-entropy is off, so only the
/// stream can bring the keys back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_data_dir_was_wiped_rejoins_and_streams_its_ranges_back() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut c = TestCluster::start(3, NO_AAE).await;
        write_while_n3_is_down(&mut c).await;
        std::fs::remove_dir_all(&c.configs[2].data_dir).unwrap();
        assert!(!c.configs[2].data_dir.exists(), "n3's data is gone");
        c.restart(3).await;
        c.wait_for_members(3).await; // n3 is up again: its join completed
        let probe = PeerProbe::new(&c.node_tls(1));
        assert_eq!(
            held(&c, &probe, 3).await,
            KEYS,
            "n3 holds every key once up"
        );
        let n3 = c.nodes[2].as_ref().unwrap();
        let streamed = metric(n3, "kvorum_transfer_keys_total", &[("direction", "in")]);
        assert!(streamed >= f64::from(KEYS), "streamed {streamed}");
        assert_eq!(n3.aae_keys_repaired(), 0);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_repair_runs_an_exchange_on_demand() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut c = TestCluster::start(3, NO_AAE).await;
        write_while_n3_is_down(&mut c).await;
        c.restart(3).await;
        c.wait_for_members(3).await;
        let probe = PeerProbe::new(&c.node_tls(1));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = held(&c, &probe, 3).await;
        assert!(
            before < KEYS,
            "periodic anti-entropy is off: n3 still misses keys"
        );
        let n3 = c.admin_of(&c.addrs[2..3]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut repaired = 0;
        while held(&c, &probe, 3).await < KEYS {
            assert!(Instant::now() < deadline, "admin repair did not converge");
            let (exchanges, keys) = n3.repair().await.unwrap();
            assert_eq!(exchanges, 2, "n3 exchanged with both peers");
            repaired += keys;
        }
        assert!(repaired >= u64::from(KEYS - before), "repaired {repaired}");
        assert!(converged(&c, &probe).await);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// The trees are built from storage after a restart while the node serves:
/// writes (new keys, overwrites and deletes) land through the restarted
/// node during the build, and once it is done (and the writes stopped) its
/// trees, key index and reaping candidates equal a build from scratch of
/// what its storage holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trees_built_while_writes_land_equal_a_build_from_scratch() {
    tokio::time::timeout(Duration::from_secs(120), async {
        const LOADED: u32 = 6_000;
        let mut c = TestCluster::start(3, NO_AAE).await;
        let client = c.client_of(&c.addrs[..1]);
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..16 {
            let client = client.clone();
            writers.spawn(async move {
                for i in (w..LOADED).step_by(16) {
                    let key = format!("k{i}");
                    client
                        .put("default", key.as_bytes(), b"v0", &CausalContext::empty())
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        c.restart(1).await;
        let client = c.client_of(&c.addrs[..1]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut during = 0u32;
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..8u32 {
            let (client, stop) = (client.clone(), stop.clone());
            writers.spawn(async move {
                let mut written = 0u32;
                let mut i = w;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Overwrites across the loaded keys, new keys, deletes.
                    let key = format!("k{}", (i * 7919) % (LOADED + 2_000));
                    let current = client.get("default", key.as_bytes()).await.unwrap();
                    if i % 5 == 0 {
                        client
                            .delete("default", key.as_bytes(), &current.context)
                            .await
                            .unwrap();
                    } else {
                        client
                            .put("default", key.as_bytes(), b"v1", &current.context)
                            .await
                            .unwrap();
                    }
                    written += 1;
                    i += 8;
                }
                written
            });
        }
        let n1 = c.nodes[0].as_ref().unwrap();
        common::until("n1's trees built", Duration::from_secs(60), || {
            n1.aae_trees_built()
        })
        .await;
        // A few more writes after the build, then stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        while let Some(done) = writers.join_next().await {
            during += done.unwrap();
        }
        assert!(during > 0, "no writes landed");
        let n1 = c.nodes[0].as_ref().unwrap();
        // A write's hook runs just after its commit: allow for the last.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !n1.aae_trees_agree_with_storage().unwrap() {
            assert!(
                Instant::now() < deadline,
                "n1's trees differ from a build from scratch ({during} writes during and after the build)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}
