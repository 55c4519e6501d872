//! Tests of the group-commit store: ordering, group commit, fail-stop,
//! one wake-up per update (see `store.rs`).

use super::*;
use crate::storage::{BatchItem, FjallEngine, MemoryEngine};
use std::sync::Mutex;

/// An in-memory engine whose commits are slow, counted, and can be told
/// to fail.
#[derive(Default)]
struct FakeEngine {
    inner: MemoryEngine,
    commits: Mutex<Vec<(usize, bool)>>,
    fail: AtomicBool,
    /// Free bytes of a 1000-byte disk, if set.
    free: Mutex<Option<u64>>,
}

impl Engine for FakeEngine {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(space, key)
    }
    fn commit(&self, batch: Vec<BatchItem>, sync: bool) -> Result<(), StorageError> {
        // Slow enough that concurrent updates queue behind a batch.
        std::thread::sleep(Duration::from_millis(20));
        if self.fail.load(Ordering::SeqCst) {
            return Err(StorageError::Engine("disk on fire".into()));
        }
        self.commits.lock().unwrap().push((batch.len(), sync));
        self.inner.commit(batch, sync)
    }
    fn sync(&self) -> Result<(), StorageError> {
        self.inner.sync()
    }
    fn scan(&self, space: Space, prefix: &[u8], limit: usize) -> Result<Vec<Record>, StorageError> {
        self.inner.scan(space, prefix, limit)
    }
    fn scan_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.inner.scan_after(space, after, limit)
    }
    fn range(
        &self,
        space: Space,
        low: std::ops::Bound<&[u8]>,
        high: std::ops::Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.inner.range(space, low, high, reverse, limit)
    }
    fn snapshot(&self) -> Result<Arc<dyn super::super::EngineSnapshot>, StorageError> {
        self.inner.snapshot()
    }
    fn disk_space(&self) -> Option<super::super::disk::Space> {
        let free = (*self.free.lock().unwrap())?;
        Some(super::super::disk::Space { free, total: 1000 })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_reserve_only_essential_updates_commit_and_the_store_does_not_fail() {
    use super::super::disk::{Watermark, REFRESH};
    let engine = Arc::new(FakeEngine::default());
    // Client writes stop below 100 free bytes, every other write below 50.
    let mark = Watermark {
        min_free_bytes: 100,
        min_free_percent: 0.0,
    };
    let (store, _closed) =
        Store::start_on(engine.clone(), SyncPolicy::Always, Workers::Threads, mark);
    let put =
        |k: &'static [u8]| store.update(Space::Data, k.to_vec(), |_| (Some(b"v".to_vec()), ()));
    put(b"a").await.unwrap();
    *engine.free.lock().unwrap() = Some(80);
    tokio::time::sleep(REFRESH).await;
    assert!(
        store.refuses_client_writes().is_some(),
        "below the watermark"
    );
    put(b"b")
        .await
        .expect("an internal write runs in the reserve");
    *engine.free.lock().unwrap() = Some(20);
    tokio::time::sleep(REFRESH).await;
    let refused = put(b"c").await;
    assert!(
        matches!(refused, Err(StorageError::DiskFull(_))),
        "{refused:?}"
    );
    let removed = store
        .change_essential(Space::Data, b"a".to_vec(), |_| (Change::Delete, (), None))
        .await;
    assert!(removed.is_ok(), "a removal frees space: {removed:?}");
    assert_eq!(store.get(Space::Data, b"a").unwrap(), None);
    assert_eq!(
        store.get(Space::Data, b"c").unwrap(),
        None,
        "nothing refused is written"
    );
    assert!(!store.has_failed(), "a refusal is not a failed commit");
    // Space comes back: writes are taken again.
    *engine.free.lock().unwrap() = Some(500);
    tokio::time::sleep(REFRESH).await;
    put(b"c").await.unwrap();
    assert_eq!(store.refuses_client_writes().map(|e| e.to_string()), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_held_past_the_limit_refuses_client_writes_until_it_ends() {
    let engine = Arc::new(FakeEngine::default());
    let (store, _closed) = Store::start(engine.clone(), SyncPolicy::Always);
    // Waits until `overloaded()` is Some (`want`) or None; its last answer.
    let until = |want: bool| {
        let store = store.clone();
        async move {
            let start = std::time::Instant::now();
            loop {
                let now = store.overloaded();
                if now.is_some() == want {
                    return now;
                }
                assert!(start.elapsed() < Duration::from_secs(20), "never {want}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // No limit set: a held writer refuses nothing.
    let held = store.on_writer(|_| std::thread::sleep(Duration::from_secs(2)));
    let probe = async {
        let start = std::time::Instant::now();
        while store.commit_running() < Duration::from_millis(100) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the hold never shows"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store.overloaded()
    };
    let (done, refused) = tokio::join!(held, probe);
    done.unwrap();
    assert!(refused.is_none(), "no limit, no refusal: {refused:?}");
    // The writer marks itself idle just after the work's answer went out.
    let start = std::time::Instant::now();
    while store.commit_running() > Duration::ZERO {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never idle again"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    store.refuse_when_stalled(Duration::from_millis(50));
    assert!(
        store.overloaded().is_none(),
        "an idle writer is not overloaded"
    );
    let held = store.on_writer(|_| std::thread::sleep(Duration::from_secs(1)));
    let watch = async {
        let why = until(true).await.map(|e| e.to_string()).unwrap_or_default();
        assert!(why.starts_with("overloaded: "), "{why}");
        until(false).await;
    };
    let (done, _) = tokio::join!(held, watch);
    done.unwrap();
    store
        .update(Space::Data, b"k".to_vec(), |_| (Some(b"v".to_vec()), ()))
        .await
        .expect("writes are taken once the commit ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_share_synced_batches() {
    let engine = Arc::new(FakeEngine::default());
    let (store, _closed) = Store::start(engine.clone(), SyncPolicy::Always);
    let tasks: Vec<_> = (0..100u8)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.update(Space::Data, vec![i], move |_| (Some(vec![i]), ()))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let commits = engine.commits.lock().unwrap().clone();
    assert!(
        commits.iter().all(|(_, sync)| *sync),
        "every batch is synced before acknowledging"
    );
    assert_eq!(commits.iter().map(|(n, _)| n).sum::<usize>(), 100);
    assert!(
        commits.len() < 50,
        "group commit: {} batches for 100 updates",
        commits.len()
    );
}

#[tokio::test]
async fn a_failed_commit_fails_its_updates_and_every_later_one_until_a_restart() {
    let engine = Arc::new(FakeEngine::default());
    let (store, closed) = Store::start(engine.clone(), SyncPolicy::Always);
    store
        .update(Space::Data, b"before".to_vec(), |_| {
            (Some(b"v".to_vec()), ())
        })
        .await
        .unwrap();
    let not_yet = tokio::time::timeout(Duration::from_millis(50), store.failed()).await;
    assert!(not_yet.is_err(), "no commit failed yet");
    engine.fail.store(true, Ordering::SeqCst);
    let err = store
        .update(Space::Data, b"k".to_vec(), |_| (Some(b"v".to_vec()), ()))
        .await;
    assert!(matches!(err, Err(StorageError::Engine(_))), "{err:?}");
    let told = tokio::time::timeout(Duration::from_secs(5), store.failed()).await;
    assert!(
        told.is_ok(),
        "the failure is announced (the node stops on it)"
    );
    // The disk is fine again, but this store takes no more writes: a
    // state it handed out early may be missing from it (fail-stop).
    engine.fail.store(false, Ordering::SeqCst);
    let later = store
        .update(Space::Data, b"k".to_vec(), |cur| {
            assert!(
                cur.is_err(),
                "an update after a failed commit sees an error"
            );
            (Some(b"v".to_vec()), ())
        })
        .await;
    assert!(later.is_err(), "{later:?}");
    assert_eq!(store.get(Space::Data, b"k").unwrap(), None);
    assert_eq!(
        store.get(Space::Data, b"before").unwrap(),
        Some(b"v".to_vec()),
        "reads go on"
    );
    // Closed after a failed commit: not a clean close.
    drop(store);
    assert!(closed.wait(Duration::from_secs(5)).await);
    let (store, _closed) = Store::start(engine.clone(), SyncPolicy::Always);
    assert!(!store.take_clean_close().await.unwrap());
    store
        .update(Space::Data, b"k".to_vec(), |_| (Some(b"v".to_vec()), ()))
        .await
        .unwrap();
    assert_eq!(store.get(Space::Data, b"k").unwrap(), Some(b"v".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_resolves_once_its_batch_committed() {
    let engine = Arc::new(FakeEngine::default());
    let (store, _closed) = Store::start(engine.clone(), SyncPolicy::Always);
    let out = store
        .change_then(Space::Data, b"k".to_vec(), |_| {
            (Change::Put(b"v".to_vec()), 7u8, None)
        })
        .await
        .unwrap();
    assert_eq!(out, 7);
    // The fake engine's commit sleeps 20 ms before it stores anything:
    // the result came after it.
    assert_eq!(store.get(Space::Data, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(*engine.commits.lock().unwrap(), vec![(1, true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_change_is_handed_out_before_its_commit() {
    let engine = Arc::new(FakeEngine::default());
    let (store, _closed) = Store::start(engine.clone(), SyncPolicy::Always);
    let (out, durable) = store
        .change_early(Space::Data, b"k".to_vec(), |_| {
            (Change::Put(b"v".to_vec()), 7u8, None)
        })
        .await
        .unwrap();
    assert_eq!(out, 7);
    // The fake engine's commit sleeps 20 ms: the result came first.
    assert_eq!(store.get(Space::Data, b"k").unwrap(), None);
    durable.wait().await.unwrap();
    assert_eq!(store.get(Space::Data, b"k").unwrap(), Some(b"v".to_vec()));
    assert!(engine.commits.lock().unwrap().iter().all(|(_, sync)| *sync));

    engine.fail.store(true, Ordering::SeqCst);
    let (_, durable) = store
        .change_early(Space::Data, b"k2".to_vec(), |_| {
            (Change::Put(b"v".to_vec()), (), None)
        })
        .await
        .unwrap();
    assert!(
        durable.wait().await.is_err(),
        "a failed commit shows on the durable half"
    );
}

#[tokio::test]
async fn a_clean_close_is_recorded_and_a_crash_is_not() {
    let engine = Arc::new(FakeEngine::default());
    let (store, closed) = Store::start(engine.clone(), SyncPolicy::Always);
    assert!(!store.take_clean_close().await.unwrap(), "a new store");
    drop(store);
    assert!(closed.wait(Duration::from_secs(5)).await);
    let (store, _still_open) = Store::start(engine.clone(), SyncPolicy::Always);
    assert!(store.take_clean_close().await.unwrap(), "closed cleanly");
    assert!(!store.take_clean_close().await.unwrap(), "taken once");
    // A restart while this store is still open, as after a crash.
    let (again, _closed) = Store::start(engine.clone(), SyncPolicy::Always);
    assert!(
        !again.take_clean_close().await.unwrap(),
        "not closed: a crash"
    );
    drop(store);
}

#[tokio::test]
async fn a_panicking_update_fails_alone() {
    let (store, _closed) = Store::start(Arc::new(FakeEngine::default()), SyncPolicy::Always);
    let bad = store
        .update(Space::Data, b"k".to_vec(), |_| -> (Option<Vec<u8>>, ()) {
            panic!("boom")
        })
        .await;
    assert!(bad.is_err());
    store
        .update(Space::Data, b"k".to_vec(), |_| (Some(b"v".to_vec()), ()))
        .await
        .unwrap();
    assert_eq!(store.get(Space::Data, b"k").unwrap(), Some(b"v".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_of_one_key_are_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _closed) = Store::start(
        Arc::new(FjallEngine::open(dir.path()).unwrap()),
        SyncPolicy::Always,
    );
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.update(Space::Data, b"counter".to_vec(), |cur| {
                let n = cur
                    .unwrap()
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                    .unwrap_or(0);
                (Some((n + 1).to_le_bytes().to_vec()), n + 1)
            })
            .await
            .unwrap()
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        (1..=200).collect::<Vec<u64>>(),
        "every increment saw the previous one"
    );
    let stored = store.get(Space::Data, b"counter").unwrap().unwrap();
    assert_eq!(u64::from_le_bytes(stored.try_into().unwrap()), 200);
}

#[tokio::test]
async fn committed_updates_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, closed) = Store::start(
        Arc::new(FjallEngine::open(dir.path()).unwrap()),
        SyncPolicy::Always,
    );
    store
        .update(Space::Data, b"k".to_vec(), |_| (Some(b"v".to_vec()), ()))
        .await
        .unwrap();
    drop(store);
    assert!(
        closed.wait(Duration::from_secs(5)).await,
        "the store closes once dropped"
    );
    let engine = FjallEngine::open(dir.path()).unwrap();
    assert_eq!(engine.get(Space::Data, b"k").unwrap(), Some(b"v".to_vec()));
}

/// Context switches of every thread of this process so far.
fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// A measurement, not a check (run it in release, by hand): one update
/// at a time on a fjall store, through `change_then` (one wake-up of
/// the caller) and through `change_early` + `Durable::wait` (two: what
/// `change_then` did before), alternated. Prints the median time and
/// the context switches per update.
/// `cargo test --release -p kvorum-node --lib wake_cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement; run by hand in release"]
fn wake_cost_of_a_plain_update() {
    const UPDATES: u32 = 2_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for policy in [
        SyncPolicy::Periodic(Duration::from_secs(1)),
        SyncPolicy::Always,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(FjallEngine::open(dir.path()).unwrap());
        let (store, _closed) = runtime.block_on(async { Store::start(engine, policy) });
        let mut times: [Vec<f64>; 2] = Default::default();
        let mut switches: [Vec<f64>; 2] = Default::default();
        for round in 0..8u32 {
            for (variant, (t, c)) in times.iter_mut().zip(switches.iter_mut()).enumerate() {
                let store = store.clone();
                let before = context_switches();
                let start = std::time::Instant::now();
                runtime.block_on(async move {
                    for i in 0..UPDATES {
                        let key = [round.to_be_bytes(), i.to_be_bytes()].concat();
                        let f = |_: Result<Option<&[u8]>, StorageError>| {
                            (Change::Put(vec![7; 100]), (), None)
                        };
                        if variant == 0 {
                            store.change_then(Space::Data, key, f).await.unwrap();
                        } else {
                            let ((), durable) =
                                store.change_early(Space::Data, key, f).await.unwrap();
                            durable.wait().await.unwrap();
                        }
                    }
                });
                t.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(UPDATES));
                c.push((context_switches() - before) as f64 / f64::from(UPDATES));
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{policy:?}: change_then {:.1} us, {:.2} switches per update; \
             change_early + wait {:.1} us, {:.2} switches (medians of 8 rounds of {UPDATES})",
            median(&mut times[0]),
            median(&mut switches[0]),
            median(&mut times[1]),
            median(&mut switches[1]),
        );
    }
}

/// Records every index call and the order its hooks ran in.
#[derive(Default)]
struct Recorder {
    hooks: Arc<Mutex<Vec<String>>>,
}

impl Indexer for Recorder {
    fn index_key(&self, key: &[u8]) -> Vec<u8> {
        [b"i/", key].concat()
    }

    fn index(
        &self,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
        _dead_since: Option<Option<u64>>,
    ) -> (Option<Vec<u8>>, Option<Hook>) {
        // The entry is the record itself; the hook notes key:old->new.
        let show =
            |v: Option<&[u8]>| v.map_or("-".into(), |v| String::from_utf8_lossy(v).to_string());
        let note = format!("{}:{}->{}", show(Some(key)), show(old), show(new));
        let hooks = self.hooks.clone();
        let hook: Hook = Box::new(move || hooks.lock().unwrap().push(note));
        (new.map(<[u8]>::to_vec), Some(hook))
    }
}

/// Every data change (and only data changes) writes its index entry in
/// the same batch; the old entry is the index's, as an earlier update of
/// the same key in the batch left it; the hooks run after the commit, in
/// commit order; a failed commit runs none.
#[tokio::test]
async fn the_indexer_writes_each_data_change_in_its_batch_and_hooks_in_order() {
    let engine = Arc::new(FakeEngine::default());
    let (store, _closed) = Store::start(engine.clone(), SyncPolicy::Always);
    let recorder = Recorder::default();
    let hooks = recorder.hooks.clone();
    assert!(store.set_indexer(Arc::new(recorder)));
    assert!(
        !store.set_indexer(Arc::new(Recorder::default())),
        "one indexer"
    );
    let put = |k: &'static [u8], v: &'static [u8]| {
        let s = store.clone();
        async move {
            s.update(Space::Data, k.to_vec(), move |_| (Some(v.to_vec()), ()))
                .await
        }
    };
    put(b"a", b"1").await.unwrap();
    // Two updates of one key in one batch (the first commit is slow).
    let (x, y, z) = tokio::join!(put(b"b", b"1"), put(b"a", b"2"), put(b"a", b"3"));
    x.unwrap();
    y.unwrap();
    z.unwrap();
    store
        .update(Space::Meta, b"m".to_vec(), |_| (Some(b"x".to_vec()), ()))
        .await
        .unwrap();
    store
        .change(Space::Data, b"b".to_vec(), |_| (Change::Delete, ()))
        .await
        .unwrap();
    let get = |k: &[u8]| engine.inner.get(Space::Index, k).unwrap();
    assert_eq!(get(b"i/a"), Some(b"3".to_vec()));
    assert_eq!(get(b"i/b"), None);
    assert_eq!(get(b"i/m"), None, "meta is not indexed");
    assert_eq!(
        *hooks.lock().unwrap(),
        ["a:-->1", "b:-->1", "a:1->2", "a:2->3", "b:1->-"]
    );
    engine.fail.store(true, Ordering::SeqCst);
    assert!(put(b"c", b"1").await.is_err());
    assert_eq!(
        hooks.lock().unwrap().len(),
        5,
        "no hook for a failed commit"
    );
}

/// Work run on the writer thread sees every update queued before it
/// committed (with its hook run) and none queued after it.
#[tokio::test]
async fn work_on_the_writer_runs_at_one_cut_of_the_updates() {
    let engine = Arc::new(FakeEngine::default());
    let (store, _closed) = Store::start(engine.clone(), SyncPolicy::Always);
    let recorder = Recorder::default();
    let hooks = recorder.hooks.clone();
    store.set_indexer(Arc::new(recorder));
    let put = |k: Vec<u8>| {
        let s = store.clone();
        async move {
            s.update(Space::Data, k, |_| (Some(b"v".to_vec()), ()))
                .await
        }
    };
    let before: Vec<_> = (0..20u8).map(|i| tokio::spawn(put(vec![i]))).collect();
    tokio::task::yield_now().await;
    let seen = {
        let hooks = hooks.clone();
        store.on_writer(move |e| {
            let stored = e.scan(Space::Data, b"", usize::MAX).unwrap().len();
            (stored, hooks.lock().unwrap().len())
        })
    };
    let after: Vec<_> = (100..120u8).map(|i| tokio::spawn(put(vec![i]))).collect();
    let (stored, hooked) = seen.await.unwrap();
    assert_eq!(stored, hooked, "every stored update's hook ran, no other");
    for t in before.into_iter().chain(after) {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        engine
            .inner
            .scan(Space::Data, b"", usize::MAX)
            .unwrap()
            .len(),
        40
    );
}
