//! The node-to-node protocol (internal to the node crate).
//!
//! Same framing as the client protocol (one versioned postcard frame per
//! stream direction), its own version and message enum, on ALPN
//! `kvorum-peer/1` which only node certificates may use.

use crate::data::value::State;
use kvorum_client::proto::Request;
use kvorum_client::proto::Response;
use kvorum_client::BucketProps;
use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Version of the peer protocol (3: member states and range transfers).
pub const PEER_PROTOCOL_VERSION: u16 = 3;

/// Where a member stands in the cluster's life cycle.
///
/// The read ring holds `Up` and `Leaving` members; the write ring holds
/// `Up` and `Joining` ones. While the two differ, writes go to both and
/// the nodes that gain ranges stream them in (see [`crate::repair::transfer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberState {
    /// Streaming the ranges it will own; gets writes, serves no reads yet.
    Joining,
    /// Owns its ranges.
    Up,
    /// Its ranges are being streamed to the nodes that take them over; it
    /// still serves them.
    Leaving,
    /// Gone for good (left or removed); kept as a tombstone so older news
    /// of the member cannot bring it back.
    Removed,
}

impl MemberState {
    /// Lower-case name, as `kvorum admin status` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Up => "up",
            MemberState::Leaving => "leaving",
            MemberState::Removed => "removed",
        }
    }

    /// Whether the member is in the read ring (serves reads, coordinates).
    pub fn reads(self) -> bool {
        matches!(self, MemberState::Up | MemberState::Leaving)
    }

    /// Whether the member is in the write ring (owns ranges once settled).
    pub fn owns(self) -> bool {
        matches!(self, MemberState::Up | MemberState::Joining)
    }
}

/// What a node knows of a member: one entry of the gossiped member list.
///
/// Entries merge by `version` (higher wins; see
/// [`crate::cluster::membership::newer`] for ties), so the list is a convergent map:
/// two nodes that exchanged gossip hold the same list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id.
    pub id: NodeId,
    /// Address to reach it.
    pub addr: SocketAddr,
    /// Zone, if configured.
    pub zone: Option<String>,
    /// Bumped on every change of the entry (and every start of the node).
    pub version: u64,
    /// Life-cycle state.
    pub state: MemberState,
    /// The entry's version when `state` was last set: two changes of the
    /// same nodes (leave, rejoin, leave) name different views.
    pub state_since: u64,
    /// The ring view (see [`crate::cluster::membership::View::hash`]) this member
    /// has seen: a node streams ranges in only once every live member has
    /// seen the view, so every coordinator already writes to it.
    pub seen_view: u64,
    /// The ring view whose incoming ranges this member holds in full.
    pub synced_view: u64,
}

/// A member entry as protocol version 2 and the first on-disk metadata
/// format held it (read back from old data directories).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfoV1 {
    /// Node id.
    pub id: NodeId,
    /// Address.
    pub addr: SocketAddr,
    /// Zone.
    pub zone: Option<String>,
    /// Bumped on every start.
    pub incarnation: u64,
}

impl From<MemberInfoV1> for MemberInfo {
    /// An old entry: a member that was up.
    fn from(m: MemberInfoV1) -> Self {
        MemberInfo {
            id: m.id,
            addr: m.addr,
            zone: m.zone,
            version: m.incarnation,
            state: MemberState::Up,
            state_since: 0,
            seen_view: 0,
            synced_view: 0,
        }
    }
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
        #[serde(with = "kvorum_client::bytes")]
        key: Vec<u8>,
    },
    /// Merge a state of a key into this replica (durably, by its sync policy).
    Write {
        /// Storage key.
        #[serde(with = "kvorum_client::bytes")]
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
        #[serde(with = "kvorum_client::bytes")]
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
    /// Range streaming: the next records after `after` (storage key order)
    /// of the keys the asking node gains in ring view `view` (in its write
    /// preference list, not in its read one). Refused when the receiver's
    /// view differs.
    Stream {
        /// The asking node (the gainer).
        from: NodeId,
        /// The view both sides must hold.
        view: u64,
        /// Resume after this storage key (`None`: from the start).
        after: Option<Vec<u8>>,
        /// Stop after this many bytes of records (at least one record).
        max_bytes: u32,
    },
    /// Ownership handoff, step one: which of these keys (with the sender's
    /// state hashes) does the receiver hold in a different state or not at
    /// all?
    Digest {
        /// (storage key, state hash).
        keys: Vec<(Vec<u8>, u64)>,
    },
    /// Ownership handoff, step two: merge these states durably (answered
    /// `Ack` once every one is stored).
    MergeBatch {
        /// (storage key, state).
        records: Vec<(Vec<u8>, State)>,
    },
    /// Keep a write for `owner`, a replica of the key that is down (sloppy
    /// quorum), and hand it over when the owner is back.
    HintedWrite {
        /// The replica the write is for.
        owner: NodeId,
        /// Storage key.
        #[serde(with = "kvorum_client::bytes")]
        key: Vec<u8>,
        /// The state to hand over.
        state: State,
    },
    /// Several `Write`s, `HintedWrite`s and `Read`s (each encoded on its
    /// own), served at once and answered with a `Batch` of their answers in
    /// the same order. A node's transport sends one when such requests to
    /// the same peer queue up; anything else in a batch is refused. An
    /// answer that would make the batch's answer too large is replaced by
    /// [`SEND_ALONE`], and the sender sends that request again on its own.
    Batch(#[serde(with = "kvorum_client::bytes::list")] Vec<Vec<u8>>),
}

/// The error answering a request of a [`PeerRequest::Batch`] whose answer
/// did not fit in the batch's answer: send the request alone.
pub const SEND_ALONE: &str = "answer too large for a batch: send the request alone";

/// Most requests in one [`PeerRequest::Batch`]; a node refuses a larger one.
pub const MAX_BATCH: usize = 64;

/// The answer to a batch: `answers` encoded one by one, in order, within
/// `max` bytes in all (what the asking node reads). An answer past the
/// budget becomes [`SEND_ALONE`], and the asking node sends its request
/// again on its own. (Every answer but a read's is tiny.)
pub fn batch_answer(answers: Vec<PeerResponse>, max: usize) -> PeerResponse {
    // Plain data always encodes (see kvorum_client::proto::encode_frame).
    let alone = postcard::to_stdvec(&PeerResponse::Error(SEND_ALONE.into())).unwrap_or_default();
    // The envelope, and per answer its length prefix and room to become
    // SEND_ALONE.
    let overhead = 16 + answers.len() * (alone.len() + 10);
    let mut budget = max.saturating_sub(overhead);
    PeerResponse::Batch(
        answers
            .into_iter()
            .map(|a| {
                let bytes = kvorum_client::bytes::encode(&a);
                if bytes.len() <= budget {
                    budget -= bytes.len();
                    bytes
                } else {
                    alone.clone()
                }
            })
            .collect(),
    )
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
    /// Answer to `Stream`.
    Records {
        /// (storage key, state), in key order.
        records: Vec<(Vec<u8>, State)>,
        /// Where the next call resumes; `None`: the stream is complete.
        next: Option<Vec<u8>>,
        /// Keys of the sender's data space this call scanned (progress).
        scanned: u64,
        /// Keys of the sender's data space (approximate; progress).
        total: u64,
        /// Stored bytes of the records.
        bytes: u64,
    },
    /// Answer to `Digest`: the positions of the keys whose states differ.
    Wanted(Vec<u32>),
    /// The request failed at the receiver.
    Error(String),
    /// Answer to `Batch`: one answer per request, in order, each encoded on
    /// its own (see [`batch_answer`]).
    Batch(#[serde(with = "kvorum_client::bytes::list")] Vec<Vec<u8>>),
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    fn decoded(answer: PeerResponse) -> Vec<PeerResponse> {
        let PeerResponse::Batch(items) = answer else {
            panic!("a batch's answer is a batch");
        };
        items
            .iter()
            .map(|b| postcard::from_bytes(b).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_answer_too_large_sends_its_biggest_parts_alone() {
        let big = PeerResponse::Error("x".repeat(10_000));
        let answers = vec![
            PeerResponse::Ack,
            big.clone(),
            big.clone(),
            PeerResponse::Pong,
        ];
        // Room for one big answer, not two.
        let answer = batch_answer(answers.clone(), 15_000);
        let frame = kvorum_client::proto::encode_frame(PEER_PROTOCOL_VERSION, &answer);
        assert!(frame.len() <= 15_000, "{}", frame.len());
        let items = decoded(answer);
        assert_eq!(items.len(), 4);
        assert!(matches!(items[0], PeerResponse::Ack));
        assert!(matches!(&items[1], PeerResponse::Error(e) if e.len() == 10_000));
        assert!(matches!(&items[2], PeerResponse::Error(e) if e == SEND_ALONE));
        assert!(matches!(items[3], PeerResponse::Pong));
        // With room for everything, everything is kept, in order.
        let items = decoded(batch_answer(answers, 1 << 20));
        assert!(matches!(&items[2], PeerResponse::Error(e) if e.len() == 10_000));
        assert!(matches!(items[3], PeerResponse::Pong));
    }
}
