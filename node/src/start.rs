//! Wiring: a node is started from its config and runs until shut down.

use crate::access;
use crate::access::contexts::ContextKeys;
use crate::access::gate::Gatekeeper;
use crate::access::list::Access;
use crate::cluster::admin::{Admin, AdminServices};
use crate::cluster::buckets::{self, Buckets};
use crate::cluster::liveness::Liveness;
use crate::cluster::member::{MemberInfo, MemberState};
use crate::cluster::membership::Membership;
use crate::cluster::meta::{self, MemberStore, Stored};
use crate::cluster::{gossip, pings};
use crate::config::NodeConfig;
use crate::data::register::Actor;
use crate::metrics::{self, Metrics};
use crate::net::identity::Caller;
use crate::net::reload::{ReloadError, Reloader};
use crate::net::{self, Handler, ServeLimits, SocketHooks};
use crate::repair::aae::Trees;
use crate::repair::exchange::AntiEntropy;
use crate::repair::hints::Hints;
use crate::repair::transfer::Transfers;
use crate::repair::{aae_loop, hint_delivery};
use crate::replication::coordinator::{Coordinator, Services};
use crate::replication::peer_router::{PeerRouter, RouterServices};
use crate::replication::quarantine::QuarantineHooks;
use crate::replication::replica::Replica;
use crate::rpc::peer::{PeerRequest, PeerResponse};
use crate::rpc::quic::QuicTransport;
use crate::rpc::transport::Transport;
use crate::storage::{Closed, FjallEngine, Measured, StorageError, Store, SyncPolicy};
use crate::util::BoxFuture;
use kvorum_client::proto::{Request, Response};
use kvorum_client::CertificateStatus;
use kvorum_client::{TlsError, TlsMaterial};
use kvorum_ring::NodeId;
use kvorum_ring::Ring;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinSet};

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

/// A running node. Dropping it does not stop it: call [`RunningNode::shutdown`].
// `liveness` is read only by the test accessors.
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub struct RunningNode {
    id: NodeId,
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    membership: Arc<Membership>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    store_closed: Closed,
    liveness: Arc<Liveness>,
    hints: Hints,
    anti_entropy: Arc<AntiEntropy>,
    metrics: Arc<Metrics>,
    metrics_addr: Option<SocketAddr>,
    store: Store,
    reloader: Arc<Reloader>,
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

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Resolves if the node's storage failed a commit: the node then takes
    /// no more writes, and should be shut down and restarted.
    pub async fn storage_failed(&self) {
        self.store.failed().await
    }

    /// The address the node serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Members this node knows.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.membership.members()
    }

    /// Stops serving, closes connections (peers see them close at once) and
    /// waits for the node's tasks to end. Acknowledged writes are already on
    /// disk by the sync policy.
    pub async fn shutdown(self) {
        let RunningNode {
            id,
            endpoint,
            shutdown,
            mut tasks,
            store_closed,
            hints,
            anti_entropy,
            metrics,
            store,
            reloader,
            ..
        } = self;
        metrics.clear_collectors();
        drop(metrics);
        let _ = shutdown.send(true);
        while tasks.join_next().await.is_some() {}
        endpoint.close(net::CLOSE_SHUTDOWN.into(), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        // This handle holds the store too; release it before waiting for the
        // store to close.
        drop(hints);
        drop(anti_entropy);
        drop(reloader);
        drop(store);
        // Requests still in flight finish within their deadlines; then the
        // last store handle drops and the database closes, so the data
        // directory can be opened again (a restart in the same process).
        if !store_closed.wait(Duration::from_secs(30)).await {
            tracing::warn!(node = %id, "storage did not close within 30 s");
        }
    }
}

/// Test accessors: what the integration tests read of a running node
/// (a build with the `test-hooks` feature).
#[cfg(feature = "test-hooks")]
impl RunningNode {
    /// The storage keys this node holds data for (tombstones included), in
    /// key order: what it replicates.
    pub fn data_keys(&self) -> Result<Vec<Vec<u8>>, StorageError> {
        Ok(self
            .store
            .scan_after(crate::storage::Space::Data, None, usize::MAX)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Gossip rounds this node started.
    pub fn gossip_rounds(&self) -> u64 {
        self.membership.rounds()
    }

    /// The node's view of the member list (tombstones included).
    pub fn view(&self) -> crate::cluster::membership::View {
        self.membership.view()
    }

    /// The node's metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Keys anti-entropy exchanges started by this node merged, since start.
    pub fn aae_keys_repaired(&self) -> u64 {
        self.anti_entropy
            .stats()
            .keys_repaired
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hints this node holds for other replicas.
    pub fn hints_pending(&self) -> u64 {
        self.hints
            .stats()
            .pending
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hints dropped by a bound or for a removed node since start.
    pub fn hints_dropped(&self) -> u64 {
        self.hints
            .stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this node's failure detector sees `peer` as up.
    pub fn sees_up(&self, peer: &NodeId) -> bool {
        self.liveness.is_up(peer)
    }
}

/// The node's entry for decoded requests: client data requests go to the
/// coordinator, admin requests to the admin service, peer requests to the
/// router.
struct NodeHandler {
    coordinator: Arc<Coordinator>,
    admin: Admin,
    router: PeerRouter,
    access: Access,
    metrics: Arc<Metrics>,
}

impl Handler for NodeHandler {
    fn client<'a>(&'a self, caller: &'a Caller, req: Request) -> BoxFuture<'a, Response> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let (op, bucket) = metrics::request_op(&req);
            let bucket_type = bucket.map_or("none", |b| self.coordinator.bucket_type_label(b));
            let resp = if let Err(refused) = access::authorize(caller, &req, &self.access) {
                self.metrics
                    .counter(
                        metrics::FORBIDDEN,
                        &[("op", op), ("role", caller.role.as_str())],
                    )
                    .increment(1);
                Response::Error(refused)
            } else if req.is_admin() {
                self.admin.handle(req).await
            } else {
                self.coordinator.handle(req, false).await
            };
            metrics::record_request(&self.metrics, op, bucket_type, &resp, started.elapsed());
            resp
        })
    }
    fn peer<'a>(&'a self, caller: &'a Caller, req: PeerRequest) -> BoxFuture<'a, PeerResponse> {
        Box::pin(self.router.serve(caller, req))
    }
}

/// Starts a node: opens its storage, binds its endpoint, joins the cluster
/// through its seeds, and serves until [`RunningNode::shutdown`].
pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
    start_with_hooks(config, SocketHooks::default()).await
}

/// [`start`], with the node's UDP socket obeying injected `faults` (a
/// build with the `test-hooks` feature: the tests).
#[cfg(feature = "test-hooks")]
pub async fn start_with_faults(
    config: NodeConfig,
    faults: Option<Arc<crate::net::faults::Faults>>,
) -> Result<RunningNode, NodeError> {
    start_with_hooks(config, SocketHooks { faults }).await
}

/// [`start`], with `hooks` on the node's UDP socket.
async fn start_with_hooks(
    config: NodeConfig,
    hooks: SocketHooks,
) -> Result<RunningNode, NodeError> {
    let tls = TlsMaterial::from_files(&config.tls.ca, &config.tls.cert, &config.tls.key)?;
    // The node's certificate must be its own: a node certificate naming
    // this node's id (peers refuse one that claims another).
    let own_cert = net::reload::own_certificate(&tls, &config.id)?;
    let storage_err = |source| NodeError::Storage {
        dir: config.data_dir.display().to_string(),
        source,
    };
    let metrics = Metrics::new(&config.id);
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
    let engine = Arc::new(Measured::new(engine, &metrics));
    let (store, store_closed) = Store::start(engine, config.sync);
    let store_handle = store.clone();
    let Stored {
        epoch,
        members: known,
        fresh,
        upgraded,
    } = meta::load(&store, &config.id).map_err(storage_err)?;
    // A crash may leave dots this node issued on other replicas and not
    // here: under periodic sync the last writes may be lost, and under any
    // policy a coordinated write goes to the other replicas while its local
    // copy syncs (replica::coordinate). Unless the store was closed cleanly,
    // start a new epoch so that no dot is issued twice.
    let clean = store.take_clean_close().await.map_err(storage_err)?;
    let epoch = match config.sync {
        SyncPolicy::Always if clean => epoch,
        _ => {
            if !fresh {
                tracing::info!(clean, "new data epoch after a restart");
            }
            rand::random::<u64>()
        }
    };
    let endpoint = net::endpoint(config.listen, &tls, &hooks)?;
    let local = endpoint
        .local_addr()
        .map_err(|e| net::NetError::Bind(config.listen, e))?;
    let addr = config.advertise.unwrap_or(local);
    let id = NodeId::new(config.id.clone());
    let me = match known.iter().find(|m| m.id == id) {
        // A restart: same state, a new version of the entry.
        Some(old) => MemberInfo {
            addr,
            zone: config.zone.clone(),
            version: old.version + 1,
            ..old.clone()
        },
        None => MemberInfo {
            id: id.clone(),
            addr,
            zone: config.zone.clone(),
            version: 1,
            state: if fresh || !upgraded {
                MemberState::Joining
            } else {
                MemberState::Up
            },
            state_since: 1,
            seen_view: 0,
            synced_view: 0,
        },
    };
    if me.state == MemberState::Removed {
        tracing::warn!(node = %me.id, "this node was removed from the cluster: it holds no ranges; wipe its data directory to join again");
    }
    let membership = Arc::new(Membership::new(me.clone(), known, config.vnodes, fresh));
    membership.add_seeds(config.seeds.iter().copied().filter(|a| *a != addr));
    meta::persist_members(&store, &membership, epoch)
        .await
        .map_err(storage_err)?;
    let quic = Arc::new(QuicTransport::new(
        endpoint.clone(),
        membership.clone(),
        config.peer_connect_timeout,
        config.limits.max_frame_bytes,
        metrics.clone(),
    ));
    let transport: Arc<dyn Transport> = quic.clone();
    let actor = Actor {
        node: me.id.clone(),
        epoch,
    };
    let liveness = Arc::new(Liveness::new(me.id.clone(), config.failure_detector));
    let contexts = ContextKeys::load(store.clone())
        .await
        .map_err(storage_err)?;
    let access = Access::load(store.clone(), &config.id, fresh)
        .await
        .map_err(storage_err)?;
    let gate = Gatekeeper::new(
        access.clone(),
        CertificateStatus {
            node: config.id.clone(),
            serial: own_cert.serial.clone(),
            not_after: own_cert.not_after,
        },
    );
    let reloader = {
        let (gate, quic) = (gate.clone(), quic.clone());
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
    let buckets = Buckets::open(
        store.clone(),
        buckets::default_props(
            config.replication.n,
            config.replication.r,
            config.replication.w,
        ),
    )
    .map_err(storage_err)?;
    let n_of: crate::repair::aae::NOf = {
        let buckets = buckets.clone();
        Arc::new(move |key: &[u8]| buckets.n_of_key(key))
    };
    let trees = Arc::new(std::sync::Mutex::new(Trees::new(
        me.id.clone(),
        n_of,
        Ring::default(),
    )));
    let replica = Replica::new(actor, store.clone(), config.limits.value_limits(), trees)
        .map_err(storage_err)?;
    let hints = Hints::open(store.clone(), config.hints).map_err(storage_err)?;
    let anti_entropy = Arc::new(AntiEntropy::new(
        replica.clone(),
        transport.clone(),
        membership.clone(),
        config.anti_entropy,
        metrics.clone(),
    ));
    // Build the trees from storage before serving.
    anti_entropy.load().map_err(storage_err)?;
    let member_store = MemberStore::new(store.clone(), membership.clone(), replica.clone());
    {
        let rotator = member_store.epoch_rotator();
        replica.set_quarantine(QuarantineHooks {
            rotate_epoch: Arc::new(move |replica| {
                let rotator = rotator.clone();
                Box::pin(async move {
                    let why = "a record was quarantined";
                    rotator.rotate(&replica, why).await
                })
            }),
            counter: metrics.counter(metrics::QUARANTINED, &[]),
        });
    }
    let transfers = Transfers::new(
        member_store.clone(),
        membership.clone(),
        replica.clone(),
        transport.clone(),
        liveness.clone(),
        buckets.clone(),
        config.transfers,
        metrics.clone(),
    );
    let spread = gossip::Spread {
        buckets: buckets.clone(),
        contexts: contexts.clone(),
        access: access.clone(),
    };
    let coordinator = Arc::new(Coordinator::new(
        Services {
            buckets: buckets.clone(),
            replica: replica.clone(),
            membership: membership.clone(),
            transport: transport.clone(),
            liveness: liveness.clone(),
            metrics: metrics.clone(),
            contexts: contexts.clone(),
        },
        config.replication,
        config.limits,
    ));
    let admin = Admin::new(
        AdminServices {
            membership: membership.clone(),
            buckets: buckets.clone(),
            liveness: liveness.clone(),
            transport: transport.clone(),
            anti_entropy: anti_entropy.clone(),
            transfers: transfers.clone(),
            member_store: member_store.clone(),
            access: access.clone(),
            gate: gate.clone(),
            reloader: reloader.clone(),
            replica: replica.clone(),
        },
        config.replication,
        config.limits,
    );
    let router = PeerRouter::new(
        RouterServices {
            coordinator: coordinator.clone(),
            replica,
            hints: hints.clone(),
            membership: membership.clone(),
            spread: spread.clone(),
            anti_entropy: anti_entropy.clone(),
            transfers: transfers.clone(),
        },
        config.limits.max_frame_bytes,
    );
    let handler: Arc<dyn Handler> = Arc::new(NodeHandler {
        coordinator,
        admin,
        router,
        access,
        metrics: metrics.clone(),
    });
    {
        let gate = gate.clone();
        metrics.on_scrape(Box::new(move |m: &Metrics| {
            for c in gate.certificates() {
                m.gauge(metrics::CERTIFICATE_EXPIRY, &[("holder", c.node.as_str())])
                    .set(c.not_after as f64);
            }
        }));
    }
    {
        let transfers = transfers.clone();
        metrics.on_scrape(Box::new(move |m: &Metrics| transfers.collect(m)));
    }
    metrics.on_scrape(metrics::collector::collector(
        store.clone(),
        hints.clone(),
        anti_entropy.clone(),
        membership.clone(),
        liveness.clone(),
        quic,
    ));
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let limits = ServeLimits::of(&config.limits);
    tasks.spawn(net::serve(
        endpoint.clone(),
        handler,
        Arc::new(gate),
        limits,
        metrics.clone(),
        rx.clone(),
    ));
    if let Some(l) = metrics_listener {
        let token = config.metrics_token.clone();
        tasks.spawn(metrics::serve(l, metrics.clone(), token, rx.clone()));
    }
    {
        // Histogram samples are folded into buckets here, scraped or not.
        let (metrics, mut ticks) = (
            metrics.clone(),
            crate::util::time::Every::new(metrics::UPKEEP_EVERY, rx.clone()),
        );
        tasks.spawn(async move {
            while ticks.next().await {
                metrics.run_upkeep();
            }
        });
    }
    tasks.spawn(hint_delivery::deliver_hints(
        hints.clone(),
        transport.clone(),
        membership.clone(),
        liveness.clone(),
        rx.clone(),
    ));
    tasks.spawn(aae_loop::refresh_trees(anti_entropy.clone(), rx.clone()));
    tasks.spawn(aae_loop::run_exchanges(
        anti_entropy.clone(),
        liveness.clone(),
        rx.clone(),
    ));
    tasks.spawn(transfers.clone().run(rx.clone()));
    tasks.spawn(pings::ping(
        transport.clone(),
        membership.clone(),
        liveness.clone(),
        config.failure_detector,
        rx.clone(),
    ));
    tasks.spawn(gossip::gossip(
        transport,
        membership.clone(),
        spread,
        member_store,
        config.gossip_interval,
        rx,
    ));
    tracing::info!(node = %me.id, %addr, state = me.state.as_str(), version = me.version, "node started");
    Ok(RunningNode {
        id: me.id,
        addr,
        endpoint,
        membership,
        shutdown,
        tasks,
        store_closed,
        liveness,
        hints,
        anti_entropy,
        metrics,
        metrics_addr,
        store: store_handle,
        reloader,
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
