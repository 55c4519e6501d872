//! The client wire protocol: what a client sends a node and what it gets back.
//!
//! One request per bidirectional QUIC stream: the client writes one frame and
//! finishes its side, the node answers with one frame and finishes. A frame is
//! a postcard-encoded [`Envelope`]: a protocol version followed by the body.
//! Every decode is bounded by the frame size the reader accepted (see
//! [`decode_frame`]), so a hostile length prefix cannot make a reader allocate
//! more than the frame it already holds.
//!
//! ```
//! use kvorum_client::proto::{decode_frame, encode_frame, Request, PROTOCOL_VERSION};
//! let frame = encode_frame(PROTOCOL_VERSION, &Request::Status);
//! assert_eq!(decode_frame::<Request>(PROTOCOL_VERSION, &frame), Ok(Request::Status));
//! ```

pub use crate::types::{
    BucketProps, BucketType, DataOp, DataValue, FieldKind, FieldValue, MapOp, MapValue,
};
pub use crate::version::{ActorId, ReadReport, Version};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;

/// The version of the client protocol this crate speaks.
///
/// A node answers a frame of another version with
/// [`ErrorReply::UnsupportedVersion`]. Version 2 added the version a read
/// must reach (`at_least`), the version and replica report of reads, and
/// the version of writes.
///
/// ```
/// use kvorum_client::proto::{decode_frame, encode_frame, FrameError, Request, PROTOCOL_VERSION};
/// let next = encode_frame(PROTOCOL_VERSION + 1, &Request::Status);
/// assert_eq!(
///     decode_frame::<Request>(PROTOCOL_VERSION, &next),
///     Err(FrameError::UnsupportedVersion { got: PROTOCOL_VERSION + 1, supported: PROTOCOL_VERSION }),
/// );
/// ```
pub const PROTOCOL_VERSION: u16 = 2;

/// ALPN of client-to-node connections.
///
/// ```
/// use kvorum_client::proto::{ALPN_CLIENT, ALPN_PEER};
/// assert_eq!(ALPN_CLIENT, b"kvorum-client/1");
/// assert_ne!(ALPN_CLIENT, ALPN_PEER);
/// ```
pub const ALPN_CLIENT: &[u8] = b"kvorum-client/1";

/// ALPN of node-to-node connections. Only certificates that carry the node
/// role ([`NODE_CERT_NAME`]) may use it.
///
/// ```
/// use kvorum_client::proto::ALPN_PEER;
/// assert_eq!(ALPN_PEER, b"kvorum-peer/1");
/// ```
pub const ALPN_PEER: &[u8] = b"kvorum-peer/1";

/// DNS subject alternative name that every node certificate carries. Clients
/// verify nodes against it; nodes require it of peers on [`ALPN_PEER`].
///
/// ```
/// use kvorum_client::proto::NODE_CERT_NAME;
/// assert_eq!(NODE_CERT_NAME, "node.kvorum");
/// ```
pub const NODE_CERT_NAME: &str = "node.kvorum";

/// DNS subject alternative name that client certificates carry.
///
/// ```
/// use kvorum_client::proto::{CLIENT_CERT_NAME, NODE_CERT_NAME};
/// assert_eq!(CLIENT_CERT_NAME, "client.kvorum");
/// assert_ne!(CLIENT_CERT_NAME, NODE_CERT_NAME);
/// ```
pub const CLIENT_CERT_NAME: &str = "client.kvorum";

/// Largest frame a client accepts from a node by default: a read answer may
/// carry every sibling of a key, up to the node's default `max_siblings` (64)
/// values of its default `max_value_bytes` (1 MiB), plus framing.
///
/// ```
/// use kvorum_client::proto::DEFAULT_MAX_RESPONSE_BYTES;
/// // 72 MiB: 64 siblings of 1 MiB, with room to spare for framing.
/// assert_eq!(DEFAULT_MAX_RESPONSE_BYTES, 72 << 20);
/// ```
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 72 * 1024 * 1024;

/// A versioned frame: what [`encode_frame`] writes and [`decode_frame`] reads.
///
/// ```
/// use kvorum_client::proto::{encode_frame, Envelope, Request, PROTOCOL_VERSION};
/// let env = Envelope { version: PROTOCOL_VERSION, body: Request::Status };
/// let bytes = postcard::to_stdvec(&env).unwrap();
/// assert_eq!(bytes, encode_frame(PROTOCOL_VERSION, &Request::Status));
/// assert_eq!(postcard::from_bytes::<Envelope<Request>>(&bytes).unwrap(), env);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Protocol version of `body`.
    pub version: u16,
    /// The message.
    pub body: T,
}

/// Why a frame could not be decoded.
///
/// ```
/// use kvorum_client::proto::{decode_frame, encode_frame, FrameError, Request, PROTOCOL_VERSION};
/// let mut frame = encode_frame(PROTOCOL_VERSION, &Request::Status);
/// frame.push(0);
/// let err = decode_frame::<Request>(PROTOCOL_VERSION, &frame).unwrap_err();
/// assert_eq!(err, FrameError::TrailingBytes(1));
/// assert_eq!(err.to_string(), "1 trailing bytes after the message");
/// let empty = decode_frame::<Request>(PROTOCOL_VERSION, &[]);
/// assert!(matches!(empty, Err(FrameError::Malformed(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is not a well-formed postcard envelope (garbage or truncated).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame names a protocol version this side does not speak.
    #[error("unsupported protocol version {got} (this side speaks {supported})")]
    UnsupportedVersion {
        /// Version found in the frame.
        got: u16,
        /// Version this side speaks.
        supported: u16,
    },
    /// The frame has bytes after its message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Encodes `body` as a frame of protocol `version`.
///
/// ```
/// use kvorum_client::proto::{decode_frame, encode_frame, Request, PROTOCOL_VERSION};
/// use kvorum_client::ReadOptions;
/// let req = Request::Get {
///     bucket: "users".into(),
///     key: b"alice".to_vec(),
///     options: ReadOptions::r(2),
///     at_least: None,
/// };
/// let frame = encode_frame(PROTOCOL_VERSION, &req);
/// assert_eq!(frame[0], PROTOCOL_VERSION as u8); // the version comes first (a postcard varint)
/// assert_eq!(decode_frame::<Request>(PROTOCOL_VERSION, &frame), Ok(req));
/// ```
pub fn encode_frame<T: Serialize>(version: u16, body: &T) -> Vec<u8> {
    let env = EnvelopeRef { version, body };
    // Serializing plain data into a Vec cannot fail: postcard only fails on
    // types serde cannot represent (none here) or on a full fixed buffer.
    crate::bytes::encode(&env)
}

#[derive(Serialize)]
struct EnvelopeRef<'a, T> {
    version: u16,
    body: &'a T,
}

/// Decodes a frame of protocol `version` whose bytes were read whole.
///
/// The caller bounds `bytes` (the stream is read with a size limit); nothing
/// here allocates more than `bytes.len()` in total for byte strings.
///
/// ```
/// use kvorum_client::proto::{decode_frame, encode_frame, FrameError, Response, PROTOCOL_VERSION};
/// use kvorum_client::{CausalContext, ReadReport, Version};
/// let answer = Response::NotFound {
///     context: CausalContext::empty(),
///     version: Version::default(),
///     report: ReadReport { asked: 3, r: 2, answered: 2, agreed: true },
/// };
/// let frame = encode_frame(PROTOCOL_VERSION, &answer);
/// assert_eq!(decode_frame::<Response>(PROTOCOL_VERSION, &frame), Ok(answer));
/// // A truncated frame is an error, never a panic.
/// let cut = decode_frame::<Response>(PROTOCOL_VERSION, &frame[..1]);
/// assert!(matches!(cut, Err(FrameError::Malformed(_))));
/// ```
pub fn decode_frame<T: DeserializeOwned>(version: u16, bytes: &[u8]) -> Result<T, FrameError> {
    let (got, rest) = postcard::take_from_bytes::<u16>(bytes)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if got != version {
        return Err(FrameError::UnsupportedVersion {
            got,
            supported: version,
        });
    }
    let (body, rest) =
        postcard::take_from_bytes::<T>(rest).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    Ok(body)
}

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

    /// Sets the coordinator's timeout.
    ///
    /// ```
    /// let o = kvorum_client::ReadOptions::default().timeout_ms(250);
    /// assert_eq!(o.timeout_ms, Some(250));
    /// ```
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Counts only preference-list replicas toward R.
    ///
    /// ```
    /// assert!(kvorum_client::ReadOptions::r(2).strict().strict);
    /// ```
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
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

    /// Sets the coordinator's timeout.
    ///
    /// ```
    /// let o = kvorum_client::WriteOptions::default().timeout_ms(250);
    /// assert_eq!(o.timeout_ms, Some(250));
    /// ```
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Counts only preference-list replicas toward W.
    ///
    /// ```
    /// assert!(kvorum_client::WriteOptions::w(2).strict().strict);
    /// ```
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }
}

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
    CreateBucket {
        /// The bucket's name.
        name: String,
        /// Its type, N and default quorums.
        props: BucketProps,
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
}

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
    Status(ClusterStatus),
    /// A topology request was accepted; the change proceeds in the
    /// background (watch it with `Request::Status`).
    Accepted(String),
    /// Answer to [`Request::Ring`]: adjacent ranges with the same owners
    /// are merged.
    Ring(Vec<RingRange>),
    /// Answer to [`Request::Repair`].
    Repaired {
        /// Exchanges completed (one per reachable peer).
        exchanges: u32,
        /// Keys found different and merged both ways.
        keys: u64,
    },
    /// Answer to [`Request::Fetch`] of a key that has a value.
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
    BucketCreated,
    /// Answer to [`Request::ListBuckets`], sorted by name.
    Buckets(Vec<(String, BucketProps)>),
    /// The request failed; nothing was acknowledged.
    Error(ErrorReply),
}

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
        write!(
            f,
            "{} quorum not met: {} of {} needed replicas answered",
            self.op, self.succeeded, self.needed
        )?;
        write_replicas(f, &self.replicas)
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
        write!(
            f,
            "no replica that answered holds the required version: {} of {} answered",
            self.answered, self.asked
        )?;
        write_replicas(f, &self.replicas)
    }
}

/// Writes ` (n1: ok, n2: timed out)`, or nothing for no replicas.
fn write_replicas(
    f: &mut fmt::Formatter<'_>,
    replicas: &[(String, ReplicaOutcome)],
) -> fmt::Result {
    for (i, (node, outcome)) in replicas.iter().enumerate() {
        f.write_str(if i == 0 { " (" } else { ", " })?;
        write!(f, "{node}: {outcome}")?;
    }
    if !replicas.is_empty() {
        f.write_str(")")?;
    }
    Ok(())
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
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Frame => "frame",
            Limit::Key => "key",
            Limit::Value => "value",
            Limit::Bucket => "bucket name",
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
            Limit::Siblings | Limit::SetMembers | Limit::MapFields => "",
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
    /// The bucket was never created (see `Client::create_bucket`).
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
        /// Its existing props.
        existing: BucketProps,
    },
    /// The node failed internally (e.g. a disk error).
    #[error("internal error: {0}")]
    Internal(String),
    /// A topology request the cluster cannot carry out (removing the last
    /// node, an unknown node, leaving too few nodes for N replicas).
    #[error("refused: {0}")]
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let req = Request::Put {
            bucket: "b".into(),
            key: b"k".to_vec(),
            value: vec![7; 100],
            context: CausalContext(vec![1, 2, 3]),
            options: WriteOptions::w(2),
        };
        let bytes = encode_frame(PROTOCOL_VERSION, &req);
        assert_eq!(decode_frame::<Request>(PROTOCOL_VERSION, &bytes), Ok(req));
    }

    #[test]
    fn truncated_garbage_and_wrong_version_are_errors() {
        let bytes = encode_frame(PROTOCOL_VERSION, &Request::Status);
        let put = encode_frame(
            PROTOCOL_VERSION,
            &Request::Get {
                bucket: "bucket".into(),
                key: vec![1; 64],
                options: ReadOptions::default(),
                at_least: None,
            },
        );
        assert!(matches!(
            decode_frame::<Request>(PROTOCOL_VERSION, &put[..put.len() / 2]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_frame::<Request>(PROTOCOL_VERSION, &[0xff; 40]),
            Err(FrameError::Malformed(_))
        ));
        assert_eq!(
            decode_frame::<Request>(PROTOCOL_VERSION + 1, &bytes),
            Err(FrameError::UnsupportedVersion {
                got: PROTOCOL_VERSION,
                supported: PROTOCOL_VERSION + 1
            })
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            decode_frame::<Request>(PROTOCOL_VERSION, &long),
            Err(FrameError::TrailingBytes(1))
        );
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // version 2, variant Put (2), bucket length = huge varint.
        let mut bytes = vec![2u8, 2];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_frame::<Request>(PROTOCOL_VERSION, &bytes).is_err());
    }

    #[test]
    fn context_hex_round_trip() {
        let c = CausalContext(vec![0, 1, 0xab, 0xff]);
        assert_eq!(c.to_hex(), "0001abff");
        assert_eq!(CausalContext::from_hex("0001abff"), Some(c));
        assert_eq!(CausalContext::from_hex("0g"), None);
        assert_eq!(CausalContext::from_hex("abc"), None);
    }
}

#[cfg(test)]
mod measurements {
    use super::*;

    /// A measurement, not a check of speed (docs/performance.md quotes it):
    /// `cargo test --release -p kvorum-client --lib encode_cost --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it by name"]
    fn encode_cost() {
        let req = Request::Put {
            bucket: "default".into(),
            key: b"key00012345".to_vec(),
            value: vec![7u8; 100],
            context: CausalContext(vec![1u8; 30]),
            options: WriteOptions::w(2),
        };
        let n = 1_000_000u32;
        let started = std::time::Instant::now();
        let mut total = 0usize;
        for _ in 0..n {
            let f = encode_frame(PROTOCOL_VERSION, &req);
            let back: Request = decode_frame(PROTOCOL_VERSION, &f).unwrap();
            total += f.len() + matches!(back, Request::Put { .. }) as usize;
        }
        eprintln!(
            "put frame encode+decode: {:?} each ({total})",
            started.elapsed() / n
        );
    }
}
