//! What operator calls answer: the cluster's status, its members, the ring's
//! ranges and range transfers.

use serde::{Deserialize, Serialize};

/// Progress of one range stream into the answering node.
///
/// ```
/// use kvorum_client::TransferStatus;
/// let t = TransferStatus { source: "n2".into(), scanned: 50, total: 200, keys: 12, bytes: 4096, done: false };
/// assert_eq!(t.scanned * 100 / t.total, 25);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStatus {
    /// The node streaming.
    pub source: String,
    /// Keys of the source scanned so far.
    pub scanned: u64,
    /// Keys the source holds (approximate).
    pub total: u64,
    /// Keys received.
    pub keys: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Whether this stream is complete.
    pub done: bool,
}

/// The answering node's view of the cluster (`kvorum admin status`).
///
/// ```
/// use kvorum_client::ClusterStatus;
/// let s = ClusterStatus { node: "n1".into(), members: vec![], in_transition: false, waiting_for: vec![], transfers: vec![] };
/// assert!(!s.in_transition && s.waiting_for.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node's id.
    pub node: String,
    /// Members it knows (removed ones included), sorted by id.
    pub members: Vec<MemberStatus>,
    /// Whether a topology change is in progress.
    pub in_transition: bool,
    /// Nodes that must still stream in their ranges before it completes.
    pub waiting_for: Vec<String>,
    /// The answering node's incoming range streams.
    pub transfers: Vec<TransferStatus>,
}

/// A range of the ring: the keys whose token is in `(start, end]`
/// (wrapping past `u64::MAX` when `start >= end`), and their replicas.
///
/// ```
/// use kvorum_client::RingRange;
/// let r = RingRange { start: 10, end: 20, owners: vec!["n1".into(), "n2".into()] };
/// assert_eq!(r.end - r.start, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingRange {
    /// Exclusive start token.
    pub start: u64,
    /// Inclusive end token.
    pub end: u64,
    /// Replicas, first replica first.
    pub owners: Vec<String>,
}

/// One member of the cluster as a node sees it.
///
/// ```
/// use kvorum_client::MemberStatus;
/// let m = MemberStatus {
///     id: "n1".into(),
///     addr: "10.0.0.1:7401".into(),
///     zone: None,
///     state: "up".into(),
///     reachable: true,
///     ownership_ppm: 333_333,
/// };
/// let zone = m.zone.as_deref().unwrap_or("-");
/// assert_eq!(format!("{} {} {zone}", m.id, m.addr), "n1 10.0.0.1:7401 -");
/// assert_eq!(m.ownership_ppm / 10_000, 33); // percent
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: String,
    /// Address the node listens on (clients and peers).
    pub addr: String,
    /// Zone, if configured.
    pub zone: Option<String>,
    /// Life-cycle state: `joining`, `up`, `leaving` or `removed`.
    pub state: String,
    /// Whether the answering node's failure detector sees it up.
    pub reachable: bool,
    /// Its share of the ring it will own (as first replica, once any change
    /// in progress completes), in millionths.
    pub ownership_ppm: u32,
}
