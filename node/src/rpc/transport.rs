//! How the replication, membership and repair code reaches other nodes:
//! the [`Transport`] trait. Its real implementation is QUIC
//! ([`crate::rpc::quic::QuicTransport`]); the trait is what lets that logic
//! run without sockets (an in-memory, fault-injecting network in tests).

use crate::rpc::peer::{PeerRequest, PeerResponse};
pub use crate::util::BoxFuture;
use kvorum_ring::NodeId;
use std::{net::SocketAddr, time::Duration};

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request was not sent: no address, or no connection could be made.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The request was not sent: the peer's node certificate is revoked, so
    /// this node sends it nothing (docs/security.md, "Revocation").
    #[error("refused: {0}")]
    Refused(String),
    /// The request was sent but the connection failed before the answer: the
    /// peer may or may not have acted on it.
    #[error("connection lost: {0}")]
    Lost(String),
    /// No answer before the deadline.
    #[error("timed out")]
    Timeout,
    /// The peer answered something undecodable.
    #[error("bad answer: {0}")]
    Protocol(String),
}

/// Sends one request to one peer and waits for its answer.
pub trait Transport: Send + Sync + 'static {
    /// Calls the member `to`; gives up after `timeout`.
    fn call(
        &self,
        to: &NodeId,
        req: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>>;
    /// Calls whatever node listens at `addr` (seeds, whose ids are not known yet).
    fn call_addr(
        &self,
        addr: SocketAddr,
        req: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>>;
}
