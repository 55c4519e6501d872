//! A real node: a fjall engine in its data directory and QUIC with mutual
//! TLS, wired by [`crate::wiring::assemble`], served until shut down.

use crate::config::NodeConfig;
use crate::metrics::{self, Metrics};
use crate::net::identity::Caller;
use crate::net::reload::{ReloadError, Reloader};
use crate::net::{self, ServeLimits, SocketHooks};
use crate::rpc::quic::QuicTransport;
use crate::rpc::transport::Transport;
use crate::storage::{FjallEngine, Measured, StorageError};
use crate::util::NodeEnv;
use crate::wiring::{self, Node, Parts};
use kvorum_client::CertificateStatus;
use kvorum_client::{TlsError, TlsMaterial};
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The TLS files are missing or unusable.
    #[error("TLS material: {0}")]
    Tls(#[from] TlsError),
    /// The data directory could not be opened.
    #[error("storage in {dir}: {source}")]
    Storage {
        /// The data directory.
        dir: String,
        /// What failed.
        source: StorageError,
    },
    /// The endpoint could not be set up.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// The node's certificate is not a node certificate of this node.
    #[error("node certificate: {0}")]
    Certificate(#[from] ReloadError),
    /// The metrics endpoint could not bind its address.
    #[error("metrics endpoint: cannot bind {0}: {1} (set [metrics] listen, or enabled = false)")]
    Metrics(SocketAddr, std::io::Error),
}

/// A running node. Dropping it does not stop it: call
/// [`RunningNode::shutdown`]. What it shares with a simulated node is its
/// [`Node`] (which it dereferences to).
pub struct RunningNode {
    node: Node,
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    metrics_addr: Option<SocketAddr>,
    reloader: Arc<Reloader>,
    drain: net::Drain,
    drain_timeout: Duration,
}

/// What a graceful shutdown's drain did (see [`RunningNode::drain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Client requests in flight when the drain began.
    pub in_flight: usize,
    /// Client requests still in flight when it ended (past its bound).
    pub left: usize,
    /// Hints handed to their owners.
    pub hints_delivered: u64,
    /// How long it took.
    pub took: Duration,
}

impl std::ops::Deref for RunningNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl RunningNode {
    /// Reads the node's certificate, key and CA bundle again (as SIGHUP
    /// does): new connections use them; open ones are kept. On an error
    /// the node keeps what it had.
    pub fn reload_certificates(&self) -> Result<Caller, ReloadError> {
        self.reloader.reload()
    }

    /// Where `/metrics` is served (`None` if disabled).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The address the node serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address its socket is bound to (its port, when the config asked
    /// for port 0); `None` if the socket is gone.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Begins a graceful shutdown: `/ready` answers 503, new connections
    /// and new client requests are refused (a client sends them to another
    /// node: they were not read), the client requests in flight run to
    /// their answer, then the hints this node holds go to their owners
    /// that are up; all within the config's `drain_timeout`. Peer requests
    /// are still served meanwhile. Call [`RunningNode::shutdown`] next.
    pub async fn drain(&self) -> Drained {
        use std::sync::atomic::Ordering;
        let began = tokio::time::Instant::now();
        let deadline = began + self.drain_timeout;
        self.drain.draining.store(true, Ordering::SeqCst);
        let in_flight = self.drain.in_flight.load(Ordering::SeqCst);
        while self.drain.in_flight.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let left = self.drain.in_flight.load(Ordering::SeqCst);
        self.drain.complete.store(left == 0, Ordering::SeqCst);
        let hints_delivered = self
            .node
            .hand_off_hints(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await;
        Drained {
            in_flight,
            left,
            hints_delivered,
            took: began.elapsed(),
        }
    }

    /// Stops serving, closes connections (peers see them close at once) and
    /// waits for the node's tasks to end. Acknowledged writes are already on
    /// disk by the sync policy.
    pub async fn shutdown(self) {
        let RunningNode {
            mut node,
            endpoint,
            reloader,
            drain,
            ..
        } = self;
        node.stop_tasks().await;
        endpoint.close(drain.close_code().into(), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        // The reloader holds the endpoint; the node's handles hold the store.
        drop(reloader);
        node.close_storage().await;
    }
}

/// Starts a node: opens its storage, binds its endpoint, joins the cluster
/// through its seeds, and serves until [`RunningNode::shutdown`].
pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
    start_with_hooks(config, SocketHooks::default(), NodeEnv::real()).await
}

/// [`start`], with the node's UDP socket obeying injected `faults` (a
/// build with the `test-hooks` feature: the tests).
#[cfg(feature = "test-hooks")]
pub async fn start_with_faults(
    config: NodeConfig,
    faults: Option<Arc<crate::net::faults::Faults>>,
) -> Result<RunningNode, NodeError> {
    start_with_hooks(config, SocketHooks { faults }, NodeEnv::real()).await
}

/// [`start_with_faults`], with the node's wall clock `offset_ms` off the
/// system's (the clock-skew tests).
#[cfg(feature = "test-hooks")]
pub async fn start_with_clock_offset(
    config: NodeConfig,
    faults: Option<Arc<crate::net::faults::Faults>>,
    offset_ms: i64,
) -> Result<RunningNode, NodeError> {
    let env = NodeEnv {
        clock: Arc::new(crate::util::clock::SkewedClock { offset_ms }),
        ..NodeEnv::real()
    };
    start_with_hooks(config, SocketHooks { faults }, env).await
}

/// [`start`], with `hooks` on the node's UDP socket.
async fn start_with_hooks(
    config: NodeConfig,
    hooks: SocketHooks,
    env: NodeEnv,
) -> Result<RunningNode, NodeError> {
    let tls = TlsMaterial::from_files(&config.tls.ca, &config.tls.cert, &config.tls.key)?;
    // The node's certificate must be its own: a node certificate naming
    // this node's id (peers refuse one that claims another).
    let own_cert = net::reload::own_certificate(&tls, &config.id)?;
    let storage_err = |source| NodeError::Storage {
        dir: config.data_dir.display().to_string(),
        source,
    };
    let metrics_listener = match config.metrics_listen {
        Some(a) => Some(
            metrics::bind(a)
                .await
                .map_err(|e| NodeError::Metrics(a, e))?,
        ),
        None => None,
    };
    let metrics_addr =
        match &metrics_listener {
            Some(l) => Some(l.local_addr().map_err(|e| {
                NodeError::Metrics(config.metrics_listen.unwrap_or(config.listen), e)
            })?),
            None => None,
        };
    let engine = Arc::new(FjallEngine::open(&config.data_dir).map_err(storage_err)?);
    // The engine's calls are timed into the node's registry (one per node,
    // made here for the engine and kept by the node).
    let registry = Metrics::new(&config.id);
    let engine = Arc::new(Measured::new(engine, &registry));
    let endpoint = net::endpoint(config.listen, &tls, &hooks)?;
    let local = endpoint
        .local_addr()
        .map_err(|e| net::NetError::Bind(config.listen, e))?;
    let addr = config.advertise.unwrap_or(local);
    let made: Arc<Mutex<Option<Arc<QuicTransport>>>> = Arc::default();
    let transport: wiring::TransportMaker = {
        let (endpoint, made) = (endpoint.clone(), made.clone());
        let (connect, frame) = (config.peer_connect_timeout, config.limits.max_frame_bytes);
        let versions = config.peer_versions;
        let registry = registry.clone();
        Box::new(move |membership, gate| {
            let quic = Arc::new(QuicTransport::new(
                endpoint,
                membership.clone(),
                connect,
                frame,
                registry,
                versions,
            ));
            quic.set_gate(gate);
            *crate::util::LockExt::locked(&*made) = Some(quic.clone());
            quic as Arc<dyn Transport>
        })
    };
    let node = wiring::assemble_with_metrics(
        Parts {
            config: config.clone(),
            engine,
            addr,
            transport,
            env,
            certificate: CertificateStatus {
                node: config.id.clone(),
                serial: own_cert.serial.clone(),
                not_after: own_cert.not_after,
            },
        },
        registry,
    )
    .await
    .map_err(storage_err)?;
    let quic = crate::util::LockExt::locked(&*made)
        .take()
        .expect("assemble makes the transport");
    let reloader = {
        let (gate, quic) = (node.gate.clone(), quic.clone());
        Arc::new(Reloader::new(
            config.tls.clone(),
            config.id.clone(),
            endpoint.clone(),
            Box::new(move |cfg| quic.set_client_config(cfg)),
            Box::new(move |c: &Caller| {
                gate.set_own(CertificateStatus {
                    node: c.name_or_dash().to_string(),
                    serial: c.serial.clone(),
                    not_after: c.not_after,
                })
            }),
        ))
    };
    let _ = node.reloader.set(reloader.clone());
    let metrics = node.metrics.clone();
    metrics.on_scrape(metrics::collector::peer_connections(
        quic,
        node.membership.clone(),
    ));
    let mut node = node;
    let shutdown = node.shutdown.subscribe();
    let drain = net::Drain::default();
    node.tasks.spawn(net::serve(
        endpoint.clone(),
        node.handler.clone(),
        Arc::new(node.gate.clone()),
        ServeLimits {
            peer_versions: config.peer_versions,
            ..ServeLimits::of(&config.limits)
        },
        metrics.clone(),
        shutdown.clone(),
        drain.clone(),
    ));
    if let Some(l) = metrics_listener {
        let token = config.metrics_token.clone();
        let ready = {
            let (ready, draining) = (node.readiness(), drain.draining.clone());
            Arc::new(move || {
                if draining.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err("shutting down: draining its requests".to_string());
                }
                ready()
            }) as metrics::Readiness
        };
        node.tasks
            .spawn(metrics::serve(l, metrics.clone(), token, ready, shutdown));
    }
    Ok(RunningNode {
        node,
        addr,
        endpoint,
        metrics_addr,
        reloader,
        drain,
        drain_timeout: config.drain_timeout,
    })
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: how the binary's long-running
/// commands (`start`, `dev`, `bench`) know to stop.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
