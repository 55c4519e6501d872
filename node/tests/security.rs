//! Who gets in, and what they may do: certificate roles on a real cluster.

mod common;

use common::{metric, TestCluster, TEST_TIMEOUT};
use kvorum_client::proto::ErrorReply;
use kvorum_client::{Admin, BucketProps, BucketType, CausalContext, Client, Error, TlsMaterial};
use kvorum_node::net::certs;
use std::time::Duration;

fn forbidden(e: &Error) -> bool {
    matches!(e, Error::Server(ErrorReply::Forbidden(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cannot_make_admin_requests() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        // The application certificate, through the Admin handle.
        let app = Admin::builder(c.addrs.iter().copied(), c.client_tls())
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let refused = [
            app.status().await.map(|_| ()).unwrap_err(),
            app.create_bucket("big", BucketProps::new(BucketType::Register).n(3))
                .await
                .unwrap_err(),
            app.buckets().await.map(|_| ()).unwrap_err(),
            app.ring(None).await.map(|_| ()).unwrap_err(),
            app.repair().await.map(|_| ()).unwrap_err(),
        ];
        for e in &refused {
            assert!(forbidden(e), "{e}");
        }
        // Leave, remove, join: every node stays a member.
        for e in [
            app.leave("n3").await.unwrap_err(),
            app.remove_node("n2").await.unwrap_err(),
            app.join("n3", &c.addrs[0].to_string()).await.unwrap_err(),
        ] {
            assert!(forbidden(&e), "{e}");
        }
        let counted: f64 = c
            .nodes
            .iter()
            .flatten()
            .map(|n| metric(n, "kvorum_forbidden_total", &[("role", "client")]))
            .sum();
        assert!(counted >= 8.0, "forbidden attempts counted: {counted}");

        // Nothing happened: no bucket, three members.
        let admin = c.admin();
        assert!(admin
            .buckets()
            .await
            .unwrap()
            .iter()
            .all(|(name, _)| name != "big"));
        assert_eq!(admin.status().await.unwrap().1.len(), 3);
        // The admin certificate may; the client's data requests still work.
        admin
            .create_bucket("big", BucketProps::new(BucketType::Register).n(3))
            .await
            .unwrap();
        c.client()
            .put("big", b"k", b"v", &CausalContext::empty())
            .await
            .unwrap();

        // A node certificate is a member, not an operator.
        let node = Admin::builder([c.addrs[0]], c.node_tls(1))
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let e = node.status().await.map(|_| ()).unwrap_err();
        assert!(forbidden(&e), "{e}");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_exactly_one_role_is_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(1, "[replication]\nn = 1\nr = 1\nw = 1\n").await;
        let dir = c.dir.path();
        let ca = certs::read(dir, "ca").unwrap();
        // An admin certificate that also claims the client role: a CA could
        // issue it, but a certificate has exactly one role.
        let two = certs::make_leaf_with_names(&ca, &["admin.kvorum", "client.kvorum"]).unwrap();
        certs::write(dir, "two", &two).unwrap();
        let tls = TlsMaterial::from_dir(dir, "two").unwrap();
        let client = Client::builder([c.addrs[0]], tls)
            .request_timeout(Duration::from_secs(2))
            .token_aware(false)
            .build()
            .unwrap();
        let e = client.get("default", b"k").await.unwrap_err();
        assert!(
            !forbidden(&e),
            "refused at the connection, not per request: {e}"
        );
        let node = c.nodes[0].as_ref().unwrap();
        assert!(
            metric(
                node,
                "kvorum_handshake_failures_total",
                &[("reason", "no_role")]
            ) >= 1.0,
            "the refusal is counted"
        );
        // The node still serves certificates with one role.
        c.client()
            .put("default", b"k", b"v", &CausalContext::empty())
            .await
            .unwrap();
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// `ctx` with a dot of counter `u64::MAX - 1` added for every actor it
/// names: what a hostile client would send to exhaust their counters.
fn forge(raw: &[u8]) -> Vec<u8> {
    use kvorum_node::data::register::{decode_context, encode_context, Actor};
    let mut ctx = decode_context(raw).unwrap();
    let kvorum_client::Version::Dots { vv, .. } = ctx.version() else {
        panic!("a register context")
    };
    assert!(!vv.is_empty());
    for (id, _) in vv {
        let actor = Actor {
            node: kvorum_ring::NodeId::new(id.node),
            epoch: id.epoch,
        };
        ctx.insert((actor, u64::MAX - 1));
    }
    encode_context(&ctx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_altered_context_cannot_make_a_key_unwritable() {
    use kvorum_node::access::contexts::SEAL_BYTES;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        let client = c.client_of(&c.addrs[..1]);
        let bad = |e: &Error| matches!(e, Error::Server(ErrorReply::InvalidContext(_)));
        let sealed = client
            .put("default", b"k", b"v1", &CausalContext::empty())
            .await
            .unwrap();
        let (raw, seal) = sealed.0.split_at(sealed.0.len() - SEAL_BYTES);
        let forged = forge(raw);
        // Forged and unsealed; forged under the genuine seal; the genuine
        // context with a byte altered; the genuine context on another key.
        let mut resealed = forged.clone();
        resealed.extend_from_slice(seal);
        let mut altered = sealed.0.clone();
        altered[1] ^= 0x40;
        for ctx in [forged, resealed, altered] {
            let e = client
                .put("default", b"k", b"evil", &CausalContext(ctx))
                .await
                .unwrap_err();
            assert!(bad(&e), "{e}");
        }
        let e = client
            .put("default", b"other", b"evil", &sealed)
            .await
            .unwrap_err();
        assert!(bad(&e), "{e}");

        // The key stays writable by the same coordinator, write after write.
        let mut ctx = sealed;
        for i in 0..3 {
            let v = format!("v{}", i + 2);
            ctx = client
                .put("default", b"k", v.as_bytes(), &ctx)
                .await
                .unwrap();
            assert_eq!(
                client.get("default", b"k").await.unwrap().siblings,
                vec![v.into_bytes()]
            );
        }
        // The genuine context of a read works on the key it was read from.
        let read = client.get("default", b"k").await.unwrap();
        client.delete("default", b"k", &read.context).await.unwrap();
        client
            .put("default", b"k", b"after", &CausalContext::empty())
            .await
            .unwrap();
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_remove_with_a_forged_clock_cannot_drop_later_adds() {
    use kvorum_node::access::contexts::SEAL_BYTES;
    use kvorum_node::data::value::{decode_clock, encode_clock};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        c.admin()
            .create_bucket("tags", BucketProps::new(BucketType::Set))
            .await
            .unwrap();
        let client = c.client_of(&c.addrs[..1]);
        let set = client.set("tags", b"post");
        set.add(b"x").await.unwrap();
        let read = set.members().await.unwrap();
        let raw = &read.context.0[..read.context.0.len() - SEAL_BYTES];
        // A clock far ahead of every actor: it would cover adds not made yet.
        let mut clock = decode_clock(raw).unwrap();
        let actors: Vec<_> = clock.dots.keys().cloned().collect();
        for a in actors {
            clock.dots.insert(a, u64::MAX / 2);
        }
        let forged = CausalContext(encode_clock(&clock));
        let e = set.remove(b"x", &forged).await.unwrap_err();
        assert!(
            matches!(e, Error::Server(ErrorReply::InvalidContext(_))),
            "{e}"
        );
        // A genuine remove, then a later add: the add stays.
        set.remove(b"x", &read.context).await.unwrap();
        set.add(b"x").await.unwrap();
        let members = set.members().await.unwrap().members;
        assert_eq!(members, vec![b"x".to_vec()]);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// A register state holding `count` concurrent values, one per actor.
fn siblings(count: usize) -> kvorum_node::data::value::State {
    use kvorum_node::data::register::{Actor, DotContext, RegValue, Register};
    let mut reg = Register::new();
    for i in 0..count {
        let actor = Actor {
            node: kvorum_ring::NodeId::new(format!("a{i}")),
            epoch: 1,
        };
        reg.write(&actor, &DotContext::new(), RegValue::Data(vec![1]), 0)
            .unwrap();
    }
    kvorum_node::data::value::Body::Register(reg).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_merge_is_held_to_the_client_bounds() {
    use kvorum_node::data::value::PEER_BOUND_FACTOR;
    use kvorum_node::replication::replica::storage_key;
    use kvorum_node::rpc::peer::{
        PeerError, PeerRequest, PeerResponse, ReplicaRequest, ReplicaResponse,
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        // max_siblings 8: a peer may send up to 8 x PEER_BOUND_FACTOR.
        let c = TestCluster::start(1, "[limits]\nmax_siblings = 8\n").await;
        let probe = common::PeerProbe::new(&c.node_tls(1));
        let addr = c.addrs[0];
        let too_many = 8 * PEER_BOUND_FACTOR + 1;
        for (count, stored) in [(too_many, false), (8 * PEER_BOUND_FACTOR, true)] {
            let key = storage_key("default", format!("k{count}").as_bytes());
            for req in [
                ReplicaRequest::Write {
                    key: key.clone(),
                    state: siblings(count),
                },
                ReplicaRequest::HintedWrite {
                    owner: kvorum_ring::NodeId::new("n9"),
                    key: key.clone(),
                    state: siblings(count),
                },
            ] {
                let answer = probe.call(addr, &PeerRequest::Replica(req)).await;
                match answer {
                    PeerResponse::Replica(ReplicaResponse::Stored) => assert!(stored, "{count}"),
                    PeerResponse::Error(PeerError::InvalidState(e)) => {
                        assert!(!stored, "{count}: {e}");
                        assert!(e.contains("sibling"), "{e}");
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(probe.stored_state(addr, &key).await.is_some(), stored);
        }
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// A QUIC endpoint at `ip` that dials with `tls`; `silent` makes it deaf to
/// whatever `node` sends it, so its handshakes never finish.
fn endpoint_at(ip: &str, tls: &TlsMaterial, node: Option<std::net::SocketAddr>) -> quinn::Endpoint {
    use quinn::Runtime;
    let sock = std::net::UdpSocket::bind(format!("{ip}:0")).unwrap();
    let local = sock.local_addr().unwrap();
    let runtime = std::sync::Arc::new(quinn::TokioRuntime);
    let mut socket = runtime.wrap_udp_socket(sock).unwrap();
    if let Some(node) = node {
        let faults = kvorum_node::net::faults::Faults::new(1);
        faults.block_one_way(node, local);
        socket = faults.wrap(socket).unwrap();
    }
    let mut ep = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        socket,
        runtime,
    )
    .unwrap();
    ep.set_default_client_config(
        kvorum_client::tls::quic_client_config(
            tls,
            kvorum_client::proto::ALPN_CLIENT,
            Duration::from_secs(10),
        )
        .unwrap(),
    );
    ep
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attackers_holding_all_the_connections_they_can_do_not_lock_out_a_client() {
    use kvorum_client::proto::NODE_CERT_NAME;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(
            1,
            "[replication]\nn = 1\nr = 1\nw = 1\n\
             [limits]\nmax_connections = 8\nmax_handshakes = 4\nmax_connections_per_source = 2\n",
        )
        .await;
        let addr = c.addrs[0];
        // One attacker finishes as many connections as it may, and keeps them.
        let greedy = endpoint_at("127.0.0.2", &c.client_tls(), None);
        let mut held = Vec::new();
        for _ in 0..6 {
            if let Ok(Ok(conn)) = tokio::time::timeout(
                Duration::from_secs(3),
                greedy.connect(addr, NODE_CERT_NAME).unwrap(),
            )
            .await
            {
                // A refused connection may look open until its first stream.
                if conn.open_bi().await.is_ok() {
                    held.push(conn);
                }
            }
        }
        // Forty more sources start handshakes they never finish (they do
        // not hear the node), as a flood of spoofed sources would.
        let mut pending = Vec::new();
        let mut deaf = Vec::new();
        for i in 1..=40 {
            let ep = endpoint_at(&format!("127.0.1.{i}"), &c.client_tls(), Some(addr));
            let connecting = ep.connect(addr, NODE_CERT_NAME).unwrap();
            deaf.push(ep);
            pending.push(tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(20), connecting).await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A client at its own address is served, at once and repeatedly.
        let client = Client::builder([addr], c.client_tls())
            .connect_timeout(Duration::from_secs(2))
            .request_timeout(Duration::from_secs(2))
            .token_aware(false)
            .build()
            .unwrap();
        for i in 0..5 {
            let key = format!("k{i}");
            client
                .put("default", key.as_bytes(), b"v", &CausalContext::empty())
                .await
                .unwrap();
            assert!(client
                .get("default", key.as_bytes())
                .await
                .unwrap()
                .is_found());
        }
        let node = c.nodes[0].as_ref().unwrap();
        assert!(held.len() <= 2, "the greedy source holds {}", held.len());
        assert!(
            metric(
                node,
                "kvorum_connections_refused_total",
                &[("reason", "per_source")]
            ) >= 1.0
        );
        for p in pending {
            p.abort();
        }
        drop(held);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// Opens `streams` streams on each of `conns` and sends `bytes` of a frame
/// on each, never finishing: everything one source can make a node hold.
async fn hold_partial_frames(
    conns: &[quinn::Connection],
    streams: usize,
    bytes: usize,
) -> Vec<(quinn::SendStream, quinn::RecvStream)> {
    let mut held = Vec::new();
    for conn in conns {
        for _ in 0..streams {
            let Ok((mut send, recv)) = conn.open_bi().await else {
                continue;
            };
            // Flow control may stop the write: the node is not reading.
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                send.write_all(&vec![0xab; bytes]),
            )
            .await;
            held.push((send, recv));
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_holding_request_slots_and_bytes_does_not_lock_out_a_client() {
    use kvorum_client::proto::NODE_CERT_NAME;
    tokio::time::timeout(TEST_TIMEOUT, async {
        // Slots: 8 (a source may hold 2); bytes: 1 MiB (a source may hold
        // 256 KiB); frames up to 128 KiB.
        for limits in [
            "max_inflight_requests = 8\n",
            "max_inflight_requests = 64\nmax_inflight_request_bytes = 1048576\n",
        ] {
            let c = TestCluster::start(
                1,
                &format!(
                    "[replication]\nn = 1\nr = 1\nw = 1\n[limits]\nmax_value_bytes = 65536\n\
                     max_frame_bytes = 131072\nmax_connections_per_source = 4\n{limits}"
                ),
            )
            .await;
            let addr = c.addrs[0];
            let attacker = endpoint_at("127.0.0.2", &c.client_tls(), None);
            let mut conns = Vec::new();
            for _ in 0..4 {
                let connecting = attacker.connect(addr, NODE_CERT_NAME).unwrap();
                if let Ok(conn) = connecting.await {
                    conns.push(conn);
                }
            }
            let held = hold_partial_frames(&conns, 20, 100 * 1024).await;
            assert!(!held.is_empty());
            let client = Client::builder([addr], c.client_tls())
                .connect_timeout(Duration::from_secs(2))
                .request_timeout(Duration::from_secs(2))
                .token_aware(false)
                .build()
                .unwrap();
            for i in 0..5 {
                let key = format!("k{i}");
                client
                    .put("default", key.as_bytes(), b"v", &CausalContext::empty())
                    .await
                    .unwrap_or_else(|e| panic!("{limits}: {e}"));
            }
            drop(held);
            c.shutdown().await;
        }
    })
    .await
    .unwrap();
}

fn grant(
    client: &str,
    scope: kvorum_client::GrantScope,
    read: bool,
    write: bool,
) -> kvorum_client::Grant {
    kvorum_client::Grant {
        client: client.into(),
        scope,
        read,
        write,
    }
}

/// A client of the node at `addr` with the certificate `<dir>/<name>.pem`.
fn client_as(c: &TestCluster, name: &str, addr: std::net::SocketAddr) -> Client {
    Client::builder([addr], TlsMaterial::from_dir(c.dir.path(), name).unwrap())
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(2))
        .token_aware(false)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_list_grants_buckets_and_prefixes_on_every_node() {
    use kvorum_client::GrantScope::{Bucket, Prefix};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        let admin = c.admin();
        let ca = certs::read(c.dir.path(), "ca").unwrap();
        for name in ["shop", "other"] {
            certs::write(c.dir.path(), name, &certs::make_client(&ca, name).unwrap()).unwrap();
        }
        for b in ["shop-a", "orders", "public"] {
            admin
                .create_bucket(b, BucketProps::new(BucketType::Register))
                .await
                .unwrap();
        }
        // The test cluster's grant to every client goes; two narrow ones come.
        admin
            .grant(grant("*", Prefix(String::new()), false, false))
            .await
            .unwrap();
        admin
            .grant(grant("shop", Prefix("shop-".into()), true, true))
            .await
            .unwrap();
        let list = admin
            .grant(grant("other", Bucket("public".into()), true, false))
            .await
            .unwrap();
        assert_eq!(list.grants.len(), 2, "{list:?}");
        let empty = CausalContext::empty();
        for &addr in &c.addrs {
            let (shop, other) = (client_as(&c, "shop", addr), client_as(&c, "other", addr));
            shop.put("shop-a", b"k", b"v", &empty).await.unwrap();
            assert!(shop.get("shop-a", b"k").await.unwrap().is_found());
            for e in [
                shop.put("orders", b"k", b"v", &empty).await.unwrap_err(),
                shop.get("public", b"k").await.map(|_| ()).unwrap_err(),
                other.put("public", b"k", b"v", &empty).await.unwrap_err(),
                other.get("shop-a", b"k").await.map(|_| ()).unwrap_err(),
            ] {
                assert!(forbidden(&e), "{addr}: {e}");
            }
            assert!(!other.get("public", b"k").await.unwrap().is_found());
        }
        // Every node holds the same list, and counts what it refused.
        for &addr in &c.addrs {
            let one = c.admin_of(&[addr]);
            assert_eq!(one.access().await.unwrap(), list);
        }
        let refused: f64 = c
            .nodes
            .iter()
            .flatten()
            .map(|n| {
                metric(
                    n,
                    "kvorum_forbidden_total",
                    &[("op", "put"), ("role", "client")],
                )
            })
            .sum();
        assert!(refused >= 6.0, "{refused}");
        // Removing a grant takes effect on every node.
        admin
            .grant(grant("shop", Prefix("shop-".into()), false, false))
            .await
            .unwrap();
        for &addr in &c.addrs {
            let e = client_as(&c, "shop", addr)
                .put("shop-a", b"k", b"v2", &empty)
                .await
                .unwrap_err();
            assert!(forbidden(&e), "{e}");
        }
        // A malformed grant is refused with a typed error.
        let e = admin
            .grant(grant("Not A Name", Bucket("x".into()), true, true))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Server(ErrorReply::BadRequest(_))), "{e}");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_cut_off_on_every_node_and_stays_revoked() {
    use kvorum_client::Revocation;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = TestCluster::start(3, "").await;
        let ca = certs::read(c.dir.path(), "ca").unwrap();
        for name in ["laptop", "phone"] {
            certs::write(c.dir.path(), name, &certs::make_client(&ca, name).unwrap()).unwrap();
        }
        let empty = CausalContext::empty();
        // Both work, through every node, over connections they keep open.
        let mut laptops = Vec::new();
        for &addr in &c.addrs {
            let laptop = client_as(&c, "laptop", addr);
            laptop.put("default", b"k", b"v", &empty).await.unwrap();
            laptops.push(laptop);
        }
        let phone = client_as(&c, "phone", c.addrs[0]);
        phone.put("default", b"p", b"v", &empty).await.unwrap();
        // Revoke the laptop by name, the phone by serial.
        let admin = c.admin();
        admin
            .revoke(Revocation::Name {
                role: "client".into(),
                name: "laptop".into(),
            })
            .await
            .unwrap();
        let pem = certs::read(c.dir.path(), "phone").unwrap();
        let serial = {
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            let der = CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap();
            kvorum_node::net::identity::of_certificate(&der)
                .unwrap()
                .serial
        };
        let list = admin.revoke(Revocation::Serial(serial)).await.unwrap();
        assert_eq!(list.revoked.len(), 2);
        // Their open connections are closed, and new ones refused.
        for laptop in &laptops {
            assert!(laptop.get("default", b"k").await.is_err());
        }
        assert!(phone.get("default", b"p").await.is_err());
        for &addr in &c.addrs {
            assert!(client_as(&c, "laptop", addr)
                .get("default", b"k")
                .await
                .is_err());
        }
        // Others are served.
        c.client()
            .put("default", b"k", b"v2", &empty)
            .await
            .unwrap();
        // Persisted: a restarted node still refuses it.
        c.stop(1).await;
        c.restart(1).await;
        c.wait_all_reachable().await;
        assert!(client_as(&c, "laptop", c.addrs[0])
            .get("default", b"k")
            .await
            .is_err());
        assert!(c
            .client_of(&c.addrs[..1])
            .get("default", b"k")
            .await
            .is_ok());
        let node = c.nodes[0].as_ref().unwrap();
        assert!(
            metric(
                node,
                "kvorum_handshake_failures_total",
                &[("reason", "revoked")]
            ) >= 1.0
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// A revoked node certificate is cut off both ways: the others refuse its
/// connections (above) and send it nothing, not even over connections
/// they opened before the revocation. Its replicas' writes go to the
/// others (W is met without it) until it is removed. A node whose old
/// certificate is revoked after it took a new one is not cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_is_sent_nothing() {
    use common::PeerProbe;
    use kvorum_client::{Revocation, WriteOptions};
    use kvorum_node::replication::replica::storage_key;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(4, "").await;
        c.wait_all_reachable().await;
        let empty = CausalContext::empty();
        let placement = c.client().placement().await.unwrap();
        // Keys n4 replicates and the others coordinate.
        let keys: Vec<Vec<u8>> = (0..400)
            .map(|i| format!("r{i}").into_bytes())
            .filter(|k| {
                let owners: Vec<&str> = placement
                    .owners_of("default", k)
                    .map(|n| n.id.as_str())
                    .collect();
                owners.contains(&"n4") && owners.first() != Some(&"n4")
            })
            .take(12)
            .collect();
        assert_eq!(keys.len(), 12);
        let probe = PeerProbe::new(&c.node_tls(1));
        // Before the revocation n4 takes its replicas (and the others hold
        // open connections to it).
        let via_others = c.client_of(&c.addrs[..3]);
        for k in &keys[..2] {
            via_others
                .put_with("default", k, b"before", &empty, WriteOptions::w(3))
                .await
                .unwrap();
            assert!(probe
                .stored(c.addrs[3], &storage_key("default", k))
                .await
                .is_some());
        }
        // n2 gets a new certificate, then its old serial is revoked: the
        // others' connections to n2 still show the old one, and n2 is not
        // refused for it (they dial it again and see the new one).
        let serial_of = |pem: &certs::Pem| {
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            let der = CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap();
            kvorum_node::net::identity::of_certificate(&der)
                .unwrap()
                .serial
        };
        let ca = certs::read(c.dir.path(), "ca").unwrap();
        let old_n2 = serial_of(&certs::read(c.dir.path(), "n2").unwrap());
        let new_n2 = certs::make_node(&ca, "n2", &[]).unwrap();
        std::fs::write(c.dir.path().join("n2.pem"), &new_n2.cert).unwrap();
        std::fs::write(c.dir.path().join("n2.key"), &new_n2.key).unwrap();
        c.nodes[1].as_ref().unwrap().reload_certificates().unwrap();
        c.admin().revoke(Revocation::Serial(old_n2)).await.unwrap();
        let rotated: Vec<Vec<u8>> = (0..400)
            .map(|i| format!("n2-{i}").into_bytes())
            .filter(|k| placement.owners_of("default", k).any(|n| n.id == "n2"))
            .take(4)
            .collect();
        let via_n1_n3 = c.client_of(&[c.addrs[0], c.addrs[2]]);
        for k in &rotated {
            via_n1_n3
                .put_with("default", k, b"rotated", &empty, WriteOptions::w(2))
                .await
                .unwrap();
        }
        for k in &rotated {
            let key = storage_key("default", k);
            let mut held = false;
            for _ in 0..40 {
                held = probe.stored(c.addrs[1], &key).await.is_some();
                if held {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(held, "n2, with its new certificate, was sent its replicas");
        }
        // Peers refused for a revoked certificate, counted by nodes `of`.
        let refused = |of: std::ops::Range<usize>| -> f64 {
            of.map(|i| {
                metric(
                    c.nodes[i].as_ref().unwrap(),
                    "kvorum_handshake_failures_total",
                    &[("reason", "peer_revoked")],
                )
            })
            .sum()
        };
        assert_eq!(refused(0..4), 0.0, "no node refused n2 for its old serial");
        c.admin()
            .revoke(Revocation::Name {
                role: "node".into(),
                name: "n4".into(),
            })
            .await
            .unwrap();
        // Writes through the others meet W = 2 without n4, which gets none.
        for k in &keys[2..] {
            via_others
                .put_with("default", k, b"after", &empty, WriteOptions::w(2))
                .await
                .unwrap_or_else(|e| panic!("W = 2 without the revoked node: {e}"));
        }
        // Anything sent would have arrived by now (replica writes go out
        // at once; hint delivery and anti-entropy run within seconds).
        tokio::time::sleep(Duration::from_secs(3)).await;
        for k in &keys[2..] {
            assert_eq!(
                probe.stored(c.addrs[3], &storage_key("default", k)).await,
                None,
                "the revoked n4 was sent a replica of {}",
                String::from_utf8_lossy(k)
            );
        }
        assert!(refused(0..3) >= 1.0, "the others counted refusing n4");
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_certificate_rotates_and_the_cluster_moves_to_a_new_ca_under_traffic() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        let dir = c.dir.path().to_path_buf();
        let old = certs::read(&dir, "ca").unwrap();
        let new = certs::make_ca("rotated").unwrap();
        let bundle = format!("{}{}", old.cert, new.cert);
        let app = certs::read(&dir, "client").unwrap();
        // The application trusts both CAs from the start (its own overlap).
        let tls = TlsMaterial::from_pem(&bundle, &app.cert, &app.key).unwrap();
        let client = Client::builder(c.addrs.iter().copied(), tls)
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let traffic = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, Vec::new());
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("t{}", i % 50);
                    i += 1;
                    // Read, then write over what was read, as applications
                    // do: a write with an empty context each time would add
                    // a sibling per write until a key holds the most a
                    // register may (a fast host got there within the test).
                    let context = match client.get("default", key.as_bytes()).await {
                        Ok(read) => {
                            ok += 1;
                            read.context
                        }
                        Err(e) => {
                            failed.push(e.to_string());
                            CausalContext::empty()
                        }
                    };
                    match client.put("default", key.as_bytes(), b"v", &context).await {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        };
        let node = |i: usize| c.nodes[i].as_ref().unwrap();
        let pause = || tokio::time::sleep(Duration::from_millis(300));
        // 1. Every node trusts both CAs.
        std::fs::write(dir.join("ca.pem"), &bundle).unwrap();
        for i in 0..3 {
            node(i).reload_certificates().unwrap();
            pause().await;
        }
        // 2. Every node gets a certificate of the new CA; node 1 through the
        // admin verb, the others through the node's API (as SIGHUP does).
        let mut serials = Vec::new();
        for i in 0..3 {
            let id = format!("n{}", i + 1);
            let pem = certs::make_node(&new, &id, &[]).unwrap();
            std::fs::write(dir.join(format!("{id}.pem")), &pem.cert).unwrap();
            std::fs::write(dir.join(format!("{id}.key")), &pem.key).unwrap();
            let serial = if i == 0 {
                c.admin_of(&c.addrs[..1])
                    .reload_certificates()
                    .await
                    .unwrap()
                    .serial
            } else {
                node(i).reload_certificates().unwrap().serial
            };
            serials.push(serial);
            pause().await;
        }
        // 3. The old CA goes.
        std::fs::write(dir.join("ca.pem"), &new.cert).unwrap();
        for i in 0..3 {
            node(i).reload_certificates().unwrap();
            pause().await;
        }
        pause().await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = traffic.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} failed of {}: {:?}",
            failed.len(),
            ok + failed.len() as u64,
            &failed[..failed.len().min(5)]
        );
        assert!(ok > 20, "{ok} requests");
        // Status shows the new certificates; a client of the new CA is
        // served on new connections, one of the old CA is refused.
        let status = c.admin_of(&c.addrs[..1]).cluster_status().await;
        // (the admin certificate is of the old CA: refused now)
        assert!(status.is_err());
        let admin = certs::make_admin(&new, "ops").unwrap();
        let ops = TlsMaterial::from_pem(&new.cert, &admin.cert, &admin.key).unwrap();
        for (i, serial) in serials.iter().enumerate() {
            let status = Admin::builder([c.addrs[i]], ops.clone())
                .build()
                .unwrap()
                .cluster_status()
                .await
                .unwrap();
            // The node's own certificate comes first.
            assert_eq!(&status.certificates[0].serial, serial);
            assert!(status.certificates[0].not_after > 0);
        }
        let app = certs::make_client(&new, "app2").unwrap();
        let fresh = Client::connect(
            c.addrs.clone(),
            TlsMaterial::from_pem(&new.cert, &app.cert, &app.key).unwrap(),
        )
        .unwrap();
        fresh
            .put("default", b"after", b"v", &CausalContext::empty())
            .await
            .unwrap();
        assert!(
            c.client().get("default", b"after").await.is_err(),
            "a client of the old CA"
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_claims_another_nodes_id_is_refused() {
    use kvorum_node::rpc::peer::{
        AaeRequest, AaeResponse, ClusterRequest, PeerError, PeerRequest, PeerResponse,
        TransferRequest,
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(2, "").await;
        // n1's certificate, speaking to n2.
        let probe = common::PeerProbe::new(&c.node_tls(1));
        let addr = c.addrs[1];
        let as_node = |id: &str| kvorum_ring::NodeId::new(id);
        let claims = [
            PeerRequest::Aae(AaeRequest::Branches {
                from: as_node("n3"),
            }),
            PeerRequest::Transfer(TransferRequest::Stream {
                from: as_node("n2"),
                view: 0,
                after: None,
                max_bytes: 1024,
            }),
            PeerRequest::Cluster(ClusterRequest::Gossip {
                from: as_node("n9"),
                members: vec![],
                buckets: vec![],
                secrets: vec![],
                access: Default::default(),
            }),
        ];
        for req in claims {
            match probe.call(addr, &req).await {
                PeerResponse::Error(PeerError::Refused(why)) => {
                    assert!(why.contains("cannot speak for"), "{why}")
                }
                other => panic!("{req:?}: {other:?}"),
            }
        }
        // Its own id is served.
        let own = PeerRequest::Aae(AaeRequest::Branches {
            from: as_node("n1"),
        });
        assert!(matches!(
            probe.call(addr, &own).await,
            PeerResponse::Aae(AaeResponse::Branches(_))
        ));
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_quarantined_listed_and_repaired() {
    use kvorum_node::data::value::{Body, State};
    use kvorum_node::replication::replica::storage_key;
    use kvorum_node::rpc::peer::{PeerRequest, PeerResponse, ReplicaRequest, ReplicaResponse};
    use kvorum_node::storage::{Engine, FjallEngine, Space};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut c = TestCluster::start(3, "").await;
        let empty = CausalContext::empty();
        c.client()
            .put_with(
                "default",
                b"k",
                b"v",
                &empty,
                kvorum_client::WriteOptions::w(3),
            )
            .await
            .unwrap();
        let skey = storage_key("default", b"k");
        // n1's record of the key is damaged on disk while it is down.
        c.stop(1).await;
        {
            let engine = FjallEngine::open(&c.configs[0].data_dir).unwrap();
            let garbage = vec![0x01, 0xff, 0xff, 0xff, 0x07];
            engine
                .commit(vec![(Space::Data, skey.clone(), Some(garbage))], true)
                .unwrap();
        }
        c.restart(1).await;
        c.wait_all_reachable().await;
        let addr = c.addrs[0];
        let probe = common::PeerProbe::new(&c.node_tls(1));
        let read = PeerRequest::Replica(ReplicaRequest::Read { key: skey.clone() });
        let admin = c.admin_of(&[addr]);
        // Reads through n1 are served from the others; anti-entropy (or
        // read repair) writes a good copy in place of the damaged one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let _ = c.client_of(&[addr]).get("default", b"k").await;
            let _ = admin.repair().await;
            if let PeerResponse::Replica(ReplicaResponse::State(Some(State {
                body: Body::Register(r),
                ..
            }))) = probe.call(addr, &read).await
            {
                assert_eq!(r.read(0).0, vec![b"v".to_vec()]);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "not repaired");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let node = c.nodes[0].as_ref().unwrap();
        assert_eq!(metric(node, "kvorum_quarantined_records_total", &[]), 1.0);
        let listed = admin.quarantined().await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(
            (listed[0].bucket.as_str(), listed[0].key.as_slice()),
            ("default", &b"k"[..])
        );
        // The key stays writable through n1 (a new data epoch: no dot of
        // the lost record is issued again).
        let v = c.client_of(&[addr]).get("default", b"k").await.unwrap();
        c.client_of(&[addr])
            .put("default", b"k", b"w", &v.context)
            .await
            .unwrap();
        assert_eq!(
            c.client().get("default", b"k").await.unwrap().siblings,
            vec![b"w".to_vec()]
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// `GET /metrics` from source address `from`; the status code and body.
async fn scrape(from: &str, addr: std::net::SocketAddr, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: n\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_can_require_a_token_and_keeps_slots_per_source() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let secrets = tempfile::tempdir().unwrap();
        let token = "s3cret-scrape-token-0123";
        let path = secrets.path().join("token");
        std::fs::write(&path, format!("{token}\n")).unwrap();
        let c = TestCluster::start(
            1,
            &format!(
                "[replication]\nn = 1\nr = 1\nw = 1\n[metrics]\nbearer_token_file = \"{}\"\n",
                path.display()
            ),
        )
        .await;
        let addr = c.nodes[0].as_ref().unwrap().metrics_addr().unwrap();
        assert_eq!(scrape("127.0.0.1", addr, None).await.0, 401);
        assert_eq!(
            scrape("127.0.0.1", addr, Some("wrong-token-0123456789"))
                .await
                .0,
            401
        );
        let (code, body) = scrape("127.0.0.1", addr, Some(token)).await;
        assert_eq!(code, 200);
        assert!(
            body.contains("kvorum_requests_total") || body.contains("kvorum_"),
            "{body}"
        );
        // One source holds all the scrape slots it may, idle; it gets no
        // more, and another source is still served.
        let mut idle = Vec::new();
        for _ in 0..kvorum_node::metrics::MAX_SCRAPES_PER_SOURCE {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            idle.push(socket.connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(scrape("127.0.0.2", addr, Some(token)).await.0, 503);
        assert_eq!(scrape("127.0.0.1", addr, Some(token)).await.0, 200);
        drop(idle);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_example_runs() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        let admin = c.admin();
        // Only the example's grants: remove the test cluster's grant to all.
        admin
            .grant(grant(
                "*",
                kvorum_client::GrantScope::Prefix(String::new()),
                false,
                false,
            ))
            .await
            .unwrap();
        let ca = certs::read(c.dir.path(), "ca").unwrap();
        certs::write(
            c.dir.path(),
            "app",
            &certs::make_client(&ca, "app").unwrap(),
        )
        .unwrap();
        let tls = TlsMaterial::from_dir(c.dir.path(), "app").unwrap();
        let app = Client::connect(c.addrs.clone(), tls.clone()).unwrap();
        let app_as_admin = Admin::connect(c.addrs.clone(), tls).unwrap();
        access_example::run(&admin, &app, &app_as_admin, "app")
            .await
            .unwrap();
        c.shutdown().await;
    })
    .await
    .unwrap();
}

// The example program itself, so the test runs exactly what users read.
#[path = "../../examples/access.rs"]
#[allow(dead_code)]
mod access_example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_removal_with_a_forged_clock_cannot_drop_later_adds() {
    use kvorum_client::{FieldKind, FieldValue, MapUpdate};
    use kvorum_node::access::contexts::SEAL_BYTES;
    use kvorum_node::data::value::{decode_clock, encode_clock};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(3, "").await;
        c.admin()
            .create_bucket("carts", BucketProps::new(BucketType::Map))
            .await
            .unwrap();
        let client = c.client_of(&c.addrs[..1]);
        let cart = client.map("carts", b"alice");
        cart.update(MapUpdate::new().add("items", b"x"))
            .await
            .unwrap();
        let read = cart.fetch().await.unwrap();
        let raw = &read.context.0[..read.context.0.len() - SEAL_BYTES];
        let mut clock = decode_clock(raw).unwrap();
        let actors: Vec<_> = clock.dots.keys().cloned().collect();
        for a in actors {
            clock.dots.insert(a, u64::MAX / 2);
        }
        let forged = CausalContext(encode_clock(&clock));
        for update in [
            MapUpdate::new().context(&forged).remove("items", b"x"),
            MapUpdate::new()
                .context(&forged)
                .remove_field("items", FieldKind::Set),
        ] {
            let e = cart.update(update).await.unwrap_err();
            assert!(
                matches!(e, Error::Server(ErrorReply::InvalidContext(_))),
                "{e}"
            );
        }
        // A genuine removal of the field, then a later add: the add stays.
        cart.update(
            MapUpdate::new()
                .context(&read.context)
                .remove_field("items", FieldKind::Set),
        )
        .await
        .unwrap();
        cart.update(MapUpdate::new().add("items", b"y"))
            .await
            .unwrap();
        let now = cart.fetch().await.unwrap();
        assert_eq!(
            now.value.get("items", FieldKind::Set),
            Some(&FieldValue::Set(vec![b"y".to_vec()]))
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}
