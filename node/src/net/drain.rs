//! [`Drain`]: a node's graceful shutdown as its endpoint sees it (new
//! connections and client requests refused, the requests in flight
//! counted, the close code that tells clients what was read).

use std::sync::Arc;

/// A node's graceful shutdown as its endpoint sees it (see
/// `RunningNode::drain`): once `draining`, new connections are refused and
/// new client requests are stopped unread with
/// [`kvorum_client::proto::STREAM_DRAINING`] (a client sends them to
/// another node); requests already read run to their answer, and peer
/// requests are still served (a coordinator's writes in flight elsewhere
/// finish). `in_flight` counts the client requests being served.
#[derive(Clone, Default)]
pub struct Drain {
    /// Set when the drain begins.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Client requests read and not yet answered.
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Set when a drain ended with every client request it read answered.
    pub complete: Arc<std::sync::atomic::AtomicBool>,
    /// Set when a client request failed during the drain (its answer may
    /// not have been delivered although it was read).
    spoiled: Arc<std::sync::atomic::AtomicBool>,
}

impl Drain {
    /// Marks the drain as not complete (see `spoiled`).
    pub(super) fn spoil(&self) {
        self.spoiled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The code the endpoint closes with: [`kvorum_client::proto::CLOSE_DRAINED`]
    /// after a complete drain (a client may send what went unanswered
    /// elsewhere), else [`super::CLOSE_SHUTDOWN`].
    pub fn close_code(&self) -> u32 {
        use std::sync::atomic::Ordering::SeqCst;
        if self.complete.load(SeqCst) && !self.spoiled.load(SeqCst) {
            kvorum_client::proto::CLOSE_DRAINED
        } else {
            super::CLOSE_SHUTDOWN
        }
    }
}

/// Counts one client request in flight until dropped.
pub(super) struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    pub(super) fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
