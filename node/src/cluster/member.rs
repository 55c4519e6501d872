//! What a node knows of a member: its life-cycle state and its entry in
//! the gossiped member list (a wire and an on-disk type, versioned).

use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Where a member stands in the cluster's life cycle.
///
/// The read ring holds `Up` and `Leaving` members; the write ring holds
/// `Up` and `Joining` ones. While the two differ, writes go to both and
/// the nodes that gain ranges stream them in (see [`crate::repair::transfer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberState {
    /// Streaming the ranges it will own; gets writes, serves no reads yet.
    Joining,
    /// Owns its ranges.
    Up,
    /// Its ranges are being streamed to the nodes that take them over; it
    /// still serves them.
    Leaving,
    /// Gone for good (left or removed); kept as a tombstone so older news
    /// of the member cannot bring it back.
    Removed,
}

impl MemberState {
    /// Lower-case name, as `kvorum admin status` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Up => "up",
            MemberState::Leaving => "leaving",
            MemberState::Removed => "removed",
        }
    }

    /// Whether the member is in the read ring (serves reads, coordinates).
    pub fn reads(self) -> bool {
        matches!(self, MemberState::Up | MemberState::Leaving)
    }

    /// Whether the member is in the write ring (owns ranges once settled).
    pub fn owns(self) -> bool {
        matches!(self, MemberState::Up | MemberState::Joining)
    }
}

/// What a node knows of a member: one entry of the gossiped member list.
///
/// Entries merge by `version` (higher wins; see
/// [`crate::cluster::membership::newer`] for ties), so the list is a convergent map:
/// two nodes that exchanged gossip hold the same list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id.
    pub id: NodeId,
    /// Address to reach it.
    pub addr: SocketAddr,
    /// Zone, if configured.
    pub zone: Option<String>,
    /// Bumped on every change of the entry (and every start of the node).
    pub version: u64,
    /// Life-cycle state.
    pub state: MemberState,
    /// The entry's version when `state` was last set: two changes of the
    /// same nodes (leave, rejoin, leave) name different views.
    pub state_since: u64,
    /// The ring view (see [`crate::cluster::membership::View::hash`]) this member
    /// has seen: a node streams ranges in only once every live member has
    /// seen the view, so every coordinator already writes to it.
    pub seen_view: u64,
    /// The ring view whose incoming ranges this member holds in full.
    pub synced_view: u64,
}

/// A member entry as protocol version 2 and the first on-disk metadata
/// format held it (read back from old data directories).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfoV1 {
    /// Node id.
    pub id: NodeId,
    /// Address.
    pub addr: SocketAddr,
    /// Zone.
    pub zone: Option<String>,
    /// Bumped on every start.
    pub incarnation: u64,
}

impl From<MemberInfoV1> for MemberInfo {
    /// An old entry: a member that was up.
    fn from(m: MemberInfoV1) -> Self {
        MemberInfo {
            id: m.id,
            addr: m.addr,
            zone: m.zone,
            version: m.incarnation,
            state: MemberState::Up,
            state_since: 0,
            seen_view: 0,
            synced_view: 0,
        }
    }
}

#[cfg(test)]
impl MemberInfo {
    /// An entry for tests: version 1, at 127.0.0.1:7000, no zone, nothing
    /// seen or synced.
    pub(crate) fn for_test(id: &str, state: MemberState) -> Self {
        MemberInfo {
            id: NodeId::new(id),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
            zone: None,
            version: 1,
            state,
            state_since: 1,
            seen_view: 0,
            synced_view: 0,
        }
    }
}
