//! The `kvorum` binary: run a node, a local dev cluster, make certificates,
//! and talk to a cluster from the shell.

use clap::{Args, Parser, Subcommand};
use kvorum_client::{
    BucketProps, BucketType, CausalContext, Client, FieldKind, FieldValue, MapUpdate, ReadOptions,
    TlsMaterial, WriteOptions,
};
mod cli;

use kvorum_node::net::certs;
use kvorum_node::{dev, NodeConfig};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

/// mimalloc instead of glibc's malloc: a node allocates and frees small
/// buffers on every request (frames, states, stream tasks), and glibc's
/// allocator was 16-19 % of a node's CPU in the profile of a quorum write
/// (docs/performance.md, "Where the CPU of a quorum write goes").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kvorum: a leaderless, Dynamo-style replicated key-value store.
#[derive(Parser)]
#[command(name = "kvorum", version, about)]
struct Cli {
    /// Log format on stderr: `human` (default) or `json` (one object per
    /// line, for log shippers). RUST_LOG sets the levels (default: info).
    #[arg(long, global = true, value_enum, env = "KVORUM_LOG_FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Threads of the async runtime (default: one per core). Nodes that
    /// share a machine run faster with their share of its cores each;
    /// `kvorum bench` gives its nodes cores / nodes.
    #[arg(long, global = true, env = "KVORUM_WORKER_THREADS",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
    /// Read a key.
    Get {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
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
        /// Key.
        key: String,
        /// Value (UTF-8).
        value: String,
        /// Causal context printed by `get` (hex).
        #[arg(long)]
        context: Option<String>,
        /// Write quorum (default: the cluster's W).
        #[arg(long)]
        w: Option<u8>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete the values a read returned.
    Delete {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Causal context printed by `get` (hex).
        #[arg(long)]
        context: Option<String>,
        /// Write quorum (default: the cluster's W).
        #[arg(long)]
        w: Option<u8>,
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
    Bench(Box<cli::bench::BenchArgs>),
}

#[derive(Subcommand)]
enum AdminCommand {
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
enum BucketCommand {
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
        #[command(flatten)]
        conn: Conn,
    },
    /// List the buckets a node knows.
    List {
        #[command(flatten)]
        conn: Conn,
    },
}

/// Per-request quorums of the typed commands.
#[derive(Args)]
struct Quorums {
    /// Read quorum (default: the bucket's R).
    #[arg(long)]
    r: Option<u8>,
    /// Write quorum (default: the bucket's W).
    #[arg(long)]
    w: Option<u8>,
}

#[derive(Subcommand)]
enum CertCommand {
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
    },
    /// Make a client certificate: <out>/<name>.pem and <out>/<name>.key.
    Client {
        /// Client name.
        name: String,
        /// Directory holding ca.pem and ca.key; also the output directory.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
}

/// How the CLI reaches a cluster; defaults to the dev cluster.
#[derive(Args)]
struct Conn {
    /// Node addresses (comma-separated); default: those of the dev cluster.
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<SocketAddr>,
    /// Dev cluster directory whose certificates and node list are the defaults.
    #[arg(long, default_value = "kvorum-dev")]
    dev_dir: PathBuf,
    /// CA certificate (default: <dev-dir>/certs/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate (default: <dev-dir>/certs/client.pem).
    #[arg(long = "client-cert")]
    client_cert: Option<PathBuf>,
    /// Client key (default: <dev-dir>/certs/client.key).
    #[arg(long = "client-key")]
    client_key: Option<PathBuf>,
    /// Request timeout in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u32>,
    /// Count only the key's own replicas toward R/W (no fallback nodes).
    #[arg(long)]
    strict: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.worker_threads {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Command) -> Result<ExitCode, BoxError> {
    match cmd {
        Command::Start { config } => {
            let cfg = NodeConfig::load(&config)?;
            let node = kvorum_node::start(cfg).await?;
            println!("node {} serving on {}", node.id(), node.addr());
            tokio::select! {
                () = kvorum_node::start::wait_for_signal() => {
                    eprintln!("shutting down");
                    node.shutdown().await;
                }
                () = node.storage_failed() => {
                    // Fail-stop: a supervisor restarts it (as a new epoch).
                    eprintln!("error: a storage commit failed (see the log); stopping");
                    node.shutdown().await;
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Dev { nodes, dir, port } => {
            if nodes == 0 || usize::from(u16::MAX - port) < nodes {
                return Err(format!("cannot place {nodes} nodes from port {port}").into());
            }
            let opts = dev::DevOptions {
                dir: dir.clone(),
                nodes,
                base_port: port,
            };
            let running = dev::start(&opts).await?;
            let addrs = running.iter().map(|n| n.addr()).collect();
            // Ctrl-C while the buckets are being created still stops cleanly.
            tokio::select! {
                created = dev::create_tour_buckets(&opts, addrs) => {
                    if let Err(e) = created {
                        eprintln!("warning: the tour buckets were not created: {e}");
                    }
                }
                () = kvorum_node::start::wait_for_signal() => {
                    eprintln!("stopping the dev cluster");
                    for n in running {
                        n.shutdown().await;
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let certs = dir.join("certs");
            println!("Kvorum dev cluster: {} nodes on 127.0.0.1", running.len());
            for n in &running {
                match n.metrics_addr() {
                    Some(m) => println!("  {}  {}  metrics: http://{m}/metrics", n.id(), n.addr()),
                    None => println!("  {}  {}", n.id(), n.addr()),
                }
            }
            println!("data, configs and certificates: {}", dir.display());
            println!("client certificate: {}", certs.join("client.pem").display());
            println!("client key:         {}", certs.join("client.key").display());
            println!("cluster CA:         {}", certs.join("ca.pem").display());
            println!(
                "buckets: {}",
                dev::TOUR_BUCKETS
                    .iter()
                    .map(|(n, t)| format!("{n} ({t})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!("try:  kvorum put demo hello world && kvorum get demo hello");
            println!("      kvorum counter hits home --incr 1");
            println!("Ctrl-C stops the cluster (data is kept for the next start).");
            kvorum_node::start::wait_for_signal().await;
            eprintln!("stopping the dev cluster");
            for n in running {
                n.shutdown().await;
            }
        }
        Command::Cert(c) => cert(c)?,
        Command::Bench(args) => cli::bench::main(*args).await?,
        Command::Admin(AdminCommand::Repair { conn }) => {
            let client = conn.client()?;
            let (exchanges, keys) = client.repair().await?;
            println!("{exchanges} exchange(s), {keys} key(s) repaired");
            client.close().await;
        }
        Command::Admin(AdminCommand::Status { json, conn }) => {
            let client = conn.client()?;
            let status = client.cluster_status().await?;
            // The transfers of the nodes the change waits for (the answering
            // node knows only its own).
            let mut transfers = vec![(status.node.clone(), status.transfers.clone())];
            for id in &status.waiting_for {
                let Some(m) = status.members.iter().find(|m| &m.id == id) else {
                    continue;
                };
                if *id == status.node {
                    continue;
                }
                let Ok(addr) = m.addr.parse::<SocketAddr>() else {
                    continue;
                };
                if let Ok(other) = conn.client_for(vec![addr]) {
                    if let Ok(s) = other.cluster_status().await {
                        transfers.push((id.clone(), s.transfers));
                    }
                    other.close().await;
                }
            }
            client.close().await;
            if json {
                let out = serde_json::json!({
                    "status": status,
                    "transfers_by_node": transfers
                        .iter()
                        .map(|(n, t)| serde_json::json!({"node": n, "transfers": t}))
                        .collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_status(&status, &transfers);
            }
        }
        Command::Admin(AdminCommand::Ring { n, all, json, conn }) => {
            let client = conn.client()?;
            let ranges = client.ring(n).await?;
            client.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&ranges)?);
            } else {
                print_ring(&ranges, all);
            }
        }
        Command::Admin(AdminCommand::Join { seed, conn }) => {
            let client = conn.one_node("join")?;
            let (id, _) = client.status().await?;
            println!("{}", client.join(&id, &seed.to_string()).await?);
            client.close().await;
        }
        Command::Admin(AdminCommand::Leave { wait, conn }) => {
            let client = conn.one_node("leave")?;
            let (id, members) = client.status().await?;
            println!("{}", client.leave(&id).await?);
            client.close().await;
            if wait {
                // The leaving node stays reachable; ask the others too.
                let others: Vec<SocketAddr> = members
                    .iter()
                    .filter(|m| m.id != id)
                    .filter_map(|m| m.addr.parse().ok())
                    .collect();
                wait_removed(&conn.client_for(others)?, &id).await?;
            }
        }
        Command::Admin(AdminCommand::Remove { node, wait, conn }) => {
            let client = conn.client()?;
            println!("{}", client.remove_node(&node).await?);
            if wait {
                wait_removed(&client, &node).await?;
            }
            client.close().await;
        }
        Command::Admin(AdminCommand::Bucket(BucketCommand::Create {
            name,
            bucket_type,
            n,
            r,
            w,
            conn,
        })) => {
            let majority = n / 2 + 1;
            let props = BucketProps::new(bucket_type)
                .n(n)
                .r(r.unwrap_or(majority))
                .w(w.unwrap_or(majority));
            props.validate()?;
            let client = conn.client()?;
            client.create_bucket(&name, props).await?;
            println!(
                "bucket {name}: {bucket_type}, N={} R={} W={}",
                props.n, props.r, props.w
            );
            client.close().await;
        }
        Command::Admin(AdminCommand::Bucket(BucketCommand::List { conn })) => {
            let client = conn.client()?;
            println!(
                "{:<24} {:<9} {:>2} {:>2} {:>2}",
                "BUCKET", "TYPE", "N", "R", "W"
            );
            for (name, p) in client.buckets().await? {
                println!(
                    "{:<24} {:<9} {:>2} {:>2} {:>2}",
                    name,
                    p.bucket_type.to_string(),
                    p.n,
                    p.r,
                    p.w
                );
            }
            client.close().await;
        }
        Command::Counter {
            bucket,
            key,
            incr,
            q,
            conn,
        } => {
            let client = conn.client()?;
            let c = client
                .counter(&bucket, key.as_bytes())
                .read_options(conn.read_options(q.r))
                .write_options(conn.write_options(q.w));
            if let Some(by) = incr {
                c.increment(by).await?;
            }
            println!("{}", c.value().await?);
            client.close().await;
        }
        Command::Set {
            bucket,
            key,
            add,
            remove,
            q,
            conn,
        } => {
            let client = conn.client()?;
            let s = client
                .set(&bucket, key.as_bytes())
                .read_options(conn.read_options(q.r))
                .write_options(conn.write_options(q.w));
            if !add.is_empty() || !remove.is_empty() {
                let ctx = if remove.is_empty() {
                    CausalContext::empty()
                } else {
                    s.members().await?.context
                };
                let bytes = |v: Vec<String>| v.into_iter().map(String::into_bytes).collect();
                s.update(bytes(add), bytes(remove), &ctx).await?;
            }
            for m in s.members().await?.members {
                println!("{}", String::from_utf8_lossy(&m));
            }
            client.close().await;
        }
        Command::Map {
            bucket,
            key,
            incr,
            add,
            remove,
            enable,
            disable,
            lww,
            reg,
            remove_field,
            q,
            conn,
        } => {
            let client = conn.client()?;
            let m = client
                .map(&bucket, key.as_bytes())
                .read_options(conn.read_options(q.r))
                .write_options(conn.write_options(q.w));
            let mut u = MapUpdate::new();
            for f in &incr {
                let (field, n) = split_field(f)?;
                u = u.increment(field, n.parse().map_err(|e| format!("--incr {f}: {e}"))?);
            }
            for f in &add {
                let (field, v) = split_field(f)?;
                u = u.add(field, v.as_bytes());
            }
            for f in &remove {
                let (field, v) = split_field(f)?;
                u = u.remove(field, v.as_bytes());
            }
            for f in &enable {
                u = u.enable(f);
            }
            for f in &disable {
                u = u.disable(f);
            }
            for f in &lww {
                let (field, v) = split_field(f)?;
                u = u.set_lww(field, v.as_bytes());
            }
            for f in &reg {
                let (field, v) = split_field(f)?;
                u = u.set_register(field, v.as_bytes());
            }
            for f in &remove_field {
                let (kind, field) = f
                    .split_once(':')
                    .ok_or_else(|| format!("--remove-field {f}: expected KIND:FIELD"))?;
                u = u.remove_field(field, kind.parse::<FieldKind>()?);
            }
            if !u.ops().is_empty() {
                // Removes and register writes act on what a read saw.
                let ctx = m.fetch().await?.context;
                m.update(u.context(&ctx)).await?;
            }
            for (name, kind, value) in m.fetch().await?.value.fields {
                let shown = match value {
                    FieldValue::Counter(v) => v.to_string(),
                    FieldValue::Flag(b) => b.to_string(),
                    FieldValue::Lww(v) => String::from_utf8_lossy(&v).into_owned(),
                    FieldValue::Set(ms) | FieldValue::Register(ms) => ms
                        .iter()
                        .map(|m| String::from_utf8_lossy(m).into_owned())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                println!("{name} ({kind}): {shown}");
            }
            client.close().await;
        }
        Command::Get {
            bucket,
            key,
            r,
            conn,
        } => {
            let client = conn.client()?;
            let v = client
                .get_with(
                    &bucket,
                    key.as_bytes(),
                    ReadOptions {
                        r,
                        timeout_ms: conn.timeout_ms,
                        strict: conn.strict,
                        repair_before_answer: false,
                    },
                )
                .await?;
            if v.siblings.is_empty() {
                println!("not found");
            }
            for (i, s) in v.siblings.iter().enumerate() {
                if v.siblings.len() > 1 {
                    print!("sibling {}: ", i + 1);
                }
                println!("{}", String::from_utf8_lossy(s));
            }
            println!("context: {}", v.context.to_hex());
            client.close().await;
            return Ok(if v.siblings.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Put {
            bucket,
            key,
            value,
            context,
            w,
            conn,
        } => {
            let client = conn.client()?;
            let ctx = parse_context(context)?;
            let opts = WriteOptions {
                w,
                timeout_ms: conn.timeout_ms,
                strict: conn.strict,
            };
            let new = client
                .put_with(&bucket, key.as_bytes(), value.as_bytes(), &ctx, opts)
                .await?;
            println!("ok\ncontext: {}", new.to_hex());
            client.close().await;
        }
        Command::Delete {
            bucket,
            key,
            context,
            w,
            conn,
        } => {
            let client = conn.client()?;
            let ctx = parse_context(context)?;
            let opts = WriteOptions {
                w,
                timeout_ms: conn.timeout_ms,
                strict: conn.strict,
            };
            client
                .delete_with(&bucket, key.as_bytes(), &ctx, opts)
                .await?;
            println!("deleted");
            client.close().await;
        }
        Command::Status { conn } => {
            let client = conn.client()?;
            let (node, members) = client.status().await?;
            println!("{node} knows {} member(s):", members.len());
            for m in members {
                println!(
                    "  {}  {}{}",
                    m.id,
                    m.addr,
                    m.zone.map(|z| format!("  zone {z}")).unwrap_or_default()
                );
            }
            client.close().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Splits FIELD=VALUE.
fn split_field(arg: &str) -> Result<(&str, &str), BoxError> {
    arg.split_once('=')
        .ok_or_else(|| format!("{arg:?}: expected FIELD=VALUE").into())
}

fn parse_context(hex: Option<String>) -> Result<CausalContext, BoxError> {
    match hex {
        None => Ok(CausalContext::empty()),
        Some(h) => CausalContext::from_hex(&h)
            .ok_or_else(|| "--context is not the hex printed by `get`".into()),
    }
}

fn cert(c: CertCommand) -> Result<(), BoxError> {
    let ca_of = |out: &Path| {
        certs::read(out, "ca").map_err(|e| {
            format!(
                "{e} (make a CA first: kvorum cert ca --out {})",
                out.display()
            )
        })
    };
    let (cert, key) = match c {
        CertCommand::Ca { out, cluster } => certs::write(&out, "ca", &certs::make_ca(&cluster)?)?,
        CertCommand::Node { id, out, names } => {
            let ca = ca_of(&out)?;
            certs::write(&out, &id, &certs::make_node(&ca, &id, &names)?)?
        }
        CertCommand::Client { name, out } => {
            let ca = ca_of(&out)?;
            certs::write(&out, &name, &certs::make_client(&ca, &name)?)?
        }
    };
    println!("wrote {} and {}", cert.display(), key.display());
    Ok(())
}

impl Conn {
    fn read_options(&self, r: Option<u8>) -> ReadOptions {
        ReadOptions {
            r,
            timeout_ms: self.timeout_ms,
            strict: self.strict,
            repair_before_answer: false,
        }
    }

    fn write_options(&self, w: Option<u8>) -> WriteOptions {
        WriteOptions {
            w,
            timeout_ms: self.timeout_ms,
            strict: self.strict,
        }
    }

    fn client(&self) -> Result<Client, BoxError> {
        let certs = self.dev_dir.join("certs");
        let ca = self.ca.clone().unwrap_or_else(|| certs.join("ca.pem"));
        let cert = self
            .client_cert
            .clone()
            .unwrap_or_else(|| certs.join("client.pem"));
        let key = self
            .client_key
            .clone()
            .unwrap_or_else(|| certs.join("client.key"));
        let tls = TlsMaterial::from_files(&ca, &cert, &key).map_err(|e| {
            format!("{e}\n(start a dev cluster with `kvorum dev`, or pass --ca/--client-cert/--client-key and --nodes)")
        })?;
        let nodes = if self.nodes.is_empty() {
            let path = self.dev_dir.join(dev::NODES_FILE);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "{}: {e} (pass --nodes, or start `kvorum dev`)",
                    path.display()
                )
            })?;
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    l.trim()
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("{}: {l:?}: {e}", path.display()))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            self.nodes.clone()
        };
        Ok(Client::connect(nodes, tls)?)
    }

    /// A client of exactly the node a topology command is about.
    fn one_node(&self, what: &str) -> Result<Client, BoxError> {
        if self.nodes.len() != 1 {
            return Err(
                format!("name the node to {what} with --nodes ADDR (exactly one address)").into(),
            );
        }
        self.client()
    }

    /// A client of `nodes` with this command's certificates.
    fn client_for(&self, nodes: Vec<SocketAddr>) -> Result<Client, BoxError> {
        Conn {
            nodes,
            dev_dir: self.dev_dir.clone(),
            ca: self.ca.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            timeout_ms: self.timeout_ms,
            strict: self.strict,
        }
        .client()
    }
}

/// Polls until `node` is removed, printing the change's progress.
async fn wait_removed(client: &Client, node: &str) -> Result<(), BoxError> {
    let mut last = String::new();
    loop {
        let s = client.cluster_status().await?;
        let state = s
            .members
            .iter()
            .find(|m| m.id == node)
            .map(|m| m.state.clone())
            .unwrap_or_default();
        if state == "removed" {
            println!("{node} removed");
            return Ok(());
        }
        let line = format!(
            "{node} {state}; waiting for {}",
            if s.waiting_for.is_empty() {
                "gossip".to_string()
            } else {
                s.waiting_for.join(", ")
            }
        );
        if line != last {
            println!("{line}");
            last = line;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn print_status(
    s: &kvorum_client::ClusterStatus,
    transfers: &[(String, Vec<kvorum_client::TransferStatus>)],
) {
    println!("as seen by {}:", s.node);
    println!(
        "{:<16} {:<22} {:<10} {:<8} {:>7}  SEEN",
        "NODE", "ADDRESS", "ZONE", "STATE", "RING"
    );
    for m in &s.members {
        println!(
            "{:<16} {:<22} {:<10} {:<8} {:>6.1}%  {}",
            m.id,
            m.addr,
            m.zone.as_deref().unwrap_or("-"),
            m.state,
            f64::from(m.ownership_ppm) / 10_000.0,
            if m.state == "removed" {
                "-"
            } else if m.reachable {
                "up"
            } else {
                "down"
            }
        );
    }
    if !s.in_transition {
        println!("no topology change in progress");
        return;
    }
    println!(
        "topology change in progress; waiting for: {}",
        if s.waiting_for.is_empty() {
            "completion (gossip)".to_string()
        } else {
            s.waiting_for.join(", ")
        }
    );
    for (node, list) in transfers {
        for t in list {
            let pct = if t.total == 0 {
                100.0
            } else {
                (t.scanned as f64 / t.total as f64 * 100.0).min(100.0)
            };
            println!(
                "  {} <- {}: {} ({:.0}% scanned, {} keys, {} bytes)",
                node,
                t.source,
                if t.done { "done" } else { "streaming" },
                pct,
                t.keys,
                t.bytes
            );
        }
    }
}

fn print_ring(ranges: &[kvorum_client::RingRange], all: bool) {
    let span = |r: &kvorum_client::RingRange| r.end.wrapping_sub(r.start) as f64 / 2f64.powi(64);
    if all {
        println!("{:<18} {:<18} OWNERS", "START (excl.)", "END (incl.)");
        for r in ranges {
            println!("{:016x}   {:016x}   {}", r.start, r.end, r.owners.join(","));
        }
        return;
    }
    let mut by_owners: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
    for r in ranges {
        let e = by_owners.entry(r.owners.join(",")).or_default();
        e.0 += 1;
        e.1 += span(r);
    }
    println!(
        "{:<40} {:>7} {:>7}",
        "OWNERS (first replica first)", "RANGES", "SHARE"
    );
    for (owners, (n, share)) in by_owners {
        println!("{owners:<40} {n:>7} {:>6.1}%", share * 100.0);
    }
    println!(
        "{} ranges (--all lists them, --json for scripts)",
        ranges.len()
    );
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
