//! What a node's range transfers have done: the cursor of each incoming
//! stream ([`SourceProgress`], persisted in the meta space so a restarted
//! stream resumes where it stopped), the report `kvorum admin status` shows,
//! and the transfer gauges.

use super::{lock, Transfers};
use crate::cluster::member::MemberState;
use crate::metrics::{self, Metrics};
use crate::replication::replica::Replica;
use crate::storage::{Space, StorageError};
use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// Progress of one incoming stream (one source) of the current view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProgress {
    /// The node streaming to this one.
    pub source: NodeId,
    /// The view the stream is for.
    pub view: u64,
    /// Where the next batch resumes (storage key).
    pub after: Option<Vec<u8>>,
    /// Keys of the source scanned so far.
    pub scanned: u64,
    /// Keys the source holds (approximate).
    pub total: u64,
    /// Keys received.
    pub keys: u64,
    /// Record bytes received.
    pub bytes: u64,
    /// Whether the stream is complete.
    pub done: bool,
}

/// What `kvorum admin status` shows of this node's transfers.
#[derive(Debug, Clone, Default)]
pub struct TransferReport {
    /// Incoming streams of the current view.
    pub sources: Vec<SourceProgress>,
    /// Members that must still stream in their ranges before the change
    /// completes (empty when no change is in progress).
    pub waiting_for: Vec<NodeId>,
    /// Ranges each gainer gains.
    pub ranges: BTreeMap<NodeId, u64>,
}

impl Transfers {
    /// Progress for `kvorum admin status`.
    pub fn report(&self) -> TransferReport {
        let view = self.inner.membership.view();
        let ranges = self.gainers(&view);
        let waiting_for = ranges
            .keys()
            .filter(|g| {
                view.members
                    .get(*g)
                    .is_some_and(|m| m.synced_view != view.hash)
            })
            .cloned()
            .collect();
        let sources = lock(&self.inner.progress)
            .values()
            .filter(|p| p.view == view.hash)
            .cloned()
            .collect();
        TransferReport {
            sources,
            waiting_for,
            ranges,
        }
    }

    /// Sets the transfer gauges (run at each scrape).
    pub fn collect(&self, m: &Metrics) {
        let view = self.inner.membership.view();
        let (done, pending) = lock(&self.inner.progress)
            .values()
            .filter(|s| s.view == view.hash && view.in_transition())
            .fold(
                (0u32, 0u32),
                |(d, n), s| if s.done { (d + 1, n) } else { (d, n + 1) },
            );
        m.gauge(metrics::TRANSFER_SOURCES, &[("status", "done")])
            .set(f64::from(done));
        m.gauge(metrics::TRANSFER_SOURCES, &[("status", "pending")])
            .set(f64::from(pending));
        m.gauge(metrics::TRANSFERS_ACTIVE, &[])
            .set(self.inner.active.load(Ordering::Relaxed) as f64);
        m.gauge(metrics::RING_TRANSITION, &[])
            .set(if view.in_transition() { 1.0 } else { 0.0 });
        for state in [
            MemberState::Joining,
            MemberState::Up,
            MemberState::Leaving,
            MemberState::Removed,
        ] {
            let n = view.members.values().filter(|x| x.state == state).count();
            m.gauge(metrics::MEMBER_STATES, &[("state", state.as_str())])
                .set(n as f64);
        }
    }
}

/// Meta key prefix of persisted stream cursors.
const PROGRESS_PREFIX: &[u8] = b"transfer/";

pub(super) fn load_progress(
    replica: &Replica,
) -> Result<BTreeMap<NodeId, SourceProgress>, StorageError> {
    let mut out = BTreeMap::new();
    for (_, bytes) in replica
        .store()
        .scan(Space::Meta, PROGRESS_PREFIX, usize::MAX)?
    {
        match postcard::from_bytes::<SourceProgress>(&bytes) {
            Ok(p) => {
                out.insert(p.source.clone(), p);
            }
            Err(e) => {
                tracing::warn!(error = %e, "unreadable transfer cursor ignored (the stream restarts)")
            }
        }
    }
    Ok(out)
}

pub(super) async fn save_progress(
    replica: &Replica,
    p: &SourceProgress,
) -> Result<(), StorageError> {
    let mut key = PROGRESS_PREFIX.to_vec();
    key.extend_from_slice(p.source.as_str().as_bytes());
    // Serializing a plain struct into a Vec cannot fail.
    let bytes = postcard::to_stdvec(p).unwrap_or_default();
    replica
        .store()
        .update(Space::Meta, key, move |_| (Some(bytes), ()))
        .await
}
