//! The node's TOML configuration, parsed into typed values.
//!
//! Every field has a default except `id`; relative paths are resolved against
//! the directory of the config file. See `examples/node.toml` for a documented
//! example of every field.

pub use crate::replication::settings::{Limits, Replication};
use serde::Deserialize;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped fields.
    #[error("invalid config {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (line and field).
        reason: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Stable node id, unique in the cluster (also the vector clock actor).
    pub id: String,
    /// UDP address the QUIC endpoint binds (clients and peers share it; ALPN tells them apart).
    pub listen: SocketAddr,
    /// Address other nodes and clients should use (defaults to `listen`).
    pub advertise: Option<SocketAddr>,
    /// Zone (rack, availability zone) for replica placement.
    pub zone: Option<String>,
    /// Addresses of nodes to learn the member list from.
    pub seeds: Vec<SocketAddr>,
    /// Directory of the node's database.
    pub data_dir: PathBuf,
    /// TLS files.
    pub tls: TlsPaths,
    /// Replication defaults.
    pub replication: Replication,
    /// Disk sync policy.
    pub sync: crate::storage::SyncPolicy,
    /// Client writes are refused below this much free disk space (the
    /// `[storage]` `min_free_bytes` and `min_free_percent`).
    pub watermark: crate::storage::disk::Watermark,
    /// Client writes are refused as overloaded while the storage engine
    /// has held one commit this long (`[storage] overloaded_after_ms`;
    /// zero: never).
    pub overloaded_after: Duration,
    /// How long a graceful shutdown (SIGTERM, Ctrl-C) waits for the client
    /// requests in flight and the hint hand-off (`drain_timeout_ms`).
    pub drain_timeout: Duration,
    /// The peer protocol versions this node speaks: this release's two, or
    /// only the previous one (`peer_protocol = 7`: a node that behaves on
    /// the wire as one of the previous release, for mixed-version tests).
    pub peer_versions: crate::rpc::peer::PeerVersions,
    /// Limits on input and work.
    pub limits: Limits,
    /// Virtual nodes per member on the ring (same on every node).
    pub vnodes: u32,
    /// How often the node exchanges member lists with a peer.
    pub gossip_interval: Duration,
    /// Bound on establishing a connection to a peer.
    pub peer_connect_timeout: Duration,
    /// Failure detector settings.
    pub failure_detector: crate::cluster::liveness::DetectorConfig,
    /// Hinted handoff bounds.
    pub hints: crate::repair::hints::HintConfig,
    /// Anti-entropy settings.
    pub anti_entropy: crate::repair::exchange::AaeConfig,
    /// Where `/metrics` is served over HTTP (`None`: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// The token a scrape must present (`Authorization: Bearer ...`), read
    /// from `[metrics] bearer_token_file`; `None`: no token needed.
    pub metrics_token: Option<String>,
    /// Range transfers on topology changes.
    pub transfers: crate::repair::transfer::TransferConfig,
}

/// Paths of the node's TLS material.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    /// Cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM), issued by `kvorum cert node`.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

// ---- the file format --------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    id: String,
    listen: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    zone: Option<String>,
    #[serde(default)]
    seeds: Vec<SocketAddr>,
    data_dir: Option<PathBuf>,
    tls: Option<RawTls>,
    #[serde(default)]
    replication: RawReplication,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    limits: RawLimits,
    vnodes: Option<u32>,
    gossip_interval_ms: Option<u64>,
    peer_connect_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    peer_protocol: Option<u16>,
    #[serde(default)]
    failure_detector: RawDetector,
    #[serde(default)]
    hints: RawHints,
    #[serde(default)]
    anti_entropy: RawAae,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    transfers: RawTransfers,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransfers {
    max_concurrent: Option<usize>,
    batch_bytes: Option<u32>,
    interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    enabled: Option<bool>,
    listen: Option<SocketAddr>,
    bearer_token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAae {
    enabled: Option<bool>,
    interval_ms: Option<u64>,
    max_keys_per_exchange: Option<usize>,
    tombstone_grace_secs: Option<u64>,
    sessions_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHints {
    max_bytes: Option<u64>,
    ttl_secs: Option<u64>,
    delivery_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetector {
    heartbeat_interval_ms: Option<u64>,
    phi_threshold: Option<f64>,
    acceptable_pause_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplication {
    n: Option<u8>,
    r: Option<u8>,
    w: Option<u8>,
    request_timeout_ms: Option<u64>,
    read_retry_after_ms: Option<u64>,
    read_repair_chance: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    sync: Option<String>,
    sync_interval_ms: Option<u64>,
    min_free_bytes: Option<u64>,
    min_free_percent: Option<f64>,
    overloaded_after_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_frame_bytes: Option<usize>,
    max_key_bytes: Option<usize>,
    max_value_bytes: Option<usize>,
    max_bucket_bytes: Option<usize>,
    max_siblings: Option<usize>,
    max_set_members: Option<usize>,
    max_map_fields: Option<usize>,
    max_state_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_inflight_requests: Option<usize>,
    request_read_timeout_ms: Option<u64>,
    max_request_timeout_ms: Option<u64>,
    max_connections_per_source: Option<usize>,
    max_handshakes: Option<usize>,
    handshake_timeout_ms: Option<u64>,
    max_inflight_request_bytes: Option<usize>,
    max_batch_items: Option<usize>,
    default_page_items: Option<usize>,
    max_page_items: Option<usize>,
    max_page_bytes: Option<usize>,
    max_watches: Option<usize>,
}

/// Upper bound of `limits.max_bucket_bytes` (bucket names are length-prefixed
/// with 16 bits in storage keys).
pub const MAX_BUCKET_BYTES: usize = 1024;

/// Upper bound of `limits.max_key_bytes`. A storage key holds the bucket
/// (at most [`MAX_BUCKET_BYTES`]), a partition key whose zero bytes take
/// two bytes each, and a sort key, each up to `max_key_bytes`, plus 4
/// bytes; the anti-entropy index prefixes it with 2 more. At 16 KiB that is
/// at most 50,182 bytes, under the storage engine's key limit of 65,535.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Default UDP port of a node.
pub const DEFAULT_PORT: u16 = 7401;

/// How far above its UDP listen port a node serves `/metrics` (TCP) by
/// default: 7401 → 9401, so nodes sharing a host do not collide. A listen
/// port of 0 (tests) gives an ephemeral metrics port too.
pub const METRICS_PORT_OFFSET: u16 = 2000;

impl NodeConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { reason, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }

    /// Parses config text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            reason: e.to_string(),
        })?;
        let id = raw.id.trim().to_string();
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::Invalid(format!(
                "id {:?}: 1 to 64 characters of a-z, A-Z, 0-9, '-', '_' or '.'",
                raw.id
            )));
        }
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let data_dir = resolve(
            raw.data_dir
                .unwrap_or_else(|| PathBuf::from(format!("data/{id}"))),
        );
        let tls =
            match raw.tls {
                Some(t) => TlsPaths {
                    ca: resolve(t.ca),
                    cert: resolve(t.cert),
                    key: resolve(t.key),
                },
                None => return Err(ConfigError::Invalid(
                    "missing [tls] section with ca, cert and key (make them with `kvorum cert`)"
                        .into(),
                )),
            };
        let d = Replication::DEFAULT;
        let n = raw.replication.n.unwrap_or(d.n);
        if n == 0 {
            return Err(ConfigError::Invalid(
                "replication.n must be at least 1".into(),
            ));
        }
        let majority = n / 2 + 1;
        let quorum = |name: &str, v: Option<u8>| match v.unwrap_or(majority) {
            q if (1..=n).contains(&q) => Ok(q),
            q => Err(ConfigError::Invalid(format!(
                "replication.{name} = {q}: must be between 1 and n = {n}"
            ))),
        };
        let replication = Replication {
            n,
            r: quorum("r", raw.replication.r)?,
            w: quorum("w", raw.replication.w)?,
            request_timeout: positive_ms(
                "replication.request_timeout_ms",
                raw.replication.request_timeout_ms,
                5000,
            )?,
            read_retry_after: positive_ms(
                "replication.read_retry_after_ms",
                raw.replication.read_retry_after_ms,
                10,
            )?,
            read_repair_chance: match raw.replication.read_repair_chance {
                None => d.read_repair_chance,
                Some(c) if (0.0..=1.0).contains(&c) => c,
                Some(c) => {
                    return Err(ConfigError::Invalid(format!(
                        "replication.read_repair_chance = {c}: must be between 0 and 1"
                    )))
                }
            },
        };
        let sync = match raw.storage.sync.as_deref().unwrap_or("always") {
            "always" => crate::storage::SyncPolicy::Always,
            "periodic" => crate::storage::SyncPolicy::Periodic(positive_ms(
                "storage.sync_interval_ms",
                raw.storage.sync_interval_ms,
                100,
            )?),
            other => {
                return Err(ConfigError::Invalid(format!(
                    "storage.sync = {other:?}: expected \"always\" or \"periodic\""
                )))
            }
        };
        let dw = crate::storage::disk::Watermark::DEFAULT;
        let watermark = crate::storage::disk::Watermark {
            min_free_bytes: raw.storage.min_free_bytes.unwrap_or(dw.min_free_bytes),
            min_free_percent: match raw.storage.min_free_percent {
                None => dw.min_free_percent,
                Some(p) if (0.0..=50.0).contains(&p) => p,
                Some(p) => {
                    return Err(ConfigError::Invalid(format!(
                        "storage.min_free_percent = {p}: must be between 0 and 50"
                    )))
                }
            },
        };
        let dl = Limits::default();
        let l = raw.limits;
        let limits = Limits {
            max_frame_bytes: l.max_frame_bytes.unwrap_or(dl.max_frame_bytes),
            max_key_bytes: l.max_key_bytes.unwrap_or(dl.max_key_bytes),
            max_value_bytes: l.max_value_bytes.unwrap_or(dl.max_value_bytes),
            max_bucket_bytes: l.max_bucket_bytes.unwrap_or(dl.max_bucket_bytes),
            max_siblings: l.max_siblings.unwrap_or(dl.max_siblings),
            max_set_members: l.max_set_members.unwrap_or(dl.max_set_members),
            max_map_fields: l.max_map_fields.unwrap_or(dl.max_map_fields),
            max_state_bytes: l.max_state_bytes.unwrap_or(dl.max_state_bytes),
            max_connections: l.max_connections.unwrap_or(dl.max_connections),
            max_inflight_requests: l.max_inflight_requests.unwrap_or(dl.max_inflight_requests),
            max_request_timeout: positive_ms(
                "limits.max_request_timeout_ms",
                l.max_request_timeout_ms,
                120_000,
            )?,
            request_read_timeout: positive_ms(
                "limits.request_read_timeout_ms",
                l.request_read_timeout_ms,
                10_000,
            )?,
            max_connections_per_source: l
                .max_connections_per_source
                .unwrap_or(dl.max_connections_per_source),
            max_handshakes: l.max_handshakes.unwrap_or(dl.max_handshakes),
            handshake_timeout: positive_ms(
                "limits.handshake_timeout_ms",
                l.handshake_timeout_ms,
                5_000,
            )?,
            max_inflight_request_bytes: l
                .max_inflight_request_bytes
                .unwrap_or(dl.max_inflight_request_bytes),
            max_batch_items: l.max_batch_items.unwrap_or(dl.max_batch_items),
            default_page_items: l.default_page_items.unwrap_or(dl.default_page_items),
            max_page_items: l.max_page_items.unwrap_or(dl.max_page_items),
            max_page_bytes: l.max_page_bytes.unwrap_or(dl.max_page_bytes),
            max_watches: l.max_watches.unwrap_or(dl.max_watches),
        };
        if limits.default_page_items > limits.max_page_items {
            return Err(ConfigError::Invalid(format!(
                "limits.default_page_items = {} is above limits.max_page_items = {}",
                limits.default_page_items, limits.max_page_items
            )));
        }
        if limits.max_bucket_bytes > MAX_BUCKET_BYTES {
            return Err(ConfigError::Invalid(format!(
                "limits.max_bucket_bytes = {}: at most {MAX_BUCKET_BYTES}",
                limits.max_bucket_bytes
            )));
        }
        if limits.max_key_bytes > MAX_KEY_BYTES {
            return Err(ConfigError::Invalid(format!(
                "limits.max_key_bytes = {}: at most {MAX_KEY_BYTES}",
                limits.max_key_bytes
            )));
        }
        for (name, v) in [
            ("max_frame_bytes", limits.max_frame_bytes),
            ("max_key_bytes", limits.max_key_bytes),
            ("max_value_bytes", limits.max_value_bytes),
            ("max_bucket_bytes", limits.max_bucket_bytes),
            ("max_siblings", limits.max_siblings),
            ("max_set_members", limits.max_set_members),
            ("max_map_fields", limits.max_map_fields),
            ("max_state_bytes", limits.max_state_bytes),
            ("max_connections", limits.max_connections),
            ("max_inflight_requests", limits.max_inflight_requests),
            (
                "max_connections_per_source",
                limits.max_connections_per_source,
            ),
            ("max_handshakes", limits.max_handshakes),
            ("max_batch_items", limits.max_batch_items),
            ("default_page_items", limits.default_page_items),
            ("max_page_items", limits.max_page_items),
            ("max_page_bytes", limits.max_page_bytes),
            ("max_watches", limits.max_watches),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!(
                    "limits.{name} must be at least 1"
                )));
            }
        }
        if limits.max_inflight_request_bytes < limits.max_frame_bytes {
            return Err(ConfigError::Invalid(format!(
                "limits.max_inflight_request_bytes = {} must be at least max_frame_bytes ({}): \
                 a request of the largest size must fit",
                limits.max_inflight_request_bytes, limits.max_frame_bytes
            )));
        }
        let needed = limits
            .max_value_bytes
            .saturating_add(limits.max_key_bytes)
            .saturating_add(limits.max_bucket_bytes)
            .saturating_add(4096);
        if needed > limits.max_frame_bytes {
            return Err(ConfigError::Invalid(
                "limits.max_frame_bytes must exceed max_value_bytes + max_key_bytes + max_bucket_bytes + 4096".into(),
            ));
        }
        // A key's whole state travels in one peer frame (and in a client's
        // answer, whose default bound is 72 MiB).
        let peer_frame = crate::rpc::peer::max_peer_frame_bytes(limits.max_frame_bytes);
        let mut limits = limits;
        if l.max_state_bytes.is_none() {
            // The default follows a smaller frame limit.
            limits.max_state_bytes = limits
                .max_state_bytes
                .min(peer_frame.saturating_sub(64 * 1024).max(1));
        }
        if limits.max_state_bytes.saturating_add(64 * 1024) > peer_frame {
            return Err(ConfigError::Invalid(format!(
                "limits.max_state_bytes must be below max_frame_bytes * {} - 65536",
                crate::rpc::peer::PEER_FRAME_FACTOR
            )));
        }
        let vnodes = raw.vnodes.unwrap_or(kvorum_ring::DEFAULT_VNODES);
        if !(1..=4096).contains(&vnodes) {
            return Err(ConfigError::Invalid(format!(
                "vnodes = {vnodes}: must be between 1 and 4096"
            )));
        }
        let dd = crate::cluster::liveness::DetectorConfig::default();
        let fd = &raw.failure_detector;
        let phi_threshold = fd.phi_threshold.unwrap_or(dd.phi_threshold);
        if !(1.0..=30.0).contains(&phi_threshold) {
            return Err(ConfigError::Invalid(format!(
                "failure_detector.phi_threshold = {phi_threshold}: must be between 1 and 30"
            )));
        }
        let failure_detector = crate::cluster::liveness::DetectorConfig {
            heartbeat_interval: positive_ms(
                "failure_detector.heartbeat_interval_ms",
                fd.heartbeat_interval_ms,
                500,
            )?,
            phi_threshold,
            acceptable_pause: Duration::from_millis(fd.acceptable_pause_ms.unwrap_or(3000)),
            min_std_dev: dd.min_std_dev,
        };
        let dh = crate::repair::hints::HintConfig::default();
        let hints = crate::repair::hints::HintConfig {
            max_bytes: raw.hints.max_bytes.unwrap_or(dh.max_bytes),
            ttl: Duration::from_secs(raw.hints.ttl_secs.unwrap_or(dh.ttl.as_secs())),
            delivery_interval: positive_ms(
                "hints.delivery_interval_ms",
                raw.hints.delivery_interval_ms,
                1000,
            )?,
            batch: dh.batch,
        };
        let da = crate::repair::exchange::AaeConfig::default();
        let anti_entropy = crate::repair::exchange::AaeConfig {
            enabled: raw.anti_entropy.enabled.unwrap_or(da.enabled),
            interval: positive_ms(
                "anti_entropy.interval_ms",
                raw.anti_entropy.interval_ms,
                10_000,
            )?,
            max_keys_per_exchange: raw
                .anti_entropy
                .max_keys_per_exchange
                .unwrap_or(da.max_keys_per_exchange)
                .max(1),
            call_timeout: da.call_timeout,
            sessions_max: raw
                .anti_entropy
                .sessions_max
                .unwrap_or(da.sessions_max)
                .max(1),
            tombstone_grace: Duration::ZERO,
        };
        // A tombstone must outlive every hint and in-flight write that could
        // still carry the value it deleted, or that value could come back.
        // (a request's whole life: admission and reading, bounded by the read
        // timeout each, then its run, bounded by the request-time cap)
        let min_grace = hints
            .ttl
            .saturating_add(limits.max_request_timeout.saturating_mul(2))
            .saturating_add(limits.request_read_timeout.saturating_mul(2));
        let anti_entropy = crate::repair::exchange::AaeConfig {
            tombstone_grace: match raw.anti_entropy.tombstone_grace_secs.map(Duration::from_secs) {
                None => min_grace,
                Some(g) if g >= min_grace => g,
                Some(g) => {
                    return Err(ConfigError::Invalid(format!(
                        "anti_entropy.tombstone_grace_secs = {}: must be at least hints.ttl_secs + {} ({} s), \\
                         or a deleted value could come back",
                        g.as_secs(),
                        min_grace.saturating_sub(hints.ttl).as_secs(),
                        min_grace.as_secs()
                    )))
                }
            },
            ..anti_entropy
        };
        let listen = raw
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
        let metrics_listen = match (raw.metrics.enabled.unwrap_or(true), raw.metrics.listen) {
            (false, _) => None,
            (true, Some(a)) => Some(a),
            (true, None) => {
                let port = match listen.port() {
                    0 => 0,
                    p => p.checked_add(METRICS_PORT_OFFSET).ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "listen port {p} leaves no default metrics port \
                             (port + {METRICS_PORT_OFFSET}); set [metrics] listen"
                        ))
                    })?,
                };
                Some(SocketAddr::new(listen.ip(), port))
            }
        };
        let metrics_token = match &raw.metrics.bearer_token_file {
            None => None,
            Some(p) => {
                let path = resolve(p.clone());
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let token = text.trim().to_string();
                if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ConfigError::Invalid(format!(
                        "{}: a metrics bearer token is at least 16 printable characters",
                        path.display()
                    )));
                }
                Some(token)
            }
        };
        let dt = crate::repair::transfer::TransferConfig::default();
        let transfers = crate::repair::transfer::TransferConfig {
            max_concurrent: match raw.transfers.max_concurrent.unwrap_or(dt.max_concurrent) {
                0 => {
                    return Err(ConfigError::Invalid(
                        "transfers.max_concurrent must be at least 1".into(),
                    ))
                }
                n => n,
            },
            batch_bytes: raw
                .transfers
                .batch_bytes
                .unwrap_or(dt.batch_bytes)
                .clamp(4096, (limits.max_frame_bytes / 2).max(4096) as u32),
            interval: positive_ms(
                "transfers.interval_ms",
                raw.transfers.interval_ms,
                dt.interval.as_millis() as u64,
            )?,
        };
        Ok(Self {
            transfers,
            failure_detector,
            hints,
            anti_entropy,
            metrics_listen,
            metrics_token,
            listen,
            advertise: raw.advertise,
            zone: raw.zone.filter(|z| !z.is_empty()),
            seeds: raw.seeds,
            data_dir,
            tls,
            replication,
            sync,
            watermark,
            overloaded_after: Duration::from_millis(
                raw.storage.overloaded_after_ms.unwrap_or(1_000),
            ),
            drain_timeout: positive_ms("drain_timeout_ms", raw.drain_timeout_ms, 10_000)?,
            peer_versions: match raw.peer_protocol {
                None => crate::rpc::peer::PeerVersions::CURRENT,
                Some(v) if v == crate::rpc::peer::PEER_PROTOCOL_VERSION => {
                    crate::rpc::peer::PeerVersions::CURRENT
                }
                Some(v) if v == crate::rpc::peer::MIN_PEER_PROTOCOL_VERSION => {
                    crate::rpc::peer::PeerVersions::only(v)
                }
                Some(v) => {
                    return Err(ConfigError::Invalid(format!(
                        "peer_protocol = {v}: this release speaks {} (and {} only, for tests)",
                        crate::rpc::peer::PEER_PROTOCOL_VERSION,
                        crate::rpc::peer::MIN_PEER_PROTOCOL_VERSION
                    )))
                }
            },
            limits,
            vnodes,
            gossip_interval: positive_ms("gossip_interval_ms", raw.gossip_interval_ms, 1000)?,
            peer_connect_timeout: positive_ms(
                "peer_connect_timeout_ms",
                raw.peer_connect_timeout_ms,
                2000,
            )?,
            id,
        })
    }

    /// The address peers and clients reach this node at.
    pub fn advertised(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }
}

fn positive_ms(name: &str, v: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(ConfigError::Invalid(format!("{name} must be at least 1"))),
        ms => Ok(Duration::from_millis(ms)),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
