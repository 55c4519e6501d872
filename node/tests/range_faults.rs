//! The range checker over real QUIC: writers insert items into a few
//! partitions at strict W = 2 (N = 3) while scanners page through the
//! partitions at strict R = 2 (R + W > N), and a nemesis partitions a
//! node away, stops and restarts another, and makes a fifth node join.
//! Items are never changed once written (some are deleted), so for every
//! scan that completes:
//! - every item acknowledged before the scan began, and not deleted before
//!   it ended, is in it (no page skipped it);
//! - its sort keys are strictly ascending (no item repeated, none out of
//!   order);
//! - it holds only items some writer sent.
//!
//! `KVORUM_PLANT=range-cut` plants the bug of cutting a page at the
//! furthest replica answer instead of the nearest (docs/testing.md): the
//! checker then finds skipped items.

mod common;

use common::TestCluster;
use kvorum_client::proto::RangeQuery;
use kvorum_client::{CausalContext, Client, ReadOptions, WriteOptions};
use kvorum_node::net::faults::Faults;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fast failure detection; hints and anti-entropy slow, so that a replica
/// that missed writes stays behind while it is scanned (strict quorums
/// need no repair to answer right, and a range read repairs only what it
/// read).
const EXTRA: &str = "[failure_detector]\nheartbeat_interval_ms = 100\nacceptable_pause_ms = 400\n\
                     [anti_entropy]\ninterval_ms = 30000\n\
                     [hints]\ndelivery_interval_ms = 30000\n";

/// Partitions written and scanned.
const PARTITIONS: usize = 3;
/// Items per page: small, so that a scan has many pages.
const PAGE: u32 = 25;

/// What the writers sent and what was acknowledged, per partition.
#[derive(Default)]
struct Ledger {
    sent: BTreeMap<usize, BTreeSet<Vec<u8>>>,
    acked: BTreeMap<usize, BTreeSet<Vec<u8>>>,
    /// Items a delete was sent for (acknowledged or not): a scan may or
    /// may not hold them.
    deleting: BTreeMap<usize, BTreeSet<Vec<u8>>>,
}

fn partition_key(p: usize) -> Vec<u8> {
    format!("feed{p}").into_bytes()
}

fn client(c: &TestCluster) -> Client {
    Client::builder(c.addrs.iter().copied(), c.client_tls())
        .connect_timeout(Duration::from_millis(300))
        .request_timeout(Duration::from_secs(1))
        .placement_refresh(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// Writes items `w<writer>-<seq>` round-robin over the partitions until
/// `stop`, and deletes one of its acknowledged items after every third
/// write (tombstones in the partitions: a replica's page then holds fewer
/// live items than records, so the merge's cut decides where it ends).
async fn writer(client: Client, id: usize, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut seq = 0u64;
    let mut mine: std::collections::VecDeque<(usize, Vec<u8>, CausalContext)> = Default::default();
    while !stop.load(Ordering::Relaxed) {
        if seq % 3 == 2 && !mine.is_empty() {
            // One acknowledged item of the writer's, picked spread out (a
            // third of the items end deleted, everywhere in the partitions).
            let pick = (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % mine.len();
            if let Some((p, sort, ctx)) = mine.swap_remove_back(pick) {
                ledger
                    .lock()
                    .unwrap()
                    .deleting
                    .entry(p)
                    .or_default()
                    .insert(sort.clone());
                let _ = client
                    .partition("default", &partition_key(p))
                    .delete_with(&sort, &ctx, WriteOptions::w(2).strict())
                    .await;
            }
        }
        let p = (seq as usize + id) % PARTITIONS;
        let sort = format!("w{id}-{seq:06}").into_bytes();
        seq += 1;
        ledger
            .lock()
            .unwrap()
            .sent
            .entry(p)
            .or_default()
            .insert(sort.clone());
        let written = client
            .partition("default", &partition_key(p))
            .put_with(
                &sort,
                b"v",
                &CausalContext::empty(),
                WriteOptions::w(2).strict(),
            )
            .await;
        // About 100 writes a second per writer: partitions stay small
        // enough for many whole scans.
        tokio::time::sleep(Duration::from_millis(10)).await;
        match written {
            Ok(ctx) => {
                ledger
                    .lock()
                    .unwrap()
                    .acked
                    .entry(p)
                    .or_default()
                    .insert(sort.clone());
                mine.push_back((p, sort, ctx));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// What the scanners found.
#[derive(Default)]
struct Findings {
    completed: AtomicU64,
    abandoned: AtomicU64,
    violations: Mutex<Vec<String>>,
}

/// Scans the partitions in turn, page by page, and checks each scan that
/// completes against what was acknowledged before it began.
async fn scanner(
    client: Client,
    id: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    found: Arc<Findings>,
) {
    let mut turn = id;
    while !stop.load(Ordering::Relaxed) {
        let p = turn % PARTITIONS;
        turn += 1;
        let before: BTreeSet<Vec<u8>> = ledger
            .lock()
            .unwrap()
            .acked
            .get(&p)
            .cloned()
            .unwrap_or_default();
        let mut q = RangeQuery::new("default", &partition_key(p))
            .limit(PAGE)
            .options(ReadOptions {
                r: Some(2),
                strict: true,
                ..ReadOptions::default()
            });
        let mut seen: Vec<Vec<u8>> = Vec::new();
        let mut pages = 0;
        let complete = loop {
            pages += 1;
            if pages > 100_000 {
                found
                    .violations
                    .lock()
                    .unwrap()
                    .push(format!("a scan of partition {p} did not end"));
                break false;
            }
            match client.read_page(&q).await {
                Ok(page) => {
                    seen.extend(page.items.into_iter().map(|i| i.sort));
                    match page.next {
                        Some(next) => q.after = Some(next),
                        None => break true,
                    }
                }
                // A page that failed (no quorum while a node is cut off):
                // the scan is abandoned, not checked.
                Err(_) => break false,
            }
        };
        if !complete {
            found.abandoned.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        found.completed.fetch_add(1, Ordering::Relaxed);
        let mut bad = Vec::new();
        if let Some(w) = seen.windows(2).find(|w| w[0] >= w[1]) {
            bad.push(format!(
                "partition {p}: {:?} then {:?} (repeated or out of order)",
                String::from_utf8_lossy(&w[0]),
                String::from_utf8_lossy(&w[1])
            ));
        }
        let got: BTreeSet<&Vec<u8>> = seen.iter().collect();
        // Items whose delete was sent before the scan ended may be gone.
        let deleting = ledger
            .lock()
            .unwrap()
            .deleting
            .get(&p)
            .cloned()
            .unwrap_or_default();
        let missed: Vec<String> = before
            .iter()
            .filter(|k| !got.contains(k) && !deleting.contains(*k))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        if !missed.is_empty() {
            bad.push(format!(
                "partition {p}: {} items acknowledged before the scan began are missing \
                 (first {:?}) from a scan of {} items",
                missed.len(),
                &missed[..missed.len().min(5)],
                seen.len()
            ));
        }
        let sent = ledger
            .lock()
            .unwrap()
            .sent
            .get(&p)
            .cloned()
            .unwrap_or_default();
        if let Some(k) = seen.iter().find(|k| !sent.contains(*k)) {
            bad.push(format!(
                "partition {p}: {:?} was never written",
                String::from_utf8_lossy(k)
            ));
        }
        found.violations.lock().unwrap().extend(bad);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_scans_miss_no_acknowledged_item_under_partitions_restarts_and_a_join() {
    if std::env::var("KVORUM_PLANT").as_deref() == Ok("range-cut") {
        kvorum_node::util::plant::plant(Some(kvorum_node::util::plant::Bug::RangeCut));
    }
    tokio::time::timeout(Duration::from_secs(150), async {
        let faults = Faults::new(7);
        let mut c = TestCluster::start_with_faults(4, EXTRA, Some(faults.clone())).await;
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let found = Arc::new(Findings::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for id in 0..2 {
            tasks.push(tokio::spawn(writer(
                client(&c),
                id,
                ledger.clone(),
                stop.clone(),
            )));
        }
        for id in 0..2 {
            tasks.push(tokio::spawn(scanner(
                client(&c),
                id,
                ledger.clone(),
                stop.clone(),
                found.clone(),
            )));
        }
        let pause = |s| tokio::time::sleep(Duration::from_secs(s));
        pause(2).await;
        // n1 cut off from the others; writes go on without it.
        faults.partition(&c.addrs[..1], &c.addrs[1..]);
        pause(4).await;
        faults.heal();
        pause(3).await;
        // n3 stops and comes back later: it missed writes meanwhile.
        c.stop(3).await;
        pause(3).await;
        c.restart(3).await;
        pause(3).await;
        // A fifth node joins: partitions move while they are scanned.
        let k = c.add_node(None, EXTRA).await;
        c.wait_for_members_within(k, Duration::from_secs(60)).await;
        pause(3).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let completed = found.completed.load(Ordering::Relaxed);
        let abandoned = found.abandoned.load(Ordering::Relaxed);
        let acked: usize = ledger.lock().unwrap().acked.values().map(|s| s.len()).sum();
        eprintln!(
            "{acked} items acknowledged; {completed} scans checked, {abandoned} abandoned; \
             {} datagrams dropped by the partition",
            faults.dropped()
        );
        let violations = found.violations.lock().unwrap().clone();
        assert!(violations.is_empty(), "{violations:#?}");
        assert!(acked >= 100, "too few writes to check anything: {acked}");
        assert!(completed >= 20, "too few scans completed: {completed}");
        assert!(faults.dropped() > 0, "the partition dropped nothing");
        c.shutdown().await;
    })
    .await
    .unwrap();
}
