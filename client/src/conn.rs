//! A cache of QUIC connections, one per address, with reconnect backoff:
//! what the client's pool dials nodes with, and what a node's peer
//! transport can dial its peers with.
//!
//! A connection is made on first use and reused while it is open; a closed
//! one is replaced on the next [`Connections::get`]. After a failed connect
//! the address is skipped for [`RECONNECT_BACKOFF`]: calls fail at once with
//! [`ConnectError::Backoff`] instead of each queueing behind a connect that
//! will likely time out again.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

/// After a failed connect, calls to that address fail at once for this long
/// (the default of [`Connections::reconnect_backoff`]).
///
/// ```
/// assert_eq!(kvorum_client::conn::RECONNECT_BACKOFF.as_millis(), 500);
/// ```
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// Why [`Connections::get`] returned no connection. In every case nothing
/// was sent on a connection of the call.
///
/// ```
/// use kvorum_client::conn::ConnectError;
/// use std::time::Duration;
/// let e = ConnectError::Timeout(Duration::from_secs(2));
/// assert_eq!(e.to_string(), "connect timed out after 2s");
/// // During the backoff the last failure is repeated, tagged as such.
/// let skipped = ConnectError::Backoff(Box::new(e.clone()));
/// assert_eq!(skipped.to_string(), e.to_string());
/// assert_eq!(skipped.cause(), &e);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint would not start the connection (an invalid address or
    /// server name, no default client configuration, a closed endpoint).
    #[error("{0}")]
    Start(quinn::ConnectError),
    /// The handshake did not complete within the connect timeout.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// The peer refused the TLS handshake with an alert (it does not trust
    /// this side's certificate, or the ALPN).
    #[error("TLS handshake rejected by the node: {0}")]
    Rejected(quinn::ConnectionError),
    /// The connection failed during the handshake for another reason.
    #[error("{0}")]
    Failed(quinn::ConnectionError),
    /// The caller gave up on the address ([`Connections::forget`]), for
    /// this reason.
    #[error("{0}")]
    Forgotten(String),
    /// The address failed (or was forgotten) less than the backoff ago, so
    /// it was not tried again; holds that failure.
    #[error("{0}")]
    Backoff(Box<ConnectError>),
}

impl ConnectError {
    /// The failure itself: the one a [`ConnectError::Backoff`] repeats, else
    /// `self`.
    ///
    /// ```
    /// use kvorum_client::conn::ConnectError;
    /// let e = ConnectError::Forgotten("no answer within 5s".into());
    /// assert_eq!(ConnectError::Backoff(Box::new(e.clone())).cause(), &e);
    /// assert_eq!(e.cause(), &e);
    /// ```
    pub fn cause(&self) -> &ConnectError {
        match self {
            ConnectError::Backoff(e) => e.cause(),
            e => e,
        }
    }
}

impl From<quinn::ConnectionError> for ConnectError {
    /// [`ConnectError::Rejected`] for a TLS alert, else
    /// [`ConnectError::Failed`].
    fn from(e: quinn::ConnectionError) -> Self {
        if handshake_rejected(&e) {
            ConnectError::Rejected(e)
        } else {
            ConnectError::Failed(e)
        }
    }
}

/// True when the peer closed the connection with a TLS alert: it refused the
/// handshake (TLS 1.3 lets the client finish first), so it read nothing.
/// Whether the node closed the connection after a complete drain (see
/// [`crate::proto::CLOSE_DRAINED`]): a request unanswered on it was not read.
pub(crate) fn closed_drained(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ApplicationClosed(c)
        if u64::from(c.error_code) == u64::from(crate::proto::CLOSE_DRAINED))
}

pub(crate) fn handshake_rejected(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ConnectionClosed(c)
        if (0x100..0x200).contains(&u64::from(c.error_code)))
}

/// One QUIC connection per address, dialled from one endpoint with one
/// server name, reconnected when closed, with a connect timeout and a
/// reconnect backoff. Share it (`Arc`) between the tasks that dial.
///
/// The endpoint's default client configuration is what every connection
/// uses (see [`crate::tls::quic_client_config`]).
///
/// ```no_run
/// # async fn f(tls: kvorum_client::TlsMaterial) -> Result<(), Box<dyn std::error::Error>> {
/// use kvorum_client::{conn::Connections, proto::NODE_CERT_NAME, tls::client_quic_config};
/// use std::time::Duration;
/// let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse()?)?;
/// endpoint.set_default_client_config(client_quic_config(&tls)?);
/// let conns = Connections::new(endpoint, NODE_CERT_NAME, Duration::from_secs(2));
/// let addr = "127.0.0.1:7401".parse()?;
/// let conn = conns.get(addr).await?; // connects
/// let again = conns.get(addr).await?; // the same connection
/// assert_eq!(conn.stable_id(), again.stable_id());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Connections {
    endpoint: quinn::Endpoint,
    server_name: String,
    connect_timeout: Duration,
    backoff: Duration,
    /// One slot per address ever asked for; its lock is held while
    /// connecting, so calls to one address wait for one connect.
    slots: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Slot>>>>,
    /// Replaces the endpoint's default client configuration for new
    /// connections (certificates reloaded).
    config: Mutex<Option<quinn::ClientConfig>>,
}

/// An address's cached connection, and when and why connecting to it last
/// failed.
#[derive(Debug, Default)]
struct Slot {
    conn: Option<quinn::Connection>,
    failed: Option<(tokio::time::Instant, ConnectError)>,
}

impl Connections {
    /// A cache dialling from `endpoint` (whose default client configuration
    /// must be set), verifying peers as `server_name`, giving up on a
    /// connect after `connect_timeout`, with the default backoff
    /// ([`RECONNECT_BACKOFF`]).
    ///
    /// ```no_run
    /// # fn f(endpoint: quinn::Endpoint) {
    /// use kvorum_client::{conn::Connections, proto::NODE_CERT_NAME};
    /// let conns = Connections::new(endpoint, NODE_CERT_NAME, std::time::Duration::from_secs(2));
    /// # let _ = conns; }
    /// ```
    pub fn new(
        endpoint: quinn::Endpoint,
        server_name: impl Into<String>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            server_name: server_name.into(),
            connect_timeout,
            backoff: RECONNECT_BACKOFF,
            slots: Mutex::new(HashMap::new()),
            config: Mutex::new(None),
        }
    }

    /// Dials new connections with `config` from now on (a node whose
    /// certificates were reloaded); open connections are kept.
    ///
    /// ```no_run
    /// # fn f(conns: kvorum_client::conn::Connections, cfg: quinn::ClientConfig) {
    /// conns.set_client_config(cfg);
    /// # }
    /// ```
    pub fn set_client_config(&self, config: quinn::ClientConfig) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Some(config);
    }

    /// Sets how long an address that failed is skipped.
    ///
    /// ```no_run
    /// # fn f(conns: kvorum_client::conn::Connections) {
    /// let conns = conns.reconnect_backoff(std::time::Duration::from_millis(100));
    /// # let _ = conns; }
    /// ```
    pub fn reconnect_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The endpoint connections are dialled from (to close it, or to read
    /// its local address).
    ///
    /// ```no_run
    /// # async fn f(conns: kvorum_client::conn::Connections) {
    /// conns.endpoint().close(0u32.into(), b"bye");
    /// conns.endpoint().wait_idle().await;
    /// # }
    /// ```
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// The open connection to `addr`: the cached one, else a new one. Fails
    /// at once while `addr` is in its backoff. Calls for one address wait
    /// for each other's connect; calls for others do not.
    ///
    /// ```no_run
    /// # async fn f(conns: kvorum_client::conn::Connections) {
    /// use kvorum_client::conn::ConnectError;
    /// match conns.get("127.0.0.1:7401".parse().unwrap()).await {
    ///     Ok(conn) => println!("rtt {:?}", conn.rtt()),
    ///     Err(ConnectError::Backoff(last)) => println!("failed moments ago: {last}"),
    ///     Err(e) => println!("cannot connect: {e}"),
    /// }
    /// # }
    /// ```
    pub async fn get(&self, addr: SocketAddr) -> Result<quinn::Connection, ConnectError> {
        let slot = self.slot(addr);
        let mut guard = slot.lock().await;
        if let Some(c) = guard.conn.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        if let Some((at, why)) = &guard.failed {
            if at.elapsed() < self.backoff {
                return Err(ConnectError::Backoff(Box::new(why.clone())));
            }
        }
        match self.connect(addr).await {
            Ok(conn) => {
                *guard = Slot {
                    conn: Some(conn.clone()),
                    failed: None,
                };
                Ok(conn)
            }
            Err(e) => {
                *guard = Slot {
                    conn: None,
                    failed: Some((tokio::time::Instant::now(), e.clone())),
                };
                Err(e)
            }
        }
    }

    /// Drops `conn` from the cache if it is still `addr`'s connection (it
    /// failed a request), so that the next [`Connections::get`] reconnects.
    /// No backoff: the address may be fine. Requests in flight on `conn`
    /// keep it until they end.
    ///
    /// ```no_run
    /// # async fn f(conns: kvorum_client::conn::Connections) -> Result<(), kvorum_client::conn::ConnectError> {
    /// let addr = "127.0.0.1:7401".parse().unwrap();
    /// let conn = conns.get(addr).await?;
    /// if conn.open_bi().await.is_err() {
    ///     conns.discard(addr, &conn).await;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn discard(&self, addr: SocketAddr, conn: &quinn::Connection) {
        let slot = self.slot(addr);
        let mut guard = slot.lock().await;
        if guard
            .conn
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            guard.conn = None;
        }
    }

    /// Drops `addr`'s cached connection and skips the address for the
    /// backoff, as after a failed connect; calls meanwhile fail with
    /// [`ConnectError::Forgotten`]`(why)` (inside [`ConnectError::Backoff`]).
    /// For a peer that stopped answering while its connection looks open.
    ///
    /// ```no_run
    /// # async fn f(conns: kvorum_client::conn::Connections) {
    /// conns.forget("127.0.0.1:7401".parse().unwrap(), "no answer within 5s").await;
    /// # }
    /// ```
    pub async fn forget(&self, addr: SocketAddr, why: impl Into<String>) {
        let slot = self.slot(addr);
        let mut guard = slot.lock().await;
        guard.conn = None;
        guard.failed = Some((
            tokio::time::Instant::now(),
            ConnectError::Forgotten(why.into()),
        ));
    }

    /// The open cached connections. Addresses busy connecting at this
    /// moment are skipped (this never waits).
    ///
    /// ```no_run
    /// # fn f(conns: kvorum_client::conn::Connections) {
    /// for (addr, conn) in conns.open() {
    ///     println!("{addr}: rtt {:?}", conn.rtt());
    /// }
    /// # }
    /// ```
    pub fn open(&self) -> Vec<(SocketAddr, quinn::Connection)> {
        let slots: Vec<(SocketAddr, Arc<tokio::sync::Mutex<Slot>>)> = self
            .slots
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
                conn.close_reason().is_none().then(|| (addr, conn.clone()))
            })
            .collect()
    }

    fn slot(&self, addr: SocketAddr) -> Arc<tokio::sync::Mutex<Slot>> {
        // The map is only touched in these short sections, which cannot
        // panic halfway: a poisoned lock still holds a consistent map.
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(addr).or_default().clone()
    }

    async fn connect(&self, addr: SocketAddr) -> Result<quinn::Connection, ConnectError> {
        let config = self
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let connecting = match config {
            Some(c) => self.endpoint.connect_with(c, addr, &self.server_name),
            None => self.endpoint.connect(addr, &self.server_name),
        }
        .map_err(ConnectError::Start)?;
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => Err(ConnectError::Timeout(self.connect_timeout)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(c)) => Ok(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ALPN_CLIENT, NODE_CERT_NAME};
    use crate::tls::{client_quic_config, crypto_provider, TlsMaterial};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::net::{Ipv4Addr, UdpSocket};

    /// A node stand-in on loopback that accepts connections and holds
    /// them, and a cache dialling it with a certificate it trusts.
    fn server_and_cache(connect_timeout: Duration) -> (SocketAddr, Connections) {
        let ck = rcgen::generate_simple_self_signed(vec![NODE_CERT_NAME.to_string()]).unwrap();
        let cert = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let mut tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        tls.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let server = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(quic)),
            (Ipv4Addr::LOCALHOST, 0).into(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(incoming) = server.accept().await {
                if let Ok(conn) = incoming.await {
                    held.push(conn);
                }
            }
        });
        // The node's certificate is its own CA here; the client presents it
        // too (the stand-in asks for none).
        let pem = (ck.cert.pem(), ck.signing_key.serialize_pem());
        let material = TlsMaterial::from_pem(&pem.0, &pem.0, &pem.1).unwrap();
        let mut endpoint = quinn::Endpoint::client((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        endpoint.set_default_client_config(client_quic_config(&material).unwrap());
        (
            addr,
            Connections::new(endpoint, NODE_CERT_NAME, connect_timeout),
        )
    }

    #[tokio::test]
    async fn a_connection_is_reused_until_closed_or_discarded() {
        let (addr, conns) = server_and_cache(Duration::from_secs(5));
        let first = conns.get(addr).await.unwrap();
        assert_eq!(
            conns.get(addr).await.unwrap().stable_id(),
            first.stable_id()
        );
        assert_eq!(conns.open().len(), 1);

        first.close(0u32.into(), b"test");
        let second = conns.get(addr).await.unwrap();
        assert_ne!(
            second.stable_id(),
            first.stable_id(),
            "a closed one is replaced"
        );

        conns.discard(addr, &first).await; // no longer cached: changes nothing
        assert_eq!(
            conns.get(addr).await.unwrap().stable_id(),
            second.stable_id()
        );
        conns.discard(addr, &second).await;
        let third = conns.get(addr).await.unwrap();
        assert_ne!(
            third.stable_id(),
            second.stable_id(),
            "a discarded one is replaced"
        );
        assert!(third.close_reason().is_none());
    }

    #[tokio::test]
    async fn a_failed_connect_fails_fast_until_the_backoff_has_passed() {
        // A UDP socket that never answers: every handshake times out.
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = silent.local_addr().unwrap();
        let (_, conns) = server_and_cache(Duration::from_millis(100));
        let conns = conns.reconnect_backoff(Duration::from_millis(300));
        let timeout = ConnectError::Timeout(Duration::from_millis(100));
        assert_eq!(conns.get(addr).await.unwrap_err(), timeout);

        let started = tokio::time::Instant::now();
        let skipped = conns.get(addr).await.unwrap_err();
        assert_eq!(skipped, ConnectError::Backoff(Box::new(timeout.clone())));
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "no new connect"
        );

        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(conns.get(addr).await.unwrap_err(), timeout, "tried again");
    }

    #[tokio::test]
    async fn a_forgotten_address_is_skipped_with_the_reason_given() {
        let (addr, conns) = server_and_cache(Duration::from_secs(5));
        let conn = conns.get(addr).await.unwrap();
        conns.forget(addr, "no answer within 5s").await;
        let e = conns.get(addr).await.unwrap_err();
        assert_eq!(e.to_string(), "no answer within 5s");
        assert_eq!(
            e.cause(),
            &ConnectError::Forgotten("no answer within 5s".into())
        );
        assert!(conns.open().is_empty());
        assert!(conn.close_reason().is_none(), "in-flight users keep it");
    }
}
