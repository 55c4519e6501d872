//! The `kvorum` binary: run a node, a local dev cluster, make certificates,
//! and talk to a cluster from the shell.

use clap::{Args, Parser, Subcommand};
use kvorum_client::{CausalContext, Client, ReadOptions, TlsMaterial, WriteOptions};
use kvorum_node::{certs, dev, NodeConfig};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

/// Kvorum: a leaderless, Dynamo-style replicated key-value store.
#[derive(Parser)]
#[command(name = "kvorum", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Show the members a node knows.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Run an anti-entropy exchange between the node and each of its peers now.
    Repair {
        #[command(flatten)]
        conn: Conn,
    },
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
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
            wait_for_signal().await;
            eprintln!("shutting down");
            node.shutdown().await;
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
            let certs = dir.join("certs");
            println!("Kvorum dev cluster: {} nodes on 127.0.0.1", running.len());
            for n in &running {
                println!("  {}  {}", n.id(), n.addr());
            }
            println!("data, configs and certificates: {}", dir.display());
            println!("client certificate: {}", certs.join("client.pem").display());
            println!("client key:         {}", certs.join("client.key").display());
            println!("cluster CA:         {}", certs.join("ca.pem").display());
            println!("try:  kvorum put demo hello world && kvorum get demo hello");
            println!("Ctrl-C stops the cluster (data is kept for the next start).");
            wait_for_signal().await;
            eprintln!("stopping the dev cluster");
            for n in running {
                n.shutdown().await;
            }
        }
        Command::Cert(c) => cert(c)?,
        Command::Admin(AdminCommand::Repair { conn }) => {
            let client = conn.client()?;
            let (exchanges, keys) = client.repair().await?;
            println!("{exchanges} exchange(s), {keys} key(s) repaired");
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
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
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
