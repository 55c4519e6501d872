//! The node-to-node protocol (internal to the node crate): one message enum
//! per subsystem, inside one versioned envelope.
//!
//! Same framing as the client protocol (one versioned postcard frame per
//! stream direction), on ALPN `kvorum-peer/1`, which only node certificates
//! may use. A request is a [`PeerRequest`], whose variant names the
//! subsystem that serves it; the answer is the same subsystem's variant of
//! [`PeerResponse`], or [`PeerResponse::Error`] with a typed [`PeerError`].
//!
//! | subsystem | request | answer | file |
//! |---|---|---|---|
//! | replica reads and writes (and hints) | [`ReplicaRequest`] | [`ReplicaResponse`] | `replica.rs` |
//! | forwarding a client write to a replica | [`kvorum_client::proto::Request`] | [`kvorum_client::proto::Response`] | |
//! | gossip, buckets, pings | [`ClusterRequest`] | [`ClusterResponse`] | `cluster.rs` |
//! | anti-entropy | [`AaeRequest`] | [`AaeResponse`] | `aae.rs` |
//! | range transfers and handoff | [`TransferRequest`] | [`TransferResponse`] | `transfer.rs` |
//! | tombstone reaping | [`ReapRequest`] | [`ReapResponse`] | `reap.rs` |
//!
//! Several replica requests to one peer travel as one [`PeerRequest::Batch`]
//! (see [`crate::rpc::batch`]). A node speaks this version and the one
//! before it, so that a cluster is upgraded one node at a time (`version.rs`).

mod aae;
mod cluster;
mod error;
mod reap;
mod replica;
mod transfer;
mod version;

pub use aae::{AaeRequest, AaeResponse};
pub use cluster::{ClusterRequest, ClusterResponse};
pub use error::PeerError;
pub use reap::{ReapRequest, ReapResponse};
pub use replica::{KeyBound, ReplicaRequest, ReplicaResponse};
pub use transfer::{TransferRequest, TransferResponse};
pub use version::{
    decode_peer_frame, downgrade, downgrade_answer, downgrade_body, fits, PeerVersions,
    LEARNED_FOR, MIN_PEER_PROTOCOL_VERSION,
};

use kvorum_client::proto::{Request, Response};
use serde::{Deserialize, Serialize};

/// Version of the peer protocol (3: member states and range transfers;
/// 4: one message enum per subsystem, typed errors; 5: gossip carries the
/// sender, the context secrets and the access list; 6: storage keys of
/// sorted partitions, range reads of a replica; 7: states carry their
/// lifetime, bucket props their default time to live; 8: repair writes
/// apart from client writes, which a node below its free-space watermark
/// refuses).
pub const PEER_PROTOCOL_VERSION: u16 = 8;

/// How much larger than a client frame a peer frame (a request or an
/// answer) may be: a peer's write or read answer carries a key's whole
/// state, up to `max_siblings` values of the largest size.
pub const PEER_FRAME_FACTOR: usize = 64;

/// The largest peer frame a node with client frames of `max_frame_bytes`
/// reads.
///
/// ```
/// assert_eq!(kvorum_node::rpc::peer::max_peer_frame_bytes(1024), 64 * 1024);
/// ```
pub fn max_peer_frame_bytes(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_mul(PEER_FRAME_FACTOR)
}

/// Most requests in one [`PeerRequest::Batch`]; a node refuses a larger one.
pub const MAX_BATCH: usize = 64;

/// A request from one node to another: the subsystem's own message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerRequest {
    /// A replica read or write.
    Replica(ReplicaRequest),
    /// Coordinate a client write: sent by a node that is not a replica of
    /// the key to one that is (the coordinator of a write must be a replica,
    /// because the new version's dot comes from its local clock).
    Forward(Request),
    /// Membership: gossip, bucket definitions, pings.
    Cluster(ClusterRequest),
    /// Anti-entropy tree comparison.
    Aae(AaeRequest),
    /// Range streaming and ownership handoff.
    Transfer(TransferRequest),
    /// Tombstone removal.
    Reap(ReapRequest),
    /// Several [`ReplicaRequest`]s, each encoded on its own, served at once
    /// and answered with a [`PeerResponse::Batch`] of their answers in the
    /// same order.
    Batch(#[serde(with = "kvorum_client::bytes::list")] Vec<Vec<u8>>),
}

/// A node's answer to a [`PeerRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Answer to [`PeerRequest::Replica`].
    Replica(ReplicaResponse),
    /// Answer to [`PeerRequest::Forward`]: the coordinator's answer for the
    /// client.
    Forwarded(Response),
    /// Answer to [`PeerRequest::Cluster`].
    Cluster(ClusterResponse),
    /// Answer to [`PeerRequest::Aae`].
    Aae(AaeResponse),
    /// Answer to [`PeerRequest::Transfer`].
    Transfer(TransferResponse),
    /// Answer to [`PeerRequest::Reap`].
    Reap(ReapResponse),
    /// Answer to [`PeerRequest::Batch`]: one encoded [`PeerResponse`] (a
    /// `Replica` answer or an `Error`) per request, in order.
    Batch(#[serde(with = "kvorum_client::bytes::list")] Vec<Vec<u8>>),
    /// The request failed at the receiver.
    Error(PeerError),
}

/// A subsystem's request, and how its answer is found in a
/// [`PeerResponse`] (see [`crate::rpc::call::ask`]).
pub trait Message: Into<PeerRequest> + Send {
    /// The subsystem's answer.
    type Answer: Send;
    /// The answer inside `resp`, or `resp` back (boxed: it is rare) if it
    /// is another kind.
    fn answer(resp: PeerResponse) -> Result<Self::Answer, Box<PeerResponse>>;
}

/// Ties a subsystem's request and answer enums to their envelope variants.
macro_rules! subsystem {
    ($req:ty, $resp:ty, $variant:ident) => {
        impl From<$req> for PeerRequest {
            fn from(r: $req) -> Self {
                PeerRequest::$variant(r)
            }
        }
        impl From<$resp> for PeerResponse {
            fn from(r: $resp) -> Self {
                PeerResponse::$variant(r)
            }
        }
        impl Message for $req {
            type Answer = $resp;
            fn answer(resp: PeerResponse) -> Result<$resp, Box<PeerResponse>> {
                match resp {
                    PeerResponse::$variant(a) => Ok(a),
                    other => Err(Box::new(other)),
                }
            }
        }
    };
}

subsystem!(ReplicaRequest, ReplicaResponse, Replica);
subsystem!(ClusterRequest, ClusterResponse, Cluster);
subsystem!(AaeRequest, AaeResponse, Aae);
subsystem!(TransferRequest, TransferResponse, Transfer);
subsystem!(ReapRequest, ReapResponse, Reap);

impl Message for Request {
    type Answer = Response;
    fn answer(resp: PeerResponse) -> Result<Response, Box<PeerResponse>> {
        match resp {
            PeerResponse::Forwarded(a) => Ok(a),
            other => Err(Box::new(other)),
        }
    }
}

impl From<Request> for PeerRequest {
    fn from(r: Request) -> Self {
        PeerRequest::Forward(r)
    }
}

impl From<PeerError> for PeerResponse {
    fn from(e: PeerError) -> Self {
        PeerResponse::Error(e)
    }
}

impl<T: Into<PeerResponse>> From<Result<T, PeerError>> for PeerResponse {
    fn from(r: Result<T, PeerError>) -> Self {
        match r {
            Ok(a) => a.into(),
            Err(e) => PeerResponse::Error(e),
        }
    }
}

impl PeerRequest {
    /// The node this request says sent it, where it says so (gossip,
    /// anti-entropy, range streams): the caller's node certificate must
    /// name that node.
    pub fn claimed_sender(&self) -> Option<&kvorum_ring::NodeId> {
        match self {
            PeerRequest::Cluster(ClusterRequest::Gossip { from, .. }) => Some(from),
            PeerRequest::Aae(
                AaeRequest::Branches { from }
                | AaeRequest::Leaves { from, .. }
                | AaeRequest::Keys { from, .. },
            ) => Some(from),
            PeerRequest::Transfer(TransferRequest::Stream { from, .. }) => Some(from),
            _ => None,
        }
    }
}
