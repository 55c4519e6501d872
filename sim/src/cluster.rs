//! A simulated cluster: real nodes ([`kvorum_node::wiring::assemble`])
//! on in-memory engines, the in-memory network, and virtual clocks, all in
//! one thread.

use crate::clock::SimClock;
use crate::net::SimNet;
use kvorum_client::CertificateStatus;
use kvorum_node::cluster::member::MemberState;
use kvorum_node::storage::{MemoryEngine, StorageError};
use kvorum_node::util::rng::NodeRng;
use kvorum_node::util::workers::Workers;
use kvorum_node::util::NodeEnv;
use kvorum_node::wiring::{self, Node, Parts};
use kvorum_node::NodeConfig;
use kvorum_ring::NodeId;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where a machine is in the cluster's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not started yet: a node that may join later.
    Spare,
    /// A member (running or crashed, to be restarted).
    Member,
    /// Asked to leave; stopped once it has left.
    Leaving,
    /// Crashed, to be removed by the others.
    Removing,
    /// Left or removed: never started again.
    Gone,
}

/// One simulated machine: its disk, its clock, and the node on them (if
/// it runs).
pub struct Machine {
    /// Where it is in the cluster's life.
    pub status: Status,
    /// The node's id.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
    /// Its config.
    pub config: NodeConfig,
    /// Its disk.
    pub engine: Arc<MemoryEngine>,
    /// Its clock.
    pub clock: Arc<SimClock>,
    /// The running node, if it runs.
    pub node: Option<Node>,
    /// Starts so far (each draws a new seed).
    starts: u64,
}

/// The simulated cluster.
pub struct SimCluster {
    /// The network.
    pub net: SimNet,
    /// The machines, `n1` first.
    pub machines: Vec<Machine>,
    seed: u64,
}

/// Settings of a simulated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Nodes that form the cluster.
    pub nodes: usize,
    /// Machines that may join later.
    pub spares: usize,
    /// Replicas per key.
    pub n: u8,
    /// Read quorum.
    pub r: u8,
    /// Write quorum.
    pub w: u8,
}

fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, i as u8], 7401))
}

/// The config of node `i` (1-based): quick timings, so that a few virtual
/// minutes see many gossip rounds, exchanges and reaping rounds.
fn config(i: usize, shape: Shape, seeds: &[SocketAddr]) -> NodeConfig {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "id = \"n{i}\"\nlisten = \"{}\"\nseeds = [{}]\n\
         gossip_interval_ms = 200\npeer_connect_timeout_ms = 500\n\
         [replication]\nn = {}\nr = {}\nw = {}\nrequest_timeout_ms = 2000\n\
         [anti_entropy]\ninterval_ms = 1000\ntombstone_grace_secs = 16\n\
         [hints]\nttl_secs = 10\ndelivery_interval_ms = 500\n\
         [transfers]\ninterval_ms = 200\n\
         [limits]\nmax_request_timeout_ms = 2000\nrequest_read_timeout_ms = 1000\n\
         [metrics]\nenabled = false\n\
         [tls]\nca = \"unused\"\ncert = \"unused\"\nkey = \"unused\"\n",
        addr_of(i),
        seeds.join(", "),
        shape.n,
        shape.r,
        shape.w,
    );
    // The simulator reads no file the config names: no TLS, no disk.
    NodeConfig::parse(&text, Path::new("/nonexistent")).expect("the simulator's config parses")
}

impl SimCluster {
    /// Machines for `shape`, none started yet.
    pub fn new(shape: Shape, seed: u64, net: SimNet) -> Self {
        let start = Instant::now();
        let founders: Vec<SocketAddr> = (1..=shape.nodes).map(addr_of).collect();
        let machines = (1..=shape.nodes + shape.spares)
            .map(|i| {
                // Founders join one after another through n1; a spare
                // knows every founder.
                let seeds = match i {
                    1 => vec![],
                    i if i <= shape.nodes => vec![addr_of(1)],
                    _ => founders.clone(),
                };
                let id = NodeId::new(format!("n{i}"));
                net.add_host(&id, addr_of(i));
                Machine {
                    status: if i <= shape.nodes {
                        Status::Member
                    } else {
                        Status::Spare
                    },
                    id,
                    addr: addr_of(i),
                    config: config(i, shape, &seeds),
                    engine: Arc::new(MemoryEngine::new()),
                    clock: SimClock::new(start),
                    node: None,
                    starts: 0,
                }
            })
            .collect();
        Self {
            net,
            machines,
            seed,
        }
    }

    /// Starts machine `i` (0-based) on what its disk holds.
    pub async fn start(&mut self, i: usize) -> Result<(), StorageError> {
        let seed = self.seed;
        let net = self.net.clone();
        let m = &mut self.machines[i];
        m.starts += 1;
        let rng = NodeRng::seeded(seed ^ ((i as u64 + 1) << 32) ^ (m.starts << 48));
        let id = m.id.clone();
        let transport_net = net.clone();
        let node = wiring::assemble(Parts {
            config: m.config.clone(),
            engine: m.engine.clone(),
            addr: m.addr,
            transport: Box::new(move |_, _| transport_net.transport(&id)),
            env: NodeEnv {
                clock: m.clock.clone(),
                rng,
                workers: Workers::Tasks,
            },
            certificate: CertificateStatus {
                node: m.id.as_str().to_string(),
                serial: "sim".into(),
                not_after: i64::MAX,
            },
        })
        .await?;
        net.attach(&m.id, node.handler().clone());
        m.node = Some(node);
        Ok(())
    }

    /// Machine `i` crashes. With `power_loss`, what it had not synced is
    /// lost (a machine crash); without, everything committed survives (a
    /// `kill -9` of the process).
    pub fn crash(&mut self, i: usize, power_loss: bool) {
        let m = &mut self.machines[i];
        self.net.crash(&m.id);
        if let Some(node) = m.node.take() {
            node.abort();
        }
        let next = if power_loss {
            m.engine.crash()
        } else {
            m.engine.kill()
        };
        m.engine = Arc::new(next);
    }

    /// Machine `i` crashes and loses its disk: it restarts empty, under
    /// the same id.
    pub fn wipe(&mut self, i: usize) {
        self.crash(i, true);
        self.machines[i].engine = Arc::new(MemoryEngine::new());
    }

    /// Stops machine `i` cleanly (its store syncs and records a clean
    /// close).
    pub async fn stop(&mut self, i: usize) {
        let m = &mut self.machines[i];
        if let Some(node) = m.node.take() {
            self.net.crash(&m.id);
            node.shutdown().await;
        }
    }

    /// Which two running members' anti-entropy trees of each other
    /// differ, if any do (equal trees: they hold the same states of the
    /// keys they share).
    pub fn trees_differ(&self) -> Option<String> {
        use std::collections::{BTreeMap, BTreeSet};
        let nodes: Vec<_> = self
            .members()
            .into_iter()
            .filter_map(|i| self.machines[i].node.as_ref())
            .collect();
        let member_ids: BTreeSet<_> = nodes.iter().map(|n| n.id().clone()).collect();
        let roots: BTreeMap<_, BTreeMap<_, _>> = nodes
            .iter()
            .map(|n| (n.id().clone(), n.tree_roots().into_iter().collect()))
            .collect();
        for (a, of_a) in &roots {
            for (b, root) in of_a.iter().filter(|(b, _)| member_ids.contains(*b)) {
                if roots.get(b).and_then(|r| r.get(a)) != Some(root) {
                    return Some(format!("trees of {a} and {b} differ"));
                }
            }
        }
        None
    }

    /// The machines that are members (running or not).
    pub fn members(&self) -> Vec<usize> {
        (0..self.machines.len())
            .filter(|i| self.machines[*i].status == Status::Member)
            .collect()
    }

    /// The members whose node runs.
    pub fn running_members(&self) -> Vec<usize> {
        self.members()
            .into_iter()
            .filter(|i| self.machines[*i].node.is_some())
            .collect()
    }

    /// Machine `i`'s state in its own node's view (`None` if it is down).
    pub fn own_state(&self, i: usize) -> Option<MemberState> {
        let m = &self.machines[i];
        let node = m.node.as_ref()?;
        node.view().members.get(&m.id).map(|info| info.state)
    }

    /// Waits (virtual time) until [`SimCluster::settled`]; false after
    /// `limit`.
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.settled() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether every member runs and sees exactly the members, all up,
    /// with no ring change pending.
    pub fn settled(&self) -> bool {
        let members = self.members();
        members.iter().all(|&i| {
            let Some(n) = self.machines[i].node.as_ref() else {
                return false;
            };
            let view = n.view();
            let live: Vec<_> = view
                .members
                .values()
                .filter(|m| m.state != MemberState::Removed)
                .collect();
            live.len() == members.len()
                && live.iter().all(|m| m.state == MemberState::Up)
                && !view.in_transition()
                && view.prev_read_ring.is_none()
        })
    }
}
