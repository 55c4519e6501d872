//! Bad input and authentication on the real QUIC endpoint: malformed,
//! truncated and oversized frames get typed errors and the node keeps
//! serving; certificates from another CA and client certificates on the peer
//! ALPN are refused.

mod common;

use common::{raw_request, TestCluster, TEST_TIMEOUT};
use kvorum_client::proto::{
    decode_frame, encode_frame, ErrorReply, Limit, Request, Response, WriteOptions, ALPN_CLIENT,
    ALPN_PEER, PROTOCOL_VERSION,
};
use kvorum_client::{CausalContext, Client, Error, TlsMaterial};
use kvorum_node::net::certs;
use std::time::Duration;

const LIMITS: &str =
    "[limits]\nmax_value_bytes = 1024\nmax_key_bytes = 64\nmax_frame_bytes = 8192\n";

async fn assert_still_serving(c: &TestCluster) {
    static ROUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let key = format!(
        "alive-{}",
        ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let client = c.client_of(&c.addrs[..1]);
    client
        .put("default", key.as_bytes(), b"yes", &CausalContext::empty())
        .await
        .unwrap();
    assert_eq!(
        client
            .get("default", key.as_bytes())
            .await
            .unwrap()
            .siblings,
        vec![b"yes".to_vec()]
    );
}

fn answer(bytes: &[u8]) -> Response {
    decode_frame::<Response>(PROTOCOL_VERSION, bytes)
        .expect("the node answers with a well-formed frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_oversized_frames_get_errors() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, LIMITS).await;
        let (addr, tls) = (c.addrs[0], c.client_tls());

        // Garbage.
        let r = answer(
            &raw_request(
                addr,
                &tls,
                ALPN_CLIENT,
                &[0xde, 0xad, 0xbe, 0xef, 0xff, 0xff],
            )
            .await
            .unwrap(),
        );
        assert!(
            matches!(r, Response::Error(ErrorReply::BadRequest(_))),
            "{r:?}"
        );
        assert_still_serving(&c).await;

        // A valid frame cut in half.
        let put = Request::Put {
            bucket: "default".into(),
            key: b"k".to_vec(),
            value: vec![1; 100],
            context: CausalContext::empty(),
            options: WriteOptions::default(),
        };
        let frame = encode_frame(PROTOCOL_VERSION, &put);
        let r = answer(
            &raw_request(addr, &tls, ALPN_CLIENT, &frame[..frame.len() / 2])
                .await
                .unwrap(),
        );
        assert!(
            matches!(r, Response::Error(ErrorReply::BadRequest(_))),
            "{r:?}"
        );

        // An empty stream.
        let r = answer(&raw_request(addr, &tls, ALPN_CLIENT, &[]).await.unwrap());
        assert!(
            matches!(r, Response::Error(ErrorReply::BadRequest(_))),
            "{r:?}"
        );

        // Another protocol version.
        let r = answer(
            &raw_request(
                addr,
                &tls,
                ALPN_CLIENT,
                &encode_frame(PROTOCOL_VERSION + 1, &Request::Status),
            )
            .await
            .unwrap(),
        );
        assert!(
            matches!(r, Response::Error(ErrorReply::UnsupportedVersion { .. })),
            "{r:?}"
        );

        // A frame larger than max_frame_bytes: refused without reading it all.
        let r = answer(
            &raw_request(addr, &tls, ALPN_CLIENT, &vec![0u8; 100_000])
                .await
                .unwrap(),
        );
        assert!(
            matches!(
                r,
                Response::Error(ErrorReply::TooLarge {
                    what: Limit::Frame,
                    max: 8192,
                    ..
                })
            ),
            "{r:?}"
        );
        assert_still_serving(&c).await;

        // An oversized value and key through the real client: typed errors, nothing stored.
        let client = c.client();
        let err = client
            .put("default", b"big", &[7u8; 2000], &CausalContext::empty())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Server(ErrorReply::TooLarge {
                    what: Limit::Value,
                    size: 2000,
                    max: 1024
                })
            ),
            "{err:?}"
        );
        assert!(
            !client.get("default", b"big").await.unwrap().is_found(),
            "nothing was stored"
        );
        let err = client.get("default", &[1u8; 65]).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Server(ErrorReply::TooLarge {
                    what: Limit::Key,
                    ..
                })
            ),
            "{err:?}"
        );

        // A causal context that was never issued.
        let err = client
            .put(
                "default",
                b"k",
                b"v",
                &CausalContext(vec![1, 0xff, 0xff, 0xff]),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Server(ErrorReply::InvalidContext(_))),
            "{err:?}"
        );

        // A bad frame on the peer ALPN (with a node certificate) is an error too.
        let peer = raw_request(addr, &c.node_tls(2), ALPN_PEER, b"\x01garbage")
            .await
            .unwrap();
        let peer: kvorum_node::rpc::peer::PeerResponse =
            decode_frame(kvorum_node::rpc::peer::PEER_PROTOCOL_VERSION, &peer).unwrap();
        assert!(
            matches!(
                peer,
                kvorum_node::rpc::peer::PeerResponse::Error(
                    kvorum_node::rpc::peer::PeerError::Malformed(_)
                )
            ),
            "{peer:?}"
        );
        assert_still_serving(&c).await;
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_are_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(1, "").await;
        let other = tempfile::tempdir().unwrap();
        let foreign_ca = certs::make_ca("intruder").unwrap();
        certs::write(
            other.path(),
            "client",
            &certs::make_client(&foreign_ca, "eve").unwrap(),
        )
        .unwrap();
        // The intruder trusts the real CA (so it would accept the node) but
        // presents a certificate the cluster CA never signed.
        let tls = TlsMaterial::from_files(
            c.dir.path().join("ca.pem"),
            other.path().join("client.pem"),
            other.path().join("client.key"),
        )
        .unwrap();
        let client = Client::builder(c.addrs.clone(), tls)
            .connect_timeout(Duration::from_secs(2))
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let err = client
            .put("default", b"k", b"v", &CausalContext::empty())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoNodeAvailable(_)), "{err:?}");
        assert!(err.to_string().contains("TLS handshake rejected"), "{err}");
        // The control: the cluster's own client certificate works.
        let good = c.client();
        let c1 = kvorum_client::WriteOptions::w(1);
        good.put_with("default", b"k", b"v", &CausalContext::empty(), c1)
            .await
            .unwrap();
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cannot_call_the_peer_endpoint() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(2, "").await;
        let gossip = encode_frame(
            kvorum_node::rpc::peer::PEER_PROTOCOL_VERSION,
            &kvorum_node::rpc::peer::PeerRequest::Cluster(
                kvorum_node::rpc::peer::ClusterRequest::Gossip {
                    // The control below speaks with n2's certificate.
                    from: kvorum_ring::NodeId::new("n2"),
                    members: vec![],
                    buckets: vec![],
                    secrets: vec![],
                    access: Default::default(),
                },
            ),
        );
        let refused = raw_request(c.addrs[0], &c.client_tls(), ALPN_PEER, &gossip).await;
        let err = refused.expect_err("a client certificate must not get a peer answer");
        assert!(err.contains("peer calls need a node certificate"), "{err}");
        // The control: a node certificate gets a member list.
        let ok = raw_request(c.addrs[0], &c.node_tls(2), ALPN_PEER, &gossip)
            .await
            .unwrap();
        let resp: kvorum_node::rpc::peer::PeerResponse =
            decode_frame(kvorum_node::rpc::peer::PEER_PROTOCOL_VERSION, &ok).unwrap();
        assert!(
            matches!(
                resp,
                kvorum_node::rpc::peer::PeerResponse::Cluster(
                    kvorum_node::rpc::peer::ClusterResponse::Members { ref members, .. }
                ) if members.len() == 2
            ),
            "{resp:?}"
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_does_not_keep_the_request_slots() {
    // Issue 23: answers were written without a deadline, so a client that
    // never read them held its request slots for good.
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(
            1,
            "[replication]\nn = 1\nr = 1\nw = 1\n\
             [limits]\nmax_inflight_requests = 2\nrequest_read_timeout_ms = 1000\n",
        )
        .await;
        let client = c.client_of(&c.addrs);
        // Three siblings of 1 MiB: an answer larger than a stream's
        // receive window, so the node's write blocks on an unread stream.
        for _ in 0..3 {
            client
                .put(
                    "default",
                    b"big",
                    &vec![7u8; 1 << 20],
                    &CausalContext::empty(),
                )
                .await
                .unwrap();
        }
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let cfg = kvorum_client::tls::quic_client_config(
            &c.client_tls(),
            ALPN_CLIENT,
            Duration::from_secs(30),
        )
        .unwrap();
        let conn = ep
            .connect_with(cfg, c.addrs[0], kvorum_client::proto::NODE_CERT_NAME)
            .unwrap()
            .await
            .unwrap();
        let get = encode_frame(
            PROTOCOL_VERSION,
            &Request::Get {
                bucket: "default".into(),
                key: b"big".to_vec(),
                options: Default::default(),
                at_least: None,
            },
        );
        // Both client slots, taken by requests whose answers are never read.
        let mut unread = Vec::new();
        for _ in 0..2 {
            let (mut send, recv) = conn.open_bi().await.unwrap();
            send.write_all(&get).await.unwrap();
            send.finish().unwrap();
            unread.push((send, recv));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The slots come back once the answers' deadline passed.
        let started = std::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(10), client.get("default", b"small"))
            .await
            .expect("a request slot is free again");
        assert!(read.is_ok(), "{read:?}");
        eprintln!("served after {:?}", started.elapsed());
        drop(unread);
        conn.close(0u32.into(), b"done");
        c.shutdown().await;
    })
    .await
    .unwrap();
}
