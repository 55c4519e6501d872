//! The anti-entropy background loops: one exchange with the next live peer
//! every interval (then a reaping round), and the trees following a new
//! placement.

use super::exchange::AntiEntropy;
use crate::cluster::liveness::Liveness;
use crate::util::time::Every;
use kvorum_ring::NodeId;
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;

/// How often a node checks whether its anti-entropy trees must follow a
/// new placement (a check is a lock and a comparison).
pub const TREES_REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Every anti-entropy interval, one exchange with the next peer that is up,
/// in turn, so each pair of replicas compares its trees regularly.
pub async fn run_exchanges(
    aae: Arc<AntiEntropy>,
    liveness: Arc<Liveness>,
    mut shutdown: watch::Receiver<bool>,
) {
    if !aae.config().enabled {
        return;
    }
    let mut ticks = Every::new(aae.config().interval, shutdown.clone());
    let mut turn = 0usize;
    while ticks.next().await {
        let peers: Vec<NodeId> = aae
            .peers()
            .into_iter()
            .filter(|p| liveness.is_up(p))
            .collect();
        if peers.is_empty() {
            continue;
        }
        let peer = &peers[turn % peers.len()];
        turn = turn.wrapping_add(1);
        tokio::select! {
            r = aae.exchange(peer) => if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "anti-entropy exchange failed");
            },
            _ = shutdown.changed() => return,
        }
        // Reaping asks every member (docs/consistency.md): with one down,
        // every key would wait out a call's timeout to be held back anyway.
        if !aae.peers().iter().all(|p| liveness.is_up(p)) {
            continue;
        }
        tokio::select! {
            _ = aae.reap() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Every [`TREES_REFRESH_EVERY`], makes the trees follow a new placement,
/// soon after it is learned while little has been written under it, not at
/// the next exchange.
pub async fn refresh_trees(aae: Arc<AntiEntropy>, shutdown: watch::Receiver<bool>) {
    let mut ticks = Every::new(TREES_REFRESH_EVERY, shutdown);
    while ticks.next().await {
        aae.refresh().await;
    }
}
