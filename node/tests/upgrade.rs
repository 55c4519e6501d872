//! A rolling upgrade: a cluster of three nodes of the previous release
//! (peer protocol 7 only: `peer_protocol = 7`, which makes a node read and
//! write the wire as the previous release does, checked against its
//! recorded frames in `rpc/peer/version.rs`) is upgraded one node at a time
//! (drain, stop, start as this release) while clients write and read. No
//! request fails, nothing acknowledged is lost, and each upgraded node
//! speaks version 7 to the nodes not yet upgraded.

mod common;

use common::{metric, TestCluster};
use kvorum_client::CausalContext;
use kvorum_node::rpc::peer::PeerVersions;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// n2, still of the previous release, misses writes while it restarts;
/// a read through n1 (upgraded) at R = 3 repairs it: n1's repair goes to n2
/// as a version 7 `Write` (a version 7 node refuses a `Repair`, as a raw
/// call shows).
async fn stale_v7_replica_repaired_by_an_upgraded_node(c: &mut TestCluster) {
    use kvorum_node::rpc::peer::{PeerRequest, PeerResponse, ReplicaRequest, ReplicaResponse};
    let node = c.nodes[1].take().unwrap();
    node.drain().await;
    node.shutdown().await;
    let via_n1 = c.client_of(&[c.addrs[0]]);
    for k in 0..20 {
        let key = format!("stale{k}");
        via_n1
            .put("default", key.as_bytes(), b"v", &CausalContext::empty())
            .await
            .unwrap();
    }
    c.restart(2).await; // still peer protocol 7
    c.wait_all_reachable().await;
    let raw = common::PeerProbe::new(&c.node_tls(1));
    let skey = |k: usize| {
        kvorum_node::replication::replica::storage_key("default", format!("stale{k}").as_bytes())
    };
    let held =
        |r: PeerResponse| matches!(r, PeerResponse::Replica(ReplicaResponse::State(Some(_))));
    let read = |k| PeerRequest::Replica(ReplicaRequest::Read { key: skey(k) });
    assert!(
        !held(raw.call_in(c.addrs[1], &read(0), 7).await),
        "n2 missed the writes"
    );
    // A version 7 node refuses what it could not have read.
    let repair = PeerRequest::Replica(ReplicaRequest::Repair {
        key: skey(0),
        state: kvorum_node::data::value::State::empty(kvorum_client::BucketType::Register),
    });
    assert!(
        matches!(
            raw.call_in(c.addrs[1], &repair, 7).await,
            PeerResponse::Error(_)
        ),
        "a Repair in a version 7 frame is refused"
    );
    for k in 0..20 {
        let opts = kvorum_client::ReadOptions {
            repair_before_answer: true,
            ..kvorum_client::ReadOptions::r(3)
        };
        via_n1
            .get_with("default", format!("stale{k}").as_bytes(), opts)
            .await
            .unwrap();
    }
    for k in 0..20 {
        assert!(
            held(raw.call_in(c.addrs[1], &read(k), 7).await),
            "stale{k}: n1's read repair reached n2 (sent as a version 7 Write)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_upgraded_one_node_at_a_time_fails_no_request_and_loses_nothing() {
    tokio::time::timeout(Duration::from_secs(240), async {
        // (No anti-entropy: the stale replica below is repaired by a read.)
        let extra = "peer_protocol = 7\n[anti_entropy]\nenabled = false\n";
        let mut c = TestCluster::start(3, extra).await;
        c.wait_all_reachable().await;
        let client = c.client();
        // Keys the readers read throughout.
        for k in 0..50 {
            let key = format!("r{k}");
            client
                .put(
                    "default",
                    key.as_bytes(),
                    key.as_bytes(),
                    &CausalContext::empty(),
                )
                .await
                .unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let mut load = Vec::new();
        for t in 0..16 {
            let (client, stop) = (client.clone(), stop.clone());
            let (acked, failed) = (acked.clone(), failed.clone());
            load.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    if t % 2 == 0 {
                        let key = format!("w{t}-{i}");
                        match client
                            .put(
                                "default",
                                key.as_bytes(),
                                key.as_bytes(),
                                &CausalContext::empty(),
                            )
                            .await
                        {
                            Ok(_) => acked.lock().unwrap().push(key),
                            Err(e) => failed.lock().unwrap().push(format!("put {key}: {e}")),
                        }
                    } else {
                        let key = format!("r{}", i % 50);
                        match client.get("default", key.as_bytes()).await {
                            Ok(v) if v.siblings == vec![key.as_bytes().to_vec()] => {}
                            Ok(v) => failed.lock().unwrap().push(format!("get {key}: {v:?}")),
                            Err(e) => failed.lock().unwrap().push(format!("get {key}: {e}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
        for i in 1..=3 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            // Upgrade node i: drain, stop, start as this release.
            let node = c.nodes[i - 1].take().unwrap();
            node.drain().await;
            node.shutdown().await;
            c.configs[i - 1].peer_versions = PeerVersions::CURRENT;
            c.restart(i).await;
            c.wait_all_reachable().await;
            // Mixed: the upgraded node speaks 7 to those not yet upgraded
            // (it learns it from their first answer), 8 to those that are.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let node = c.nodes[i - 1].as_ref().unwrap();
                let spoken: Vec<f64> = (1..=3)
                    .filter(|j| *j != i)
                    .map(|j| {
                        let peer = format!("n{j}");
                        metric(node, "kvorum_peer_protocol_version", &[("peer", &peer)])
                    })
                    .collect();
                let expected: Vec<f64> = (1..=3)
                    .filter(|j| *j != i)
                    .map(|j| if j < i { 8.0 } else { 7.0 })
                    .collect();
                if spoken == expected {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "n{i} speaks {spoken:?} to its peers, expected {expected:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!(
                "n{i} upgraded; {} writes acknowledged",
                acked.lock().unwrap().len()
            );
            if i == 1 {
                stale_v7_replica_repaired_by_an_upgraded_node(&mut c).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::Relaxed);
        for l in load {
            l.await.unwrap();
        }
        let failed = failed.lock().unwrap().clone();
        assert!(
            failed.is_empty(),
            "{} request(s) failed during the upgrade, e.g. {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() > 100, "the load ran: {}", acked.len());
        for key in &acked {
            let got = client.get("default", key.as_bytes()).await.unwrap();
            assert_eq!(got.siblings, vec![key.as_bytes().to_vec()], "{key}");
        }
        client.close().await;
        c.shutdown().await;
    })
    .await
    .expect("the test finishes within 240 s");
}
