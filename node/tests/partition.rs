//! Partitions on the real QUIC path (a fault-injecting wrapper of each
//! node's UDP socket), and a set-style checker: after partitions heal and
//! replicas converge, every acknowledged write is present on every replica,
//! or was superseded by a later write that had read it (Dynamo §4.4, §4.6, §4.7).

mod common;

use common::{until, PeerProbe, TestCluster};
use kvorum_client::{CausalContext, Client, ReadOptions, WriteOptions};
use kvorum_node::net::faults::Faults;
use kvorum_node::replication::replica::storage_key;
use kvorum_ring::{Member, NodeId, Ring, DEFAULT_VNODES};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

const FAST: &str = "[failure_detector]\nheartbeat_interval_ms = 100\nacceptable_pause_ms = 400\n\
                    [anti_entropy]\ninterval_ms = 300\n\
                    [hints]\ndelivery_interval_ms = 200\n";

fn seed() -> u64 {
    let seed = std::env::var("KVORUM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed: {seed} (replay with KVORUM_TEST_SEED={seed})");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_pair_exchanges_nothing_and_heals() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let faults = Faults::new(seed());
        let c = TestCluster::start_with_faults(3, FAST, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let (n1, n2) = (NodeId::new("n1"), NodeId::new("n2"));
        faults.partition(&c.addrs[..1], &c.addrs[1..]);
        let before = faults.dropped();
        until(
            "both sides see the other down",
            Duration::from_secs(10),
            || {
                !c.nodes[0].as_ref().unwrap().sees_up(&n2)
                    && !c.nodes[1].as_ref().unwrap().sees_up(&n1)
            },
        )
        .await;
        assert!(faults.dropped() > before, "the injector dropped datagrams");
        // A write through n1 at W=1 stays on n1's side.
        let client = c.client_of(&c.addrs[..1]);
        client
            .put_with(
                "default",
                b"k",
                b"v",
                &CausalContext::empty(),
                WriteOptions::w(1),
            )
            .await
            .unwrap();
        let probe = PeerProbe::new(&c.node_tls(1));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            probe
                .stored(c.addrs[1], &storage_key("default", b"k"))
                .await
                .is_none(),
            "nothing crossed"
        );
        // Strict W=2 cannot be met alone on n1's side.
        let strict = client
            .put_with(
                "default",
                b"k2",
                b"v",
                &CausalContext::empty(),
                WriteOptions::w(2).strict(),
            )
            .await;
        assert!(strict.is_err(), "{strict:?}");
        // One-way: n2 -> n3 cut, n3 -> n2 open; both lose each other.
        faults.heal();
        c.wait_all_reachable().await;
        faults.block_one_way(c.addrs[1], c.addrs[2]);
        until("a one-way cut is seen", Duration::from_secs(10), || {
            !c.nodes[1].as_ref().unwrap().sees_up(&NodeId::new("n3"))
        })
        .await;
        faults.heal();
        c.wait_all_reachable().await;
        // Loss: 20% of datagrams dropped at random (seeded); QUIC retransmits,
        // so writes still succeed, and the drop counter shows the loss.
        let before = faults.dropped();
        faults.set_loss_ppm(200_000);
        for i in 0..20u8 {
            client
                .put_with(
                    "default",
                    &[b'l', i],
                    b"v",
                    &CausalContext::empty(),
                    WriteOptions::w(3).timeout_ms(5000),
                )
                .await
                .unwrap();
        }
        assert!(faults.dropped() > before, "loss injected");
        faults.heal();
        c.wait_all_reachable().await;
        // Delay: every datagram between n1 and the others takes 150 ms more
        // each way, so a write that needs all three replicas takes at least
        // one delayed round trip.
        faults.record_delays(true);
        for other in &c.addrs[1..] {
            faults.delay(
                c.addrs[0],
                *other,
                Duration::from_millis(150),
                Duration::ZERO,
            );
            faults.delay(
                *other,
                c.addrs[0],
                Duration::from_millis(150),
                Duration::ZERO,
            );
        }
        let started = Instant::now();
        client
            .put_with(
                "default",
                b"slow",
                b"v",
                &CausalContext::empty(),
                WriteOptions::w(3).strict().timeout_ms(5000),
            )
            .await
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "delay injected: {:?}",
            started.elapsed()
        );
        assert!(faults.delayed() > 0);
        // The delays as held at the socket: at least the injected 150 ms.
        let held = faults.delay_samples(c.addrs[0], c.addrs[1]);
        assert!(!held.is_empty(), "delays recorded");
        assert!(
            held.iter().all(|d| *d >= Duration::from_millis(150)),
            "{held:?}"
        );
        assert!(faults.delay_samples(c.addrs[1], c.addrs[2]).is_empty());
        faults.record_delays(false);
        faults.heal();
        // Healed: anti-entropy carries the W=1 write across.
        let deadline = Instant::now() + Duration::from_secs(20);
        while probe
            .stored(c.addrs[1], &storage_key("default", b"k"))
            .await
            .is_none()
        {
            assert!(Instant::now() < deadline, "not healed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// One write attempt: the value written, what its read returned, whether acked.
struct Attempt {
    key: u32,
    value: Vec<u8>,
    read: Vec<Vec<u8>>,
    acked: bool,
}

async fn writer(client: Client, name: String, keys: u32, count: u32, mut rng: u64) -> Vec<Attempt> {
    let mut out = Vec::new();
    for i in 0..count {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = (rng % u64::from(keys)) as u32;
        let k = format!("k{key}");
        let Ok(read) = client
            .get_with("default", k.as_bytes(), ReadOptions::r(1).timeout_ms(1000))
            .await
        else {
            continue;
        };
        let value = format!("{name}-{i}").into_bytes();
        let res = client
            .put_with(
                "default",
                k.as_bytes(),
                &value,
                &read.context,
                WriteOptions::w(2).timeout_ms(1000),
            )
            .await;
        out.push(Attempt {
            key,
            value,
            read: read.siblings,
            acked: res.is_ok(),
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_across_partitions() {
    tokio::time::timeout(Duration::from_secs(400), async {
        const KEYS: u32 = 100;
        let seed = seed();
        let faults = Faults::new(seed);
        let c = TestCluster::start_with_faults(4, FAST, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let (left, right) = (c.client_of(&c.addrs[..2]), c.client_of(&c.addrs[2..]));
        let mut attempts = Vec::new();
        for cycle in 0..3u64 {
            faults.partition(&c.addrs[..2], &c.addrs[2..]);
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..8u64 {
                let client = if w % 2 == 0 {
                    left.clone()
                } else {
                    right.clone()
                };
                let rng = seed ^ (cycle * 8 + w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                tasks.spawn(writer(client, format!("c{cycle}w{w}"), KEYS, 150, rng));
            }
            while let Some(t) = tasks.join_next().await {
                attempts.extend(t.unwrap());
            }
            faults.heal();
            // Writes continue while the cluster heals.
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..4u64 {
                let client = if w % 2 == 0 {
                    left.clone()
                } else {
                    right.clone()
                };
                let rng = seed ^ (cycle * 8 + w + 100).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                tasks.spawn(writer(client, format!("c{cycle}h{w}"), KEYS, 150, rng));
            }
            while let Some(t) = tasks.join_next().await {
                attempts.extend(t.unwrap());
            }
        }
        let acked = attempts.iter().filter(|a| a.acked).count();
        eprintln!(
            "{} attempts, {acked} acknowledged, {} datagrams dropped",
            attempts.len(),
            faults.dropped()
        );
        assert!(faults.dropped() > 0);
        assert!(acked >= 5000, "only {acked} acknowledged writes");

        // Converge: anti-entropy on every node until all replicas agree.
        let ring = Ring::new(
            (1..=4).map(|i| Member::new(format!("n{i}"))),
            DEFAULT_VNODES,
        );
        let probe = PeerProbe::new(&c.node_tls(1));
        let deadline = Instant::now() + Duration::from_secs(120);
        let finals: HashMap<u32, BTreeSet<Vec<u8>>> = loop {
            for addr in &c.addrs {
                let _ = c.admin_of(&[*addr]).repair().await;
            }
            let mut finals = HashMap::new();
            let mut agree = true;
            for key in 0..KEYS {
                let skey = storage_key("default", format!("k{key}").as_bytes());
                let mut states = Vec::new();
                for node in ring.item_preference_list(&skey, 3) {
                    let idx: usize = node.as_str()[1..].parse().unwrap();
                    states.push(probe.stored(c.addrs[idx - 1], &skey).await);
                }
                agree &= states.iter().all(|s| *s == states[0]);
                let live: BTreeSet<Vec<u8>> = states[0]
                    .as_ref()
                    .map(|s| s.read(0).0)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                finals.insert(key, live);
            }
            if agree {
                break finals;
            }
            assert!(Instant::now() < deadline, "replicas did not converge");
        };

        // The checker. A value missing from the final state is accounted for
        // only if a write that read it (and so superseded it) is itself
        // accounted for: present in the final state, or superseded in turn
        // by an accounted write. Writes that failed their quorum may still
        // have been applied (Dynamo semantics), so they may supersede too —
        // but only if their own value survives or is accounted for.
        let mut readers: HashMap<(u32, &Vec<u8>), Vec<&Attempt>> = HashMap::new();
        for a in &attempts {
            for v in &a.read {
                readers.entry((a.key, v)).or_default().push(a);
            }
        }
        fn accounted<'a>(
            key: u32,
            value: &'a Vec<u8>,
            finals: &HashMap<u32, BTreeSet<Vec<u8>>>,
            readers: &HashMap<(u32, &'a Vec<u8>), Vec<&'a Attempt>>,
            memo: &mut HashMap<(u32, &'a Vec<u8>), bool>,
        ) -> bool {
            if let Some(known) = memo.get(&(key, value)) {
                return *known;
            }
            memo.insert((key, value), false); // reads precede writes: no cycles
            let ok = finals[&key].contains(value)
                || readers.get(&(key, value)).is_some_and(|rs| {
                    rs.iter()
                        .any(|w| accounted(key, &w.value, finals, readers, memo))
                });
            memo.insert((key, value), ok);
            ok
        }
        let mut memo = HashMap::new();
        let written: BTreeSet<&Vec<u8>> = attempts.iter().map(|a| &a.value).collect();
        let mut lost = Vec::new();
        for a in attempts.iter().filter(|a| a.acked) {
            if !accounted(a.key, &a.value, &finals, &readers, &mut memo) {
                lost.push(String::from_utf8_lossy(&a.value).into_owned());
            }
        }
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost (seed {seed}): {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        for (key, live) in &finals {
            for v in live {
                assert!(written.contains(v), "k{key} holds a value nobody wrote");
            }
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deleted_under_partition_stays_deleted_and_its_tombstone_is_removed() {
    tokio::time::timeout(Duration::from_secs(120), async {
        // Short hint TTL, request cap and read timeout, so the grace can be 7 s.
        let config = format!(
            "{FAST}ttl_secs = 1\n[limits]\nmax_request_timeout_ms = 2000\nrequest_read_timeout_ms = 1000\n"
        );
        let config = config.replace(
            "[anti_entropy]\n",
            "[anti_entropy]\ntombstone_grace_secs = 7\n",
        );
        let faults = Faults::new(seed());
        let c = TestCluster::start_with_faults(4, &config, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let ring = Ring::new(
            (1..=4).map(|i| Member::new(format!("n{i}"))),
            DEFAULT_VNODES,
        );
        let (left, right) = (c.client_of(&c.addrs[..2]), c.client_of(&c.addrs[2..]));
        for k in 0..20u32 {
            left.put_with(
                "default",
                format!("k{k}").as_bytes(),
                b"v",
                &CausalContext::empty(),
                WriteOptions::w(3),
            )
            .await
            .unwrap();
        }
        faults.partition(&c.addrs[..2], &c.addrs[2..]);
        // Delete on the left; the right side still holds the values. A delete
        // that meets the partition before the detector does fails (typed, not
        // acknowledged) and is retried, as a client would.
        for k in 0..20u32 {
            let key = format!("k{k}");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(read) = left.get_with("default", key.as_bytes(), ReadOptions::r(1)).await {
                    if left
                        .delete_with("default", key.as_bytes(), &read.context, WriteOptions::w(2))
                        .await
                        .is_ok()
                    {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "delete of {key} never acknowledged"
                );
            }
        }
        let still = right.get_with("default", b"k0", ReadOptions::r(1)).await.unwrap();
        assert!(still.is_found(), "the right side has not seen the delete");
        faults.heal();
        let probe = PeerProbe::new(&c.node_tls(1));
        let replicas = |k: u32| {
            let skey = storage_key("default", format!("k{k}").as_bytes());
            let pref = ring.item_preference_list(&skey, 3);
            (
                skey,
                pref.into_iter()
                    .map(|n| c.addrs[n.as_str()[1..].parse::<usize>().unwrap() - 1])
                    .collect::<Vec<_>>(),
            )
        };
        // Every replica converges to "deleted", then the tombstones go. Once a
        // replica shows a key deleted or removed, it must never show it live.
        let mut deleted_on: BTreeSet<(u32, std::net::SocketAddr)> = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut gone = true;
            for k in 0..20u32 {
                let (skey, addrs) = replicas(k);
                for a in addrs {
                    let live = match probe.stored(a, &skey).await {
                        Some(s) => {
                            gone = false;
                            !s.read(0).0.is_empty()
                        }
                        None => false,
                    };
                    if live {
                        assert!(!deleted_on.contains(&(k, a)), "k{k} came back on {a}");
                    } else {
                        deleted_on.insert((k, a));
                    }
                }
            }
            if gone {
                break;
            }
            assert!(Instant::now() < deadline, "tombstones were not removed");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Removed everywhere, and still deleted for clients (and no value resurrects).
        tokio::time::sleep(Duration::from_secs(2)).await;
        for k in 0..20u32 {
            let v = left
                .get_with("default", format!("k{k}").as_bytes(), ReadOptions::r(3))
                .await
                .unwrap();
            assert!(!v.is_found(), "k{k} resurrected");
            let (skey, addrs) = replicas(k);
            for a in addrs {
                assert!(probe.stored(a, &skey).await.is_none(), "k{k} back on {a}");
            }
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}
