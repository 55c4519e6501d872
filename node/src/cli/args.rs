//! The command line: every verb, its arguments and their defaults (clap).

use clap::{Args, Parser, Subcommand};
use kvorum_client::BucketType;
use std::{net::SocketAddr, path::PathBuf};

/// Kvorum: a leaderless, Dynamo-style replicated key-value store.
#[derive(Parser)]
#[command(name = "kvorum", version, about)]
pub struct Cli {
    /// Log format on stderr: `human` (default) or `json` (one object per
    /// line, for log shippers). RUST_LOG sets the levels (default: info).
    #[arg(long, global = true, value_enum, env = "KVORUM_LOG_FORMAT", default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Threads of the async runtime (default: one per core). Nodes that
    /// share a machine run faster with their share of its cores each;
    /// `kvorum bench` gives its nodes cores / nodes.
    #[arg(long, global = true, env = "KVORUM_WORKER_THREADS",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run one node from its TOML config.
    Start {
        /// The node's config file (see examples/node.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a local cluster on 127.0.0.1 with embedded defaults (certificates
    /// and configs are made in --dir on first start; data is kept there).
    Dev {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Directory for certificates, configs and data.
        #[arg(long, default_value = "kvorum-dev")]
        dir: PathBuf,
        /// UDP port of the first node; the others take the next ports.
        #[arg(long, default_value_t = 7401)]
        port: u16,
    },
    /// Make certificates (PEM) for a cluster.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Data commands: get, put, delete, counter, set, map.
    #[command(flatten)]
    Data(Box<DataCommand>),
    /// Show the members a node knows.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Measure throughput, latency and CPU per operation of a cluster (its
    /// own local one by default); see docs/performance.md.
    Bench(Box<super::bench::BenchArgs>),
}

/// The data commands (flattened into [`Command`]: `kvorum get ...`).
#[derive(Subcommand)]
pub enum DataCommand {
    /// Read a key (or, with --sort, an item of partition KEY).
    Get {
        /// Bucket.
        bucket: String,
        /// Key (the partition key with --sort).
        key: String,
        /// The item's sort key (default: none, the key-value API's item).
        #[arg(long, default_value = "")]
        sort: String,
        /// Read quorum (default: the cluster's R).
        #[arg(long)]
        r: Option<u8>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Write a value. Without --context it becomes a sibling of any existing value.
    Put {
        /// Bucket.
        bucket: String,
        /// Key (the partition key with --sort).
        key: String,
        /// The item's sort key (default: none).
        #[arg(long, default_value = "")]
        sort: String,
        /// Value (UTF-8).
        value: String,
        /// Write only if no live value exists (else exit 1 and print the
        /// current value and context).
        #[arg(long, conflicts_with = "if_match")]
        if_absent: bool,
        /// Write only if nothing was written since the read whose
        /// --context this write carries.
        #[arg(long)]
        if_match: bool,
        /// Time to live: 500ms, 30s, 5m, 2h or 7d (default: the bucket's
        /// default, else for ever).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Delete the values a read returned.
    Delete {
        /// Bucket.
        bucket: String,
        /// Key (the partition key with --sort).
        key: String,
        /// The item's sort key (default: none).
        #[arg(long, default_value = "")]
        sort: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Read the items of a partition in sort-key order, a page at a time
    /// (docs/data-model.md).
    Range {
        #[command(flatten)]
        span: Span,
        /// From the high end down.
        #[arg(long)]
        reverse: bool,
        /// Items per page (default: the node's, 100).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Continue after this page end (the hex `next:` printed before).
        #[arg(long)]
        after: Option<String>,
        /// Follow the pages to the end of the range.
        #[arg(long)]
        all: bool,
        /// Read quorum (default: the bucket's R).
        #[arg(long)]
        r: Option<u8>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete every live item of a partition between bounds or under a
    /// prefix (each with the context its read gave it).
    DeleteRange {
        #[command(flatten)]
        span: Span,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the partition keys of a bucket, in byte order, a page at a time.
    Partitions {
        /// Bucket.
        bucket: String,
        /// Keys per page (default: the node's, 100).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Continue after this page end (the hex `next:` printed before).
        #[arg(long)]
        after: Option<String>,
        /// Follow the pages to the end.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print where the cluster places partitions, as clients route by it:
    /// each node and its share of the ring, or, given a bucket and a
    /// partition key, that partition's replicas (first replica first).
    Placement {
        /// Bucket (with a partition key: print its replicas).
        bucket: Option<String>,
        /// Partition key.
        partition: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print each change of an item (or, with --range, of the newest items
    /// of a partition) as it happens, until --count changes or Ctrl-C.
    Watch {
        /// Bucket.
        bucket: String,
        /// Partition key.
        partition: String,
        /// The item's sort key (default: none).
        #[arg(long, default_value = "")]
        sort: String,
        /// Watch the partition's newest --limit items instead of one item.
        #[arg(long)]
        range: bool,
        /// Items the range watch shows.
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Stop after this many changes (default: never).
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a batch of item operations from a file (`-` for stdin), one per
    /// line: `get B P S`, `put B P S VALUE`, `delete B P S [CONTEXT]`. Each
    /// line gets its own outcome.
    Batch {
        /// The file of operations.
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Read a counter, and optionally increment it first.
    Counter {
        /// Bucket (of type counter).
        bucket: String,
        /// Key.
        key: String,
        /// Add this amount (negative: subtract) before reading.
        #[arg(long, allow_hyphen_values = true)]
        incr: Option<i64>,
        #[command(flatten)]
        q: Quorums,
        #[command(flatten)]
        conn: Conn,
    },
    /// Read a set, and optionally add or remove members first (a remove
    /// removes what a read just before it saw).
    Set {
        /// Bucket (of type set).
        bucket: String,
        /// Key.
        key: String,
        /// Members to add (UTF-8).
        #[arg(long)]
        add: Vec<String>,
        /// Members to remove.
        #[arg(long)]
        remove: Vec<String>,
        #[command(flatten)]
        q: Quorums,
        #[command(flatten)]
        conn: Conn,
    },
    /// Read a map, and optionally update fields first (removes act on what
    /// a read just before it saw).
    Map {
        /// Bucket (of type map).
        bucket: String,
        /// Key.
        key: String,
        /// Counter field increments: FIELD=N.
        #[arg(long, allow_hyphen_values = true)]
        incr: Vec<String>,
        /// Set field additions: FIELD=MEMBER.
        #[arg(long)]
        add: Vec<String>,
        /// Set field removals: FIELD=MEMBER.
        #[arg(long)]
        remove: Vec<String>,
        /// Flags to enable.
        #[arg(long)]
        enable: Vec<String>,
        /// Flags to disable.
        #[arg(long)]
        disable: Vec<String>,
        /// LWW register fields: FIELD=VALUE.
        #[arg(long)]
        lww: Vec<String>,
        /// Multi-value register fields: FIELD=VALUE.
        #[arg(long)]
        reg: Vec<String>,
        /// Fields to remove: KIND:FIELD (kind: counter, set, flag, lww, register).
        #[arg(long)]
        remove_field: Vec<String>,
        #[command(flatten)]
        q: Quorums,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Run an anti-entropy exchange between the node and each of its peers now.
    Repair {
        #[command(flatten)]
        conn: Conn,
    },
    /// Create or list buckets.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Members (state, zone, ring share, up/down), and topology changes in
    /// progress with their transfers.
    Status {
        /// Print JSON (for scripts).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// The ring's ranges and their owners.
    Ring {
        /// Replicas per range (default: the default bucket's N).
        #[arg(long)]
        n: Option<u8>,
        /// List every range (default: a summary per owner list).
        #[arg(long)]
        all: bool,
        /// Print JSON (every range).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Make the node at --nodes (alone in its own cluster) join the cluster
    /// of SEED.
    Join {
        /// Address of a member of the cluster to join.
        seed: SocketAddr,
        #[command(flatten)]
        conn: Conn,
    },
    /// Decommission the node at --nodes: stream its ranges to the nodes that
    /// take them over, then leave.
    Leave {
        /// Wait until the node has left, printing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Grant a client certificate read and/or write access to a bucket, or
    /// to every bucket whose name starts with a prefix. Without --read and
    /// --write, remove its grant for that scope.
    Grant {
        /// The client certificate's name (`kvorum cert client NAME`), or '*'
        /// for every client certificate.
        client: String,
        /// Exactly this bucket.
        #[arg(long, conflicts_with = "prefix", required_unless_present = "prefix")]
        bucket: Option<String>,
        /// Every bucket whose name starts with this ('' for every bucket).
        #[arg(long)]
        prefix: Option<String>,
        /// May read (get, fetch).
        #[arg(long)]
        read: bool,
        /// May write (put, delete, counter/set/map updates).
        #[arg(long)]
        write: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a certificate by serial number, or every certificate of a role
    /// and name: every node refuses it new connections and closes its open
    /// ones within a gossip round.
    Revoke {
        /// The certificate's serial number (hex, as `admin status` and the
        /// node's logs print it).
        #[arg(long, conflicts_with_all = ["role", "name"], required_unless_present = "name")]
        serial: Option<String>,
        /// The role of the certificates to revoke: node, admin or client.
        #[arg(long, requires = "name")]
        role: Option<String>,
        /// Their name.
        #[arg(long, requires = "role")]
        name: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// The access list: grants and revoked certificates.
    Access {
        /// Print JSON (for scripts).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// The stored records the node at --nodes could not decode and moved
    /// aside (read repair or anti-entropy writes good copies in their place).
    Quarantine {
        #[command(flatten)]
        conn: Conn,
    },
    /// Make the node at --nodes read its certificate, key and CA bundle
    /// again (as SIGHUP does).
    ReloadCerts {
        #[command(flatten)]
        conn: Conn,
    },
    /// Back up every member (or those of --node): a storage snapshot of
    /// each, taken while writes go on, written to --out with each node's
    /// manifest (data epoch, dot floor, members, buckets).
    Backup {
        /// The directory to write (new, or empty).
        #[arg(long)]
        out: PathBuf,
        /// Only these members (comma-separated ids; each node's directory
        /// stands alone).
        #[arg(long = "node", value_delimiter = ',')]
        only: Vec<String>,
        /// Leave out members that are down (the others' replicas hold every
        /// write acknowledged at W of 2 or more) instead of failing.
        #[arg(long)]
        allow_down: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Restore a backup into a new cluster (any size): its buckets are
    /// defined, and every key, its copies merged, goes to its owners here.
    /// Safe to run again (states merge).
    Restore {
        /// The backup directory.
        from: PathBuf,
        /// Restore into a cluster that holds data, joining the two (keys
        /// deleted there since the backup, their tombstones reaped, come
        /// back).
        #[arg(long)]
        merge: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Compare a backup with the cluster (or with another backup, or two
    /// clusters) by digests of the whole key space, listing the keys of
    /// differing segments only. Exits 1 if anything differs.
    Verify {
        /// A backup directory (default: the cluster of --nodes).
        backup: Option<PathBuf>,
        /// Compare with this backup.
        #[arg(long, conflicts_with = "with_nodes")]
        with: Option<PathBuf>,
        /// Compare with the cluster of these nodes.
        #[arg(long, value_delimiter = ',')]
        with_nodes: Vec<SocketAddr>,
        /// CA of the --with-nodes cluster (default: --ca).
        #[arg(long)]
        with_ca: Option<PathBuf>,
        /// Admin certificate for the --with-nodes cluster (default: --cert).
        #[arg(long)]
        with_cert: Option<PathBuf>,
        /// Its key.
        #[arg(long)]
        with_key: Option<PathBuf>,
        /// List every differing key (default: the first 20).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a dead node: re-replicate its ranges from the surviving replicas.
    Remove {
        /// The node's id.
        node: String,
        /// Wait until the removal completed, printing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum BucketCommand {
    /// Create a bucket on every member (its type and N are fixed for life).
    Create {
        /// Bucket name.
        name: String,
        /// Value type: register, counter, set, map or lww.
        #[arg(long = "type")]
        bucket_type: BucketType,
        /// Replicas per key.
        #[arg(long, default_value_t = 3)]
        n: u8,
        /// Default read quorum (default: a majority of N).
        #[arg(long)]
        r: Option<u8>,
        /// Default write quorum (default: a majority of N).
        #[arg(long)]
        w: Option<u8>,
        /// Time to live of every write that gives none: 500ms, 30s, 5m,
        /// 2h or 7d (default: none, keys live for ever).
        #[arg(long, value_parser = parse_duration)]
        default_ttl: Option<std::time::Duration>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the buckets a node knows.
    List {
        #[command(flatten)]
        conn: Conn,
    },
}

/// What a `put` or `delete` takes besides its key.
#[derive(Args)]
pub struct WriteArgs {
    /// Causal context printed by `get` (hex).
    #[arg(long)]
    pub context: Option<String>,
    /// Write quorum (default: the cluster's W).
    #[arg(long)]
    pub w: Option<u8>,
    #[command(flatten)]
    pub conn: Conn,
}

/// The part of a partition `range` and `delete-range` read.
#[derive(Args)]
pub struct Span {
    /// Bucket.
    pub bucket: String,
    /// Partition key.
    pub partition: String,
    /// Only sort keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// From this sort key on (included).
    #[arg(long)]
    pub from: Option<String>,
    /// Up to this sort key (excluded).
    #[arg(long)]
    pub to: Option<String>,
}

impl Span {
    /// The range read of this span, forward, in pages of the node's size.
    pub fn query(&self) -> kvorum_client::proto::RangeQuery {
        use kvorum_client::proto::{RangeQuery, SortBound};
        let bound = |s: &Option<String>, low: bool| match s {
            None => SortBound::Unbounded,
            Some(s) if low => SortBound::Included(s.clone().into_bytes()),
            Some(s) => SortBound::Excluded(s.clone().into_bytes()),
        };
        RangeQuery::new(&self.bucket, self.partition.as_bytes())
            .between(bound(&self.from, true), bound(&self.to, false))
            .prefix(self.prefix.as_bytes())
    }
}

/// Per-request quorums of the typed commands.
#[derive(Args)]
pub struct Quorums {
    /// Read quorum (default: the bucket's R).
    #[arg(long)]
    pub r: Option<u8>,
    /// Write quorum (default: the bucket's W).
    #[arg(long)]
    pub w: Option<u8>,
}

#[derive(Subcommand)]
pub enum CertCommand {
    /// Make a cluster CA: <out>/ca.pem and <out>/ca.key.
    Ca {
        /// Output directory.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Cluster name (in the CA's common name).
        #[arg(long, default_value = "kvorum")]
        cluster: String,
    },
    /// Make a node certificate: <out>/<id>.pem and <out>/<id>.key.
    Node {
        /// Node id.
        id: String,
        /// Directory holding ca.pem and ca.key; also the output directory.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Extra DNS names or IPs the certificate should carry.
        #[arg(long = "name")]
        names: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = kvorum_node::net::certs::DEFAULT_LEAF_DAYS)]
        days: u32,
    },
    /// Make an application (client-role) certificate: <out>/<name>.pem and
    /// <out>/<name>.key. It may read and write what the access list grants
    /// NAME, and make no admin request.
    Client {
        /// Client name (1 to 63 lower-case letters, digits and '-').
        name: String,
        /// Directory holding ca.pem and ca.key; also the output directory.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = kvorum_node::net::certs::DEFAULT_LEAF_DAYS)]
        days: u32,
    },
    /// Make an operator (admin-role) certificate: <out>/<name>.pem and
    /// <out>/<name>.key. Admin verbs need one.
    Admin {
        /// Operator name (1 to 63 lower-case letters, digits and '-').
        name: String,
        /// Directory holding ca.pem and ca.key; also the output directory.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = kvorum_node::net::certs::DEFAULT_LEAF_DAYS)]
        days: u32,
    },
}

/// How the CLI reaches a cluster; defaults to the dev cluster.
#[derive(Args)]
pub struct Conn {
    /// Node addresses (comma-separated); default: those of the dev cluster.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<SocketAddr>,
    /// Dev cluster directory whose certificates and node list are the defaults.
    #[arg(long, default_value = "kvorum-dev")]
    pub dev_dir: PathBuf,
    /// CA certificate (default: <dev-dir>/certs/ca.pem).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Certificate to connect with (default: <dev-dir>/certs/admin.pem for
    /// admin verbs and `status`, <dev-dir>/certs/client.pem otherwise).
    #[arg(long = "cert", alias = "client-cert")]
    pub client_cert: Option<PathBuf>,
    /// Its key (default: admin.key or client.key beside it, as for --cert).
    #[arg(long = "key", alias = "client-key")]
    pub client_key: Option<PathBuf>,
    /// Request timeout in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u32>,
    /// Count only the key's own replicas toward R/W (no fallback nodes).
    #[arg(long)]
    pub strict: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

/// Parses a duration: a whole number and a unit, `ms`, `s`, `m`, `h` or `d`
/// (`30s`, `5m`); at least 1 ms.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit {unit:?} (ms, s, m, h or d)")),
    };
    let ms = n
        .checked_mul(ms_per)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if ms == 0 {
        return Err("a time to live must be at least 1 ms".into());
    }
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        for bad in [
            "30",
            "s",
            "0s",
            "1.5s",
            "3w",
            "-1s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }
}
