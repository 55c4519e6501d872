//! Range transfer messages: a node gaining ranges streams them in, and a
//! node losing ranges hands its keys to their owners before it drops them.

use crate::data::value::State;
use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};

/// A range transfer request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TransferRequest {
    /// Range streaming: the next records after `after` (storage key order)
    /// of the keys the asking node gains in ring view `view` (in its write
    /// preference list, not in its read one). Refused when the receiver's
    /// view differs.
    Stream {
        /// The asking node (the gainer).
        from: NodeId,
        /// The view both sides must hold.
        view: u64,
        /// Resume after this storage key (`None`: from the start).
        after: Option<Vec<u8>>,
        /// Stop after this many bytes of records (at least one record).
        max_bytes: u32,
    },
    /// Ownership handoff, step one: which of these keys (with the sender's
    /// state hashes) does the receiver hold in a different state or not at
    /// all?
    Digest {
        /// (storage key, state hash).
        keys: Vec<(Vec<u8>, u64)>,
    },
    /// Ownership handoff, step two: merge these states durably.
    MergeBatch {
        /// (storage key, state).
        records: Vec<(Vec<u8>, State)>,
    },
}

/// A range transfer answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TransferResponse {
    /// Answer to `Stream`.
    Records {
        /// (storage key, state), in key order.
        records: Vec<(Vec<u8>, State)>,
        /// Where the next call resumes; `None`: the stream is complete.
        next: Option<Vec<u8>>,
        /// Keys of the sender's data space this call scanned (progress).
        scanned: u64,
        /// Keys of the sender's data space (approximate; progress).
        total: u64,
        /// Stored bytes of the records.
        bytes: u64,
    },
    /// Answer to `Digest`: the positions of the keys whose states differ.
    Wanted(Vec<u32>),
    /// Answer to `MergeBatch`: every state is stored durably.
    Merged,
}
