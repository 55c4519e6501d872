//! Typed calls: send a subsystem's request through a [`Transport`] and get
//! that subsystem's answer, or a [`CallError`] saying what went wrong.

use crate::rpc::peer::{Message, PeerError, PeerResponse};
use crate::rpc::transport::{Transport, TransportError};
use kvorum_ring::NodeId;
use std::{net::SocketAddr, time::Duration};

/// Why a typed call got no answer of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call did not complete (unreachable, lost, timed out, undecodable).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The peer answered with an error.
    #[error("{0}")]
    Peer(#[from] PeerError),
    /// The peer answered with another subsystem's answer.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl CallError {
    /// Whether the request was surely never acted on (never sent, or
    /// refused before it was applied): only then may it go to another node.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            CallError::Transport(TransportError::Unreachable(_) | TransportError::Refused(_))
        )
    }
}

/// Asks member `to` and waits for `msg`'s answer, at most `timeout`.
pub async fn ask<M: Message>(
    transport: &dyn Transport,
    to: &NodeId,
    msg: M,
    timeout: Duration,
) -> Result<M::Answer, CallError> {
    let resp = transport.call(to, msg.into(), timeout).await?;
    answer_of::<M>(resp)
}

/// Asks whatever node listens at `addr` (a seed whose id is not known yet).
pub async fn ask_addr<M: Message>(
    transport: &dyn Transport,
    addr: SocketAddr,
    msg: M,
    timeout: Duration,
) -> Result<M::Answer, CallError> {
    let resp = transport.call_addr(addr, msg.into(), timeout).await?;
    answer_of::<M>(resp)
}

/// `M`'s answer inside `resp`, or the peer's error.
pub fn answer_of<M: Message>(resp: PeerResponse) -> Result<M::Answer, CallError> {
    match M::answer(resp) {
        Ok(a) => Ok(a),
        Err(other) => match *other {
            PeerResponse::Error(e) => Err(CallError::Peer(e)),
            other => Err(CallError::Unexpected(format!("{other:?}"))),
        },
    }
}
