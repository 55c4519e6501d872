//! The failure detector's heartbeats: a ping to every other member each
//! heartbeat interval, its answer fed to [`super::liveness::Liveness`].

use super::liveness::{DetectorConfig, Liveness};
use super::membership::Membership;
use crate::rpc::call::ask;
use crate::rpc::peer::{ClusterRequest, ClusterResponse};
use crate::rpc::transport::Transport;
use crate::util::time::Every;
use crate::util::LockExt;
use kvorum_ring::NodeId;
use std::sync::Arc;
use tokio::sync::watch;

/// Pings every other member each heartbeat interval and feeds the answers to
/// the failure detector. At most one ping per peer is in flight; a ping waits
/// up to the acceptable pause, so a slow answer still counts as a heartbeat.
pub async fn ping(
    transport: Arc<dyn Transport>,
    membership: Arc<Membership>,
    liveness: Arc<Liveness>,
    config: DetectorConfig,
    shutdown: watch::Receiver<bool>,
) {
    let in_flight: Arc<std::sync::Mutex<std::collections::HashSet<NodeId>>> = Arc::default();
    let mut ticks = Every::new(config.heartbeat_interval, shutdown.clone());
    let wait = config.acceptable_pause.max(config.heartbeat_interval);
    let mut seen_up: std::collections::HashMap<NodeId, bool> = Default::default();
    while ticks.next().await {
        let me = membership.me().id.clone();
        for m in membership.members().into_iter().filter(|m| m.id != me) {
            let up = liveness.is_up(&m.id);
            if seen_up.insert(m.id.clone(), up) == Some(true) && !up {
                tracing::info!(peer = %m.id, "peer down");
            }
        }
        for m in membership.watched().into_iter().filter(|m| m.id != me) {
            liveness.watch(&m.id);
            if !in_flight.locked().insert(m.id.clone()) {
                continue;
            }
            let (transport, liveness, in_flight) =
                (transport.clone(), liveness.clone(), in_flight.clone());
            tokio::spawn(async move {
                let pong = ask(&*transport, &m.id, ClusterRequest::Ping, wait).await;
                if let Ok(ClusterResponse::Pong) = pong {
                    liveness.heartbeat(&m.id);
                }
                in_flight.locked().remove(&m.id);
            });
        }
    }
}
