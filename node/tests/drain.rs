//! Graceful shutdown of a real `kvorum start` process: SIGTERM to n1 while
//! 48 clients write, half through n1 alone and half through every node. The node refuses new requests (the
//! clients send them elsewhere: they were not read), answers every request
//! in flight, and exits; no client is left without an answer (no
//! "outcome unknown", no timeout), and every acknowledged write reads back.

mod common;

use common::procs::*;
use kvorum_client::{CausalContext, Error};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_every_request_in_flight_before_the_node_stops() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let _logs = LogsOnPanic(d);
        let addrs = three_configs(d);
        let mut procs: Vec<Proc> = (1..=3)
            .map(|i| {
                let config = format!("n{i}.toml");
                Proc::spawn(&["start", "--config", &config], d, &format!("n{i}"))
            })
            .collect();
        wait_for_members(d, &addrs, 3).await;
        grant_every_bucket(d, &addrs).await;
        // Half the writers send through n1 only (so that requests are in
        // flight there at the signal), half through every node.
        let pinned = kvorum_client::Client::builder([addrs[0]], tls_of(d))
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(Duration::from_secs(2))
            .token_aware(false)
            .build()
            .unwrap();
        let client = client_of(d, &addrs);
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let unanswered = Arc::new(Mutex::new(Vec::new()));
        let mut writers = Vec::new();
        for w in 0..48 {
            let client = if w % 2 == 0 { &pinned } else { &client }.clone();
            let stop = stop.clone();
            let (acked, unanswered) = (acked.clone(), unanswered.clone());
            writers.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}-{i}");
                    i += 1;
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
                        // The node the request was in flight at went away
                        // without answering it.
                        Err(e @ (Error::OutcomeUnknown { .. } | Error::Timeout { .. })) => {
                            unanswered.lock().unwrap().push(format!("{key}: {e}"))
                        }
                        // Typed answers (a quorum error while n1 leaves)
                        // and requests no node read are fine.
                        Err(_) => {}
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = acked.lock().unwrap().len();
        assert!(before > 50, "the load runs: {before} writes acknowledged");
        let status = procs[0].terminate(Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        assert!(status.success(), "n1 exits cleanly on SIGTERM: {status:?}");
        let log = std::fs::read_to_string(d.join("n1.err")).unwrap();
        let unanswered = unanswered.lock().unwrap().clone();
        assert!(
            unanswered.is_empty(),
            "{} request(s) left without an answer at SIGTERM, e.g. {:?}\nn1's log tail: {}",
            unanswered.len(),
            &unanswered[..unanswered.len().min(3)],
            &log[log.len().saturating_sub(600)..]
        );
        // The drain had requests to wait for (else the test shows nothing).
        let line = log
            .lines()
            .find(|l| l.starts_with("drained in"))
            .unwrap_or_else(|| panic!("no drain reported: {log}"));
        eprintln!("n1: {line}");
        let answered: usize = line
            .split("ms: ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(answered >= 1, "no request was in flight at SIGTERM: {line}");
        assert!(line.contains(", 0 left unanswered"), "{line}");
        // Every acknowledged write reads back from the nodes left.
        let rest = client_of(d, &addrs[1..]);
        let acked = acked.lock().unwrap().clone();
        // (A sample: every read first tries n1, which is gone.)
        for key in acked.iter().step_by(acked.len() / 200 + 1) {
            let got = rest.get("default", key.as_bytes()).await.unwrap();
            assert_eq!(got.siblings, vec![key.as_bytes().to_vec()], "{key}");
        }
        eprintln!(
            "{} writes acknowledged, {before} before SIGTERM",
            acked.len()
        );
        for p in procs.iter_mut().skip(1) {
            p.interrupt(Duration::from_secs(30));
        }
    })
    .await
    .expect("the test finishes within 150 s");
}
