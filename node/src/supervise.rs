//! [`Supervised`]: a node that gets over a full disk by itself. When its
//! storage fails a commit for want of space (the engine met ENOSPC: the
//! free-space watermark of `storage::disk` was set too low, or something
//! else filled the disk), the node keeps serving reads and refusing writes
//! with `DiskFull` until the filesystem has room again, then restarts in
//! place (a new data epoch, as after any failed commit) and takes writes.
//! Any other failed commit stops it, for a supervisor (systemd) to restart.
//! `kvorum start` and `kvorum dev` run their nodes this way.

use crate::config::NodeConfig;
use crate::net::identity::Caller;
use crate::net::reload::ReloadError;
use crate::start::{self, Drained, NodeError, RunningNode};
use crate::storage::{disk, StorageError};
use std::{net::SocketAddr, time::Duration};
use tokio::sync::{mpsc, oneshot};

/// How often a node waiting for space reads the free space.
const SPACE_POLL: Duration = Duration::from_secs(1);
/// The least free space a restart waits for, whatever the watermark.
const MIN_RESTART_FREE: u64 = 16 << 20;

/// How a supervised node ended.
#[derive(Debug)]
pub enum Ended {
    /// It was asked to stop ([`Supervised::shutdown`]), and drained first
    /// (`None`: it was waiting out a full disk, with no writes to drain).
    Stopped(Option<Drained>),
    /// Its storage failed a commit for a reason other than a full disk: it
    /// stopped (fail-stop) and should be restarted by its supervisor.
    StorageFailed(StorageError),
    /// A restart after a full disk failed.
    RestartFailed(NodeError),
}

enum Command {
    Reload(oneshot::Sender<Result<Caller, ReloadError>>),
    Stop,
}

/// A running node under its own supervision (see the module doc).
pub struct Supervised {
    id: String,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<Ended>,
}

impl Supervised {
    /// Starts the node of `config` and supervises it.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let node = start::start(config.clone()).await?;
        Ok(Self::watch(node, config))
    }

    /// Supervises `node`, started from `config`.
    pub fn watch(node: RunningNode, config: NodeConfig) -> Self {
        let (commands, rx) = mpsc::channel(4);
        Self {
            id: node.id().to_string(),
            addr: node.addr(),
            metrics_addr: node.metrics_addr(),
            commands,
            task: tokio::spawn(run(node, config, rx)),
        }
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it serves `/metrics`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Reloads its certificates (as SIGHUP does); `None` if the node has
    /// ended.
    pub async fn reload_certificates(&self) -> Option<Result<Caller, ReloadError>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Reload(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Resolves when the node ended by itself (it then no longer serves).
    pub async fn ended(&mut self) -> Ended {
        match (&mut self.task).await {
            Ok(e) => e,
            Err(e) => Ended::StorageFailed(StorageError::Engine(format!("supervisor: {e}"))),
        }
    }

    /// Stops the node gracefully ([`RunningNode::drain`], then
    /// [`RunningNode::shutdown`]) and waits for it; says how it ended.
    pub async fn shutdown(self) -> Ended {
        let _ = self.commands.send(Command::Stop).await;
        match self.task.await {
            Ok(e) => e,
            Err(e) => Ended::StorageFailed(StorageError::Engine(format!("supervisor: {e}"))),
        }
    }
}

/// Serves `node` until it is stopped, restarting it after a full disk.
async fn run(
    mut node: RunningNode,
    mut config: NodeConfig,
    mut rx: mpsc::Receiver<Command>,
) -> Ended {
    // A restart binds the ports the node has now: one configured with port
    // 0 would otherwise come back on another port, while the members (and
    // [`Supervised::addr`]) know it by this one.
    if config.listen.port() == 0 {
        if let Some(local) = node.local_addr() {
            config.listen.set_port(local.port());
        }
    }
    if let (Some(want), Some(bound)) = (config.metrics_listen.as_mut(), node.metrics_addr()) {
        if want.port() == 0 {
            want.set_port(bound.port());
        }
    }
    loop {
        let failed = tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Reload(reply)) => {
                    let _ = reply.send(node.reload_certificates());
                    continue;
                }
                Some(Command::Stop) | None => {
                    let drained = node.drain().await;
                    node.shutdown().await;
                    return Ended::Stopped(Some(drained));
                }
            },
            e = node.storage_failed() => e,
        };
        if !matches!(failed, StorageError::DiskFull(_)) {
            tracing::error!(error = %failed, "a storage commit failed; stopping (fail-stop)");
            node.shutdown().await;
            return Ended::StorageFailed(failed);
        }
        tracing::error!(
            error = %failed,
            "the disk is full: reads go on, writes are refused; the node restarts by itself once space is freed"
        );
        // Reads go on meanwhile; the failed store refuses every write.
        tokio::select! {
            cmd = async {
                loop {
                    match rx.recv().await {
                        Some(Command::Reload(reply)) => {
                            let _ = reply.send(node.reload_certificates());
                        }
                        other => return other,
                    }
                }
            } => {
                let _ = cmd;
                node.shutdown().await;
                return Ended::Stopped(None);
            }
            () = wait_for_space(&config) => {}
        }
        node.shutdown().await;
        node = match restart(&config).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "the restart after a full disk failed");
                return Ended::RestartFailed(e);
            }
        };
        tracing::info!(node = %config.id, "restarted after a full disk: writes are taken again");
    }
}

/// Starts the node of `config` again, retrying for up to 10 s: the old
/// node's UDP socket and its storage's lock are released a moment after
/// its shutdown (their last handles are in tasks that are ending).
async fn restart(config: &NodeConfig) -> Result<RunningNode, NodeError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match start::start(config.clone()).await {
            Ok(n) => return Ok(n),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "restart after a full disk: retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until the filesystem holding the node's data has room again:
/// free space above the node's watermark, and at least 16 MiB.
pub async fn wait_for_space(config: &NodeConfig) {
    loop {
        if let Some(s) = disk::space_of(&config.data_dir) {
            let floor = config.watermark.client_floor(s.total).max(MIN_RESTART_FREE);
            if s.free >= floor {
                return;
            }
        }
        tokio::time::sleep(SPACE_POLL).await;
    }
}
