//! Backups, restores and verification: what `kvorum admin backup`,
//! `restore` and `verify` send a node, and what it answers.
//!
//! A backup reads a storage snapshot of each node page by page
//! ([`BackupStep`]); a restore hands stored records to a node of the new
//! cluster, which places them on their owners ([`Request::Restore`]); a
//! verify compares digests of the whole key space ([`DigestQuery`]), from
//! the root down to the keys of differing segments only.
//!
//! [`Request::Restore`]: crate::proto::Request::Restore

use crate::types::BucketProps;
use serde::{Deserialize, Serialize};

use super::admin::MemberStatus;

/// One step of reading a node's backup.
///
/// ```
/// use kvorum_client::proto::{BackupStep, Request};
/// let first = Request::Backup(BackupStep::Begin);
/// let next = Request::Backup(BackupStep::Page { id: 7, after: None, max_bytes: 1 << 20 });
/// assert!(first.is_admin() && next.is_admin());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupStep {
    /// Take a snapshot of the answering node's storage (writes go on) and
    /// answer its manifest ([`BackupAnswer::Begun`]).
    Begin,
    /// The records of snapshot `id` after storage key `after` (from the
    /// first when `None`), in key order, up to `max_bytes` (a page's first
    /// record goes in whatever its size; the last page may be empty).
    Page {
        /// The snapshot, from [`BackupManifest::snapshot`].
        id: u64,
        /// The previous page's [`BackupAnswer::Page::next`].
        after: Option<Vec<u8>>,
        /// Bytes of records wanted (the node caps it).
        max_bytes: u32,
    },
    /// Release snapshot `id` (an idle one is released after a minute).
    End {
        /// The snapshot.
        id: u64,
    },
}

/// What a node held when its backup began: everything of the backup but
/// the records.
///
/// ```
/// use kvorum_client::proto::BackupManifest;
/// let m = BackupManifest {
///     node: "n1".into(),
///     snapshot: 1,
///     taken_ms: 1_700_000_000_000,
///     epoch: 42,
///     dot_floor: 0,
///     record_format: 1,
///     members: vec![],
///     buckets: vec![],
///     keys: 1000,
/// };
/// assert_eq!(m.node, "n1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// The node.
    pub node: String,
    /// The snapshot to page through.
    pub snapshot: u64,
    /// When the snapshot was taken (ms since the Unix epoch, node clock).
    pub taken_ms: u64,
    /// The node's data epoch: its dots are `(node, epoch, counter)`.
    pub epoch: u64,
    /// Its dot floor: no dot of its epoch at or below this is issued again.
    pub dot_floor: u64,
    /// The stored record format of the records.
    pub record_format: u32,
    /// The members the node knew: id, address, zone and state
    /// (`reachable` and `ownership_ppm` are not recorded: false and 0).
    pub members: Vec<MemberStatus>,
    /// The buckets it knew, with their props.
    pub buckets: Vec<(String, BucketProps)>,
    /// Keys of its data (approximate).
    pub keys: u64,
}

/// A node's answer to a [`BackupStep`].
///
/// ```
/// use kvorum_client::proto::BackupAnswer;
/// let last = BackupAnswer::Page { records: vec![(b"k".to_vec(), b"r".to_vec())], next: None };
/// assert!(matches!(last, BackupAnswer::Page { next: None, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupAnswer {
    /// The snapshot is taken.
    Begun(Box<BackupManifest>),
    /// Records of the snapshot.
    Page {
        /// (storage key, stored record), in key order.
        records: Vec<(Vec<u8>, Vec<u8>)>,
        /// Where the next page starts; `None`: this was the last.
        next: Option<Vec<u8>>,
    },
    /// The snapshot is released.
    Ended,
}

/// A digest of the key space, for `kvorum admin verify`. Every key counts
/// once in a cluster, on its first replica: the XOR of every member's
/// digest is the cluster's, whatever its size, and equal to a backup's for
/// the same data. A key falls in one of 16,384 segments, 128 to a branch.
///
/// ```
/// use kvorum_client::proto::{DigestQuery, Request};
/// assert!(Request::Digest(DigestQuery::Branches).is_admin());
/// let deeper = DigestQuery::Leaves { branches: vec![3, 90] };
/// assert!(matches!(deeper, DigestQuery::Leaves { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigestQuery {
    /// The 128 branch hashes.
    Branches,
    /// The leaf (segment) hashes of these branches.
    Leaves {
        /// Branch numbers (0 to 127).
        branches: Vec<u32>,
    },
    /// The keys of these segments, with their state hashes.
    Keys {
        /// Segment numbers (0 to 16,383; at most 64 per query).
        segments: Vec<u32>,
    },
}

/// A node's answer to a [`DigestQuery`].
///
/// ```
/// use kvorum_client::proto::DigestAnswer;
/// let a = DigestAnswer::Keys(vec![(b"k".to_vec(), 9)]);
/// assert!(matches!(a, DigestAnswer::Keys(k) if k.len() == 1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigestAnswer {
    /// Branch hashes, branch 0 first, and the ring view they were
    /// computed on (members whose views differ count keys on different
    /// first replicas: their digests do not add up).
    Branches {
        /// The view's hash.
        view: u64,
        /// The hashes.
        hashes: Vec<u64>,
    },
    /// (branch, its 128 leaf hashes).
    Leaves(Vec<(u32, Vec<u64>)>),
    /// (storage key, state hash).
    Keys(Vec<(Vec<u8>, u64)>),
}
