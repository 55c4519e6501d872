//! `kvorum dev`: a local cluster on 127.0.0.1 with embedded defaults. It makes
//! its own CA and certificates in the dev directory on first start, writes a
//! config per node there (for reference and for `kvorum start`), and keeps its
//! data for the next start.

use crate::config::{ConfigError, NodeConfig};
use crate::net::certs::{self, CertError};
use crate::start::{self, NodeError, RunningNode};
use crate::supervise::Supervised;
use kvorum_client::{Admin, BucketProps, BucketType, TlsMaterial};
use std::time::Duration;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// Why the dev cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Certificates could not be made.
    #[error(transparent)]
    Certs(#[from] CertError),
    /// A generated config was refused (a bug) or could not be written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file of the dev directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A node failed to start.
    #[error("node {id}: {source}")]
    Node {
        /// The node.
        id: String,
        /// Why.
        source: NodeError,
    },
}

/// Settings of a dev cluster.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Directory of certificates, configs and data.
    pub dir: PathBuf,
    /// Number of nodes.
    pub nodes: usize,
    /// UDP port of the first node; the others take the next ports.
    pub base_port: u16,
}

/// Name of the file listing the dev nodes' addresses (one per line), which
/// the CLI reads to find the dev cluster.
pub const NODES_FILE: &str = "nodes";

/// Makes whatever is missing in the dev directory (CA, node and client
/// certificates, node configs) and returns the configs.
pub fn prepare(opts: &DevOptions) -> Result<Vec<NodeConfig>, DevError> {
    let certs_dir = opts.dir.join("certs");
    let ca = match certs::read(&certs_dir, "ca") {
        Ok(ca) => ca,
        Err(_) => {
            let ca = certs::make_ca("dev")?;
            certs::write(&certs_dir, "ca", &ca)?;
            ca
        }
    };
    if certs::read(&certs_dir, "client").is_err() {
        certs::write(&certs_dir, "client", &certs::make_client(&ca, "dev")?)?;
    }
    if certs::read(&certs_dir, "admin").is_err() {
        certs::write(&certs_dir, "admin", &certs::make_admin(&ca, "dev")?)?;
    }
    let addrs: Vec<SocketAddr> = (0..opts.nodes)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], opts.base_port + i as u16)))
        .collect();
    let mut configs = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = format!("n{}", i + 1);
        if certs::read(&certs_dir, &id).is_err() {
            certs::write(&certs_dir, &id, &certs::make_node(&ca, &id, &[])?)?;
        }
        let seeds: Vec<String> = addrs
            .iter()
            .filter(|a| *a != addr)
            .map(|a| format!("\"{a}\""))
            .collect();
        let text = format!(
            "# Written by `kvorum dev`; see examples/node.toml for every field.\n\
             id = \"{id}\"\nlisten = \"{addr}\"\nseeds = [{}]\ndata_dir = \"data/{id}\"\n\
             gossip_interval_ms = 500\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/{id}.pem\"\nkey = \"certs/{id}.key\"\n",
            seeds.join(", "),
        );
        let path = opts.dir.join(format!("{id}.toml"));
        write_file(&path, &text)?;
        configs.push(NodeConfig::load(&path)?);
    }
    let list: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    write_file(&opts.dir.join(NODES_FILE), &list)?;
    Ok(configs)
}

fn write_file(path: &Path, text: &str) -> Result<(), DevError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| DevError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| DevError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The buckets a dev cluster creates for the README's tour (name, type).
pub const TOUR_BUCKETS: [(&str, BucketType); 5] = [
    ("demo", BucketType::Register),
    ("hits", BucketType::Counter),
    ("tags", BucketType::Set),
    ("carts", BucketType::Map),
    ("names", BucketType::Lww),
];

/// Grants the dev cluster's client certificates every bucket, and creates
/// [`TOUR_BUCKETS`] (N = 3 or fewer on a smaller cluster, majority
/// quorums) through an admin handle, retrying while the members still meet
/// each other (creation needs every member). Idempotent.
pub async fn create_tour_buckets(
    opts: &DevOptions,
    addrs: Vec<std::net::SocketAddr>,
) -> Result<(), String> {
    let certs_dir = opts.dir.join("certs");
    let tls = TlsMaterial::from_dir(certs_dir, "admin").map_err(|e| e.to_string())?;
    let client = Admin::connect(addrs, tls).map_err(|e| e.to_string())?;
    let n = u8::try_from(opts.nodes.min(3)).unwrap_or(3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // A new cluster grants client certificates nothing; the dev cluster's
    // client may read and write every bucket.
    let all = kvorum_client::Grant::every_bucket(crate::access::list::ANY_CLIENT);
    loop {
        match client.grant(all.clone()).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() > deadline => {
                client.close().await;
                return Err(format!("granting the dev client every bucket: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    for (name, t) in TOUR_BUCKETS {
        let props = BucketProps::new(t).n(n).r(n / 2 + 1).w(n / 2 + 1);
        loop {
            match client.create_bucket(name, props).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    client.close().await;
                    return Err(format!("bucket {name}: {e}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    client.close().await;
    Ok(())
}

/// Starts every node of the dev cluster.
pub async fn start(opts: &DevOptions) -> Result<Vec<RunningNode>, DevError> {
    Ok(start_with_configs(opts)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
}

/// Starts every node of the dev cluster, each under its own supervision
/// (a full disk is waited out in place: see [`crate::supervise`]).
pub async fn start_supervised(opts: &DevOptions) -> Result<Vec<Supervised>, DevError> {
    Ok(start_with_configs(opts)
        .await?
        .into_iter()
        .map(|(n, cfg)| Supervised::watch(n, cfg))
        .collect())
}

/// Starts every node of the dev cluster; each with its config.
async fn start_with_configs(opts: &DevOptions) -> Result<Vec<(RunningNode, NodeConfig)>, DevError> {
    let configs = prepare(opts)?;
    let mut running = Vec::new();
    let mut kept = Vec::new();
    for cfg in configs {
        let id = cfg.id.clone();
        match start::start(cfg.clone()).await {
            Ok(n) => {
                running.push(n);
                kept.push(cfg);
            }
            Err(source) => {
                for n in running {
                    n.shutdown().await;
                }
                return Err(DevError::Node { id, source });
            }
        }
    }
    // Fresh nodes found the cluster together: the first up ones own the
    // ring, the others join them. Serve only once every node is up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline
        && !running.iter().all(|n| {
            let members = n.members();
            members.len() == running.len()
                && members
                    .iter()
                    .all(|m| m.state == crate::cluster::member::MemberState::Up)
        })
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(running.into_iter().zip(kept).collect())
}
