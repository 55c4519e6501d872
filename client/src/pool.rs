//! The connection pool and failover that [`Client`](crate::Client) and
//! [`Admin`](crate::Admin) send their requests through.
//!
//! A request about a partition goes to a replica of it first (token-aware
//! routing, [`crate::routing`]); other requests, and every request until the
//! client knows the placement, go to the nodes round-robin. One request per
//! QUIC stream; a node that cannot be reached is skipped and the request
//! goes to the next one.
//! An idempotent request is retried on another node after any connection
//! failure; any other only when the failure came before the request was sent
//! (else [`Error::OutcomeUnknown`]).

use crate::conn::{closed_drained, handshake_rejected, ConnectError, Connections};
use crate::error::Error;
use crate::proto::{decode_frame, encode_frame, Request, Response, PROTOCOL_VERSION};
use crate::routing::Router;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::time::Instant;

/// Slack the client adds to an admin request's timeout before it stops
/// waiting (bucket creation and access changes go on to every member).
const CLIENT_SLACK: Duration = Duration::from_secs(2);

/// How long past a data request's timeout the client waits: time for the
/// node's own typed answer, which it sends when the timeout is up (a quorum
/// failure), to arrive. A call returns by its timeout plus this, whatever
/// is down or paused.
///
/// ```
/// assert_eq!(kvorum_client::DEADLINE_SLACK.as_millis(), 250);
/// ```
pub const DEADLINE_SLACK: Duration = Duration::from_millis(250);

/// An idempotent read not answered in this long is also sent to the next
/// node; the first answer wins.
///
/// ```
/// assert_eq!(kvorum_client::SPECULATIVE_DELAY.as_millis(), 100);
/// ```
pub const SPECULATIVE_DELAY: Duration = Duration::from_millis(100);

/// Whether a second node may be asked the same request while the first
/// is late: short reads (not watches, which wait on purpose, nor admin
/// requests).
fn is_speculable(req: &Request) -> bool {
    match req {
        Request::Get { .. } | Request::Fetch { .. } | Request::Range(_) => true,
        Request::ListPartitions { .. } | Request::Placement { .. } => true,
        Request::Item { op, .. } => !op.is_write(),
        Request::Batch(ops) => ops.iter().all(|(_, op)| !op.is_write()),
        _ => false,
    }
}

/// The nodes, their connections, and the round robin over them. Cheap to
/// clone (clones share everything).
///
/// `pub` only so that the sealed `FromPool` trait (reachable through
/// `ClientBuilder::build`'s bound) may name it; this module is private, so
/// nothing outside the crate can.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conns: Connections,
    /// The seeds, in the order given (the round robin's order).
    nodes: Vec<SocketAddr>,
    /// The placement requests about a partition are routed by.
    router: Router,
    next: AtomicUsize,
    request_timeout: Duration,
    max_response_bytes: usize,
}

/// Where a request goes first, and how long past its timeout the client
/// waits for the node's answer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Route {
    /// Index of the first node to try (modulo the node count); `None`: the
    /// next in the round robin.
    pub(crate) start: Option<usize>,
    /// Slack past the request's timeout; `None`: the default ([`DEADLINE_SLACK`]
    /// for data requests, 2 s for admin requests).
    pub(crate) slack: Option<Duration>,
}

/// How one attempt at one node failed.
enum AttemptError {
    /// Nothing was sent: safe to try another node.
    NotSent(String),
    /// The request was sent, the answer did not come.
    Lost(String),
    Timeout,
    Protocol(String),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::NotSent(why) | AttemptError::Lost(why) => f.write_str(why),
            AttemptError::Timeout => f.write_str("no answer by the deadline"),
            AttemptError::Protocol(why) => write!(f, "protocol: {why}"),
        }
    }
}

impl Pool {
    /// A pool over `nodes` (at least one), dialled through `conns`.
    pub(crate) fn new(
        conns: Connections,
        nodes: Vec<SocketAddr>,
        request_timeout: Duration,
        max_response_bytes: usize,
        router: Router,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                conns,
                nodes,
                router,
                next: AtomicUsize::new(0),
                request_timeout,
                max_response_bytes,
            }),
        }
    }

    /// Closes every connection; in-flight requests fail.
    pub(crate) async fn close(&self) {
        let endpoint = self.inner.conns.endpoint();
        endpoint.close(0u32.into(), b"client closed");
        endpoint.wait_idle().await;
    }

    /// The timeout a request sends: `asked`, else the pool's default.
    pub(crate) fn timeout_ms(&self, asked: Option<u32>) -> u32 {
        asked.unwrap_or_else(|| {
            u32::try_from(self.inner.request_timeout.as_millis()).unwrap_or(u32::MAX)
        })
    }

    /// The next node in the round robin (an index to pass in a [`Route`]).
    pub(crate) fn next_node(&self) -> usize {
        self.inner.next.fetch_add(1, Ordering::Relaxed)
    }

    /// How many nodes the pool knows.
    pub(crate) fn node_count(&self) -> usize {
        self.inner.nodes.len()
    }

    /// Sends `req` to the nodes in turn (round robin) until one answers.
    pub(crate) async fn call(&self, req: &Request, idempotent: bool) -> Result<Response, Error> {
        self.call_at(req, idempotent, Route::default()).await
    }

    /// Sends `req` to the nodes in turn, from the node `route` names, until
    /// one answers.
    pub(crate) async fn call_at(
        &self,
        req: &Request,
        idempotent: bool,
        route: Route,
    ) -> Result<Response, Error> {
        let frame = encode_frame(PROTOCOL_VERSION, req);
        let wait = match req {
            Request::Get { options, .. } => options.timeout_ms,
            Request::Put { options, .. } | Request::Delete { options, .. } => options.timeout_ms,
            Request::Fetch { options, .. } => options.timeout_ms,
            Request::Update { options, .. } => options.timeout_ms,
            Request::Status | Request::ListBuckets | Request::Ring { .. } => None,
            Request::Leave { .. } | Request::Remove { .. } | Request::Join { .. } => None,
            // Creation waits for every member (each with the request timeout).
            Request::CreateBucket { .. } | Request::DefineBucket { .. } => None,
            Request::ListBucketProps => None,
            // A repair compares trees with every peer: allow it a minute.
            Request::Repair => Some(60_000),
            // Access changes are sent to every member, as bucket creation.
            Request::Grant(_) | Request::Revoke(_) | Request::Access => None,
            Request::ReloadCertificates | Request::Quarantined | Request::Disk => None,
            // A backup page or a digest reads storage or every key's hash;
            // a restore batch waits for every owner.
            Request::Backup(_) | Request::Digest(_) => Some(60_000),
            Request::Restore { .. } => Some(60_000),
            Request::Item { op, .. } => op.timeout_ms(),
            // The operations run at once: the longest one's time.
            Request::Batch(ops) => ops.iter().filter_map(|(_, op)| op.timeout_ms()).max(),
            Request::Range(q) => q.options.timeout_ms,
            Request::ListPartitions { timeout_ms, .. } => *timeout_ms,
            // A page's read, then its deletes.
            Request::DeleteRange { query, options } => Some(
                query
                    .options
                    .timeout_ms
                    .unwrap_or(0)
                    .saturating_add(options.timeout_ms.unwrap_or(0)),
            )
            .filter(|ms| *ms > 0),
            Request::Watch { timeout_ms, .. } => Some(*timeout_ms),
            Request::Placement { .. } => None,
        }
        .map(|ms| Duration::from_millis(ms.into()))
        .unwrap_or(self.inner.request_timeout);
        // The caller's deadline: the request's timeout and a slack for the
        // node's own answer, whatever is down or paused (connect attempts
        // count against it). Admin requests that go on to every member
        // keep a longer slack.
        let slack = route.slack.unwrap_or(if req.is_admin() {
            CLIENT_SLACK
        } else {
            DEADLINE_SLACK
        });
        let began = Instant::now();
        let deadline = began + wait + slack;
        let speculate = idempotent && is_speculable(req);
        let routed = if route.start.is_none() {
            self.inner.router.replicas(req)
        } else {
            Vec::new()
        };
        self.refresh_placement(req);
        let order = self.order(&routed, route);
        let n = order.len();
        let node = |i: usize| order[i];
        let mut failures = Vec::new();
        let mut refused = None;
        let mut i = 0;
        while i < n {
            let addr = node(i);
            i += 1;
            let first = self.attempt(addr, &frame, deadline);
            tokio::pin!(first);
            let (addr, result) = if speculate && i < n {
                match tokio::time::timeout(SPECULATIVE_DELAY, &mut first).await {
                    Ok(r) => (addr, r),
                    Err(_) => {
                        // Late: the next node is asked too, and the first
                        // answer wins (Cassandra's speculative execution).
                        let other = node(i);
                        i += 1;
                        let second = self.attempt(other, &frame, deadline);
                        tokio::pin!(second);
                        tokio::select! {
                            r = &mut first => match r {
                                Ok(resp) => (addr, Ok(resp)),
                                Err(e) => {
                                    failures.push((addr, e.to_string()));
                                    (other, second.await)
                                }
                            },
                            r = &mut second => match r {
                                Ok(resp) => (other, Ok(resp)),
                                Err(e) => {
                                    failures.push((other, e.to_string()));
                                    (addr, first.await)
                                }
                            },
                        }
                    }
                }
            } else {
                (addr, first.await)
            };
            if result.is_err() && routed.contains(&addr) {
                // A replica the placement named failed: the placement may
                // be stale (or the node down); ask for it again.
                self.inner.router.stale();
            }
            match result {
                // Refused before anything was written: the next node may
                // take it (the last refusal is the answer if none does).
                Ok(Response::Error(e)) if e.is_overloaded() && i < n => {
                    failures.push((addr, e.to_string()));
                    refused = Some(Response::Error(e));
                }
                Ok(resp) => return Ok(resp),
                Err(AttemptError::NotSent(why)) => failures.push((addr, why)),
                Err(AttemptError::Lost(why)) if idempotent => failures.push((addr, why)),
                Err(AttemptError::Lost(reason)) => {
                    return Err(Error::OutcomeUnknown { addr, reason })
                }
                Err(AttemptError::Timeout) => {
                    let after = began.elapsed();
                    // A node that did not answer in time may be dead or
                    // paused while its connection still looks open: forget
                    // the connection and skip the node for a moment, so the
                    // next requests go to the other nodes instead of each
                    // waiting out its timeout there.
                    self.inner
                        .conns
                        .forget(addr, format!("no answer within {after:?}"))
                        .await;
                    return Err(Error::Timeout { addr, after });
                }
                Err(AttemptError::Protocol(why)) => return Err(Error::Protocol(why)),
            }
        }
        if let Some(refusal) = refused {
            return Ok(refusal);
        }
        Err(Error::NoNodeAvailable(failures))
    }

    /// The nodes a request tries, in order: the `routed` replicas of its
    /// partition, then the other nodes (the seeds and those the placement
    /// lists) from the round robin's next, or from the node `route` names.
    fn order(&self, routed: &[SocketAddr], route: Route) -> Vec<SocketAddr> {
        let seeds = &self.inner.nodes;
        if let Some(start) = route.start {
            // A session's attempt names a seed to start from.
            return (0..seeds.len())
                .map(|i| seeds[(start + i) % seeds.len()])
                .collect();
        }
        let all = self.inner.router.known();
        let start = self.next_node();
        let mut order = Vec::with_capacity(all.len() + routed.len());
        order.extend_from_slice(routed);
        // (At most N routed replicas to skip: linear in the nodes.)
        order.extend(
            (0..all.len())
                .map(|i| all[(start + i) % all.len()])
                .filter(|a| !routed.contains(a)),
        );
        order
    }

    /// Asks a node for the placement in the background if it is due
    /// (see [`Router::due`]).
    fn refresh_placement(&self, req: &Request) {
        let Some(ask) = self.inner.router.due(req) else {
            return;
        };
        let pool = self.clone();
        tokio::spawn(async move {
            if let Ok(answer) = pool.call(&ask, true).await {
                pool.inner.router.learned(answer);
            }
        });
    }

    /// The placement a node holds now (asked at once, not from the copy
    /// requests are routed by, which it then replaces).
    pub(crate) async fn placement(&self) -> Result<Response, Error> {
        let answer = self.call(&Request::Placement { known: None }, true).await?;
        self.inner.router.learned(answer.clone());
        Ok(answer)
    }

    async fn attempt(
        &self,
        addr: SocketAddr,
        frame: &[u8],
        deadline: Instant,
    ) -> Result<Response, AttemptError> {
        let conn = tokio::time::timeout_at(deadline, self.inner.conns.get(addr))
            .await
            .map_err(|_| AttemptError::Timeout)?
            .map_err(|e| AttemptError::NotSent(e.to_string()))?;
        let result = tokio::time::timeout_at(deadline, async {
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|e| AttemptError::NotSent(e.to_string()))?;
            // A draining node stops the stream unread: not sent.
            let draining = crate::proto::STREAM_DRAINING;
            let refused = || AttemptError::NotSent("the node is shutting down".into());
            // A node that closed the connection after a complete drain
            // answered every request it read: this one was not read.
            let drained = || AttemptError::NotSent("the node shut down (drained)".into());
            send.write_all(frame).await.map_err(|e| match e {
                quinn::WriteError::Stopped(code) if code.into_inner() == u64::from(draining) => {
                    refused()
                }
                quinn::WriteError::ConnectionLost(ref c) if closed_drained(c) => drained(),
                e => AttemptError::Lost(e.to_string()),
            })?;
            send.finish()
                .map_err(|e| AttemptError::Lost(e.to_string()))?;
            let bytes = recv
                .read_to_end(self.inner.max_response_bytes)
                .await
                .map_err(|e| match e {
                    quinn::ReadToEndError::TooLong => AttemptError::Protocol(format!(
                        "answer larger than max_response_bytes ({})",
                        self.inner.max_response_bytes
                    )),
                    quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))
                        if code.into_inner() == u64::from(draining) =>
                    {
                        refused()
                    }
                    quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(ref c))
                        if closed_drained(c) =>
                    {
                        drained()
                    }
                    e => AttemptError::Lost(e.to_string()),
                })?;
            decode_frame::<Response>(PROTOCOL_VERSION, &bytes)
                .map_err(|e| AttemptError::Protocol(e.to_string()))
        })
        .await
        .unwrap_or(Err(AttemptError::Timeout));
        // TLS 1.3 lets the client finish its handshake first: a node that
        // refuses our certificate closes the connection only afterwards, with
        // a crypto error. It never read the request, so it was not sent.
        let result = match (result, conn.close_reason()) {
            (Err(AttemptError::NotSent(_) | AttemptError::Lost(_)), Some(e))
                if handshake_rejected(&e) =>
            {
                Err(AttemptError::NotSent(ConnectError::from(e).to_string()))
            }
            (r, _) => r,
        };
        if matches!(
            result,
            Err(AttemptError::NotSent(_) | AttemptError::Lost(_))
        ) {
            // The connection is probably dead: forget it so the next request
            // to this node reconnects.
            self.inner.conns.discard(addr, &conn).await;
        }
        result
    }
}
