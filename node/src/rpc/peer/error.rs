//! Why a peer request failed at the node that received it.

use serde::{Deserialize, Serialize};

/// A peer request's failure, as the receiving node reports it.
///
/// Internal errors (storage, value checks) become one of these at the edge
/// (the peer-request router), so the asking node can tell a refusal it
/// should retry elsewhere from one it should retry later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PeerError {
    /// The receiver was removed from the cluster and takes no data.
    #[error("{node} was removed from the cluster")]
    Removed {
        /// The receiver's id.
        node: String,
    },
    /// The request (or one request of a batch) could not be decoded, or
    /// its frame was refused.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A batch held more requests than a node takes.
    #[error("a batch of {requests} requests: at most {max} are taken")]
    BatchTooLarge {
        /// Requests in the batch.
        requests: u64,
        /// [`super::MAX_BATCH`].
        max: u64,
    },
    /// This request's answer did not fit in its batch's answer: the asking
    /// node sends the request again on its own.
    #[error("answer too large for a batch: send the request alone")]
    AnswerTooLarge,
    /// The receiver's storage failed; nothing was applied.
    #[error("storage: {0}")]
    Storage(String),
    /// A state or update was refused (malformed, wrong type, over a limit).
    #[error("refused state: {0}")]
    InvalidState(String),
    /// The receiver cannot serve this now (busy, redoing its trees, or its
    /// ring view differs); the asking node retries later.
    #[error("retry later: {0}")]
    RetryLater(String),
    /// The request is refused for good (for example a forwarded request
    /// that is not a data request).
    #[error("refused: {0}")]
    Refused(String),
}
