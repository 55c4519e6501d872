//! Replica reads and writes: what a coordinator, read repair, hint
//! delivery and anti-entropy ask of a replica of a key.

use crate::data::value::State;
use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};

/// A replica request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReplicaRequest {
    /// Read this replica's state of a key.
    Read {
        /// Storage key (bucket and key).
        #[serde(with = "kvorum_client::bytes")]
        key: Vec<u8>,
    },
    /// Merge a state of a key into this replica (durably, by its sync policy).
    Write {
        /// Storage key.
        #[serde(with = "kvorum_client::bytes")]
        key: Vec<u8>,
        /// The state to merge.
        state: State,
    },
    /// Keep a write for `owner`, a replica of the key that is down (sloppy
    /// quorum), and hand it over when the owner is back.
    HintedWrite {
        /// The replica the write is for.
        owner: NodeId,
        /// Storage key.
        #[serde(with = "kvorum_client::bytes")]
        key: Vec<u8>,
        /// The state to hand over.
        state: State,
    },
}

/// A replica's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReplicaResponse {
    /// Answer to `Read`: the replica's state, `None` if it has none.
    State(Option<State>),
    /// Answer to `Write` and `HintedWrite`: merged (or kept) durably.
    Stored,
}
