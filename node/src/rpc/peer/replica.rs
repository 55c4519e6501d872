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
    /// List the partition keys of `bucket` this replica holds items of,
    /// past `after`, in byte order, at most `limit`.
    Partitions {
        /// The bucket.
        bucket: String,
        /// Past this partition key (`None`: from the first).
        after: Option<Vec<u8>>,
        /// Most keys.
        limit: u32,
    },
    /// Read this replica's items of one partition between two storage
    /// keys, in key order (descending when `reverse`), at most `limit`
    /// records and about `max_bytes` bytes of them (at least one).
    Range {
        /// The lower storage key.
        low: KeyBound,
        /// The upper storage key.
        high: KeyBound,
        /// From the upper end down.
        reverse: bool,
        /// Most records.
        limit: u32,
        /// Most bytes of records, roughly.
        max_bytes: u32,
    },
    /// Merge a state of a key into this replica, as `Write` does, for the
    /// node's own upkeep (read repair, anti-entropy, hint delivery): taken
    /// below the free-space watermark, down to the reserve, where a client
    /// write (`Write`, `HintedWrite`) is refused (see `storage::disk`).
    Repair {
        /// Storage key.
        #[serde(with = "kvorum_client::bytes")]
        key: Vec<u8>,
        /// The state to merge.
        state: State,
    },
}

/// One end of a range of storage keys (see `ReplicaRequest::Range`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyBound {
    /// This key and those past it.
    Included(#[serde(with = "kvorum_client::bytes")] Vec<u8>),
    /// Only those past this key.
    Excluded(#[serde(with = "kvorum_client::bytes")] Vec<u8>),
}

impl KeyBound {
    /// As a `std` bound.
    pub fn as_bound(&self) -> std::ops::Bound<&[u8]> {
        match self {
            KeyBound::Included(k) => std::ops::Bound::Included(k),
            KeyBound::Excluded(k) => std::ops::Bound::Excluded(k),
        }
    }
}

/// A replica's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReplicaResponse {
    /// Answer to `Read`: the replica's state, `None` if it has none.
    State(Option<State>),
    /// Answer to `Write` and `HintedWrite`: merged (or kept) durably.
    Stored,
    /// Answer to `Partitions`: the keys, and whether they are all this
    /// replica holds past `after`.
    Partitions {
        /// Partition keys in byte order.
        keys: Vec<Vec<u8>>,
        /// Every partition past `after` was listed.
        complete: bool,
    },
    /// Answer to `Range`: the records in order, and whether they are all
    /// the replica holds in the range (false: it stopped at a limit, and
    /// holds nothing it did not send up to the last key sent).
    Range {
        /// (storage key, state) in the range's order.
        items: Vec<(Vec<u8>, State)>,
        /// Everything in the range was sent.
        complete: bool,
    },
}
