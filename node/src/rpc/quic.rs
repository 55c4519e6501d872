//! The QUIC [`Transport`]: one cached connection per peer, one stream per
//! request (or per batch of replica requests), mutual TLS with the node
//! certificate on ALPN `kvorum-peer/1`.

use crate::cluster::membership::Membership;
use crate::net::identity;
use crate::net::{Gate, CLOSE_REVOKED};
use crate::rpc::peer::{
    decode_peer_frame, downgrade, downgrade_body, max_peer_frame_bytes, PeerError, PeerRequest,
    PeerResponse, PeerVersions, ReplicaRequest, LEARNED_FOR, MAX_BATCH,
};
use crate::rpc::transport::{BoxFuture, Transport, TransportError};
use crate::util::LockExt;
use kvorum_client::conn::{ConnectError, Connections};
use kvorum_client::proto::{encode_frame, NODE_CERT_NAME};
use kvorum_ring::NodeId;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

/// How long a peer whose node certificate was found revoked is refused
/// without dialling it again (it may come back with a new certificate).
const REVOKED_RECHECK: Duration = Duration::from_secs(10);

/// The QUIC transport: one cached connection per peer address, one stream per
/// request, mutual TLS with the node certificate on ALPN `kvorum-peer/1`.
///
/// Replica requests ([`ReplicaRequest`]: reads, writes, hinted writes) to one peer
/// that are called while the runtime is busy share a stream: each call
/// queues its encoded request, and one task per peer sends what is queued
/// once the runnable tasks of the moment have run (`tokio::task::yield_now`),
/// as one `PeerRequest::Batch` when more than one is waiting. An idle node
/// sends a lone request at once; a busy one pays one stream per batch
/// instead of one per request (docs/bench-data/history.md, 2026-12-01 23:01 UTC).
pub struct QuicTransport {
    link: Arc<Link>,
    membership: Arc<Membership>,
}

/// What the calls of a [`QuicTransport`] share (also with its batch senders).
struct Link {
    /// The cached connections, with reconnect backoff (shared with the
    /// client crate).
    conns: Connections,
    /// Encoded requests waiting for their peer's batch sender; an entry
    /// exists exactly while a sender is scheduled for that peer.
    queued: Mutex<HashMap<SocketAddr, Vec<Queued>>>,
    max_frame_bytes: usize,
    metrics: Arc<crate::metrics::Metrics>,
    /// The peer protocol versions this node speaks.
    versions: PeerVersions,
    /// Peers found to speak an older version, and since when (see
    /// `rpc::peer::version`).
    older: Mutex<HashMap<SocketAddr, (u16, std::time::Instant)>>,
    /// The node's gate, once its access list is loaded, with a receiver of
    /// its revocation changes: nothing is sent to a peer whose node
    /// certificate is revoked.
    gate: OnceLock<(Arc<dyn Gate>, tokio::sync::watch::Receiver<u64>)>,
    /// Per peer address, the connection last checked against the gate.
    checked: Mutex<HashMap<SocketAddr, Checked>>,
}

/// The verdict on one connection's peer certificate, at one state of the
/// revocations.
struct Checked {
    /// The connection (held, so that no later connection can take its
    /// `stable_id`, an address).
    conn: quinn::Connection,
    /// The gate's revocation version it was checked at.
    version: u64,
    at: std::time::Instant,
    /// `None`: admitted; else why not.
    refused: Option<String>,
}

/// A request waiting to be sent in a batch.
struct Queued {
    body: Vec<u8>,
    /// A read (reads and writes go in separate batches: a batch is answered
    /// once its slowest request is, and a write waits for a sync).
    read: bool,
    deadline: tokio::time::Instant,
    answer: tokio::sync::oneshot::Sender<Result<PeerResponse, TransportError>>,
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
        versions: PeerVersions,
    ) -> Self {
        Self {
            link: Arc::new(Link {
                conns: Connections::new(endpoint, NODE_CERT_NAME, connect_timeout),
                queued: Mutex::new(HashMap::new()),
                max_frame_bytes,
                metrics,
                versions,
                older: Mutex::new(HashMap::new()),
                gate: OnceLock::new(),
                checked: Mutex::new(HashMap::new()),
            }),
            membership,
        }
    }

    /// Checks every peer's certificate against `gate` from now on: a peer
    /// whose node certificate is revoked gets nothing, and an open
    /// connection to it is closed before its next request (as the serving
    /// side does with the connections of a revoked caller). Set once.
    pub fn set_gate(&self, gate: Arc<dyn Gate>) {
        let changes = gate.changes();
        let _ = self.link.gate.set((gate, changes));
    }

    /// Dials peers with `config` from now on (certificates reloaded).
    pub fn set_client_config(&self, config: quinn::ClientConfig) {
        self.link.conns.set_client_config(config);
    }

    /// The open connections this node dialled, with their smoothed RTT.
    /// Connections busy being (re)established at this moment are skipped.
    pub fn open_connections(&self) -> Vec<(SocketAddr, Duration)> {
        self.link
            .conns
            .open()
            .into_iter()
            .map(|(addr, conn)| (addr, conn.rtt()))
            .collect()
    }

    /// The peer protocol version this node speaks to `addr` now.
    pub fn version_for(&self, addr: SocketAddr) -> u16 {
        self.link.speak(addr)
    }
}

impl Link {
    async fn dial(&self, addr: SocketAddr) -> Result<quinn::Connection, TransportError> {
        self.conns.get(addr).await.map_err(|e| match e {
            ConnectError::Backoff(_) => {
                TransportError::Unreachable(format!("{addr} unreachable moments ago"))
            }
            ConnectError::Timeout(_) => {
                TransportError::Unreachable(format!("connect to {addr} timed out"))
            }
            e => TransportError::Unreachable(e.to_string()),
        })
    }

    /// The connection to `addr`, once the gate admits the certificate the
    /// peer showed on it (see [`QuicTransport::set_gate`]).
    async fn connection(&self, addr: SocketAddr) -> Result<quinn::Connection, TransportError> {
        let Some((gate, changes)) = self.gate.get() else {
            return self.dial(addr).await;
        };
        let version = *changes.borrow();
        // A peer refused moments ago at these revocations is not dialled.
        if let Some(c) = self.checked.locked().get(&addr) {
            if let Some(why) = &c.refused {
                if c.version == version && c.at.elapsed() < REVOKED_RECHECK {
                    return Err(TransportError::Refused(why.clone()));
                }
            }
        }
        // Two connections at most: one opened before these revocations
        // shows the certificate it was opened with, which the peer may have
        // replaced since (a rotation, then the old serial revoked), so a
        // refusal of it is checked again on a new connection.
        for _ in 0..2 {
            let conn = self.dial(addr).await?;
            let opened_before = match self.checked.locked().get(&addr) {
                Some(c) if c.conn.stable_id() == conn.stable_id() => {
                    if c.version == version && c.refused.is_none() {
                        return Ok(conn);
                    }
                    true
                }
                _ => false,
            };
            let refused = match identity::of_connection(&conn) {
                Ok(peer) if gate.admits(&peer) => None,
                Ok(peer) => Some(format!(
                    "{addr}: its node certificate ({}, serial {}) is revoked; nothing is sent to it",
                    peer.name_or_dash(),
                    peer.serial
                )),
                Err(e) => Some(format!("{addr}: its certificate names no role: {e}")),
            };
            let Some(why) = refused else {
                self.checked.locked().insert(
                    addr,
                    Checked {
                        conn: conn.clone(),
                        version,
                        at: std::time::Instant::now(),
                        refused: None,
                    },
                );
                return Ok(conn);
            };
            conn.close(CLOSE_REVOKED.into(), b"certificate revoked");
            self.conns.discard(addr, &conn).await;
            if opened_before {
                self.checked.locked().remove(&addr);
                continue;
            }
            self.metrics
                .counter(
                    crate::metrics::HANDSHAKE_FAILURES,
                    &[("reason", "peer_revoked")],
                )
                .increment(1);
            tracing::warn!(%addr, reason = %why, "refusing a peer: closed the connection to it");
            self.checked.locked().insert(
                addr,
                Checked {
                    conn,
                    version,
                    at: std::time::Instant::now(),
                    refused: Some(why.clone()),
                },
            );
            return Err(TransportError::Refused(why));
        }
        Err(TransportError::Unreachable(format!(
            "{addr}: no connection whose certificate could be checked"
        )))
    }

    /// The version to speak to `addr`: the newest both speak, as far as
    /// this node knows.
    fn speak(&self, addr: SocketAddr) -> u16 {
        match self.older.locked().get(&addr) {
            Some((v, since)) if since.elapsed() < LEARNED_FOR && self.versions.speaks(*v) => *v,
            _ => self.versions.max,
        }
    }

    async fn exchange(
        &self,
        addr: SocketAddr,
        req: PeerRequest,
    ) -> Result<PeerResponse, TransportError> {
        // (Cloned only for an older peer.)
        let build = |v: u16| {
            if v >= PeerVersions::CURRENT.max {
                encode_frame(v, &req)
            } else {
                encode_frame(v, &downgrade(req.clone(), v))
            }
        };
        self.exchange_versioned(addr, &build).await
    }

    /// Sends the frame `build` makes for the version this node speaks to
    /// `addr`; if the answer comes in an older version (an older node that
    /// could not read the frame, and read nothing), remembers it and sends
    /// the frame of that version at once.
    async fn exchange_versioned(
        &self,
        addr: SocketAddr,
        build: &(dyn Fn(u16) -> Vec<u8> + Send + Sync),
    ) -> Result<PeerResponse, TransportError> {
        let sent = self.speak(addr);
        let (got, answer) = self.exchange_frame(addr, build(sent)).await?;
        if got >= sent || !self.versions.speaks(got) {
            return Ok(answer);
        }
        tracing::info!(%addr, version = got, "a peer speaks an older peer protocol: speaking it to that peer");
        self.older
            .locked()
            .insert(addr, (got, std::time::Instant::now()));
        let (_, answer) = self.exchange_frame(addr, build(got)).await?;
        Ok(answer)
    }

    async fn exchange_frame(
        &self,
        addr: SocketAddr,
        frame: Vec<u8>,
    ) -> Result<(u16, PeerResponse), TransportError> {
        let conn = self.connection(addr).await?;
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
            .read_to_end(max_peer_frame_bytes(self.max_frame_bytes))
            .await
            .map_err(|e| lost(&e))?;
        m.counter(
            crate::metrics::NETWORK_BYTES,
            &[("direction", "received"), ("kind", "peer")],
        )
        .increment(bytes.len() as u64);
        decode_peer_frame(self.versions, &bytes)
            .map_err(|e| TransportError::Protocol(e.to_string()))
    }

    /// Queues a request for `addr`'s batch sender (starting one if none is
    /// scheduled) and waits for its answer.
    async fn queue(
        self: &Arc<Self>,
        addr: SocketAddr,
        body: Vec<u8>,
        read: bool,
        timeout: Duration,
    ) -> Result<PeerResponse, TransportError> {
        let (answer, rx) = tokio::sync::oneshot::channel();
        let deadline = tokio::time::Instant::now() + timeout;
        let start_sender = {
            let mut queued = self.queued.locked();
            let waiting = queued.entry(addr).or_default();
            waiting.push(Queued {
                body,
                read,
                deadline,
                answer,
            });
            waiting.len() == 1
        };
        if start_sender {
            tokio::spawn(self.clone().send_queued(addr));
        }
        rx.await
            .unwrap_or_else(|_| Err(TransportError::Lost("the batch sender stopped".into())))
    }

    /// Sends the requests queued for `addr`: after the tasks runnable now have
    /// run (and queued theirs), in batches of at most [`MAX_BATCH`] requests
    /// and `max_frame_bytes`, reads apart from writes, each batch on its own
    /// stream, at once.
    async fn send_queued(self: Arc<Self>, addr: SocketAddr) {
        tokio::task::yield_now().await;
        let waiting = self.queued.locked().remove(&addr).unwrap_or_default();
        let (reads, writes): (Vec<Queued>, Vec<Queued>) = waiting.into_iter().partition(|q| q.read);
        if !reads.is_empty() && !writes.is_empty() {
            tokio::spawn(self.clone().send_all(addr, reads));
            self.send_all(addr, writes).await;
        } else {
            self.send_all(addr, if reads.is_empty() { writes } else { reads })
                .await;
        }
    }

    /// Sends `waiting` in batches of at most [`MAX_BATCH`] requests and
    /// `max_frame_bytes`.
    async fn send_all(self: Arc<Self>, addr: SocketAddr, waiting: Vec<Queued>) {
        let mut batch: Vec<Queued> = Vec::new();
        let mut bytes = 0;
        for q in waiting {
            if !batch.is_empty()
                && (batch.len() == MAX_BATCH || bytes + q.body.len() > self.max_frame_bytes)
            {
                tokio::spawn(self.clone().send_batch(addr, std::mem::take(&mut batch)));
                bytes = 0;
            }
            bytes += q.body.len();
            batch.push(q);
        }
        if !batch.is_empty() {
            self.send_batch(addr, batch).await;
        }
    }

    async fn send_batch(self: Arc<Self>, addr: SocketAddr, mut batch: Vec<Queued>) {
        let deadline = batch
            .iter()
            .map(|q| q.deadline)
            .max()
            .unwrap_or_else(tokio::time::Instant::now);
        if batch.len() == 1 {
            if let Some(q) = batch.pop() {
                self.send_alone(addr, q).await;
            }
            return;
        }
        let n = batch.len();
        self.metrics
            .counter(crate::metrics::PEER_BATCHES, &[])
            .increment(1);
        self.metrics
            .counter(crate::metrics::PEER_BATCHED_REQUESTS, &[])
            .increment(n as u64);
        // The bodies go into the request and come back out of it after the
        // frame is encoded: a request whose answer did not fit is sent again
        // alone.
        let bodies: Vec<Vec<u8>> = batch
            .iter_mut()
            .map(|q| std::mem::take(&mut q.body))
            .collect();
        let build = |v: u16| {
            let req = PeerRequest::Batch(
                bodies
                    .iter()
                    .map(|b| downgrade_body(b, v).into_owned())
                    .collect(),
            );
            encode_frame(v, &req)
        };
        let r = tokio::time::timeout_at(deadline, self.exchange_versioned(addr, &build))
            .await
            .unwrap_or(Err(TransportError::Timeout));
        for (q, body) in batch.iter_mut().zip(bodies) {
            q.body = body;
        }
        // Per request: its answer, or `None` to send it again alone (its
        // answer did not fit, or the whole batch was refused: a peer of an
        // older version cannot decode one).
        let answers: Vec<Option<Result<PeerResponse, TransportError>>> = match r {
            Ok(PeerResponse::Batch(rs)) if rs.len() == n => rs
                .iter()
                .map(|b| match postcard::from_bytes::<PeerResponse>(b) {
                    Ok(PeerResponse::Error(PeerError::AnswerTooLarge)) => None,
                    Ok(answer) => Some(Ok(answer)),
                    Err(e) => Some(Err(TransportError::Protocol(format!(
                        "a batch's answer: {e}"
                    )))),
                })
                .collect(),
            Ok(PeerResponse::Batch(rs)) => {
                let e = TransportError::Protocol(format!(
                    "{} answers to a batch of {n} requests",
                    rs.len()
                ));
                vec![Some(Err(e)); n]
            }
            Ok(PeerResponse::Error(_)) => vec![None; n],
            Ok(other) => {
                let e = TransportError::Protocol(format!("a batch answered with {other:?}"));
                vec![Some(Err(e)); n]
            }
            Err(e) => vec![Some(Err(e)); n],
        };
        for (q, answer) in batch.into_iter().zip(answers) {
            match answer {
                None => {
                    tokio::spawn(self.clone().send_alone(addr, q));
                }
                Some(answer) => {
                    let _ = q.answer.send(answer);
                }
            }
        }
    }

    /// Sends one queued request on a stream of its own.
    async fn send_alone(self: Arc<Self>, addr: SocketAddr, q: Queued) {
        let build = |v: u16| frame_of_body(&downgrade_body(&q.body, v), v);
        let r = tokio::time::timeout_at(q.deadline, self.exchange_versioned(addr, &build))
            .await
            .unwrap_or(Err(TransportError::Timeout));
        let _ = q.answer.send(r);
    }
}

/// postcard writes an enum's variant as its index (a varint):
/// [`PeerRequest::Replica`] is the first variant.
const REPLICA_TAG: u8 = 0;

/// The frame of one replica request from its encoded body (the envelope's
/// `version`, then `PeerRequest::Replica` of the body, as [`encode_frame`]
/// writes it).
fn frame_of_body(body: &[u8], version: u16) -> Vec<u8> {
    let mut frame = encode_frame(version, &());
    frame.push(REPLICA_TAG);
    frame.extend_from_slice(body);
    frame
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
            let r = match req {
                PeerRequest::Replica(req) => {
                    let read = matches!(req, ReplicaRequest::Read { .. });
                    let body = kvorum_client::bytes::encode(&req);
                    tokio::time::timeout(timeout, self.link.queue(addr, body, read, timeout)).await
                }
                req => tokio::time::timeout(timeout, self.link.exchange(addr, req)).await,
            }
            .unwrap_or(Err(TransportError::Timeout));
            if r.is_ok() {
                self.link
                    .metrics
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
            tokio::time::timeout(timeout, self.link.exchange(addr, req))
                .await
                .unwrap_or(Err(TransportError::Timeout))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_body_sent_alone_is_the_frame_of_its_replica_request() {
        let req = ReplicaRequest::Read { key: b"k".to_vec() };
        let body = kvorum_client::bytes::encode(&req);
        for v in [7, crate::rpc::peer::PEER_PROTOCOL_VERSION] {
            assert_eq!(
                frame_of_body(&body, v),
                encode_frame(v, &PeerRequest::Replica(req.clone()))
            );
        }
    }
}
