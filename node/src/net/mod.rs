//! QUIC endpoints and the serving loop: TLS 1.3 with mutual authentication,
//! ALPN routing of client and peer connections, one request per stream,
//! bounded frames. Knows nothing of quorums or storage: requests go to a
//! [`Handler`].

pub mod certs;
#[cfg(feature = "test-hooks")]
pub mod faults;

use crate::rpc::peer::{
    max_peer_frame_bytes, PeerError, PeerRequest, PeerResponse, PEER_PROTOCOL_VERSION,
};
use crate::util::BoxFuture;
use kvorum_client::proto::{
    decode_frame, encode_frame, ErrorReply, FrameError, Limit, Request, Response, ALPN_CLIENT,
    ALPN_PEER, NODE_CERT_NAME, PROTOCOL_VERSION,
};
use kvorum_client::tls::{
    crypto_provider, quic_client_config, transport_config, TlsError, TlsMaterial,
};
use rustls::pki_types::{CertificateDer, ServerName};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::sync::{watch, Semaphore};

/// Idle timeout of QUIC connections: a dead peer's connection is dropped after it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// QUIC application error code: a client certificate tried the peer ALPN.
pub const CLOSE_NOT_A_NODE: u32 = 0x10;
/// QUIC application error code: the node is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 0x11;

/// What serves decoded requests.
pub trait Handler: Send + Sync + 'static {
    /// Serves a client request.
    fn client(&self, req: Request) -> BoxFuture<'_, Response>;
    /// Serves a peer request.
    fn peer(&self, req: PeerRequest) -> BoxFuture<'_, PeerResponse>;
}

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
}

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
    server.transport_config(Arc::new(transport_config(IDLE_TIMEOUT)));
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

/// True when the connection's client certificate carries the node role.
fn is_node_certificate(conn: &quinn::Connection) -> bool {
    let Some(identity) = conn.peer_identity() else {
        return false;
    };
    let Ok(chain) = identity.downcast::<Vec<CertificateDer<'static>>>() else {
        return false;
    };
    let Some(leaf) = chain.first() else {
        return false;
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(NODE_CERT_NAME) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
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
pub async fn serve(
    endpoint: quinn::Endpoint,
    handler: Arc<dyn Handler>,
    limits: ServeLimits,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    let client_budget = Arc::new(Semaphore::new(limits.max_inflight_requests));
    let peer_budget = Arc::new(Semaphore::new(limits.max_inflight_requests));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            tracing::warn!(remote = %incoming.remote_address(), "connection limit reached; refusing");
            incoming.refuse();
            continue;
        };
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        let budgets = (client_budget.clone(), peer_budget.clone());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    let reason = handshake_failure_reason(&e);
                    tracing::debug!(%remote, error = %e, reason, "handshake failed");
                    metrics
                        .counter(crate::metrics::HANDSHAKE_FAILURES, &[("reason", reason)])
                        .increment(1);
                    return;
                }
            };
            serve_connection(conn, handler, limits, budgets, metrics, shutdown).await;
        });
    }
    endpoint.close(CLOSE_SHUTDOWN.into(), b"node shutting down");
}

async fn serve_connection(
    conn: quinn::Connection,
    handler: Arc<dyn Handler>,
    limits: ServeLimits,
    (client_budget, peer_budget): (Arc<Semaphore>, Arc<Semaphore>),
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    let peer = match alpn.as_deref() {
        Some(p) if p == ALPN_PEER => {
            if !is_node_certificate(&conn) {
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
    let inflight = if peer { peer_budget } else { client_budget };
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
        let (send, recv) = tokio::select! {
            s = conn.accept_bi() => match s { Ok(s) => s, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        // A request waits for a slot at most the read timeout: one that
        // waited longer is reset, so no request (a replica write, say) is
        // applied arbitrarily late (tombstone reaping relies on that bound).
        let (mut send, mut recv) = (send, recv);
        let permit =
            match tokio::time::timeout(limits.read_timeout, inflight.clone().acquire_owned()).await
            {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return, // closed: shutting down
                Err(_) => {
                    // Counted, not logged per request.
                    overloaded.increment(1);
                    tracing::debug!(
                        "request not admitted within the read timeout (overloaded); reset"
                    );
                    let _ = recv.stop(0u32.into());
                    let _ = send.reset(0u32.into());
                    continue;
                }
            };
        let handler = handler.clone();
        let bytes = bytes.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = serve_stream(send, recv, &*handler, peer, limits, bytes, &metrics);
            if let Err(e) = stream.await {
                tracing::debug!(error = %e, "stream failed");
            }
        });
    }
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    handler: &dyn Handler,
    peer: bool,
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
    let Ok(read) = tokio::time::timeout(limits.read_timeout, recv.read_to_end(max_frame)).await
    else {
        let _ = recv.stop(0u32.into());
        let _ = send.reset(0u32.into());
        return Err("request frame not received in time".into());
    };
    if let Ok(bytes) = &read {
        received.increment(bytes.len() as u64);
    }
    let answer = match read {
        Ok(bytes) if peer => {
            encode_frame(PEER_PROTOCOL_VERSION, &peer_answer(handler, &bytes).await)
        }
        Ok(bytes) => {
            let answer = client_answer(handler, &bytes).await;
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
                encode_frame(PEER_PROTOCOL_VERSION, &refused)
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

/// The handler's answer, or `Err` with the answer to a frame that could
/// not be decoded (which the handler never sees).
async fn client_answer(handler: &dyn Handler, bytes: &[u8]) -> Result<Response, Response> {
    match decode_frame::<Request>(PROTOCOL_VERSION, bytes) {
        Ok(req) => Ok(handler.client(req).await),
        Err(FrameError::UnsupportedVersion { got, supported }) => {
            Err(Response::Error(ErrorReply::UnsupportedVersion {
                got,
                supported,
            }))
        }
        Err(e) => Err(Response::Error(ErrorReply::BadRequest(e.to_string()))),
    }
}

async fn peer_answer(handler: &dyn Handler, bytes: &[u8]) -> PeerResponse {
    match decode_frame::<PeerRequest>(PEER_PROTOCOL_VERSION, bytes) {
        Ok(req) => handler.peer(req).await,
        Err(e) => PeerResponse::Error(PeerError::Malformed(e.to_string())),
    }
}
