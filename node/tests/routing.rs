//! Token-aware routing over real QUIC on five nodes (N = 3): a client that
//! knows the placement sends every write to a replica (no node forwards
//! one), while a round-robin client has about 2 in 5 forwarded; the client
//! follows a node joining (seeded with one node, it then routes to the new
//! one); and with a replica down its writes still succeed through the
//! others.

mod common;

use common::{metric, TestCluster};
use kvorum_client::{CausalContext, Client};
use kvorum_node::RunningNode;
use std::time::Duration;

/// The tests start clusters of five nodes: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes forwarded by every running node so far.
fn forwarded(c: &TestCluster) -> f64 {
    c.nodes
        .iter()
        .flatten()
        .map(|n| metric(n, "kvorum_writes_forwarded_total", &[]))
        .sum()
}

/// Client puts a node answered.
fn puts_served(n: &RunningNode) -> f64 {
    metric(n, "kvorum_requests_total", &[("op", "put")])
}

/// Writes keys `from..to` (each to its own partition); every one must be
/// acknowledged.
async fn write_keys(client: &Client, from: u32, to: u32) {
    for i in from..to {
        let key = format!("k{i}");
        client
            .put("default", key.as_bytes(), b"v", &CausalContext::empty())
            .await
            .unwrap_or_else(|e| panic!("write of {key}: {e}"));
    }
}

fn routed_client(c: &TestCluster, seeds: &[std::net::SocketAddr]) -> Client {
    Client::builder(seeds.iter().copied(), c.client_tls())
        .connect_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2))
        .placement_refresh(Duration::from_millis(200))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_aware_client_writes_to_replicas_and_follows_a_join() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(180), async {
        let mut c = TestCluster::start(5, "").await;

        // The control: round robin over all five, so about 2 in 5 writes
        // reach a node that is not a replica and are forwarded.
        let round_robin = Client::builder(c.addrs.iter().copied(), c.client_tls())
            .token_aware(false)
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let before = forwarded(&c);
        write_keys(&round_robin, 0, 100).await;
        let control = forwarded(&c) - before;
        assert!(
            control >= 10.0,
            "a round-robin client had {control} of 100 writes forwarded"
        );

        // Seeded with n1 alone: once it holds the placement, no write is
        // forwarded, and every node coordinates some.
        let client = routed_client(&c, &c.addrs[..1]);
        let placement = client.placement().await.expect("placement");
        assert_eq!(placement.nodes.len(), 5);
        assert_eq!(placement.n, 3);
        let served: Vec<f64> = c.nodes.iter().flatten().map(puts_served).collect();
        let before = forwarded(&c);
        write_keys(&client, 100, 250).await;
        assert_eq!(forwarded(&c) - before, 0.0, "a routed write was forwarded");
        for (i, n) in c.nodes.iter().flatten().enumerate() {
            assert!(
                puts_served(n) > served[i],
                "n{} coordinated no routed write",
                i + 1
            );
        }

        // A sixth node joins; the client (still seeded with n1 alone)
        // learns it within its refresh and routes to it too.
        let k = c.add_node(None, "").await;
        c.wait_for_members(k).await;
        let new = |c: &TestCluster| puts_served(c.nodes[k - 1].as_ref().unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut next = 1000;
        loop {
            let (before, served) = (forwarded(&c), new(&c));
            write_keys(&client, next, next + 60).await;
            next += 60;
            if forwarded(&c) == before && new(&c) > served {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the client did not follow the join"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        // A replica down: writes still succeed, through the other replicas.
        c.stop(2).await;
        write_keys(&client, 5000, 5100).await;
        c.shutdown().await;
    })
    .await
    .unwrap();
}
