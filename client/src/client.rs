//! The data-plane client, [`Client`], and the settings it is built from
//! ([`ClientBuilder`], which builds an [`Admin`](crate::Admin) the same way).

use crate::conn::Connections;
use crate::error::Error;
use crate::pool::Pool;
use crate::proto::{DEFAULT_MAX_RESPONSE_BYTES, NODE_CERT_NAME};
use crate::routing::{Router, PLACEMENT_REFRESH};
use crate::tls::{client_quic_config, TlsMaterial};
use std::{
    marker::PhantomData,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

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

/// The data-plane client of a Kvorum cluster: reads and writes, typed
/// handles and sessions (operator calls are on [`Admin`](crate::Admin)).
/// Cheap to clone; share one per process.
///
/// A request about a partition goes to one of its replicas first (the
/// client learns the cluster's placement from the nodes and follows its
/// changes: token-aware routing, see [`ClientBuilder::token_aware`]); other
/// requests go to the nodes round-robin. A node that cannot be reached is
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
    pub(crate) pool: Pool,
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
        ClientBuilder::new(seeds, tls)
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

    /// The cluster's placement as a node holds it now: the members and the
    /// replicas of every token range (what requests are routed by; the
    /// client's routing copy is replaced with it).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let placement = client.placement().await?;
    /// let replicas: Vec<_> = placement.owners_of("inbox", b"alice").map(|n| &n.id).collect();
    /// println!("inbox/alice lives on {replicas:?}");
    /// # Ok(()) }
    /// ```
    pub async fn placement(&self) -> Result<crate::proto::Placement, Error> {
        match self.pool.placement().await? {
            crate::proto::Response::Placement(p) => {
                p.check().map_err(|e| Error::Protocol(e.to_string()))?;
                Ok(*p)
            }
            other => Err(Error::of_answer(other)),
        }
    }

    /// Closes every connection; in-flight requests fail.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) {
    /// client.close().await;
    /// # }
    /// ```
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl FromPool for Client {
    fn from_pool(pool: Pool) -> Self {
        Self { pool }
    }
}

/// What a [`ClientBuilder`] builds: [`Client`] or [`Admin`](crate::Admin).
/// Sealed: the trait cannot be named outside this crate.
pub trait FromPool {
    /// Wraps the built pool.
    #[doc(hidden)]
    fn from_pool(pool: Pool) -> Self;
}

/// Settings of a [`Client`] or, as `ClientBuilder<Admin>`
/// ([`AdminBuilder`](crate::AdminBuilder)), of an [`Admin`](crate::Admin);
/// start from [`Client::builder`] or [`Admin::builder`](crate::Admin::builder).
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
pub struct ClientBuilder<T = Client> {
    seeds: Vec<SocketAddr>,
    tls: TlsMaterial,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
    token_aware: bool,
    placement_refresh: Duration,
    /// What [`ClientBuilder::build`] makes.
    built: PhantomData<fn() -> T>,
}

impl<T: FromPool> ClientBuilder<T> {
    /// A builder with the default timeouts (what [`Client::builder`] and
    /// [`Admin::builder`](crate::Admin::builder) return).
    ///
    /// ```no_run
    /// # fn f(tls: kvorum_client::TlsMaterial) {
    /// use kvorum_client::{Client, ClientBuilder};
    /// let b: ClientBuilder<Client> = ClientBuilder::new(["127.0.0.1:7401".parse().unwrap()], tls);
    /// # let _ = b; }
    /// ```
    pub fn new(seeds: impl IntoIterator<Item = SocketAddr>, tls: TlsMaterial) -> Self {
        Self {
            seeds: seeds.into_iter().collect(),
            tls,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            token_aware: true,
            placement_refresh: PLACEMENT_REFRESH,
            built: PhantomData,
        }
    }

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

    /// Whether requests about a partition go to one of its replicas first
    /// (token-aware routing, default on), or every request goes to the
    /// nodes round-robin. A node that is not a replica forwards a write to
    /// one that is, so routing saves that hop; it never changes an answer.
    ///
    /// ```no_run
    /// # fn f(b: kvorum_client::ClientBuilder) -> kvorum_client::ClientBuilder {
    /// b.token_aware(false)
    /// # }
    /// ```
    pub fn token_aware(mut self, on: bool) -> Self {
        self.token_aware = on;
        self
    }

    /// How often the client asks a node whether the placement it routes by
    /// changed (default [`PLACEMENT_REFRESH`], 5 s). It also asks after a
    /// replica it routed to failed.
    ///
    /// ```no_run
    /// # fn f(b: kvorum_client::ClientBuilder) -> kvorum_client::ClientBuilder {
    /// b.placement_refresh(std::time::Duration::from_secs(1))
    /// # }
    /// ```
    pub fn placement_refresh(mut self, every: Duration) -> Self {
        self.placement_refresh = every;
        self
    }

    /// Creates the client (or admin handle). Connections are opened lazily,
    /// on first use, so building succeeds even while nodes are down.
    ///
    /// ```no_run
    /// # fn f(b: kvorum_client::ClientBuilder) -> Result<(), kvorum_client::Error> {
    /// let client = b.build()?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn build(self) -> Result<T, Error> {
        if self.seeds.is_empty() {
            return Err(Error::NoSeeds);
        }
        let mut endpoint =
            quinn::Endpoint::client(bind_addr(&self.seeds)).map_err(Error::Endpoint)?;
        endpoint.set_default_client_config(client_quic_config(&self.tls)?);
        let conns = Connections::new(endpoint, NODE_CERT_NAME, self.connect_timeout);
        let router = Router::new(self.token_aware, self.placement_refresh, self.seeds.clone());
        Ok(T::from_pool(Pool::new(
            conns,
            self.seeds,
            self.request_timeout,
            self.max_response_bytes,
            router,
        )))
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
