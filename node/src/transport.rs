//! How the coordinator and gossip reach other nodes: the [`Transport`] trait,
//! and its real implementation over QUIC ([`QuicTransport`]).
//!
//! The trait is what lets the replication logic run without sockets (an
//! in-memory, fault-injecting transport in tests).

use crate::membership::Membership;
use crate::peer::{PeerRequest, PeerResponse, PEER_PROTOCOL_VERSION};
use kvorum_client::proto::{decode_frame, encode_frame, NODE_CERT_NAME};
use kvorum_ring::NodeId;
use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request was not sent: no address, or no connection could be made.
    #[error("unreachable: {0}")]
    Unreachable(String),
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

/// A peer's cached connection, and when connecting to it last failed.
#[derive(Default)]
struct Slot {
    conn: Option<quinn::Connection>,
    failed_at: Option<tokio::time::Instant>,
}

/// After a failed connect, calls to that peer fail at once for this long
/// instead of queueing behind fresh connect attempts.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// The QUIC transport: one cached connection per peer address, one stream per
/// request, mutual TLS with the node certificate on ALPN `kvorum-peer/1`.
pub struct QuicTransport {
    endpoint: quinn::Endpoint,
    membership: Arc<Membership>,
    conns: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Slot>>>>,
    connect_timeout: Duration,
    max_frame_bytes: usize,
    metrics: Arc<crate::metrics::Metrics>,
}

impl QuicTransport {
    /// A transport dialing from `endpoint` (whose default client config must
    /// be the peer configuration).
    pub fn new(
        endpoint: quinn::Endpoint,
        membership: Arc<Membership>,
        connect_timeout: Duration,
        max_frame_bytes: usize,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            endpoint,
            membership,
            conns: Mutex::new(HashMap::new()),
            connect_timeout,
            max_frame_bytes,
            metrics,
        }
    }

    /// The open connections this node dialled, with their smoothed RTT.
    /// Connections busy being (re)established at this moment are skipped.
    pub fn open_connections(&self) -> Vec<(SocketAddr, Duration)> {
        let slots: Vec<(SocketAddr, Arc<tokio::sync::Mutex<Slot>>)> = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(a, s)| (*a, s.clone()))
            .collect();
        slots
            .into_iter()
            .filter_map(|(addr, slot)| {
                let guard = slot.try_lock().ok()?;
                let conn = guard.conn.as_ref()?;
                conn.close_reason().is_none().then(|| (addr, conn.rtt()))
            })
            .collect()
    }

    async fn connection(&self, addr: SocketAddr) -> Result<quinn::Connection, TransportError> {
        let slot = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.entry(addr).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some(c) = guard.conn.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        if let Some(at) = guard.failed_at {
            if at.elapsed() < RECONNECT_BACKOFF {
                return Err(TransportError::Unreachable(format!(
                    "{addr} unreachable moments ago"
                )));
            }
        }
        let attempt = async {
            let connecting = self
                .endpoint
                .connect(addr, NODE_CERT_NAME)
                .map_err(|e| TransportError::Unreachable(e.to_string()))?;
            tokio::time::timeout(self.connect_timeout, connecting)
                .await
                .map_err(|_| TransportError::Unreachable(format!("connect to {addr} timed out")))?
                .map_err(|e| TransportError::Unreachable(e.to_string()))
        };
        match attempt.await {
            Ok(conn) => {
                *guard = Slot {
                    conn: Some(conn.clone()),
                    failed_at: None,
                };
                Ok(conn)
            }
            Err(e) => {
                *guard = Slot {
                    conn: None,
                    failed_at: Some(tokio::time::Instant::now()),
                };
                Err(e)
            }
        }
    }

    async fn exchange(
        &self,
        addr: SocketAddr,
        req: PeerRequest,
    ) -> Result<PeerResponse, TransportError> {
        let conn = self.connection(addr).await?;
        let frame = encode_frame(PEER_PROTOCOL_VERSION, &req);
        let not_sent = |e: &dyn std::fmt::Display| TransportError::Unreachable(e.to_string());
        let lost = |e: &dyn std::fmt::Display| TransportError::Lost(e.to_string());
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| not_sent(&e))?;
        let m = &self.metrics;
        m.counter(
            crate::metrics::NETWORK_BYTES,
            &[("direction", "sent"), ("kind", "peer")],
        )
        .increment(frame.len() as u64);
        send.write_all(&frame).await.map_err(|e| lost(&e))?;
        send.finish().map_err(|e| lost(&e))?;
        // Answers can hold a key's whole state: several siblings of max size.
        let bytes = recv
            .read_to_end(
                self.max_frame_bytes
                    .saturating_mul(crate::net::PEER_FRAME_FACTOR),
            )
            .await
            .map_err(|e| lost(&e))?;
        m.counter(
            crate::metrics::NETWORK_BYTES,
            &[("direction", "received"), ("kind", "peer")],
        )
        .increment(bytes.len() as u64);
        decode_frame(PEER_PROTOCOL_VERSION, &bytes)
            .map_err(|e| TransportError::Protocol(e.to_string()))
    }
}

impl Transport for QuicTransport {
    fn call(
        &self,
        to: &NodeId,
        req: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        let addr = self.membership.addr_of(to);
        let to = to.clone();
        Box::pin(async move {
            let addr = addr
                .ok_or_else(|| TransportError::Unreachable(format!("no address known for {to}")))?;
            let started = std::time::Instant::now();
            let r = tokio::time::timeout(timeout, self.exchange(addr, req))
                .await
                .unwrap_or(Err(TransportError::Timeout));
            if r.is_ok() {
                self.metrics
                    .histogram(
                        crate::metrics::PEER_REQUEST_DURATION,
                        &[("peer", to.as_str())],
                    )
                    .record(started.elapsed());
            }
            r
        })
    }

    fn call_addr(
        &self,
        addr: SocketAddr,
        req: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        Box::pin(async move {
            tokio::time::timeout(timeout, self.exchange(addr, req))
                .await
                .unwrap_or(Err(TransportError::Timeout))
        })
    }
}
