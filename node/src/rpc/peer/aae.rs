//! Anti-entropy messages: two nodes compare the hash trees of the ranges
//! they share top-down (branches, leaves, then keys under differing leaves).

use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};

/// An anti-entropy request about the receiver's tree shared with `from`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AaeRequest {
    /// The branch hashes.
    Branches {
        /// The asking node.
        from: NodeId,
    },
    /// The leaves of some branches.
    Leaves {
        /// The asking node.
        from: NodeId,
        /// Branch numbers.
        branches: Vec<u32>,
    },
    /// The keys (and state hashes) under some leaves.
    Keys {
        /// The asking node.
        from: NodeId,
        /// Segment (leaf) numbers.
        segments: Vec<u32>,
    },
}

/// An anti-entropy answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AaeResponse {
    /// Answer to `Branches`.
    Branches(Vec<u64>),
    /// Answer to `Leaves`: (branch, its leaves).
    Leaves(Vec<(u32, Vec<u64>)>),
    /// Answer to `Keys`: (storage key, state hash).
    Keys(Vec<(Vec<u8>, u64)>),
}
