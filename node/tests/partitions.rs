//! Sorted partitions over real QUIC: range reads page by page (no item
//! skipped or repeated, both directions, prefixes and bounds, deletes
//! hidden), quorum range reads with a node down, batches with per-item
//! outcomes when some partitions lose their quorum, listing partitions
//! with and without members down, watches, typed errors for bad
//! input, and a store of the format before partitions read after the
//! upgrade.

mod common;

use common::TestCluster;
use kvorum_client::proto::{ItemKey, ItemOp, ItemValue, Limit, RangeQuery, SortBound};
use kvorum_client::{CausalContext, Client, Error, ErrorReply, Outcome, ReadOptions, WriteOptions};
use kvorum_node::storage::{Engine, FjallEngine, Space};
use kvorum_ring::item;
use std::collections::BTreeSet;
use std::time::Duration;

/// A cluster of one node.
const ONE: &str = "[replication]\nn = 1\nr = 1\nw = 1\n";

/// The tests start clusters of up to five nodes: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sort(i: u32) -> Vec<u8> {
    format!("m{i:04}").into_bytes()
}

/// Writes items `from..to` of partition `pk` of `default` in batches of 50.
async fn write_items(client: &Client, pk: &[u8], from: u32, to: u32) {
    for chunk in (from..to).collect::<Vec<_>>().chunks(50) {
        let mut b = client.batch();
        for &i in chunk {
            b = b.put(
                "default",
                pk,
                &sort(i),
                &i.to_be_bytes(),
                &CausalContext::empty(),
            );
        }
        for (i, o) in b.send().await.expect("batch sent").into_iter().enumerate() {
            assert!(
                matches!(o, Ok(Outcome::Written { .. })),
                "item {} of the chunk: {o:?}",
                chunk[i]
            );
        }
    }
}

/// Every page of `q`, the sort keys in the order read.
async fn scan(client: &Client, mut q: RangeQuery) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page = client.read_page(&q).await.expect("page");
        out.extend(page.items.into_iter().map(|i| i.sort));
        match page.next {
            Some(next) => q.after = Some(next),
            None => return out,
        }
    }
    panic!("the scan did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_page_through_a_partition_in_order_without_skips_or_repeats() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = TestCluster::start(3, "").await;
        let client = c.client();
        write_items(&client, b"alice", 0, 250).await;
        // Neighbours whose storage keys sort right around alice's.
        for pk in [&b"alic"[..], b"alice\0", b"alicf", b"alice\xff"] {
            write_items(&client, pk, 0, 3).await;
        }
        // The key-value API's key is the item with the empty sort key.
        client
            .put("default", b"alice", b"head", &CausalContext::empty())
            .await
            .unwrap();
        let p = client.partition("default", b"alice");
        assert_eq!(p.get(b"").await.unwrap().single(), Some(&b"head"[..]));

        let all: Vec<Vec<u8>> = std::iter::once(Vec::new())
            .chain((0..250).map(sort))
            .collect();
        for limit in [1, 7, 40, 0] {
            let got = scan(&client, p.range().limit(limit)).await;
            assert_eq!(got, all, "forward pages of {limit}");
        }
        let mut down = all.clone();
        down.reverse();
        assert_eq!(scan(&client, p.range().reverse().limit(33)).await, down);
        // A prefix, and bounds (low included, high excluded), both ways.
        let m01: Vec<_> = (100..200).map(sort).collect();
        assert_eq!(scan(&client, p.range().prefix(b"m01").limit(30)).await, m01);
        let q = p
            .range()
            .between(SortBound::Included(sort(10)), SortBound::Excluded(sort(20)));
        assert_eq!(
            scan(&client, q.clone()).await,
            (10..20).map(sort).collect::<Vec<_>>()
        );
        let mut rev: Vec<_> = (10..20).map(sort).collect();
        rev.reverse();
        assert_eq!(scan(&client, q.reverse().limit(3)).await, rev);
        // Values and contexts: a page's context replaces the item.
        let page = client.read_page(&p.range().prefix(&sort(5))).await.unwrap();
        let [item] = &page.items[..] else {
            panic!("one item: {page:?}")
        };
        assert_eq!(
            item.value,
            ItemValue::Siblings(vec![5u32.to_be_bytes().to_vec()])
        );
        p.put(&sort(5), b"five", &item.context).await.unwrap();
        assert_eq!(
            p.get(&sort(5)).await.unwrap().siblings,
            vec![b"five".to_vec()]
        );
        // Deleted items are hidden, and pages still end.
        for i in (0..250).step_by(3) {
            let ctx = p.get(&sort(i)).await.unwrap().context;
            p.delete(&sort(i), &ctx).await.unwrap();
        }
        let left: Vec<_> = std::iter::once(Vec::new())
            .chain((0..250).filter(|i| i % 3 != 0).map(sort))
            .collect();
        assert_eq!(scan(&client, p.range().limit(10)).await, left);
        // Deleting a range: the 67 live items under m01, and only those.
        let gone = p
            .delete_range(p.range().prefix(b"m01").limit(10))
            .await
            .unwrap();
        assert_eq!(gone, 67);
        assert!(scan(&client, p.range().prefix(b"m01")).await.is_empty());
        let left_now: Vec<_> = left
            .iter()
            .filter(|s| !s.starts_with(b"m01"))
            .cloned()
            .collect();
        assert_eq!(scan(&client, p.range().limit(25)).await, left_now);
        // Each neighbour still holds exactly its own three items.
        for pk in [&b"alic"[..], b"alice\0", b"alicf", b"alice\xff"] {
            let q = RangeQuery::new("default", pk);
            assert_eq!(scan(&client, q).await, (0..3).map(sort).collect::<Vec<_>>());
        }
        client.close().await;
        c.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_range_read_has_every_acknowledged_item_with_a_node_down() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut c = TestCluster::start(3, "").await;
        let client = c.client();
        write_items(&client, b"dev-1", 0, 60).await;
        c.stop(3).await;
        // Written while n3 is down: W = 2 of the two left.
        write_items(&client, b"dev-1", 60, 120).await;
        let want: Vec<_> = (0..120).map(sort).collect();
        let q = RangeQuery::new("default", b"dev-1")
            .limit(25)
            .options(ReadOptions::r(2));
        assert_eq!(scan(&client, q).await, want);
        c.restart(3).await;
        c.wait_all_reachable().await;
        // n3 missed half: an R = 3 read still has them all (merged), and
        // repairs n3 before answering.
        let q = RangeQuery::new("default", b"dev-1")
            .limit(50)
            .options(ReadOptions::r(3).repair_before_answer());
        assert_eq!(scan(&client, q).await, want);
        // Now n3 alone (R = 1 through a client of n3 only, n1 and n2
        // stopped) answers every item.
        c.stop(1).await;
        c.stop(2).await;
        let only3 = c.client_of(&[c.addrs[2]]);
        let q = RangeQuery::new("default", b"dev-1")
            .limit(200)
            .options(ReadOptions::r(1));
        assert_eq!(scan(&only3, q).await, want);
        only3.close().await;
        client.close().await;
        c.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_reports_each_item_and_partitions_without_quorum_fail_alone() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(150), async {
        let mut c = TestCluster::start(5, "").await;
        let client = c.client_of(&[c.addrs[0]]);
        let ring = c.nodes[0].as_ref().unwrap().view().read_ring.clone();
        // Listing: 60 partitions (two items each) over five nodes, listed
        // in pages of 7, each once, in byte order.
        let mut listed_b = client.batch();
        for i in 0..60u32 {
            for s in [&b"a"[..], b"b"] {
                let pk = format!("p-{i}");
                listed_b = listed_b.put("default", pk.as_bytes(), s, b"v", &CausalContext::empty());
            }
        }
        assert!(listed_b.send().await.unwrap().iter().all(Result::is_ok));
        let mut want: Vec<Vec<u8>> = (0..60).map(|i| format!("p-{i}").into_bytes()).collect();
        want.sort();
        let list_all = |client: Client| async move {
            let (mut all, mut after) = (Vec::new(), None::<Vec<u8>>);
            loop {
                let (keys, next) = client
                    .list_partitions("default", after.as_deref(), 7)
                    .await?;
                all.extend(keys);
                match next {
                    Some(n) => after = Some(n),
                    None => return Ok::<_, Error>(all),
                }
            }
        };
        assert_eq!(list_all(client.clone()).await.unwrap(), want);
        c.stop(4).await;
        c.stop(5).await;
        // Two members down, fewer than N = 3: the listing is still whole.
        assert_eq!(list_all(client.clone()).await.unwrap(), want);
        let down: BTreeSet<_> = ["n4", "n5"].map(kvorum_ring::NodeId::new).into();
        // Strict W = 2: a partition with two of its three replicas down
        // cannot be written; the others can.
        let mut b = client.batch();
        let mut expect_ok = Vec::new();
        for i in 0..40u32 {
            let pk = format!("user-{i}");
            let skey = item::storage_key("default", pk.as_bytes(), b"x");
            let pref = ring.item_preference_list(&skey, 3);
            expect_ok.push(pref.iter().filter(|n| down.contains(*n)).count() < 2);
            b = b.op(
                ItemKey::new("default", pk.as_bytes(), b"x"),
                ItemOp::put(
                    b"v",
                    &CausalContext::empty(),
                    WriteOptions::w(2).strict().timeout_ms(2000),
                ),
            );
        }
        assert!(expect_ok.contains(&true) && expect_ok.contains(&false));
        let outcomes = b.send().await.expect("the batch is answered");
        for (i, (o, ok)) in outcomes.iter().zip(&expect_ok).enumerate() {
            match (o, ok) {
                (Ok(Outcome::Written { .. }), true) => {}
                (Err(Error::Server(ErrorReply::Quorum(_))), false) => {}
                _ => panic!("user-{i}: {o:?} (expected ok: {ok})"),
            }
        }
        // Reads in a batch (of a partition that kept its quorum): found,
        // not found, each its own.
        let ok_pk = format!("user-{}", expect_ok.iter().position(|o| *o).unwrap());
        let outcomes = client
            .batch()
            .get("default", ok_pk.as_bytes(), b"missing")
            .get("default", ok_pk.as_bytes(), b"x")
            .send()
            .await
            .unwrap();
        assert!(matches!(&outcomes[0], Ok(Outcome::Read(v)) if !v.is_found()));
        assert!(matches!(&outcomes[1], Ok(Outcome::Read(v)) if v.single() == Some(b"v")));
        // Three down: a partition may have no replica left to list it, and
        // the listing says so rather than answer with holes.
        c.stop(3).await;
        match list_all(client.clone()).await {
            Err(Error::Server(ErrorReply::Unavailable(m))) => assert!(m.contains("N = 3"), "{m}"),
            other => panic!("a listing with three members down: {other:?}"),
        }
        client.close().await;
        c.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_ranges_batches_and_keys_get_typed_errors() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(90), async {
        let extra =
            "[limits]\nmax_batch_items = 10\nmax_page_items = 50\ndefault_page_items = 20\n";
        let c = TestCluster::start(1, &format!("{ONE}{extra}")).await;
        let client = c.client();
        let p = client.partition("default", b"p");
        let too_large = |e: Error, what: Limit| match e {
            Error::Server(ErrorReply::TooLarge { what: w, .. }) if w == what => {}
            other => panic!("expected too large {what:?}: {other:?}"),
        };
        let long = vec![b's'; 1025];
        too_large(
            p.put(&long, b"v", &CausalContext::empty())
                .await
                .unwrap_err(),
            Limit::SortKey,
        );
        too_large(
            client.read_page(&p.range().limit(51)).await.unwrap_err(),
            Limit::PageItems,
        );
        too_large(
            client
                .read_page(&p.range().prefix(&long))
                .await
                .unwrap_err(),
            Limit::SortKey,
        );
        let mut b = client.batch();
        for i in 0..11u32 {
            b = b.get("default", b"p", &sort(i));
        }
        too_large(b.send().await.unwrap_err(), Limit::BatchItems);
        // Bounds swapped (low above high), in either direction.
        let swapped = p.range().between(
            SortBound::Included(b"z".to_vec()),
            SortBound::Included(b"a".to_vec()),
        );
        for q in [swapped.clone(), swapped.reverse()] {
            match client.read_page(&q).await {
                Err(Error::Server(ErrorReply::BadRequest(m))) => {
                    assert!(m.contains("low bound"), "{m}")
                }
                other => panic!("swapped bounds: {other:?}"),
            }
        }
        match client.batch().send().await {
            Err(Error::Server(ErrorReply::BadRequest(_))) => {}
            other => panic!("empty batch: {other:?}"),
        }
        // An unknown bucket in a batch fails that item only.
        let outcomes = client
            .batch()
            .get("nope", b"p", b"s")
            .put("default", b"p", b"s", b"v", &CausalContext::empty())
            .send()
            .await
            .unwrap();
        assert!(matches!(
            &outcomes[0],
            Err(Error::Server(ErrorReply::UnknownBucket(_)))
        ));
        assert!(matches!(&outcomes[1], Ok(Outcome::Written { .. })));
        // A page past the end of the range is empty and final.
        let page = client
            .read_page(&RangeQuery {
                after: Some(b"zzz".to_vec()),
                ..p.range()
            })
            .await
            .unwrap();
        assert!(page.items.is_empty() && page.next.is_none());
        client.close().await;
        c.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

/// A node whose store holds keys of format 1 (before partitions) reads them
/// all after the upgrade, as items with the empty sort key, and contexts
/// handed out before still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_of_the_format_before_partitions_is_read_after_the_upgrade() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(90), async {
        let mut c = TestCluster::start(1, ONE).await;
        let client = c.client();
        let mut contexts = Vec::new();
        for i in 0..50u32 {
            let key = format!("k{i}");
            contexts.push(
                client
                    .put(
                        "default",
                        key.as_bytes(),
                        &i.to_be_bytes(),
                        &CausalContext::empty(),
                    )
                    .await
                    .unwrap(),
            );
        }
        client.close().await;
        c.stop(1).await;
        // Turn the store back into what a node of format 1 left: every data
        // key rewritten as `u16 bucket length | bucket | key`, no marker.
        let dir = c.configs[0].data_dir.clone();
        {
            let e = FjallEngine::open(&dir).unwrap();
            let records = e.scan_after(Space::Data, None, usize::MAX).unwrap();
            assert_eq!(records.len(), 50);
            let mut batch = Vec::new();
            for (k, v) in records {
                let (bucket, pk, _) = item::decode(&k).unwrap();
                let mut old = (bucket.len() as u16).to_be_bytes().to_vec();
                old.extend_from_slice(bucket.as_bytes());
                old.extend_from_slice(&pk);
                batch.push((Space::Data, k, None));
                batch.push((Space::Data, old, Some(v)));
            }
            batch.push((Space::Meta, b"key-format".to_vec(), None));
            e.commit(batch, true).unwrap();
            assert!(e
                .scan_after(Space::Data, None, usize::MAX)
                .unwrap()
                .iter()
                .all(|(k, _)| item::is_format_1(k)));
        }
        c.restart(1).await;
        let client = c.client();
        for i in 0..50u32 {
            let key = format!("k{i}");
            let v = client.get("default", key.as_bytes()).await.unwrap();
            assert_eq!(v.single(), Some(&i.to_be_bytes()[..]), "{key}");
            // A context from before the upgrade still supersedes the value.
            client
                .put("default", key.as_bytes(), b"new", &contexts[i as usize])
                .await
                .unwrap();
            let v = client.get("default", key.as_bytes()).await.unwrap();
            assert_eq!(v.siblings, vec![b"new".to_vec()], "{key}");
        }
        client.close().await;
        c.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

/// Every bucket type works as items: counters, sets and maps updated per
/// sort key and read back in one range page (each item its own value),
/// LWW items written, overwritten and deleted, and register items with
/// siblings.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bucket_type_works_as_items() {
    use kvorum_client::proto::MapOp;
    use kvorum_client::{BucketProps, BucketType, DataOp, DataValue, FieldKind, FieldValue};
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(90), async {
        let c = TestCluster::start(3, "").await;
        c.wait_all_reachable().await;
        let admin = c.admin();
        for (name, t) in [
            ("likes", BucketType::Counter),
            ("tags", BucketType::Set),
            ("carts", BucketType::Map),
            ("last", BucketType::Lww),
        ] {
            admin
                .create_bucket(name, BucketProps::new(t))
                .await
                .unwrap();
        }
        let client = c.client();
        let empty = CausalContext::empty();
        let day = |d: u32| format!("2026-12-{d:02}").into_bytes();
        let data_page = |bucket: &'static str| {
            let client = client.clone();
            async move {
                let page = client
                    .read_page(&RangeQuery::new(bucket, b"p"))
                    .await
                    .unwrap();
                page.items
                    .into_iter()
                    .map(|i| match i.value {
                        ItemValue::Data(v) => (i.sort, v),
                        other => panic!("{bucket}: a data item, got {other:?}"),
                    })
                    .collect::<Vec<_>>()
            }
        };

        // Counters: one per day.
        let likes = client.partition("likes", b"p");
        for d in 1..=3u32 {
            for _ in 0..d {
                likes
                    .update(&day(d), DataOp::Increment(1), &empty)
                    .await
                    .unwrap();
            }
        }
        let counts = data_page("likes").await;
        assert_eq!(
            counts,
            (1..=3u32)
                .map(|d| (day(d), DataValue::Counter(i64::from(d))))
                .collect::<Vec<_>>()
        );
        let (one, _) = likes.fetch(&day(2)).await.unwrap();
        assert_eq!(one, Some(DataValue::Counter(2)));

        // Sets: adds, then a remove with the context of a read.
        let tags = client.partition("tags", b"p");
        let add = |m: &[&str]| DataOp::SetUpdate {
            add: m.iter().map(|x| x.as_bytes().to_vec()).collect(),
            remove: vec![],
        };
        tags.update(b"a", add(&["x", "y"]), &empty).await.unwrap();
        tags.update(b"b", add(&["z"]), &empty).await.unwrap();
        let (_, ctx) = tags.fetch(b"a").await.unwrap();
        let remove = DataOp::SetUpdate {
            add: vec![],
            remove: vec![b"x".to_vec()],
        };
        tags.update(b"a", remove, &ctx).await.unwrap();
        assert_eq!(
            data_page("tags").await,
            vec![
                (b"a".to_vec(), DataValue::Set(vec![b"y".to_vec()])),
                (b"b".to_vec(), DataValue::Set(vec![b"z".to_vec()])),
            ]
        );

        // Maps: a counter field per item.
        let carts = client.partition("carts", b"p");
        for (sort, n) in [(&b"c1"[..], 2i64), (b"c2", 5)] {
            let op = DataOp::MapUpdate(vec![MapOp::Increment {
                field: "qty".into(),
                by: n,
            }]);
            carts.update(sort, op, &empty).await.unwrap();
        }
        let maps = data_page("carts").await;
        assert_eq!(maps.len(), 2);
        for ((sort, v), want) in maps.iter().zip([2i64, 5]) {
            let DataValue::Map(m) = v else {
                panic!("{sort:?}: a map, got {v:?}");
            };
            assert_eq!(
                m.get("qty", FieldKind::Counter),
                Some(&FieldValue::Counter(want))
            );
        }

        // LWW: the last write wins, a delete hides the item.
        let last = client.partition("last", b"p");
        last.put(b"k1", b"old", &empty).await.unwrap();
        last.put(b"k1", b"new", &empty).await.unwrap();
        last.put(b"k2", b"gone", &empty).await.unwrap();
        last.delete(b"k2", &empty).await.unwrap();
        let page = client
            .read_page(&RangeQuery::new("last", b"p"))
            .await
            .unwrap();
        let got: Vec<_> = page
            .items
            .iter()
            .map(|i| (i.sort.clone(), i.value.siblings().map(<[_]>::to_vec)))
            .collect();
        assert_eq!(got, vec![(b"k1".to_vec(), Some(vec![b"new".to_vec()]))]);

        // Registers: two blind writes of one item are siblings.
        let reg = client.partition("default", b"regs");
        reg.put(b"r", b"a", &empty).await.unwrap();
        reg.put(b"r", b"b", &empty).await.unwrap();
        let page = client
            .read_page(&RangeQuery::new("default", b"regs"))
            .await
            .unwrap();
        let mut siblings = page.items[0].value.siblings().unwrap().to_vec();
        siblings.sort();
        assert_eq!(siblings, vec![b"a".to_vec(), b"b".to_vec()]);
        c.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_inbox_example_runs_against_a_cluster() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(90), async {
        let c = TestCluster::start(3, "").await;
        c.wait_all_reachable().await;
        let (admin, client) = (c.admin(), c.client());
        // Twice: the example cleans up after an earlier run.
        for _ in 0..2 {
            inbox_example::run(&admin, &client).await.unwrap();
        }
        client.close().await;
        admin.close().await;
        c.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}

// The example program itself, so the test runs exactly what users read.
#[path = "../../examples/inbox.rs"]
#[allow(dead_code)]
mod inbox_example;

/// A watch through n1 wakes on a write acknowledged through n2 (the time
/// from that acknowledgement to the wake is printed, not asserted), a watch
/// with nothing to see ends with `None` at its timeout, and a range change
/// loop sees an insert through another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_wakes_on_a_write_through_another_node_and_times_out_cleanly() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = TestCluster::start(3, "").await;
        c.wait_all_reachable().await;
        let (watcher, writer) = (c.client_of(&c.addrs[..1]), c.client_of(&c.addrs[1..2]));
        let key = ItemKey::new("default", b"feed", b"latest");
        // Nothing changes: the watch ends at its timeout, with None.
        let now = watcher
            .partition("default", b"feed")
            .get(b"latest")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let none = watcher
            .watch(key.clone(), &now.version, Duration::from_millis(600))
            .await
            .unwrap();
        assert!(none.is_none());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(550), "ended early: {took:?}");
        // Writes through n2 wake a watch through n1, each time.
        let mut wakes = Vec::new();
        let mut known = now.version;
        for i in 0..10u32 {
            let w = watcher.clone();
            let (k, kn) = (key.clone(), known.clone());
            let watch = tokio::spawn(async move {
                let v = w.watch(k, &kn, Duration::from_secs(10)).await;
                (v, tokio::time::Instant::now())
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            let ctx = writer
                .partition("default", b"feed")
                .get(b"latest")
                .await
                .unwrap()
                .context;
            writer
                .partition("default", b"feed")
                .put(b"latest", &i.to_be_bytes(), &ctx)
                .await
                .unwrap();
            let acked = tokio::time::Instant::now();
            let (v, woke) = watch.await.unwrap();
            let v = v.unwrap().expect("the watch woke");
            assert_eq!(v.single(), Some(&i.to_be_bytes()[..]));
            wakes.push(woke.saturating_duration_since(acked));
            known = v.version;
        }
        wakes.sort();
        eprintln!(
            "watch wake after the acknowledgement: median {:?}, max {:?}",
            wakes[wakes.len() / 2],
            wakes[wakes.len() - 1]
        );
        // A range change loop: the page now, then the page with the insert.
        let mut newest =
            watcher.range_changes(RangeQuery::new("default", b"feed").reverse().limit(5));
        let first = newest.next().await.unwrap();
        assert_eq!(first.items.len(), 1);
        writer
            .partition("default", b"feed")
            .put(b"m1", b"hello", &CausalContext::empty())
            .await
            .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(10), newest.next())
            .await
            .expect("the range watch woke")
            .unwrap();
        let sorts: Vec<_> = next.items.iter().map(|i| i.sort.clone()).collect();
        assert_eq!(sorts, vec![b"m1".to_vec(), b"latest".to_vec()]);
        watcher.close().await;
        writer.close().await;
        c.shutdown().await;
    })
    .await
    .expect("the test finished in time");
}
