//! The arguments of `kvorum bench` and the checks of their combinations.

use super::workload::{Distribution, Workload};
use super::BenchError;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `kvorum bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Workloads to run, in order (comma-separated): a (50% read / 50%
    /// update), b (95/5), c (read only), w (write only, new keys), counter
    /// (CRDT counter increments), e (YCSB E: 95% scans of 1 to 100 items of
    /// a partition, 5% item inserts), range (reads of whole 100-item
    /// partitions).
    #[arg(long, value_delimiter = ',', default_value = "a")]
    pub workload: Vec<Workload>,
    /// How keys are drawn.
    #[arg(long, value_enum, default_value_t = Distribution::Zipfian)]
    pub distribution: Distribution,
    /// Keys loaded before workloads a, b, c (and drawn from by them and by
    /// counter); items loaded before e and range (in partitions of 100).
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
    /// With --connect: directory holding ca.pem, client.pem/.key and
    /// admin.pem/.key (bucket creation needs the admin role).
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
    /// How the client picks the node of a request: token (a replica of the
    /// key's partition, learned from the cluster) or round-robin.
    #[arg(long, value_enum, default_value_t = Routing::Token)]
    pub routing: Routing,
    /// Time to live of every write of the load and the runs (30s, 5m):
    /// with --reclaim-secs, measures how expired data's space comes back.
    #[arg(long, value_parser = crate::cli::args::parse_duration)]
    pub ttl: Option<std::time::Duration>,
    /// After the runs, watch for up to this many seconds how the nodes'
    /// stored keys (kvorum_storage_keys) and data directories shrink back
    /// to what they were before the load (own cluster only; with --ttl).
    #[arg(long)]
    pub reclaim_secs: Option<u64>,
    /// TOML appended to each node's config of the bench's own cluster (for
    /// example `[anti_entropy]` and `[hints]` settings).
    #[arg(long)]
    pub node_config: Option<PathBuf>,
    /// Run the baseline's echo server from this node config (internal).
    #[arg(long, hide = true)]
    pub serve_echo: Option<PathBuf>,
}

/// How the bench's client routes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// To a replica of the key's partition (token-aware, the default).
    Token,
    /// To the nodes in turn.
    RoundRobin,
}

pub(super) fn validate(args: &BenchArgs) -> Result<(), BenchError> {
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
