//! What operator calls answer: the cluster's status, its members, the ring's
//! ranges and range transfers; the access list and certificates.

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
/// let s = ClusterStatus {
///     node: "n1".into(), members: vec![], in_transition: false,
///     waiting_for: vec![], transfers: vec![], certificates: vec![],
/// };
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
    /// When node certificates expire: the answering node's own, and those
    /// of the peers that connected to it.
    pub certificates: Vec<CertificateStatus>,
}

/// Which writes a node refuses for want of disk space (see
/// [`DiskStatus`]).
///
/// ```
/// use kvorum_client::DiskRefusal;
/// assert_eq!(DiskRefusal::ClientWrites.to_string(), "refusing client writes");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskRefusal {
    /// Above the watermark: every write is taken.
    None,
    /// Below the watermark: client writes get `DiskFull`; repair, hints,
    /// handoff and metadata go on (their reserve).
    ClientWrites,
    /// Below the reserve (half the watermark): every write is refused.
    AllWrites,
    /// The node cannot read its disk's free space.
    Unknown,
}

impl std::fmt::Display for DiskRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiskRefusal::None => "ok",
            DiskRefusal::ClientWrites => "refusing client writes",
            DiskRefusal::AllWrites => "refusing all writes",
            DiskRefusal::Unknown => "unknown",
        })
    }
}

/// One node's disk against its free-space watermark
/// ([`Admin::disk`](crate::Admin::disk), `kvorum admin status`).
///
/// ```
/// use kvorum_client::{DiskRefusal, DiskStatus};
/// let d = DiskStatus {
///     node: "n1".into(),
///     free_bytes: 100 << 20,
///     total_bytes: 10 << 30,
///     watermark_bytes: 256 << 20,
///     refusing: DiskRefusal::ClientWrites,
///     storage_failed: None,
/// };
/// assert!(d.free_bytes < d.watermark_bytes);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStatus {
    /// The node.
    pub node: String,
    /// Free bytes of the filesystem holding its data.
    pub free_bytes: u64,
    /// That filesystem's size.
    pub total_bytes: u64,
    /// Client writes are refused below this many free bytes.
    pub watermark_bytes: u64,
    /// Which writes it refuses now.
    pub refusing: DiskRefusal,
    /// Why its storage failed a commit, if it did: it then takes no writes
    /// until it restarts (by itself once space is back, for a full disk).
    pub storage_failed: Option<String>,
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

/// Which buckets a [`Grant`] covers.
///
/// ```
/// use kvorum_client::GrantScope;
/// assert!(GrantScope::Bucket("orders".into()).covers("orders"));
/// assert!(!GrantScope::Bucket("orders".into()).covers("orders-eu"));
/// assert!(GrantScope::Prefix("shop-".into()).covers("shop-carts"));
/// assert!(GrantScope::Prefix(String::new()).covers("anything"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GrantScope {
    /// Exactly this bucket.
    Bucket(String),
    /// Every bucket whose name starts with this (the empty prefix: every
    /// bucket).
    Prefix(String),
}

impl GrantScope {
    /// Whether the scope covers `bucket`.
    pub fn covers(&self, bucket: &str) -> bool {
        match self {
            GrantScope::Bucket(b) => b == bucket,
            GrantScope::Prefix(p) => bucket.starts_with(p.as_str()),
        }
    }
}

/// One entry of the access list: what a client certificate may do on some
/// buckets. Setting a grant with neither `read` nor `write` removes the
/// client's grant for that scope.
///
/// ```
/// use kvorum_client::{Grant, GrantScope};
/// let all = Grant { client: "*".into(), scope: GrantScope::Prefix(String::new()), read: true, write: true };
/// assert_eq!(all.client, "*"); // every client certificate
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The client certificate's name (`NAME` of `NAME.client.kvorum`), or
    /// `*` for every client certificate.
    pub client: String,
    /// The buckets.
    pub scope: GrantScope,
    /// May read (get, fetch).
    pub read: bool,
    /// May write (put, delete, update).
    pub write: bool,
}

impl Grant {
    /// Read and write on every bucket, for the client certificate named
    /// `client` (`*`: every client certificate). What `kvorum dev` grants
    /// its client.
    ///
    /// ```
    /// use kvorum_client::{Grant, GrantScope};
    /// let g = Grant::every_bucket("*");
    /// assert!(g.read && g.write && g.scope == GrantScope::Prefix(String::new()));
    /// ```
    pub fn every_bucket(client: impl Into<String>) -> Grant {
        Grant {
            client: client.into(),
            scope: GrantScope::Prefix(String::new()),
            read: true,
            write: true,
        }
    }
}

/// A revoked certificate: by serial number, or by role and name (every
/// certificate of that name).
///
/// ```
/// use kvorum_client::Revocation;
/// let r = Revocation::Name { role: "client".into(), name: "laptop".into() };
/// assert_eq!(r.to_string(), "client laptop");
/// assert_eq!(Revocation::Serial("0a1b".into()).to_string(), "serial 0a1b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Revocation {
    /// The certificate with this serial number (lower-case hex, as `kvorum
    /// admin status` and the node's logs print it).
    Serial(String),
    /// Every certificate of this role (`node`, `admin` or `client`) and name.
    Name {
        /// The role.
        role: String,
        /// The name.
        name: String,
    },
}

impl std::fmt::Display for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Revocation::Serial(s) => write!(f, "serial {s}"),
            Revocation::Name { role, name } => write!(f, "{role} {name}"),
        }
    }
}

/// The cluster's access list as the answering node holds it.
///
/// ```
/// use kvorum_client::AccessList;
/// let a = AccessList { grants: vec![], revoked: vec![] };
/// assert!(a.grants.is_empty()); // no client certificate may read or write
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessList {
    /// The grants.
    pub grants: Vec<Grant>,
    /// The revoked certificates.
    pub revoked: Vec<Revocation>,
}

/// When a node's certificate expires.
///
/// ```
/// use kvorum_client::CertificateStatus;
/// let c = CertificateStatus { node: "n1".into(), serial: "0a".into(), not_after: 1_900_000_000 };
/// assert!(c.not_after > 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// The node.
    pub node: String,
    /// Its certificate's serial number (hex).
    pub serial: String,
    /// When it expires, seconds since the Unix epoch.
    pub not_after: i64,
}

/// A stored record a node could not decode and moved aside (`kvorum admin
/// quarantine`); read repair or anti-entropy writes a good copy in its
/// place from the other replicas.
///
/// ```
/// use kvorum_client::QuarantinedRecord;
/// let q = QuarantinedRecord { bucket: "default".into(), key: b"k".to_vec(), bytes: 12, why: "malformed".into(), at_ms: 0 };
/// assert_eq!(q.key, b"k");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    /// The key's bucket.
    pub bucket: String,
    /// The key.
    pub key: Vec<u8>,
    /// Size of the record kept aside.
    pub bytes: u64,
    /// Why it could not be decoded.
    pub why: String,
    /// When it was moved aside (Unix milliseconds).
    pub at_ms: u64,
}
