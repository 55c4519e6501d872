//! [`Store`]: the node's storage handle. Reads go straight to the engine;
//! read-modify-write updates are serialized through one writer thread with
//! group commit ([`run_batch`]): every update queued while the previous batch
//! was syncing joins the next batch, and the whole batch shares one sync.
//! After a failed commit the store takes no more writes (fail-stop); a clean
//! close is recorded so the next start can tell it from a crash.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot};

use super::disk::{DiskGuard, DiskState, Watermark};
use super::{Engine, EngineSize, Record, Space, StorageError, SyncPolicy};
use crate::util::workers::Workers;

mod writer;

use writer::Writer;

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
    /// Store this data record, whose delete time (`None`: it holds a live
    /// value) the update knew: the indexer takes it from here instead of
    /// decoding the record again (see [`Indexer::index`]).
    Record {
        /// The encoded record.
        bytes: Vec<u8>,
        /// When everything it holds became dead, if it did.
        dead_since: Option<u64>,
    },
    /// Delete the key.
    Delete,
}

/// Computes an update from the current value; returns the change and the
/// completion to run after the commit.
type Apply = Box<dyn FnOnce(Result<Option<&[u8]>, StorageError>) -> (Change, Completion) + Send>;

/// Keeps an index of [`Space::Data`] in [`Space::Index`] (see
/// [`Store::set_indexer`]).
pub trait Indexer: Send + Sync + 'static {
    /// The key in [`Space::Index`] of data key `key`.
    fn index_key(&self, key: &[u8]) -> Vec<u8>;
    /// For a change of data key `key` to record `new` (`None`: removed),
    /// where `old` is the key's index entry before it (as stored, or as an
    /// earlier update of the batch left it): the new entry (`None`: none),
    /// committed in the same batch, and a hook run right after that
    /// commit, on the writer thread, in commit order (never for a failed
    /// commit). `dead_since` is the new record's delete time when the
    /// update said it ([`Change::Record`]); `None` when it did not.
    fn index(
        &self,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
        dead_since: Option<Option<u64>>,
    ) -> (Option<Vec<u8>>, Option<Hook>);
}

/// The indexer of a store, once set.
type SharedIndexer = Arc<std::sync::OnceLock<Arc<dyn Indexer>>>;

/// Work run on the writer thread between two batches (see [`Store::on_writer`]).
type Between = Box<dyn FnOnce(&dyn Engine) + Send>;

/// What the writer thread takes: an update, or work run between two
/// batches.
enum Work {
    Update(Job),
    Run(Between),
}

struct Job {
    space: Space,
    key: Vec<u8>,
    apply: Apply,
    /// Taken below the free-space reserve too (see [`Store::change_essential`]).
    essential: bool,
}

/// The node's storage handle: concurrent reads straight from the engine,
/// serialized read-modify-write updates with group commit. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    jobs: mpsc::Sender<Work>,
    /// The index of the data space, once set.
    indexer: SharedIndexer,
    /// The first failed commit's error (see [`Store::failed`]).
    failed: tokio::sync::watch::Receiver<Option<StorageError>>,
    /// Where blocking engine calls run.
    workers: Workers,
    /// The free-space watermark (see [`super::disk`]).
    disk: Arc<DiskGuard>,
    /// How long the writer has been on its current batch (see
    /// [`Store::overloaded`]).
    busy: Arc<Busy>,
}

/// How long the writer thread has been on its current batch or work, and
/// how long it may be before client writes are refused as overloaded (see
/// [`Store::overloaded`]).
pub(super) struct Busy {
    base: Instant,
    /// When the current batch began, in µs after `base`, plus 1; 0 while
    /// the writer waits for work.
    since_us: AtomicU64,
    /// The limit in µs; 0: never refuse.
    limit_us: AtomicU64,
}

impl Busy {
    fn new() -> Self {
        Busy {
            base: Instant::now(),
            since_us: AtomicU64::new(0),
            limit_us: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The writer begins a batch (or work between batches).
    pub(super) fn begin(&self) {
        self.since_us
            .store(self.now_us().saturating_add(1), Ordering::Relaxed);
    }

    /// The writer is done with it.
    pub(super) fn end(&self) {
        self.since_us.store(0, Ordering::Relaxed);
    }

    /// How long the current batch has run; zero while idle.
    fn running(&self) -> Duration {
        match self.since_us.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_micros(self.now_us().saturating_sub(since - 1)),
        }
    }
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
        Self::start_on(engine, policy, Workers::Threads, Watermark::DEFAULT)
    }

    /// [`Store::start`], with the writer and the periodic sync run by
    /// `workers` (threads of their own, or tasks of the current runtime:
    /// the simulator, whose engine never blocks), and writes refused for
    /// want of space by `watermark` (see [`super::disk`]).
    pub fn start_on(
        engine: Arc<dyn Engine>,
        policy: SyncPolicy,
        workers: Workers,
        watermark: Watermark,
    ) -> (Self, Closed) {
        let disk = Arc::new(DiskGuard::new(watermark, {
            let engine = engine.clone();
            Box::new(move || engine.disk_space())
        }));
        let (closed_tx, closed_rx) = oneshot::channel();
        let (tx, mut rx) = mpsc::channel::<Work>(QUEUE_DEPTH);
        let indexer = SharedIndexer::default();
        let running = Arc::new(AtomicBool::new(true));
        let (failed_tx, failed_rx) = tokio::sync::watch::channel(None);
        if let SyncPolicy::Periodic(every) = policy {
            let engine = engine.clone();
            let running = running.clone();
            let sync = move || {
                if let Err(e) = engine.sync() {
                    tracing::error!(error = %e, "periodic sync failed");
                }
            };
            match workers {
                Workers::Threads => {
                    let _ = std::thread::Builder::new()
                        .name("kvorum-sync".into())
                        .spawn(move || {
                            while running.load(Ordering::Relaxed) {
                                std::thread::sleep(every);
                                sync();
                            }
                        });
                }
                Workers::Tasks => {
                    tokio::spawn(async move {
                        while running.load(Ordering::Relaxed) {
                            tokio::time::sleep(every).await;
                            sync();
                        }
                    });
                }
            }
        }
        let busy = Arc::new(Busy::new());
        let mut writer = Writer {
            busy: busy.clone(),
            engine: engine.clone(),
            sync_each: policy == SyncPolicy::Always,
            failed: false,
            failed_tx,
            disk: disk.clone(),
            indexer: indexer.clone(),
            running,
            closed_tx,
        };
        match workers {
            Workers::Threads => {
                let _ = std::thread::Builder::new()
                    .name("kvorum-writer".into())
                    .spawn(move || {
                        while let Some(first) = rx.blocking_recv() {
                            writer.batch(first, &mut rx);
                        }
                        writer.finish();
                    });
            }
            Workers::Tasks => {
                tokio::spawn(async move {
                    while let Some(first) = rx.recv().await {
                        writer.batch(first, &mut rx);
                    }
                    writer.finish();
                });
            }
        }
        let store = Self {
            engine,
            jobs: tx,
            indexer,
            failed: failed_rx,
            workers,
            disk,
            busy,
        };
        (store, Closed(closed_rx))
    }

    /// Makes every change of [`Space::Data`] from now on also write its
    /// index entry in the same batch, and run the indexer's hook after the
    /// commit. Set it before the first data write: a change made before
    /// it has no index entry. Only the first call counts; false for a
    /// later one.
    pub fn set_indexer(&self, indexer: Arc<dyn Indexer>) -> bool {
        self.indexer.set(indexer).is_ok()
    }

    /// Whether an indexer is set (see [`Store::set_indexer`]).
    pub fn indexed(&self) -> bool {
        self.indexer.get().is_some()
    }

    /// Runs `f` on the writer thread between two batches, with the engine:
    /// every update before it is committed and its hooks have run, and no
    /// later one is applied until `f` returns. So `f` reads storage and
    /// the state the hooks keep at one cut of the update stream. Keep it
    /// short: every write waits for it.
    pub async fn on_writer<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Engine) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run = Box::new(move |engine: &dyn Engine| {
            let _ = tx.send(f(engine));
        });
        self.jobs
            .send(Work::Run(run))
            .await
            .map_err(|_| StorageError::Closed)?;
        rx.await.map_err(update_lost)
    }

    /// Whether a commit of this store failed (see [`Store::failed`]).
    pub fn has_failed(&self) -> bool {
        self.failed.borrow().is_some()
    }

    /// The error of the commit that failed, if one did.
    pub fn failure(&self) -> Option<StorageError> {
        self.failed.borrow().clone()
    }

    /// Resolves once a commit of this store failed, with its error: from
    /// then on it takes no writes (see [`run_batch`]), and the node should
    /// stop (`kvorum start` does) so that it is restarted, as a new epoch.
    pub async fn failed(&self) -> StorageError {
        let mut rx = self.failed.clone();
        // An error means the writer thread is gone: the store is closing.
        let failed = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|f| f.clone());
        match failed {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }

    /// The data directory's disk against the watermark (`None` if the
    /// engine cannot tell its free space).
    pub fn disk(&self) -> Option<DiskState> {
        self.disk.state()
    }

    /// Why a client write is refused for want of space now, if it is (see
    /// [`super::disk`]): it is refused before anything is written.
    pub fn refuses_client_writes(&self) -> Option<StorageError> {
        self.disk.refusal(false).map(StorageError::DiskFull)
    }

    /// Refuses client writes as [`StorageError::Overloaded`] while the
    /// writer has been on one batch for `after` or longer: the engine is
    /// holding writes back (fjall halts writes while its flushes and
    /// compactions are behind), or the disk is stalled. `Duration::ZERO`:
    /// never. Only a store whose writer is a thread of its own measures
    /// this (a simulated engine never blocks).
    pub fn refuse_when_stalled(&self, after: Duration) {
        if self.workers == Workers::Threads {
            let us = u64::try_from(after.as_micros()).unwrap_or(u64::MAX);
            self.busy.limit_us.store(us, Ordering::Relaxed);
        }
    }

    /// How long the writer has been on its current batch (zero while it
    /// waits for work): a commit held back by the engine shows here.
    pub fn commit_running(&self) -> Duration {
        self.busy.running()
    }

    /// Why a client write is refused as overloaded now, if it is (see
    /// [`Store::refuse_when_stalled`]): refused before anything is
    /// queued, so nothing is written and the caller may try elsewhere or
    /// later. Writes already queued wait for the engine.
    pub fn overloaded(&self) -> Option<StorageError> {
        let limit = Duration::from_micros(self.busy.limit_us.load(Ordering::Relaxed));
        let running = self.busy.running();
        if limit.is_zero() || running < limit {
            return None;
        }
        Some(StorageError::Overloaded(format!(
            "the storage engine has held one commit for {} ms (its flushes and compactions are behind, or the disk is stalled; writes are refused from {} ms on)",
            running.as_millis(),
            limit.as_millis()
        )))
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

    /// Calls `visit` with up to `limit` records of `space` after key
    /// `after`, in key order, without copying them where the engine can,
    /// until `visit` returns false; returns how many.
    pub fn visit_after(
        &self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, StorageError> {
        self.engine.visit_after(space, after, limit, visit)
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

    /// Up to `limit` records of `space` between `low` and `high`, in key
    /// order (descending when `reverse`).
    pub fn range(
        &self,
        space: Space,
        low: std::ops::Bound<&[u8]>,
        high: std::ops::Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        self.engine.range(space, low, high, reverse, limit)
    }

    /// Reads one key (no serialization with updates; sees every committed update).
    pub fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine.get(space, key)
    }

    /// Where this store runs its blocking work (threads or tasks).
    pub fn workers(&self) -> Workers {
        self.workers
    }

    /// A consistent view of every space as of now (see
    /// [`super::Engine::snapshot`]).
    pub fn snapshot(&self) -> Result<Arc<dyn super::EngineSnapshot>, StorageError> {
        self.engine.snapshot()
    }

    /// The engine's size, if it knows it.
    pub fn size(&self) -> Option<EngineSize> {
        self.engine.size()
    }

    /// Compacts the engine (see [`Engine::compact`]) on a blocking worker.
    pub async fn compact(&self) -> Result<(), StorageError> {
        let engine = self.engine.clone();
        self.workers
            .run_blocking(move || engine.compact())
            .await
            .map_err(StorageError::Engine)?
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
        self.change_as(false, space, key, f).await
    }

    /// Like [`Store::change_then`], for an update that frees space or is
    /// the few bytes of metadata one needs (removing a record, raising the
    /// dot floor before it, deleting a hint): it is taken below the
    /// free-space reserve too, where every other write is refused (see
    /// [`super::disk`]), so that a node whose disk filled up can still
    /// reap, drop handed-off keys and clear its hints.
    pub async fn change_essential<T, F>(
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
        self.change_as(true, space, key, f).await
    }

    /// [`Store::change_then`], essential or not.
    async fn change_as<T, F>(
        &self,
        essential: bool,
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
        self.queue(space, key, apply, essential).await?;
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
        self.queue(space, key, apply, false).await?;
        let out = applied_rx.await.map_err(update_lost)?;
        Ok((out, Durable(durable_rx)))
    }

    /// Queues an update for the writer thread.
    async fn queue(
        &self,
        space: Space,
        key: Vec<u8>,
        apply: Apply,
        essential: bool,
    ) -> Result<(), StorageError> {
        self.jobs
            .send(Work::Update(Job {
                space,
                key,
                apply,
                essential,
            }))
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
            self.workers
                .run_blocking(move || engine.sync())
                .await
                .map_err(StorageError::Engine)??;
        }
        Ok(clean)
    }
}

/// `Meta` key written when the store closes cleanly (see
/// [`Store::take_clean_close`]), with [`CLOSED_WITH_INDEX`] as its value
/// (a release before the key index writes it empty).
pub(crate) const CLEAN_CLOSE_KEY: &[u8] = b"clean-close";

/// The value of this release's clean-close mark, and of [`CLOSED_BY_KEY`].
pub(crate) const CLOSED_WITH_INDEX: &[u8] = b"index";

/// `Meta` key written beside the clean-close mark: this release closed
/// the store cleanly last. Every release since the mark takes the mark at
/// its start (`take_clean_close`) and a release before the key index
/// writes it back empty at its own clean close, so a start that finds this
/// key without this release's mark knows that such a release ran in
/// between (see `repair::aae::index::forget_if_written_behind`).
pub(crate) const CLOSED_BY_KEY: &[u8] = b"closed-with-index";

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

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
