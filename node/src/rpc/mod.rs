//! How nodes call each other: the [`transport::Transport`] trait the
//! replication, membership and repair code reaches peers through, its QUIC
//! implementation, and the peer protocol's messages.

pub mod peer;
pub mod transport;
