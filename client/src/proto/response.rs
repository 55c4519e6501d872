//! What a node answers: [`Response`].

use crate::proto::admin::{
    AccessList, CertificateStatus, ClusterStatus, DiskStatus, QuarantinedRecord, RingRange,
};
use crate::proto::backup::{BackupAnswer, DigestAnswer};
use crate::proto::error::ErrorReply;
use crate::proto::items::Page;
use crate::proto::placement::Placement;
use crate::proto::request::CausalContext;
use crate::types::{BucketProps, DataValue, LegacyBucketProps};
use crate::version::{ReadReport, Version};
use serde::{Deserialize, Serialize};

/// What a node answers.
///
/// ```
/// use kvorum_client::{proto::Response, CausalContext, ReadReport, Version};
/// let siblings = vec![b"a".to_vec(), b"b".to_vec()];
/// let answer = Response::Value {
///     siblings,
///     context: CausalContext(vec![7]),
///     version: Version::default(),
///     report: ReadReport { asked: 3, r: 2, answered: 2, agreed: true },
/// };
/// match answer {
///     // Concurrent writes: merge the values, then write back with `context`.
///     Response::Value { siblings, context, .. } => {
///         assert_eq!(siblings.len(), 2);
///         assert_eq!(context.to_hex(), "07");
///     }
///     other => panic!("unexpected answer to a read: {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The key's live values (siblings, at least one) and their context.
    Value {
        /// Concurrent values; more than one means concurrent writes.
        #[serde(with = "crate::bytes::list")]
        siblings: Vec<Vec<u8>>,
        /// Context to pass to the next write of this key.
        context: CausalContext,
        /// Version of the merged state the values come from.
        version: Version,
        /// The replicas the read asked and merged.
        report: ReadReport,
    },
    /// No live value. The context covers any tombstones the read saw.
    NotFound {
        /// Context to pass to the next write of this key.
        context: CausalContext,
        /// Version of the merged state (tombstones, or empty).
        version: Version,
        /// The replicas the read asked and merged.
        report: ReadReport,
    },
    /// The write reached W replicas.
    Written {
        /// Context of the written value: a write with it supersedes exactly
        /// this value (and what the request's context covered).
        context: CausalContext,
        /// Version of the write: every state that holds it dominates this.
        version: Version,
    },
    /// The node's view of the cluster.
    Status(Box<ClusterStatus>),
    /// A topology request was accepted; the change proceeds in the
    /// background (watch it with `Request::Status`).
    Accepted(String),
    /// Answer to [`Request::Ring`]: adjacent ranges with the same owners are
    /// merged.
    ///
    /// [`Request::Ring`]: crate::proto::Request::Ring
    Ring(Vec<RingRange>),
    /// Answer to [`Request::Repair`](crate::proto::Request::Repair).
    Repaired {
        /// Exchanges completed (one per reachable peer).
        exchanges: u32,
        /// Keys found different and merged both ways.
        keys: u64,
    },
    /// Answer to [`Request::Fetch`] of a key that has a value.
    ///
    /// [`Request::Fetch`]: crate::proto::Request::Fetch
    Data {
        /// The merged value.
        value: DataValue,
        /// Context to pass with updates that remove (set members, map fields).
        context: CausalContext,
        /// Version of the merged state.
        version: Version,
        /// The replicas the read asked and merged.
        report: ReadReport,
    },
    /// Answer to [`Request::CreateBucket`]: every member holds the bucket.
    ///
    /// [`Request::CreateBucket`]: crate::proto::Request::CreateBucket
    BucketCreated,
    /// Answer to [`Request::ListBuckets`], sorted by name.
    ///
    /// [`Request::ListBuckets`]: crate::proto::Request::ListBuckets
    Buckets(Vec<(String, LegacyBucketProps)>),
    /// The request failed; nothing was acknowledged.
    Error(ErrorReply),
    /// Answer to `Request::Grant`, `Request::Revoke` and `Request::Access`:
    /// the access list as the answering node holds it after the change.
    Access(AccessList),
    /// Answer to `Request::ReloadCertificates`: the certificate the node
    /// now serves with.
    Reloaded(CertificateStatus),
    /// Answer to `Request::Quarantined`.
    Quarantined(Vec<QuarantinedRecord>),
    /// Answer to `Request::Batch`: one answer per operation, in order
    /// (`Value`, `NotFound`, `Data`, `Written` or `Error`).
    Batch(Vec<Response>),
    /// Answer to `Request::Range`.
    Page(Page),
    /// Answer to `Request::Watch` when nothing changed in its time.
    Unchanged,
    /// Answer to `Request::DeleteRange`.
    Deleted {
        /// Items deleted (their deletes reached W).
        deleted: u64,
        /// The deletes that failed, with why (at most 16 listed; `failed`
        /// counts them all).
        errors: Vec<ErrorReply>,
        /// Deletes that failed.
        failed: u64,
        /// Where the page ended, if the range goes on (pass as the
        /// query's `after`).
        next: Option<Vec<u8>>,
    },
    /// Answer to `Request::ListPartitions`: partition keys in byte order,
    /// and where the page ended if the listing goes on.
    Partitions {
        /// The partition keys.
        keys: Vec<Vec<u8>>,
        /// Pass as `after` for the next page; `None`: the listing is done.
        next: Option<Vec<u8>>,
    },
    /// Answer to `Request::Placement`: the read ring as a routing table.
    Placement(Box<Placement>),
    /// Answer to [`Request::ListBucketProps`], sorted by name.
    ///
    /// [`Request::ListBucketProps`]: crate::proto::Request::ListBucketProps
    BucketProps(Vec<(String, BucketProps)>),
    /// Answer to [`Request::Disk`].
    ///
    /// [`Request::Disk`]: crate::proto::Request::Disk
    Disk(DiskStatus),
    /// Answer to [`Request::Backup`].
    ///
    /// [`Request::Backup`]: crate::proto::Request::Backup
    Backup(BackupAnswer),
    /// Answer to [`Request::Restore`]: every record is held durably by
    /// every owner.
    ///
    /// [`Request::Restore`]: crate::proto::Request::Restore
    Restored {
        /// Records of the request.
        records: u32,
        /// Copies sent to an owner that did not hold the record so (one
        /// per owner).
        sent: u32,
    },
    /// Answer to [`Request::Digest`].
    ///
    /// [`Request::Digest`]: crate::proto::Request::Digest
    Digest(DigestAnswer),
}
