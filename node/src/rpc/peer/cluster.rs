//! Membership messages: gossip of the member list, bucket definitions,
//! context secrets and the access list; an access change sent to every member;
//! a bucket's definition on every member, and the failure detector's pings.

use crate::access::contexts::Secret;
use crate::access::list::Entries;
use crate::cluster::member::MemberInfo;
use kvorum_client::BucketProps;
use serde::{Deserialize, Serialize};

/// A membership request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// Exchange member lists: the sender's own entry and everything it knows.
    Gossip {
        /// The sender (its certificate must name it).
        from: kvorum_ring::NodeId,
        /// Members the sender knows (itself included).
        members: Vec<MemberInfo>,
        /// Buckets the sender knows (created ones; `default` is implicit).
        buckets: Vec<(String, BucketProps)>,
        /// The context secrets the sender knows.
        secrets: Vec<Secret>,
        /// The access list the sender holds.
        access: Entries,
    },
    /// Define a bucket (a client's `CreateBucket`, sent to every member).
    DefineBucket {
        /// The bucket.
        name: String,
        /// Its props.
        props: BucketProps,
    },
    /// A heartbeat of the failure detector.
    Ping,
    /// Store these access-list entries (an admin's change, sent to every
    /// member).
    Access(Entries),
}

/// A membership answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterResponse {
    /// Answer to `Gossip`: the members and buckets the receiver knows.
    Members {
        /// Members.
        members: Vec<MemberInfo>,
        /// Created buckets.
        buckets: Vec<(String, BucketProps)>,
        /// The context secrets the receiver knows.
        secrets: Vec<Secret>,
        /// The access list the receiver holds.
        access: Entries,
    },
    /// Answer to `DefineBucket`: stored durably.
    BucketDefined,
    /// Answer to `DefineBucket`: the receiver holds the bucket with these
    /// other props.
    Conflict(BucketProps),
    /// Answer to `Ping`.
    Pong,
    /// Answer to `Access`: merged and stored.
    AccessStored,
}
