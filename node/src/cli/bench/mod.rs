//! `kvorum bench`: drives a cluster through `kvorum-client` with YCSB-style
//! workloads and reports throughput, latency percentiles (HDR histograms),
//! errors by kind, and the cluster's CPU seconds per operation; with
//! `--baseline`, also the raw transport's throughput at the same
//! concurrency (an empty request over the same QUIC + TLS path), and each
//! workload's throughput as a ratio to the bound it implies.
//!
//! # Layout
//! - [`workload`]: workloads, operations, key choosers (uniform, zipfian). Pure.
//! - [`driver`]: the closed-loop load driver and its measurements.
//! - [`procs`]: child processes (killed on drop) and `/proc` readings.
//! - this module: the CLI arguments, the bench's own cluster (child
//!   `kvorum start` processes, configured as `kvorum dev` does), the echo
//!   server of the baseline, and the report.
//!
//! # Invariants
//! - Every child process (node or echo server) is killed when the bench
//!   ends, however it ends (error, panic, Ctrl-C, SIGTERM): each is owned by
//!   a [`procs::Child`] that kills it on drop.
//! - Only operations that start after the warm-up and finish before the end
//!   of the window are counted; CPU is sampled at the window's edges.

pub mod driver;
pub mod procs;
pub mod workload;

use driver::{LatencySummary, OpError, OpFn, Outcome, Phase};
use kvorum_client::proto::{Request, Response};
use kvorum_client::{
    Admin, BucketProps, BucketType, CausalContext, Client, ReadOptions, TlsMaterial, WriteOptions,
};
use kvorum_node::config::NodeConfig;
use kvorum_node::dev::{self, DevError, DevOptions};
use kvorum_node::net::{self, Handler, ServeLimits};
use kvorum_node::rpc::peer::{PeerError, PeerRequest, PeerResponse};
use kvorum_node::rpc::transport::BoxFuture;
use kvorum_node::util::LockExt;
use procs::{Child, Machine};
use rand::rngs::SmallRng;
use rand::RngCore;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::{key_of, Distribution, KeyChooser, Op, Workload};

/// Register bucket the workloads use.
pub const BUCKET: &str = "bench";
/// Counter bucket of the counter workload.
pub const COUNTER_BUCKET: &str = "bench_counter";

/// Arguments of `kvorum bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Workloads to run, in order (comma-separated): a (50% read / 50%
    /// update), b (95/5), c (read only), w (write only, new keys), counter
    /// (CRDT counter increments).
    #[arg(long, value_delimiter = ',', default_value = "a")]
    pub workload: Vec<Workload>,
    /// How keys are drawn.
    #[arg(long, value_enum, default_value_t = Distribution::Zipfian)]
    pub distribution: Distribution,
    /// Keys loaded before workloads a, b, c (and drawn from by them and by
    /// counter).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Value sizes in bytes (comma-separated: each is run in turn).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub value_size: Vec<usize>,
    /// Requests in flight (comma-separated: each is run in turn).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub concurrency: Vec<usize>,
    /// Measured seconds per run (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Unmeasured seconds at the start of each run.
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// Run exactly this many operations per run instead of a duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Replicas per key (of the bench buckets).
    #[arg(long, default_value_t = 3)]
    pub n: u8,
    /// Read quorum of every read (default: a majority of N).
    #[arg(long)]
    pub r: Option<u8>,
    /// Write quorum of every write (default: a majority of N).
    #[arg(long)]
    pub w: Option<u8>,
    /// Also measure the raw transport (empty requests over the same QUIC +
    /// TLS path, one stream each) at each concurrency, and report each run
    /// as a ratio to the bound it implies.
    #[arg(long)]
    pub baseline: bool,
    /// Also write the report as JSON to this file (the human report goes
    /// to stdout, progress to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Target an existing cluster at these addresses (comma-separated)
    /// instead of starting one.
    #[arg(long, value_delimiter = ',')]
    pub connect: Vec<SocketAddr>,
    /// With --connect: directory holding ca.pem, client.pem and client.key.
    #[arg(long, default_value = "kvorum-dev/certs")]
    pub certs: PathBuf,
    /// With --connect: pids of the node processes, for CPU per operation
    /// (comma-separated; without them CPU is reported as unavailable).
    #[arg(long, value_delimiter = ',')]
    pub node_pid: Vec<u32>,
    /// Nodes of the bench's own cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// UDP port of the first node of the bench's own cluster (the others
    /// take the next ports; metrics listen 2000 above; the baseline's echo
    /// server listens 50 above).
    #[arg(long, default_value_t = 7601)]
    pub port: u16,
    /// Sync policy of the bench's own cluster: always (sync before each
    /// acknowledgement, concurrent writes share a sync) or periodic.
    #[arg(long, default_value = "always", value_parser = ["always", "periodic"])]
    pub sync: String,
    /// Runtime threads of each node of the bench's own cluster (default:
    /// the machine's cores divided among the nodes, at least 1; the nodes
    /// share the machine with each other and the load generator). Not with
    /// --connect.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub node_threads: Option<u16>,
    /// Directory of the bench's own cluster (default: a new directory under
    /// the system temp directory, removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the cluster's directory at the end.
    #[arg(long)]
    pub keep: bool,
    /// Seed of the key choices (default: random; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run the baseline's echo server from this node config (internal).
    #[arg(long, hide = true)]
    pub serve_echo: Option<PathBuf>,
}

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

/// Runs `kvorum bench`: until done, or until Ctrl-C / SIGTERM (then every
/// child is stopped and [`BenchError::Interrupted`] returned).
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    tokio::select! {
        r = bench(args) => r,
        () = kvorum_node::start::wait_for_signal() => Err(BenchError::Interrupted),
    }
}

/// Runs the baseline's echo server (`--serve-echo`) until Ctrl-C / SIGTERM.
pub async fn serve_echo(config: &Path) -> Result<(), BenchError> {
    let cfg = NodeConfig::load(config)?;
    let tls = TlsMaterial::from_files(&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key)?;
    let endpoint = net::endpoint(cfg.listen, &tls, &net::SocketHooks::default())?;
    let limits = ServeLimits {
        max_frame_bytes: cfg.limits.max_frame_bytes,
        max_connections: cfg.limits.max_connections,
        max_inflight_requests: cfg.limits.max_inflight_requests,
        read_timeout: cfg.limits.request_read_timeout,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = kvorum_node::metrics::Metrics::new("echo");
    let server = tokio::spawn(net::serve(
        endpoint,
        Arc::new(Echo),
        limits,
        metrics,
        stopped,
    ));
    kvorum_node::start::wait_for_signal().await;
    let _ = stop.send(true);
    let _ = server.await;
    Ok(())
}

/// The baseline's handler: answers every client request with the smallest
/// reply of the protocol (a unit variant: one byte after the version),
/// without looking at the request.
struct Echo;

impl Handler for Echo {
    fn client(&self, _req: Request) -> BoxFuture<'_, Response> {
        Box::pin(async { Response::BucketCreated })
    }

    fn peer(&self, _req: PeerRequest) -> BoxFuture<'_, PeerResponse> {
        Box::pin(async { PeerResponse::Error(PeerError::Refused("echo server".into())) })
    }
}

/// The working directory of a run; removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The cluster under test and the processes whose CPU counts as its cost.
struct Target {
    addrs: Vec<SocketAddr>,
    tls: TlsMaterial,
    pids: Vec<(String, u32)>,
    data_dirs: Vec<PathBuf>,
    /// Owned nodes (killed on drop); empty for --connect.
    children: Vec<Child>,
}

impl Target {
    fn check(&mut self) -> Result<(), BenchError> {
        for c in &mut self.children {
            c.check_running()?;
        }
        Ok(())
    }
}

/// Runtime threads of each node of the bench's own cluster.
fn node_threads(args: &BenchArgs) -> u16 {
    args.node_threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        u16::try_from((cores / args.nodes.max(1)).clamp(1, 1024)).unwrap_or(1)
    })
}

/// Starts the bench's own cluster: configs and certificates as `kvorum dev`
/// makes them (plus the sync policy), one `kvorum start` child per node.
fn start_cluster(args: &BenchArgs, threads: u16, dir: &Path) -> Result<Target, BenchError> {
    let opts = DevOptions {
        dir: dir.to_path_buf(),
        nodes: args.nodes,
        base_port: args.port,
    };
    let configs = dev::prepare(&opts)?;
    let mut children = Vec::new();
    let mut pids = Vec::new();
    for cfg in &configs {
        let path = dir.join(format!("{}.toml", cfg.id));
        let mut text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        text.push_str(&format!("\n[storage]\nsync = \"{}\"\n", args.sync));
        std::fs::write(&path, text).map_err(io_err(&path))?;
        let file = format!("{}.toml", cfg.id);
        let threads = threads.to_string();
        let child = Child::spawn(
            &cfg.id,
            &["start", "--config", &file, "--worker-threads", &threads],
            dir,
        )?;
        pids.push((cfg.id.clone(), child.pid()));
        children.push(child);
    }
    let certs = dir.join("certs");
    let tls = TlsMaterial::from_files(
        certs.join("ca.pem"),
        certs.join("client.pem"),
        certs.join("client.key"),
    )?;
    Ok(Target {
        addrs: configs.iter().map(|c| c.listen).collect(),
        tls,
        pids,
        data_dirs: configs.iter().map(|c| c.data_dir.clone()).collect(),
        children,
    })
}

/// Waits until a W = all write succeeds through every node.
async fn wait_until_formed(target: &mut Target, n: u8) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let props = BucketProps::new(BucketType::Register)
        .n(n)
        .r(n / 2 + 1)
        .w(n / 2 + 1);
    let counter = BucketProps::new(BucketType::Counter)
        .n(n)
        .r(n / 2 + 1)
        .w(n / 2 + 1);
    let all = Admin::builder(target.addrs.clone(), target.tls.clone())
        .connect_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2))
        .build()?;
    let mut last;
    for (name, p) in [(BUCKET, props), (COUNTER_BUCKET, counter)] {
        loop {
            target.check()?;
            match all.create_bucket(name, p).await {
                Ok(()) => break,
                Err(
                    e @ kvorum_client::Error::Server(kvorum_client::ErrorReply::BucketConflict {
                        ..
                    }),
                ) => {
                    return Err(BenchError::NotReady(format!(
                        "bucket {name} exists with other props (N must be {n}): {e}"
                    )))
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                all.close().await;
                return Err(BenchError::NotReady(format!(
                    "cannot create bucket {name}: {last}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for addr in target.addrs.clone() {
        let one = Client::builder([addr], target.tls.clone())
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(Duration::from_secs(2))
            .build()?;
        loop {
            target.check()?;
            let probe = one
                .put_with(
                    BUCKET,
                    b"bench-probe",
                    b"",
                    &CausalContext::empty(),
                    WriteOptions::w(n),
                )
                .await;
            match probe {
                Ok(_) => break,
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                one.close().await;
                return Err(BenchError::NotReady(format!(
                    "cluster did not form within 60 s: {last}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        one.close().await;
    }
    all.close().await;
    Ok(())
}

/// Shared state of the operations of a run.
struct Ops {
    client: Client,
    chooser: KeyChooser,
    value: Vec<u8>,
    /// The last context seen for each loaded key: updates supersede it, so
    /// that updates replace values instead of piling up siblings.
    contexts: Vec<Mutex<CausalContext>>,
    /// Index of the next new key (workload w).
    next_new: AtomicU64,
    read: ReadOptions,
    write: WriteOptions,
}

impl Ops {
    fn remember(&self, k: u64, ctx: CausalContext) {
        if let Some(slot) = self.contexts.get(k as usize) {
            *slot.locked() = ctx;
        }
    }

    fn context(&self, k: u64) -> CausalContext {
        self.contexts
            .get(k as usize)
            .map(|slot| slot.locked().clone())
            .unwrap_or_default()
    }

    async fn run(&self, op: Op, k: u64) -> Result<(), OpError> {
        let key = key_of(k);
        match op {
            Op::Read => {
                let v = self
                    .client
                    .get_with(BUCKET, &key, self.read)
                    .await
                    .map_err(op_error)?;
                let found = v.is_found();
                self.remember(k, v.context);
                if !found {
                    return Err(OpError {
                        kind: "not_found".into(),
                        message: format!("loaded key {k} not found"),
                    });
                }
            }
            Op::Update | Op::Insert => {
                let ctx = self.context(k);
                let new = self
                    .client
                    .put_with(BUCKET, &key, &self.value, &ctx, self.write)
                    .await
                    .map_err(op_error)?;
                self.remember(k, new);
            }
            Op::Increment => {
                self.client
                    .counter(COUNTER_BUCKET, &key)
                    .write_options(self.write)
                    .increment(1)
                    .await
                    .map_err(op_error)?;
            }
            // The echo is the baseline's request (an admin request, to the
            // echo server), never one of a workload's.
            Op::Echo => {
                return Err(OpError {
                    kind: "not_a_workload_op".into(),
                    message: "echo runs only in the baseline".into(),
                })
            }
        }
        Ok(())
    }
}

/// A short, bounded name for a client error (the report's key).
fn op_error(e: kvorum_client::Error) -> OpError {
    use kvorum_client::Error as E;
    let kind = match &e {
        E::Server(reply) => format!("server/{}", variant_name(&format!("{reply:?}"))),
        E::NoNodeAvailable(_) => "no_node_available".into(),
        E::OutcomeUnknown { .. } => "outcome_unknown".into(),
        E::Timeout { .. } => "timeout".into(),
        E::Protocol(_) => "protocol".into(),
        other => variant_name(&format!("{other:?}")).to_ascii_lowercase(),
    };
    OpError {
        kind,
        message: e.to_string(),
    }
}

fn variant_name(debug: &str) -> String {
    debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn op_fn(ops: &Arc<Ops>, workload: Option<Workload>) -> OpFn {
    let ops = ops.clone();
    Arc::new(move |i: u64, rng: &mut SmallRng| {
        let (op, k) = match workload {
            // The load phase: key i.
            None => (Op::Insert, i),
            Some(w) => {
                let op = w.next_op(rng);
                let k = match op {
                    Op::Insert => ops.next_new.fetch_add(1, Ordering::Relaxed),
                    _ => ops.chooser.next(rng),
                };
                (op, k)
            }
        };
        let ops = ops.clone();
        Box::pin(async move { (op, ops.run(op, k).await) })
    })
}

/// The baseline's request: a bucket creation with an empty name (a few
/// bytes), which the echo server answers with its one-byte reply.
async fn echo_request(client: &Admin) -> Result<(), kvorum_client::Error> {
    client
        .create_bucket("", BucketProps::new(BucketType::Register))
        .await
}

fn echo_fn(client: Admin) -> OpFn {
    let ops = Arc::new(client);
    Arc::new(move |_i: u64, _rng: &mut SmallRng| {
        let client = ops.clone();
        Box::pin(async move { (Op::Echo, echo_request(&client).await.map_err(op_error)) })
    })
}

/// The measured figures of one run (one workload at one concurrency and
/// value size).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// Workload (`echo` for the baseline).
    pub workload: String,
    /// Requests in flight.
    pub concurrency: usize,
    /// Value size in bytes (0 for the baseline).
    pub value_size: usize,
    /// Successful operations in the window.
    pub ops: u64,
    /// Window length.
    pub seconds: f64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Latencies of all successful operations.
    pub latency: LatencySummary,
    /// Latencies by operation.
    pub latency_by_op: BTreeMap<String, LatencySummary>,
    /// Failed operations by kind.
    pub errors: BTreeMap<String, u64>,
    /// One message per error kind.
    pub error_examples: BTreeMap<String, String>,
    /// CPU seconds of each server process in the window (`null`: unknown).
    pub server_cpu_seconds: BTreeMap<String, Option<f64>>,
    /// Their sum (`null` when any is unknown).
    pub server_cpu_total_seconds: Option<f64>,
    /// Server CPU microseconds per successful operation.
    pub server_cpu_us_per_op: Option<f64>,
    /// CPU seconds of the load generator (this process).
    pub bench_cpu_seconds: Option<f64>,
    /// The transport bound at this concurrency: baseline throughput / N
    /// (a quorum operation is at least N round trips of work: client to
    /// coordinator, coordinator to N-1 replicas).
    pub bound: Option<f64>,
    /// throughput / bound.
    pub ratio_to_bound: Option<f64>,
}

impl RunReport {
    fn new(workload: &str, concurrency: usize, value_size: usize, o: &Outcome) -> Self {
        let total = o.cluster_cpu();
        Self {
            workload: workload.to_string(),
            concurrency,
            value_size,
            ops: o.ops,
            seconds: o.seconds,
            throughput: o.throughput(),
            latency: o.all.summary(),
            latency_by_op: o
                .by_op
                .iter()
                .map(|(op, l)| (op.name().to_string(), l.summary()))
                .collect(),
            errors: o.errors.iter().map(|(k, (n, _))| (k.clone(), *n)).collect(),
            error_examples: o
                .errors
                .iter()
                .map(|(k, (_, m))| (k.clone(), m.clone()))
                .collect(),
            server_cpu_seconds: o.cpu.iter().cloned().collect(),
            server_cpu_total_seconds: total,
            server_cpu_us_per_op: total.filter(|_| o.ops > 0).map(|s| s * 1e6 / o.ops as f64),
            bench_cpu_seconds: o.bench_cpu,
            bound: None,
            ratio_to_bound: None,
        }
    }

    fn print(&self) {
        let l = &self.latency;
        println!(
            "{:<8} c={:<4} {:>7} B  {:>9.0} ops/s  p50 {:>6} µs  p90 {:>6}  p99 {:>6}  p99.9 {:>6}  max {:>7}  errors {}",
            self.workload,
            self.concurrency,
            self.value_size,
            self.throughput,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            self.errors.values().sum::<u64>()
        );
        if self.latency_by_op.len() > 1 {
            for (op, l) in &self.latency_by_op {
                println!(
                    "           {op:<9} {:>9} ops          p50 {:>6} µs  p90 {:>6}  p99 {:>6}  p99.9 {:>6}  max {:>7}",
                    l.count, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                );
            }
        }
        for (kind, n) in &self.errors {
            let example = self.error_examples.get(kind).map_or("", String::as_str);
            println!("           error {kind}: {n} (e.g. {example})");
        }
        match (self.server_cpu_total_seconds, self.server_cpu_us_per_op) {
            (Some(total), Some(per_op)) => println!(
                "           server CPU {total:.2} s ({per_op:.1} µs/op){}",
                self.bench_cpu_seconds
                    .map(|b| format!("; load generator {b:.2} s"))
                    .unwrap_or_default()
            ),
            _ => println!("           server CPU: unavailable (pass --node-pid)"),
        }
        if let (Some(bound), Some(ratio)) = (self.bound, self.ratio_to_bound) {
            println!(
                "           transport bound {bound:.0} ops/s: ratio {:.0} %",
                ratio * 100.0
            );
        }
    }
}

/// Memory of the nodes at one stage of the bench.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryReport {
    /// `idle` (cluster formed, nothing loaded) or `loaded <size> B` or `end`.
    pub stage: String,
    /// Keys stored (loaded plus inserted by workload w) at that stage.
    pub keys: u64,
    /// Resident memory of each node (bytes; `null`: unknown).
    pub rss_bytes: BTreeMap<String, Option<u64>>,
    /// Bytes on disk of each node's data directory (own cluster only).
    pub disk_bytes: BTreeMap<String, u64>,
}

/// Everything a bench measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// Nodes; sync policy (own cluster) or `external`.
    pub cluster: String,
    /// Replicas per key and the quorums used.
    pub n: u8,
    /// Read quorum.
    pub r: u8,
    /// Write quorum.
    pub w: u8,
    /// Key distribution.
    pub distribution: Distribution,
    /// Loaded keys.
    pub keys: u64,
    /// Seed of the key choices.
    pub seed: u64,
    /// The raw transport, one run per concurrency.
    pub baseline: Vec<RunReport>,
    /// The workloads.
    pub runs: Vec<RunReport>,
    /// Load phases (writes of every key), one per value size.
    pub loads: Vec<RunReport>,
    /// Node memory at stages of the bench.
    pub memory: Vec<MemoryReport>,
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Plain data of strings and numbers: serialization cannot fail; an
        // empty object would be the visible result if it did.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

fn memory(target: &Target, stage: &str, keys: u64) -> MemoryReport {
    MemoryReport {
        stage: stage.to_string(),
        keys,
        rss_bytes: target
            .pids
            .iter()
            .map(|(n, p)| (n.clone(), procs::rss_bytes(*p)))
            .collect(),
        disk_bytes: target
            .pids
            .iter()
            .zip(&target.data_dirs)
            .map(|((n, _), d)| (n.clone(), procs::disk_bytes(d)))
            .collect(),
    }
}

fn print_memory(m: &MemoryReport) {
    let rss: Vec<String> = m
        .rss_bytes
        .iter()
        .map(|(n, b)| match b {
            Some(b) => format!("{n} {:.1} MiB", *b as f64 / 1048576.0),
            None => format!("{n} ?"),
        })
        .collect();
    let disk = if m.disk_bytes.is_empty() {
        "unknown (not the bench's own cluster)".to_string()
    } else {
        let all: u64 = m.disk_bytes.values().sum();
        format!("{:.1} MiB in all", all as f64 / 1048576.0)
    };
    let rss = if rss.is_empty() {
        "unknown (pass --node-pid)".to_string()
    } else {
        rss.join(", ")
    };
    println!(
        "memory ({}, {} keys): RSS {rss}; disk {disk}",
        m.stage, m.keys
    );
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
        let tls = TlsMaterial::from_files(
            certs.join("ca.pem"),
            certs.join("client.pem"),
            certs.join("client.key"),
        )?;
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
        let tls = TlsMaterial::from_files(
            args.certs.join("ca.pem"),
            args.certs.join("client.pem"),
            args.certs.join("client.key"),
        )?;
        Target {
            addrs: args.connect.clone(),
            tls,
            pids: args
                .node_pid
                .iter()
                .map(|p| (format!("pid{p}"), *p))
                .collect(),
            data_dirs: Vec::new(),
            children: Vec::new(),
        }
    };
    wait_until_formed(&mut target, args.n).await?;
    let cluster = if target.children.is_empty() {
        format!("external: {} seed(s)", target.addrs.len())
    } else {
        format!(
            "{} nodes, sync = {}, runtime threads per node: {}",
            args.nodes, args.sync, threads
        )
    };
    let mut mem = vec![memory(&target, "idle", 0)];
    if let Some(m) = mem.last() {
        print_memory(m);
    }

    let client = Client::builder(target.addrs.clone(), target.tls.clone()).build()?;
    let ops = Arc::new(Ops {
        client: client.clone(),
        chooser: KeyChooser::new(args.distribution, args.keys),
        value: Vec::new(),
        contexts: (0..args.keys)
            .map(|_| Mutex::new(CausalContext::empty()))
            .collect(),
        next_new: AtomicU64::new(args.keys),
        read: ReadOptions {
            r: Some(r),
            ..ReadOptions::default()
        },
        write: WriteOptions {
            w: Some(w),
            ..WriteOptions::default()
        },
    });
    let needs_load = args.workload.iter().any(|w| w.needs_load());
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
            let c = args.concurrency.iter().copied().max().unwrap_or(64).max(64);
            eprintln!("loading {} keys of {size} B ({c} in flight)", args.keys);
            let load = Phase {
                concurrency: c,
                duration: Duration::ZERO,
                warmup: Duration::ZERO,
                ops: Some(args.keys),
                seed,
            };
            let o = driver::drive(load, "load", &target.pids, op_fn(&ops, None)).await;
            let rep = RunReport::new("load", c, size, &o);
            rep.print();
            if o.error_count() > 0 {
                return Err(BenchError::NotReady(format!(
                    "{} of {} loads failed: {:?}",
                    o.error_count(),
                    args.keys,
                    rep.error_examples
                )));
            }
            loads.push(rep);
            let m = memory(&target, &format!("loaded {size} B"), stored(&ops));
            print_memory(&m);
            mem.push(m);
        }
        for &workload in &args.workload {
            for &c in &args.concurrency {
                target.check()?;
                let label = format!("{workload} c={c} {size} B");
                let o = driver::drive(
                    phase(c, seed),
                    &label,
                    &target.pids,
                    op_fn(&ops, Some(workload)),
                )
                .await;
                let mut rep = RunReport::new(&workload.to_string(), c, size, &o);
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
    })
}

/// Keys stored by the bench so far (loaded, then new ones of workload w).
fn stored(ops: &Ops) -> u64 {
    ops.next_new.load(Ordering::Relaxed)
}

fn validate(args: &BenchArgs) -> Result<(), BenchError> {
    let usage = |m: &str| Err(BenchError::Usage(m.to_string()));
    if args.workload.is_empty() || args.concurrency.is_empty() || args.value_size.is_empty() {
        return usage("--workload, --concurrency and --value-size need at least one value");
    }
    if args.concurrency.contains(&0) {
        return usage("--concurrency must be at least 1");
    }
    if args.n == 0
        || args.r.is_some_and(|r| r == 0 || r > args.n)
        || args.w.is_some_and(|w| w == 0 || w > args.n)
    {
        return usage("quorums must be 1 ≤ R, W ≤ N");
    }
    if args.connect.is_empty() && usize::from(args.n) > args.nodes {
        return usage("--n cannot exceed --nodes");
    }
    if args.keys == 0 {
        return usage("--keys must be at least 1");
    }
    if args.duration_secs == 0 && args.ops.is_none() {
        return usage("--duration-secs must be at least 1 (or pass --ops)");
    }
    if args.connect.is_empty()
        && (args.nodes == 0 || usize::from(u16::MAX - args.port) < args.nodes + 2100)
    {
        return usage("--nodes and --port leave no room for the cluster's ports");
    }
    if !args.connect.is_empty() && args.node_threads.is_some() {
        return usage("--node-threads applies to the bench's own cluster, not to --connect");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn check(args: &[&str]) -> Result<(), String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        validate(&cli.bench).map_err(|e| e.to_string())
    }

    #[test]
    fn node_threads_are_for_the_own_cluster_only() {
        assert_eq!(check(&["--node-threads", "2"]), Ok(()));
        let e = check(&["--connect", "127.0.0.1:7401", "--node-threads", "2"]).unwrap_err();
        assert!(e.contains("--node-threads"), "{e}");
        assert!(check(&["--node-threads", "0"]).is_err());
    }
}
