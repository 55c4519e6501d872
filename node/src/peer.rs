//! The node-to-node protocol (internal to the node crate).
//!
//! Same framing as the client protocol (one versioned postcard frame per
//! stream direction), its own version and message enum, on ALPN
//! `kvorum-peer/1` which only node certificates may use.

use crate::value::State;
use kvorum_client::proto::Request;
use kvorum_client::proto::Response;
use kvorum_client::BucketProps;
use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Version of the peer protocol.
pub const PEER_PROTOCOL_VERSION: u16 = 2;

/// What a node knows of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id.
    pub id: NodeId,
    /// Address to reach it.
    pub addr: SocketAddr,
    /// Zone, if configured.
    pub zone: Option<String>,
    /// Bumped on every start of the node: newer news of a member wins.
    pub incarnation: u64,
}

/// A request from one node to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Exchange member lists: the sender's own entry and everything it knows.
    Gossip {
        /// Members the sender knows (itself included).
        members: Vec<MemberInfo>,
        /// Buckets the sender knows (created ones; `default` is implicit).
        buckets: Vec<(String, BucketProps)>,
    },
    /// Define a bucket (a client's `CreateBucket`, sent to every member):
    /// answered `Ack` when stored durably, `Error` on a conflict.
    DefineBucket {
        /// The bucket.
        name: String,
        /// Its props.
        props: BucketProps,
    },
    /// Read this replica's state of a key.
    Read {
        /// Storage key (bucket and key).
        key: Vec<u8>,
    },
    /// Merge a state of a key into this replica (durably, by its sync policy).
    Write {
        /// Storage key.
        key: Vec<u8>,
        /// The state to merge.
        state: State,
    },
    /// Coordinate a client write: sent by a node that is not a replica of the
    /// key to one that is (the coordinator of a write must be a replica,
    /// because the new version's dot comes from its local clock).
    Forward(Request),
    /// A heartbeat of the failure detector.
    Ping,
    /// Anti-entropy: the branch hashes of the receiver's tree shared with `from`.
    AaeBranches {
        /// The asking node.
        from: NodeId,
    },
    /// Anti-entropy: the leaves of some branches of that tree.
    AaeLeaves {
        /// The asking node.
        from: NodeId,
        /// Branch numbers.
        branches: Vec<u32>,
    },
    /// Remove a tombstone-only key if its state still hashes to `hash`
    /// (every replica was seen to hold exactly that state).
    Reap {
        /// Storage key.
        key: Vec<u8>,
        /// The state hash every replica held.
        hash: u64,
    },
    /// Anti-entropy: the keys (and state hashes) under some leaves.
    AaeKeys {
        /// The asking node.
        from: NodeId,
        /// Segment (leaf) numbers.
        segments: Vec<u32>,
    },
    /// Keep a write for `owner`, a replica of the key that is down (sloppy
    /// quorum), and hand it over when the owner is back.
    HintedWrite {
        /// The replica the write is for.
        owner: NodeId,
        /// Storage key.
        key: Vec<u8>,
        /// The state to hand over.
        state: State,
    },
}

/// A node's answer to a [`PeerRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Answer to `Gossip`: the members and buckets the receiver knows.
    Members {
        /// Members.
        members: Vec<MemberInfo>,
        /// Created buckets.
        buckets: Vec<(String, BucketProps)>,
    },
    /// Answer to `Read`: the replica's state, `None` if it has none.
    State(Option<State>),
    /// Answer to `Write`: merged and stored.
    Ack,
    /// Answer to `Forward`: the coordinator's answer for the client.
    Forwarded(Response),
    /// Answer to `Ping`.
    Pong,
    /// Answer to `AaeBranches`.
    Branches(Vec<u64>),
    /// Answer to `AaeLeaves`: (branch, its leaves).
    Leaves(Vec<(u32, Vec<u64>)>),
    /// Answer to `AaeKeys`: (storage key, state hash).
    Keys(Vec<(Vec<u8>, u64)>),
    /// Answer to `DefineBucket`: the receiver holds the bucket with these
    /// other props.
    Conflict(BucketProps),
    /// The request failed at the receiver.
    Error(String),
}
