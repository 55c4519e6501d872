//! Tombstone reaping: remove a tombstone-only key once every replica was
//! seen to hold exactly the same state.

use serde::{Deserialize, Serialize};

/// A reaping request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReapRequest {
    /// Remove a tombstone-only key if its state still hashes to `hash`.
    Reap {
        /// Storage key.
        #[serde(with = "kvorum_client::bytes")]
        key: Vec<u8>,
        /// The state hash every replica held.
        hash: u64,
    },
}

/// A reaping answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReapResponse {
    /// Answer to `Reap`: done (removed, or the key no longer matched).
    Reaped,
}
