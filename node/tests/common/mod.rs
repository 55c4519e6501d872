//! A cluster of real nodes in one process: real QUIC on 127.0.0.1 (ephemeral
//! ports), real fjall databases in a temp dir, certificates made fresh.
#![allow(dead_code)]

pub mod procs;

use kvorum_client::{Admin, Client, TlsMaterial};
use kvorum_node::cluster::member::MemberState;
use kvorum_node::net::certs;
use kvorum_node::{NodeConfig, RunningNode};
use std::{net::SocketAddr, path::Path, time::Duration};

/// Bound on any one test body.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(90);

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Option<RunningNode>>,
    pub addrs: Vec<SocketAddr>,
    pub ca: certs::Pem,
    /// Each node's config, with its actual listen address (for restarts).
    pub configs: Vec<NodeConfig>,
    /// Faults every node's socket obeys, if the cluster was started with them.
    pub faults: Option<std::sync::Arc<kvorum_node::net::faults::Faults>>,
}

/// Writes a CA, a client and an admin certificate and node certificates
/// n1..n<count> into `dir`.
pub fn make_certs(dir: &Path, count: usize) -> certs::Pem {
    let ca = certs::make_ca("test").unwrap();
    certs::write(dir, "ca", &ca).unwrap();
    certs::write(dir, "client", &certs::make_client(&ca, "test").unwrap()).unwrap();
    certs::write(dir, "admin", &certs::make_admin(&ca, "test").unwrap()).unwrap();
    for i in 1..=count {
        let id = format!("n{i}");
        certs::write(dir, &id, &certs::make_node(&ca, &id, &[]).unwrap()).unwrap();
    }
    ca
}

/// A node config for node `i` (1-based) with test-friendly timings.
pub fn config(
    dir: &Path,
    i: usize,
    listen: SocketAddr,
    seeds: &[SocketAddr],
    extra: &str,
) -> NodeConfig {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    // Quick transfer steps, unless the test sets its own.
    let transfers = if extra.contains("[transfers]") {
        ""
    } else {
        "[transfers]\ninterval_ms = 100\n"
    };
    let text = format!(
        "id = \"n{i}\"\nlisten = \"{listen}\"\nseeds = [{}]\ndata_dir = \"data/n{i}\"\n\
         gossip_interval_ms = 100\npeer_connect_timeout_ms = 500\n{extra}\n\
         [tls]\nca = \"ca.pem\"\ncert = \"n{i}.pem\"\nkey = \"n{i}.key\"\n{transfers}",
        seeds.join(", ")
    );
    NodeConfig::parse(&text, dir).expect("test config parses")
}

impl TestCluster {
    /// Starts `count` nodes; `extra` is TOML added to every config (top-level
    /// keys, or tables placed after them). Waits until every node knows every member.
    pub async fn start(count: usize, extra: &str) -> Self {
        Self::start_with_faults(count, extra, None).await
    }

    /// Like [`TestCluster::start`], every node's UDP socket obeying `faults`.
    pub async fn start_with_faults(
        count: usize,
        extra: &str,
        faults: Option<std::sync::Arc<kvorum_node::net::faults::Faults>>,
    ) -> Self {
        Self::start_skewed(count, extra, faults, &[]).await
    }

    /// [`TestCluster::start_with_faults`], node `i` (from 1) with its wall
    /// clock `offsets[i - 1]` ms off the system's (0 past the list's end;
    /// a restarted node runs on the system clock).
    pub async fn start_skewed(
        count: usize,
        extra: &str,
        faults: Option<std::sync::Arc<kvorum_node::net::faults::Faults>>,
        offsets: &[i64],
    ) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), count, extra, faults, offsets).await
    }

    /// [`TestCluster::start_skewed`], its data, configs and certificates
    /// in `dir` (a filesystem of the test's own, say).
    pub async fn start_in(
        dir: tempfile::TempDir,
        count: usize,
        extra: &str,
        faults: Option<std::sync::Arc<kvorum_node::net::faults::Faults>>,
        offsets: &[i64],
    ) -> Self {
        let ca = make_certs(dir.path(), count);
        let mut nodes = Vec::new();
        let mut addrs: Vec<SocketAddr> = Vec::new();
        let mut configs = Vec::new();
        for i in 1..=count {
            let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
            let mut cfg = config(dir.path(), i, any, &addrs[..addrs.len().min(1)], extra);
            let offset = offsets.get(i - 1).copied().unwrap_or(0);
            let node =
                kvorum_node::start::start_with_clock_offset(cfg.clone(), faults.clone(), offset)
                    .await
                    .expect("node starts");
            addrs.push(node.addr());
            cfg.listen = node.addr();
            configs.push(cfg);
            nodes.push(Some(node));
        }
        let c = Self {
            dir,
            nodes,
            addrs,
            ca,
            configs,
            faults,
        };
        // Nodes join one after another: allow for each.
        c.wait_for_members_within(count, Duration::from_secs(20 + 4 * count as u64))
            .await;
        c.grant_every_bucket().await;
        c
    }

    /// Grants every client certificate read and write on every bucket (a
    /// new cluster grants nothing), confirmed by every member.
    pub async fn grant_every_bucket(&self) {
        let admin = self.admin();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let all = kvorum_client::Grant::every_bucket("*");
        while let Err(e) = admin.grant(all.clone()).await {
            assert!(tokio::time::Instant::now() < deadline, "grant: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        admin.close().await;
    }

    /// Starts `count` nodes, node i in zone `zones[i % zones.len()]`.
    pub async fn start_zoned(count: usize, zones: &[&str], extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_certs(dir.path(), count);
        let mut c = Self {
            dir,
            nodes: Vec::new(),
            addrs: Vec::new(),
            ca,
            configs: Vec::new(),
            faults: None,
        };
        for i in 0..count {
            c.add_node(Some(zones[i % zones.len()]), extra).await;
        }
        c.wait_for_members_within(count, Duration::from_secs(20 + 4 * count as u64))
            .await;
        c.grant_every_bucket().await;
        c
    }

    /// Starts one more node (n<k>, with a fresh certificate) that joins
    /// through the first node; returns its 1-based index.
    pub async fn add_node(&mut self, zone: Option<&str>, extra: &str) -> usize {
        let seeds: Vec<SocketAddr> = self.addrs.iter().take(1).copied().collect();
        self.add_node_with_seeds(zone, extra, &seeds).await
    }

    /// [`TestCluster::add_node`] with these seeds (none: it founds a
    /// cluster of its own).
    pub async fn add_node_with_seeds(
        &mut self,
        zone: Option<&str>,
        extra: &str,
        seeds: &[SocketAddr],
    ) -> usize {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        self.add_node_on(any, zone, extra, seeds).await
    }

    /// [`TestCluster::add_node_with_seeds`], listening on `listen`.
    pub async fn add_node_on(
        &mut self,
        listen: SocketAddr,
        zone: Option<&str>,
        extra: &str,
        seeds: &[SocketAddr],
    ) -> usize {
        let k = self.nodes.len() + 1;
        let id = format!("n{k}");
        if !self.dir.path().join(format!("{id}.pem")).exists() {
            certs::write(
                self.dir.path(),
                &id,
                &certs::make_node(&self.ca, &id, &[]).unwrap(),
            )
            .unwrap();
        }
        let zone = zone
            .map(|z| format!("zone = \"{z}\"\n"))
            .unwrap_or_default();
        let mut cfg = config(self.dir.path(), k, listen, seeds, &format!("{zone}{extra}"));
        let node = kvorum_node::start::start_with_faults(cfg.clone(), self.faults.clone())
            .await
            .expect("node starts");
        self.addrs.push(node.addr());
        cfg.listen = node.addr();
        self.configs.push(cfg);
        self.nodes.push(Some(node));
        k
    }

    pub async fn wait_for_members(&self, count: usize) {
        self.wait_for_members_within(count, Duration::from_secs(20))
            .await
    }

    /// [`TestCluster::wait_for_members`] with another bound.
    pub async fn wait_for_members_within(&self, count: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Every node knows every member, sees each up (joins done) and
            // has seen the last ring change settle: until then writes also
            // keep a quorum in the ring before it (a node a round behind
            // reads there), which a node stopped right away could make
            // impossible (two tests failed so: 'needed 2, succeeded 1').
            let done = self.nodes.iter().flatten().all(|n| {
                let m = n.members();
                m.len() == count
                    && m.iter().all(|m| m.state == MemberState::Up)
                    && n.view().prev_read_ring.is_none()
            });
            if done {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "members did not converge"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a write at W = all nodes succeeds through every running
    /// node (each can reach every other: reconnect backoffs have passed).
    pub async fn wait_all_reachable(&self) {
        let running = self.nodes.iter().flatten().count() as u8;
        let n = running.min(self.configs[0].replication.n);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for (i, node) in self.nodes.iter().enumerate() {
            if node.is_none() {
                continue;
            }
            let client = self.client_of(&[self.addrs[i]]);
            let opts = kvorum_client::WriteOptions::w(n).timeout_ms(1000);
            let empty = kvorum_client::CausalContext::empty();
            while client
                .put_with("default", b"probe", b"", &empty, opts)
                .await
                .is_err()
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cluster not fully reachable"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    pub fn client_tls(&self) -> TlsMaterial {
        let d = self.dir.path();
        TlsMaterial::from_dir(d, "client").unwrap()
    }

    pub fn admin_tls(&self) -> TlsMaterial {
        let d = self.dir.path();
        TlsMaterial::from_dir(d, "admin").unwrap()
    }

    pub fn node_tls(&self, i: usize) -> TlsMaterial {
        let d = self.dir.path();
        TlsMaterial::from_files(
            d.join("ca.pem"),
            d.join(format!("n{i}.pem")),
            d.join(format!("n{i}.key")),
        )
        .unwrap()
    }

    /// A client of every node, with short timeouts.
    /// A client of every node, routing each request to a replica of its
    /// partition (token-aware, as applications use it).
    pub fn client(&self) -> Client {
        Client::builder(self.addrs.iter().copied(), self.client_tls())
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    }

    /// A client that sends through the nodes at `addrs` only, in turn
    /// (round-robin from the first; token-aware routing off, which would
    /// send to replicas the test did not name).
    pub fn client_of(&self, addrs: &[SocketAddr]) -> Client {
        Client::builder(addrs.iter().copied(), self.client_tls())
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(Duration::from_secs(2))
            .token_aware(false)
            .build()
            .unwrap()
    }

    /// An admin handle on every node (operator calls).
    pub fn admin(&self) -> Admin {
        self.admin_of(&self.addrs)
    }

    /// An admin handle on the nodes at `addrs`.
    pub fn admin_of(&self, addrs: &[SocketAddr]) -> Admin {
        Admin::builder(addrs.iter().copied(), self.admin_tls())
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    }

    /// Stops node `i` (1-based) gracefully.
    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.nodes[i - 1].take() {
            n.shutdown().await;
        }
    }

    /// Starts node `i` (1-based) again on its address and data directory.
    pub async fn restart(&mut self, i: usize) {
        self.stop(i).await;
        // In one process the old endpoint's UDP socket is released a moment
        // after shutdown (its last handles are in tasks that are ending).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let node = loop {
            match kvorum_node::start::start_with_faults(
                self.configs[i - 1].clone(),
                self.faults.clone(),
            )
            .await
            {
                Ok(node) => break node,
                // The old node's socket, or its storage's lock, is
                // released a moment after shutdown in one process.
                Err(e)
                    if (e.to_string().contains("in use")
                        || e.to_string().starts_with("storage"))
                        && tokio::time::Instant::now() < deadline =>
                {
                    eprintln!("restart of n{i}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("node restarts: {e}"),
            }
        };
        self.nodes[i - 1] = Some(node);
    }

    pub async fn shutdown(mut self) {
        for i in 1..=self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// Sends raw bytes as one request on the client ALPN and returns the raw answer.
pub async fn raw_request(
    addr: SocketAddr,
    tls: &TlsMaterial,
    alpn: &[u8],
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let mut ep =
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
    let cfg = kvorum_client::tls::quic_client_config(tls, alpn, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    ep.set_default_client_config(cfg);
    let result = async {
        let conn = ep
            .connect(addr, kvorum_client::proto::NODE_CERT_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let why = |e: &dyn std::fmt::Display| match conn.close_reason() {
            Some(reason) => format!("{e}: {reason}"),
            None => e.to_string(),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| why(&e))?;
        send.write_all(bytes).await.map_err(|e| why(&e))?;
        send.finish().map_err(|e| why(&e))?;
        recv.read_to_end(16 << 20).await.map_err(|e| why(&e))
    };
    let out = tokio::time::timeout(Duration::from_secs(10), result)
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    ep.close(0u32.into(), b"");
    out
}

/// Inspects replicas directly over the peer protocol (which repairs nothing),
/// with one cached connection per node.
pub struct PeerProbe {
    endpoint: quinn::Endpoint,
    conns: std::sync::Mutex<std::collections::HashMap<SocketAddr, quinn::Connection>>,
}

impl PeerProbe {
    pub fn new(tls: &TlsMaterial) -> Self {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let cfg = kvorum_client::tls::quic_client_config(
            tls,
            kvorum_client::proto::ALPN_PEER,
            Duration::from_secs(10),
        )
        .unwrap();
        endpoint.set_default_client_config(cfg);
        Self {
            endpoint,
            conns: Default::default(),
        }
    }

    async fn conn(&self, addr: SocketAddr) -> quinn::Connection {
        if let Some(c) = self.conns.lock().unwrap().get(&addr) {
            if c.close_reason().is_none() {
                return c.clone();
            }
        }
        let c = self
            .endpoint
            .connect(addr, kvorum_client::proto::NODE_CERT_NAME)
            .unwrap()
            .await
            .unwrap();
        self.conns.lock().unwrap().insert(addr, c.clone());
        c
    }

    /// Sends one peer request to node `addr`.
    pub async fn call(
        &self,
        addr: SocketAddr,
        req: &kvorum_node::rpc::peer::PeerRequest,
    ) -> kvorum_node::rpc::peer::PeerResponse {
        self.call_in(addr, req, kvorum_node::rpc::peer::PEER_PROTOCOL_VERSION)
            .await
    }

    /// Sends one peer request to node `addr` in peer protocol `version`.
    pub async fn call_in(
        &self,
        addr: SocketAddr,
        req: &kvorum_node::rpc::peer::PeerRequest,
        version: u16,
    ) -> kvorum_node::rpc::peer::PeerResponse {
        let conn = self.conn(addr).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let frame = kvorum_client::proto::encode_frame(version, req);
        send.write_all(&frame).await.unwrap();
        send.finish().unwrap();
        let bytes = recv.read_to_end(64 << 20).await.unwrap();
        kvorum_client::proto::decode_frame(version, &bytes).unwrap()
    }

    /// The state node `addr` stores for storage key `key`.
    pub async fn stored(
        &self,
        addr: SocketAddr,
        key: &[u8],
    ) -> Option<kvorum_node::data::register::Register> {
        match self.stored_state(addr, key).await {
            None => None,
            Some(kvorum_node::data::value::State {
                body: kvorum_node::data::value::Body::Register(r),
                ..
            }) => Some(r),
            Some(other) => panic!("not a register: {other:?}"),
        }
    }

    /// The state (of any type) node `addr` stores for storage key `key`.
    pub async fn stored_state(
        &self,
        addr: SocketAddr,
        key: &[u8],
    ) -> Option<kvorum_node::data::value::State> {
        use kvorum_node::rpc::peer::{PeerRequest, PeerResponse, ReplicaRequest, ReplicaResponse};
        let read = PeerRequest::Replica(ReplicaRequest::Read { key: key.to_vec() });
        match self.call(addr, &read).await {
            PeerResponse::Replica(ReplicaResponse::State(s)) => s,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The branch hashes of node `addr`'s anti-entropy tree shared with `peer`.
    pub async fn branches(&self, addr: SocketAddr, peer: &str) -> Vec<u64> {
        use kvorum_node::rpc::peer::{AaeRequest, AaeResponse, PeerRequest, PeerResponse};
        let req = PeerRequest::Aae(AaeRequest::Branches {
            from: kvorum_ring::NodeId::new(peer),
        });
        match self.call(addr, &req).await {
            PeerResponse::Aae(AaeResponse::Branches(b)) => b,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Waits until `cond` holds, polling every 50 ms; fails after `limit`.
pub async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of the samples of metric `name` in a node's exposition that carry
/// every one of `labels` (0 if none).
pub fn metric(node: &RunningNode, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum_of(&node.metrics().render(), name, labels)
}

/// The sum of the samples of `name` in `text` that carry every one of `labels`.
pub fn sum_of(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
