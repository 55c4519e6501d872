//! The Jepsen-style fault suite: five real `kvorum` processes on 127.0.0.1,
//! concurrent clients of five workloads, a nemesis that partitions, kills,
//! pauses, degrades links, skews a clock and changes membership on a seeded
//! schedule, then heals, waits for convergence, reads every key on every
//! node and runs the checkers (see `faults/checker.rs`).
//!
//! The property (Dynamo §4.4–4.7; Jepsen's Riak and Cassandra analyses):
//! no acknowledged write is lost under any fault, in every non-LWW mode
//! (set, register-union, register-siblings, counter), and the `lww` control
//! *does* lose writes — which proves the checkers can fail.
//!
//! - `KVORUM_FAULTS=short` (default): one cycle of every fault, ≈4 minutes.
//! - `KVORUM_FAULTS=long`: cycles until `KVORUM_FAULTS_SECS` (default 1800)
//!   have passed; `KVORUM_FAULTS=off` skips the suite.
//! - `KVORUM_FAULTS_SEED=<n>` replays a run's schedule (which faults, in
//!   which order, on which nodes; timings and client interleavings differ).
//!
//! Each run writes `history.jsonl`, `summary.txt` and the nodes' logs to a
//! run directory, printed at start; it is kept when the run fails.

#[path = "faults/checker.rs"]
mod checker;
#[path = "faults/cluster.rs"]
mod cluster;
// The child-process tie of `kvorum bench` (a module of the binary), shared.
mod common;
#[path = "faults/proxy.rs"]
mod proxy;
#[path = "../src/cli/tied.rs"]
mod tied;
#[path = "faults/workload.rs"]
mod workload;

use cluster::{metric, scrape, Cluster};
use kvorum_client::{BucketProps, ReadOptions, Version};
use proxy::{LinkRule, Net};
use rand::{rngs::StdRng, seq::IndexedRandom, seq::SliceRandom, Rng, SeedableRng};
use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{atomic::AtomicBool, atomic::Ordering, Arc},
    time::{Duration, Instant},
};
use workload::{History, Workload};

/// Nodes at start; one more joins during the run, one leaves.
const NODES: usize = 5;

/// How long the run lasts and how often each fault comes.
#[derive(Debug, Clone, Copy)]
struct Plan {
    long: bool,
    /// Least run time of the fault cycles (the long run repeats them).
    target: Duration,
    /// Length of one fault's active period.
    fault: Duration,
    /// Healthy time between faults.
    gap: Duration,
    pause: Duration,
    /// Bound on convergence after the final heal.
    converge: Duration,
}

impl Plan {
    fn from_env() -> Option<Plan> {
        let mode = std::env::var("KVORUM_FAULTS").unwrap_or_else(|_| "short".into());
        let secs = std::env::var("KVORUM_FAULTS_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        match mode.as_str() {
            "off" => None,
            "long" => Some(Plan {
                long: true,
                target: Duration::from_secs(secs.unwrap_or(1800)),
                fault: Duration::from_secs(15),
                gap: Duration::from_secs(5),
                pause: Duration::from_secs(20),
                converge: Duration::from_secs(300),
            }),
            _ => Some(Plan {
                long: false,
                target: Duration::ZERO,
                fault: Duration::from_secs(10),
                gap: Duration::from_secs(3),
                pause: Duration::from_secs(10),
                converge: Duration::from_secs(120),
            }),
        }
    }
}

/// One entry of the nemesis's log.
#[derive(Debug, Clone)]
struct Phase {
    /// The fault kind (a row of the result table).
    kind: &'static str,
    /// What exactly was done.
    what: String,
    /// How the suite checked that it took effect.
    evidence: String,
    start_ms: u64,
    end_ms: u64,
    /// Fault events (a flapping phase has many).
    events: u32,
}

struct Run {
    cluster: Cluster,
    net: Arc<Net>,
    history: Arc<History>,
    rng: StdRng,
    phases: Vec<Phase>,
    /// Why a fault could not be shown to take effect (each fails the run).
    ineffective: Vec<String>,
}

fn seed() -> u64 {
    std::env::var("KVORUM_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Polls `probe` every 100 ms until it holds or `within` passes.
async fn until<F, Fut>(within: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Run {
    fn begin(&mut self, kind: &'static str, what: String) {
        let now = self.history.now_ms();
        if let Some(p) = self.phases.last_mut() {
            p.end_ms = now;
        }
        self.phases.push(Phase {
            kind,
            what: what.clone(),
            evidence: String::new(),
            start_ms: now,
            end_ms: now,
            events: u32::from(!matches!(kind, "healthy" | "heal" | "final")),
        });
        self.history
            .phase
            .store(self.phases.len() - 1, Ordering::Relaxed);
        self.history.line(serde_json::json!({
            "time_ms": now, "type": "nemesis", "phase": self.phases.len() - 1,
            "kind": kind, "what": what,
        }));
        eprintln!("[{:>6.1}s] {kind}: {what}", now as f64 / 1000.0);
    }

    /// Records how a fault was shown to take effect, or that it was not.
    fn evidence(&mut self, ok: bool, text: String) {
        let p = self.phases.last_mut().expect("a phase is open");
        if !ok {
            self.ineffective
                .push(format!("{} ({}): {text}", p.kind, p.what));
        }
        if !p.evidence.is_empty() {
            p.evidence.push_str("; ");
        }
        p.evidence.push_str(&format!(
            "{}{text}",
            if ok { "" } else { "NOT EFFECTIVE: " }
        ));
        self.history.line(serde_json::json!({
            "time_ms": self.history.now_ms(), "type": "nemesis-check", "ok": ok, "evidence": text,
        }));
    }

    fn id(&self, i: usize) -> String {
        self.cluster.nodes[i].id.clone()
    }

    fn members(&self) -> Vec<usize> {
        (0..self.cluster.nodes.len())
            .filter(|&i| self.cluster.nodes[i].member)
            .collect()
    }

    /// Whether node `at` sees `peer` up (`kvorum_peer_up`), None if unknown.
    async fn peer_up(&self, at: usize, peer: usize) -> Option<bool> {
        let text = scrape(self.cluster.nodes[at].metrics).await?;
        metric(&text, "kvorum_peer_up", &[("peer", &self.id(peer))]).map(|v| v > 0.5)
    }

    /// Waits until node `at` sees every node of `down` down (and checks it with the metric).
    async fn wait_sees_down(&self, at: usize, down: &[usize], within: Duration) -> bool {
        until(within, || async move {
            for &d in down {
                if self.peer_up(at, d).await != Some(false) {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// Waits until every live member sees every other live member up.
    async fn wait_all_up(&self, within: Duration) -> bool {
        let live = &self.cluster.live_members();
        until(within, || async move {
            for &a in live {
                for &b in live {
                    if a != b && self.peer_up(a, b).await != Some(true) {
                        return false;
                    }
                }
            }
            true
        })
        .await
    }

    async fn answers(&self, i: usize, within: Duration) -> bool {
        let c = &self.cluster.admin(&[i], Duration::from_secs(1));
        until(within, || async move { c.status().await.is_ok() }).await
    }

    async fn heal_partition(&mut self) {
        self.net.heal();
        let ok = self.wait_all_up(Duration::from_secs(20)).await;
        self.evidence(
            ok,
            format!("after heal every live member sees every other up: {ok}"),
        );
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    // ---- the faults --------------------------------------------------------

    async fn isolate(&mut self, d: Duration) {
        let m = self.members();
        let x = *m.choose(&mut self.rng).unwrap();
        let others: Vec<usize> = m.iter().copied().filter(|&o| o != x).collect();
        self.begin("partition-one", format!("isolate {}", self.id(x)));
        let cut = self.net.counts().cut;
        self.net.partition(&[x], &others);
        let seen = self
            .wait_sees_down(x, &others, Duration::from_secs(10))
            .await;
        self.sleep(d).await;
        let dropped = self.net.counts().cut - cut;
        self.evidence(
            seen && dropped > 0,
            format!(
                "{} saw all peers down (kvorum_peer_up=0): {seen}; proxy cut {dropped} datagrams",
                self.id(x)
            ),
        );
        self.heal_partition().await;
    }

    async fn majority_minority(&mut self, d: Duration) {
        let mut m = self.members();
        m.shuffle(&mut self.rng);
        let (minority, majority) = m.split_at(m.len() / 2);
        let (minority, majority) = (minority.to_vec(), majority.to_vec());
        let names = |v: &[usize]| v.iter().map(|&i| self.id(i)).collect::<Vec<_>>().join(",");
        self.begin(
            "partition-majority",
            format!("{{{}}} | {{{}}}", names(&minority), names(&majority)),
        );
        let cut = self.net.counts().cut;
        self.net.partition(&minority, &majority);
        let seen = self
            .wait_sees_down(minority[0], &majority, Duration::from_secs(10))
            .await;
        self.sleep(d).await;
        let dropped = self.net.counts().cut - cut;
        self.evidence(
            seen && dropped > 0,
            format!(
                "{} saw the majority down: {seen}; proxy cut {dropped} datagrams",
                self.id(minority[0])
            ),
        );
        self.heal_partition().await;
    }

    /// Jepsen's "majorities ring": each node sees itself and its two ring
    /// neighbours (a majority of 5), and no two nodes see the same majority.
    async fn ring(&mut self, d: Duration) {
        let mut m = self.members();
        if m.len() != 5 {
            return;
        }
        m.shuffle(&mut self.rng);
        let order = m.iter().map(|&i| self.id(i)).collect::<Vec<_>>().join("-");
        self.begin("partition-ring", format!("majorities ring {order}"));
        let cut = self.net.counts().cut;
        for i in 0..5 {
            self.net.partition(&[m[i]], &[m[(i + 2) % 5]]);
        }
        // Until, at one scrape, it sees its two non-neighbours down and its
        // two neighbours up (each reading alone may lag under load).
        let (this, ring) = (&*self, &m);
        let seen = until(Duration::from_secs(15), || async move {
            this.peer_up(ring[0], ring[2]).await == Some(false)
                && this.peer_up(ring[0], ring[3]).await == Some(false)
                && this.peer_up(ring[0], ring[1]).await == Some(true)
                && this.peer_up(ring[0], ring[4]).await == Some(true)
        })
        .await;
        self.sleep(d).await;
        let dropped = self.net.counts().cut - cut;
        self.evidence(
            seen && dropped > 0,
            format!(
                "{} saw {} and {} down and its neighbours {} and {} up (at one scrape): {seen}; proxy cut {dropped} datagrams",
                self.id(m[0]), self.id(m[2]), self.id(m[3]), self.id(m[1]), self.id(m[4])
            ),
        );
        self.heal_partition().await;
    }

    async fn flaky_links(&mut self, d: Duration) {
        let rule = LinkRule {
            cut: false,
            loss: 0.15,
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(40),
            duplicate: 0.10,
        };
        self.begin(
            "loss-delay-dup",
            "every peer link: 15% loss, 20-60 ms delay, 10% duplicated".into(),
        );
        let before = self.net.counts();
        self.net.all_links(rule);
        self.sleep(d).await;
        let after = self.net.counts();
        let (lost, delayed, dup) = (
            after.lost - before.lost,
            after.delayed - before.delayed,
            after.duplicated - before.duplicated,
        );
        self.evidence(
            lost > 0 && delayed > 0 && dup > 0,
            format!("proxy lost {lost}, delayed {delayed}, duplicated {dup} datagrams"),
        );
        self.net.heal();
    }

    async fn kill(&mut self, down: Duration) {
        let x = *self.members().choose(&mut self.rng).unwrap();
        self.begin(
            "kill",
            format!("SIGKILL {}, restart after {down:?}", self.id(x)),
        );
        let died = self.cluster.kill9(x);
        let silent = !self.answers(x, Duration::from_millis(300)).await;
        self.sleep(down).await;
        self.cluster.start(x, 0);
        let back = self.answers(x, Duration::from_secs(30)).await;
        self.evidence(
            died && silent && back,
            format!("exit by signal 9: {died}; stopped answering: {silent}; answers after restart: {back}"),
        );
        let up = self.wait_all_up(Duration::from_secs(20)).await;
        self.evidence(up, format!("peers see it up again: {up}"));
    }

    /// SIGKILL every replica of one key at once (durability: the key's
    /// acknowledged writes must come back from disk).
    async fn kill_replicas(&mut self, down: Duration) {
        let w = Workload::Set;
        let k = self.rng.random_range(0..w.keys());
        let key = workload::key_name(k);
        let live = self.cluster.live_members();
        let c = self.cluster.admin(&live, Duration::from_secs(2));
        let token = kvorum_ring::item::token(&kvorum_node::replication::replica::storage_key(
            w.bucket(),
            &key,
        ));
        let owners: Vec<String> = match c.ring(Some(3)).await {
            Ok(ranges) => ranges
                .into_iter()
                .find(|r| {
                    if r.start < r.end {
                        r.start < token && token <= r.end
                    } else {
                        token > r.start || token <= r.end
                    }
                })
                .map(|r| r.owners)
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let idx: Vec<usize> = owners
            .iter()
            .filter_map(|o| self.cluster.nodes.iter().position(|n| &n.id == o))
            .collect();
        self.begin(
            "kill-replicas",
            format!(
                "SIGKILL all replicas of {}/k{k} at once: {}",
                w.bucket(),
                owners.join(",")
            ),
        );
        let mut died = idx.len() == 3;
        for &i in &idx {
            died &= self.cluster.kill9(i);
        }
        let others: Vec<usize> = self.cluster.live_members();
        let c = self.cluster.client(&others, Duration::from_secs(1));
        let unreadable = c
            .set(w.bucket(), &key)
            .read_options(ReadOptions::r(1).timeout_ms(1000))
            .members()
            .await
            .is_err();
        self.sleep(down).await;
        for &i in &idx {
            self.cluster.start(i, 0);
        }
        let mut back = true;
        for &i in &idx {
            back &= self.answers(i, Duration::from_secs(30)).await;
        }
        self.evidence(
            died && unreadable && back,
            format!("3 replicas died by signal 9: {died}; key unreadable at R=1 meanwhile: {unreadable}; all answer after restart: {back}"),
        );
        let up = self.wait_all_up(Duration::from_secs(20)).await;
        self.evidence(up, format!("peers see them up again: {up}"));
    }

    async fn pause(&mut self, d: Duration) {
        let m = self.members();
        let x = *m.choose(&mut self.rng).unwrap();
        let watcher = *m.iter().find(|&&o| o != x).unwrap();
        self.begin(
            "pause",
            format!("SIGSTOP {} for {d:?}, then SIGCONT", self.id(x)),
        );
        let stopped = self.cluster.pause(x);
        let seen = self
            .wait_sees_down(watcher, &[x], Duration::from_secs(10))
            .await;
        let silent = !self.answers(x, Duration::from_millis(300)).await;
        self.sleep(d.saturating_sub(Duration::from_secs(2))).await;
        self.cluster.resume(x);
        let back = self.answers(x, Duration::from_secs(20)).await;
        self.evidence(
            stopped && seen && silent && back,
            format!(
                "kernel state T: {stopped}; {} saw it down: {seen}; no answer while stopped: {silent}; answers after SIGCONT: {back}",
                self.id(watcher)
            ),
        );
        let up = self.wait_all_up(Duration::from_secs(20)).await;
        self.evidence(up, format!("peers see it up again: {up}"));
    }

    /// SIGSTOP / SIGCONT storms: for `d`, a random node is stopped for
    /// 0.3-1.5 s, then resumed, again and again (GC-pause-like stalls of a
    /// replica, shorter than the failure detector's pause bound or not).
    async fn pause_flapping(&mut self, d: Duration) {
        self.begin(
            "pause-flapping",
            format!("a random node SIGSTOPped for 0.3-1.5 s, then SIGCONT, for {d:?}"),
        );
        let end = Instant::now() + d;
        let (mut events, mut stopped) = (0u32, 0u32);
        while Instant::now() < end {
            let x = *self.members().choose(&mut self.rng).unwrap();
            if self.cluster.pause(x) {
                stopped += 1;
            }
            events += 1;
            let ms = self.rng.random_range(300..1500);
            self.sleep(Duration::from_millis(ms)).await;
            self.cluster.resume(x);
            let ms = self.rng.random_range(100..500);
            self.sleep(Duration::from_millis(ms)).await;
        }
        self.phases.last_mut().unwrap().events = events;
        let up = self.wait_all_up(Duration::from_secs(20)).await;
        self.evidence(
            events > 0 && stopped == events && up,
            format!("{events} pauses, {stopped} seen in kernel state T; all answer again: {up}"),
        );
    }

    /// Restarts one node with its LWW clock 2 minutes behind, for `d`.
    async fn clock_skew(&mut self, d: Duration) {
        const SKEW_MS: i64 = -120_000;
        let x = *self.members().choose(&mut self.rng).unwrap();
        let phase = self.phases.len();
        self.begin(
            "clock-skew",
            format!(
                "{}'s clock {} s behind (restarted with the test clock hook)",
                self.id(x),
                -SKEW_MS / 1000
            ),
        );
        self.cluster.kill9(x);
        self.cluster.start(x, SKEW_MS);
        let back = self.answers(x, Duration::from_secs(30)).await;
        let _ = self.wait_all_up(Duration::from_secs(20)).await;
        // LWW writes through it, to fresh keys: those it coordinates carry
        // its skewed stamp.
        let c = self.cluster.client(&[x], Duration::from_secs(2));
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut skewed = 0;
        for i in 0..12 {
            let key = format!("skew-probe-{phase}-{i}");
            let empty = kvorum_client::CausalContext::empty();
            if c.put("jlww", key.as_bytes(), b"p", &empty).await.is_ok() {
                if let Ok(v) = c.get("jlww", key.as_bytes()).await {
                    if let Version::Stamp { ms, .. } = v.version {
                        if ms + 60_000 < real {
                            skewed += 1;
                        }
                    }
                }
            }
        }
        self.evidence(
            back && skewed > 0,
            format!(
                "answers: {back}; {skewed} of 12 probe writes carry a stamp over 60 s in the past"
            ),
        );
        self.sleep(d).await;
        self.cluster.kill9(x);
        self.cluster.start(x, 0);
        let back = self.answers(x, Duration::from_secs(30)).await;
        self.evidence(back, format!("restarted with the true clock: {back}"));
        let _ = self.wait_all_up(Duration::from_secs(20)).await;
    }

    /// Rapid random partitions: a new one every 1-2 s.
    async fn flapping(&mut self, d: Duration) {
        self.begin(
            "flapping",
            format!("a new random partition or link fault every 0.1-0.3 s for {d:?}"),
        );
        let before = self.net.counts();
        let end = Instant::now() + d;
        let mut events = 0;
        while Instant::now() < end {
            self.net.heal();
            let mut m = self.members();
            m.shuffle(&mut self.rng);
            match self.rng.random_range(0..5) {
                0 => self.net.partition(&m[..1], &m[1..]),
                1 => self.net.partition(&m[..2], &m[2..]),
                2 => self.net.partition(&m[..1], &m[1..2]),
                3 => self.net.set_both(
                    m[0],
                    m[1],
                    LinkRule {
                        loss: 0.5,
                        delay: Duration::from_millis(50),
                        duplicate: 0.2,
                        ..LinkRule::default()
                    },
                ),
                _ => {} // healed for a moment
            }
            events += 1;
            let ms = self.rng.random_range(100..300);
            self.sleep(Duration::from_millis(ms)).await;
        }
        self.phases.last_mut().unwrap().events = events;
        let after = self.net.counts();
        let (cut, lost) = (after.cut - before.cut, after.lost - before.lost);
        self.evidence(
            cut > 0 && lost > 0,
            format!("{events} changes; proxy cut {cut} and lost {lost} datagrams"),
        );
        self.heal_partition().await;
    }

    /// The last fault, left in force until the final heal so that the
    /// convergence bound is measured from a damaged cluster: a
    /// majority/minority partition with one majority node killed.
    async fn final_fault(&mut self, d: Duration) {
        let mut m = self.members();
        m.shuffle(&mut self.rng);
        let (minority, majority) = m.split_at(m.len() / 2);
        let (minority, majority) = (minority.to_vec(), majority.to_vec());
        let x = majority[0];
        self.begin(
            "partition+kill",
            format!(
                "{{{}}} | {{{}}}, {} killed; healed only by the final heal",
                minority
                    .iter()
                    .map(|&i| self.id(i))
                    .collect::<Vec<_>>()
                    .join(","),
                majority
                    .iter()
                    .map(|&i| self.id(i))
                    .collect::<Vec<_>>()
                    .join(","),
                self.id(x)
            ),
        );
        let cut = self.net.counts().cut;
        self.net.partition(&minority, &majority);
        let died = self.cluster.kill9(x);
        self.sleep(d).await;
        let dropped = self.net.counts().cut - cut;
        self.evidence(
            died && dropped > 0,
            format!("exit by signal 9: {died}; proxy cut {dropped} datagrams"),
        );
    }

    async fn status_of(&self, at: usize) -> Option<kvorum_client::ClusterStatus> {
        self.cluster
            .admin(&[at], Duration::from_secs(2))
            .cluster_status()
            .await
            .ok()
    }

    /// Waits until `at` reports `node` in `state` and no change in progress.
    async fn wait_state(&self, at: usize, node: &str, state: &str, within: Duration) -> bool {
        until(within, || async move {
            self.status_of(at).await.is_some_and(|s| {
                !s.in_transition && s.members.iter().any(|m| m.id == node && m.state == state)
            })
        })
        .await
    }

    async fn join(&mut self) -> Option<usize> {
        let x = (0..self.cluster.nodes.len())
            .find(|&i| !self.cluster.nodes[i].member && !self.cluster.running(i))?;
        let id = self.id(x);
        self.begin("join", format!("{id} starts and joins (range streaming)"));
        self.cluster.start(x, 0);
        let at = self.cluster.live_members()[0];
        let up = self
            .wait_state(at, &id, "up", Duration::from_secs(120))
            .await;
        let owns = self
            .status_of(at)
            .await
            .is_some_and(|s| s.members.iter().any(|m| m.id == id && m.ownership_ppm > 0));
        self.evidence(
            up && owns,
            format!(
                "{id} up in the ring with a share: {}, change complete: {up}",
                owns
            ),
        );
        Some(x)
    }

    async fn leave(&mut self, not: Option<usize>) {
        let m: Vec<usize> = self
            .members()
            .into_iter()
            .filter(|&i| Some(i) != not)
            .collect();
        let x = *m.choose(&mut self.rng).unwrap();
        let id = self.id(x);
        self.begin(
            "leave",
            format!("{id} leaves (kvorum admin leave), then stops"),
        );
        let c = self.cluster.admin(&[x], Duration::from_secs(5));
        let mut accepted = false;
        for _ in 0..20 {
            match c.leave(&id).await {
                Ok(_) => {
                    accepted = true;
                    break;
                }
                Err(e) => {
                    eprintln!("leave {id}: {e}");
                    self.sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let at = *m.iter().find(|&&o| o != x).unwrap();
        let removed = accepted
            && self
                .wait_state(at, &id, "removed", Duration::from_secs(120))
                .await;
        self.cluster.stop(x);
        self.cluster.nodes[x].member = false;
        self.evidence(
            accepted && removed,
            format!("leave accepted: {accepted}; {id} removed and change complete: {removed}"),
        );
    }

    /// Heals everything: links, paused and dead members.
    async fn heal_all(&mut self) {
        self.net.heal();
        for i in 0..self.cluster.nodes.len() {
            if self.cluster.nodes[i].paused {
                self.cluster.resume(i);
            }
            if self.cluster.nodes[i].member && !self.cluster.running(i) {
                self.cluster.start(i, 0);
            }
        }
    }

    /// After the heal: no hint pending anywhere, no topology change, and one
    /// anti-entropy round on every node compares trees with every peer and
    /// finds nothing to repair. Returns the time it took, or None.
    async fn converge(&self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let live = &self.cluster.live_members();
        let ok = until(within, || async move {
            for &i in live {
                let Some(text) = scrape(self.cluster.nodes[i].metrics).await else {
                    return false;
                };
                if metric(&text, "kvorum_hints_pending", &[]).unwrap_or(1.0) > 0.0 {
                    return false;
                }
                if self.status_of(i).await.is_none_or(|s| s.in_transition) {
                    return false;
                }
            }
            for &i in live {
                let c = self.cluster.admin(&[i], Duration::from_secs(30));
                match c.repair().await {
                    Ok((exchanges, 0)) if exchanges as usize + 1 >= live.len() => {}
                    _ => return false,
                }
            }
            true
        })
        .await;
        ok.then(|| started.elapsed())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_under_faults() {
    let Some(plan) = Plan::from_env() else {
        eprintln!("KVORUM_FAULTS=off: fault suite skipped");
        return;
    };
    let seed = seed();
    let replay = format!(
        "KVORUM_FAULTS={} KVORUM_FAULTS_SEED={seed}{} cargo test -p kvorum-node --test faults -- --nocapture",
        if plan.long { "long" } else { "short" },
        if plan.long { format!(" KVORUM_FAULTS_SECS={}", plan.target.as_secs()) } else { String::new() }
    );
    eprintln!("fault suite seed {seed}; replay: {replay}");
    let dir = tempfile::Builder::new()
        .prefix("kvorum-faults-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    eprintln!("run directory: {}", dir.path().display());
    let hard = plan.target + Duration::from_secs(if plan.long { 1800 } else { 900 });
    let outcome = tokio::time::timeout(hard, run(plan, seed, dir.path())).await;
    let (ok, summary) = match outcome {
        Ok(r) => r,
        Err(_) => (
            false,
            format!("the run exceeded its hard bound of {hard:?}\n"),
        ),
    };
    let summary = format!("{summary}\nseed: {seed}\nreplay: {replay}\n");
    std::fs::write(dir.path().join("summary.txt"), &summary).unwrap();
    eprintln!("{summary}");
    if ok {
        // Keep the last passing run's history and summary, drop the data.
        let last = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kvorum-faults-last");
        let _ = std::fs::remove_dir_all(&last);
        let _ = std::fs::create_dir_all(&last);
        for f in ["history.jsonl", "summary.txt"] {
            let _ = std::fs::copy(dir.path().join(f), last.join(f));
        }
    } else {
        let kept = dir.keep();
        panic!(
            "fault suite failed (seed {seed}); run directory kept: {}\nreplay: {replay}",
            kept.display()
        );
    }
}

/// The whole run; returns (passed, summary).
async fn run(plan: Plan, seed: u64, dir: &std::path::Path) -> (bool, String) {
    let started = Instant::now();
    let slots = NODES + 1;
    let mut cluster = Cluster::prepare(dir, slots);
    let net = proxy::start(
        cluster.nodes.iter().map(|n| n.listen).collect(),
        &cluster.nodes.iter().map(|n| n.front).collect::<Vec<_>>(),
        seed,
    )
    .await;
    for i in 0..NODES {
        cluster.start(i, 0);
    }
    let history = History::new(&dir.join("history.jsonl"));
    let mut run = Run {
        cluster,
        net,
        history: history.clone(),
        rng: StdRng::seed_from_u64(seed),
        phases: Vec::new(),
        ineffective: Vec::new(),
    };
    run.begin("healthy", "cluster start".into());
    if !run.wait_all_up(Duration::from_secs(60)).await {
        return (false, "the cluster did not form (see n*.log)".into());
    }
    let admin = &run
        .cluster
        .admin(&(0..NODES).collect::<Vec<_>>(), Duration::from_secs(5));
    for w in Workload::ALL {
        let props = BucketProps::new(w.bucket_type()).n(3).r(2).w(2);
        // Refused until every member confirms it (peers may still be in
        // their reconnect backoff right after start).
        let created = until(Duration::from_secs(60), || async move {
            admin.create_bucket(w.bucket(), props).await.is_ok()
        })
        .await;
        if !created {
            return (false, format!("bucket {} could not be created", w.bucket()));
        }
    }
    // A new cluster grants client certificates nothing: the workload's
    // client may use every bucket.
    let all = kvorum_client::Grant::every_bucket("*");
    let granted = until(Duration::from_secs(60), || {
        let all = all.clone();
        async move { admin.grant(all).await.is_ok() }
    })
    .await;
    if !granted {
        return (false, "the client could not be granted the buckets".into());
    }
    for i in 0..NODES {
        let c = &run.cluster.admin(&[i], Duration::from_secs(2));
        let known = until(Duration::from_secs(30), || async move {
            c.buckets().await.is_ok_and(|b| {
                Workload::ALL
                    .iter()
                    .all(|w| b.iter().any(|(n, _)| n == w.bucket()))
            })
        })
        .await;
        if !known {
            return (false, format!("n{} did not learn the buckets", i + 1));
        }
    }

    // The clients: each talks to every node's real port (clients are not
    // partitioned, as in Jepsen; the peer links are).
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut process = 0;
    for w in Workload::ALL {
        for _ in 0..w.clients() {
            process += 1;
            let client = run
                .cluster
                .client(&(0..slots).collect::<Vec<_>>(), Duration::from_secs(2));
            tasks.push(tokio::spawn(workload::run_client(
                w,
                process,
                client,
                history.clone(),
                stop.clone(),
                seed,
            )));
        }
    }

    // The schedule.
    run.begin("healthy", "baseline".into());
    run.sleep(plan.fault).await;
    let cycle_start = Instant::now();
    let mut cycles = 0;
    loop {
        cycles += 1;
        let mut order: Vec<u8> = (0..10).collect();
        order.shuffle(&mut run.rng);
        for f in order {
            match f {
                0 => run.isolate(plan.fault).await,
                1 => run.majority_minority(plan.fault).await,
                2 => run.ring(plan.fault).await,
                3 => run.flaky_links(plan.fault).await,
                4 => run.kill(plan.gap * 2).await,
                5 => run.kill_replicas(plan.gap * 2).await,
                6 => run.pause(plan.pause).await,
                7 => run.clock_skew(plan.fault).await,
                8 => run.pause_flapping(plan.fault * 2).await,
                _ => run.flapping(plan.fault * 4).await,
            }
            run.begin("healthy", "gap".into());
            run.sleep(plan.gap).await;
        }
        if cycles == 1 {
            let joined = run.join().await;
            run.begin("healthy", "gap".into());
            run.sleep(plan.gap).await;
            run.leave(joined).await;
            run.begin("healthy", "gap".into());
            run.sleep(plan.gap).await;
        }
        if !plan.long || cycle_start.elapsed() >= plan.target {
            break;
        }
    }
    run.final_fault(plan.fault).await;

    // Heal, stop the clients, converge, read everything everywhere.
    run.begin("heal", "heal all; clients stop".into());
    run.heal_all().await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let converged = run.converge(plan.converge).await;
    run.begin("final", "final reads".into());
    let mut finals: HashMap<Workload, checker::Finals> = HashMap::new();
    let mut read_errors = Vec::new();
    for w in Workload::ALL {
        let mut per_node = Vec::new();
        for i in run.cluster.live_members() {
            let c = run.cluster.client(&[i], Duration::from_secs(5));
            match workload::final_read(w, &c).await {
                Ok(v) => per_node.push((run.id(i), v)),
                Err(e) => read_errors.push(format!("final read on {}: {e}", run.id(i))),
            }
        }
        finals.insert(w, per_node);
    }
    history.flush();
    if let Some(p) = run.phases.last_mut() {
        p.end_ms = history.now_ms();
    }

    let phases = run.phases.clone();
    let kind = |p: usize| phases.get(p).map_or("?", |p| p.kind).to_string();
    let entries = history.entries.lock().unwrap().clone();
    let report = checker::check(&entries, &finals, &kind);

    // The summary.
    let mut failures = report.failures.clone();
    failures.extend(read_errors);
    failures.extend(
        run.ineffective
            .iter()
            .map(|e| format!("fault not shown to take effect: {e}")),
    );
    // A run whose clients got nothing acknowledged, or nothing while a
    // fault was in force, checks nothing: it fails.
    for w in Workload::ALL {
        let total = report.total(w).acknowledged;
        let under_faults: u64 = report
            .rows
            .iter()
            .filter(|((rw, k), _)| *rw == w && !matches!(k.as_str(), "healthy" | "heal" | "final"))
            .map(|(_, r)| r.acknowledged)
            .sum();
        if total < 100 || under_faults == 0 {
            failures.push(format!(
                "{}: only {total} acknowledged operations ({under_faults} under faults): too few to check",
                w.name()
            ));
        }
    }
    match converged {
        Some(_) => {}
        None => failures.push(format!(
            "no convergence within {:?} (hints pending, a change in progress, or trees that differ)",
            plan.converge
        )),
    }
    let mut s = String::new();
    let events: u32 = phases.iter().map(|p| p.events).sum();
    let _ = writeln!(
        s,
        "Kvorum fault suite ({} run), seed {seed}: {} in {:.0} s, {} nemesis phases, {events} fault events, {} operations",
        if plan.long { "long" } else { "short" },
        if failures.is_empty() { "PASSED" } else { "FAILED" },
        started.elapsed().as_secs_f64(),
        phases.len(),
        entries.len()
    );
    let _ = writeln!(
        s,
        "convergence after heal (hints delivered, trees equal): {}",
        converged.map_or("not reached".into(), |d| format!(
            "{:.1} s (bound {:?})",
            d.as_secs_f64(),
            plan.converge
        ))
    );
    let _ = writeln!(s, "\n| workload | fault | acknowledged | lost | unexpected | recovered | stale reads | p99 ms |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for w in Workload::ALL {
        for ((rw, k), r) in &report.rows {
            if *rw == w {
                let _ = writeln!(
                    s,
                    "| {} | {k} | {} | {} | {} | {} | {} | {} |",
                    w.name(),
                    r.acknowledged,
                    r.lost,
                    r.unexpected,
                    r.recovered,
                    r.stale,
                    r.p99_ms().map_or("-".into(), |v| v.to_string())
                );
            }
        }
        let t = report.total(w);
        let _ = writeln!(
            s,
            "| **{}** | **all** | **{}** | **{}** | **{}** | **{}** | **{}** | {} |",
            w.name(),
            t.acknowledged,
            t.lost,
            t.unexpected,
            t.recovered,
            t.stale,
            t.p99_ms().map_or("-".into(), |v| v.to_string())
        );
    }
    let _ = writeln!(s, "\nnemesis (fault: what; evidence it took effect):");
    for p in &phases {
        if p.kind != "healthy" {
            let _ = writeln!(
                s,
                "- [{:.0}-{:.0} s] {}: {}; {}",
                p.start_ms as f64 / 1000.0,
                p.end_ms as f64 / 1000.0,
                p.kind,
                p.what,
                p.evidence
            );
        }
    }
    let c = run.net.counts();
    let _ = writeln!(
        s,
        "proxy: forwarded {}, cut {}, lost {}, delayed {}, duplicated {}",
        c.forwarded, c.cut, c.lost, c.delayed, c.duplicated
    );
    if !failures.is_empty() {
        let _ = writeln!(s, "\nFAILURES:");
        for f in &failures {
            let _ = writeln!(s, "- {f}");
        }
    }
    (failures.is_empty(), s)
}
