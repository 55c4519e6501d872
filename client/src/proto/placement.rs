//! Where the cluster places partitions, as a client routes by it:
//! [`Placement`], the answer to `Request::Placement`.
//!
//! Any client certificate may ask for it: node ids, the addresses clients
//! already dial, and token ranges. Member states, certificates and
//! transfers stay behind the admin role (docs/security.md).

use kvorum_ring::item;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// A member that serves reads and coordinates writes, and the address
/// clients reach it at.
///
/// ```
/// use kvorum_client::proto::PlacedNode;
/// let n = PlacedNode { id: "n1".into(), addr: "127.0.0.1:7401".parse().unwrap() };
/// assert_eq!(n.addr.port(), 7401);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedNode {
    /// Node id.
    pub id: String,
    /// Its advertised address (peers and clients dial the same one).
    pub addr: SocketAddr,
}

/// One range of the ring: the partition tokens after the previous range's
/// `end` up to and including this `end` (the first range wraps around from
/// the last), and the replicas of its partitions.
///
/// ```
/// use kvorum_client::proto::PlacedRange;
/// let r = PlacedRange { end: 1 << 63, owners: vec![0, 2, 1] };
/// assert_eq!(r.owners[0], 0); // the first replica
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedRange {
    /// Inclusive end token.
    pub end: u64,
    /// The replicas, first replica first, as indexes into
    /// [`Placement::nodes`].
    pub owners: Vec<u16>,
}

/// Why a [`Placement`] a node sent cannot be used.
///
/// ```
/// use kvorum_client::proto::{Placement, PlacementError};
/// let p = Placement { view: 1, n: 3, nodes: vec![], ranges: vec![] };
/// assert_eq!(p.check(), Err(PlacementError::Empty));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No node or no range.
    #[error("the placement has no node or no range")]
    Empty,
    /// The ranges are not in strictly ascending order of their ends.
    #[error("the placement's ranges are out of order at index {0}")]
    Unordered(usize),
    /// A range names a node index past the node list, or none.
    #[error("range {0} of the placement names no node or a node it does not list")]
    BadOwner(usize),
}

/// The read ring as a routing table: which nodes hold each partition.
/// Clients route each request to a replica of its partition with it
/// (token-aware routing), and fall back to any node.
///
/// ```
/// use kvorum_client::proto::{PlacedNode, PlacedRange, Placement};
/// let node = |id: &str, port| PlacedNode { id: id.into(), addr: ([127, 0, 0, 1], port).into() };
/// let p = Placement {
///     view: 7,
///     n: 2,
///     nodes: vec![node("a", 7401), node("b", 7402)],
///     ranges: vec![
///         PlacedRange { end: 100, owners: vec![0, 1] },
///         PlacedRange { end: u64::MAX / 2, owners: vec![1, 0] },
///     ],
/// };
/// p.check()?;
/// let ids = |t| p.owners_at(t).map(|n| n.id.as_str()).collect::<Vec<_>>();
/// assert_eq!(ids(100), ["a", "b"]);
/// assert_eq!(ids(101), ["b", "a"]);
/// assert_eq!(ids(u64::MAX), ["a", "b"]); // wraps to the first range
/// # Ok::<(), kvorum_client::proto::PlacementError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Names the ring (and the change in progress): a node answers
    /// `Unchanged` to a request that already holds this view.
    pub view: u64,
    /// Replicas listed per range: the cluster's default N. A bucket with a
    /// smaller N has its replicas first in the list.
    pub n: u8,
    /// The members of the read ring.
    pub nodes: Vec<PlacedNode>,
    /// The ranges, by ascending `end`.
    pub ranges: Vec<PlacedRange>,
}

impl Placement {
    /// Checks what a node sent before it is used: every index names a
    /// node, and the ranges are in order.
    ///
    /// ```
    /// use kvorum_client::proto::{PlacedNode, PlacedRange, Placement, PlacementError};
    /// let p = Placement {
    ///     view: 1,
    ///     n: 1,
    ///     nodes: vec![PlacedNode { id: "a".into(), addr: ([127, 0, 0, 1], 1).into() }],
    ///     ranges: vec![PlacedRange { end: 5, owners: vec![3] }],
    /// };
    /// assert_eq!(p.check(), Err(PlacementError::BadOwner(0)));
    /// ```
    pub fn check(&self) -> Result<(), PlacementError> {
        if self.nodes.is_empty() || self.ranges.is_empty() {
            return Err(PlacementError::Empty);
        }
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 && self.ranges[i - 1].end >= r.end {
                return Err(PlacementError::Unordered(i));
            }
            if r.owners.is_empty() || r.owners.iter().any(|&o| usize::from(o) >= self.nodes.len()) {
                return Err(PlacementError::BadOwner(i));
            }
        }
        Ok(())
    }

    /// The replicas of the partitions whose token is `token`, first
    /// replica first. Empty if the placement fails [`Placement::check`].
    ///
    /// ```
    /// use kvorum_client::proto::{PlacedNode, PlacedRange, Placement};
    /// let p = Placement {
    ///     view: 1,
    ///     n: 1,
    ///     nodes: vec![PlacedNode { id: "a".into(), addr: ([127, 0, 0, 1], 1).into() }],
    ///     ranges: vec![PlacedRange { end: 5, owners: vec![0] }],
    /// };
    /// assert_eq!(p.owners_at(9).count(), 1);
    /// ```
    pub fn owners_at(&self, token: u64) -> impl Iterator<Item = &PlacedNode> + '_ {
        let i = self.ranges.partition_point(|r| r.end < token);
        let range = self.ranges.get(i).or_else(|| self.ranges.first());
        range
            .into_iter()
            .flat_map(|r| r.owners.iter())
            .filter_map(|&o| self.nodes.get(usize::from(o)))
    }

    /// The replicas of the partition `(bucket, partition)`, first replica
    /// first.
    ///
    /// ```
    /// use kvorum_client::proto::{PlacedNode, PlacedRange, Placement};
    /// let p = Placement {
    ///     view: 1,
    ///     n: 1,
    ///     nodes: vec![PlacedNode { id: "a".into(), addr: ([127, 0, 0, 1], 1).into() }],
    ///     ranges: vec![PlacedRange { end: 5, owners: vec![0] }],
    /// };
    /// assert_eq!(p.owners_of("inbox", b"alice").next().map(|n| n.id.as_str()), Some("a"));
    /// ```
    pub fn owners_of<'a>(
        &'a self,
        bucket: &str,
        partition: &[u8],
    ) -> impl Iterator<Item = &'a PlacedNode> + 'a {
        self.owners_at(item::token(&item::partition_prefix(bucket, partition)))
    }
}
