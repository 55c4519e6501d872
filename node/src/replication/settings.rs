//! The replication settings a coordinator works with: the replication
//! factor and default quorums ([`Replication`]), and the limits on what a
//! node accepts and does at once ([`Limits`]). Parsed from the TOML config
//! by [`crate::config`].

use kvorum_client::proto::{ErrorReply, Limit};
use std::time::Duration;

/// Replication factor and default quorums (same on every node).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replication {
    /// Replicas per key (N).
    pub n: u8,
    /// Default read quorum (R), 1..=N.
    pub r: u8,
    /// Default write quorum (W), 1..=N.
    pub w: u8,
    /// Default time a coordinator waits for R or W answers.
    pub request_timeout: Duration,
    /// A read asks R replicas; when they have not all answered after this
    /// long, it asks one more (a speculative retry), and again after as long.
    pub read_retry_after: Duration,
    /// The share of reads (0 to 1) that ask every replica instead of R, so
    /// that replicas outside the quorum are read-repaired too.
    pub read_repair_chance: f64,
}

/// Limits on what a node accepts and does at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request frame in bytes.
    pub max_frame_bytes: usize,
    /// Largest key in bytes.
    pub max_key_bytes: usize,
    /// Largest value in bytes.
    pub max_value_bytes: usize,
    /// Longest bucket name in bytes.
    pub max_bucket_bytes: usize,
    /// Most values (siblings and tombstones) a key may hold; a write that would
    /// exceed it is refused until a client resolves the siblings.
    pub max_siblings: usize,
    /// Most members of a set key, or of one set field of a map.
    pub max_set_members: usize,
    /// Most fields of a map key.
    pub max_map_fields: usize,
    /// Largest encoded state of one key (any type), in bytes.
    pub max_state_bytes: usize,
    /// Most concurrent QUIC connections (clients and peers).
    pub max_connections: usize,
    /// Most client requests served at once (and, separately, as many peer
    /// requests); more wait.
    pub max_inflight_requests: usize,
    /// Bound on receiving one request frame; a sender that takes longer gets
    /// its stream reset.
    pub request_read_timeout: Duration,
    /// The longest a request may run, whatever the client asks.
    pub max_request_timeout: Duration,
    /// Most connections (and handshakes in progress) from one source address.
    pub max_connections_per_source: usize,
    /// Most handshakes in progress at once.
    pub max_handshakes: usize,
    /// Bound on a handshake; a source that takes longer is dropped.
    pub handshake_timeout: Duration,
    /// Bytes of client request frames the node holds at once (being
    /// received or served); more wait, and flow control stops their senders.
    pub max_inflight_request_bytes: usize,
    /// Most operations in one batch.
    pub max_batch_items: usize,
    /// Items in a page of a range read that does not ask for a number.
    pub default_page_items: usize,
    /// Most items a range read may ask for in one page.
    pub max_page_items: usize,
    /// Most bytes (keys and stored records) of one page, roughly: a page
    /// stops at the item that crosses it, and holds at least one.
    pub max_page_bytes: usize,
    /// Most watches (long polls) this node coordinates at once.
    pub max_watches: usize,
}

impl Limits {
    /// Checks a bucket name and a key against these limits.
    pub fn check_key(&self, bucket: &str, key: &[u8]) -> Result<(), ErrorReply> {
        if bucket.is_empty() {
            return Err(ErrorReply::BadRequest("empty bucket name".into()));
        }
        if bucket.len() > self.max_bucket_bytes {
            return Err(too_large(
                Limit::Bucket,
                bucket.len(),
                self.max_bucket_bytes,
            ));
        }
        if key.len() > self.max_key_bytes {
            return Err(too_large(Limit::Key, key.len(), self.max_key_bytes));
        }
        Ok(())
    }

    /// The bounds on one key's state that replicas enforce on updates.
    pub fn value_limits(&self) -> crate::data::value::ValueLimits {
        crate::data::value::ValueLimits {
            max_siblings: self.max_siblings,
            max_set_members: self.max_set_members,
            max_map_fields: self.max_map_fields,
            max_state_bytes: self.max_state_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 2 * 1024 * 1024,
            max_key_bytes: 1024,
            max_value_bytes: 1024 * 1024,
            max_bucket_bytes: 128,
            max_siblings: 64,
            max_set_members: 10_000,
            max_map_fields: 1_000,
            max_state_bytes: 70 * 1024 * 1024,
            max_connections: 4096,
            max_inflight_requests: 4096,
            request_read_timeout: Duration::from_secs(10),
            max_request_timeout: Duration::from_secs(120),
            max_connections_per_source: 64,
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(5),
            max_inflight_request_bytes: 256 * 1024 * 1024,
            max_batch_items: 1_000,
            default_page_items: 100,
            max_page_items: 1_000,
            max_page_bytes: 1024 * 1024,
            max_watches: 1024,
        }
    }
}

impl Replication {
    /// N=3, R=W=2 (majority), 5 s.
    pub const DEFAULT: Replication = Replication {
        n: 3,
        r: 2,
        w: 2,
        request_timeout: Duration::from_secs(5),
        read_retry_after: Duration::from_millis(10),
        read_repair_chance: 0.1,
    };
}

/// The error of a request part over its limit.
pub fn too_large(what: Limit, size: usize, max: usize) -> ErrorReply {
    ErrorReply::TooLarge {
        what,
        size: size as u64,
        max: max as u64,
    }
}
