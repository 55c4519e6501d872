//! Hinted handoff's delivery loop (Dynamo §4.6): hints go to their owners
//! once those are up again.

use super::hints::Hints;
use crate::cluster::liveness::Liveness;
use crate::cluster::membership::Membership;
use crate::rpc::call::ask;
use crate::rpc::peer::{ReplicaRequest, ReplicaResponse};
use crate::rpc::transport::Transport;
use crate::util::time::Every;
use kvorum_ring::NodeId;
use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinSet};

/// Hands hints to their owners (Dynamo §4.6). Every delivery interval it
/// takes a batch of hints: a hint for a node that is no longer a member, or
/// past its age bound, is dropped and counted; a hint whose owner is up is
/// sent to it as a replica write and deleted once the owner acknowledged it.
pub async fn deliver_hints(
    hints: Hints,
    transport: Arc<dyn Transport>,
    membership: Arc<Membership>,
    liveness: Arc<Liveness>,
    shutdown: watch::Receiver<bool>,
) {
    let every = hints.config().delivery_interval;
    let mut ticks = Every::new(every, shutdown.clone());
    while ticks.next().await {
        deliver_round(&hints, &transport, &membership, &liveness).await;
    }
}

/// One round of hint delivery: a batch of hints per member; hints whose
/// owner is up are sent to it and deleted once it acknowledged them.
/// Returns how many were delivered.
pub async fn deliver_round(
    hints: &Hints,
    transport: &Arc<dyn Transport>,
    membership: &Membership,
    liveness: &Liveness,
) -> u64 {
    /// Hints handed over at once.
    const PARALLEL: usize = 32;
    let every = hints.config().delivery_interval;
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let members: std::collections::HashSet<NodeId> =
        membership.members().into_iter().map(|m| m.id).collect();
    // One batch per member (so an owner that is down with many hints
    // does not hold back the others), plus the head of the whole store
    // (where hints for nodes that are no longer members are found).
    let mut batch = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let owners = std::iter::once(None).chain(members.iter().map(Some));
    for owner in owners {
        match hints.batch(owner) {
            Ok(b) => batch.extend(
                b.into_iter()
                    .filter(|h| seen.insert(h.store_key().to_vec())),
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read hints"),
        }
    }
    let mut sends = JoinSet::new();
    // Drops are logged once a round, per owner (not once a hint).
    let mut dropped: std::collections::BTreeMap<NodeId, u64> = Default::default();
    for hint in batch {
        if !members.contains(&hint.owner) || hints.expired(&hint) {
            if let Ok(true) = hints.remove(&hint, false).await {
                *dropped.entry(hint.owner.clone()).or_default() += 1;
            }
            continue;
        }
        if !liveness.is_up(&hint.owner) {
            continue;
        }
        while sends.len() >= PARALLEL {
            sends.join_next().await;
        }
        let (hints, transport) = (hints.clone(), transport.clone());
        let delivered = delivered.clone();
        sends.spawn(async move {
            let req = ReplicaRequest::Repair {
                key: hint.key.clone(),
                state: hint.state.clone(),
            };
            let wait = every.max(Duration::from_secs(2));
            match ask(&*transport, &hint.owner, req, wait).await {
                Ok(ReplicaResponse::Stored) => {
                    delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Err(e) = hints.remove(&hint, true).await {
                        tracing::warn!(error = %e, "cannot delete a delivered hint");
                    }
                }
                Ok(other) => tracing::debug!(owner = %hint.owner, ?other, "hint not accepted"),
                Err(e) => {
                    tracing::debug!(owner = %hint.owner, error = %e, "hint not delivered")
                }
            }
        });
    }
    for (owner, n) in dropped {
        tracing::info!(%owner, hints = n, "hints dropped (owner removed or hints too old); anti-entropy repairs their keys");
    }
    while sends.join_next().await.is_some() {}
    delivered.load(std::sync::atomic::Ordering::Relaxed)
}
