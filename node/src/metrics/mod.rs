//! The node's metrics: every name in one place ([`CATALOG`]), a Prometheus
//! registry per node (so several nodes in one process keep apart), and the
//! `/metrics` HTTP endpoint.
//!
//! Each node owns a [`Metrics`]: a `metrics-exporter-prometheus` recorder
//! that is *not* installed globally, with the label `node="<id>"` on every
//! series. Components hold an `Arc<Metrics>` and register handles through it;
//! values that other modules already keep (hint and anti-entropy counts,
//! liveness, storage size) are copied in by collectors run at each scrape.
//! docs/metrics.md lists every metric of [`CATALOG`]; a test checks the two
//! agree and that the code names no metric outside the catalog.

pub mod collector;
pub mod endpoint;

pub use endpoint::{bind, serve, Readiness, MAX_SCRAPES_PER_SOURCE};

use crate::util::lock::ReadExt;
use crate::util::LockExt;
use kvorum_client::proto::{ErrorReply, ItemOp, ReplicaOutcome, Request, Response};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// What kind of metric a catalog entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A Prometheus histogram (buckets, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// The Prometheus type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric: name, kind, label names (besides `node`), and help text.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// Full name, `kvorum_` prefixed.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Label names, each with a bounded set of values.
    pub labels: &'static [&'static str],
    /// What it measures (the Prometheus HELP line).
    pub help: &'static str,
}

macro_rules! catalog {
    ($($id:ident = $name:literal, $kind:ident, [$($l:literal),*], $help:literal;)*) => {
        $(#[doc = $help] pub const $id: &str = $name;)*
        /// Every metric the node exports.
        pub const CATALOG: &[Def] = &[
            $(Def { name: $name, kind: Kind::$kind, labels: &[$($l),*], help: $help },)*
        ];
    };
}

catalog! {
    REQUESTS = "kvorum_requests_total", Counter, ["op", "type", "outcome"],
        "Client requests answered by this node, by operation, bucket type and outcome.";
    REQUEST_DURATION = "kvorum_request_duration_seconds", Histogram, ["op"],
        "Time from a client request's arrival to its answer, by operation.";
    QUORUM_FAILURES = "kvorum_quorum_failures_total", Counter, ["op", "reason"],
        "Quorums (R or W) that failed, counted by the node that ran them, by what the replicas that answered did.";
    REPLICA_RESPONSES = "kvorum_replica_responses_total", Counter, ["op", "outcome"],
        "Replica answers a coordinator received before deciding a quorum (at the deadline, the silent ones as timeouts).";
    PEER_REQUEST_DURATION = "kvorum_peer_request_duration_seconds", Histogram, ["peer"],
        "Round trip of a successful request to a peer node.";
    PEER_BATCHES = "kvorum_peer_batches_total", Counter, [],
        "Batches of replica reads and writes this node sent to peers (requests to one peer queued at once share a stream).";
    PEER_BATCHED_REQUESTS = "kvorum_peer_batched_requests_total", Counter, [],
        "Replica reads and writes this node sent inside batches (divide by kvorum_peer_batches_total for the mean batch size).";
    WRITES_FORWARDED = "kvorum_writes_forwarded_total", Counter, [],
        "Client writes this node received while not a replica of the key, and forwarded to one (token-aware clients keep this near 0).";
    PRECONDITION_FAILURES = "kvorum_precondition_failures_total", Counter, ["condition"],
        "Conditional writes this node coordinated whose condition did not hold (if_absent, if_match): nothing was written.";
    ITEMS_EXPIRED = "kvorum_items_expired_total", Counter, [],
        "Keys and items a read coordinated here found expired (their time to live passed by this node's clock) and answered without them.";
    EXPIRED_REAPED = "kvorum_expired_reaped_total", Counter, [],
        "Expired records (keys and items) this node removed from its storage when they were reaped (every replica held the same expired state, past the grace): each key counts once per replica.";
    READ_SIBLINGS = "kvorum_read_siblings", Histogram, [],
        "Siblings (concurrent versions) returned per register read that found a value.";
    VCLOCK_ENTRIES = "kvorum_vclock_entries", Histogram, [],
        "Entries in the causal context returned per register read.";
    READ_REPAIRS = "kvorum_read_repairs_total", Counter, [],
        "Replicas sent a read repair (the merged state) by this coordinator.";
    READS_REPAIRED = "kvorum_reads_repaired_total", Counter, [],
        "Quorum reads whose replicas disagreed, so that the read sent a repair (per read, not per replica).";
    READ_SPECULATIVE_RETRIES = "kvorum_read_speculative_retries_total", Counter, [],
        "Replicas a read asked beyond the R it asked first because those had not all answered after replication.read_retry_after_ms.";
    HINTS_STORED = "kvorum_hints_stored_total", Counter, [],
        "Hints this node accepted as a fallback for another replica.";
    HINTS_DELIVERED = "kvorum_hints_delivered_total", Counter, [],
        "Hints handed to their owner and deleted.";
    HINTS_DROPPED = "kvorum_hints_dropped_total", Counter, [],
        "Hints refused or dropped by a bound (size, age) or for a removed node.";
    HINTS_PENDING = "kvorum_hints_pending", Gauge, [],
        "Hints this node holds for other replicas (the hint queue depth).";
    HINTS_BYTES = "kvorum_hints_bytes", Gauge, [],
        "Bytes of the hints this node holds.";
    HINT_OLDEST_AGE = "kvorum_hint_oldest_age_seconds", Gauge, [],
        "Age of the oldest hint this node holds (0 when it holds none).";
    AAE_EXCHANGES = "kvorum_aae_exchanges_total", Counter, ["outcome"],
        "Anti-entropy exchanges this node started, by outcome.";
    AAE_DIFFERING_SEGMENTS = "kvorum_aae_differing_segments_total", Counter, [],
        "Hash-tree leaves (segments) found different in anti-entropy exchanges.";
    AAE_KEYS_REPAIRED = "kvorum_aae_keys_repaired_total", Counter, [],
        "Keys found different and merged both ways by anti-entropy.";
    AAE_TREES_BUILT = "kvorum_aae_trees_built", Gauge, [],
        "1 once the anti-entropy trees count every stored key (built from storage after start-up, while the node serves), 0 before: anti-entropy exchanges wait for it.";
    AAE_EXCHANGE_DURATION = "kvorum_aae_exchange_duration_seconds", Histogram, [],
        "Duration of an anti-entropy exchange, including any wait for an exchange slot.";
    MEMBERS = "kvorum_members", Gauge, ["state"],
        "Cluster members by state as this node sees them (up or down).";
    PEER_UP = "kvorum_peer_up", Gauge, ["peer"],
        "1 if this node's failure detector sees the peer up, else 0.";
    RING_OWNERSHIP = "kvorum_ring_ownership_ratio", Gauge, [],
        "Share of the hash ring whose first replica is this node.";
    MEMBER_STATES = "kvorum_member_states", Gauge, ["state"],
        "Members by life-cycle state in this node's view (joining, up, leaving, removed).";
    RING_TRANSITION = "kvorum_ring_transition", Gauge, [],
        "1 while a topology change is in progress (the read and write rings differ), else 0.";
    TRANSFERS_ACTIVE = "kvorum_transfers_active", Gauge, [],
        "Range streams this node is pulling right now.";
    TRANSFER_SOURCES = "kvorum_transfer_sources", Gauge, ["status"],
        "Sources of this node's current range transfer, done or pending.";
    TRANSFER_KEYS = "kvorum_transfer_keys_total", Counter, ["direction"],
        "Keys moved by topology changes: in (streamed to this node), out (streamed from it), handoff (pushed to new owners before a drop).";
    TRANSFER_BYTES = "kvorum_transfer_bytes_total", Counter, ["direction"],
        "Record bytes moved by topology changes, by direction as for kvorum_transfer_keys_total.";
    KEYS_DROPPED = "kvorum_handoff_keys_dropped_total", Counter, [],
        "Keys this node no longer owns, dropped after every new owner was seen to hold them.";
    QUARANTINED = "kvorum_quarantined_records_total", Counter, [],
        "Stored records that could not be decoded, moved aside (kvorum admin quarantine lists them) to be repaired from the other replicas.";
    STORAGE_DISK_BYTES = "kvorum_storage_disk_bytes", Gauge, [],
        "Bytes the storage engine uses on disk.";
    STORAGE_KEYS = "kvorum_storage_keys", Gauge, [],
        "Keys stored (approximate; includes tombstones).";
    DISK_FREE_BYTES = "kvorum_disk_free_bytes", Gauge, [],
        "Free bytes of the filesystem holding the data directory.";
    DISK_WATERMARK_BYTES = "kvorum_disk_watermark_bytes", Gauge, [],
        "Free bytes below which this node refuses client writes (storage.min_free_bytes or min_free_percent, the larger); every write is refused below half of it.";
    DISK_REFUSING = "kvorum_disk_refusing_writes", Gauge, [],
        "0 while the disk is above the watermark, 1 while client writes are refused (below it), 2 while every write is refused (below the reserve).";
    DISK_FULL_REFUSALS = "kvorum_disk_full_refusals_total", Counter, [],
        "Client writes this node coordinated and refused with DiskFull (its disk below the watermark).";
    OVERLOADED_REFUSALS = "kvorum_overloaded_refusals_total", Counter, ["side"],
        "Writes refused as overloaded while the storage engine held a commit past storage.overloaded_after_ms: side=\"coordinator\" a client write this node coordinated, side=\"replica\" a replica write or hint a coordinator sent it.";
    STORAGE_COMMIT_RUNNING = "kvorum_storage_commit_running_seconds", Gauge, [],
        "How long the storage writer has been on its current commit (0 while it waits for work); client writes are refused as overloaded from storage.overloaded_after_ms.";
    BACKUP_RECORDS = "kvorum_backup_records_total", Counter, [],
        "Records this node served to backups (kvorum admin backup).";
    BACKUP_BYTES = "kvorum_backup_bytes_total", Counter, [],
        "Bytes of records (keys and stored records) this node served to backups.";
    BACKUPS_OPEN = "kvorum_backups_open", Gauge, [],
        "Backup snapshots of this node being read now.";
    BACKUP_LAST_DURATION = "kvorum_backup_last_duration_seconds", Gauge, [],
        "How long the last backup snapshot of this node was held, from its start to its end (read whole, or abandoned).";
    RESTORED_RECORDS = "kvorum_restore_records_total", Counter, ["outcome"],
        "Copies of restored records this node placed on their owners: sent (the owner lacked it) or held (the owner held it so already).";
    STORAGE_READ_DURATION = "kvorum_storage_read_duration_seconds", Histogram, [],
        "Time to read one key from the storage engine.";
    STORAGE_WRITE_DURATION = "kvorum_storage_write_duration_seconds", Histogram, [],
        "Time to commit one batch of updates (including its sync, if any).";
    STORAGE_SYNC_DURATION = "kvorum_storage_sync_duration_seconds", Histogram, [],
        "Time of a sync to disk (a synced batch, or a periodic sync).";
    STORAGE_BATCH_UPDATES = "kvorum_storage_batch_updates", Histogram, [],
        "Updates committed per batch (group commit: concurrent writes share a batch).";
    CONNECTIONS = "kvorum_connections", Gauge, ["kind"],
        "Open QUIC connections: client and peer_in (accepted), peer_out (dialled).";
    HANDSHAKE_FAILURES = "kvorum_handshake_failures_total", Counter, ["reason"],
        "Incoming QUIC handshakes that failed, by reason.";
    CERTIFICATE_EXPIRY = "kvorum_certificate_expiry_timestamp_seconds", Gauge, ["holder"],
        "When a node certificate expires (Unix seconds), by the node that holds it: this node's own, and each peer's that connected to it.";
    CONNECTIONS_REFUSED = "kvorum_connections_refused_total", Counter, ["reason"],
        "Incoming connections refused before they were served: per_source, handshakes (too many in progress), max_connections, retry_failed, draining (the node is shutting down).";
    FORBIDDEN = "kvorum_forbidden_total", Counter, ["op", "role"],
        "Requests refused because the caller's certificate may not make them (its role, or the access list), by operation and role.";
    NETWORK_BYTES = "kvorum_network_bytes_total", Counter, ["direction", "kind"],
        "Request and response frame bytes (payload, without QUIC and TLS overhead).";
    PEER_PROTOCOL = "kvorum_peer_protocol_version", Gauge, ["peer"],
        "The peer protocol version this node speaks to the peer: during a rolling upgrade, the previous version for peers not yet upgraded.";
    PEER_RTT = "kvorum_peer_rtt_seconds", Gauge, ["peer"],
        "QUIC's smoothed round-trip time on this node's connection to the peer.";
    RUNTIME_WORKERS = "kvorum_runtime_worker_threads", Gauge, [],
        "Worker threads of this node's async runtime (kvorum --worker-threads; blocking threads not counted).";
}

/// Latency buckets (seconds): 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Buckets of small counts (siblings, clock entries, batch sizes).
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0,
];

/// How long a gauge not set by a scrape's collectors stays exported.
pub const GAUGE_EXPIRY: Duration = Duration::from_secs(120);
/// How often the node folds histogram samples into buckets.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Runs at each scrape to copy values kept elsewhere into the registry.
pub type Collector = Box<dyn Fn(&Metrics) + Send + Sync>;

/// One node's metrics registry.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    collectors: Mutex<Vec<Collector>>,
    /// Handles already registered, by a hash of name and labels: a lookup
    /// here costs a hash and a read lock, against an allocation per label
    /// and a registry lookup to register.
    counters: RwLock<HashMap<u64, Counter>>,
    histograms: RwLock<HashMap<u64, Histogram>>,
    /// Open connections by kind, counted by the serving loop and copied into
    /// the gauge at each scrape (gauges are only ever set at scrapes, so
    /// those of vanished peers can expire).
    pub open_client: AtomicI64,
    /// Open connections accepted from peers.
    pub open_peer_in: AtomicI64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

impl Metrics {
    /// A registry for node `node`, with every catalog entry described.
    pub fn new(node: &str) -> Arc<Self> {
        // Gauges are set at each scrape by the collectors; one not set for
        // a while (a peer that left, a closed connection's RTT) expires.
        let mut builder = PrometheusBuilder::new()
            .add_global_label("node", node)
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_EXPIRY));
        // Histograms, not summaries: they aggregate across nodes.
        for (matcher, buckets) in [
            (Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS),
            (Matcher::Full(READ_SIBLINGS.into()), COUNT_BUCKETS),
            (Matcher::Full(VCLOCK_ENTRIES.into()), COUNT_BUCKETS),
            (Matcher::Full(STORAGE_BATCH_UPDATES.into()), COUNT_BUCKETS),
        ] {
            builder = match builder.set_buckets_for_metric(matcher, buckets) {
                Ok(b) => b,
                // Only refused for an empty bucket list, which these are not.
                Err(e) => unreachable!("histogram buckets: {e}"),
            };
        }
        let recorder = builder.build_recorder();
        for d in CATALOG {
            let unit = d.name.ends_with("_seconds").then_some(Unit::Seconds);
            let unit = unit.or(d.name.ends_with("_bytes").then_some(Unit::Bytes));
            let name = KeyName::from_const_str(d.name);
            let help = d.help.into();
            match d.kind {
                Kind::Counter => recorder.describe_counter(name, unit, help),
                Kind::Gauge => recorder.describe_gauge(name, unit, help),
                Kind::Histogram => recorder.describe_histogram(name, unit, help),
            }
        }
        let handle = recorder.handle();
        Arc::new(Self {
            recorder,
            handle,
            collectors: Mutex::new(Vec::new()),
            counters: RwLock::default(),
            histograms: RwLock::default(),
            open_client: AtomicI64::new(0),
            open_peer_in: AtomicI64::new(0),
        })
    }

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        debug_assert!(
            CATALOG.iter().any(|d| d.name == name),
            "{name} is not in the catalog"
        );
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect();
        Key::from_parts(name, labels)
    }

    fn hash(name: &str, labels: &[(&'static str, &str)]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        for (k, v) in labels {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        h.finish()
    }

    fn cached<T: Clone>(
        cache: &RwLock<HashMap<u64, T>>,
        id: u64,
        register: impl FnOnce() -> T,
    ) -> T {
        if let Some(h) = cache.read_locked().get(&id) {
            return h.clone();
        }
        cache.locked().entry(id).or_insert_with(register).clone()
    }

    /// The counter `name` with these label values.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        Self::cached(&self.counters, Self::hash(name, labels), || {
            self.recorder
                .register_counter(&Self::key(name, labels), &META)
        })
    }

    /// The gauge `name` with these label values. Gauges are meant to be set
    /// by collectors at each scrape (see [`Metrics::on_scrape`]): one not
    /// set for [`GAUGE_EXPIRY`] disappears.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &META)
    }

    /// The histogram `name` with these label values.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        Self::cached(&self.histograms, Self::hash(name, labels), || {
            self.recorder
                .register_histogram(&Self::key(name, labels), &META)
        })
    }

    /// Folds recorded histogram samples into their buckets. Without it
    /// samples pile up in memory between scrapes: the node runs it every
    /// [`UPKEEP_EVERY`] (and each render does).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Adds a collector, run before each scrape.
    pub fn on_scrape(&self, collector: Collector) {
        self.collectors.locked().push(collector);
    }

    /// Drops every collector (and what they hold: a node's store, its
    /// transport). Shutdown calls it: the collectors hold handles that hold
    /// this registry, a cycle that would keep the store open.
    pub fn clear_collectors(&self) {
        self.collectors.locked().clear();
    }

    /// The Prometheus text exposition of every metric, after running the
    /// collectors.
    pub fn render(&self) -> String {
        {
            let collectors = self.collectors.locked();
            for c in collectors.iter() {
                c(self);
            }
        }
        for (kind, open) in [
            ("client", &self.open_client),
            ("peer_in", &self.open_peer_in),
        ] {
            self.gauge(CONNECTIONS, &[("kind", kind)])
                .set(open.load(Ordering::Relaxed) as f64);
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// A client request's operation label, and the bucket it names.
pub fn request_op(req: &Request) -> (&'static str, Option<&str>) {
    match req {
        Request::Get { bucket, .. } => ("get", Some(bucket)),
        Request::Put { bucket, .. } => ("put", Some(bucket)),
        Request::Delete { bucket, .. } => ("delete", Some(bucket)),
        Request::Fetch { bucket, .. } => ("fetch", Some(bucket)),
        Request::Update { bucket, .. } => ("update", Some(bucket)),
        Request::CreateBucket { .. } | Request::DefineBucket { .. } => ("create_bucket", None),
        Request::ListBucketProps => ("list_buckets", None),
        Request::ListBuckets => ("list_buckets", None),
        Request::Status => ("status", None),
        Request::Repair => ("repair", None),
        Request::Leave { .. } => ("leave", None),
        Request::Remove { .. } => ("remove", None),
        Request::Join { .. } => ("join", None),
        Request::Ring { .. } => ("ring", None),
        Request::Grant(_) => ("grant", None),
        Request::Revoke(_) => ("revoke", None),
        Request::Access => ("access", None),
        Request::ReloadCertificates => ("reload_certificates", None),
        Request::Quarantined => ("quarantined", None),
        Request::Disk => ("disk", None),
        Request::Backup(_) => ("backup", None),
        Request::Restore { .. } => ("restore", None),
        Request::Digest(_) => ("digest", None),
        Request::Item { key, op } => {
            let name = match op {
                ItemOp::Get { .. } => "get",
                ItemOp::Fetch { .. } => "fetch",
                ItemOp::Put { .. } => "put",
                ItemOp::Delete { .. } => "delete",
                ItemOp::Update { .. } => "update",
            };
            (name, Some(&key.bucket))
        }
        Request::Batch(_) => ("batch", None),
        Request::Range(q) => ("range", Some(&q.bucket)),
        Request::ListPartitions { bucket, .. } => ("list_partitions", Some(bucket)),
        Request::DeleteRange { query, .. } => ("delete_range", Some(&query.bucket)),
        Request::Watch { target, .. } => (
            "watch",
            Some(crate::replication::watch::watched_bucket(target)),
        ),
        Request::Placement { .. } => ("placement", None),
    }
}

/// A response's outcome label.
pub fn outcome(resp: &Response) -> &'static str {
    match resp {
        Response::NotFound { .. } => "not_found",
        Response::Error(e) => match e {
            ErrorReply::BadRequest(_) => "bad_request",
            ErrorReply::UnsupportedVersion { .. } => "unsupported_version",
            ErrorReply::TooLarge { .. } => "too_large",
            ErrorReply::InvalidQuorum { .. } => "invalid_quorum",
            ErrorReply::InvalidContext(_) => "invalid_context",
            ErrorReply::Quorum(_) => "quorum_failed",
            ErrorReply::Stale(_) => "stale",
            ErrorReply::Unavailable(_) => "unavailable",
            ErrorReply::UnknownBucket(_) => "unknown_bucket",
            ErrorReply::WrongType { .. } => "wrong_type",
            ErrorReply::BucketConflict { .. } => "bucket_conflict",
            ErrorReply::Internal(_) => "internal",
            ErrorReply::Refused(_) => "refused",
            ErrorReply::Forbidden(_) => "forbidden",
            ErrorReply::PreconditionFailed { .. } => "precondition_failed",
            ErrorReply::DiskFull { .. } => "disk_full",
        },
        _ => "ok",
    }
}

/// Why a quorum failed, from what its replicas answered (not those still
/// pending when it was decided): `timeout` if any timed out, `unreachable`
/// if every failed replica was unreachable, else `replica_error`.
pub fn quorum_failure_reason<'a>(
    answers: impl Iterator<Item = &'a ReplicaOutcome>,
) -> &'static str {
    let failed: Vec<&ReplicaOutcome> = answers.filter(|o| **o != ReplicaOutcome::Ok).collect();
    if failed.iter().any(|o| **o == ReplicaOutcome::Timeout) {
        "timeout"
    } else if failed
        .iter()
        .all(|o| matches!(o, ReplicaOutcome::Unreachable(_)))
    {
        "unreachable"
    } else {
        "replica_error"
    }
}

/// Records one answered client request.
pub fn record_request(
    m: &Metrics,
    op: &'static str,
    bucket_type: &'static str,
    resp: &Response,
    took: Duration,
) {
    m.counter(
        REQUESTS,
        &[
            ("op", op),
            ("type", bucket_type),
            ("outcome", outcome(resp)),
        ],
    )
    .increment(1);
    m.histogram(REQUEST_DURATION, &[("op", op)]).record(took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for d in CATALOG {
            assert!(seen.insert(d.name), "{} twice", d.name);
            assert!(d.name.starts_with("kvorum_"), "{}", d.name);
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                d.name
            );
            assert!(!d.labels.contains(&"node"), "{}: node is global", d.name);
            for l in d.labels {
                assert!(
                    !["key", "value", "bucket"].contains(l),
                    "{}: unbounded label",
                    d.name
                );
            }
        }
    }

    #[test]
    fn series_render_with_the_node_label_and_histogram_buckets() {
        let m = Metrics::new("n1");
        m.counter(
            REQUESTS,
            &[("op", "get"), ("type", "register"), ("outcome", "ok")],
        )
        .increment(2);
        m.histogram(REQUEST_DURATION, &[("op", "get")])
            .record(0.003);
        m.on_scrape(Box::new(|m| m.gauge(HINTS_PENDING, &[]).set(7.0)));
        let text = m.render();
        assert!(
            text.contains(
                r#"kvorum_requests_total{node="n1",op="get",type="register",outcome="ok"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kvorum_request_duration_seconds_bucket{node="n1",op="get",le="0.005"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"kvorum_hints_pending{node="n1"} 7"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kvorum_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# HELP kvorum_requests_total Client requests"),
            "{text}"
        );
    }
}
