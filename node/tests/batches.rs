//! Replica reads and writes to one peer that queue up at once share a stream
//! (`PeerRequest::Batch`), on a real cluster (real QUIC on 127.0.0.1, real
//! fjall): every write of a batch lands and every request gets its own
//! answer, and a batch holding anything else gets a per-request error,
//! never a crash.

mod common;

use common::{metric, PeerProbe, TestCluster, TEST_TIMEOUT};
use kvorum_client::{CausalContext, WriteOptions};
use kvorum_node::data::value::State;
use kvorum_node::replication::replica::storage_key;
use kvorum_node::rpc::peer::{
    ClusterRequest, PeerError, PeerRequest, PeerResponse, ReplicaRequest, ReplicaResponse,
};

const NO_AAE: &str = "[anti_entropy]\nenabled = false\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_batches_and_every_one_lands() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, NO_AAE).await;
        c.wait_all_reachable().await;
        // Every write through n1, 64 at a time, at W = 3: acknowledged
        // means stored on all three replicas.
        let n1 = c.client_of(&c.addrs[..1]);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..256u32 {
            let client = n1.clone();
            tasks.spawn(async move {
                let key = format!("k{i}");
                client
                    .put_with(
                        "default",
                        key.as_bytes(),
                        format!("v{i}").as_bytes(),
                        &CausalContext::empty(),
                        WriteOptions::w(3),
                    )
                    .await
                    .map(|_| ())
            });
            while tasks.len() >= 64 {
                tasks.join_next().await.unwrap().unwrap().unwrap();
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        let node = c.nodes[0].as_ref().unwrap();
        let batches = metric(node, "kvorum_peer_batches_total", &[]);
        let batched = metric(node, "kvorum_peer_batched_requests_total", &[]);
        eprintln!("{batches} batches held {batched} of 512 replica writes");
        assert!(batches >= 1.0, "concurrent writes were never batched");
        assert!(batched >= 2.0 * batches);
        // Each replica holds each value under its own key: no answer of a
        // batch went to another write.
        let probe = PeerProbe::new(&c.node_tls(1));
        for addr in &c.addrs[1..] {
            for i in 0..256u32 {
                let key = format!("k{i}");
                let stored = probe
                    .stored(*addr, &storage_key("default", key.as_bytes()))
                    .await
                    .unwrap_or_else(|| panic!("{addr} lacks {key}"));
                assert_eq!(
                    stored.read(0).0,
                    vec![format!("v{i}").into_bytes()],
                    "{addr} {key}"
                );
            }
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_request_and_refuses_what_it_cannot_hold() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, NO_AAE).await;
        c.wait_all_reachable().await;
        // A state to write: what a real write left on n1.
        c.client()
            .put_with(
                "default",
                b"src",
                b"v",
                &CausalContext::empty(),
                WriteOptions::w(3),
            )
            .await
            .unwrap();
        let probe = PeerProbe::new(&c.node_tls(1));
        let n2 = c.addrs[1];
        let state: State = probe
            .stored_state(n2, &storage_key("default", b"src"))
            .await
            .expect("src is stored");
        let write = |key: &[u8]| {
            postcard::to_stdvec(&ReplicaRequest::Write {
                key: storage_key("default", key),
                state: state.clone(),
            })
            .unwrap()
        };
        let read = postcard::to_stdvec(&ReplicaRequest::Read {
            key: storage_key("default", b"src"),
        })
        .unwrap();
        // Requests of other subsystems do not decode as replica requests.
        let ping = postcard::to_stdvec(&PeerRequest::Cluster(ClusterRequest::Ping)).unwrap();
        let nested = postcard::to_stdvec(&PeerRequest::Batch(vec![write(b"x")])).unwrap();
        let batch = PeerRequest::Batch(vec![
            write(b"a"),
            vec![0xff, 0xff, 0xff],
            read,
            ping,
            nested,
            write(b"b"),
        ]);
        let PeerResponse::Batch(answers) = probe.call(n2, &batch).await else {
            panic!("a batch is answered with a batch");
        };
        let answers: Vec<PeerResponse> = answers
            .iter()
            .map(|b| postcard::from_bytes(b).unwrap())
            .collect();
        assert_eq!(answers.len(), 6);
        let stored = |a: &PeerResponse| matches!(a, PeerResponse::Replica(ReplicaResponse::Stored));
        assert!(stored(&answers[0]), "{:?}", answers[0]);
        assert!(
            matches!(&answers[1], PeerResponse::Error(PeerError::Malformed(_))),
            "{:?}",
            answers[1]
        );
        assert!(
            matches!(&answers[2], PeerResponse::Replica(ReplicaResponse::State(Some(s))) if *s == state),
            "{:?}",
            answers[2]
        );
        for a in &answers[3..5] {
            assert!(
                matches!(a, PeerResponse::Error(PeerError::Malformed(_))),
                "{a:?}"
            );
        }
        assert!(stored(&answers[5]), "{:?}", answers[5]);
        // More than 64 requests: the whole batch is refused, nothing stored.
        let many = PeerRequest::Batch((0..65).map(|_| write(b"many")).collect());
        assert!(
            matches!(
                probe.call(n2, &many).await,
                PeerResponse::Error(PeerError::BatchTooLarge { requests: 65, max: 64 })
            ),
            "an oversized batch is refused"
        );
        assert!(probe
            .stored_state(n2, &storage_key("default", b"many"))
            .await
            .is_none());
        // The two writes landed; the nested batch's did not.
        for (key, present) in [(&b"a"[..], true), (b"b", true), (b"x", false)] {
            let got = probe.stored_state(n2, &storage_key("default", key)).await;
            assert_eq!(got.is_some(), present, "{}", String::from_utf8_lossy(key));
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}
