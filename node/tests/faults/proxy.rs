//! A userspace UDP proxy in front of every node: the nemesis's network.
//!
//! Node `i` listens on its real port and *advertises* the port of proxy `i`,
//! so every datagram a peer sends to node `i` arrives at proxy `i`. The proxy
//! keeps one upstream socket per source address (NAT-style) and forwards to
//! the node's real port; what the node answers on that upstream socket goes
//! back to the source from the proxy's front socket. Node `j` sends from its
//! one QUIC socket (its real listen address), so the proxy knows, for each
//! datagram, the directed link `(from, to)` between node indices and applies
//! that link's rule: drop (partition), random loss, delay with jitter, and
//! duplication. Sources that are no node (clients) pass untouched.
//!
//! No root, no packet filter: it runs in the test process on 127.0.0.1.
//! Every action is counted, so a test can check that a fault took effect.

use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::net::UdpSocket;

/// What happens to datagrams on one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkRule {
    /// Drop everything (a partition).
    pub cut: bool,
    /// Probability of dropping a datagram.
    pub loss: f64,
    /// Fixed delay added to every datagram.
    pub delay: Duration,
    /// Extra uniform random delay in `0..jitter`.
    pub jitter: Duration,
    /// Probability of sending a datagram twice.
    pub duplicate: f64,
}

/// Counters of what the proxies did, for checking that faults took effect.
#[derive(Debug, Default)]
pub struct Counters {
    pub forwarded: AtomicU64,
    pub cut: AtomicU64,
    pub lost: AtomicU64,
    pub delayed: AtomicU64,
    pub duplicated: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub forwarded: u64,
    pub cut: u64,
    pub lost: u64,
    pub delayed: u64,
    pub duplicated: u64,
}

/// The rules and counters shared by all proxies of a cluster.
pub struct Net {
    /// Real listen address of each node (index = node index).
    nodes: Vec<SocketAddr>,
    rules: Mutex<HashMap<(usize, usize), LinkRule>>,
    rng: Mutex<StdRng>,
    pub counters: Counters,
}

impl Net {
    fn node_of(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|a| *a == addr)
    }

    /// The rule of the directed link `from → to`.
    pub fn rule(&self, from: usize, to: usize) -> LinkRule {
        self.rules
            .lock()
            .unwrap()
            .get(&(from, to))
            .copied()
            .unwrap_or_default()
    }

    /// Sets the rule of both directions between `a` and `b`.
    pub fn set_both(&self, a: usize, b: usize, rule: LinkRule) {
        let mut rules = self.rules.lock().unwrap();
        rules.insert((a, b), rule);
        rules.insert((b, a), rule);
    }

    /// Cuts every link between a node of `a` and a node of `b`.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                let mut r = self.rule(x, y);
                r.cut = true;
                self.set_both(x, y, r);
            }
        }
    }

    /// Applies `rule` to every link between distinct nodes.
    pub fn all_links(&self, rule: LinkRule) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    self.rules.lock().unwrap().insert((a, b), rule);
                }
            }
        }
    }

    /// Removes every rule.
    pub fn heal(&self) {
        self.rules.lock().unwrap().clear();
    }

    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            cut: c.cut.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            delayed: c.delayed.load(Ordering::Relaxed),
            duplicated: c.duplicated.load(Ordering::Relaxed),
        }
    }

    /// Decides the fate of one datagram on link `from → to` (None: a client).
    /// Returns the delays at which to send copies (empty: dropped).
    fn fate(&self, link: Option<(usize, usize)>) -> Vec<Duration> {
        let c = &self.counters;
        let Some((from, to)) = link else {
            c.forwarded.fetch_add(1, Ordering::Relaxed);
            return vec![Duration::ZERO];
        };
        let rule = self.rule(from, to);
        if rule.cut {
            c.cut.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let mut rng = self.rng.lock().unwrap();
        if rule.loss > 0.0 && rng.random_bool(rule.loss.min(1.0)) {
            c.lost.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let copies = if rule.duplicate > 0.0 && rng.random_bool(rule.duplicate.min(1.0)) {
            c.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let mut out = Vec::with_capacity(copies);
        for _ in 0..copies {
            let jitter = if rule.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_micros(rng.random_range(0..rule.jitter.as_micros() as u64))
            };
            out.push(rule.delay + jitter);
        }
        if !rule.delay.is_zero() || !rule.jitter.is_zero() {
            c.delayed.fetch_add(1, Ordering::Relaxed);
        }
        c.forwarded.fetch_add(1, Ordering::Relaxed);
        out
    }
}

/// Sends `buf` to `to` from `sock` after each of `delays`.
fn send(sock: &Arc<UdpSocket>, buf: &[u8], to: SocketAddr, delays: Vec<Duration>) {
    for d in delays {
        if d.is_zero() {
            // Loopback: a full socket buffer drops, as a network would.
            let _ = sock.try_send_to(buf, to);
        } else {
            let sock = sock.clone();
            let buf = buf.to_vec();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let _ = sock.send_to(&buf, to).await;
            });
        }
    }
}

/// Starts one proxy per node: proxy `i` listens on `fronts[i]` and forwards
/// to `nodes[i]`. The tasks live as long as the runtime.
pub async fn start(nodes: Vec<SocketAddr>, fronts: &[SocketAddr], seed: u64) -> Arc<Net> {
    let net = Arc::new(Net {
        nodes: nodes.clone(),
        rules: Mutex::new(HashMap::new()),
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
        counters: Counters::default(),
    });
    for (to, front) in fronts.iter().enumerate() {
        let sock = Arc::new(UdpSocket::bind(front).await.expect("proxy port free"));
        let net = net.clone();
        let target = nodes[to];
        tokio::spawn(async move {
            let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((len, src)) = sock.recv_from(&mut buf).await else {
                    continue; // e.g. ICMP port unreachable from a stopped node
                };
                let from = net.node_of(src);
                let up = match upstreams.get(&src) {
                    Some(u) => u.clone(),
                    None => {
                        let Ok(u) = UdpSocket::bind("127.0.0.1:0").await else {
                            continue;
                        };
                        let u = Arc::new(u);
                        upstreams.insert(src, u.clone());
                        // Answers of the node to this source, back through the front.
                        let (u2, front, net2) = (u.clone(), sock.clone(), net.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            loop {
                                let Ok((len, _)) = u2.recv_from(&mut buf).await else {
                                    continue;
                                };
                                let delays = net2.fate(from.map(|f| (to, f)));
                                send(&front, &buf[..len], src, delays);
                            }
                        });
                        u
                    }
                };
                let delays = net.fate(from.map(|f| (f, to)));
                send(&up, &buf[..len], target, delays);
            }
        });
    }
    net
}
