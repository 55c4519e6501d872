//! The store's writer: batches (group commit) and the clean close, on
//! the writer thread (see the parent module).

use super::*;

/// What an update gets after a failed commit (see [`run_batch`]).
const FAIL_STOP: &str =
    "an earlier commit failed: this node takes no more writes until it restarts";

/// What an update gets after a commit failed for want of space.
const FAIL_STOP_DISK: &str =
    "an earlier commit failed for want of space: this node takes no writes until it restarts, which it does once space is freed";

/// The store's writer: runs batches (group commit) and, once every store
/// handle is gone, the clean close.
pub(super) struct Writer {
    /// When the current batch began (see [`Store::overloaded`]).
    pub(super) busy: Arc<Busy>,
    pub(super) engine: Arc<dyn Engine>,
    pub(super) sync_each: bool,
    pub(super) failed: bool,
    pub(super) failed_tx: tokio::sync::watch::Sender<Option<StorageError>>,
    /// Every write is refused below the reserve (nothing is committed, so
    /// the store takes writes again once space is back).
    pub(super) disk: Arc<DiskGuard>,
    pub(super) indexer: SharedIndexer,
    pub(super) running: Arc<AtomicBool>,
    pub(super) closed_tx: oneshot::Sender<()>,
}

impl Writer {
    /// Runs `first` and the updates queued behind it as one batch, up to
    /// the first work to run between batches, which runs after it.
    pub(super) fn batch(&mut self, first: Work, rx: &mut mpsc::Receiver<Work>) {
        self.busy.begin();
        self.batch_inner(first, rx);
        self.busy.end();
    }

    fn batch_inner(&mut self, first: Work, rx: &mut mpsc::Receiver<Work>) {
        let mut jobs = match first {
            Work::Update(job) => vec![job],
            Work::Run(f) => return self.run(f),
        };
        let mut then = None;
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Work::Update(j)) => jobs.push(j),
                Ok(Work::Run(f)) => {
                    then = Some(f);
                    break;
                }
                Err(_) => break,
            }
        }
        let refused = if self.failed {
            Some(Refusal {
                error: match &*self.failed_tx.borrow() {
                    Some(StorageError::DiskFull(_)) => {
                        StorageError::DiskFull(FAIL_STOP_DISK.into())
                    }
                    _ => StorageError::Engine(FAIL_STOP.into()),
                },
                essential_too: true,
            })
        } else {
            self.disk.refusal(true).map(|why| Refusal {
                error: StorageError::DiskFull(why),
                essential_too: false,
            })
        };
        let indexer = self.indexer.get().cloned();
        if let Err(e) = run_batch(
            &*self.engine,
            jobs,
            self.sync_each,
            refused,
            indexer.as_deref(),
        ) {
            if !self.failed {
                self.failed = true;
                self.failed_tx.send_replace(Some(e));
            }
        }
        if let Some(f) = then {
            self.run(f);
        }
    }

    /// Runs work between two batches; a panic fails it alone (its caller
    /// sees its channel closed).
    fn run(&self, f: Between) {
        let engine = &*self.engine;
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(engine))).is_err() {
            tracing::error!("work run on the writer thread panicked; its caller gets an error");
        }
    }

    /// Every store handle is gone: sync, record the clean close, close.
    pub(super) fn finish(self) {
        self.running.store(false, Ordering::Relaxed);
        // The close is recorded as clean only if every commit
        // succeeded and everything is synced: then no state this
        // store handed out early (change_early) is missing here.
        match self.engine.sync() {
            Err(e) => tracing::error!(error = %e, "final sync failed"),
            Ok(()) if !self.failed => {
                let mark = vec![
                    (
                        Space::Meta,
                        CLEAN_CLOSE_KEY.to_vec(),
                        Some(CLOSED_WITH_INDEX.to_vec()),
                    ),
                    (
                        Space::Meta,
                        CLOSED_BY_KEY.to_vec(),
                        Some(CLOSED_WITH_INDEX.to_vec()),
                    ),
                ];
                if let Err(e) = self.engine.commit(mark, true) {
                    tracing::error!(error = %e, "recording the clean close failed");
                }
            }
            Ok(()) => {}
        }
        // Every Store clone is gone (they hold the job senders), so
        // this is the last handle of the engine: dropping it closes it.
        let Writer {
            engine, closed_tx, ..
        } = self;
        drop(engine);
        let _ = closed_tx.send(());
    }
}

/// Why the updates of a batch are refused before they run.
struct Refusal {
    error: StorageError,
    /// Essential updates too (after a failed commit), or only the others
    /// (below the free-space reserve).
    essential_too: bool,
}

/// Applies and commits one batch; the error if its commit failed.
///
/// After a failed commit every later update fails (`refused` holds why),
/// until the node restarts: a coordinated update whose state went out
/// before its commit failed must not be followed by another one built on
/// the state without it (it would issue the same dot twice), and a disk
/// that failed a sync may have lost what it held (fail-stop, as databases
/// do on an fsync error). Reads go on. A batch refused for want of space
/// (`refused` again) fails the same way, before any update has run, so
/// nothing went out and the next batch may commit.
fn run_batch(
    engine: &dyn Engine,
    jobs: Vec<Job>,
    sync: bool,
    refused: Option<Refusal>,
    indexer: Option<&dyn Indexer>,
) -> Result<(), StorageError> {
    // Later updates of a batch must see earlier ones of the same key.
    let mut overlay: HashMap<(Space, Vec<u8>), Option<Vec<u8>>> = HashMap::new();
    let mut writes = Vec::with_capacity(jobs.len());
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        let slot = (job.space, job.key);
        let refusal = refused
            .as_ref()
            .filter(|r| r.essential_too || !job.essential)
            .map(|r| r.error.clone());
        let current = match overlay.get(&slot) {
            _ if refusal.is_some() => Err(refusal.clone().unwrap_or(StorageError::Closed)),
            Some(v) => Ok(v.clone()),
            None => engine.get(slot.0, &slot.1),
        };
        // A panicking update must not take the writer thread (and with it
        // every later write of this node) down: it fails alone.
        let apply = job.apply;
        let seen = &current;
        let (new, completion) =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                apply(seen.as_ref().map(|v| v.as_deref()).map_err(Clone::clone))
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
        // A refused update was told so (its read failed): whatever it
        // returns is not written, and it gets the refusal.
        if let Some(e) = refusal {
            done.push((completion, None, Some(e)));
            continue;
        }
        let (value, dead_since) = match new {
            Change::Keep => {
                done.push((completion, None, None));
                continue;
            }
            Change::Put(v) => (Some(v), None),
            Change::Record { bytes, dead_since } => (Some(bytes), Some(dead_since)),
            Change::Delete => (None, None),
        };
        // The index entry goes in the same batch. The old one is read from
        // the index itself, not derived from the old record, so the hook
        // moves exactly what the index held (a record damaged on disk
        // still leaves its entry's hash); an unreadable one counts as none.
        let hook = match indexer {
            Some(ix) if slot.0 == Space::Data => {
                let ik = (Space::Index, ix.index_key(&slot.1));
                let old = match overlay.get(&ik) {
                    Some(v) => v.clone(),
                    None => engine.get(ik.0, &ik.1).unwrap_or_else(|e| {
                        tracing::error!(error = %e, "reading an index entry failed; counted as none");
                        None
                    }),
                };
                let (entry, hook) = ix.index(&slot.1, old.as_deref(), value.as_deref(), dead_since);
                writes.push((slot.0, slot.1.clone(), value.clone()));
                writes.push((ik.0, ik.1.clone(), entry.clone()));
                overlay.insert(ik, entry);
                hook
            }
            _ => {
                writes.push((slot.0, slot.1.clone(), value.clone()));
                None
            }
        };
        overlay.insert(slot, value);
        done.push((completion, hook, None));
    }
    // Only a failed commit fails the store; a refusal wrote nothing.
    let res = if writes.is_empty() {
        Ok(())
    } else {
        let res = engine.commit(writes, sync);
        if let Err(e) = &res {
            tracing::error!(error = %e, "batch commit failed");
        }
        res
    };
    for (c, hook, refused) in done {
        if let (Ok(()), Some(hook)) = (&res, hook) {
            hook();
        }
        c(refused.map_or_else(|| res.clone(), Err));
    }
    res
}
