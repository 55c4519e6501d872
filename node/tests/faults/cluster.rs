//! Real `kvorum` processes on 127.0.0.1 behind the proxies, and the probes
//! the nemesis uses to check that a fault took effect.

use kvorum_client::{Admin, Client, TlsMaterial};
use std::{
    net::{SocketAddr, UdpSocket},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const KVORUM: &str = env!("CARGO_BIN_EXE_kvorum");

/// One node slot: its addresses, and its process while it runs.
pub struct Node {
    pub id: String,
    /// The real QUIC port (clients connect here directly).
    pub listen: SocketAddr,
    /// Its proxy (what peers use: the config's `advertise`).
    pub front: SocketAddr,
    pub metrics: SocketAddr,
    pub child: Option<Child>,
    pub paused: bool,
    /// A member of the cluster (started, and not left).
    pub member: bool,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
}

/// `count` free ports on 127.0.0.1 (UDP and TCP), below the kernel's
/// ephemeral range, so that no client socket (bound to port 0) can take a
/// killed node's port before it restarts.
pub fn free_ports(count: usize) -> Vec<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (from, to) = if low > 12_000 {
        (10_000, low)
    } else {
        (low, 65_000)
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut p = from + (nanos % u32::from(to - from)) as u16;
    let mut ports = Vec::new();
    for _ in 0..20_000 {
        if ports.len() == count {
            return ports;
        }
        p = if p + 1 >= to { from } else { p + 1 };
        if UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        {
            ports.push(p);
        }
    }
    panic!("no {count} free ports in {from}..{to}");
}

impl Cluster {
    /// Writes certificates and configs for `slots` nodes; starts none.
    pub fn prepare(dir: &Path, slots: usize) -> Cluster {
        super::common::make_certs(dir, slots);
        let ports = free_ports(3 * slots);
        let mut nodes = Vec::new();
        for i in 0..slots {
            let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
            nodes.push(Node {
                id: format!("n{}", i + 1),
                listen: at(ports[3 * i]),
                front: at(ports[3 * i + 1]),
                metrics: at(ports[3 * i + 2]),
                child: None,
                paused: false,
                member: false,
            });
        }
        let seeds: Vec<String> = nodes
            .iter()
            .take(slots.min(5))
            .map(|n| format!("\"{}\"", n.front))
            .collect();
        for n in &nodes {
            let text = format!(
                "id = \"{id}\"\nlisten = \"{listen}\"\nadvertise = \"{front}\"\n\
                 seeds = [{seeds}]\ndata_dir = \"data/{id}\"\n\
                 gossip_interval_ms = 200\npeer_connect_timeout_ms = 500\n\
                 [replication]\nn = 3\nrequest_timeout_ms = 2000\n\
                 [failure_detector]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 1000\n\
                 [hints]\ndelivery_interval_ms = 500\n\
                 [anti_entropy]\ninterval_ms = 3000\n\
                 [transfers]\ninterval_ms = 100\n\
                 [metrics]\nlisten = \"{metrics}\"\n\
                 [tls]\nca = \"ca.pem\"\ncert = \"{id}.pem\"\nkey = \"{id}.key\"\n",
                id = n.id,
                listen = n.listen,
                front = n.front,
                metrics = n.metrics,
                seeds = seeds.join(", "),
            );
            std::fs::write(dir.join(format!("{}.toml", n.id)), text).unwrap();
        }
        Cluster {
            dir: dir.to_path_buf(),
            nodes,
        }
    }

    /// Starts node `i`; `clock_offset_ms` is the test-only LWW clock hook.
    pub fn start(&mut self, i: usize, clock_offset_ms: i64) {
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "{} already runs", n.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", n.id)))
            .unwrap();
        let mut cmd = Command::new(KVORUM);
        cmd.args(["start", "--config", &format!("{}.toml", n.id)])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if clock_offset_ms != 0 {
            cmd.env("KVORUM_TEST_CLOCK_OFFSET_MS", clock_offset_ms.to_string());
        }
        // Tied to this test process: a SIGKILL of it stops the nodes too.
        n.child = Some(crate::tied::spawn(cmd).expect("kvorum starts"));
        n.paused = false;
        n.member = true;
    }

    /// SIGKILL node `i`; true when it died of signal 9.
    pub fn kill9(&mut self, i: usize) -> bool {
        let n = &mut self.nodes[i];
        let Some(mut c) = n.child.take() else {
            return false;
        };
        let _ = c.kill();
        n.paused = false;
        matches!(c.wait(), Ok(s) if s.signal() == Some(9))
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.nodes[i].child {
            let ok = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "kill {sig} {}", self.nodes[i].id);
        }
    }

    /// SIGSTOP node `i`; true when the kernel reports it stopped.
    pub fn pause(&mut self, i: usize) -> bool {
        self.signal(i, "-STOP");
        self.nodes[i].paused = true;
        let pid = self.nodes[i].child.as_ref().map(|c| c.id()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if proc_state(pid) == Some('T') {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.nodes[i].paused = false;
    }

    /// SIGINT, then SIGKILL if it has not stopped in 10 s.
    pub fn stop(&mut self, i: usize) {
        self.signal(i, "-INT");
        if let Some(mut c) = self.nodes[i].child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Indices of members whose process runs and is not paused.
    pub fn live_members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].member && self.running(i) && !self.nodes[i].paused)
            .collect()
    }

    pub fn tls(&self) -> TlsMaterial {
        TlsMaterial::from_dir(&self.dir, "client").unwrap()
    }

    /// A client of exactly the nodes `idx` (real ports, no proxy; no
    /// token-aware routing, which would reach the others).
    pub fn client(&self, idx: &[usize], timeout: Duration) -> Client {
        Client::builder(idx.iter().map(|&i| self.nodes[i].listen), self.tls())
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(timeout)
            .token_aware(false)
            .build()
            .unwrap()
    }
}

impl Cluster {
    /// An admin handle on the nodes `idx` (operator calls).
    pub fn admin(&self, idx: &[usize], timeout: Duration) -> Admin {
        let admin = TlsMaterial::from_dir(&self.dir, "admin").unwrap();
        Admin::builder(idx.iter().map(|&i| self.nodes[i].listen), admin)
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(timeout)
            .build()
            .unwrap()
    }
}

impl Drop for Cluster {
    /// Every process the suite started dies with it, however the test ends.
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill(); // SIGKILL also ends a stopped process
                let _ = c.wait();
            }
        }
    }
}

/// The state letter of `/proc/<pid>/stat` (`T`: stopped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Scrapes `/metrics` of a node (bounded).
pub async fn scrape(addr: SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let go = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        String::from_utf8(out).ok()
    };
    tokio::time::timeout(Duration::from_secs(3), go)
        .await
        .ok()
        .flatten()
}

/// The value of `name` in a scrape, for the series whose labels contain
/// every `label="value"` of `labels` (summed over matching series).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if !labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}
