//! The load driver: a fixed number of requests in flight (one task each, a
//! closed loop like YCSB's threads), for a duration or an operation count;
//! latencies in HDR histograms, errors counted by kind, CPU sampled at the
//! edges of the measured window.

use super::procs;
use super::workload::Op;
use hdrhistogram::Histogram;
use kvorum_node::rpc::transport::BoxFuture;
use rand::{rngs::SmallRng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Highest latency the histograms hold (µs); longer ones are clamped.
const MAX_LATENCY_MICROS: u64 = 600_000_000;

/// How an operation failed: a short kind (report key) and one message.
#[derive(Debug, Clone)]
pub struct OpError {
    /// Short, bounded name (`timeout`, `server/Quorum`, …).
    pub kind: String,
    /// The error's text.
    pub message: String,
}

/// What one operation did.
pub type OpResult = (Op, Result<(), OpError>);

/// One operation; the argument is the operation's index in the phase.
pub type OpFn = Arc<dyn Fn(u64, &mut SmallRng) -> BoxFuture<'static, OpResult> + Send + Sync>;

/// How long a phase runs and how hard.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Requests in flight.
    pub concurrency: usize,
    /// Measured time (after the warm-up); ignored when `ops` is set.
    pub duration: Duration,
    /// Unmeasured time first; ignored when `ops` is set.
    pub warmup: Duration,
    /// Run exactly this many operations, all measured, instead.
    pub ops: Option<u64>,
    /// Seed of the phase's RNGs (task `t` uses `seed + t`).
    pub seed: u64,
}

/// Latencies of one kind of operation.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Latencies {
    fn new() -> Self {
        // 3 significant digits from 1 µs to 10 min: a fixed, small footprint.
        // The bounds are constants that Histogram accepts (low ≥ 1, high ≥
        // 2·low, sigfig ≤ 5), so this cannot fail.
        #[allow(clippy::expect_used)]
        Self(
            Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                .expect("constant histogram bounds are valid"),
        )
    }

    fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0
            .saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
    }

    fn add(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail; if it did, the
        // figures would only miss the other's samples.
        let _ = self.0.add(&other.0);
    }

    /// Operations recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The summary reported (µs).
    pub fn summary(&self) -> LatencySummary {
        let q = |p: f64| self.0.value_at_quantile(p);
        LatencySummary {
            count: self.0.len(),
            mean_us: self.0.mean(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.0.max(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LatencySummary {
    /// Operations.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
}

/// What one task saw in the measured window.
struct Local {
    all: Latencies,
    by_op: BTreeMap<Op, Latencies>,
    errors: BTreeMap<String, (u64, String)>,
}

impl Local {
    fn new() -> Self {
        Self {
            all: Latencies::new(),
            by_op: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: Local) {
        self.all.add(&other.all);
        for (op, l) in other.by_op {
            self.by_op.entry(op).or_insert_with(Latencies::new).add(&l);
        }
        for (kind, (n, msg)) in other.errors {
            self.errors.entry(kind).or_insert((0, msg)).0 += n;
        }
    }
}

/// CPU seconds of the watched processes at one instant.
fn cpu_sample(pids: &[(String, u32)]) -> Vec<Option<f64>> {
    pids.iter().map(|(_, p)| procs::cpu_seconds(*p)).collect()
}

/// What a phase measured.
#[derive(Debug)]
pub struct Outcome {
    /// Successful operations in the window.
    pub ops: u64,
    /// Length of the window in seconds.
    pub seconds: f64,
    /// Latencies of the successful operations, all kinds together.
    pub all: Latencies,
    /// Latencies by kind of operation.
    pub by_op: BTreeMap<Op, Latencies>,
    /// Failed operations by kind: count and one message.
    pub errors: BTreeMap<String, (u64, String)>,
    /// CPU seconds each watched process used in the window (`None`: unknown).
    pub cpu: Vec<(String, Option<f64>)>,
    /// CPU seconds this process (the load generator) used in the window.
    pub bench_cpu: Option<f64>,
}

impl Outcome {
    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Failed operations.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    /// CPU seconds of all watched processes, when every one was readable.
    pub fn cluster_cpu(&self) -> Option<f64> {
        if self.cpu.is_empty() {
            return None;
        }
        self.cpu.iter().map(|(_, s)| *s).sum()
    }
}

/// Runs `op` with `phase.concurrency` operations in flight; prints progress
/// to stderr under `label`; samples the CPU time of `pids` at the edges of
/// the measured window.
pub async fn drive(phase: Phase, label: &str, pids: &[(String, u32)], op: OpFn) -> Outcome {
    let started = Instant::now();
    let (from, until) = match phase.ops {
        Some(_) => (started, None),
        None => (
            started + phase.warmup,
            Some(started + phase.warmup + phase.duration),
        ),
    };
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..phase.concurrency {
        let (next, done, failed, stop, op) = (
            next.clone(),
            done.clone(),
            failed.clone(),
            stop.clone(),
            op.clone(),
        );
        let mut rng = SmallRng::seed_from_u64(phase.seed.wrapping_add(t as u64));
        tasks.spawn(async move {
            let mut local = Local::new();
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if phase.ops.is_some_and(|max| i >= max) {
                    break;
                }
                let t0 = Instant::now();
                let (kind, result) = op(i, &mut rng).await;
                let t1 = Instant::now();
                done.fetch_add(1, Ordering::Relaxed);
                if until.is_some_and(|u| t1 >= u) {
                    break;
                }
                if t0 < from {
                    continue;
                }
                match result {
                    Ok(()) => {
                        let took = t1 - t0;
                        local.all.record(took);
                        local
                            .by_op
                            .entry(kind)
                            .or_insert_with(Latencies::new)
                            .record(took);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        local.errors.entry(e.kind).or_insert((0, e.message)).0 += 1;
                    }
                }
            }
            local
        });
    }

    let me = std::process::id();
    let mut cpu_from = None;
    let mut bench_from = None;
    if phase.ops.is_some() {
        cpu_from = Some(cpu_sample(pids));
        bench_from = procs::cpu_seconds(me);
    }
    let mut finished = Vec::new();
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (window_end, cpu_to, bench_to) = loop {
        let now = Instant::now();
        let wake = match until {
            Some(u) if cpu_from.is_none() => from.min(u),
            Some(u) => u,
            None => now + Duration::from_secs(3600),
        };
        tokio::select! {
            _ = tick.tick() => {
                let n = done.load(Ordering::Relaxed);
                let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), n);
                let phase_name = if Instant::now() < from { "warm-up" } else { "measuring" };
                eprintln!(
                    "  [{label}] {:>4.0} s {phase_name}: {n} ops, {rate:.0}/s, {} errors",
                    started.elapsed().as_secs_f64(),
                    failed.load(Ordering::Relaxed)
                );
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                if cpu_from.is_none() {
                    cpu_from = Some(cpu_sample(pids));
                    bench_from = procs::cpu_seconds(me);
                } else {
                    stop.store(true, Ordering::Relaxed);
                    break (until.unwrap_or(now), cpu_sample(pids), procs::cpu_seconds(me));
                }
            }
            joined = tasks.join_next(), if until.is_none() => {
                if joined.is_none() {
                    break (Instant::now(), cpu_sample(pids), procs::cpu_seconds(me));
                }
                if let Some(Ok(local)) = joined {
                    finished.push(local);
                }
            }
        }
    };
    let mut total = Local::new();
    for local in finished {
        total.merge(local);
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(local) = joined {
            total.merge(local);
        }
    }
    let from_cpu = cpu_from.unwrap_or_default();
    let to_cpu = cpu_to;
    let cpu = pids
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let d = match (
                from_cpu.get(i).copied().flatten(),
                to_cpu.get(i).copied().flatten(),
            ) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            (name.clone(), d)
        })
        .collect();
    Outcome {
        ops: total.all.count(),
        seconds: window_end.saturating_duration_since(from).as_secs_f64(),
        all: total.all,
        by_op: total.by_op,
        errors: total.errors,
        cpu,
        bench_cpu: bench_from.zip(bench_to).map(|(a, b)| b - a),
    }
}
