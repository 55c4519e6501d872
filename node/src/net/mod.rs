//! QUIC endpoints and the serving loop: TLS 1.3 with mutual authentication,
//! ALPN routing of client and peer connections, one request per stream,
//! bounded frames. Knows nothing of quorums or storage: requests go to a
//! [`Handler`].

mod admission;
mod answer;
pub mod certs;
mod drain;
#[cfg(feature = "test-hooks")]
pub mod faults;
pub mod identity;
pub mod reload;

use crate::rpc::peer::{max_peer_frame_bytes, PeerError, PeerRequest, PeerResponse};
use crate::util::BoxFuture;
pub use admission::SOURCE_SHARE_DIVISOR;
use admission::{kib, read_frame, Budgets, Sources};
use answer::{client_answer, peer_answer};
pub use drain::Drain;
use drain::InFlight;
use identity::{Caller, Role};
use kvorum_client::proto::{
    encode_frame, ErrorReply, Limit, Request, Response, ALPN_CLIENT, ALPN_PEER, PROTOCOL_VERSION,
};
use kvorum_client::tls::{
    crypto_provider, quic_client_config, transport_config, TlsError, TlsMaterial,
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::sync::{watch, Semaphore};

/// Idle timeout of QUIC connections: a dead peer's connection is dropped after it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// QUIC application error code: a client certificate tried the peer ALPN.
pub const CLOSE_NOT_A_NODE: u32 = 0x10;
/// QUIC application error code: the node is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 0x11;

/// QUIC application error code: the certificate carries no role, or more
/// than one (see [`identity`]).
pub const CLOSE_NO_ROLE: u32 = 0x12;

/// What serves decoded requests.
pub trait Handler: Send + Sync + 'static {
    /// Serves a client request from `caller` (an admin or client
    /// certificate, or a node's).
    fn client<'a>(&'a self, caller: &'a Caller, req: Request) -> BoxFuture<'a, Response>;
    /// Serves a peer request from `caller` (always a node certificate).
    fn peer<'a>(&'a self, caller: &'a Caller, req: PeerRequest) -> BoxFuture<'a, PeerResponse>;
}

/// What the serving loop asks about each connection's caller: whether it
/// is admitted (not revoked), when it connects and again whenever
/// `changes` moves.
pub trait Gate: Send + Sync + 'static {
    /// Whether `caller` may hold a connection.
    fn admits(&self, caller: &Caller) -> bool;
    /// Moves whenever what `admits` answers may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// A gate that admits every verified caller (tools such as the bench's
/// echo server).
pub struct OpenGate(watch::Sender<u64>);

impl Default for OpenGate {
    fn default() -> Self {
        Self(watch::channel(0).0)
    }
}

impl Gate for OpenGate {
    fn admits(&self, _: &Caller) -> bool {
        true
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// QUIC application error code: the certificate is revoked.
pub const CLOSE_REVOKED: u32 = 0x14;

/// Limits the serving loop enforces.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Largest request frame.
    pub max_frame_bytes: usize,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Most concurrent client requests; as many again are kept for peer
    /// requests, so clients cannot starve replication.
    pub max_inflight_requests: usize,
    /// Bound on receiving one request frame, and on delivering its answer.
    pub read_timeout: Duration,
    /// Most connections (and handshakes) from one source address; a source
    /// may also hold at most 1/[`SOURCE_SHARE_DIVISOR`] of
    /// `max_inflight_request_bytes`.
    pub max_connections_per_source: usize,
    /// Most handshakes in progress at once.
    pub max_handshakes: usize,
    /// Bound on a handshake.
    pub handshake_timeout: Duration,
    /// Bytes of client request frames held at once, node-wide.
    pub max_inflight_request_bytes: usize,
    /// The peer protocol versions read (see `rpc::peer::version`).
    pub peer_versions: crate::rpc::peer::PeerVersions,
}

impl ServeLimits {
    /// The serving limits of a node's `[limits]`.
    pub fn of(l: &crate::replication::settings::Limits) -> Self {
        Self {
            max_frame_bytes: l.max_frame_bytes,
            max_connections: l.max_connections,
            max_inflight_requests: l.max_inflight_requests,
            read_timeout: l.request_read_timeout,
            max_connections_per_source: l.max_connections_per_source,
            max_handshakes: l.max_handshakes,
            handshake_timeout: l.handshake_timeout,
            max_inflight_request_bytes: l.max_inflight_request_bytes,
            peer_versions: crate::rpc::peer::PeerVersions::CURRENT,
        }
    }
}

/// Bytes one connection may have in flight to a node, unread, across all its
/// streams (QUIC's connection receive window). With at most
/// `max_connections_per_source` connections per source, one source can make
/// a node buffer at most that many times this.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 4 * 1024 * 1024;

/// QUIC application error code: the node holds its most connections.
pub const CLOSE_BUSY: u32 = 0x13;

/// The server side of a node's endpoint: requires a client certificate from
/// the cluster CA and offers both ALPNs.
pub fn server_config(tls: &TlsMaterial) -> Result<quinn::ServerConfig, TlsError> {
    let provider = crypto_provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(tls.root_store()?),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Ca(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.chain().to_vec(), tls.key())?;
    cfg.alpn_protocols = vec![ALPN_CLIENT.to_vec(), ALPN_PEER.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(cfg)
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = transport_config(IDLE_TIMEOUT);
    transport.receive_window(CONNECTION_RECEIVE_WINDOW.into());
    transport.stream_receive_window((CONNECTION_RECEIVE_WINDOW / 2).into());
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// Binds a node endpoint that serves on `listen` and dials peers with the
/// node certificate.
///
/// `hooks` may wrap the endpoint's UDP socket (tests only: see
/// [`SocketHooks`]).
pub fn endpoint(
    listen: SocketAddr,
    tls: &TlsMaterial,
    hooks: &SocketHooks,
) -> Result<quinn::Endpoint, NetError> {
    use quinn::Runtime;
    let bind = |e| NetError::Bind(listen, e);
    let runtime = Arc::new(quinn::TokioRuntime);
    let mut socket = runtime
        .wrap_udp_socket(std::net::UdpSocket::bind(listen).map_err(bind)?)
        .map_err(bind)?;
    socket = hooks.wrap(socket).map_err(bind)?;
    let mut ep = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(server_config(tls)?),
        socket,
        runtime,
    )
    .map_err(bind)?;
    ep.set_default_client_config(quic_client_config(tls, ALPN_PEER, IDLE_TIMEOUT)?);
    Ok(ep)
}

/// What tests may do to a node's UDP socket. In a build with the
/// `test-hooks` feature it can carry injected faults ([`faults::Faults`]);
/// otherwise it is empty and leaves the socket as it is, so a release
/// binary has no fault wiring.
#[derive(Clone, Default)]
pub struct SocketHooks {
    /// The faults the socket obeys.
    #[cfg(feature = "test-hooks")]
    pub faults: Option<Arc<faults::Faults>>,
}

impl SocketHooks {
    /// `socket`, wrapped so that it obeys the injected faults, if any.
    fn wrap(
        &self,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
    ) -> std::io::Result<Arc<dyn quinn::AsyncUdpSocket>> {
        #[cfg(feature = "test-hooks")]
        if let Some(f) = &self.faults {
            return f.wrap(socket);
        }
        Ok(socket)
    }
}

/// Why the network layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Why an incoming handshake failed, as a bounded metric label.
pub fn handshake_failure_reason(e: &quinn::ConnectionError) -> &'static str {
    match e {
        quinn::ConnectionError::TransportError(t) => match u64::from(t.code) {
            // TLS alerts: no_application_protocol
            0x178 => "wrong_alpn",
            // bad_certificate, unsupported_certificate, certificate_revoked,
            // certificate_expired, certificate_unknown, unknown_ca,
            // certificate_required
            0x12a..=0x12e | 0x130 | 0x174 => "untrusted_certificate",
            0x100..=0x1ff => "tls_other",
            _ => "protocol",
        },
        quinn::ConnectionError::TimedOut => "timeout",
        quinn::ConnectionError::ConnectionClosed(_)
        | quinn::ConnectionError::ApplicationClosed(_)
        | quinn::ConnectionError::Reset => "closed_by_peer",
        _ => "other",
    }
}

/// One open connection, counted (client or peer) while it lives.
struct Open(Arc<crate::metrics::Metrics>, bool);

impl Open {
    fn new(m: Arc<crate::metrics::Metrics>, peer: bool) -> Self {
        Self::count(&m, peer).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(m, peer)
    }

    fn count(m: &crate::metrics::Metrics, peer: bool) -> &std::sync::atomic::AtomicI64 {
        if peer {
            &m.open_peer_in
        } else {
            &m.open_client
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        Self::count(&self.0, self.1).fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Accepts connections until `shutdown` turns true, then closes the endpoint.
///
/// Admission, in order, so that no state is held for a source that has not
/// proven its address and no connection slot for a handshake:
/// 1. a source address QUIC has not validated gets a Retry (stateless: a
///    spoofed source never sees it, so it costs the node nothing);
/// 2. a source that holds `max_connections_per_source` connections (or
///    handshakes) is refused;
/// 3. a handshake needs one of `max_handshakes` slots and must finish
///    within `handshake_timeout`;
/// 4. only then does the connection take one of `max_connections` slots.
pub async fn serve(
    endpoint: quinn::Endpoint,
    handler: Arc<dyn Handler>,
    gate: Arc<dyn Gate>,
    limits: ServeLimits,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
    drain: Drain,
) {
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    let sources = Arc::new(Sources::new(
        limits.max_connections_per_source,
        kib(limits.max_inflight_request_bytes / SOURCE_SHARE_DIVISOR)
            .max(kib(limits.max_frame_bytes)),
        (limits.max_inflight_requests / SOURCE_SHARE_DIVISOR).max(1),
    ));
    let budgets = Budgets {
        client: Arc::new(Semaphore::new(limits.max_inflight_requests)),
        peer: Arc::new(Semaphore::new(limits.max_inflight_requests)),
        client_bytes: Arc::new(Semaphore::new(kib(limits.max_inflight_request_bytes))),
        source_bytes: None,
        source_slots: None,
    };
    let refused = |reason: &'static str| {
        metrics
            .counter(crate::metrics::CONNECTIONS_REFUSED, &[("reason", reason)])
            .increment(1);
    };
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.changed() => break,
        };
        let remote = incoming.remote_address();
        if drain.draining() {
            refused("draining");
            incoming.refuse();
            continue;
        }
        if !incoming.remote_address_validated() && incoming.may_retry() {
            // Costs one round trip per new connection; clients keep theirs.
            if incoming.retry().is_err() {
                refused("retry_failed");
            }
            continue;
        }
        let Some(source) = sources.take(remote.ip()) else {
            refused("per_source");
            tracing::debug!(%remote, "per-source connection limit reached; refusing");
            incoming.refuse();
            continue;
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            refused("handshakes");
            tracing::warn!(%remote, "handshake limit reached; refusing");
            incoming.refuse();
            continue;
        };
        let (handler, shutdown, gate) = (handler.clone(), shutdown.clone(), gate.clone());
        let (budgets, conns) = (budgets.clone(), conns.clone());
        let metrics = metrics.clone();
        let drain = drain.clone();
        tokio::spawn(async move {
            let (source_bytes, source_slots) = (source.2.clone(), source.3.clone());
            let _source = source;
            let shaken = tokio::time::timeout(limits.handshake_timeout, incoming).await;
            drop(handshake);
            let conn = match shaken {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    let reason = handshake_failure_reason(&e);
                    tracing::debug!(%remote, error = %e, reason, "handshake failed");
                    metrics
                        .counter(crate::metrics::HANDSHAKE_FAILURES, &[("reason", reason)])
                        .increment(1);
                    return;
                }
                Err(_) => {
                    // Dropping the connecting future abandons the handshake.
                    metrics
                        .counter(crate::metrics::HANDSHAKE_FAILURES, &[("reason", "timeout")])
                        .increment(1);
                    return;
                }
            };
            let Ok(_permit) = conns.try_acquire_owned() else {
                metrics
                    .counter(
                        crate::metrics::CONNECTIONS_REFUSED,
                        &[("reason", "max_connections")],
                    )
                    .increment(1);
                tracing::warn!(%remote, "connection limit reached; closing");
                conn.close(CLOSE_BUSY.into(), b"connection limit reached");
                return;
            };
            let budgets = Budgets {
                source_bytes: Some(source_bytes),
                source_slots: Some(source_slots),
                ..budgets
            };
            let to = (handler, gate);
            serve_connection(conn, to, limits, budgets, metrics, shutdown, drain).await;
        });
    }
    endpoint.close(drain.close_code().into(), b"node shutting down");
}

async fn serve_connection(
    conn: quinn::Connection,
    (handler, gate): (Arc<dyn Handler>, Arc<dyn Gate>),
    limits: ServeLimits,
    budgets: Budgets,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
    drain: Drain,
) {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    let caller = match identity::of_connection(&conn) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            metrics
                .counter(crate::metrics::HANDSHAKE_FAILURES, &[("reason", "no_role")])
                .increment(1);
            tracing::warn!(remote = %conn.remote_address(), error = %e, "certificate without one role; closing");
            conn.close(CLOSE_NO_ROLE.into(), e.to_string().as_bytes());
            return;
        }
    };
    let mut changes = gate.changes();
    let mut gate_live = true;
    if !gate.admits(&caller) {
        metrics
            .counter(crate::metrics::HANDSHAKE_FAILURES, &[("reason", "revoked")])
            .increment(1);
        tracing::warn!(remote = %conn.remote_address(), role = %caller.role, name = caller.name_or_dash(), serial = %caller.serial, "revoked certificate; closing");
        conn.close(CLOSE_REVOKED.into(), b"certificate revoked");
        return;
    }
    let peer = match alpn.as_deref() {
        Some(p) if p == ALPN_PEER => {
            if caller.role != Role::Node {
                metrics
                    .counter(
                        crate::metrics::HANDSHAKE_FAILURES,
                        &[("reason", "not_a_node")],
                    )
                    .increment(1);
                tracing::warn!(remote = %conn.remote_address(), "peer ALPN without a node certificate; closing");
                conn.close(
                    CLOSE_NOT_A_NODE.into(),
                    b"peer calls need a node certificate",
                );
                return;
            }
            true
        }
        _ => false,
    };
    let inflight = if peer {
        budgets.peer.clone()
    } else {
        budgets.client.clone()
    };
    // Peers are authenticated nodes; client frames are held against their
    // source's share and the node's budget.
    let bytes_budget = match (&budgets.source_bytes, peer) {
        (Some(source), false) => Some((source.clone(), budgets.client_bytes.clone())),
        _ => None,
    };
    let source_slots = if peer {
        None
    } else {
        budgets.source_slots.clone()
    };
    let kind = if peer { "peer" } else { "client" };
    let _open = Open::new(metrics.clone(), peer);
    let bytes = (
        metrics.counter(
            crate::metrics::NETWORK_BYTES,
            &[("direction", "received"), ("kind", kind)],
        ),
        metrics.counter(
            crate::metrics::NETWORK_BYTES,
            &[("direction", "sent"), ("kind", kind)],
        ),
    );
    let overloaded = metrics.counter(
        crate::metrics::REQUESTS,
        &[
            ("op", "unknown"),
            ("type", "none"),
            ("outcome", "overloaded"),
        ],
    );
    loop {
        // Biased: a revocation is seen before the next request is served.
        let (send, recv) = tokio::select! {
            biased;
            changed = changes.changed(), if gate_live => {
                // A gate that is gone never changes again.
                gate_live = changed.is_ok();
                if !gate.admits(&caller) {
                    tracing::warn!(remote = %conn.remote_address(), role = %caller.role, name = caller.name_or_dash(), "certificate revoked; closing its connection");
                    conn.close(CLOSE_REVOKED.into(), b"certificate revoked");
                    return;
                }
                continue;
            }
            _ = shutdown.changed() => {
                // Closed with the code that tells the client whether what
                // went unanswered was read (dropping the last handle would
                // close it with code 0).
                conn.close(drain.close_code().into(), b"node shutting down");
                return;
            }
            s = conn.accept_bi() => match s { Ok(s) => s, Err(_) => return },
        };
        // A request waits for a slot at most the read timeout: one that
        // waited longer is reset, so no request (a replica write, say) is
        // applied arbitrarily late (tombstone reaping relies on that bound).
        let (mut send, mut recv) = (send, recv);
        // Counted before the drain is looked at (both SeqCst): a drain that
        // begins after this request was counted waits for it, and one that
        // began before is seen here.
        let counted = (!peer).then(|| InFlight::new(&drain.in_flight));
        if counted.is_some() && drain.draining() {
            // Unread, so the client may send it to another node.
            let _ = recv.stop(kvorum_client::proto::STREAM_DRAINING.into());
            let _ = send.reset(kvorum_client::proto::STREAM_DRAINING.into());
            continue;
        }
        let admitted = async {
            // A client's source's share of the slots first, then the node's.
            let share = match &source_slots {
                Some(s) => Some(s.clone().acquire_owned().await?),
                None => None,
            };
            let node = inflight.clone().acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((share, node))
        };
        let permit = match tokio::time::timeout(limits.read_timeout, admitted).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return, // closed: shutting down
            Err(_) => {
                // Counted, not logged per request.
                overloaded.increment(1);
                tracing::debug!("request not admitted within the read timeout (overloaded); reset");
                let _ = recv.stop(0u32.into());
                let _ = send.reset(0u32.into());
                continue;
            }
        };
        let handler = handler.clone();
        let bytes = bytes.clone();
        let metrics = metrics.clone();
        let caller = caller.clone();
        let bytes_budget = bytes_budget.clone();
        let drain = drain.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _counted = counted;
            let to = Served {
                handler: &*handler,
                caller: &caller,
                peer,
                bytes_budget: bytes_budget.as_ref(),
            };
            let stream = serve_stream(send, recv, to, limits, bytes, &metrics);
            if let Err(e) = stream.await {
                tracing::debug!(error = %e, "stream failed");
                // A client request that may have been read and went
                // unanswered during a drain: the close may not say that
                // what went unanswered was not read.
                if !peer && drain.draining() {
                    drain.spoil();
                }
            }
        });
    }
}

/// Who serves a stream's request, and for whom.
#[derive(Clone, Copy)]
struct Served<'a> {
    handler: &'a dyn Handler,
    caller: &'a Caller,
    peer: bool,
    /// The budgets (the source's share, the node's) the frame's bytes are
    /// held against.
    bytes_budget: Option<&'a (Arc<Semaphore>, Arc<Semaphore>)>,
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    Served {
        handler,
        caller,
        peer,
        bytes_budget,
    }: Served<'_>,
    limits: ServeLimits,
    (received, sent): (metrics::Counter, metrics::Counter),
    m: &crate::metrics::Metrics,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let started = std::time::Instant::now();
    let max_frame = limits.max_frame_bytes;
    // Peers are authenticated nodes whose writes carry a key's whole state
    // (up to max_siblings values), so their frames may be larger.
    let max_frame = if peer {
        max_peer_frame_bytes(max_frame)
    } else {
        max_frame
    };
    // A sender that never finishes its frame must not hold a request slot.
    // The frame's bytes are held against the budget until the answer is
    // delivered.
    let mut held: admission::Held = (None, None);
    let reading = read_frame(&mut recv, max_frame, bytes_budget, &mut held);
    let Ok(read) = tokio::time::timeout(limits.read_timeout, reading).await else {
        let _ = recv.stop(0u32.into());
        let _ = send.reset(0u32.into());
        return Err("request frame not received in time".into());
    };
    if let Ok(bytes) = &read {
        received.increment(bytes.len() as u64);
    }
    let answer = match read {
        Ok(bytes) if peer => {
            // Answered in the request's version (an older node reads
            // nothing else).
            let (version, answer) =
                peer_answer(handler, caller, &bytes, limits.peer_versions).await;
            encode_frame(version, &answer)
        }
        Ok(bytes) => {
            let answer = client_answer(handler, caller, &bytes).await;
            if let Err(refused) = &answer {
                crate::metrics::record_request(m, "invalid", "none", refused, started.elapsed());
            }
            let answer = answer.unwrap_or_else(|refused| refused);
            encode_frame(PROTOCOL_VERSION, &answer)
        }
        Err(quinn::ReadToEndError::TooLong) => {
            // Stop the sender instead of draining an oversized frame.
            let _ = recv.stop(0u32.into());
            let e = ErrorReply::TooLarge {
                what: Limit::Frame,
                size: max_frame as u64 + 1,
                max: max_frame as u64,
            };
            if peer {
                let refused = PeerResponse::Error(PeerError::Malformed(e.to_string()));
                encode_frame(limits.peer_versions.max, &refused)
            } else {
                let refused = Response::Error(e);
                crate::metrics::record_request(m, "invalid", "none", &refused, started.elapsed());
                encode_frame(PROTOCOL_VERSION, &refused)
            }
        }
        Err(e) => return Err(e.into()),
    };
    // A receiver that does not take its answer must not hold the request
    // slot: the answer gets as long as the request frame had to arrive.
    let delivered = tokio::time::timeout(limits.read_timeout, async {
        send.write_all(&answer).await?;
        sent.increment(answer.len() as u64);
        send.finish()?;
        // Wait until the peer has the answer (or the stream is gone) so
        // dropping the stream does not cut it off.
        let _ = send.stopped().await;
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    })
    .await;
    match delivered {
        Ok(done) => done,
        Err(_) => {
            let _ = send.reset(0u32.into());
            Err("answer not taken in time".into())
        }
    }
}
