//! Wiring: a node is started from its config and runs until shut down.

use crate::repair::aae::Trees;
use crate::cluster::buckets::{self, Buckets};
use crate::config::NodeConfig;
use crate::replication::coordinator::{Coordinator, Services};
use crate::net::faults::Faults;
use crate::repair::hints::Hints;
use crate::cluster::liveness::{DetectorConfig, Liveness};
use crate::cluster::membership::Membership;
use crate::metrics::{self, Metrics};
use crate::net::{self, Handler, ServeLimits};
use crate::rpc::peer::{MemberInfo, MemberInfoV1, MemberState, PeerRequest, PeerResponse};
use crate::data::register::Actor;
use crate::repair::exchange::AntiEntropy;
use crate::replication::replica::Replica;
use crate::storage::{Closed, FjallEngine, Measured, Space, StorageError, Store, SyncPolicy};
use crate::repair::transfer::Transfers;
use crate::rpc::transport::{BoxFuture, QuicTransport, Transport};
use kvorum_client::proto::{Request, Response};
use kvorum_client::{TlsError, TlsMaterial};
use kvorum_ring::NodeId;
use kvorum_ring::Ring;
use serde::{Deserialize, Serialize};
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
    /// The metrics endpoint could not bind its address.
    #[error("metrics endpoint: cannot bind {0}: {1} (set [metrics] listen, or enabled = false)")]
    Metrics(SocketAddr, std::io::Error),
}

/// Node metadata kept in [`Space::Meta`], versioned by its enum tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum MetaRecord {
    V1 {
        incarnation: u64,
        /// Epoch of the data, part of the actor that issues dots (see
        /// [`crate::data::register::Actor`]).
        epoch: u64,
        members: Vec<MemberInfoV1>,
    },
    /// With member states: this node's own entry is among `members`.
    V2 {
        /// As in `V1`.
        epoch: u64,
        members: Vec<MemberInfo>,
    },
}

const META_KEY: &[u8] = b"node";

/// A running node. Dropping it does not stop it: call [`RunningNode::shutdown`].
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
}

impl RunningNode {
    /// The storage keys this node holds data for (tombstones included), in
    /// key order: what it replicates.
    pub fn data_keys(&self) -> Result<Vec<Vec<u8>>, StorageError> {
        Ok(self
            .store
            .scan_after(Space::Data, None, usize::MAX)?
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
        drop(store);
        // Requests still in flight finish within their deadlines; then the
        // last store handle drops and the database closes, so the data
        // directory can be opened again (a restart in the same process).
        if !store_closed.wait(Duration::from_secs(30)).await {
            tracing::warn!(node = %id, "storage did not close within 30 s");
        }
    }
}

struct NodeHandler {
    coordinator: Coordinator,
    metrics: Arc<Metrics>,
}

impl Handler for NodeHandler {
    fn client(&self, req: Request) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let (op, bucket) = metrics::request_op(&req);
            let bucket_type = bucket.map_or("none", |b| self.coordinator.bucket_type_label(b));
            let resp = self.coordinator.handle(req, false).await;
            metrics::record_request(&self.metrics, op, bucket_type, &resp, started.elapsed());
            resp
        })
    }
    fn peer(&self, req: PeerRequest) -> BoxFuture<'_, PeerResponse> {
        Box::pin(self.coordinator.serve_peer(req))
    }
}

/// Starts a node: opens its storage, binds its endpoint, joins the cluster
/// through its seeds, and serves until [`RunningNode::shutdown`].
pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
    start_with_faults(config, None).await
}

/// [`start`], with the node's UDP socket obeying injected `faults` (tests).
pub async fn start_with_faults(
    config: NodeConfig,
    faults: Option<Arc<Faults>>,
) -> Result<RunningNode, NodeError> {
    let tls = TlsMaterial::from_files(&config.tls.ca, &config.tls.cert, &config.tls.key)?;
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
    // `known`: the persisted member list; `upgraded`: it came from a data
    // directory of a build without member states (its node was up).
    let (epoch, known, fresh, upgraded) =
        match store.get(Space::Meta, META_KEY).map_err(storage_err)? {
            // A new data directory: a new epoch, and the node must join.
            None => (rand::random::<u64>(), Vec::new(), true, false),
            Some(bytes) => match postcard::from_bytes::<MetaRecord>(&bytes) {
                Ok(MetaRecord::V1 {
                    incarnation,
                    epoch,
                    members,
                }) => {
                    let mut members: Vec<MemberInfo> =
                        members.into_iter().map(MemberInfo::from).collect();
                    for m in &mut members {
                        if m.id.as_str() == config.id {
                            m.version = m.version.max(incarnation);
                        }
                    }
                    (epoch, members, false, true)
                }
                Ok(MetaRecord::V2 { epoch, members }) => (epoch, members, false, false),
                Err(e) => {
                    return Err(storage_err(StorageError::Corrupt(format!(
                        "node metadata: {e}"
                    ))))
                }
            },
        };
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
    let endpoint = net::endpoint(config.listen, &tls, faults.as_ref())?;
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
    persist_members(&store, &membership, epoch)
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
    let member_store = MemberStore {
        store: store.clone(),
        membership: membership.clone(),
        replica: replica.clone(),
        saving: Default::default(),
    };
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
    let services = Services {
        transfers: transfers.clone(),
        member_store: member_store.clone(),
        buckets: buckets.clone(),
        replica,
        membership: membership.clone(),
        transport: transport.clone(),
        liveness: liveness.clone(),
        hints: hints.clone(),
        anti_entropy: anti_entropy.clone(),
        metrics: metrics.clone(),
    };
    let coordinator = Coordinator::new(services, config.replication, config.limits);
    let handler: Arc<dyn Handler> = Arc::new(NodeHandler {
        coordinator,
        metrics: metrics.clone(),
    });
    {
        let transfers = transfers.clone();
        metrics.on_scrape(Box::new(move |m: &Metrics| transfers.collect(m)));
    }
    metrics.on_scrape(collector(
        store.clone(),
        hints.clone(),
        anti_entropy.clone(),
        membership.clone(),
        liveness.clone(),
        quic,
    ));
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let limits = ServeLimits {
        max_frame_bytes: config.limits.max_frame_bytes,
        max_connections: config.limits.max_connections,
        max_inflight_requests: config.limits.max_inflight_requests,
        read_timeout: config.limits.request_read_timeout,
    };
    tasks.spawn(net::serve(
        endpoint.clone(),
        handler,
        limits,
        metrics.clone(),
        rx.clone(),
    ));
    if let Some(l) = metrics_listener {
        tasks.spawn(metrics::serve(l, metrics.clone(), rx.clone()));
    }
    {
        // Histogram samples are folded into buckets here, scraped or not.
        let (metrics, mut ticks) = (
            metrics.clone(),
            Every::new(metrics::UPKEEP_EVERY, rx.clone()),
        );
        tasks.spawn(async move {
            while ticks.next().await {
                metrics.run_upkeep();
            }
        });
    }
    tasks.spawn(deliver_hints(
        hints.clone(),
        transport.clone(),
        membership.clone(),
        liveness.clone(),
        rx.clone(),
    ));
    {
        // The trees follow a new placement soon after it is learned, while
        // little has been written under it, not at the next exchange.
        let (aae, mut ticks) = (
            anti_entropy.clone(),
            Every::new(TREES_REFRESH_EVERY, rx.clone()),
        );
        tasks.spawn(async move {
            while ticks.next().await {
                aae.refresh().await;
            }
        });
    }
    tasks.spawn(run_anti_entropy(
        anti_entropy.clone(),
        liveness.clone(),
        rx.clone(),
    ));
    tasks.spawn(transfers.clone().run(rx.clone()));
    tasks.spawn(ping(
        transport.clone(),
        membership.clone(),
        liveness.clone(),
        config.failure_detector,
        rx.clone(),
    ));
    tasks.spawn(gossip(
        transport,
        membership.clone(),
        buckets,
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
    })
}

/// Copies what other modules keep (hint and anti-entropy counts, liveness,
/// ring share, storage size, peer RTT) into the registry at each scrape.
fn collector(
    store: Store,
    hints: Hints,
    aae: Arc<AntiEntropy>,
    membership: Arc<Membership>,
    liveness: Arc<Liveness>,
    quic: Arc<QuicTransport>,
) -> metrics::Collector {
    use std::sync::atomic::Ordering::Relaxed;
    // Taken here, in the runtime: a scrape may render on a blocking thread.
    let runtime = tokio::runtime::Handle::try_current().ok();
    Box::new(move |m: &Metrics| {
        if let Some(rt) = &runtime {
            m.gauge(metrics::RUNTIME_WORKERS, &[])
                .set(rt.metrics().num_workers() as f64);
        }
        let h = hints.stats();
        m.counter(metrics::HINTS_STORED, &[])
            .absolute(h.stored.load(Relaxed));
        m.counter(metrics::HINTS_DELIVERED, &[])
            .absolute(h.delivered.load(Relaxed));
        m.counter(metrics::HINTS_DROPPED, &[])
            .absolute(h.dropped.load(Relaxed));
        m.gauge(metrics::HINTS_PENDING, &[])
            .set(h.pending.load(Relaxed) as f64);
        m.gauge(metrics::HINTS_BYTES, &[])
            .set(h.bytes.load(Relaxed) as f64);
        m.gauge(metrics::HINT_OLDEST_AGE, &[])
            .set(h.oldest_age().as_secs_f64());
        m.counter(metrics::AAE_KEYS_REPAIRED, &[])
            .absolute(aae.stats().keys_repaired.load(Relaxed));
        let me = membership.me().id.clone();
        let (mut up, mut down) = (0u32, 0u32);
        for member in membership.members() {
            let is_up = liveness.is_up(&member.id);
            if is_up {
                up += 1;
            } else {
                down += 1;
            }
            if member.id != me {
                m.gauge(metrics::PEER_UP, &[("peer", member.id.as_str())])
                    .set(if is_up { 1.0 } else { 0.0 });
            }
        }
        m.gauge(metrics::MEMBERS, &[("state", "up")])
            .set(f64::from(up));
        m.gauge(metrics::MEMBERS, &[("state", "down")])
            .set(f64::from(down));
        m.gauge(metrics::RING_OWNERSHIP, &[])
            .set(membership.ring().ownership(&me));
        if let Some(size) = store.size() {
            m.gauge(metrics::STORAGE_DISK_BYTES, &[])
                .set(size.disk_bytes as f64);
            m.gauge(metrics::STORAGE_KEYS, &[]).set(size.keys as f64);
        }
        let open = quic.open_connections();
        m.gauge(metrics::CONNECTIONS, &[("kind", "peer_out")])
            .set(open.len() as f64);
        for (addr, rtt) in open {
            if let Some(peer) = membership.id_at(addr) {
                m.gauge(metrics::PEER_RTT, &[("peer", peer.as_str())])
                    .set(rtt.as_secs_f64());
            }
        }
    })
}

/// How often a node checks whether its anti-entropy trees must follow a
/// new placement (a check is a lock and a comparison).
const TREES_REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Every anti-entropy interval, one exchange with the next peer that is up,
/// in turn, so each pair of replicas compares its trees regularly.
async fn run_anti_entropy(
    aae: Arc<AntiEntropy>,
    liveness: Arc<Liveness>,
    mut shutdown: watch::Receiver<bool>,
) {
    if !aae.config().enabled {
        return;
    }
    let mut ticks = Every::new(aae.config().interval, shutdown.clone());
    let mut turn = 0usize;
    while ticks.next().await {
        let peers: Vec<NodeId> = aae
            .peers()
            .into_iter()
            .filter(|p| liveness.is_up(p))
            .collect();
        if peers.is_empty() {
            continue;
        }
        let peer = &peers[turn % peers.len()];
        turn = turn.wrapping_add(1);
        tokio::select! {
            r = aae.exchange(peer) => if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "anti-entropy exchange failed");
            },
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = aae.reap() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The clock of a periodic task: a tick every interval, until shutdown.
struct Every {
    tick: tokio::time::Interval,
    shutdown: watch::Receiver<bool>,
}

impl Every {
    fn new(every: Duration, shutdown: watch::Receiver<bool>) -> Self {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { tick, shutdown }
    }

    /// Waits for the next tick; false once the node is shutting down.
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => true,
            _ = self.shutdown.changed() => false,
        }
    }
}

/// Hands hints to their owners (Dynamo §4.6). Every delivery interval it
/// takes a batch of hints: a hint for a node that is no longer a member, or
/// past its age bound, is dropped and counted; a hint whose owner is up is
/// sent to it as a replica write and deleted once the owner acknowledged it.
async fn deliver_hints(
    hints: Hints,
    transport: Arc<dyn Transport>,
    membership: Arc<Membership>,
    liveness: Arc<Liveness>,
    shutdown: watch::Receiver<bool>,
) {
    /// Hints handed over at once.
    const PARALLEL: usize = 32;
    let every = hints.config().delivery_interval;
    let mut ticks = Every::new(every, shutdown.clone());
    while ticks.next().await {
        let members: std::collections::HashSet<NodeId> =
            membership.members().into_iter().map(|m| m.id).collect();
        // One batch per member (so an owner that is down with many hints
        // does not hold back the others), plus the head of the whole store
        // (where hints for nodes that are no longer members are found).
        let mut batch = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let owners = std::iter::once(None).chain(members.iter().map(Some));
        for owner in owners {
            match hints.batch(owner) {
                Ok(b) => batch.extend(
                    b.into_iter()
                        .filter(|h| seen.insert(h.store_key().to_vec())),
                ),
                Err(e) => tracing::warn!(error = %e, "cannot read hints"),
            }
        }
        let mut sends = JoinSet::new();
        // Drops are logged once a round, per owner (not once a hint).
        let mut dropped: std::collections::BTreeMap<NodeId, u64> = Default::default();
        for hint in batch {
            if !members.contains(&hint.owner) || hints.expired(&hint) {
                if let Ok(true) = hints.remove(&hint, false).await {
                    *dropped.entry(hint.owner.clone()).or_default() += 1;
                }
                continue;
            }
            if !liveness.is_up(&hint.owner) {
                continue;
            }
            while sends.len() >= PARALLEL {
                sends.join_next().await;
            }
            let (hints, transport) = (hints.clone(), transport.clone());
            sends.spawn(async move {
                let req = PeerRequest::Write {
                    key: hint.key.clone(),
                    state: hint.state.clone(),
                };
                match transport
                    .call(&hint.owner, req, every.max(Duration::from_secs(2)))
                    .await
                {
                    Ok(PeerResponse::Ack) => {
                        if let Err(e) = hints.remove(&hint, true).await {
                            tracing::warn!(error = %e, "cannot delete a delivered hint");
                        }
                    }
                    Ok(other) => tracing::debug!(owner = %hint.owner, ?other, "hint not accepted"),
                    Err(e) => {
                        tracing::debug!(owner = %hint.owner, error = %e, "hint not delivered")
                    }
                }
            });
        }
        for (owner, n) in dropped {
            tracing::info!(%owner, hints = n, "hints dropped (owner removed or hints too old); anti-entropy repairs their keys");
        }
        while sends.join_next().await.is_some() {}
    }
}

/// Pings every other member each heartbeat interval and feeds the answers to
/// the failure detector. At most one ping per peer is in flight; a ping waits
/// up to the acceptable pause, so a slow answer still counts as a heartbeat.
async fn ping(
    transport: Arc<dyn Transport>,
    membership: Arc<Membership>,
    liveness: Arc<Liveness>,
    config: DetectorConfig,
    shutdown: watch::Receiver<bool>,
) {
    let in_flight: Arc<std::sync::Mutex<std::collections::HashSet<NodeId>>> = Arc::default();
    let mut ticks = Every::new(config.heartbeat_interval, shutdown.clone());
    let wait = config.acceptable_pause.max(config.heartbeat_interval);
    let mut seen_up: std::collections::HashMap<NodeId, bool> = Default::default();
    while ticks.next().await {
        let me = membership.me().id.clone();
        for m in membership.members().into_iter().filter(|m| m.id != me) {
            let up = liveness.is_up(&m.id);
            if seen_up.insert(m.id.clone(), up) == Some(true) && !up {
                tracing::info!(peer = %m.id, "peer down");
            }
        }
        for m in membership.members().into_iter().filter(|m| m.id != me) {
            liveness.watch(&m.id);
            if !in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(m.id.clone())
            {
                continue;
            }
            let (transport, liveness, in_flight) =
                (transport.clone(), liveness.clone(), in_flight.clone());
            tokio::spawn(async move {
                if let Ok(PeerResponse::Pong) = transport.call(&m.id, PeerRequest::Ping, wait).await
                {
                    liveness.heartbeat(&m.id);
                }
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&m.id);
            });
        }
    }
}

/// Persists the member list (with this node's entry and data epoch) in
/// `meta`: after every change of this node's own state, so a crash cannot
/// bring it back in an older state.
#[derive(Clone)]
pub struct MemberStore {
    store: Store,
    membership: Arc<Membership>,
    replica: Replica,
    /// One save at a time: a save that read the epoch before a rotation
    /// must not land after it (the stored epoch would go back to the
    /// retired one, and a restart would issue its dots again).
    saving: Arc<tokio::sync::Mutex<()>>,
}

impl MemberStore {
    /// Writes the current list, durably.
    pub async fn save(&self) -> Result<(), StorageError> {
        let _one = self.saving.lock().await;
        persist_members(&self.store, &self.membership, self.replica.actor().epoch).await
    }

    /// Starts a new data epoch (persisted before it is used).
    pub async fn rotate_epoch(&self) -> Result<(), StorageError> {
        let _one = self.saving.lock().await;
        let epoch = rand::random::<u64>();
        persist_members(&self.store, &self.membership, epoch).await?;
        self.replica.set_epoch(epoch);
        tracing::info!(
            epoch,
            "new data epoch (this node dropped keys it handed off)"
        );
        Ok(())
    }
}

async fn persist_members(
    store: &Store,
    membership: &Membership,
    epoch: u64,
) -> Result<(), StorageError> {
    let record = MetaRecord::V2 {
        epoch,
        members: membership.all_members(),
    };
    // Serializing a plain struct into a Vec cannot fail.
    let bytes = postcard::to_stdvec(&record).unwrap_or_default();
    store
        .update(Space::Meta, META_KEY.to_vec(), move |_| (Some(bytes), ()))
        .await
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

/// Members a node gossips with each round.
pub const GOSSIP_FANOUT: usize = 3;

/// Every interval, exchanges member lists with [`GOSSIP_FANOUT`] random
/// known members (with the seeds while it knows no other member), so news
/// spreads epidemically: in O(log n) rounds to every member; and now and
/// then with a seed that is no known member's address, so groups that
/// formed apart merge.
///
/// Bucket definitions travel along (see [`crate::cluster::buckets`]).
#[allow(clippy::too_many_arguments)] // the task's whole context, passed once
async fn gossip(
    transport: Arc<dyn Transport>,
    membership: Arc<Membership>,
    buckets: Buckets,
    member_store: MemberStore,
    every: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let mut persisted = membership.version();
    let mut ticks = Every::new(every, shutdown.clone());
    let timeout = every.max(Duration::from_millis(500));
    // The call to a seed outside the known members runs on its own, one at
    // a time, so a seed that is down does not stretch every round.
    let mut stranger: Option<tokio::task::JoinHandle<bool>> = None;
    let mut stranger_wait = 0u32;
    while ticks.next().await {
        membership.count_round();
        if stranger.as_ref().is_some_and(|h| h.is_finished()) {
            let taught = match stranger.take() {
                Some(h) => h.await.unwrap_or(false),
                None => false,
            };
            if !taught {
                // Down, or a known member under another address: try
                // again in a while, not every round.
                stranger_wait = STRANGER_BACKOFF_ROUNDS;
            }
        }
        let me = membership.me();
        let mut others: Vec<MemberInfo> = membership
            .members()
            .into_iter()
            .filter(|m| m.id != me.id)
            .collect();
        // Seeds are for first contact: once other members are known, a few
        // random ones each round, and now and then a seed that is no known
        // member's address. Nodes that found only some of their seeds at
        // first (the others not up yet, or unreachable) form groups apart;
        // the seeds outside a group are how the groups find each other.
        let mut targets: Vec<SocketAddr> = if others.is_empty() {
            membership.seeds()
        } else {
            let mut picked = Vec::new();
            while picked.len() < GOSSIP_FANOUT && !others.is_empty() {
                let pick = rand::random_range(0..others.len());
                picked.push(others.swap_remove(pick).addr);
            }
            if stranger.is_none() {
                if stranger_wait > 0 {
                    stranger_wait -= 1;
                } else {
                    let known: Vec<SocketAddr> =
                        membership.all_members().iter().map(|m| m.addr).collect();
                    let strangers: Vec<SocketAddr> = membership
                        .seeds()
                        .into_iter()
                        .filter(|s| !known.contains(s))
                        .collect();
                    if !strangers.is_empty() {
                        let addr = strangers[rand::random_range(0..strangers.len())];
                        let (t, m, b) = (transport.clone(), membership.clone(), buckets.clone());
                        stranger = Some(tokio::spawn(async move {
                            gossip_with(t.as_ref(), &m, &b, addr, timeout).await
                        }));
                    }
                }
            }
            picked
        };
        targets.sort();
        targets.dedup();
        // At once, so a slow member does not hold up the others.
        let mut calls = tokio::task::JoinSet::new();
        for addr in targets {
            let (t, m, b) = (transport.clone(), membership.clone(), buckets.clone());
            calls.spawn(async move { gossip_with(t.as_ref(), &m, &b, addr, timeout).await });
        }
        while let Some(done) = calls.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a gossip call failed to run");
            }
        }
        // Persist what was learned by any path since the last round, so a
        // restarted node finds its peers even when its seeds are down.
        let version = membership.version();
        if version != persisted {
            match member_store.save().await {
                Ok(()) => persisted = version,
                Err(e) => tracing::warn!(error = %e, "cannot persist the member list"),
            }
        }
    }
    if let Some(h) = stranger {
        h.abort();
    }
    // A clean shutdown keeps the latest state (a node that just came up
    // must not restart as joining).
    if membership.version() != persisted {
        if let Err(e) = member_store.save().await {
            tracing::warn!(error = %e, "cannot persist the member list");
        }
    }
}

/// Rounds a node waits before it calls a seed outside its members again,
/// after such a call taught it nothing (or failed).
const STRANGER_BACKOFF_ROUNDS: u32 = 8;

/// One gossip exchange with the node at `addr`; returns whether its answer
/// taught this node anything (members or buckets).
async fn gossip_with(
    transport: &dyn Transport,
    membership: &Membership,
    buckets: &Buckets,
    addr: SocketAddr,
    timeout: Duration,
) -> bool {
    let req = PeerRequest::Gossip {
        members: membership.all_members(),
        buckets: buckets.defined(),
    };
    match transport.call_addr(addr, req, timeout).await {
        Ok(PeerResponse::Members {
            members,
            buckets: defined,
        }) => {
            let news = membership.merge(members);
            merge_buckets(buckets, membership, defined).await || news
        }
        Ok(other) => {
            tracing::debug!(%addr, ?other, "unexpected gossip answer");
            false
        }
        Err(e) => {
            tracing::debug!(%addr, error = %e, "gossip failed");
            false
        }
    }
}

/// Stores bucket definitions learned by gossip; a new one may carry its own
/// N, so the anti-entropy trees are rebuilt. Returns whether any was new.
pub(crate) async fn merge_buckets(
    buckets: &Buckets,
    membership: &Membership,
    defined: Vec<(String, kvorum_client::BucketProps)>,
) -> bool {
    match buckets.merge(defined).await {
        Ok(true) => {
            membership.touch();
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot store the buckets learned by gossip");
            false
        }
    }
}
