//! The async client: connections to several nodes, failover, typed results.

use crate::handles::{CounterHandle, Handle, MapHandle, SetHandle};
use crate::proto::{
    decode_frame, encode_frame, BucketProps, CausalContext, ClusterStatus, DataOp, DataValue,
    ErrorReply, MemberStatus, ReadOptions, ReadReport, Request, Response, RingRange, Version,
    WriteOptions, DEFAULT_MAX_RESPONSE_BYTES, NODE_CERT_NAME, PROTOCOL_VERSION,
};
use crate::session::{Session, SessionConfig};
use crate::tls::{client_quic_config, TlsError, TlsMaterial};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::Mutex;

/// Default time a node's coordinator waits for a quorum (mirrors the node's
/// default `request_timeout_ms`). The client waits a little longer so that the
/// node's typed quorum error arrives before the client gives up.
///
/// ```
/// use kvorum_client::{Client, DEFAULT_REQUEST_TIMEOUT};
/// assert_eq!(DEFAULT_REQUEST_TIMEOUT, std::time::Duration::from_secs(5));
/// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
/// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
/// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
/// let seeds = ["127.0.0.1:7401".parse().unwrap()];
/// let builder = Client::builder(seeds, tls).request_timeout(DEFAULT_REQUEST_TIMEOUT * 2);
/// # let _ = builder;
/// # Ok::<(), kvorum_client::Error>(())
/// ```
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Default bound on establishing a connection to one node.
///
/// ```
/// use kvorum_client::{Client, DEFAULT_CONNECT_TIMEOUT};
/// assert_eq!(DEFAULT_CONNECT_TIMEOUT, std::time::Duration::from_secs(2));
/// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
/// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
/// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
/// let seeds = ["127.0.0.1:7401".parse().unwrap()];
/// let builder = Client::builder(seeds, tls).connect_timeout(DEFAULT_CONNECT_TIMEOUT / 4);
/// # let _ = builder;
/// # Ok::<(), kvorum_client::Error>(())
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Slack the client adds to a request's timeout before it stops waiting.
const CLIENT_SLACK: Duration = Duration::from_secs(2);

/// Errors of [`Client`] calls.
///
/// ```
/// use kvorum_client::{Client, Error, ErrorReply};
/// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
/// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
/// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
/// let err = Client::connect([], tls).unwrap_err();
/// assert_eq!(err.to_string(), "no seed addresses given");
/// let transient = matches!(&err,
///     Error::Server(ErrorReply::Quorum(_) | ErrorReply::Unavailable(_))
///         | Error::NoNodeAvailable(_) | Error::Timeout { .. });
/// assert!(!transient);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node refused or failed the request; nothing was acknowledged.
    #[error("node error: {0}")]
    Server(#[from] ErrorReply),
    /// No node could be reached; each entry says why for one address.
    #[error("no node reachable: {}", describe(.0))]
    NoNodeAvailable(Vec<(SocketAddr, String)>),
    /// The connection failed after a write was sent: it may or may not have
    /// been applied. Read the key to find out.
    #[error("connection to {addr} lost during a write (outcome unknown): {reason}")]
    OutcomeUnknown {
        /// The node.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The node did not answer in time.
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The node.
        addr: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
    /// The node's answer could not be decoded or was not the expected kind.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The local QUIC endpoint could not be created.
    #[error("cannot create the client endpoint: {0}")]
    Endpoint(std::io::Error),
    /// The client was built without seed addresses.
    #[error("no seed addresses given")]
    NoSeeds,
    /// A [`Session`] read found no node that could answer with the key's
    /// state at least as new as what the session wrote or read before,
    /// within the request timeout. Nothing older was returned; retrying
    /// later may succeed (the replica holding the session's version may be
    /// partitioned away or down).
    #[error("session read of {bucket:?} not served at the session's version within {after:?} ({attempts} attempts; last: {last})")]
    Stale {
        /// The bucket of the key.
        bucket: String,
        /// Requests sent (each to another node where possible).
        attempts: u32,
        /// How long the session tried.
        after: Duration,
        /// Why the last attempt failed.
        last: String,
    },
}

fn describe(v: &[(SocketAddr, String)]) -> String {
    v.iter()
        .map(|(a, why)| format!("{a}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A key's value(s) as a read saw them.
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// let v = client.get("users", b"alice").await?;
/// match v.siblings.len() {
///     0 => println!("not found"),
///     1 => println!("value: {:?}", v.siblings[0]),
///     n => println!("{n} concurrent values; resolve by writing with v.context"),
/// }
/// println!("{}", v.report); // e.g. "2 of 3 replicas answered (R=2), they agreed"
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The live values; empty when the key is not found, more than one when
    /// writes were concurrent.
    pub siblings: Vec<Vec<u8>>,
    /// Pass this to the next `put`/`delete` of the key.
    pub context: CausalContext,
    /// Version of the merged state the read answered with.
    pub version: Version,
    /// How many replicas were asked and answered, and whether they agreed.
    pub report: ReadReport,
}

impl Versioned {
    /// True when the key has at least one live value.
    ///
    /// ```
    /// # use kvorum_client::{Versioned, CausalContext};
    /// let v = Versioned { siblings: vec![], context: CausalContext::empty(),
    ///     version: Default::default(), report: Default::default() };
    /// assert!(!v.is_found());
    /// ```
    pub fn is_found(&self) -> bool {
        !self.siblings.is_empty()
    }

    /// The value when there is exactly one (no siblings).
    ///
    /// ```
    /// # use kvorum_client::{Versioned, CausalContext};
    /// let v = Versioned { siblings: vec![b"x".to_vec()], context: CausalContext::empty(),
    ///     version: Default::default(), report: Default::default() };
    /// assert_eq!(v.single(), Some(&b"x"[..]));
    /// ```
    pub fn single(&self) -> Option<&[u8]> {
        match self.siblings.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// Settings of a [`Client`]; start from [`Client::builder`].
///
/// ```no_run
/// # async fn f(tls: kvorum_client::TlsMaterial) -> Result<(), kvorum_client::Error> {
/// use std::time::Duration;
/// let client = kvorum_client::Client::builder(["127.0.0.1:7401".parse().unwrap()], tls)
///     .connect_timeout(Duration::from_secs(1))
///     .request_timeout(Duration::from_secs(3))
///     .build()?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    seeds: Vec<SocketAddr>,
    tls: TlsMaterial,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
}

impl ClientBuilder {
    /// Bound on establishing a connection to one node (default 2 s).
    ///
    /// ```no_run
    /// # fn f(b: kvorum_client::ClientBuilder) -> kvorum_client::ClientBuilder {
    /// b.connect_timeout(std::time::Duration::from_millis(500))
    /// # }
    /// ```
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Default quorum timeout sent with requests that do not set one
    /// (default 5 s, the node's default).
    ///
    /// ```no_run
    /// # fn f(b: kvorum_client::ClientBuilder) -> kvorum_client::ClientBuilder {
    /// b.request_timeout(std::time::Duration::from_secs(1))
    /// # }
    /// ```
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Largest answer the client accepts (default 72 MiB: 64 siblings of 1 MiB).
    ///
    /// ```no_run
    /// # fn f(b: kvorum_client::ClientBuilder) -> kvorum_client::ClientBuilder {
    /// b.max_response_bytes(1 << 20)
    /// # }
    /// ```
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }

    /// Creates the client. Connections are opened lazily, on first use, so
    /// building succeeds even while nodes are down.
    ///
    /// ```no_run
    /// # fn f(b: kvorum_client::ClientBuilder) -> Result<(), kvorum_client::Error> {
    /// let client = b.build()?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn build(self) -> Result<Client, Error> {
        if self.seeds.is_empty() {
            return Err(Error::NoSeeds);
        }
        let mut endpoint =
            quinn::Endpoint::client(bind_addr(&self.seeds)).map_err(Error::Endpoint)?;
        endpoint.set_default_client_config(client_quic_config(&self.tls)?);
        Ok(Client {
            inner: Arc::new(Inner {
                endpoint,
                nodes: self
                    .seeds
                    .into_iter()
                    .map(|addr| Slot {
                        addr,
                        conn: Mutex::new(SlotState::default()),
                    })
                    .collect(),
                next: AtomicUsize::new(0),
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                max_response_bytes: self.max_response_bytes,
            }),
        })
    }
}

/// The local address of a client's endpoint: loopback when every seed is a
/// loopback address (the client talks to its seeds only), else any address;
/// IPv6 when every seed is IPv6, else IPv4.
fn bind_addr(seeds: &[SocketAddr]) -> SocketAddr {
    let v6 = seeds.iter().all(|s| s.is_ipv6());
    let loopback = seeds.iter().all(|s| s.ip().is_loopback());
    let ip: IpAddr = match (v6, loopback) {
        (true, true) => Ipv6Addr::LOCALHOST.into(),
        (true, false) => Ipv6Addr::UNSPECIFIED.into(),
        (false, true) => Ipv4Addr::LOCALHOST.into(),
        (false, false) => Ipv4Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

/// A connection pool to a Kvorum cluster. Cheap to clone; share one per process.
///
/// Requests go to the nodes round-robin; a node that cannot be reached is
/// skipped and the request goes to the next one. Reads are retried on another
/// node after any connection failure; writes only when the failure happened
/// before the request was sent (otherwise [`Error::OutcomeUnknown`]).
///
/// ```no_run
/// # async fn f(tls: kvorum_client::TlsMaterial) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::{Client, CausalContext};
/// let client = Client::connect(["127.0.0.1:7401".parse().unwrap()], tls)?;
/// let ctx = client.put("users", b"alice", b"admin", &CausalContext::empty()).await?;
/// let read = client.get("users", b"alice").await?;
/// assert_eq!(read.single(), Some(&b"admin"[..]));
/// client.delete("users", b"alice", &read.context).await?;
/// # let _ = ctx; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: quinn::Endpoint,
    nodes: Vec<Slot>,
    next: AtomicUsize,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
}

#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    conn: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    conn: Option<quinn::Connection>,
    /// When and why connecting last failed.
    failed: Option<(tokio::time::Instant, String)>,
}

/// How one attempt at one node failed.
enum AttemptError {
    /// Nothing was sent: safe to try another node.
    NotSent(String),
    /// The request was sent, the answer did not come.
    Lost(String),
    Timeout(Duration),
    Protocol(String),
}

impl Client {
    /// A builder with the default timeouts.
    ///
    /// ```no_run
    /// # fn f(tls: kvorum_client::TlsMaterial) {
    /// let b = kvorum_client::Client::builder(["127.0.0.1:7401".parse().unwrap()], tls);
    /// # let _ = b; }
    /// ```
    pub fn builder(seeds: impl IntoIterator<Item = SocketAddr>, tls: TlsMaterial) -> ClientBuilder {
        ClientBuilder {
            seeds: seeds.into_iter().collect(),
            tls,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// A client with default settings (see [`Client::builder`]).
    ///
    /// ```no_run
    /// # fn f(tls: kvorum_client::TlsMaterial) -> Result<(), kvorum_client::Error> {
    /// let client = kvorum_client::Client::connect(["127.0.0.1:7401".parse().unwrap()], tls)?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn connect(
        seeds: impl IntoIterator<Item = SocketAddr>,
        tls: TlsMaterial,
    ) -> Result<Client, Error> {
        Self::builder(seeds, tls).build()
    }

    /// Reads a key with the bucket's default R.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let v = client.get("users", b"alice").await?;
    /// println!("{} sibling(s)", v.siblings.len());
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, bucket: &str, key: &[u8]) -> Result<Versioned, Error> {
        self.get_with(bucket, key, ReadOptions::default()).await
    }

    /// Reads a key with explicit R and timeout.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::ReadOptions;
    /// let v = client
    ///     .get_with("users", b"alice", ReadOptions::r(3).timeout_ms(500))
    ///     .await?;
    /// # let _ = v; Ok(()) }
    /// ```
    pub async fn get_with(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
    ) -> Result<Versioned, Error> {
        let options = ReadOptions {
            timeout_ms: Some(self.timeout_ms(options.timeout_ms)),
            ..options
        };
        self.get_at(bucket, key, options, None, Route::default())
            .await
    }

    /// A read of a register-like key that must reach `at_least`, sent as
    /// `route` says.
    pub(crate) async fn get_at(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
        at_least: Option<Version>,
        route: Route,
    ) -> Result<Versioned, Error> {
        let req = Request::Get {
            bucket: bucket.to_string(),
            key: key.to_vec(),
            options,
            at_least,
        };
        match self.call_at(&req, true, route).await? {
            Response::Value {
                siblings,
                context,
                version,
                report,
            } => Ok(Versioned {
                siblings,
                context,
                version,
                report,
            }),
            Response::NotFound {
                context,
                version,
                report,
            } => Ok(Versioned {
                siblings: Vec::new(),
                context,
                version,
                report,
            }),
            Response::Error(e) => Err(Error::Server(e)),
            other => Err(unexpected(&other)),
        }
    }

    /// Writes a value with the bucket's default W. `context` is the context of
    /// the read this value replaces ([`CausalContext::empty`] for none: the
    /// value then becomes a sibling of any existing value). Returns the
    /// context of the written value.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let read = client.get("users", b"alice").await?;
    /// let ctx = client.put("users", b"alice", b"v2", &read.context).await?;
    /// # let _ = ctx; Ok(()) }
    /// ```
    pub async fn put(
        &self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        context: &CausalContext,
    ) -> Result<CausalContext, Error> {
        self.put_with(bucket, key, value, context, WriteOptions::default())
            .await
    }

    /// Writes a value with explicit W and timeout.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{CausalContext, WriteOptions};
    /// client
    ///     .put_with("users", b"bob", b"x", &CausalContext::empty(),
    ///         WriteOptions::w(3))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_with(
        &self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        self.put_full(bucket, key, value, context, options)
            .await
            .map(|(context, _)| context)
    }

    /// [`Client::put_with`], returning the version of the write too.
    pub(crate) async fn put_full(
        &self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<(CausalContext, Version), Error> {
        let req = Request::Put {
            bucket: bucket.to_string(),
            key: key.to_vec(),
            value: value.to_vec(),
            context: context.clone(),
            options: WriteOptions {
                timeout_ms: Some(self.timeout_ms(options.timeout_ms)),
                ..options
            },
        };
        self.write(&req).await
    }

    /// Deletes the values a read returned (writes a tombstone) with the
    /// bucket's default W.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let read = client.get("users", b"alice").await?;
    /// client.delete("users", b"alice", &read.context).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(
        &self,
        bucket: &str,
        key: &[u8],
        context: &CausalContext,
    ) -> Result<CausalContext, Error> {
        self.delete_with(bucket, key, context, WriteOptions::default())
            .await
    }

    /// Deletes with explicit W and timeout.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::WriteOptions;
    /// let read = client.get("users", b"alice").await?;
    /// client.delete_with("users", b"alice", &read.context,
    ///     WriteOptions::w(1).timeout_ms(1000)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_with(
        &self,
        bucket: &str,
        key: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        self.delete_full(bucket, key, context, options)
            .await
            .map(|(context, _)| context)
    }

    /// [`Client::delete_with`], returning the version of the write too.
    pub(crate) async fn delete_full(
        &self,
        bucket: &str,
        key: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<(CausalContext, Version), Error> {
        let req = Request::Delete {
            bucket: bucket.to_string(),
            key: key.to_vec(),
            context: context.clone(),
            options: WriteOptions {
                timeout_ms: Some(self.timeout_ms(options.timeout_ms)),
                ..options
            },
        };
        self.write(&req).await
    }

    /// The cluster members as the answering node sees them: `(node id, members)`.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let (node, members) = client.status().await?;
    /// println!("{node} sees {} members", members.len());
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<(String, Vec<MemberStatus>), Error> {
        let s = self.cluster_status().await?;
        let members = s
            .members
            .into_iter()
            .filter(|m| m.state != "removed")
            .collect();
        Ok((s.node, members))
    }

    /// The answering node's whole view: members with their states (removed
    /// ones included), whether a topology change is in progress, who it
    /// waits for, and the node's incoming range streams.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let s = client.cluster_status().await?;
    /// for m in &s.members {
    ///     println!("{} {} {}", m.id, m.state, if m.reachable { "reachable" } else { "down" });
    /// }
    /// if s.in_transition {
    ///     println!("waiting for {:?}", s.waiting_for);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        match self.call(&Request::Status, true).await? {
            Response::Status(s) => Ok(s),
            Response::Error(e) => Err(Error::Server(e)),
            other => Err(unexpected(&other)),
        }
    }

    /// Decommissions node `node`: it streams its ranges to the nodes that
    /// take them over, then leaves. Only `node` itself accepts this (a client
    /// of several nodes tries them in turn until one answers, and every other
    /// node refuses), so build the client with that node's address. Returns
    /// once the node accepted; the transfer runs in the background (see
    /// [`Client::cluster_status`]). Refused ([`ErrorReply::Refused`]) when the
    /// remaining nodes could not hold N replicas.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// println!("{}", client.leave("n3").await?);
    /// # Ok(()) }
    /// ```
    pub async fn leave(&self, node: &str) -> Result<String, Error> {
        self.admin(&Request::Leave {
            node: node.to_string(),
        })
        .await
    }

    /// Removes a dead node: its ranges are re-replicated from the surviving
    /// replicas. Refused for a node that is up (use [`Client::leave`] on it),
    /// an unknown node, or the last node.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// println!("{}", client.remove_node("n4").await?);
    /// # Ok(()) }
    /// ```
    pub async fn remove_node(&self, node: &str) -> Result<String, Error> {
        self.admin(&Request::Remove {
            node: node.to_string(),
        })
        .await
    }

    /// Makes node `node`, which must be alone in its own cluster, join the
    /// cluster of the node at `seed`: it streams in the ranges it will own,
    /// then serves them. As for [`Client::leave`], only `node` accepts this.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// println!("{}", client.join("n4", "127.0.0.1:7401").await?);
    /// # Ok(()) }
    /// ```
    pub async fn join(&self, node: &str, seed: &str) -> Result<String, Error> {
        self.admin(&Request::Join {
            node: node.to_string(),
            seed: seed.to_string(),
        })
        .await
    }

    /// The ring's ranges and their `n` replicas (default: the default
    /// bucket's N); adjacent ranges with the same replicas come merged.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// for r in client.ring(None).await? {
    ///     println!("({:016x}, {:016x}] {}", r.start, r.end, r.owners.join(","));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ring(&self, n: Option<u8>) -> Result<Vec<RingRange>, Error> {
        match self.call(&Request::Ring { n }, true).await? {
            Response::Ring(r) => Ok(r),
            Response::Error(e) => Err(Error::Server(e)),
            other => Err(unexpected(&other)),
        }
    }

    async fn admin(&self, req: &Request) -> Result<String, Error> {
        match self.call(req, true).await? {
            Response::Accepted(m) => Ok(m),
            Response::Error(e) => Err(Error::Server(e)),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks the node to run an anti-entropy exchange with every peer now;
    /// returns (exchanges completed, keys repaired).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let (exchanges, keys) = client.repair().await?;
    /// println!("{exchanges} exchanges repaired {keys} keys");
    /// # Ok(()) }
    /// ```
    pub async fn repair(&self) -> Result<(u32, u64), Error> {
        match self.call(&Request::Repair, true).await? {
            Response::Repaired { exchanges, keys } => Ok((exchanges, keys)),
            Response::Error(e) => Err(Error::Server(e)),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a bucket on every member of the cluster. Idempotent: creating
    /// a bucket again with the same props succeeds; with other props it fails
    /// with [`ErrorReply::BucketConflict`] (a bucket's type is fixed for life).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{BucketProps, BucketType};
    /// client.create_bucket("carts", BucketProps::new(BucketType::Map)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_bucket(&self, name: &str, props: BucketProps) -> Result<(), Error> {
        let req = Request::CreateBucket {
            name: name.to_string(),
            props,
        };
        match self.call(&req, true).await? {
            Response::BucketCreated => Ok(()),
            Response::Error(e) => Err(Error::Server(e)),
            other => Err(unexpected(&other)),
        }
    }

    /// The buckets the answering node knows, sorted by name.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// for (name, props) in client.buckets().await? {
    ///     println!("{name}: {} N={}", props.bucket_type, props.n);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn buckets(&self) -> Result<Vec<(String, BucketProps)>, Error> {
        match self.call(&Request::ListBuckets, true).await? {
            Response::Buckets(b) => Ok(b),
            Response::Error(e) => Err(Error::Server(e)),
            other => Err(unexpected(&other)),
        }
    }

    /// A handle on a counter key (the bucket must be of type `counter`).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let visits = client.counter("stats", b"page:home");
    /// visits.increment(1).await?;
    /// println!("{}", visits.value().await?);
    /// # Ok(()) }
    /// ```
    pub fn counter(&self, bucket: &str, key: &[u8]) -> CounterHandle {
        CounterHandle(Handle::new(self, bucket, key))
    }

    /// A handle on a set key (the bucket must be of type `set`).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let tags = client.set("tags", b"post:1");
    /// tags.add(b"rust").await?;
    /// let read = tags.members().await?;
    /// tags.remove(b"rust", &read.context).await?;
    /// # Ok(()) }
    /// ```
    pub fn set(&self, bucket: &str, key: &[u8]) -> SetHandle {
        SetHandle(Handle::new(self, bucket, key))
    }

    /// A handle on a map key (the bucket must be of type `map`).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::MapUpdate;
    /// let cart = client.map("carts", b"alice");
    /// cart.update(MapUpdate::new().increment("apples", 2)).await?;
    /// # Ok(()) }
    /// ```
    pub fn map(&self, bucket: &str, key: &[u8]) -> MapHandle {
        MapHandle(Handle::new(self, bucket, key))
    }

    /// A session for this client (see [`Session`]), with the default
    /// bounds ([`SessionConfig::default`]).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{CausalContext, ReadOptions, WriteOptions};
    /// let session = client.session();
    /// session.put_with("users", b"alice", b"admin", &CausalContext::empty(), WriteOptions::w(1)).await?;
    /// // Even at R = 1 through another node: this write, or something newer.
    /// let read = session.get_with("users", b"alice", ReadOptions::r(1)).await?;
    /// assert!(read.is_found());
    /// # Ok(()) }
    /// ```
    pub fn session(&self) -> Session {
        Session::new(self, SessionConfig::default())
    }

    /// A session with explicit memory bounds.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// use kvorum_client::SessionConfig;
    /// let session = client.session_with(SessionConfig { max_keys: 100, ..SessionConfig::default() });
    /// # let _ = session; }
    /// ```
    pub fn session_with(&self, config: SessionConfig) -> Session {
        Session::new(self, config)
    }

    /// Reads a counter, set or map key (`value` is `None` when it has no
    /// state) that must reach `at_least`, sent as `route` says.
    pub(crate) async fn fetch(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
        at_least: Option<Version>,
        route: Route,
    ) -> Result<Fetched, Error> {
        let req = Request::Fetch {
            bucket: bucket.to_string(),
            key: key.to_vec(),
            options: ReadOptions {
                timeout_ms: Some(self.timeout_ms(options.timeout_ms)),
                ..options
            },
            at_least,
        };
        match self.call_at(&req, true, route).await? {
            Response::Data {
                value,
                context,
                version,
                report,
            } => Ok(Fetched {
                value: Some(value),
                context,
                version,
                report,
            }),
            Response::NotFound {
                context,
                version,
                report,
            } => Ok(Fetched {
                value: None,
                context,
                version,
                report,
            }),
            Response::Error(e) => Err(Error::Server(e)),
            other => Err(unexpected(&other)),
        }
    }

    /// Applies an update to a counter, set or map key; returns the context
    /// and the version of the write.
    pub(crate) async fn update(
        &self,
        bucket: &str,
        key: &[u8],
        op: DataOp,
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<(CausalContext, Version), Error> {
        let req = Request::Update {
            bucket: bucket.to_string(),
            key: key.to_vec(),
            op,
            context: context.clone(),
            options: WriteOptions {
                timeout_ms: Some(self.timeout_ms(options.timeout_ms)),
                ..options
            },
        };
        self.write(&req).await
    }

    /// Closes every connection; in-flight requests fail.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) {
    /// client.close().await;
    /// # }
    /// ```
    pub async fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"client closed");
        self.inner.endpoint.wait_idle().await;
    }

    /// The timeout a request sends: `asked`, else the client's default.
    pub(crate) fn timeout_ms(&self, asked: Option<u32>) -> u32 {
        asked.unwrap_or_else(|| {
            u32::try_from(self.inner.request_timeout.as_millis()).unwrap_or(u32::MAX)
        })
    }

    /// Sends a write; returns the context and the version of what it wrote.
    pub(crate) async fn write(&self, req: &Request) -> Result<(CausalContext, Version), Error> {
        match self.call(req, false).await? {
            Response::Written { context, version } => Ok((context, version)),
            Response::Error(e) => Err(Error::Server(e)),
            other => Err(unexpected(&other)),
        }
    }

    /// The next node in the round robin (an index to pass in a [`Route`]).
    pub(crate) fn next_node(&self) -> usize {
        self.inner.next.fetch_add(1, Ordering::Relaxed)
    }

    /// How many nodes the client knows.
    pub(crate) fn node_count(&self) -> usize {
        self.inner.nodes.len()
    }

    /// Sends `req` to the nodes in turn (round robin) until one answers.
    async fn call(&self, req: &Request, idempotent: bool) -> Result<Response, Error> {
        self.call_at(req, idempotent, Route::default()).await
    }

    /// Sends `req` to the nodes in turn, from the node `route` names, until
    /// one answers.
    async fn call_at(
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
            Request::CreateBucket { .. } => None,
            // A repair compares trees with every peer: allow it a minute.
            Request::Repair => Some(60_000),
        }
        .map(|ms| Duration::from_millis(ms.into()))
        .unwrap_or(self.inner.request_timeout)
            + route.slack.unwrap_or(CLIENT_SLACK);
        let n = self.inner.nodes.len();
        let start = route.start.unwrap_or_else(|| self.next_node());
        let mut failures = Vec::new();
        for i in 0..n {
            let slot = &self.inner.nodes[(start + i) % n];
            match self.attempt(slot, &frame, wait).await {
                Ok(resp) => return Ok(resp),
                Err(AttemptError::NotSent(why)) => failures.push((slot.addr, why)),
                Err(AttemptError::Lost(why)) if idempotent => failures.push((slot.addr, why)),
                Err(AttemptError::Lost(reason)) => {
                    return Err(Error::OutcomeUnknown {
                        addr: slot.addr,
                        reason,
                    })
                }
                Err(AttemptError::Timeout(after)) => {
                    // A node that did not answer in time may be dead or
                    // paused while its connection still looks open: forget
                    // the connection and skip the node for a moment, so the
                    // next requests go to the other nodes instead of each
                    // waiting out its timeout there.
                    self.forget(slot, format!("no answer within {after:?}"))
                        .await;
                    return Err(Error::Timeout {
                        addr: slot.addr,
                        after,
                    });
                }
                Err(AttemptError::Protocol(why)) => return Err(Error::Protocol(why)),
            }
        }
        Err(Error::NoNodeAvailable(failures))
    }

    async fn attempt(
        &self,
        slot: &Slot,
        frame: &[u8],
        wait: Duration,
    ) -> Result<Response, AttemptError> {
        let conn = self.connection(slot).await?;
        let result = tokio::time::timeout(wait, async {
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|e| AttemptError::NotSent(e.to_string()))?;
            send.write_all(frame)
                .await
                .map_err(|e| AttemptError::Lost(e.to_string()))?;
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
                    e => AttemptError::Lost(e.to_string()),
                })?;
            decode_frame::<Response>(PROTOCOL_VERSION, &bytes)
                .map_err(|e| AttemptError::Protocol(e.to_string()))
        })
        .await
        .unwrap_or(Err(AttemptError::Timeout(wait)));
        // TLS 1.3 lets the client finish its handshake first: a node that
        // refuses our certificate closes the connection only afterwards, with
        // a crypto error. It never read the request, so it was not sent.
        let result = match (result, conn.close_reason()) {
            (Err(AttemptError::NotSent(_) | AttemptError::Lost(_)), Some(e))
                if handshake_rejected(&e) =>
            {
                Err(AttemptError::NotSent(describe_connection_error(&e)))
            }
            (r, _) => r,
        };
        if matches!(
            result,
            Err(AttemptError::NotSent(_) | AttemptError::Lost(_))
        ) {
            // The connection is probably dead: forget it so the next request
            // to this node reconnects.
            let mut guard = slot.conn.lock().await;
            if guard
                .conn
                .as_ref()
                .is_some_and(|c| c.stable_id() == conn.stable_id())
            {
                guard.conn = None;
            }
        }
        result
    }

    /// Drops the node's cached connection (requests still in flight on it
    /// keep it until they end) and skips the node for `RECONNECT_BACKOFF`,
    /// as after a failed connect.
    async fn forget(&self, slot: &Slot, why: String) {
        let mut guard = slot.conn.lock().await;
        guard.conn = None;
        guard.failed = Some((tokio::time::Instant::now(), why));
    }

    async fn connection(&self, slot: &Slot) -> Result<quinn::Connection, AttemptError> {
        let mut guard = slot.conn.lock().await;
        if let Some(c) = guard.conn.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        // A node that just failed to connect is skipped at once, so requests
        // queued behind it fail over instead of each waiting a connect timeout.
        if let Some((at, why)) = &guard.failed {
            if at.elapsed() < RECONNECT_BACKOFF {
                return Err(AttemptError::NotSent(why.clone()));
            }
        }
        let attempt = async {
            let connecting = self
                .inner
                .endpoint
                .connect(slot.addr, NODE_CERT_NAME)
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(self.inner.connect_timeout, connecting).await {
                Err(_) => Err(format!(
                    "connect timed out after {:?}",
                    self.inner.connect_timeout
                )),
                Ok(Err(e)) => Err(describe_connection_error(&e)),
                Ok(Ok(c)) => Ok(c),
            }
        };
        match attempt.await {
            Ok(conn) => {
                *guard = SlotState {
                    conn: Some(conn.clone()),
                    failed: None,
                };
                Ok(conn)
            }
            Err(why) => {
                *guard = SlotState {
                    conn: None,
                    failed: Some((tokio::time::Instant::now(), why.clone())),
                };
                Err(AttemptError::NotSent(why))
            }
        }
    }
}

/// Where a request goes first, and how long past its timeout the client
/// waits for the node's answer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Route {
    /// Index of the first node to try (modulo the node count); `None`: the
    /// next in the round robin.
    pub(crate) start: Option<usize>,
    /// Slack past the request's timeout; `None`: the default (2 s).
    pub(crate) slack: Option<Duration>,
}

/// A typed read's answer in full.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub(crate) value: Option<DataValue>,
    pub(crate) context: CausalContext,
    pub(crate) version: Version,
    pub(crate) report: ReadReport,
}

/// After a failed connect, requests skip that node for this long.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// True when the node closed the connection with a TLS alert: it refused the
/// handshake (TLS 1.3 lets the client finish first), so it read nothing.
fn handshake_rejected(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ConnectionClosed(c)
        if (0x100..0x200).contains(&u64::from(c.error_code)))
}

fn describe_connection_error(e: &quinn::ConnectionError) -> String {
    if handshake_rejected(e) {
        format!("TLS handshake rejected by the node: {e}")
    } else {
        e.to_string()
    }
}

fn unexpected(r: &Response) -> Error {
    Error::Protocol(format!("unexpected answer: {r:?}"))
}

#[cfg(test)]
mod tests {
    use super::bind_addr;

    #[test]
    fn the_endpoint_binds_loopback_when_every_seed_is_loopback() {
        let a = |s: &str| s.parse().unwrap();
        assert_eq!(
            bind_addr(&[a("127.0.0.1:7401"), a("127.0.0.2:7402")]),
            a("127.0.0.1:0")
        );
        assert_eq!(bind_addr(&[a("[::1]:7401")]), a("[::1]:0"));
        assert_eq!(
            bind_addr(&[a("127.0.0.1:7401"), a("10.0.0.5:7401")]),
            a("0.0.0.0:0")
        );
        assert_eq!(bind_addr(&[a("[2001:db8::1]:7401")]), a("[::]:0"));
        // Mixed families: IPv4, as before.
        assert_eq!(
            bind_addr(&[a("[::1]:7401"), a("10.0.0.5:7401")]),
            a("0.0.0.0:0")
        );
    }
}
