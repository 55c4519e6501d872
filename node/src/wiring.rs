//! Wiring: a node assembled from what it is given ([`Parts`]): its config,
//! a storage [`Engine`], a way to reach peers ([`Transport`]), its clocks,
//! randomness and workers ([`NodeEnv`]). The result ([`Node`]) serves
//! decoded requests through its [`Handler`] and runs its background tasks
//! until shut down. [`crate::start`] gives it a fjall engine and QUIC; the
//! deterministic simulator (`kvorum-sim`) gives it an in-memory engine and
//! network on virtual time.

use crate::access;
use crate::access::contexts::ContextKeys;
use crate::access::gate::Gatekeeper;
use crate::access::list::Access;
use crate::backup::Backups;
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
use crate::net::reload::ReloaderSlot;
use crate::net::Handler;
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
use crate::rpc::transport::Transport;
use crate::storage::{Closed, Engine, StorageError, Store, SyncPolicy};
use crate::util::{BoxFuture, NodeEnv};
use kvorum_client::proto::{Request, Response};
use kvorum_client::CertificateStatus;
use kvorum_ring::{NodeId, Ring};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinSet};

/// Makes the node's transport once its member list and access list exist
/// (a transport finds peers' addresses in the one, and sends nothing to a
/// peer whose certificate the gate over the other refuses).
pub type TransportMaker =
    Box<dyn FnOnce(&Arc<Membership>, Arc<dyn crate::net::Gate>) -> Arc<dyn Transport> + Send>;

/// What a node is started from.
pub struct Parts {
    /// Its config (its TLS paths and listen address are not read here).
    pub config: NodeConfig,
    /// Its storage engine.
    pub engine: Arc<dyn Engine>,
    /// The address other nodes reach it at.
    pub addr: SocketAddr,
    /// Makes its transport.
    pub transport: TransportMaker,
    /// Its clocks, randomness and workers.
    pub env: NodeEnv,
    /// Its own certificate, as status and gauges report it.
    pub certificate: CertificateStatus,
}

/// An assembled, running node: its handler serves decoded requests; its
/// background tasks run until [`Node::shutdown`].
// Some fields are read only by the test accessors.
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub struct Node {
    pub(crate) id: NodeId,
    pub(crate) membership: Arc<Membership>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) gate: Gatekeeper,
    pub(crate) reloader: ReloaderSlot,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Store,
    pub(crate) store_closed: Closed,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) hints: Hints,
    pub(crate) anti_entropy: Arc<AntiEntropy>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) tasks: JoinSet<()>,
}

impl Node {
    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// What serves this node's decoded requests.
    pub fn handler(&self) -> &Arc<dyn Handler> {
        &self.handler
    }

    /// Members this node knows.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.membership.members()
    }

    /// Whether the node is ready to serve, for `/ready`: a member up in
    /// the ring (or leaving, still serving its ranges) whose storage takes
    /// writes. A joining node streams its ranges first; a removed one owns
    /// nothing.
    pub fn readiness(&self) -> crate::metrics::Readiness {
        let (membership, store) = (self.membership.clone(), self.store.clone());
        Arc::new(move || {
            match store.failure() {
                Some(StorageError::DiskFull(_)) => {
                    return Err("a storage commit failed for want of space: it restarts by itself once space is freed".into())
                }
                Some(_) => return Err("a storage commit failed; restart the node".into()),
                None => {}
            }
            match membership.my_state() {
                MemberState::Up | MemberState::Leaving => Ok(()),
                MemberState::Joining => Err("joining: streaming its ranges".into()),
                MemberState::Removed => Err("not a member of the cluster".into()),
            }
        })
    }

    /// Hands the hints this node holds to their owners that are up, in
    /// rounds, until none is left to hand, a round delivers nothing, or
    /// `limit` passes (a node about to stop: its hints would otherwise
    /// wait for it to come back). Returns how many were delivered.
    pub async fn hand_off_hints(&self, limit: Duration) -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        let delivered = AtomicU64::new(0);
        let deliver = async {
            loop {
                let round = crate::repair::hint_delivery::deliver_round(
                    &self.hints,
                    &self.transport,
                    &self.membership,
                    &self.liveness,
                )
                .await;
                delivered.fetch_add(round, Ordering::Relaxed);
                let pending = self.hints.stats().pending.load(Ordering::Relaxed);
                if round == 0 || pending == 0 {
                    return;
                }
            }
        };
        // What was delivered before the limit stays delivered (each hint
        // is deleted once its owner acknowledged it).
        let _ = tokio::time::timeout(limit, deliver).await;
        delivered.load(Ordering::Relaxed)
    }

    /// Resolves if the node's storage failed a commit, with its error: the
    /// node then takes no more writes, and should be shut down and
    /// restarted (after a [`StorageError::DiskFull`], once space is back:
    /// see [`crate::supervise::wait_for_space`]).
    pub async fn storage_failed(&self) -> StorageError {
        self.store.failed().await
    }

    /// Tells the background tasks to stop and waits for them.
    pub(crate) async fn stop_tasks(&mut self) {
        self.metrics.clear_collectors();
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops the node's tasks, then waits (up to 30 s) for requests still
    /// in flight to finish and its storage to close cleanly.
    pub async fn shutdown(mut self) {
        self.stop_tasks().await;
        self.close_storage().await;
    }

    /// Drops every handle of the store, then waits for it to close.
    pub(crate) async fn close_storage(self) {
        // Every handle that holds the store goes first.
        let (id, store_closed) = self.release();
        // Requests still in flight finish within their deadlines; then the
        // last store handle drops and the database closes, so the data
        // directory can be opened again (a restart in the same process).
        if !store_closed.wait(Duration::from_secs(30)).await {
            tracing::warn!(node = %id, "storage did not close within 30 s");
        }
    }

    /// Drops every part of the node but its id and the store's close
    /// signal (they drop when this returns: a `..` pattern in the caller
    /// would keep them until the caller's end).
    fn release(self) -> (NodeId, Closed) {
        let Node {
            id, store_closed, ..
        } = self;
        (id, store_closed)
    }

    /// Stops at once, as a crashed process does: every task is aborted,
    /// nothing is synced or recorded as a clean close (the simulator's
    /// crash; what the engine keeps is up to the engine).
    pub fn abort(mut self) {
        self.tasks.abort_all();
        // The collectors hold handles that hold the registry: without
        // this, a crashed node's services, store and engine stay in memory
        // (the simulator's swarm grew 14 MB a seed).
        self.metrics.clear_collectors();
    }
}

/// Test accessors: what the integration tests and the simulator read of a
/// running node (a build with the `test-hooks` feature).
#[cfg(feature = "test-hooks")]
impl Node {
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

    /// Holds the storage writer thread for `hold`, as an engine halting
    /// writes (fjall, its compactions behind) or a stalled disk would:
    /// updates queue behind it and none commits until it ends. Returns at
    /// once.
    pub fn hold_storage_writer(&self, hold: std::time::Duration) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let _ = store.on_writer(move |_| std::thread::sleep(hold)).await;
        });
    }

    /// Whether client writes are refused as overloaded now (see
    /// `Store::overloaded`).
    pub fn storage_overloaded(&self) -> bool {
        self.store.overloaded().is_some()
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

    /// Whether the start-up build of the anti-entropy trees is done.
    pub fn aae_trees_built(&self) -> bool {
        self.anti_entropy.built()
    }

    /// Whether the anti-entropy trees agree with a build from scratch of
    /// what storage holds now (call with writes stopped).
    pub fn aae_trees_agree_with_storage(&self) -> Result<bool, StorageError> {
        self.anti_entropy.trees_agree_with_storage()
    }

    /// Keys anti-entropy exchanges started by this node merged, since start.
    pub fn aae_keys_repaired(&self) -> u64 {
        self.anti_entropy
            .stats()
            .keys_repaired
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The roots of this node's anti-entropy trees, per peer it shares
    /// ranges with (equal roots: the shared ranges hold the same states).
    pub fn tree_roots(&self) -> Vec<(NodeId, u64)> {
        self.anti_entropy.roots()
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
    env: NodeEnv,
}

impl Handler for NodeHandler {
    fn client<'a>(&'a self, caller: &'a Caller, req: Request) -> BoxFuture<'a, Response> {
        Box::pin(async move {
            let started = self.env.clock.now();
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
            let took = self.env.clock.since(started);
            metrics::record_request(&self.metrics, op, bucket_type, &resp, took);
            resp
        })
    }
    fn peer<'a>(&'a self, caller: &'a Caller, req: PeerRequest) -> BoxFuture<'a, PeerResponse> {
        Box::pin(self.router.serve(caller, req))
    }
}

/// Assembles a node from its parts and starts its background tasks:
/// opens its storage, loads its member list, data epoch, access list and
/// anti-entropy trees, and joins the cluster through its seeds.
pub async fn assemble(parts: Parts) -> Result<Node, StorageError> {
    let metrics = Metrics::new(&parts.config.id);
    assemble_with_metrics(parts, metrics).await
}

/// [`assemble`], into a metrics registry made beforehand (a real node's
/// engine records into it before the node exists).
pub async fn assemble_with_metrics(
    parts: Parts,
    metrics: Arc<Metrics>,
) -> Result<Node, StorageError> {
    let Parts {
        config,
        engine,
        addr,
        transport,
        env,
        certificate,
    } = parts;
    // Before anything commits: data written since this node's last clean
    // close by a release without the key index gets its index built again.
    if crate::repair::aae::index::forget_if_written_behind(&*engine)? {
        tracing::warn!("the data was written since this node's last clean close by a release without the anti-entropy key index: building the index again");
    }
    let migrated = crate::storage::migrate::to_items(&*engine)?;
    if migrated != Default::default() {
        tracing::info!(?migrated, "storage keys migrated to sorted partitions");
    }
    // Data written before the key index existed gets it, once.
    let indexed = crate::repair::aae::index::ensure(&*engine)?;
    if indexed > 0 {
        tracing::info!(keys = indexed, "anti-entropy key index built from the data");
    }
    let (store, store_closed) = Store::start_on(engine, config.sync, env.workers, config.watermark);
    store.refuse_when_stalled(config.overloaded_after);
    let Stored {
        epoch,
        members: known,
        fresh,
        upgraded,
    } = meta::load(&store, &config.id, &env.rng)?;
    // A crash may leave dots this node issued on other replicas and not
    // here: under periodic sync the last writes may be lost, and under any
    // policy a coordinated write goes to the other replicas while its local
    // copy syncs (replica::coordinate). Unless the store was closed cleanly,
    // start a new epoch so that no dot is issued twice.
    let clean = store.take_clean_close().await?;
    let epoch = match config.sync {
        SyncPolicy::Always if clean => epoch,
        _ => {
            if !fresh {
                tracing::info!(clean, "new data epoch after a restart");
            }
            env.rng.u64()
        }
    };
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
    meta::persist_members(&store, &membership, epoch).await?;
    let access = Access::load(store.clone(), &config.id, fresh, env.clock.clone()).await?;
    let gate = Gatekeeper::new(access.clone(), certificate);
    let transport = transport(&membership, Arc::new(gate.clone()));
    let actor = Actor {
        node: me.id.clone(),
        epoch,
    };
    let liveness = Arc::new(Liveness::new(
        me.id.clone(),
        config.failure_detector,
        env.clock.clone(),
    ));
    let contexts = ContextKeys::load(store.clone(), &env).await?;
    let buckets = Buckets::open(
        store.clone(),
        buckets::default_props(
            config.replication.n,
            config.replication.r,
            config.replication.w,
        ),
    )?;
    let n_of: crate::repair::aae::NOf = {
        let buckets = buckets.clone();
        Arc::new(move |key: &[u8]| buckets.n_of_key(key))
    };
    let trees = Arc::new(std::sync::Mutex::new(
        Trees::new(me.id.clone(), n_of, Ring::default()).with_clock(env.clock.clone()),
    ));
    let replica = Replica::new(actor, store.clone(), config.limits.value_limits(), trees)?;
    let hints = Hints::open_with(store.clone(), config.hints, env.clock.clone())?;
    let anti_entropy = Arc::new(AntiEntropy::new(
        replica.clone(),
        transport.clone(),
        membership.clone(),
        config.anti_entropy,
        metrics.clone(),
        env.clone(),
    ));
    let member_store = MemberStore::new(
        store.clone(),
        membership.clone(),
        replica.clone(),
        env.rng.clone(),
    );
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
            clock: env.clock.clone(),
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
        env.clock.clone(),
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
            env: env.clone(),
        },
        config.replication,
        config.limits,
    ));
    let reloader = ReloaderSlot::default();
    let backups = Backups::new(
        store.clone(),
        replica.clone(),
        membership.clone(),
        buckets.clone(),
        metrics.clone(),
        env.clock.clone(),
        env.rng.u64(),
    );
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
            backups: backups.clone(),
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
        env: env.clone(),
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
    ));
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
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
    {
        // Backup snapshots left unread (an admin command that stopped)
        // are released: each keeps the engine from dropping old versions.
        let mut ticks = crate::util::time::Every::new(crate::backup::IDLE / 4, rx.clone());
        tasks.spawn(async move {
            while ticks.next().await {
                backups.release_idle();
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
    {
        // The trees are built from storage while the node serves.
        let (aae, rx) = (anti_entropy.clone(), rx.clone());
        tasks.spawn(async move { aae.load(rx).await });
    }
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
        transport.clone(),
        membership.clone(),
        spread,
        member_store,
        config.gossip_interval,
        env.rng.clone(),
        rx,
    ));
    tracing::info!(node = %me.id, %addr, state = me.state.as_str(), version = me.version, "node started");
    Ok(Node {
        id: me.id,
        membership,
        handler,
        gate,
        reloader,
        metrics,
        store,
        store_closed,
        liveness,
        hints,
        anti_entropy,
        transport,
        shutdown,
        tasks,
    })
}
