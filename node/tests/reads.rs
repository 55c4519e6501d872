//! How a quorum read picks its replicas, on a real cluster (real QUIC on
//! 127.0.0.1, real fjall, injected partitions): it asks R of the N replicas,
//! and asks one more when one of those stays silent (a speculative retry),
//! so a replica that stalls without being suspected yet costs the retry
//! delay, not the request timeout.

mod common;

use common::{metric, TestCluster, TEST_TIMEOUT};
use kvorum_client::{CausalContext, ReadOptions, WriteOptions};
use kvorum_node::net::faults::Faults;

/// A failure detector too slow to notice the cut during the test (so only
/// the speculative retry can route around it), no anti-entropy, no reads of
/// every replica, and a short retry delay.
const CONFIG: &str = "[failure_detector]\nacceptable_pause_ms = 60000\n\
                      [anti_entropy]\nenabled = false\n\
                      [replication]\nread_repair_chance = 0.0\nread_retry_after_ms = 50\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_asks_r_replicas_and_asks_another_when_one_is_silent() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let faults = Faults::new(11);
        let c = TestCluster::start_with_faults(3, CONFIG, Some(faults.clone())).await;
        c.wait_all_reachable().await;
        let all = c.client();
        all.put_with(
            "default",
            b"k",
            b"v",
            &CausalContext::empty(),
            WriteOptions::w(3),
        )
        .await
        .unwrap();
        // Through n1 at R = 2: n1 itself and one other replica, in turns.
        let n1 = c.client_of(&c.addrs[..1]);
        let retries = |c: &TestCluster| {
            metric(
                c.nodes[0].as_ref().unwrap(),
                "kvorum_read_speculative_retries_total",
                &[],
            )
        };
        for _ in 0..4 {
            let read = n1
                .get_with("default", b"k", ReadOptions::r(2))
                .await
                .unwrap();
            assert_eq!(read.single(), Some(&b"v"[..]));
            assert_eq!(
                (read.report.asked, read.report.answered),
                (2, 2),
                "R = 2 asks two replicas"
            );
        }
        assert_eq!(retries(&c), 0.0, "no retry while every replica answers");

        // n3 goes silent for n1; n1's failure detector does not notice in
        // time. Every read that asks n3 first must ask n2 after the retry
        // delay and still succeed well before its timeout.
        faults.partition(&c.addrs[..1], &c.addrs[2..3]);
        let mut asked_three = 0;
        for _ in 0..6 {
            let read = n1
                .get_with("default", b"k", ReadOptions::r(2).timeout_ms(3000))
                .await
                .expect("the read asks another replica in place of the silent one");
            assert_eq!(read.single(), Some(&b"v"[..]));
            assert_eq!(read.report.answered, 2);
            if read.report.asked == 3 {
                asked_three += 1;
            }
        }
        assert!(
            asked_three >= 1,
            "the turns put n3 first in some of the reads"
        );
        assert!(retries(&c) >= 1.0, "speculative retries are counted");
        faults.heal();
        c.shutdown().await;
    })
    .await
    .unwrap();
}
