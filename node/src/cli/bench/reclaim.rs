//! `kvorum bench --ttl .. --reclaim-secs ..`: after the runs, samples every
//! 5 s the keys the nodes store (`kvorum_storage_keys`, summed) and the
//! bytes of their data directories, until both are back near what they
//! were before the load, or the watch ends. Expired keys go once every replica holds the same expired state
//! and the grace has passed (docs/consistency.md); the engine then
//! compacts their space away.

use super::cluster::{scraped_sum, Target};
use super::procs::disk_bytes;
use super::report::{MemoryReport, ReclaimReport};
use std::time::{Duration, Instant};

/// Sampling period.
const EVERY: Duration = Duration::from_secs(5);

/// The keys the nodes store (`kvorum_storage_keys`, summed): the baseline
/// to take before the load.
pub(super) async fn stored_keys(target: &Target) -> Option<f64> {
    scraped_sum(target, "kvorum_storage_keys").await
}

/// Watches for up to `limit`; `idle` is the memory report taken before the
/// load (its disk sizes are the baseline), `idle_keys` the keys stored then.
pub(super) async fn watch(
    target: &Target,
    idle: &MemoryReport,
    idle_keys: f64,
    limit: Duration,
) -> ReclaimReport {
    let baseline_bytes: u64 = idle.disk_bytes.values().sum();
    let started = Instant::now();
    let mut report = ReclaimReport {
        samples: Vec::new(),
        baseline_bytes,
        baseline_keys: idle_keys,
        keys_gone_secs: None,
        disk_back_secs: None,
    };
    loop {
        let at = started.elapsed().as_secs_f64();
        let keys = stored_keys(target).await.unwrap_or(f64::NAN);
        let bytes: u64 = target.data_dirs.iter().map(|d| disk_bytes(d)).sum();
        eprintln!(
            "reclaim +{at:>6.0} s: {keys:>10.0} keys stored (before the load: {idle_keys}), {:>8.1} MiB on disk (before the load: {:.1} MiB)",
            bytes as f64 / 1048576.0,
            baseline_bytes as f64 / 1048576.0
        );
        report.samples.push((at, keys, bytes));
        if keys <= idle_keys && report.keys_gone_secs.is_none() {
            report.keys_gone_secs = Some(at);
        }
        let near = baseline_bytes + (baseline_bytes / 10).max(4 << 20);
        if bytes <= near && report.disk_back_secs.is_none() {
            report.disk_back_secs = Some(at);
        }
        if (report.keys_gone_secs.is_some() && report.disk_back_secs.is_some())
            || started.elapsed() >= limit
        {
            return report;
        }
        tokio::time::sleep(EVERY).await;
    }
}
