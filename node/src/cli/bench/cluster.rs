//! The bench's own cluster: its working directory, its nodes (child
//! `kvorum start` processes, configured as `kvorum dev` does), the wait
//! until it has formed, and the baseline's echo server (`--serve-echo`).

use super::args::BenchArgs;
use super::procs::Child;
use super::{io_err, BenchError, BUCKET, COUNTER_BUCKET};
use kvorum_client::proto::{Request, Response};
use kvorum_client::{
    Admin, BucketProps, BucketType, CausalContext, Client, TlsMaterial, WriteOptions,
};
use kvorum_node::config::NodeConfig;
use kvorum_node::dev::{self, DevOptions};
use kvorum_node::net::identity::Caller;
use kvorum_node::net::{self, Handler, ServeLimits};
use kvorum_node::rpc::peer::{PeerError, PeerRequest, PeerResponse};
use kvorum_node::rpc::transport::BoxFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the baseline's echo server (`--serve-echo`) until Ctrl-C / SIGTERM.
pub async fn serve_echo(config: &Path) -> Result<(), BenchError> {
    let cfg = NodeConfig::load(config)?;
    let tls = TlsMaterial::from_files(&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key)?;
    let endpoint = net::endpoint(cfg.listen, &tls, &net::SocketHooks::default())?;
    let limits = ServeLimits::of(&cfg.limits);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = kvorum_node::metrics::Metrics::new("echo");
    let gate: Arc<dyn net::Gate> = Arc::new(net::OpenGate::default());
    let server = tokio::spawn(net::serve(
        endpoint,
        Arc::new(Echo),
        gate,
        limits,
        metrics,
        stopped,
        net::Drain::default(),
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
    fn client<'a>(&'a self, _: &'a Caller, _req: Request) -> BoxFuture<'a, Response> {
        Box::pin(async { Response::BucketCreated })
    }

    fn peer<'a>(&'a self, _: &'a Caller, _req: PeerRequest) -> BoxFuture<'a, PeerResponse> {
        Box::pin(async { PeerResponse::Error(PeerError::Refused("echo server".into())) })
    }
}

/// The working directory of a run; removed on drop unless kept.
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
    pub(super) remove: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The cluster under test and the processes whose CPU counts as its cost.
pub(super) struct Target {
    pub(super) addrs: Vec<SocketAddr>,
    pub(super) tls: TlsMaterial,
    /// The admin certificate (bucket creation).
    pub(super) admin_tls: TlsMaterial,
    pub(super) pids: Vec<(String, u32)>,
    pub(super) data_dirs: Vec<PathBuf>,
    /// The nodes' `/metrics` addresses (the bench's own cluster only).
    pub(super) metrics: Vec<SocketAddr>,
    /// Owned nodes (killed on drop); empty for --connect.
    pub(super) children: Vec<Child>,
}

impl Target {
    pub(super) fn check(&mut self) -> Result<(), BenchError> {
        for c in &mut self.children {
            c.check_running()?;
        }
        Ok(())
    }
}

/// Runtime threads of each node of the bench's own cluster.
pub(super) fn node_threads(args: &BenchArgs) -> u16 {
    args.node_threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        u16::try_from((cores / args.nodes.max(1)).clamp(1, 1024)).unwrap_or(1)
    })
}

/// Starts the bench's own cluster: configs and certificates as `kvorum dev`
/// makes them (plus the sync policy), one `kvorum start` child per node.
pub(super) fn start_cluster(
    args: &BenchArgs,
    threads: u16,
    dir: &Path,
) -> Result<Target, BenchError> {
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
        if let Some(extra) = &args.node_config {
            // Tables of the operator's own (after the generated ones).
            let more = std::fs::read_to_string(extra).map_err(io_err(extra))?;
            text.push('\n');
            text.push_str(&more);
        }
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
    let tls = TlsMaterial::from_dir(&certs, "client")?;
    Ok(Target {
        addrs: configs.iter().map(|c| c.listen).collect(),
        tls,
        admin_tls: TlsMaterial::from_dir(&certs, "admin")?,
        pids,
        data_dirs: configs.iter().map(|c| c.data_dir.clone()).collect(),
        metrics: configs.iter().filter_map(|c| c.metrics_listen).collect(),
        children,
    })
}

/// The sum over the nodes of `kvorum_writes_forwarded_total`, scraped from
/// their `/metrics` endpoints; `None` when there are none or one does not
/// answer in 2 s.
pub(super) async fn forwarded_writes(target: &Target) -> Option<f64> {
    scraped_sum(target, "kvorum_writes_forwarded_total").await
}

/// The sum over the nodes of the metric `name` (every label set), scraped
/// from their `/metrics` endpoints; `None` when there are none or one does
/// not answer.
pub(super) async fn scraped_sum(target: &Target, name: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if target.metrics.is_empty() {
        return None;
    }
    let mut sum = 0.0;
    for addr in &target.metrics {
        let scrape = async {
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
            let req = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            s.write_all(req.as_bytes()).await.ok()?;
            let mut body = String::new();
            s.read_to_string(&mut body).await.ok()?;
            Some(body)
        };
        let body = tokio::time::timeout(Duration::from_secs(2), scrape)
            .await
            .ok()??;
        sum += body
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    Some(sum)
}

/// Waits until a W = all write succeeds through every node.
pub(super) async fn wait_until_formed(target: &mut Target, n: u8) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let props = BucketProps::new(BucketType::Register)
        .n(n)
        .r(n / 2 + 1)
        .w(n / 2 + 1);
    let counter = BucketProps::new(BucketType::Counter)
        .n(n)
        .r(n / 2 + 1)
        .w(n / 2 + 1);
    let all = Admin::builder(target.addrs.clone(), target.admin_tls.clone())
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
    // A cluster of its own grants its client every bucket (a new cluster
    // grants nothing); an existing one (--connect) must have granted it.
    // It has formed when every node lists every member as up (else the
    // client's first placement may miss some).
    if !target.children.is_empty() {
        for addr in target.addrs.clone() {
            let one = Admin::builder([addr], target.admin_tls.clone())
                .connect_timeout(Duration::from_millis(500))
                .request_timeout(Duration::from_secs(2))
                .build()?;
            loop {
                target.check()?;
                match one.status().await {
                    Ok((_, members))
                        if members.len() == target.children.len()
                            && members.iter().all(|m| m.state == "up") =>
                    {
                        break
                    }
                    Ok((_, members)) => last = format!("{} members known", members.len()),
                    Err(e) => last = e.to_string(),
                }
                if Instant::now() > deadline {
                    one.close().await;
                    return Err(BenchError::NotReady(format!(
                        "members did not converge within 60 s: {last}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            one.close().await;
        }
        let every = kvorum_client::Grant::every_bucket("*");
        while let Err(e) = all.grant(every.clone()).await {
            target.check()?;
            if Instant::now() > deadline {
                all.close().await;
                return Err(BenchError::NotReady(format!(
                    "cannot grant the client: {e}"
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
