//! Who is in the cluster: the member list and the ring computed from it,
//! gossip, liveness (failure detector and pings), buckets, and the
//! membership metadata a node persists.

pub mod admin;
pub mod buckets;
pub mod fanout;
pub mod gossip;
pub mod liveness;
pub mod member;
pub mod membership;
pub mod meta;
pub mod pings;
pub mod placement;
