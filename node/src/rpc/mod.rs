//! How nodes call each other: the [`transport::Transport`] trait that the
//! replication, membership and repair code reaches peers through, its QUIC
//! implementation ([`quic`]), the peer protocol's messages ([`peer`]),
//! typed calls ([`call`]) and batches of replica requests ([`batch`]).

pub mod batch;
pub mod call;
pub mod peer;
pub mod quic;
pub mod transport;
