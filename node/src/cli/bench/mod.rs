//! `kvorum bench`: drives a cluster through `kvorum-client` with YCSB-style
//! workloads and reports throughput, latency percentiles (HDR histograms),
//! errors by kind, and the cluster's CPU seconds per operation; with
//! `--baseline`, also the raw transport's throughput at the same
//! concurrency (an empty request over the same QUIC + TLS path), and each
//! workload's throughput as a ratio to the bound it implies.
//!
//! # Layout
//! - this module: the command's entry ([`main`], [`run`]), its error, and
//!   the course of a bench (baseline, cluster, load, workloads, report).
//! - [`args`]: the CLI arguments and the checks of their combinations.
//! - [`cluster`]: the bench's own cluster (child `kvorum start` processes,
//!   configured as `kvorum dev` does), the wait until it has formed, and the
//!   echo server of the baseline.
//! - [`ops`]: the operations a run sends to the cluster, and their errors.
//! - [`report`]: the measured figures, printed and written as JSON.
//! - [`workload`]: workloads, operations, key choosers (uniform, zipfian). Pure.
//! - [`driver`]: the closed-loop load driver and its measurements.
//! - [`procs`]: child processes (killed on drop) and `/proc` readings.
//!
//! # Invariants
//! - Every child process (node or echo server) is killed when the bench
//!   ends, however it ends (error, panic, Ctrl-C, SIGTERM): each is owned by
//!   a [`procs::Child`] that kills it on drop.
//! - Only operations that start after the warm-up and finish before the end
//!   of the window are counted; CPU is sampled at the window's edges.

pub mod args;
pub mod cluster;
pub mod driver;
pub mod ops;
pub mod procs;
pub mod reclaim;
pub mod report;
pub mod workload;

pub use args::{BenchArgs, Routing};
pub use cluster::serve_echo;
pub use report::{Report, RunReport};

use args::validate;
use cluster::{forwarded_writes, node_threads, start_cluster, wait_until_formed, Target, WorkDir};
use driver::Phase;
use kvorum_client::{Admin, CausalContext, Client, ReadOptions, TlsMaterial, WriteOptions};
use kvorum_node::dev::{self, DevError, DevOptions};
use kvorum_node::net;
use ops::{echo_fn, echo_request, item_load_fn, op_fn, stored, Ops};
use procs::{Child, Machine};
use rand::RngCore;
use report::{memory, print_memory};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::{KeyChooser, ITEMS_PER_PARTITION};

/// Register bucket the workloads use.
pub const BUCKET: &str = "bench";
/// Counter bucket of the counter workload.
pub const COUNTER_BUCKET: &str = "bench_counter";

/// Why a bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// Certificates or configs of the cluster could not be made.
    #[error(transparent)]
    Dev(#[from] DevError),
    /// A config could not be read.
    #[error(transparent)]
    Config(#[from] kvorum_node::config::ConfigError),
    /// A child process failed.
    #[error(transparent)]
    Proc(#[from] procs::ProcError),
    /// The client failed to start or a setup request failed.
    #[error("client: {0}")]
    Client(#[from] kvorum_client::Error),
    /// TLS material unusable.
    #[error(transparent)]
    Tls(#[from] kvorum_client::TlsError),
    /// The echo server's endpoint failed.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster did not become ready.
    #[error("{0}")]
    NotReady(String),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `kvorum bench` command: runs the bench (or, with `--serve-echo`, the
/// baseline's echo server), prints the report, and writes it as JSON where
/// `--json` says.
pub async fn main(args: BenchArgs) -> Result<(), BenchError> {
    if let Some(config) = &args.serve_echo {
        return serve_echo(config).await;
    }
    let json = args.json.clone();
    let report = run(args).await?;
    if let Some(p) = json {
        std::fs::write(&p, report.to_json()).map_err(io_err(&p))?;
    }
    Ok(())
}

/// Values in flight a load phase keeps at most (beyond the largest
/// concurrency asked for): more only queue past the client's timeout.
const LOAD_INFLIGHT_BYTES: usize = 16 << 20;

/// Attempts a load phase's write gets: the first, then retries after
/// 0.2, 0.4, 0.8 and 1.6 s.
const LOAD_ATTEMPTS: u32 = 5;

/// `op`, retried up to [`LOAD_ATTEMPTS`] times with a doubling pause: a
/// load fills the store, and a write refused or timed out while the
/// cluster is overloaded (compactions falling behind at millions of keys)
/// is sent again, as an application would, instead of ending the bench.
/// The measured passes never retry. Counts the retries in `retried`.
fn retrying(op: driver::OpFn, retried: Arc<AtomicU64>) -> driver::OpFn {
    Arc::new(move |i, rng: &mut rand::rngs::SmallRng| {
        let (op, retried) = (op.clone(), retried.clone());
        let seed = rng.next_u64();
        Box::pin(async move {
            use rand::SeedableRng;
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let mut attempt = 1;
            loop {
                let (kind, result) = op(i, &mut rng).await;
                if result.is_ok() || attempt >= LOAD_ATTEMPTS {
                    return (kind, result);
                }
                retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
        })
    })
}

/// A load phase: `--keys` operations of `op` at the largest concurrency
/// (at least 64, unless that is more than [`LOAD_INFLIGHT_BYTES`] of
/// values), each retried (see [`retrying`]); every one must succeed.
async fn load(
    args: &BenchArgs,
    size: usize,
    seed: u64,
    target: &Target,
    label: &str,
    op: driver::OpFn,
) -> Result<RunReport, BenchError> {
    let asked = args.concurrency.iter().copied().max().unwrap_or(64);
    let c = asked.max(64.min(LOAD_INFLIGHT_BYTES / size.max(1)));
    let phase = Phase {
        concurrency: c,
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        ops: Some(args.keys),
        seed,
    };
    let retried = Arc::new(AtomicU64::new(0));
    let op = retrying(op, retried.clone());
    let o = driver::drive(phase, label, &target.pids, op).await;
    let rep = RunReport::new(label, c, size, &o);
    rep.print();
    let retried = retried.load(Ordering::Relaxed);
    if retried > 0 {
        println!("{label}: {retried} write(s) retried after a failure");
    }
    if o.error_count() > 0 {
        return Err(BenchError::NotReady(format!(
            "{label}: {} of {} operations failed: {:?}",
            o.error_count(),
            args.keys,
            rep.error_examples
        )));
    }
    Ok(rep)
}

/// Runs `kvorum bench`: until done, or until Ctrl-C / SIGTERM (then every
/// child is stopped and [`BenchError::Interrupted`] returned).
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    tokio::select! {
        r = bench(args) => r,
        () = kvorum_node::start::wait_for_signal() => Err(BenchError::Interrupted),
    }
}

async fn bench(args: BenchArgs) -> Result<Report, BenchError> {
    validate(&args)?;
    let machine = Machine::now();
    let seed = args.seed.unwrap_or_else(|| rand::rng().next_u64());
    let majority = args.n / 2 + 1;
    let (r, w) = (args.r.unwrap_or(majority), args.w.unwrap_or(majority));
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    eprintln!(
        "kvorum bench: {} cores, {:.1} GiB, load average {}; seed {seed}",
        machine.cores,
        machine.memory_bytes as f64 / (1u64 << 30) as f64,
        machine.loadavg
    );

    let path = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kvorum-bench-{}", std::process::id())),
    };
    if args.dir.is_none() && path.exists() {
        std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
    }
    std::fs::create_dir_all(&path).map_err(io_err(&path))?;
    let _workdir = WorkDir {
        path: path.clone(),
        remove: !args.keep && args.dir.is_none(),
    };

    let phase = |concurrency: usize, seed: u64| Phase {
        concurrency,
        duration: Duration::from_secs(args.duration_secs),
        warmup: Duration::from_secs(args.warmup_secs),
        ops: args.ops,
        seed,
    };

    // The baseline first, on a quiet machine: an echo server in a child
    // process with a node's certificate and endpoint configuration.
    let mut baseline = Vec::new();
    if args.baseline {
        let dir = path.join("baseline");
        let opts = DevOptions {
            dir: dir.clone(),
            nodes: 1,
            base_port: args.port.saturating_add(50),
        };
        let cfg = dev::prepare(&opts)?;
        let addr = cfg
            .first()
            .map(|c| c.listen)
            .ok_or_else(|| BenchError::Usage("the baseline config was not made (a bug)".into()))?;
        let mut echo = Child::spawn("echo", &["bench", "--serve-echo", "n1.toml"], &dir)?;
        let certs = dir.join("certs");
        let tls = TlsMaterial::from_dir(&certs, "client")?;
        let client = Admin::builder([addr], tls).build()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = echo_request(&client).await {
            echo.check_running()?;
            if Instant::now() > deadline {
                return Err(BenchError::NotReady(format!(
                    "the echo server did not answer: {e}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pids = vec![("echo".to_string(), echo.pid())];
        for &c in &args.concurrency {
            eprintln!("baseline: empty requests, {c} in flight");
            let o = driver::drive(phase(c, seed), "echo", &pids, echo_fn(client.clone())).await;
            let rep = RunReport::new("echo", c, 0, &o);
            rep.print();
            baseline.push(rep);
        }
        client.close().await;
        drop(echo);
    }

    let threads = node_threads(&args);
    let mut target = if args.connect.is_empty() {
        eprintln!(
            "starting {} nodes on 127.0.0.1:{}.. (sync = {}, runtime threads per node: {}) in {}",
            args.nodes,
            args.port,
            args.sync,
            threads,
            path.display()
        );
        start_cluster(&args, threads, &path)?
    } else {
        let tls = TlsMaterial::from_dir(&args.certs, "client")?;
        Target {
            addrs: args.connect.clone(),
            tls,
            admin_tls: TlsMaterial::from_dir(&args.certs, "admin")?,
            pids: args
                .node_pid
                .iter()
                .map(|p| (format!("pid{p}"), *p))
                .collect(),
            data_dirs: Vec::new(),
            metrics: Vec::new(),
            children: Vec::new(),
        }
    };
    wait_until_formed(&mut target, args.n).await?;
    let routing = match args.routing {
        Routing::Token => "token-aware",
        Routing::RoundRobin => "round-robin",
    };
    let cluster = if target.children.is_empty() {
        format!("external: {} seed(s), {routing} client", target.addrs.len())
    } else {
        format!(
            "{} nodes, sync = {}, runtime threads per node: {}, {routing} client",
            args.nodes, args.sync, threads
        )
    };
    let mut mem = vec![memory(&target, "idle", 0)];
    let idle_keys = reclaim::stored_keys(&target).await.unwrap_or(0.0);
    if let Some(m) = mem.last() {
        print_memory(m);
    }

    let client = Client::builder(target.addrs.clone(), target.tls.clone())
        .token_aware(args.routing == Routing::Token)
        .build()?;
    let ops = Arc::new(Ops {
        client: client.clone(),
        chooser: KeyChooser::new(args.distribution, args.keys),
        value: Vec::new(),
        contexts: (0..args.keys)
            .map(|_| Mutex::new(CausalContext::empty()))
            .collect(),
        next_new: AtomicU64::new(args.keys),
        partitions: KeyChooser::new(args.distribution, args.keys.div_ceil(ITEMS_PER_PARTITION)),
        next_item: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        read: ReadOptions {
            r: Some(r),
            ..ReadOptions::default()
        },
        write: WriteOptions {
            w: Some(w),
            ttl: args.ttl,
            ..WriteOptions::default()
        },
    });
    let needs_load = args.workload.iter().any(|w| w.needs_load());
    let needs_items = args.workload.iter().any(|w| w.needs_items());
    let mut runs = Vec::new();
    let mut loads = Vec::new();
    let mut ops = ops;
    for &size in &args.value_size {
        let value: Vec<u8> = {
            let mut v = vec![0u8; size];
            rand::rng().fill_bytes(&mut v);
            v
        };
        // Contexts carry over from one value size to the next: reloading
        // supersedes the previous values.
        match Arc::get_mut(&mut ops) {
            Some(o) => o.value = value,
            None => {
                return Err(BenchError::Usage(
                    "operations still running after their phase (a bug)".into(),
                ))
            }
        }
        if needs_load {
            eprintln!("loading {} keys of {size} B", args.keys);
            loads.push(load(&args, size, seed, &target, "load", op_fn(&ops, None)).await?);
            let m = memory(&target, &format!("loaded {size} B"), stored(&ops));
            print_memory(&m);
            mem.push(m);
        }
        if needs_items {
            eprintln!(
                "loading {} items of {size} B in partitions of {ITEMS_PER_PARTITION}",
                args.keys
            );
            let items = item_load_fn(&ops);
            loads.push(load(&args, size, seed, &target, "load-items", items).await?);
        }
        for &workload in &args.workload {
            for &c in &args.concurrency {
                target.check()?;
                let label = format!("{workload} c={c} {size} B");
                let forwarded_before = forwarded_writes(&target).await;
                let writes_before = ops.writes.load(Ordering::Relaxed);
                let o = driver::drive(
                    phase(c, seed),
                    &label,
                    &target.pids,
                    op_fn(&ops, Some(workload)),
                )
                .await;
                let mut rep = RunReport::new(&workload.to_string(), c, size, &o);
                let writes = ops.writes.load(Ordering::Relaxed) - writes_before;
                if let (Some(a), Some(b)) = (forwarded_before, forwarded_writes(&target).await) {
                    rep.forwarded_share = (writes > 0).then(|| (b - a) / writes as f64);
                }
                if let Some(b) = baseline.iter().find(|b| b.concurrency == c) {
                    let bound = b.throughput / f64::from(args.n.max(1));
                    rep.bound = Some(bound);
                    rep.ratio_to_bound = (bound > 0.0).then(|| rep.throughput / bound);
                }
                rep.print();
                runs.push(rep);
            }
        }
    }
    let m = memory(&target, "end", stored(&ops));
    print_memory(&m);
    mem.push(m);
    let reclaim = match args.reclaim_secs {
        Some(secs) => {
            let limit = Duration::from_secs(secs);
            Some(reclaim::watch(&target, &mem[0], idle_keys, limit).await)
        }
        None => None,
    };
    client.close().await;
    target.check()?;
    drop(target);

    Ok(Report {
        machine,
        command,
        cluster,
        n: args.n,
        r,
        w,
        distribution: args.distribution,
        keys: args.keys,
        seed,
        baseline,
        runs,
        loads,
        memory: mem,
        reclaim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use driver::{OpError, OpFn};
    use rand::{rngs::SmallRng, SeedableRng};
    use workload::Op;

    /// An op that fails its first `failures` attempts of each index.
    fn flaky(failures: u64) -> (OpFn, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        let op: OpFn = Arc::new(move |_, _: &mut SmallRng| {
            let n = seen.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                let result = if n < failures {
                    Err(OpError {
                        kind: "timeout".into(),
                        message: "planted".into(),
                    })
                } else {
                    Ok(())
                };
                (Op::Insert, result)
            })
        });
        (op, calls)
    }

    #[tokio::test]
    async fn a_load_write_is_retried_until_it_succeeds_and_no_further() {
        let (op, calls) = flaky(2);
        let retried = Arc::new(AtomicU64::new(0));
        let op = retrying(op, retried.clone());
        let (_, result) = op(0, &mut SmallRng::seed_from_u64(1)).await;
        assert!(result.is_ok());
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert_eq!(retried.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_load_write_that_keeps_failing_fails_after_its_attempts() {
        let (op, calls) = flaky(u64::MAX);
        let retried = Arc::new(AtomicU64::new(0));
        let op = retrying(op, retried.clone());
        let (_, result) = op(0, &mut SmallRng::seed_from_u64(1)).await;
        assert_eq!(result.map_err(|e| e.kind), Err("timeout".to_string()));
        assert_eq!(calls.load(Ordering::Relaxed), u64::from(LOAD_ATTEMPTS));
        assert_eq!(
            retried.load(Ordering::Relaxed),
            u64::from(LOAD_ATTEMPTS - 1)
        );
    }
}
