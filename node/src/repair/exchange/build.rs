//! The start-up build of the anti-entropy trees: from storage, while the
//! node serves (see [`AntiEntropy::load`]).

use super::{AaeError, AntiEntropy};
use crate::data::value;
use crate::repair::aae::{self, Trees};
use crate::replication::replica;
use crate::storage::{Space, StorageError};
use crate::util::workers::Workers;
use std::{sync::Mutex, time::Duration};

/// Records the start-up scan reads at a time.
const LOAD_CHUNK: usize = 1024;

/// Bytes of records after which a chunk of the start-up scan ends early:
/// writes wait while a chunk is counted.
const LOAD_CHUNK_BYTES: usize = 4 << 20;

/// Where the start-up build of the trees stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Build {
    /// Counting what storage holds.
    Running,
    /// Every stored key is counted.
    Done,
    /// The build stopped on an error (logged); the node must restart.
    Failed,
}

/// Where a build of the trees from storage stands (see
/// [`AntiEntropy::load`]).
#[derive(Default)]
struct Loading {
    keys: usize,
    after: Option<Vec<u8>>,
}

impl Loading {
    /// Visits the next [`LOAD_CHUNK`] records (fewer once they hold
    /// [`LOAD_CHUNK_BYTES`]) and counts them into the trees, under the
    /// trees' lock, which writes' hooks wait for; `Some(keys counted)` once
    /// the last chunk is done.
    fn next(
        &mut self,
        trees: &Mutex<Trees>,
        store: &crate::storage::Store,
    ) -> Result<Option<usize>, StorageError> {
        let mut trees = replica::lock(trees);
        let (mut last, mut bytes) = (Vec::new(), 0usize);
        let count = store.visit_after(
            Space::Data,
            self.after.as_deref(),
            LOAD_CHUNK,
            &mut |k, v| {
                let tomb = value::decode_record(v).ok().and_then(|r| r.dead_since());
                trees.update(k, aae::state_hash(v), tomb);
                last.clear();
                last.extend_from_slice(k);
                bytes += k.len() + v.len();
                bytes < LOAD_CHUNK_BYTES
            },
        )?;
        self.keys += count;
        if count < LOAD_CHUNK && bytes < LOAD_CHUNK_BYTES {
            return Ok(Some(self.keys));
        }
        self.after = Some(last);
        Ok(None)
    }
}

impl AntiEntropy {
    /// Whether the start-up build of the trees is done.
    pub fn built(&self) -> bool {
        *self.built.borrow() == Build::Done
    }

    /// `Ok` once the trees are built; why not, else.
    pub(super) fn ready(&self) -> Result<(), AaeError> {
        match *self.built.borrow() {
            Build::Done => Ok(()),
            Build::Running => Err(AaeError::NotBuilt("being built from storage after a start")),
            Build::Failed => Err(AaeError::NotBuilt(
                "their build failed (see the log); restart the node",
            )),
        }
    }

    /// Whether the trees agree with trees built from scratch from what
    /// storage holds now (with writes stopped: a write between its commit
    /// and its hook would differ).
    #[cfg(feature = "test-hooks")]
    pub fn trees_agree_with_storage(&self) -> Result<bool, StorageError> {
        let trees = replica::lock(self.trees());
        let mut fresh = trees.clone();
        let records = self
            .replica
            .store()
            .scan_after(Space::Data, None, usize::MAX)?;
        fresh.rebuild(
            trees.ring().clone(),
            trees.version().unwrap_or(0),
            records.into_iter().map(|(k, v)| {
                let tomb = value::decode_record(&v).ok().and_then(|r| r.dead_since());
                (k, aae::state_hash(&v), tomb)
            }),
        );
        Ok(trees.agrees_with(&fresh))
    }

    /// Waits until the start-up build of the trees is over (done or
    /// failed).
    pub(super) async fn until_built(&self) {
        let mut built = self.built.subscribe();
        // The sender lives in `self`: the wait ends only when it is over.
        let _ = built.wait_for(|b| *b != Build::Running).await;
    }

    /// Builds the trees from a scan of the data, [`LOAD_CHUNK`] records at
    /// a time, while the node serves: started before the node serves and
    /// run as one of its tasks (until `shutdown`), so neither the time to
    /// serve nor what the scan holds grows with the data.
    ///
    /// Each chunk is read and counted under the trees' lock, and a write's
    /// hook records the key's absolute state, so a write that lands
    /// anywhere in the build is counted once: before the chunk's read, the
    /// chunk reads what the hook then records again (no change); after
    /// it, the hook replaces what the chunk counted. Until the build is
    /// done this node starts no exchange ([`AaeError::NotBuilt`]) and
    /// answers a peer's after at most [`SERVE_REFRESH_WAIT`]; reaping works
    /// from the candidates found so far.
    pub async fn load(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let started = self.env.clock.now();
        {
            let mut trees = replica::lock(self.trees());
            let (placement, ring) = self.membership.placement_ring();
            trees.rebuild((*ring).clone(), placement, std::iter::empty());
        }
        let (trees, store) = (self.trees().clone(), self.replica.store().clone());
        let built = match self.env.workers {
            Workers::Threads => {
                // One thread of its own for the whole build (as the tree
                // stepper): chunks read on pool threads one after another
                // would leave each thread's allocator arena holding a
                // chunk's worth of freed memory.
                let (tx, done) = tokio::sync::oneshot::channel();
                let stop = shutdown.clone();
                let builder = move || {
                    let mut loading = Loading::default();
                    let run = loop {
                        // Told to stop, or the node is gone (its sender
                        // dropped): the build ends, releasing the store.
                        if stop.has_changed().is_err() || *stop.borrow() {
                            break Ok(None);
                        }
                        if let end @ (Ok(Some(_)) | Err(_)) = loading.next(&trees, &store) {
                            break end;
                        }
                        // Let the writer thread in between two chunks.
                        std::thread::sleep(Duration::from_micros(100));
                    };
                    let _ = tx.send(run);
                };
                if let Err(e) = std::thread::Builder::new()
                    .name("kvorum-aae-load".into())
                    .spawn(builder)
                {
                    tracing::error!(error = %e, "cannot start a thread to build the anti-entropy trees");
                    self.built.send_replace(Build::Failed);
                    return;
                }
                tokio::select! {
                    // The thread is gone without an answer: it panicked.
                    r = done => r.unwrap_or_else(|_| {
                        Err(StorageError::Engine("the build thread panicked".into()))
                    }),
                    _ = shutdown.changed() => return,
                }
            }
            Workers::Tasks => {
                // The simulator: one thread; the writer task runs between
                // two chunks.
                let mut loading = Loading::default();
                loop {
                    if let end @ (Ok(Some(_)) | Err(_)) = loading.next(&trees, &store) {
                        break end;
                    }
                    if *shutdown.borrow() {
                        break Ok(None);
                    }
                    tokio::task::yield_now().await;
                }
            }
        };
        match built {
            Ok(Some(keys)) => {
                self.built.send_replace(Build::Done);
                tracing::info!(
                    keys,
                    elapsed_ms = self.env.clock.since(started).as_millis() as u64,
                    "anti-entropy trees built from storage"
                );
            }
            Ok(None) => {} // stopping
            // No exchange runs on trees that miss keys; `/metrics` shows
            // kvorum_aae_trees_built 0 and exchanges say why.
            Err(e) => {
                self.built.send_replace(Build::Failed);
                tracing::error!(error = %e, "building the anti-entropy trees failed; anti-entropy stays off until the node restarts");
            }
        }
    }
}
