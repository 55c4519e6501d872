//! `kvorum start` (one node from its config) and `kvorum dev` (a local
//! cluster with embedded defaults).

use super::BoxError;
use kvorum_node::start::Drained;
use kvorum_node::supervise::{Ended, Supervised};
use kvorum_node::{dev, NodeConfig};

/// What a graceful shutdown's drain did, as the log line says it.
fn drained(d: &Drained) -> String {
    format!(
        "drained in {} ms: {} client request(s) in flight answered, {} left unanswered; {} hint(s) handed off",
        d.took.as_millis(),
        d.in_flight - d.left.min(d.in_flight),
        d.left,
        d.hints_delivered
    )
}
use std::{path::Path, path::PathBuf, process::ExitCode};

/// `kvorum start --config FILE`: serves until Ctrl-C / SIGTERM, or stops
/// with a failure when a storage commit fails (fail-stop).
pub async fn start(config: &Path) -> Result<ExitCode, BoxError> {
    let cfg = NodeConfig::load(config)?;
    // A full disk is waited out in place (see kvorum_node::supervise).
    let mut node = Supervised::start(cfg).await?;
    println!("node {} serving on {}", node.id(), node.addr());
    // SIGHUP reloads the certificate, key and CA bundle.
    #[cfg(unix)]
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hangups.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            () = kvorum_node::start::wait_for_signal() => {
                eprintln!("shutting down: draining the requests in flight");
                if let Ended::Stopped(Some(d)) = node.shutdown().await {
                    eprintln!("{}", drained(&d));
                }
                return Ok(ExitCode::SUCCESS);
            }
            ended = node.ended() => {
                // Fail-stop: a supervisor restarts it (as a new epoch).
                eprintln!("error: the node stopped: {ended:?}");
                return Ok(ExitCode::FAILURE);
            }
            // Bounded: a node restarting after a full disk answers late.
            () = hangup => match tokio::time::timeout(std::time::Duration::from_secs(5), node.reload_certificates()).await {
                Ok(Some(Ok(c))) => eprintln!("certificates reloaded: serial {}", c.serial),
                Ok(Some(Err(e))) => eprintln!("error: certificates not reloaded (keeping the old ones): {e}"),
                Ok(None) => {}
                Err(_) => eprintln!("error: certificates not reloaded: the node is restarting; send SIGHUP again"),
            },
        }
    }
}

/// `kvorum dev`: `nodes` nodes on 127.0.0.1 from `port`, their data and
/// certificates in `dir`.
pub async fn dev(nodes: usize, dir: PathBuf, port: u16) -> Result<ExitCode, BoxError> {
    if nodes == 0 || usize::from(u16::MAX - port) < nodes {
        return Err(format!("cannot place {nodes} nodes from port {port}").into());
    }
    let opts = dev::DevOptions {
        dir: dir.clone(),
        nodes,
        base_port: port,
    };
    let running = dev::start_supervised(&opts).await?;
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
    println!(
        "admin certificate:  {} (admin verbs use it)",
        certs.join("admin.pem").display()
    );
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
    Ok(ExitCode::SUCCESS)
}
