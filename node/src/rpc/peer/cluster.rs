//! Membership messages: gossip of the member list and bucket definitions,
//! a bucket's definition on every member, and the failure detector's pings.

use crate::cluster::member::MemberInfo;
use kvorum_client::BucketProps;
use serde::{Deserialize, Serialize};

/// A membership request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// Exchange member lists: the sender's own entry and everything it knows.
    Gossip {
        /// Members the sender knows (itself included).
        members: Vec<MemberInfo>,
        /// Buckets the sender knows (created ones; `default` is implicit).
        buckets: Vec<(String, BucketProps)>,
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
    },
    /// Answer to `DefineBucket`: stored durably.
    BucketDefined,
    /// Answer to `DefineBucket`: the receiver holds the bucket with these
    /// other props.
    Conflict(BucketProps),
    /// Answer to `Ping`.
    Pong,
}
