//! A storage engine that holds writes back (fjall halts them while its
//! flushes and compactions are behind; a disk can stall) on a real cluster
//! (real QUIC on 127.0.0.1, real fjall): once the node's writer has been
//! on one commit for `[storage] overloaded_after_ms` (1 s by default), the client writes it
//! would coordinate are refused at once as overloaded, with nothing
//! written, and the replica writes other coordinators send it are refused
//! too, so they turn to a fallback instead of waiting out their timeout,
//! and a client sends a refused write to its next node itself. A node
//! that forwards a write reports a refusal as "nothing was written" only
//! if no forward went out with an unknown outcome. Once the commit ends,
//! the node takes writes again.

mod common;

use common::{metric, until, TestCluster, TEST_TIMEOUT};
use kvorum_client::{CausalContext, Error, ErrorReply, ReadOptions, WriteOptions};
use kvorum_node::net::faults::Faults;
use std::time::Duration;

/// The default limit (1 s: the other nodes' syncs on a loaded machine stay
/// far below it); a failure detector and anti-entropy that stay out of it.
const CONFIG: &str = "[failure_detector]\nacceptable_pause_ms = 60000\n\
                      [anti_entropy]\nenabled = false\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_engine_refuses_client_writes_at_once_and_takes_them_again_after() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let faults = Faults::new(27);
        let c = TestCluster::start_with_faults(4, CONFIG, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let n1 = c.nodes[0].as_ref().unwrap();
        let keys: Vec<Vec<u8>> = (0..8).map(|i| format!("k{i}").into_bytes()).collect();

        // n1's writer is held for longer than the writes below may take.
        n1.hold_storage_writer(Duration::from_secs(12));
        until("n1 refuses writes", Duration::from_secs(5), || {
            n1.storage_overloaded()
        })
        .await;

        // Through n1 alone: a key n1 is a replica of is coordinated there
        // and refused at once; the others are forwarded and written.
        let via_n1 = c.client_of(&c.addrs[..1]);
        let mut refused = Vec::new();
        for k in &keys {
            let opts = WriteOptions::w(2).timeout_ms(1_500);
            match via_n1
                .put_with("default", k, b"held", &CausalContext::empty(), opts)
                .await
            {
                Ok(_) => {}
                Err(Error::Server(ErrorReply::Unavailable(why))) => {
                    assert!(why.starts_with("overloaded: "), "{why}");
                    assert!(why.contains("nothing was written"), "{why}");
                    refused.push(k.clone());
                }
                Err(e) => panic!("a write through n1 neither written nor refused: {e}"),
            }
        }
        assert!(
            !refused.is_empty(),
            "n1 is a replica of most keys: some writes were refused"
        );
        let counted = metric(
            n1,
            "kvorum_overloaded_refusals_total",
            &[("side", "coordinator")],
        );
        assert_eq!(counted, refused.len() as f64, "each refusal is counted");

        // A conditional write whose first replica is n1 is checked by n1
        // alone: n2 does not hand it to another replica after n1 refused.
        let placement = c.client().placement().await.unwrap();
        let cond_key = (0..200)
            .map(|i| format!("c{i}").into_bytes())
            .find(|k| {
                placement
                    .owners_of("default", k)
                    .next()
                    .is_some_and(|n| n.id == "n1")
            })
            .expect("n1 is the first replica of some key");
        let via_n2_only = c.client_of(&c.addrs[1..2]);
        let cond = via_n2_only
            .put_with(
                "default",
                &cond_key,
                b"if-absent",
                &CausalContext::empty(),
                WriteOptions::w(2).if_absent().timeout_ms(1_500),
            )
            .await;
        assert!(
            matches!(&cond, Err(Error::Server(e)) if e.is_overloaded()),
            "n1's refusal of a conditional write reaches the caller: {cond:?}"
        );

        // A forward that n1 refuses and whose next try went out with an
        // unknown outcome is not reported as "nothing was written": the
        // forwarder's datagrams to n2 are dropped once the write is sent,
        // so n2 may have applied it for all the forwarder knows, and a
        // client that took the refusal at its word would send it again.
        let (unknown_key, forwarder) = (0..400)
            .map(|i| format!("u{i}").into_bytes())
            .find_map(|k| {
                let owners: Vec<&str> = placement
                    .owners_of("default", &k)
                    .map(|n| n.id.as_str())
                    .collect();
                let (first, second) = (owners.first().copied(), owners.get(1).copied());
                let other = ["n3", "n4"].into_iter().find(|n| !owners.contains(n))?;
                (first == Some("n1") && second == Some("n2")).then_some((k, other))
            })
            .expect("some key has n1 then n2 as its first replicas");
        let f = if forwarder == "n3" { 2 } else { 3 };
        faults.block_one_way(c.addrs[f], c.addrs[1]);
        let lost = c
            .client_of(&c.addrs[f..=f])
            .put_with(
                "default",
                &unknown_key,
                b"unknown",
                &CausalContext::empty(),
                WriteOptions::w(2).timeout_ms(1_500),
            )
            .await;
        faults.heal();
        match &lost {
            Err(Error::Server(e)) => assert!(
                !e.is_overloaded(),
                "a forward with an unknown outcome is reported as not written: {e}"
            ),
            other => panic!("the forward through {forwarder} could not succeed: {other:?}"),
        }

        // A client of n1 and n2 (in turns) sends a write n1 refuses to n2
        // itself: nothing was written, so it may.
        let either = c.client_of(&c.addrs[..2]);
        for i in 0..8 {
            let k = format!("e{i}").into_bytes();
            either
                .put_with(
                    "default",
                    &k,
                    b"either",
                    &CausalContext::empty(),
                    WriteOptions::w(2).timeout_ms(1_500),
                )
                .await
                .unwrap_or_else(|e| panic!("the client tries n2 after n1 refused: {e}"));
        }

        // Through n2 at W = 3: n1 refuses its replica writes, so each write
        // goes to the fallback and meets W well within the hold.
        let via_n2 = c.client_of(&c.addrs[1..2]);
        for k in &keys {
            let opts = WriteOptions::w(3).timeout_ms(2_000);
            via_n2
                .put_with("default", k, b"v2", &CausalContext::empty(), opts)
                .await
                .unwrap_or_else(|e| panic!("W = 3 with n1 held: {e}"));
        }
        assert!(
            metric(
                n1,
                "kvorum_overloaded_refusals_total",
                &[("side", "replica")]
            ) >= 1.0,
            "n1 refused replica writes"
        );

        // The hold ends: n1 takes writes again.
        until("n1 takes writes again", Duration::from_secs(20), || {
            !n1.storage_overloaded()
        })
        .await;
        let read = c
            .client()
            .get_with("default", &cond_key, ReadOptions::r(3))
            .await
            .unwrap();
        assert!(
            read.siblings.is_empty(),
            "the refused conditional write left nothing"
        );
        for k in &keys {
            let read = c
                .client()
                .get_with("default", k, ReadOptions::r(3))
                .await
                .unwrap();
            if refused.contains(k) {
                assert_eq!(
                    read.siblings,
                    vec![b"v2".to_vec()],
                    "a refused write left nothing"
                );
            } else {
                assert!(
                    read.siblings.contains(&b"v2".to_vec()),
                    "{:?}",
                    read.siblings
                );
            }
            via_n1
                .put_with(
                    "default",
                    k,
                    b"v3",
                    &read.context,
                    WriteOptions::w(2).timeout_ms(5_000),
                )
                .await
                .unwrap_or_else(|e| panic!("n1 takes writes after the hold: {e}"));
        }
        c.shutdown().await;
    })
    .await
    .expect("test timed out");
}
