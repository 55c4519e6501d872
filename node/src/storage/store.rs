//! [`Store`]: the node's storage handle. Reads go straight to the engine;
//! read-modify-write updates are serialized through one writer thread with
//! group commit ([`run_batch`]): every update queued while the previous batch
//! was syncing joins the next batch, and the whole batch shares one sync.
//! After a failed commit the store takes no more writes (fail-stop); a clean
//! close is recorded so the next start can tell it from a crash.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

use super::{Engine, EngineSize, Record, Space, StorageError, SyncPolicy};

/// Resolves when a [`Store`] has shut down (see [`Store::start`]).
pub struct Closed(oneshot::Receiver<()>);

impl Closed {
    /// Waits up to `limit` for the store to close; false if it did not.
    pub async fn wait(self, limit: Duration) -> bool {
        matches!(tokio::time::timeout(limit, self.0).await, Ok(Ok(())))
    }
}

/// Runs after a successful commit (see [`Store::change_then`]).
pub type Hook = Box<dyn FnOnce() + Send>;

/// Called once the batch holding an update committed (or failed).
type Completion = Box<dyn FnOnce(Result<(), StorageError>) + Send>;
/// What an update does to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Leave the key as it is.
    Keep,
    /// Store this value.
    Put(Vec<u8>),
    /// Delete the key.
    Delete,
}

/// Computes an update from the current value; returns the change and the
/// completion to run after the commit.
type Apply = Box<dyn FnOnce(Result<Option<&[u8]>, StorageError>) -> (Change, Completion) + Send>;

struct Job {
    space: Space,
    key: Vec<u8>,
    apply: Apply,
}

/// The node's storage handle: concurrent reads straight from the engine,
/// serialized read-modify-write updates with group commit. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    jobs: mpsc::Sender<Job>,
    /// Turns true when a commit failed (see [`Store::failed`]).
    failed: tokio::sync::watch::Receiver<bool>,
}

/// Most updates one batch holds; bounds the latency of the batch's first update.
const MAX_BATCH: usize = 1024;
/// Queued updates beyond which `update` waits (back-pressure).
const QUEUE_DEPTH: usize = 8192;

impl Store {
    /// Starts the writer thread over `engine`. The returned [`Closed`]
    /// resolves once every clone of the store is dropped, the last batch is
    /// synced, the clean close is recorded (if every commit succeeded; see
    /// [`Store::take_clean_close`]) and the engine is closed (its files may
    /// then be reopened).
    pub fn start(engine: Arc<dyn Engine>, policy: SyncPolicy) -> (Self, Closed) {
        let (closed_tx, closed_rx) = oneshot::channel();
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let writer_engine = engine.clone();
        let running = Arc::new(AtomicBool::new(true));
        let (failed_tx, failed_rx) = tokio::sync::watch::channel(false);
        if let SyncPolicy::Periodic(every) = policy {
            let engine = engine.clone();
            let running = running.clone();
            std::thread::Builder::new()
                .name("kvorum-sync".into())
                .spawn(move || {
                    while running.load(Ordering::Relaxed) {
                        std::thread::sleep(every);
                        if let Err(e) = engine.sync() {
                            tracing::error!(error = %e, "periodic sync failed");
                        }
                    }
                })
                .ok();
        }
        let sync_each = policy == SyncPolicy::Always;
        std::thread::Builder::new()
            .name("kvorum-writer".into())
            .spawn(move || {
                let mut failed = false;
                while let Some(first) = rx.blocking_recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    if !run_batch(&*writer_engine, jobs, sync_each, failed) && !failed {
                        failed = true;
                        failed_tx.send_replace(true);
                    }
                }
                running.store(false, Ordering::Relaxed);
                // The close is recorded as clean only if every commit
                // succeeded and everything is synced: then no state this
                // store handed out early (change_early) is missing here.
                match writer_engine.sync() {
                    Err(e) => tracing::error!(error = %e, "final sync failed"),
                    Ok(()) if !failed => {
                        let mark = vec![(Space::Meta, CLEAN_CLOSE_KEY.to_vec(), Some(Vec::new()))];
                        if let Err(e) = writer_engine.commit(mark, true) {
                            tracing::error!(error = %e, "recording the clean close failed");
                        }
                    }
                    Ok(()) => {}
                }
                // Every Store clone is gone (they hold the job senders), so
                // this is the last handle of the engine: dropping it closes it.
                drop(writer_engine);
                let _ = closed_tx.send(());
            })
            .ok();
        let store = Self {
            engine,
            jobs: tx,
            failed: failed_rx,
        };
        (store, Closed(closed_rx))
    }

    /// Resolves once a commit of this store failed: from then on it takes
    /// no writes (see [`run_batch`]), and the node should stop (`kvorum
    /// start` does) so that it is restarted, as a new epoch.
    pub async fn failed(&self) {
        let mut rx = self.failed.clone();
        // An error means the writer thread is gone: the store is closing.
        let _ = rx.wait_for(|f| *f).await;
        if !*rx.borrow() {
            std::future::pending::<()>().await;
        }
    }

    /// Up to `limit` records of `space` under `prefix`, in key order.
    pub fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.engine.scan(space, prefix, limit)
    }

    /// Up to `limit` records of `space` after key `after`, in key order.
    pub fn scan_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.engine.scan_after(space, after, limit)
    }

    /// Reads one key (no serialization with updates; sees every committed update).
    pub fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine.get(space, key)
    }

    /// The engine's size, if it knows it.
    pub fn size(&self) -> Option<EngineSize> {
        self.engine.size()
    }

    /// Atomically updates `key`: `f` gets the current value (or the read
    /// error) and returns the new value (`None` to leave it) plus a result.
    /// Updates of one store are applied one at a time in queue order, so `f`
    /// never races another update of the same key. Resolves once the batch is
    /// committed under the sync policy.
    pub async fn update<T, F>(&self, space: Space, key: Vec<u8>, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Result<Option<&[u8]>, StorageError>) -> (Option<Vec<u8>>, T) + Send + 'static,
    {
        self.change(space, key, move |current| {
            let (new, out) = f(current);
            (new.map_or(Change::Keep, Change::Put), out)
        })
        .await
    }

    /// Like [`Store::update`], with deletes: `f` returns a [`Change`].
    pub async fn change<T, F>(&self, space: Space, key: Vec<u8>, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Result<Option<&[u8]>, StorageError>) -> (Change, T) + Send + 'static,
    {
        self.change_then(space, key, move |current| {
            let (change, out) = f(current);
            (change, out, None)
        })
        .await
    }

    /// Like [`Store::change`]; `f` may also return a hook that runs on the
    /// writer thread right after the batch committed successfully, in write
    /// order (it never runs for a failed commit).
    pub async fn change_then<T, F>(
        &self,
        space: Space,
        key: Vec<u8>,
        f: F,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Result<Option<&[u8]>, StorageError>) -> (Change, T, Option<Hook>)
            + Send
            + 'static,
    {
        // One wake-up of the caller, at the commit, instead of two (the
        // result, then the commit, as `change_early` gives them): on a
        // machine where the caller's thread sleeps between the two, each
        // costs a context switch.
        let (done_tx, done_rx) = oneshot::channel();
        let apply: Apply = Box::new(move |current| {
            let (change, out, hook) = f(current);
            let done = after_commit(hook, move |res| {
                let _ = done_tx.send(res.map(|()| out));
            });
            (change, done)
        });
        self.queue(space, key, apply).await?;
        done_rx.await.map_err(update_lost)?
    }

    /// Like [`Store::change_then`], but resolves as soon as `f` has run, with
    /// its result and a [`Durable`] that resolves once the batch holding the
    /// change is committed under the sync policy. A coordinator uses this to
    /// send a new state to the other replicas while its own copy syncs.
    ///
    /// The result is not durable yet: a caller must not acknowledge anything
    /// on the strength of this replica until [`Durable::wait`] returned `Ok`
    /// (a crash before it loses the change here).
    pub async fn change_early<T, F>(
        &self,
        space: Space,
        key: Vec<u8>,
        f: F,
    ) -> Result<(T, Durable), StorageError>
    where
        T: Send + 'static,
        F: FnOnce(Result<Option<&[u8]>, StorageError>) -> (Change, T, Option<Hook>)
            + Send
            + 'static,
    {
        let (applied_tx, applied_rx) = oneshot::channel();
        let (durable_tx, durable_rx) = oneshot::channel();
        let apply: Apply = Box::new(move |current| {
            let (change, out, hook) = f(current);
            // Before the commit: the caller goes on while the batch syncs.
            let _ = applied_tx.send(out);
            let done = after_commit(hook, move |res| {
                let _ = durable_tx.send(res);
            });
            (change, done)
        });
        self.queue(space, key, apply).await?;
        let out = applied_rx.await.map_err(update_lost)?;
        Ok((out, Durable(durable_rx)))
    }

    /// Queues an update for the writer thread.
    async fn queue(&self, space: Space, key: Vec<u8>, apply: Apply) -> Result<(), StorageError> {
        self.jobs
            .send(Job { space, key, apply })
            .await
            .map_err(|_| StorageError::Closed)
    }

    /// Whether the store was last closed cleanly: every update it accepted
    /// committed, the last batch synced and the close was recorded (see
    /// [`Store::start`]). Clears the record, durably, so a crash from now on
    /// reads as unclean at the next start. Call it once, at start, before
    /// anything else uses the store.
    pub async fn take_clean_close(&self) -> Result<bool, StorageError> {
        let clean = self.get(Space::Meta, CLEAN_CLOSE_KEY)?.is_some();
        if clean {
            self.change(Space::Meta, CLEAN_CLOSE_KEY.to_vec(), |_| {
                (Change::Delete, ())
            })
            .await?;
            // Under a periodic policy the delete is not synced by the commit.
            let engine = self.engine.clone();
            tokio::task::spawn_blocking(move || engine.sync())
                .await
                .map_err(|e| StorageError::Engine(e.to_string()))??;
        }
        Ok(clean)
    }
}

/// `Meta` key written when the store closes cleanly (see [`Store::take_clean_close`]).
const CLEAN_CLOSE_KEY: &[u8] = b"clean-close";

/// Resolves once an update of [`Store::change_early`] is committed.
pub struct Durable(oneshot::Receiver<Result<(), StorageError>>);

impl Durable {
    /// Waits for the commit of the batch holding the update.
    pub async fn wait(self) -> Result<(), StorageError> {
        self.0.await.map_err(update_lost)?
    }
}

/// What a caller gets when its update was dropped without an answer (it
/// panicked, or the writer thread stopped): the node log says why.
fn update_lost(_: oneshot::error::RecvError) -> StorageError {
    StorageError::Engine("update failed (see the node log)".into())
}

/// The completion of an update: runs its hook if the commit succeeded,
/// then tells the caller.
fn after_commit(
    hook: Option<Hook>,
    tell: impl FnOnce(Result<(), StorageError>) + Send + 'static,
) -> Completion {
    Box::new(move |res| {
        if let (Ok(()), Some(hook)) = (&res, hook) {
            hook();
        }
        tell(res);
    })
}

/// What an update gets after a failed commit (see [`run_batch`]).
const FAIL_STOP: &str =
    "an earlier commit failed: this node takes no more writes until it restarts";

/// Applies and commits one batch; false if its commit failed.
///
/// After a failed commit (`failed`) every later update fails, until the
/// node restarts: a coordinated update whose state went out before its
/// commit failed must not be followed by another one built on the state
/// without it (it would issue the same dot twice), and a disk that failed
/// a sync may have lost what it held (fail-stop, as databases do on an
/// fsync error). Reads go on.
fn run_batch(engine: &dyn Engine, jobs: Vec<Job>, sync: bool, failed: bool) -> bool {
    // Later updates of a batch must see earlier ones of the same key.
    let mut overlay: HashMap<(Space, Vec<u8>), Option<Vec<u8>>> = HashMap::new();
    let mut writes = Vec::with_capacity(jobs.len());
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        let slot = (job.space, job.key);
        let current = match overlay.get(&slot) {
            _ if failed => Err(StorageError::Engine(FAIL_STOP.into())),
            Some(v) => Ok(v.clone()),
            None => engine.get(slot.0, &slot.1),
        };
        // A panicking update must not take the writer thread (and with it
        // every later write of this node) down: it fails alone.
        let apply = job.apply;
        let (new, completion) =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                apply(current.as_ref().map(|v| v.as_deref()).map_err(Clone::clone))
            })) {
                Ok(x) => x,
                Err(_) => {
                    tracing::error!(
                        "an update panicked; it is dropped and its caller gets an error"
                    );
                    // The job's completion was consumed by the panic; its caller
                    // sees its channel closed, which `update` reports as an error.
                    continue;
                }
            };
        match new {
            Change::Keep => {}
            Change::Put(v) => {
                writes.push((slot.0, slot.1.clone(), Some(v.clone())));
                overlay.insert(slot, Some(v));
            }
            Change::Delete => {
                writes.push((slot.0, slot.1.clone(), None));
                overlay.insert(slot, None);
            }
        }
        done.push(completion);
    }
    let res = if failed {
        Err(StorageError::Engine(FAIL_STOP.into()))
    } else if writes.is_empty() {
        Ok(())
    } else {
        engine.commit(writes, sync)
    };
    if let (Err(e), false) = (&res, failed) {
        tracing::error!(error = %e, "batch commit failed");
    }
    let ok = res.is_ok();
    for c in done {
        c(res.clone());
    }
    ok
}

#[cfg(test)]
mod tests {
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
        fn scan(
            &self,
            space: Space,
            prefix: &[u8],
            limit: usize,
        ) -> Result<Vec<Record>, StorageError> {
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
}
