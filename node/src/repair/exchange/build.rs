//! The start-up build of the anti-entropy trees: from the key index, while
//! the node serves (see [`AntiEntropy::load`]).

use super::{AaeError, AntiEntropy};
use crate::replication::replica;
#[cfg(feature = "test-hooks")]
use crate::{
    data::value,
    repair::aae,
    storage::{Space, StorageError},
};

/// Where the start-up build of the trees stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Build {
    /// Counting what the key index holds.
    Running,
    /// Every indexed key is counted.
    Done,
    /// The build stopped on an error (logged); the node must restart.
    Failed,
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
    /// storage holds now, and the key index with the data (with writes
    /// stopped: a write between its commit and its hook would differ).
    #[cfg(feature = "test-hooks")]
    pub fn trees_agree_with_storage(&self) -> Result<bool, StorageError> {
        let trees = replica::lock(self.trees());
        let mut fresh = trees.clone();
        let store = self.replica.store();
        let records = store.scan_after(Space::Data, None, usize::MAX)?;
        let expected: Vec<aae::Entry> = records
            .iter()
            .map(|(k, v)| aae::Entry {
                key: k.clone(),
                hash: aae::state_hash(v),
                dead: value::decode_record(v).ok().and_then(|r| r.dead_since()),
            })
            .collect();
        let mut indexed = aae::index::read(0..aae::SEGMENTS, |p| {
            store.scan(Space::Index, p, usize::MAX)
        })?;
        indexed.sort_by(|a, b| a.key.cmp(&b.key));
        fresh.rebuild(
            trees.ring().clone(),
            trees.version().unwrap_or(0),
            expected.iter().map(|e| (e.key.clone(), e.hash, e.dead)),
        );
        Ok(trees.agrees_with(&fresh) && indexed == expected)
    }

    /// Waits until the start-up build of the trees is over (done or
    /// failed).
    pub(super) async fn until_built(&self) {
        let mut built = self.built.subscribe();
        // The sender lives in `self`: the wait ends only when it is over.
        let _ = built.wait_for(|b| *b != Build::Running).await;
    }

    /// Builds the trees from the key index ([`AntiEntropy::count_build`]),
    /// while the node serves: started before the node serves and run as
    /// one of its tasks (until `shutdown`), so the time to serve does not
    /// grow with the data, and the build reads keys and hashes only, a few
    /// segments at a time. Until it is done this node starts no exchange
    /// ([`AaeError::NotBuilt`]) and answers a peer's after at most
    /// [`super::SERVE_REFRESH_WAIT`]; reaping works from the candidates
    /// found so far.
    pub async fn load(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let started = self.env.clock.now();
        {
            let mut trees = replica::lock(self.trees());
            let (placement, ring) = self.membership.placement_ring();
            trees.begin((*ring).clone(), placement);
        }
        let built = tokio::select! {
            b = self.count_build() => b,
            _ = shutdown.changed() => return,
        };
        match built {
            Ok(keys) => {
                self.built.send_replace(Build::Done);
                tracing::info!(
                    keys,
                    elapsed_ms = self.env.clock.since(started).as_millis() as u64,
                    "anti-entropy trees built from the key index"
                );
            }
            // No exchange runs on trees that miss keys; `/metrics` shows
            // kvorum_aae_trees_built 0 and exchanges say why.
            Err(e) => {
                self.built.send_replace(Build::Failed);
                tracing::error!(error = %e, "building the anti-entropy trees failed; anti-entropy stays off until the node restarts");
            }
        }
    }
}

impl AntiEntropy {
    /// Redoes the trees for the current placement if it changed since they
    /// were built (a new ring, or a bucket's N): from the key index,
    /// [`super::REPLACE_STEP`] segments at a time (see [`AntiEntropy::count_build`]).
    /// One caller counts at a time; the others wait for it to finish.
    pub async fn refresh(&self) {
        {
            // The placement is read under the trees' lock (the order
            // `load` takes them in), so a caller that read an older one
            // cannot start its build after a newer one started.
            let mut trees = replica::lock(self.trees());
            let (placement, ring) = self.membership.placement_ring();
            if trees.version() >= Some(placement) {
                return;
            }
            trees.replace((*ring).clone(), placement);
        }
        let started = self.env.clock.now();
        match self.count_build().await {
            Ok(_) => tracing::debug!(
                elapsed_ms = self.env.clock.since(started).as_millis() as u64,
                "anti-entropy trees redone for a new placement"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "redoing the anti-entropy trees failed; the next check starts over"
            ),
        }
    }

    /// Counts the key index into the build of the trees in progress, if
    /// any, until it is done; returns the index entries counted. Each step
    /// reads [`super::REPLACE_STEP`] segments of the index and counts them on the
    /// writer thread ([`crate::storage::Store::on_writer`]), where no
    /// commit and its hook can fall between the read and the count. The
    /// guard goes with the counting: a caller that stops waiting (see
    /// `serve`) leaves it running, and no second one starts. A failed
    /// step drops the build (the next check starts over).
    pub(super) async fn count_build(&self) -> Result<u64, crate::storage::StorageError> {
        let one = self.stepping.clone().lock_owned().await;
        // The trees weakly: once the node lets them go (it is stopping),
        // the build stops and lets the store close.
        let trees = std::sync::Arc::downgrade(self.trees());
        let store = self.replica.store().clone();
        let counting = async move {
            let _one = one;
            let mut counted = 0u64;
            loop {
                let Some(t) = trees.upgrade() else {
                    return Err(crate::storage::StorageError::Closed);
                };
                let step = store
                    .on_writer(move |engine| {
                        let mut trees = replica::lock(&t);
                        let Some(segments) = trees.to_count(super::REPLACE_STEP) else {
                            return Ok((true, 0));
                        };
                        let read = crate::repair::aae::index::read(segments.clone(), |p| {
                            engine.scan(crate::storage::Space::Index, p, usize::MAX)
                        });
                        match read {
                            Ok(entries) => Ok((trees.count(segments, &entries), entries.len())),
                            Err(e) => {
                                trees.abandon();
                                Err(e)
                            }
                        }
                    })
                    .await;
                match step {
                    Ok(Ok((done, n))) => {
                        counted += n as u64;
                        if done {
                            return Ok(counted);
                        }
                    }
                    // The step dropped the build itself.
                    Ok(Err(e)) => return Err(e),
                    Err(e) => {
                        if let Some(t) = trees.upgrade() {
                            replica::lock(&t).abandon();
                        }
                        return Err(e);
                    }
                }
            }
        };
        // Its own task: it runs to the end even if this caller goes.
        tokio::spawn(counting).await.unwrap_or_else(|_| {
            Err(crate::storage::StorageError::Engine(
                "the trees' build panicked".into(),
            ))
        })
    }
}
