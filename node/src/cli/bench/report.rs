//! What a bench reports: the figures of each run ([`RunReport`]), node
//! memory at stages of the bench ([`MemoryReport`]), the whole
//! [`Report`], printed as the bench goes and written as JSON at the end.

use super::cluster::Target;
use super::driver::{LatencySummary, Outcome};
use super::procs::{self, Machine};
use super::workload::Distribution;
use std::collections::BTreeMap;

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
    /// Of the writes the run sent (warm-up included), the share a node
    /// forwarded to a replica (`kvorum_writes_forwarded_total`; `null`
    /// when the nodes' metrics are not reachable or nothing was written).
    pub forwarded_share: Option<f64>,
}

impl RunReport {
    pub(super) fn new(workload: &str, concurrency: usize, value_size: usize, o: &Outcome) -> Self {
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
            forwarded_share: None,
        }
    }

    pub(super) fn print(&self) {
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
        if let Some(share) = self.forwarded_share {
            println!("           writes forwarded {:.1} %", share * 100.0);
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
    /// How expired data's space came back (with --reclaim-secs).
    pub reclaim: Option<ReclaimReport>,
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Plain data of strings and numbers: serialization cannot fail; an
        // empty object would be the visible result if it did.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

/// How expired data's space came back (`kvorum bench --ttl --reclaim-secs`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReclaimReport {
    /// Keys stored on all nodes (kvorum_storage_keys) and bytes of their
    /// data directories, every sample: (seconds since the runs ended,
    /// keys, bytes).
    pub samples: Vec<(f64, f64, u64)>,
    /// Bytes of the data directories before the load.
    pub baseline_bytes: u64,
    /// Keys stored before the load.
    pub baseline_keys: f64,
    /// Seconds after the runs until the keys stored were back to the
    /// baseline (`None`: not within the watch).
    pub keys_gone_secs: Option<f64>,
    /// Seconds until the data directories were back within 10 % (and 4 MiB)
    /// of the baseline (`None`: not within the watch).
    pub disk_back_secs: Option<f64>,
}

pub(super) fn memory(target: &Target, stage: &str, keys: u64) -> MemoryReport {
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

pub(super) fn print_memory(m: &MemoryReport) {
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
