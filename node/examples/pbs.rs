//! Staleness measured against PBS (docs/consistency.md, "Staleness measured
//! against PBS"). Starts a 3-node cluster in this process (real QUIC on
//! 127.0.0.1, real fjall in a temporary directory, anti-entropy off) whose
//! node-to-node links carry injected one-way delays (base + uniform jitter,
//! [`Faults::delay`]), and measures, for (R, W) = (1,1), (1,2), (2,1), (2,2)
//! with N = 3, how often a read started `t` ms after a write was acknowledged
//! misses that write. It then predicts the same probabilities with
//!
//! - the closed form for no propagation after commit, C(N-W, R) / C(N, R);
//! - a WARS Monte Carlo (Bailis et al., "Probabilistically Bounded
//!   Staleness", VLDB 2012) fed with the latencies measured in this run, in
//!   two forms: as published (a coordinator that is not a replica, reads
//!   answered by the first R of N replicas) and adapted to Kvorum (the
//!   coordinator is a replica: it applies a write before fanning it out and
//!   counts itself as the first ack; a read counts its own copy first).
//!
//! One trial: a fresh key; version 1 written at W = 3 (so every replica
//! holds it); version 2 written with the trial's W through a client pinned
//! to the writer node, with version 1's context; `t` ms after that
//! acknowledgement, one read with the trial's R through a client pinned to
//! another node. The read is stale if it does not contain version 2. Each
//! key is read once, so no read repair from one trial helps another. Trials
//! of every (R, W, t) point are shuffled together and run a few at a time,
//! so the machine's noise spreads over all points alike.
//!
//! ```text
//! cargo run --release -p kvorum-node --example pbs                # full run
//! cargo run --release -p kvorum-node --example pbs -- --quick     # smoke run
//! cargo run --release -p kvorum-node --example pbs -- --trials 800 --t 0,1,2,5,10,20,50
//! ```
//!
//! Exits non-zero if a read at R + W > N is ever stale, or if more than 1 %
//! of the trials fail.

use kvorum_client::{CausalContext, Client, ReadOptions, TlsMaterial, WriteOptions};
use kvorum_node::net::{certs, faults::Faults};
use kvorum_node::util::LockExt;
use kvorum_node::{NodeConfig, RunningNode};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const NODES: usize = 3;
const BUCKET: &str = "default";
const CONFIGS: [(u8, u8); 4] = [(1, 1), (1, 2), (2, 1), (2, 2)];
const USAGE: &str = "usage: pbs [--quick] [--trials N] [--t MS,MS,..] [--concurrency C] \
                     [--base-ms F] [--jitter-ms F] [--mc N] [--seed S]
  --trials       trials per (R, W, t) point (default 1000; --quick: 30)
  --t            waits after the write's acknowledgement, ms (default 0,1,2,5,10,20,50;
                 --quick: 0,2,10,50)
  --concurrency  trials in flight (default 4)
  --base-ms      injected delay on each node-to-node link, each way (default 1)
  --jitter-ms    plus uniform(0, this) per datagram (default 10)
  --mc           Monte Carlo draws per point (default 200000; --quick: 20000)
  --seed         seeds the jitter, the trial order and the model (default 1)";

#[derive(Debug, Clone)]
struct Args {
    trials: usize,
    ts: Vec<u64>,
    concurrency: usize,
    base_ms: f64,
    jitter_ms: f64,
    mc: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut a = Args {
        trials: 1000,
        ts: vec![0, 1, 2, 5, 10, 20, 50],
        concurrency: 4,
        base_ms: 1.0,
        jitter_ms: 10.0,
        mc: 200_000,
        seed: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    // --quick sets the defaults; flags given with it still win.
    if args.iter().any(|a| a == "--quick") {
        a.trials = 30;
        a.ts = vec![0, 2, 10, 50];
        a.mc = 20_000;
    }
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--quick" => {}
            "--trials" => a.trials = value()?.parse()?,
            "--t" => {
                a.ts = value()?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--concurrency" => a.concurrency = value()?.parse()?,
            "--base-ms" => a.base_ms = value()?.parse()?,
            "--jitter-ms" => a.jitter_ms = value()?.parse()?,
            "--mc" => a.mc = value()?.parse()?,
            "--seed" => a.seed = value()?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    if a.trials == 0 || a.ts.is_empty() || a.concurrency == 0 || a.mc == 0 {
        return Err(format!(
            "trials, concurrency and mc must be > 0 and the t list non-empty\n{USAGE}"
        )
        .into());
    }
    if !(a.base_ms >= 0.0 && a.jitter_ms >= 0.0 && a.base_ms + a.jitter_ms < 10_000.0) {
        return Err("delays must be between 0 and 10 s".into());
    }
    Ok(a)
}

/// What one trial saw.
#[derive(Debug, Clone)]
struct Trial {
    point: usize,
    writer: usize,
    reader: usize,
    outcome: Result<Seen, String>,
}

#[derive(Debug, Clone)]
struct Seen {
    stale: bool,
    /// The read returned something other than exactly v1 or exactly v2.
    odd: bool,
    /// Client-observed latency of the v1 write (W = 3), ms.
    v1_ms: f64,
    /// Client-observed latency of the v2 write (the trial's W), ms.
    v2_ms: f64,
    /// From the v2 acknowledgement to the read being sent, ms.
    gap_ms: f64,
    /// Client-observed latency of the read, ms.
    read_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The (writer, reader) node pair of trial `i`: all six ordered pairs in turn.
fn pair(i: usize) -> (usize, usize) {
    let writer = i % NODES;
    let reader = (writer + 1 + (i / NODES) % (NODES - 1)) % NODES;
    (writer, reader)
}

async fn trial(
    clients: &[Client],
    key: &[u8],
    (r, w): (u8, u8),
    t: u64,
    (writer, reader): (usize, usize),
) -> Result<Seen, String> {
    let wc = &clients[writer];
    let started = Instant::now();
    let ctx1 = wc
        .put_with(
            BUCKET,
            key,
            b"v1",
            &CausalContext::empty(),
            WriteOptions::w(3),
        )
        .await
        .map_err(|e| format!("v1 write: {e}"))?;
    let v1_ms = ms(started.elapsed());
    let started = Instant::now();
    wc.put_with(BUCKET, key, b"v2", &ctx1, WriteOptions::w(w))
        .await
        .map_err(|e| format!("v2 write: {e}"))?;
    let acked = Instant::now();
    let v2_ms = ms(acked - started);
    if t > 0 {
        // A thread's sleep: tokio's timer rounds up to whole milliseconds.
        let wait = Duration::from_millis(t).saturating_sub(acked.elapsed());
        tokio::task::spawn_blocking(move || std::thread::sleep(wait))
            .await
            .map_err(|e| format!("wait: {e}"))?;
    }
    let sent = Instant::now();
    let read = clients[reader]
        .get_with(BUCKET, key, ReadOptions::r(r))
        .await
        .map_err(|e| format!("read: {e}"))?;
    let read_ms = ms(sent.elapsed());
    let has_v2 = read.siblings.iter().any(|s| s == b"v2");
    let odd = !matches!(read.single(), Some(b"v1" | b"v2"));
    Ok(Seen {
        stale: !has_v2,
        odd,
        v1_ms,
        v2_ms,
        gap_ms: ms(sent - acked),
        read_ms,
    })
}

/// A node config for node `i` (1-based), like the tests' (tests/common).
fn config(dir: &std::path::Path, i: usize, seeds: &[SocketAddr]) -> Result<NodeConfig, BoxError> {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "id = \"n{i}\"\nlisten = \"127.0.0.1:0\"\nseeds = [{}]\ndata_dir = \"data/n{i}\"\n\
         gossip_interval_ms = 100\npeer_connect_timeout_ms = 500\n\
         [anti_entropy]\nenabled = false\n[metrics]\nenabled = false\n\
         [replication]\nread_repair_chance = 0.0\nread_retry_after_ms = 1000\n\
         [tls]\nca = \"ca.pem\"\ncert = \"n{i}.pem\"\nkey = \"n{i}.key\"\n",
        seeds.join(", ")
    );
    Ok(NodeConfig::parse(&text, dir)?)
}

async fn start_cluster(
    dir: &std::path::Path,
    faults: &Arc<Faults>,
    nodes: &mut Vec<RunningNode>,
) -> Result<(), BoxError> {
    let ca = certs::make_ca("pbs")?;
    certs::write(dir, "ca", &ca)?;
    certs::write(dir, "client", &certs::make_client(&ca, "pbs")?)?;
    for i in 1..=NODES {
        let id = format!("n{i}");
        certs::write(dir, &id, &certs::make_node(&ca, &id, &[])?)?;
    }
    for i in 1..=NODES {
        let seeds: Vec<SocketAddr> = nodes.first().map(|n| n.addr()).into_iter().collect();
        let cfg = config(dir, i, &seeds)?;
        nodes.push(kvorum_node::start::start_with_faults(cfg, Some(faults.clone())).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // Every node knows every member and sees each up (the joins are done).
    while !nodes.iter().all(|n| {
        let m = n.members();
        m.len() == NODES
            && m.iter()
                .all(|m| m.state == kvorum_node::cluster::member::MemberState::Up)
    }) {
        if Instant::now() > deadline {
            return Err("the members did not converge".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------- statistics

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Wilson score interval (95 %) of `k` successes in `n`.
fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (z, n, p) = (1.96_f64, n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn binomial(n: u64, k: u64) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Probability that a read quorum misses every write-quorum replica when
/// nothing propagates after commit (PBS, k = 1).
fn closed_form(n: u64, r: u64, w: u64) -> f64 {
    binomial(n - w, r) / binomial(n, r)
}

fn pick(rng: &mut StdRng, v: &[f64]) -> f64 {
    v[rng.random_range(0..v.len())]
}

/// The latency distributions the models draw from (ms), all measured in
/// this run.
struct Inputs {
    /// Realized injected delay per directed node pair [from][to].
    link: Vec<Vec<Vec<f64>>>,
    /// All links together (the published model's i.i.d. distribution).
    link_all: Vec<f64>,
    /// One hop of a message through QUIC, the kernel and the runtime,
    /// besides the injected delay: half a client round trip.
    hop: Vec<f64>,
    /// A client round trip (the ack's hop to the writer client plus the
    /// read's hop from the reader client).
    client_rtt: Vec<f64>,
    /// Applying a write at a replica (storage commit with its sync).
    apply: Vec<f64>,
}

impl Inputs {
    /// One node-to-node message from `a` to `b` (`None`: any link).
    fn msg(&self, rng: &mut StdRng, a: Option<(usize, usize)>) -> f64 {
        let d = match a {
            Some((a, b)) => pick(rng, &self.link[a][b]),
            None => pick(rng, &self.link_all),
        };
        d + pick(rng, &self.hop)
    }
}

/// One Monte Carlo trial of the model adapted to Kvorum; true if stale.
/// Time 0 is when the writer node has applied the write locally and fans it
/// out; the reader node starts the read `client_rtt + gap` after the commit.
fn kvorum_trial(
    rng: &mut StdRng,
    inp: &Inputs,
    r: u8,
    w: u8,
    pair: (usize, usize),
    gap: f64,
) -> bool {
    let (wn, rn) = pair;
    let x = NODES * (NODES - 1) / 2 - wn - rn; // the third node
    let w_r = inp.msg(rng, Some((wn, rn))) + pick(rng, &inp.apply);
    let w_x = inp.msg(rng, Some((wn, x))) + pick(rng, &inp.apply);
    let a_r = inp.msg(rng, Some((rn, wn)));
    let a_x = inp.msg(rng, Some((x, wn)));
    let commit = match w {
        1 => 0.0, // the writer's own copy is the first ack
        2 => (w_r + a_r).min(w_x + a_x),
        _ => (w_r + a_r).max(w_x + a_x),
    };
    let start = commit + pick(rng, &inp.client_rtt) + gap;
    let local_fresh = w_r <= start; // the reader node's own copy, answered first
    if r == 1 || local_fresh {
        return !local_fresh;
    }
    if r >= 3 {
        return false; // the writer node always answers with the write
    }
    // R = 2: the reader's copy and the one remote replica it asks, the
    // writer node or the third node in turns (the nodes run with
    // read_repair_chance = 0 and read_retry_after_ms = 1000, far beyond the
    // injected delays, so no read asks a third replica).
    if rng.random_bool(0.5) {
        return false; // the writer node answers with the write
    }
    let r_x = inp.msg(rng, Some((rn, x)));
    w_x > start + r_x
}

/// One Monte Carlo trial of WARS as published: a coordinator that is not a
/// replica sends the write to all N replicas, commits after the W-th ack;
/// the read goes to all N and takes the first R answers. Same inputs (with
/// every link drawn from the pooled distribution) and same start of the read.
fn wars_trial(rng: &mut StdRng, inp: &Inputs, r: u8, w: u8, gap: f64) -> bool {
    let mut acks = [0.0; NODES];
    let mut arrive = [0.0; NODES];
    for i in 0..NODES {
        arrive[i] = inp.msg(rng, None) + pick(rng, &inp.apply);
        acks[i] = arrive[i] + inp.msg(rng, None);
    }
    let mut a = acks;
    a.sort_by(f64::total_cmp);
    let commit = a[usize::from(w) - 1];
    let start = commit + pick(rng, &inp.client_rtt) + gap;
    let mut reads: Vec<(f64, bool)> = (0..NODES)
        .map(|i| {
            let req = inp.msg(rng, None);
            let resp = inp.msg(rng, None);
            (req + resp, arrive[i] <= start + req)
        })
        .collect();
    reads.sort_by(|x, y| x.0.total_cmp(&y.0));
    !reads.iter().take(usize::from(r)).any(|(_, fresh)| *fresh)
}

// ---------------------------------------------------------------------- main

#[tokio::main]
async fn main() -> Result<ExitCode, BoxError> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let faults = Faults::new(args.seed);
    let mut nodes = Vec::new();
    let started = start_cluster(dir.path(), &faults, &mut nodes).await;
    let result = match started {
        Ok(()) => run(&args, dir.path(), &faults, &nodes).await,
        Err(e) => Err(e),
    };
    for n in nodes {
        n.shutdown().await;
    }
    result
}

async fn run(
    args: &Args,
    dir: &std::path::Path,
    faults: &Arc<Faults>,
    nodes: &[RunningNode],
) -> Result<ExitCode, BoxError> {
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr()).collect();
    let (base, jitter) = (
        Duration::from_secs_f64(args.base_ms / 1e3),
        Duration::from_secs_f64(args.jitter_ms / 1e3),
    );
    for &a in &addrs {
        for &b in &addrs {
            if a != b {
                faults.delay(a, b, base, jitter);
            }
        }
    }
    let tls = TlsMaterial::from_dir(dir, "client")?;
    // One client per node, each pinned to it (a single seed).
    let clients: Vec<Client> = addrs
        .iter()
        .map(|a| {
            Client::builder([*a], tls.clone())
                .connect_timeout(Duration::from_secs(1))
                .request_timeout(Duration::from_secs(5))
                .build()
        })
        .collect::<Result<_, _>>()?;
    let points: Arc<Vec<((u8, u8), u64)>> = Arc::new(
        CONFIGS
            .iter()
            .flat_map(|c| args.ts.iter().map(move |t| (*c, *t)))
            .collect(),
    );
    let measured = measure(args, &points, faults, &clients).await;
    for c in &clients {
        c.close().await;
    }
    let (results, took) = measured?;
    // The delays each link's datagrams were actually held, during the trials.
    let link: Vec<Vec<Vec<f64>>> = addrs
        .iter()
        .map(|&a| {
            addrs
                .iter()
                .map(|&b| faults.delay_samples(a, b).into_iter().map(ms).collect())
                .collect()
        })
        .collect();
    faults.record_delays(false);
    Ok(report(args, &points, &results, link, took))
}

/// Runs the trials; returns them and how long they took.
async fn measure(
    args: &Args,
    points: &Arc<Vec<((u8, u8), u64)>>,
    faults: &Arc<Faults>,
    clients: &[Client],
) -> Result<(Vec<Trial>, Duration), BoxError> {
    let run_id: u32 = rand::random();
    // Every node reaches every other (connections set up) before measuring.
    let deadline = Instant::now() + Duration::from_secs(30);
    for c in clients {
        while c
            .put_with(
                BUCKET,
                b"pbs-probe",
                b"",
                &CausalContext::empty(),
                WriteOptions::w(3),
            )
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err("cluster not fully reachable".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Warm-up trials, not counted.
    for i in 0..60 {
        let key = format!("pbs-{run_id}-warm-{i}");
        let _ = trial(
            clients,
            key.as_bytes(),
            CONFIGS[i % 4],
            (i % 3) as u64,
            pair(i),
        )
        .await;
    }

    // Every point's trials, shuffled together.
    let mut jobs: Vec<(usize, usize)> = (0..points.len())
        .flat_map(|p| (0..args.trials).map(move |i| (p, i)))
        .collect();
    jobs.shuffle(&mut StdRng::seed_from_u64(args.seed));
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::<Trial>::with_capacity(jobs.len())));
    let clients: Arc<Vec<Client>> = Arc::new(clients.to_vec());
    eprintln!(
        "{} points x {} trials, {} at a time; links {} ms + U(0, {}) ms",
        points.len(),
        args.trials,
        args.concurrency,
        args.base_ms,
        args.jitter_ms
    );
    faults.record_delays(true);
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (jobs, next, results, points, clients) = (
            jobs.clone(),
            next.clone(),
            results.clone(),
            points.clone(),
            clients.clone(),
        );
        tasks.spawn(async move {
            loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(point, i)) = jobs.get(j) else {
                    return;
                };
                let (rw, t) = points[point];
                let (writer, reader) = pair(i);
                let key = format!("pbs-{run_id}-{point}-{i}");
                let outcome = trial(&clients, key.as_bytes(), rw, t, (writer, reader)).await;
                results.locked().push(Trial {
                    point,
                    writer,
                    reader,
                    outcome,
                });
            }
        });
    }
    let total = jobs.len();
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            _ = tokio::time::sleep(Duration::from_secs(15)) => {
                let done = next.load(Ordering::Relaxed).min(total);
                eprintln!("{done}/{total} trials, {:.0} s", began.elapsed().as_secs_f64());
            }
        }
    }
    let took = began.elapsed();
    let results = std::mem::take(&mut *results.locked());
    Ok((results, took))
}

// -------------------------------------------------------------------- report

fn summary(v: &[f64]) -> String {
    let s = sorted(v.to_vec());
    format!(
        "n {:>6}  p50 {:>6.2}  p90 {:>6.2}  p99 {:>6.2}  max {:>7.2}",
        s.len(),
        quantile(&s, 0.5),
        quantile(&s, 0.9),
        quantile(&s, 0.99),
        s.last().copied().unwrap_or(f64::NAN)
    )
}

fn report(
    args: &Args,
    points: &[((u8, u8), u64)],
    results: &[Trial],
    link: Vec<Vec<Vec<f64>>>,
    took: Duration,
) -> ExitCode {
    let ok: Vec<(&Trial, &Seen)> = results
        .iter()
        .filter_map(|t| t.outcome.as_ref().ok().map(|s| (t, s)))
        .collect();
    let errors: Vec<&String> = results
        .iter()
        .filter_map(|t| t.outcome.as_ref().err())
        .collect();
    let config_of = |t: &Trial| points[t.point].0;

    // The model inputs, measured in this run.
    let client_rtt: Vec<f64> = ok
        .iter()
        .filter(|(t, _)| config_of(t).0 == 1)
        .map(|(_, s)| s.read_ms)
        .collect();
    let rtt_median = quantile(&sorted(client_rtt.clone()), 0.5);
    let apply: Vec<f64> = ok
        .iter()
        .filter(|(t, _)| config_of(t).1 == 1)
        .map(|(_, s)| (s.v2_ms - rtt_median).max(0.0))
        .collect();
    let link_all: Vec<f64> = link.iter().flatten().flatten().copied().collect();
    let missing_link = (0..NODES).any(|a| (0..NODES).any(|b| a != b && link[a][b].is_empty()));
    if client_rtt.is_empty() || apply.is_empty() || missing_link {
        eprintln!("not enough samples to build the model (too few trials succeeded)");
        return ExitCode::FAILURE;
    }
    let inputs = Inputs {
        hop: client_rtt.iter().map(|x| x / 2.0).collect(),
        client_rtt,
        apply,
        link,
        link_all,
    };
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x9b5);

    println!("# Staleness measured against PBS");
    println!(
        "cluster: {NODES} nodes on 127.0.0.1, N = 3, anti-entropy off, sync = always; \
         machine: {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "injected delay on every node-to-node link, each direction: {} ms + uniform(0, {}) ms \
         per datagram",
        args.base_ms, args.jitter_ms
    );
    println!(
        "{} trials per point, {} at a time, {} points, {:.0} s; Monte Carlo: {} draws per point",
        args.trials,
        args.concurrency,
        points.len(),
        took.as_secs_f64(),
        args.mc
    );
    println!();
    println!("## Model inputs (ms), measured in this run");
    for a in 0..NODES {
        for b in 0..NODES {
            if a != b {
                println!(
                    "  held on link n{}->n{}:   {}",
                    a + 1,
                    b + 1,
                    summary(&inputs.link[a][b])
                );
            }
        }
    }
    println!("  client round trip:      {}", summary(&inputs.client_rtt));
    println!("  apply at a replica:     {}", summary(&inputs.apply));

    // Validation: latencies the model implies against the measured ones.
    println!();
    println!(
        "## Check of the inputs: client-observed latency (ms), measured vs implied by the model"
    );
    println!("| request | measured p50 | model p50 | measured p90 | model p90 |");
    println!("|---|---:|---:|---:|---:|");
    let draws = args.mc.min(100_000);
    let model_write = |rng: &mut StdRng, w: u8, i: usize| {
        let (wn, rn) = pair(i);
        let x = NODES * (NODES - 1) / 2 - wn - rn;
        let rt_r = inputs.msg(rng, Some((wn, rn)))
            + pick(rng, &inputs.apply)
            + inputs.msg(rng, Some((rn, wn)));
        let rt_x = inputs.msg(rng, Some((wn, x)))
            + pick(rng, &inputs.apply)
            + inputs.msg(rng, Some((x, wn)));
        let wait = match w {
            1 => 0.0,
            2 => rt_r.min(rt_x),
            _ => rt_r.max(rt_x),
        };
        pick(rng, &inputs.client_rtt) + pick(rng, &inputs.apply) + wait
    };
    let mut rows: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for w in [1u8, 2] {
        let measured = ok
            .iter()
            .filter(|(t, _)| config_of(t).1 == w)
            .map(|(_, s)| s.v2_ms)
            .collect();
        let model = (0..draws).map(|i| model_write(&mut rng, w, i)).collect();
        rows.push((format!("write W = {w}"), measured, model));
    }
    let measured = ok.iter().map(|(_, s)| s.v1_ms).collect();
    let model = (0..draws).map(|i| model_write(&mut rng, 3, i)).collect();
    rows.push(("write W = 3 (version 1)".into(), measured, model));
    let measured = ok
        .iter()
        .filter(|(t, _)| config_of(t).0 == 2)
        .map(|(_, s)| s.read_ms)
        .collect();
    let model = (0..draws)
        .map(|i| {
            let (wn, rn) = pair(i);
            let x = NODES * (NODES - 1) / 2 - wn - rn;
            // The reader's own copy, and the one remote replica it asks,
            // the writer node or the third node in turns.
            let other = if rng.random_bool(0.5) { wn } else { x };
            let round_trip =
                inputs.msg(&mut rng, Some((rn, other))) + inputs.msg(&mut rng, Some((other, rn)));
            pick(&mut rng, &inputs.client_rtt) + round_trip
        })
        .collect();
    rows.push(("read R = 2".into(), measured, model));
    for (name, measured, model) in rows {
        let (m, p) = (sorted(measured), sorted(model));
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            quantile(&m, 0.5),
            quantile(&p, 0.5),
            quantile(&m, 0.9),
            quantile(&p, 0.9)
        );
    }

    // The table.
    println!();
    println!("## Stale reads: measured vs predicted");
    println!(
        "| R | W | t (ms) | actual gap (ms, mean) | trials | stale | measured | 95 % CI | \
         closed form | WARS as published | WARS for Kvorum | measured - Kvorum |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    let mut largest: Option<(f64, usize)> = None;
    let (mut inside, mut fail) = (0, false);
    for (p, &((r, w), t)) in points.iter().enumerate() {
        let seen: Vec<&Seen> = ok
            .iter()
            .filter(|(tr, _)| tr.point == p)
            .map(|(_, s)| *s)
            .collect();
        let n = seen.len();
        let stale = seen.iter().filter(|s| s.stale).count();
        let gaps: Vec<f64> = seen.iter().map(|s| s.gap_ms).collect();
        if n == 0 {
            println!("| {r} | {w} | {t} | - | 0 | - | - | - | - | - | - | - |");
            fail = true;
            continue;
        }
        let measured = stale as f64 / n as f64;
        let (lo, hi) = wilson(stale, n);
        let closed = closed_form(3, u64::from(r), u64::from(w));
        let mut k_stale = 0usize;
        let mut w_stale = 0usize;
        for i in 0..args.mc {
            let gap = pick(&mut rng, &gaps);
            k_stale += usize::from(kvorum_trial(&mut rng, &inputs, r, w, pair(i), gap));
            let gap = pick(&mut rng, &gaps);
            w_stale += usize::from(wars_trial(&mut rng, &inputs, r, w, gap));
        }
        let kv = k_stale as f64 / args.mc as f64;
        let wars = w_stale as f64 / args.mc as f64;
        let gap = measured - kv;
        if (lo..=hi).contains(&kv) {
            inside += 1;
        }
        if largest.is_none_or(|(g, _)| gap.abs() > g.abs()) {
            largest = Some((gap, p));
        }
        let mean_gap = gaps.iter().sum::<f64>() / n as f64;
        println!(
            "| {r} | {w} | {t} | {mean_gap:.2} | {n} | {stale} | {:.1} % | {:.1}–{:.1} % | {:.1} % | {:.1} % | {:.1} % | {:+.1} |",
            measured * 100.0,
            lo * 100.0,
            hi * 100.0,
            closed * 100.0,
            wars * 100.0,
            kv * 100.0,
            gap * 100.0
        );
        if u16::from(r) + u16::from(w) > 3 && stale > 0 {
            eprintln!("FAIL: R = {r}, W = {w}, t = {t}: {stale} stale reads with R + W > N");
            fail = true;
        }
    }
    println!();
    if let Some((g, p)) = largest {
        let ((r, w), t) = points[p];
        println!(
            "largest gap, measured - WARS for Kvorum: {:+.1} points at R = {r}, W = {w}, t = {t} ms; \
             the prediction is inside the measured 95 % CI at {inside} of {} points",
            g * 100.0,
            points.len()
        );
    }
    print!("stale share by writer -> reader node, all points pooled:");
    for i in 0..NODES * (NODES - 1) {
        let (wn, rn) = pair(i);
        let of_pair: Vec<bool> = ok
            .iter()
            .filter(|(t, _)| (t.writer, t.reader) == (wn, rn))
            .map(|(_, s)| s.stale)
            .collect();
        let k = of_pair.iter().filter(|s| **s).count();
        print!(
            " n{}->n{} {:.1} %",
            wn + 1,
            rn + 1,
            100.0 * k as f64 / of_pair.len().max(1) as f64
        );
    }
    println!();
    let odd = ok.iter().filter(|(_, s)| s.odd).count();
    println!(
        "trials: {} ok, {} failed; reads with neither exactly v1 nor exactly v2: {odd}",
        ok.len(),
        errors.len()
    );
    for e in errors.iter().take(5) {
        println!("  error: {e}");
    }
    if errors.len() * 100 > results.len() {
        eprintln!("FAIL: more than 1 % of the trials failed");
        fail = true;
    }
    if fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
