//! Why a node refused or failed a request: [`ErrorReply`], and the details
//! it carries (a failed quorum, a stale read, an exceeded limit).

use crate::types::{BucketType, LegacyBucketProps};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a request was.
///
/// ```
/// use kvorum_client::proto::OpKind;
/// assert_eq!(OpKind::Read.to_string(), "read");
/// assert_eq!(OpKind::Write.to_string(), "write");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// A get.
    Read,
    /// A put or a delete.
    Write,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
        })
    }
}

/// What happened at one replica of a request.
///
/// ```
/// use kvorum_client::ReplicaOutcome;
/// assert_eq!(ReplicaOutcome::Timeout.to_string(), "timed out");
/// let refused = ReplicaOutcome::Unreachable("connection refused".into());
/// assert_eq!(refused.to_string(), "unreachable (connection refused)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaOutcome {
    /// The replica answered (read) or acknowledged (write).
    Ok,
    /// The replica did not answer before the request's deadline.
    Timeout,
    /// The replica could not be reached (connection refused, lost, or no address).
    Unreachable(String),
    /// The replica answered with an error.
    Failed(String),
}

impl fmt::Display for ReplicaOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaOutcome::Ok => f.write_str("ok"),
            ReplicaOutcome::Timeout => f.write_str("timed out"),
            ReplicaOutcome::Unreachable(why) => write!(f, "unreachable ({why})"),
            ReplicaOutcome::Failed(why) => write!(f, "failed ({why})"),
        }
    }
}

/// A quorum that could not be met, with what every replica did.
///
/// ```
/// use kvorum_client::{proto::OpKind, QuorumFailure, ReplicaOutcome};
/// let failure = QuorumFailure {
///     op: OpKind::Write,
///     needed: 2,
///     succeeded: 1,
///     replicas: vec![("n1".into(), ReplicaOutcome::Ok), ("n2".into(), ReplicaOutcome::Timeout)],
/// };
/// assert_eq!(
///     failure.to_string(),
///     "write quorum not met: 1 of 2 needed replicas answered (n1: ok, n2: timed out)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumFailure {
    /// Read or write.
    pub op: OpKind,
    /// R or W of the request.
    pub needed: u8,
    /// How many replicas answered successfully.
    pub succeeded: u8,
    /// Each replica of the key and its outcome.
    pub replicas: Vec<(String, ReplicaOutcome)>,
}

impl fmt::Display for QuorumFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, succeeded, needed) = (self.op, self.succeeded, self.needed);
        let replicas = Replicas(&self.replicas);
        write!(
            f,
            "{op} quorum not met: {succeeded} of {needed} needed replicas answered{replicas}"
        )
    }
}

/// A read that had to reach a version (a session's) and could not: the
/// replicas that answered in time, merged, do not hold it. Nothing stale was
/// returned.
///
/// ```
/// use kvorum_client::{proto::StaleRead, ReplicaOutcome};
/// let stale = StaleRead {
///     asked: 3,
///     answered: 2,
///     replicas: vec![
///         ("n1".into(), ReplicaOutcome::Ok),
///         ("n2".into(), ReplicaOutcome::Ok),
///         ("n3".into(), ReplicaOutcome::Timeout),
///     ],
/// };
/// assert_eq!(
///     stale.to_string(),
///     "no replica that answered holds the required version: 2 of 3 answered (n1: ok, n2: ok, n3: timed out)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleRead {
    /// Replicas asked (the key's preference list).
    pub asked: u8,
    /// Replicas that answered, all merged.
    pub answered: u8,
    /// Each replica of the key and its outcome.
    pub replicas: Vec<(String, ReplicaOutcome)>,
}

impl fmt::Display for StaleRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (answered, asked) = (self.answered, self.asked);
        let replicas = Replicas(&self.replicas);
        write!(f, "no replica that answered holds the required version: {answered} of {asked} answered{replicas}")
    }
}

/// A replica list as the errors print it: ` (n1: ok, n2: timed out)`, or
/// nothing for no replicas.
struct Replicas<'a>(&'a [(String, ReplicaOutcome)]);

impl fmt::Display for Replicas<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (node, outcome)) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { " (" } else { ", " })?;
            write!(f, "{node}: {outcome}")?;
        }
        if !self.0.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Which bounded quantity a request exceeded.
///
/// ```
/// use kvorum_client::proto::Limit;
/// assert_eq!(Limit::Bucket.to_string(), "bucket name");
/// assert_eq!(Limit::Siblings.to_string(), "sibling count");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// The whole request frame.
    Frame,
    /// The key.
    Key,
    /// The value.
    Value,
    /// The bucket name.
    Bucket,
    /// The causal context.
    Context,
    /// Siblings per key.
    Siblings,
    /// Members of a set (or of a map's set field).
    SetMembers,
    /// Fields of a map.
    MapFields,
    /// The encoded state of one key.
    State,
    /// The sort key of an item.
    SortKey,
    /// Operations in one batch.
    BatchItems,
    /// Items in one page of a range read.
    PageItems,
    /// Bytes in one page of a range read.
    PageBytes,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Frame => "frame",
            Limit::Key => "key",
            Limit::Value => "value",
            Limit::Bucket => "bucket name",
            Limit::SortKey => "sort key",
            Limit::BatchItems => "batch operation count",
            Limit::PageItems => "page item count",
            Limit::PageBytes => "page bytes",
            Limit::Context => "causal context",
            Limit::Siblings => "sibling count",
            Limit::SetMembers => "set member count",
            Limit::MapFields => "map field count",
            Limit::State => "stored state",
        })
    }
}

impl Limit {
    /// The unit its sizes are in: " bytes", or nothing for counts.
    ///
    /// ```
    /// use kvorum_client::proto::Limit;
    /// assert_eq!(Limit::State.unit(), " bytes");
    /// assert_eq!(Limit::SetMembers.unit(), "");
    /// ```
    pub fn unit(self) -> &'static str {
        match self {
            Limit::Siblings
            | Limit::SetMembers
            | Limit::MapFields
            | Limit::BatchItems
            | Limit::PageItems => "",
            _ => " bytes",
        }
    }
}

/// Why a node refused or failed a request. Nothing was acknowledged.
///
/// ```
/// use kvorum_client::{proto::Limit, ErrorReply};
/// let e = ErrorReply::TooLarge { what: Limit::Value, size: 2_000_000, max: 1_048_576 };
/// assert_eq!(e.to_string(), "value too large: 2000000 bytes (max 1048576)");
/// let worth_retrying = match e {
///     ErrorReply::Quorum(_) | ErrorReply::Unavailable(_) => true, // transient
///     _ => false, // the request itself is at fault
/// };
/// assert!(!worth_retrying);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ErrorReply {
    /// The request frame could not be decoded (garbage, truncated, trailing bytes).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The frame's protocol version is not one the node speaks.
    #[error("unsupported protocol version {got} (node speaks {supported})")]
    UnsupportedVersion {
        /// Version the request named.
        got: u16,
        /// Version the node speaks.
        supported: u16,
    },
    /// A bounded quantity was exceeded.
    #[error("{what} too large: {size}{unit} (max {max})", unit = what.unit())]
    TooLarge {
        /// What was too large.
        what: Limit,
        /// Its size (bytes, or count for siblings).
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// R or W outside 1..=N.
    #[error("invalid quorum {requested}: must be between 1 and N={n}")]
    InvalidQuorum {
        /// The R or W asked for.
        requested: u8,
        /// The bucket's replication factor.
        n: u8,
    },
    /// The causal context is not one this cluster issued.
    #[error("invalid causal context: {0}")]
    InvalidContext(String),
    /// Fewer than R/W replicas answered in time.
    #[error("{0}")]
    Quorum(QuorumFailure),
    /// R replicas answered, but none of the replicas that answered in time
    /// holds the version the read required (`at_least`): the read refused
    /// to answer with older data.
    #[error("{0}")]
    Stale(StaleRead),
    /// The node cannot serve requests now (no ring yet, shutting down, overloaded).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The bucket was never created (see `Admin::create_bucket`).
    #[error("unknown bucket {0:?}: create it first (kvorum admin bucket create)")]
    UnknownBucket(String),
    /// The operation does not apply to the bucket's type.
    #[error("bucket {bucket:?} holds {bucket_type} values: a {op} does not apply")]
    WrongType {
        /// The bucket.
        bucket: String,
        /// Its type.
        bucket_type: BucketType,
        /// The operation that was refused.
        op: String,
    },
    /// The bucket exists with other props (a bucket's type and N are fixed).
    #[error("bucket {bucket:?} already exists as {existing:?}")]
    BucketConflict {
        /// The bucket.
        bucket: String,
        /// Its existing props (without the default time to live: the
        /// form of this error's first frames).
        existing: LegacyBucketProps,
    },
    /// The node failed internally (e.g. a disk error).
    #[error("internal error: {0}")]
    Internal(String),
    /// A topology request the cluster cannot carry out (removing the last
    /// node, an unknown node, leaving too few nodes for N replicas).
    #[error("refused: {0}")]
    Refused(String),
    /// The caller's certificate may not make this request: an admin request
    /// from a certificate without the admin role, or a read or write of a
    /// bucket the cluster's access list does not grant its identity.
    /// Nothing was read or written.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A conditional write's condition did not hold on the coordinator's
    /// quorum read: nothing was written. Carries the condition and the
    /// current read (`Value`, `NotFound` or `Data`, with the context to
    /// write with next).
    #[error("precondition failed: {} does not hold", condition.name())]
    PreconditionFailed {
        /// The condition that failed.
        condition: crate::proto::Condition,
        /// The current read of the key.
        current: Box<crate::proto::Response>,
    },
    /// The coordinating node's disk is below its free-space watermark: it
    /// refuses new writes (reads go on) until space is freed, and then
    /// takes them again by itself. Nothing was written. A replica whose
    /// disk is full shows in a [`ErrorReply::Quorum`] failure instead, as
    /// `failed (storage: n2: disk full: ...)`.
    ///
    /// ```
    /// use kvorum_client::ErrorReply;
    /// let e = ErrorReply::DiskFull {
    ///     node: "n1".into(),
    ///     detail: "9.5 MiB free, writes refused below 10.0 MiB".into(),
    /// };
    /// assert_eq!(
    ///     e.to_string(),
    ///     "disk full on n1: 9.5 MiB free, writes refused below 10.0 MiB (reads go on; writes resume once space is freed)"
    /// );
    /// ```
    #[error("disk full on {node}: {detail} (reads go on; writes resume once space is freed)")]
    DiskFull {
        /// The node whose disk is full.
        node: String,
        /// Its free space against the watermark.
        detail: String,
    },
}

/// What a refusal as overloaded begins with (see [`ErrorReply::overloaded`]).
const OVERLOADED: &str = "overloaded: ";

impl ErrorReply {
    /// A node's refusal of a write while its storage engine holds writes
    /// back (`[storage] overloaded_after_ms`): an [`ErrorReply::Unavailable`]
    /// whose text begins with `overloaded: `. The write was refused before
    /// anything was written, so it may be sent again, through this node or
    /// another; the client sends it to the next node itself.
    ///
    /// ```
    /// use kvorum_client::ErrorReply;
    /// let e = ErrorReply::overloaded("the storage engine has held one commit for 1240 ms".into());
    /// assert!(e.is_overloaded());
    /// assert_eq!(e.to_string(), "unavailable: overloaded: the storage engine has held one commit for 1240 ms");
    /// ```
    pub fn overloaded(detail: String) -> ErrorReply {
        ErrorReply::Unavailable(format!("{OVERLOADED}{detail}"))
    }

    /// Whether this is a refusal as overloaded (see
    /// [`ErrorReply::overloaded`]): nothing was written.
    ///
    /// ```
    /// use kvorum_client::ErrorReply;
    /// assert!(ErrorReply::overloaded("held".into()).is_overloaded());
    /// assert!(!ErrorReply::Unavailable("the ring is empty".into()).is_overloaded());
    /// ```
    pub fn is_overloaded(&self) -> bool {
        matches!(self, ErrorReply::Unavailable(m) if m.starts_with(OVERLOADED))
    }
}
