//! The in-memory network: every node's [`Transport`], with per-link faults.
//!
//! A call is encoded with postcard (as on the wire), may be dropped,
//! delayed (uniformly between a link's bounds, which also reorders calls),
//! duplicated (the copy is served too, its answer discarded; every request
//! but a forwarded client write, see [`duplicable`]), or blocked
//! by a partition (one-way or both ways) or a node's stalled gossip, on the way there and on the way
//! back. A lost request or answer costs the caller its whole timeout, as on
//! QUIC; a call to a crashed node fails as unreachable; a call whose
//! target crashed while serving it fails as lost. Every fault injected is
//! counted ([`FaultCounts`]), so a test can show that it took effect.

use kvorum_client::proto::{Request, Response};
use kvorum_node::net::identity::{Caller, Role};
use kvorum_node::net::Handler;
use kvorum_node::rpc::peer::{ClusterRequest, PeerRequest, PeerResponse};
use kvorum_node::rpc::transport::{Transport, TransportError};
use kvorum_node::util::BoxFuture;
use kvorum_ring::NodeId;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// How one direction of a link behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Share of messages dropped.
    pub loss: f64,
    /// Share of requests delivered twice.
    pub duplicate: f64,
    /// Shortest delay of a message.
    pub delay_min: Duration,
    /// Longest delay of a message (uniform between the two).
    pub delay_max: Duration,
    /// Every message is dropped (a partition).
    pub blocked: bool,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            delay_min: Duration::from_micros(100),
            delay_max: Duration::from_micros(500),
            blocked: false,
        }
    }
}

/// Faults the network injected, since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Messages sent (requests and answers).
    pub messages: u64,
    /// Messages dropped by loss.
    pub dropped: u64,
    /// Messages dropped by a partition.
    pub blocked: u64,
    /// Requests delivered twice.
    pub duplicated: u64,
    /// Messages delayed by more than the default link's longest delay.
    pub delayed: u64,
    /// Calls to a crashed or absent node.
    pub unreachable: u64,
    /// Calls whose target crashed while serving them.
    pub lost_in_crash: u64,
    /// Requests held by a paused node.
    pub held_by_pause: u64,
}

struct Host {
    addr: SocketAddr,
    handler: Option<Arc<dyn Handler>>,
    /// Bumped at each crash: a call that started against an older
    /// generation is lost, and a transport of an older generation (a
    /// crashed node's leftover task) reaches nobody.
    generation: u64,
    /// A paused node holds requests until then.
    paused_until: Option<Instant>,
}

/// Picks requests to drop: (from, to, request) → drop it.
pub type Filter = Arc<dyn Fn(&NodeId, &NodeId, &PeerRequest) -> bool + Send + Sync>;

struct State {
    filter: Option<Filter>,
    hosts: BTreeMap<NodeId, Host>,
    base: Link,
    links: BTreeMap<(NodeId, NodeId), Link>,
    /// Nodes whose gossip exchanges are lost, both ways.
    stalled: std::collections::BTreeSet<NodeId>,
    rng: StdRng,
    counts: FaultCounts,
}

/// What happens to one message.
enum Fate {
    Lost,
    After(Duration),
}

impl State {
    fn link(&self, from: &NodeId, to: &NodeId) -> Link {
        self.links
            .get(&(from.clone(), to.clone()))
            .copied()
            .unwrap_or(self.base)
    }

    fn fate(&mut self, from: &NodeId, to: &NodeId) -> Fate {
        let link = self.link(from, to);
        self.counts.messages += 1;
        if link.blocked {
            self.counts.blocked += 1;
            return Fate::Lost;
        }
        if link.loss > 0.0 && self.rng.random::<f64>() < link.loss {
            self.counts.dropped += 1;
            return Fate::Lost;
        }
        Fate::After(self.delay(link))
    }

    fn delay(&mut self, link: Link) -> Duration {
        let (lo, hi) = (
            link.delay_min.as_micros() as u64,
            link.delay_max.as_micros() as u64,
        );
        let d = if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        };
        if d > Link::default().delay_max.as_micros() as u64 {
            self.counts.delayed += 1;
        }
        Duration::from_micros(d)
    }

    fn duplicate(&mut self, from: &NodeId, to: &NodeId) -> Option<Duration> {
        let link = self.link(from, to);
        if link.duplicate > 0.0 && self.rng.random::<f64>() < link.duplicate {
            self.counts.duplicated += 1;
            return Some(self.delay(link));
        }
        None
    }
}

/// Whether the network may deliver `req` twice. QUIC delivers a stream
/// once or fails it, and a node resends a request only when it was never
/// sent (a forward) or when a second copy merges away (replica writes,
/// hints, gossip, anti-entropy, transfers: all idempotent). A duplicated
/// forward would coordinate a counter increment twice, which the real
/// transport never does (the swarm found that when it duplicated them:
/// docs/testing.md), so forwards are never duplicated.
pub fn duplicable(req: &PeerRequest) -> bool {
    !matches!(req, PeerRequest::Forward(_))
}

/// The simulated network. Cheap to clone.
#[derive(Clone)]
pub struct SimNet(Arc<Mutex<State>>);

/// The caller a node's certificate would make it.
fn node_caller(id: &NodeId) -> Caller {
    Caller {
        role: Role::Node,
        name: Some(id.as_str().to_string()),
        serial: format!("sim-{id}"),
        not_after: i64::MAX,
    }
}

/// The simulated clients' caller: an operator certificate (data and admin
/// requests).
fn client_caller() -> Caller {
    Caller {
        role: Role::Admin,
        name: Some("sim".into()),
        serial: "sim-client".into(),
        not_after: i64::MAX,
    }
}

/// The id of the simulated clients, as a link end.
pub fn clients() -> NodeId {
    NodeId::new("clients")
}

impl SimNet {
    /// A network whose own randomness (losses, delays) comes from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(State {
            filter: None,
            hosts: BTreeMap::new(),
            base: Link::default(),
            links: BTreeMap::new(),
            stalled: Default::default(),
            rng: StdRng::seed_from_u64(seed),
            counts: FaultCounts::default(),
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers node `id` at `addr` (before it starts, so that its
    /// transport knows its generation).
    pub fn add_host(&self, id: &NodeId, addr: SocketAddr) {
        self.state().hosts.entry(id.clone()).or_insert(Host {
            addr,
            handler: None,
            generation: 0,
            paused_until: None,
        });
    }

    /// Node `id`'s transport, for its current generation.
    pub fn transport(&self, id: &NodeId) -> Arc<dyn Transport> {
        let generation = self.state().hosts.get(id).map_or(0, |h| h.generation);
        Arc::new(SimTransport {
            net: self.clone(),
            me: id.clone(),
            generation,
        })
    }

    /// Node `id` serves with `handler` from now on.
    pub fn attach(&self, id: &NodeId, handler: Arc<dyn Handler>) {
        if let Some(h) = self.state().hosts.get_mut(id) {
            h.handler = Some(handler);
        }
    }

    /// Node `id` crashed: calls to it fail, calls it was serving are lost,
    /// and its old transports reach nobody.
    pub fn crash(&self, id: &NodeId) {
        if let Some(h) = self.state().hosts.get_mut(id) {
            h.handler = None;
            h.generation += 1;
            h.paused_until = None;
        }
    }

    /// Node `id` holds every request until `until` (a paused process).
    pub fn pause(&self, id: &NodeId, until: Instant) {
        if let Some(h) = self.state().hosts.get_mut(id) {
            h.paused_until = Some(until);
        }
    }

    /// Drops every request `filter` picks (a scenario's precise fault: say,
    /// every tombstone removal sent to one node); `None` stops it. Counted
    /// as blocked.
    pub fn drop_requests(&self, filter: Option<Filter>) {
        self.state().filter = filter;
    }

    /// Node `id`'s membership falls behind: every gossip exchange it
    /// sends or would receive is lost (counted as blocked), while it still
    /// serves, answers pings and so counts as live. A node whose gossip
    /// task is starved, or whose gossip peers keep failing, looks so to
    /// the others. Undone by [`SimNet::heal`].
    pub fn stall_gossip(&self, id: &NodeId) {
        self.state().stalled.insert(id.clone());
    }

    /// Every link not set otherwise behaves as `link`.
    pub fn set_base(&self, link: Link) {
        self.state().base = link;
    }

    /// Messages from `from` to `to` behave as `link`.
    pub fn set_link(&self, from: &NodeId, to: &NodeId, link: Link) {
        self.state().links.insert((from.clone(), to.clone()), link);
    }

    /// Blocks every message from a node of `a` to a node of `b`, and back
    /// unless `one_way`.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId], one_way: bool) {
        let mut s = self.state();
        let base = s.base;
        for x in a {
            for y in b {
                let blocked = Link {
                    blocked: true,
                    ..base
                };
                s.links.insert((x.clone(), y.clone()), blocked);
                if !one_way {
                    s.links.insert((y.clone(), x.clone()), blocked);
                }
            }
        }
    }

    /// Every link back to the default: no loss, no partition, short delays.
    pub fn heal(&self) {
        let mut s = self.state();
        s.links.clear();
        s.stalled.clear();
        s.base = Link::default();
        for h in s.hosts.values_mut() {
            h.paused_until = None;
        }
    }

    /// The faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.state().counts
    }

    /// The id of the node at `addr`.
    fn id_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.state()
            .hosts
            .iter()
            .find(|(_, h)| h.addr == addr)
            .map(|(id, _)| id.clone())
    }

    /// Where node `to` is now: its handler and generation, or `None` if
    /// it is down. Waits while it is paused.
    async fn reach(&self, to: &NodeId) -> Option<(Arc<dyn Handler>, u64)> {
        loop {
            let paused = {
                let mut s = self.state();
                let now = Instant::now();
                let h = s.hosts.get(to)?;
                match h.paused_until {
                    Some(t) if t > now => {
                        s.counts.held_by_pause += 1;
                        Some(t)
                    }
                    _ => None,
                }
            };
            match paused {
                Some(t) => tokio::time::sleep_until(t).await,
                None => {
                    let s = self.state();
                    let h = s.hosts.get(to)?;
                    return Some((h.handler.clone()?, h.generation));
                }
            }
        }
    }

    fn generation(&self, id: &NodeId) -> Option<u64> {
        self.state().hosts.get(id).map(|h| h.generation)
    }

    /// One peer call from `from` to `to`, with every fault of their links.
    async fn deliver(
        &self,
        from: &NodeId,
        to: &NodeId,
        req: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, TransportError> {
        let deadline = Instant::now() + timeout;
        let bytes =
            postcard::to_stdvec(&req).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let there = {
            let mut s = self.state();
            let stalled = matches!(req, PeerRequest::Cluster(ClusterRequest::Gossip { .. }))
                && (s.stalled.contains(from) || s.stalled.contains(to));
            let filtered = s.filter.as_ref().is_some_and(|f| f(from, to, &req));
            if stalled || filtered {
                s.counts.messages += 1;
                s.counts.blocked += 1;
                Fate::Lost
            } else {
                s.fate(from, to)
            }
        };
        travel(there, deadline).await?;
        let Some((handler, generation)) = self.reach(to).await else {
            self.state().counts.unreachable += 1;
            return Err(TransportError::Unreachable(format!("{to} is down")));
        };
        let again = if duplicable(&req) {
            self.state().duplicate(from, to)
        } else {
            None
        };
        if let Some(again) = again {
            let (copy, handler, caller) = (bytes.clone(), handler.clone(), node_caller(from));
            tokio::spawn(async move {
                tokio::time::sleep(again).await;
                if let Ok(req) = postcard::from_bytes::<PeerRequest>(&copy) {
                    let _ = handler.peer(&caller, req).await;
                }
            });
        }
        let req: PeerRequest =
            postcard::from_bytes(&bytes).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let caller = node_caller(from);
        let Ok(resp) = tokio::time::timeout_at(deadline, handler.peer(&caller, req)).await else {
            return Err(TransportError::Timeout);
        };
        drop(handler);
        if self.generation(to) != Some(generation) {
            self.state().counts.lost_in_crash += 1;
            return Err(TransportError::Lost(format!("{to} crashed")));
        }
        let back = self.state().fate(to, from);
        travel(back, deadline).await?;
        let bytes =
            postcard::to_stdvec(&resp).map_err(|e| TransportError::Protocol(e.to_string()))?;
        postcard::from_bytes(&bytes).map_err(|e| TransportError::Protocol(e.to_string()))
    }

    /// A client request to node `to` (clients sit on links of their own,
    /// [`clients`]); `None` if it failed or timed out (the client cannot
    /// tell whether it was applied).
    pub async fn client_call(
        &self,
        to: &NodeId,
        req: Request,
        timeout: Duration,
    ) -> Option<Response> {
        let deadline = Instant::now() + timeout;
        let me = clients();
        let bytes = postcard::to_stdvec(&req).ok()?;
        let Fate::After(delay) = self.state().fate(&me, to) else {
            tokio::time::sleep_until(deadline).await;
            return None;
        };
        tokio::time::sleep(delay).await;
        let (handler, generation) = self.reach(to).await?;
        let req: Request = postcard::from_bytes(&bytes).ok()?;
        let resp = tokio::time::timeout_at(deadline, handler.client(&client_caller(), req))
            .await
            .ok()?;
        drop(handler);
        if self.generation(to) != Some(generation) {
            return None;
        }
        let Fate::After(delay) = self.state().fate(to, &me) else {
            tokio::time::sleep_until(deadline).await;
            return None;
        };
        tokio::time::sleep(delay).await;
        let bytes = postcard::to_stdvec(&resp).ok()?;
        postcard::from_bytes(&bytes).ok()
    }
}

/// A message on its way: it arrives after its delay, or the caller waits
/// until its deadline (a lost message, or one later than the deadline).
async fn travel(fate: Fate, deadline: Instant) -> Result<(), TransportError> {
    match fate {
        Fate::After(delay) if Instant::now() + delay < deadline => {
            tokio::time::sleep(delay).await;
            Ok(())
        }
        _ => {
            tokio::time::sleep_until(deadline).await;
            Err(TransportError::Timeout)
        }
    }
}

/// One node's end of the network.
struct SimTransport {
    net: SimNet,
    me: NodeId,
    generation: u64,
}

impl SimTransport {
    /// Whether this transport's node is still the running one.
    fn alive(&self) -> bool {
        self.net.generation(&self.me) == Some(self.generation)
    }
}

impl Transport for SimTransport {
    fn call(
        &self,
        to: &NodeId,
        req: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        let to = to.clone();
        Box::pin(async move {
            if !self.alive() {
                return Err(TransportError::Unreachable("this node crashed".into()));
            }
            self.net.deliver(&self.me, &to, req, timeout).await
        })
    }

    fn call_addr(
        &self,
        addr: SocketAddr,
        req: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        Box::pin(async move {
            if !self.alive() {
                return Err(TransportError::Unreachable("this node crashed".into()));
            }
            let Some(to) = self.net.id_at(addr) else {
                return Err(TransportError::Unreachable(format!("nobody at {addr}")));
            };
            self.net.deliver(&self.me, &to, req, timeout).await
        })
    }
}
