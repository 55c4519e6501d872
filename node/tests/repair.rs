//! Self-healing on real QUIC and real disks: read repair (Dynamo §4.7 / §5).

mod common;

use common::{metric, raw_request, TestCluster, TEST_TIMEOUT};
use kvorum_client::proto::{decode_frame, encode_frame, ALPN_PEER};
use kvorum_client::{CausalContext, ReadOptions, WriteOptions};
use kvorum_node::data::register::Register;
use kvorum_node::replication::replica::storage_key;
use kvorum_node::rpc::peer::{
    PeerRequest, PeerResponse, ReplicaRequest, ReplicaResponse, PEER_PROTOCOL_VERSION,
};
use std::time::{Duration, Instant};

/// Anti-entropy off: only read repair may fix replicas here. Every read asks every replica (not only R), so a
/// replica outside the quorum is read-repaired too.
const NO_AAE: &str = "[anti_entropy]\nenabled = false\n[replication]\nread_repair_chance = 1.0\n";

/// What node `i` stores for a key, asked over the peer protocol (which
/// repairs nothing).
async fn stored(c: &TestCluster, i: usize, key: &[u8]) -> Option<Register> {
    let req = encode_frame(
        PEER_PROTOCOL_VERSION,
        &PeerRequest::Replica(ReplicaRequest::Read {
            key: storage_key("default", key),
        }),
    );
    let bytes = raw_request(c.addrs[i - 1], &c.node_tls(1), ALPN_PEER, &req)
        .await
        .unwrap();
    match decode_frame(PEER_PROTOCOL_VERSION, &bytes).unwrap() {
        PeerResponse::Replica(ReplicaResponse::State(None)) => None,
        PeerResponse::Replica(ReplicaResponse::State(Some(kvorum_node::data::value::State {
            body: kvorum_node::data::value::Body::Register(r),
            ..
        }))) => Some(r),
        other => panic!("unexpected {other:?}"),
    }
}

fn live(r: &Option<Register>) -> Vec<Vec<u8>> {
    r.as_ref().map(|r| r.read(0).0).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_replica_is_fixed_by_a_single_read() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = TestCluster::start(3, NO_AAE).await;
        let client = c.client_of(&c.addrs[..2]);
        c.stop(3).await;
        for key in [&b"now"[..], b"later"] {
            client
                .put_with(
                    "default",
                    key,
                    b"v1",
                    &CausalContext::empty(),
                    WriteOptions::w(2),
                )
                .await
                .unwrap();
        }
        c.restart(3).await;
        c.wait_for_members(3).await;
        c.wait_all_reachable().await;
        for key in [&b"now"[..], b"later"] {
            assert_eq!(
                live(&stored(&c, 3, key).await),
                Vec::<Vec<u8>>::new(),
                "n3 missed the write"
            );
            assert_eq!(live(&stored(&c, 1, key).await), vec![b"v1".to_vec()]);
        }

        // Repair before answering: n3 holds the value when the read returns.
        let v = client
            .get_with("default", b"now", ReadOptions::r(3).repair_before_answer())
            .await
            .unwrap();
        assert_eq!(v.single(), Some(&b"v1"[..]));
        assert_eq!(live(&stored(&c, 3, b"now").await), vec![b"v1".to_vec()]);

        // Default: repaired in the background right after the answer, also
        // when n3 answers after the R=2 quorum was met.
        let v = client
            .get_with("default", b"later", ReadOptions::r(2))
            .await
            .unwrap();
        assert_eq!(v.single(), Some(&b"v1"[..]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while live(&stored(&c, 3, b"later").await).is_empty() {
            assert!(
                Instant::now() < deadline,
                "background read repair did not reach n3"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // After repair all three replicas hold equal states.
        let states = [
            stored(&c, 1, b"later").await,
            stored(&c, 2, b"later").await,
            stored(&c, 3, b"later").await,
        ];
        assert!(states.iter().all(|s| *s == states[0]), "{states:?}");
        // Both repairs were counted, and both reads found one sibling.
        let sum =
            |name: &str| -> f64 { c.nodes.iter().flatten().map(|n| metric(n, name, &[])).sum() };
        assert!(sum("kvorum_read_repairs_total") >= 2.0);
        assert_eq!(sum("kvorum_reads_repaired_total"), 2.0);
        assert_eq!(sum("kvorum_read_siblings_count"), 2.0);
        assert_eq!(sum("kvorum_read_siblings_sum"), 2.0);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_serving_its_data() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = TestCluster::start(3, NO_AAE).await;
        let client = c.client();
        client
            .put_with(
                "default",
                b"k",
                b"v",
                &CausalContext::empty(),
                WriteOptions::w(3),
            )
            .await
            .unwrap();
        c.restart(2).await;
        c.wait_for_members(3).await;
        c.wait_all_reachable().await;
        assert_eq!(live(&stored(&c, 2, b"k").await), vec![b"v".to_vec()]);
        assert_eq!(
            client
                .get_with("default", b"k", ReadOptions::r(3))
                .await
                .unwrap()
                .single(),
            Some(&b"v"[..])
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}
