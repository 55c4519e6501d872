//! What a client sends: [`Request`], its read and write options, and the
//! causal context that a write hands back.

use crate::proto::admin::{Grant, Revocation};
use crate::proto::backup::{BackupStep, DigestQuery};
use crate::proto::items::{ItemKey, ItemOp, RangeQuery, WatchTarget};
use crate::types::{BucketProps, DataOp, LegacyBucketProps};
use crate::version::Version;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Opaque causal context: the version vector of the values a read returned.
///
/// Hand it back unchanged on the next `put` or `delete` of the same key: the
/// write then supersedes exactly the siblings that read saw, and stays a
/// sibling of anything written concurrently.
///
/// ```
/// use kvorum_client::CausalContext;
/// let ctx = CausalContext(vec![0x01, 0xab]);
/// assert_eq!(format!("{ctx:?}"), "CausalContext(01ab)");
/// assert_eq!(CausalContext::from_hex(&ctx.to_hex()), Some(ctx));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CausalContext(#[serde(with = "crate::bytes")] pub Vec<u8>);

impl CausalContext {
    /// The empty context: a write with it supersedes nothing.
    ///
    /// ```
    /// use kvorum_client::CausalContext;
    /// assert_eq!(CausalContext::empty(), CausalContext::default());
    /// assert_eq!(CausalContext::empty().to_hex(), "");
    /// ```
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// True for the empty context.
    ///
    /// ```
    /// use kvorum_client::CausalContext;
    /// assert!(CausalContext::empty().is_empty());
    /// assert!(!CausalContext(vec![1]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The context as printable lowercase hex (what the CLI shows).
    ///
    /// ```
    /// let ctx = kvorum_client::CausalContext(vec![0x00, 0x0f, 0xff]);
    /// assert_eq!(ctx.to_hex(), "000fff");
    /// ```
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses the hex form printed by [`CausalContext::to_hex`].
    ///
    /// ```
    /// use kvorum_client::CausalContext;
    /// let ctx = CausalContext(vec![0xde, 0xad]);
    /// assert_eq!(CausalContext::from_hex(&ctx.to_hex()), Some(ctx.clone()));
    /// assert_eq!(CausalContext::from_hex(" DEAD\n"), Some(ctx)); // trimmed, any case
    /// assert_eq!(CausalContext::from_hex("abc"), None); // odd length
    /// assert_eq!(CausalContext::from_hex("zz"), None); // not hex
    /// ```
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() % 2 != 0 {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
            .map(Self)
    }
}

impl fmt::Debug for CausalContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CausalContext({})", self.to_hex())
    }
}

/// Per-request read options. `None` fields take the cluster's defaults.
///
/// ```
/// use kvorum_client::ReadOptions;
/// let all = ReadOptions::r(3).timeout_ms(500).repair_before_answer();
/// assert_eq!(all.r, Some(3));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOptions {
    /// How many replicas must answer before the read returns (1..=N).
    pub r: Option<u8>,
    /// How long the coordinator waits for R answers, in milliseconds.
    pub timeout_ms: Option<u32>,
    /// Count only the key's preference-list replicas toward R (Riak's PR).
    /// Reads never use fallback nodes today, so this changes nothing yet.
    pub strict: bool,
    /// Send the merged value to stale replicas before answering (default:
    /// in the background, after answering).
    pub repair_before_answer: bool,
}

impl ReadOptions {
    /// Options with read quorum `r`.
    ///
    /// ```
    /// assert_eq!(kvorum_client::ReadOptions::r(1).r, Some(1));
    /// ```
    pub fn r(r: u8) -> Self {
        Self {
            r: Some(r),
            ..Self::default()
        }
    }

    /// Repairs stale replicas before answering.
    ///
    /// ```
    /// assert!(kvorum_client::ReadOptions::r(2).repair_before_answer().repair_before_answer);
    /// ```
    pub fn repair_before_answer(mut self) -> Self {
        self.repair_before_answer = true;
        self
    }
}

/// Per-request write options. `None` fields take the cluster's defaults.
///
/// ```
/// use kvorum_client::WriteOptions;
/// let o = WriteOptions::w(3).timeout_ms(1000).strict();
/// assert_eq!((o.w, o.strict), (Some(3), true));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOptions {
    /// How many replicas must acknowledge (durably, by their sync policy)
    /// before the write returns (1..=N).
    pub w: Option<u8>,
    /// How long the coordinator waits for W acknowledgements, in milliseconds.
    pub timeout_ms: Option<u32>,
    /// Count only the key's preference-list replicas toward W (Riak's PW),
    /// never fallback nodes holding hints.
    pub strict: bool,
    /// The condition the write needs ([`WriteOptions::if_absent`],
    /// [`WriteOptions::if_match`]). Not part of the options' wire form: a
    /// conditional write is sent as an item operation, which carries it.
    #[serde(skip)]
    pub condition: Condition,
    /// The write's time to live ([`WriteOptions::ttl`]); `None`: the
    /// bucket's default, if it has one. Like the condition, sent in an item
    /// operation.
    #[serde(skip)]
    pub ttl: Option<std::time::Duration>,
}

/// What must hold when a write is applied, checked by the coordinator
/// against a quorum read (best effort, docs/consistency.md "Conditional
/// writes"); a write whose condition fails is not written anywhere and gets
/// [`ErrorReply::PreconditionFailed`](crate::ErrorReply::PreconditionFailed)
/// with the current value.
///
/// ```
/// use kvorum_client::{proto::Condition, WriteOptions};
/// assert_eq!(WriteOptions::default().condition, Condition::None);
/// assert_eq!(WriteOptions::w(2).if_absent().condition, Condition::IfAbsent);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// No condition: the write is applied (the default).
    #[default]
    None,
    /// No live value exists: the key was never written, or it is deleted
    /// (a register with no sibling, an LWW value deleted, a counter, set or
    /// map never updated).
    IfAbsent,
    /// The current state is covered by the write's own context: nothing was
    /// written since the read that gave it (a compare-and-set on the causal
    /// context, as Riak's `if_not_modified`). Not for LWW buckets, which
    /// have no context.
    IfMatch,
}

impl Condition {
    /// The condition's name, as metrics and errors give it.
    ///
    /// ```
    /// assert_eq!(kvorum_client::proto::Condition::IfAbsent.name(), "if_absent");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Condition::None => "none",
            Condition::IfAbsent => "if_absent",
            Condition::IfMatch => "if_match",
        }
    }
}

impl WriteOptions {
    /// Options with write quorum `w`.
    ///
    /// ```
    /// assert_eq!(kvorum_client::WriteOptions::w(2).w, Some(2));
    /// ```
    pub fn w(w: u8) -> Self {
        Self {
            w: Some(w),
            ..Self::default()
        }
    }
}

/// The setters [`ReadOptions`] and [`WriteOptions`] share; `$q` names the
/// quorum in the docs.
macro_rules! timeout_and_strict {
    ($options:ident, $q:literal) => {
        impl $options {
            /// Sets the coordinator's timeout.
            ///
            #[doc = concat!("```\nlet o = kvorum_client::", stringify!($options), "::default().timeout_ms(250);")]
            /// assert_eq!(o.timeout_ms, Some(250));
            /// ```
            pub fn timeout_ms(mut self, ms: u32) -> Self {
                self.timeout_ms = Some(ms);
                self
            }

            #[doc = concat!("Counts only preference-list replicas toward ", $q, ".")]
            ///
            #[doc = concat!("```\nassert!(kvorum_client::", stringify!($options), "::default().strict().strict);")]
            /// ```
            pub fn strict(mut self) -> Self {
                self.strict = true;
                self
            }
        }
    };
}

impl WriteOptions {
    /// The write succeeds only if no live value exists ([`Condition::IfAbsent`]).
    ///
    /// ```
    /// use kvorum_client::{proto::Condition, WriteOptions};
    /// assert_eq!(WriteOptions::default().if_absent().condition, Condition::IfAbsent);
    /// ```
    pub fn if_absent(mut self) -> Self {
        self.condition = Condition::IfAbsent;
        self
    }

    /// The write succeeds only if nothing was written since the read whose
    /// context it carries ([`Condition::IfMatch`]).
    ///
    /// ```
    /// use kvorum_client::{proto::Condition, WriteOptions};
    /// assert_eq!(WriteOptions::w(2).if_match().condition, Condition::IfMatch);
    /// ```
    pub fn if_match(mut self) -> Self {
        self.condition = Condition::IfMatch;
        self
    }

    /// Gives the write a time to live: from `ttl` after the coordinator
    /// applies it, the key (or item) reads as not found everywhere, and
    /// its space is reclaimed later (docs/data-types.md "Expiry"). A put
    /// sets the key's lifetime (without a ttl, in a bucket without a
    /// default, it lives for ever); a typed update with a ttl renews it.
    /// At least 1 ms.
    ///
    /// ```
    /// use kvorum_client::WriteOptions;
    /// use std::time::Duration;
    /// let o = WriteOptions::default().ttl(Duration::from_secs(30));
    /// assert_eq!(o.ttl, Some(Duration::from_secs(30)));
    /// assert_eq!(o.ttl_ms(), Some(30_000));
    /// ```
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The time to live in milliseconds, as the wire carries it.
    ///
    /// ```
    /// assert_eq!(kvorum_client::WriteOptions::default().ttl_ms(), None);
    /// ```
    pub fn ttl_ms(&self) -> Option<u64> {
        self.ttl
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether the write needs an item operation (a condition or a time to
    /// live, which the key-value requests have no room for).
    ///
    /// ```
    /// use kvorum_client::WriteOptions;
    /// assert!(!WriteOptions::w(2).needs_item_op());
    /// assert!(WriteOptions::w(2).if_absent().needs_item_op());
    /// ```
    pub fn needs_item_op(&self) -> bool {
        self.condition != Condition::None || self.ttl.is_some()
    }
}

timeout_and_strict!(ReadOptions, "R");
timeout_and_strict!(WriteOptions, "W");

/// What a client asks of a node.
///
/// ```
/// use kvorum_client::proto::{decode_frame, encode_frame, Request, PROTOCOL_VERSION};
/// use kvorum_client::{CausalContext, WriteOptions};
/// let req = Request::Put {
///     bucket: "users".into(),
///     key: b"alice".to_vec(),
///     value: b"admin".to_vec(),
///     context: CausalContext::empty(),
///     options: WriteOptions::w(2),
/// };
/// let frame = encode_frame(PROTOCOL_VERSION, &req);
/// assert_eq!(decode_frame::<Request>(PROTOCOL_VERSION, &frame), Ok(req));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Read a key at quorum R.
    Get {
        /// Namespace of the key.
        bucket: String,
        /// The key.
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        /// R and timeout.
        options: ReadOptions,
        /// Answer only with a state whose version dominates this one (a
        /// session's): the coordinator waits for more than R replicas if it
        /// must, and answers [`ErrorReply::Stale`] if none has it in time.
        ///
        /// [`ErrorReply::Stale`]: crate::proto::ErrorReply::Stale
        at_least: Option<Version>,
    },
    /// Write a value at quorum W.
    Put {
        /// Namespace of the key.
        bucket: String,
        /// The key.
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
        /// Context of the read this write replaces (empty: replace nothing).
        context: CausalContext,
        /// W and timeout.
        options: WriteOptions,
    },
    /// Delete (write a tombstone) at quorum W.
    Delete {
        /// Namespace of the key.
        bucket: String,
        /// The key.
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        /// Context of the read whose siblings this delete removes.
        context: CausalContext,
        /// W and timeout.
        options: WriteOptions,
    },
    /// Ask the node for its view of the cluster.
    Status,
    /// Run an anti-entropy exchange with every peer now (`kvorum admin repair`).
    Repair,
    /// Read a counter, set or map key at quorum R.
    Fetch {
        /// Namespace of the key.
        bucket: String,
        /// The key.
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        /// R and timeout.
        options: ReadOptions,
        /// As for [`Request::Get`]: the version the answer must reach.
        at_least: Option<Version>,
    },
    /// Update a counter, set or map key at quorum W.
    Update {
        /// Namespace of the key.
        bucket: String,
        /// The key.
        #[serde(with = "crate::bytes")]
        key: Vec<u8>,
        /// The update.
        op: DataOp,
        /// Context of an earlier read: what removes may remove (empty:
        /// removes remove nothing).
        context: CausalContext,
        /// W and timeout.
        options: WriteOptions,
    },
    /// Create a bucket on every member (idempotent for equal props).
    /// Clients send [`Request::DefineBucket`] for props with a default
    /// time to live.
    CreateBucket {
        /// The bucket's name.
        name: String,
        /// Its type, N and default quorums.
        props: LegacyBucketProps,
    },
    /// List the buckets this node knows.
    ListBuckets,
    /// Decommission the answering node, which must be `node` (so a retry
    /// that reaches another node cannot make that one leave): stream its
    /// ranges to the nodes that take them over, then leave (`kvorum admin
    /// leave`).
    Leave {
        /// The answering node's id.
        node: String,
    },
    /// Remove a dead node: re-replicate its ranges from the surviving
    /// replicas (`kvorum admin remove`).
    Remove {
        /// The node's id.
        node: String,
    },
    /// Make the answering node (alone in its own cluster) join the cluster
    /// that the node at `seed` belongs to (`kvorum admin join`).
    Join {
        /// The answering node's id (as for `Leave`).
        node: String,
        /// Address of a member of the cluster to join.
        seed: String,
    },
    /// The ring's ranges and their owners (`kvorum admin ring`).
    Ring {
        /// Replicas per range to list (default: the default bucket's N).
        n: Option<u8>,
    },
    /// Set a grant of the cluster's access list (`kvorum admin grant`); a
    /// grant with neither read nor write removes one. The newest change of
    /// a (client, scope) wins on every node.
    Grant(Grant),
    /// Revoke a certificate (`kvorum admin revoke`): every node refuses it
    /// new connections and closes the ones it has.
    Revoke(Revocation),
    /// The access list: grants and revoked certificates (`kvorum admin
    /// access`).
    Access,
    /// Make the answering node read its certificate, key and CA bundle
    /// again (`kvorum admin reload-certs`), as SIGHUP does.
    ReloadCertificates,
    /// The records the answering node quarantined (`kvorum admin
    /// quarantine`).
    Quarantined,
    /// One operation on an item of a sorted partition (the key-value
    /// requests above address the item with the empty sort key).
    Item {
        /// The item.
        key: ItemKey,
        /// What to do.
        op: ItemOp,
    },
    /// Several item operations, across partitions, answered one by one
    /// ([`Response::Batch`](crate::proto::Response::Batch), in order): each
    /// gets its own quorum outcome.
    Batch(Vec<(ItemKey, ItemOp)>),
    /// One page of a range read of a partition.
    Range(RangeQuery),
    /// Delete the live items of one page of a range read (the query's
    /// bounds, prefix, direction and limit), each with the context the
    /// read gave it, at W: answered with
    /// [`Response::Deleted`](crate::proto::Response::Deleted) and where the
    /// page ended.
    DeleteRange {
        /// The range, one page of it.
        query: RangeQuery,
        /// W and timeout of the deletes.
        options: WriteOptions,
    },
    /// One page of the partition keys of a bucket, in byte order
    /// ([`Response::Partitions`](crate::proto::Response::Partitions)).
    ListPartitions {
        /// The bucket.
        bucket: String,
        /// The previous page's `next`: this page starts past it.
        after: Option<Vec<u8>>,
        /// Most partition keys in the page (0: the node's default,
        /// `limits.default_page_items`).
        limit: u32,
        /// Read timeout in milliseconds (`None`: the node's default).
        timeout_ms: Option<u32>,
    },
    /// Wait, up to `timeout_ms`, for a change of an item or of a range's
    /// page (a long poll): answered with the new read, or
    /// [`Response::Unchanged`](crate::proto::Response::Unchanged).
    Watch {
        /// What to wait for.
        target: WatchTarget,
        /// How long to wait, in milliseconds (at most the node's
        /// `limits.max_request_timeout_ms`).
        timeout_ms: u32,
    },
    /// The read ring as a routing table
    /// ([`Response::Placement`](crate::proto::Response::Placement)), or
    /// [`Response::Unchanged`](crate::proto::Response::Unchanged) when
    /// it is still the view `known`. Any client certificate may ask.
    Placement {
        /// The [`Placement::view`](crate::proto::Placement::view) the
        /// client holds, if any.
        known: Option<u64>,
    },
    /// Create a bucket on every member, with props in full (a default
    /// time to live); as [`Request::CreateBucket`] otherwise.
    DefineBucket {
        /// The bucket's name.
        name: String,
        /// Its props.
        props: BucketProps,
    },
    /// List the buckets this node knows, with their props in full.
    ListBucketProps,
    /// Ask the node for its disk against its free-space watermark.
    Disk,
    /// A step of reading the answering node's backup (`kvorum admin
    /// backup`): a storage snapshot, paged.
    Backup(BackupStep),
    /// Place these stored records (storage key, record) of a backup on
    /// their owners in this cluster, merging each into what an owner holds
    /// (`kvorum admin restore`): answered with
    /// [`Response::Restored`](crate::proto::Response::Restored) once every
    /// owner holds them durably.
    Restore {
        /// (storage key, stored record), as a backup page holds them.
        records: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// A digest of the keys this node holds as their first replica
    /// (`kvorum admin verify`).
    Digest(DigestQuery),
}

impl Request {
    /// The partition `(bucket, partition key)` the request is about, if it
    /// is about one: what a client routes it by. A batch is about one
    /// partition when all its items are.
    ///
    /// ```
    /// use kvorum_client::proto::{ItemKey, ItemOp, Request};
    /// let get = |p: &[u8]| (ItemKey::new("inbox", p, b"1"), ItemOp::Get {
    ///     options: Default::default(),
    ///     at_least: None,
    /// });
    /// let one = Request::Batch(vec![get(b"alice"), get(b"alice")]);
    /// assert_eq!(one.partition(), Some(("inbox", &b"alice"[..])));
    /// assert_eq!(Request::Batch(vec![get(b"alice"), get(b"bob")]).partition(), None);
    /// assert_eq!(Request::Status.partition(), None);
    /// ```
    pub fn partition(&self) -> Option<(&str, &[u8])> {
        match self {
            Request::Get { bucket, key, .. }
            | Request::Fetch { bucket, key, .. }
            | Request::Put { bucket, key, .. }
            | Request::Delete { bucket, key, .. }
            | Request::Update { bucket, key, .. } => Some((bucket, key)),
            Request::Item { key, .. } => Some((&key.bucket, &key.partition)),
            Request::Range(q) | Request::DeleteRange { query: q, .. } => {
                Some((&q.bucket, &q.partition))
            }
            Request::Watch { target, .. } => Some(match target {
                WatchTarget::Item { key, .. } => (&key.bucket, &key.partition),
                WatchTarget::Range { query, .. } => (&query.bucket, &query.partition),
            }),
            Request::Batch(ops) => {
                let (first, _) = ops.first()?;
                ops.iter()
                    .all(|(k, _)| k.bucket == first.bucket && k.partition == first.partition)
                    .then_some((&first.bucket, &first.partition))
            }
            _ => None,
        }
    }

    /// Whether this is an operator request (status, ring, leave, remove,
    /// join, repair, bucket listing and creation), which a node serves
    /// itself rather than coordinating across replicas.
    ///
    /// ```
    /// use kvorum_client::proto::Request;
    /// assert!(Request::Status.is_admin());
    /// assert!(!Request::Get {
    ///     bucket: "b".into(),
    ///     key: b"k".to_vec(),
    ///     options: Default::default(),
    ///     at_least: None,
    /// }
    /// .is_admin());
    /// ```
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Request::Status
                | Request::Leave { .. }
                | Request::Remove { .. }
                | Request::Join { .. }
                | Request::Ring { .. }
                | Request::Repair
                | Request::ListBuckets
                | Request::CreateBucket { .. }
                | Request::DefineBucket { .. }
                | Request::ListBucketProps
                | Request::Grant(_)
                | Request::Revoke(_)
                | Request::Access
                | Request::ReloadCertificates
                | Request::Quarantined
                | Request::Disk
                | Request::Backup(_)
                | Request::Restore { .. }
                | Request::Digest(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_hex_round_trip() {
        let c = CausalContext(vec![0, 1, 0xab, 0xff]);
        assert_eq!(c.to_hex(), "0001abff");
        assert_eq!(CausalContext::from_hex("0001abff"), Some(c));
        assert_eq!(CausalContext::from_hex("0g"), None);
        assert_eq!(CausalContext::from_hex("abc"), None);
    }
}
