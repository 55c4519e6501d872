//! Gossip: every interval a node exchanges its member list and bucket
//! definitions with a few others, so news spreads epidemically.

use super::buckets::Buckets;
use super::member::MemberInfo;
use super::membership::Membership;
use super::meta::MemberStore;
use crate::access::contexts::ContextKeys;
use crate::access::list::{Access, Entries};
use crate::rpc::call::{ask_addr, CallError};
use crate::rpc::peer::{ClusterRequest, ClusterResponse};
use crate::rpc::transport::Transport;
use crate::util::rng::NodeRng;
use crate::util::time::Every;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::sync::watch;

/// What gossip spreads besides the member list (cheap to clone).
#[derive(Clone)]
pub struct Spread {
    /// Bucket definitions.
    pub buckets: Buckets,
    /// The secrets that seal causal contexts.
    pub contexts: ContextKeys,
    /// The access list.
    pub access: Access,
}

/// Members a node gossips with each round.
pub const GOSSIP_FANOUT: usize = 3;

/// Every interval, exchanges member lists with [`GOSSIP_FANOUT`] random
/// known members (with the seeds while it knows no other member), so news
/// spreads epidemically: in O(log n) rounds to every member; and now and
/// then with a seed that is no known member's address, so groups that
/// formed apart merge.
///
/// Bucket definitions and context secrets travel along (see
/// [`crate::cluster::buckets`], [`crate::access::contexts`]).
pub async fn gossip(
    transport: Arc<dyn Transport>,
    membership: Arc<Membership>,
    spread: Spread,
    member_store: MemberStore,
    every: Duration,
    rng: NodeRng,
    shutdown: watch::Receiver<bool>,
) {
    let mut persisted = membership.version();
    let mut ticks = Every::new(every, shutdown.clone());
    let timeout = every.max(Duration::from_millis(500));
    // The call to a seed outside the known members runs on its own, one at
    // a time, so a seed that is down does not stretch every round.
    let mut stranger: Option<tokio::task::JoinHandle<bool>> = None;
    let mut stranger_wait = 0u32;
    while ticks.next().await {
        membership.count_round();
        if stranger.as_ref().is_some_and(|h| h.is_finished()) {
            let taught = match stranger.take() {
                Some(h) => h.await.unwrap_or(false),
                None => false,
            };
            if !taught {
                // Down, or a known member under another address: try
                // again in a while, not every round.
                stranger_wait = STRANGER_BACKOFF_ROUNDS;
            }
        }
        let me = membership.me();
        let mut others: Vec<MemberInfo> = membership
            .members()
            .into_iter()
            .filter(|m| m.id != me.id)
            .collect();
        // Seeds are for first contact: once other members are known, a few
        // random ones each round, and now and then a seed that is no known
        // member's address. Nodes that found only some of their seeds at
        // first (the others not up yet, or unreachable) form groups apart;
        // the seeds outside a group are how the groups find each other.
        let mut targets: Vec<SocketAddr> = if others.is_empty() {
            membership.seeds()
        } else {
            let mut picked = Vec::new();
            while picked.len() < GOSSIP_FANOUT && !others.is_empty() {
                let pick = rng.below(others.len());
                picked.push(others.swap_remove(pick).addr);
            }
            if stranger.is_none() {
                if stranger_wait > 0 {
                    stranger_wait -= 1;
                } else {
                    let known: Vec<SocketAddr> =
                        membership.all_members().iter().map(|m| m.addr).collect();
                    let strangers: Vec<SocketAddr> = membership
                        .seeds()
                        .into_iter()
                        .filter(|s| !known.contains(s))
                        .collect();
                    if !strangers.is_empty() {
                        let addr = strangers[rng.below(strangers.len())];
                        let (t, m, b) = (transport.clone(), membership.clone(), spread.clone());
                        stranger = Some(tokio::spawn(async move {
                            gossip_with(t.as_ref(), &m, &b, addr, timeout).await
                        }));
                    }
                }
            }
            picked
        };
        targets.sort();
        targets.dedup();
        // At once, so a slow member does not hold up the others.
        let mut calls = tokio::task::JoinSet::new();
        for addr in targets {
            let (t, m, b) = (transport.clone(), membership.clone(), spread.clone());
            calls.spawn(async move { gossip_with(t.as_ref(), &m, &b, addr, timeout).await });
        }
        while let Some(done) = calls.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a gossip call failed to run");
            }
        }
        // Persist what was learned by any path since the last round, so a
        // restarted node finds its peers even when its seeds are down.
        let version = membership.version();
        if version != persisted {
            match member_store.save().await {
                Ok(()) => persisted = version,
                Err(e) => tracing::warn!(error = %e, "cannot persist the member list"),
            }
        }
    }
    if let Some(h) = stranger {
        h.abort();
    }
    // A clean shutdown keeps the latest state (a node that just came up
    // must not restart as joining).
    if membership.version() != persisted {
        if let Err(e) = member_store.save().await {
            tracing::warn!(error = %e, "cannot persist the member list");
        }
    }
}

/// Rounds a node waits before it calls a seed outside its members again,
/// after such a call taught it nothing (or failed).
const STRANGER_BACKOFF_ROUNDS: u32 = 8;

/// One gossip exchange with the node at `addr`; returns whether its answer
/// taught this node anything (members or buckets).
async fn gossip_with(
    transport: &dyn Transport,
    membership: &Membership,
    spread: &Spread,
    addr: SocketAddr,
    timeout: Duration,
) -> bool {
    let req = ClusterRequest::Gossip {
        from: membership.me_id().clone(),
        members: membership.all_members(),
        buckets: spread.buckets.defined(),
        secrets: spread.contexts.secrets(),
        access: spread.access.entries(),
    };
    match ask_addr(transport, addr, req, timeout).await {
        Ok(ClusterResponse::Members {
            members,
            buckets: defined,
            secrets,
            access,
        }) => {
            // Secrets and the access list first: a node that knows a member
            // also knows what the member's contexts are sealed with and
            // what clients may do.
            let secrets = merge_secrets(&spread.contexts, secrets).await;
            let secrets = merge_access(&spread.access, access).await || secrets;
            let news = membership.merge(members);
            merge_buckets(&spread.buckets, membership, defined).await || news || secrets
        }
        Ok(other) => {
            let e = CallError::Unexpected(format!("{other:?}"));
            tracing::debug!(%addr, error = %e, "gossip failed");
            false
        }
        Err(e) => {
            tracing::debug!(%addr, error = %e, "gossip failed");
            false
        }
    }
}

/// Serves a peer's gossip: merges what it knows, answers what this node
/// knows.
pub async fn serve(
    membership: &Membership,
    spread: &Spread,
    members: Vec<MemberInfo>,
    defined: Vec<(String, kvorum_client::BucketProps)>,
    secrets: Vec<crate::access::contexts::Secret>,
    access: Entries,
) -> ClusterResponse {
    merge_secrets(&spread.contexts, secrets).await;
    merge_access(&spread.access, access).await;
    membership.merge(members);
    merge_buckets(&spread.buckets, membership, defined).await;
    ClusterResponse::Members {
        members: membership.all_members(),
        buckets: spread.buckets.defined(),
        secrets: spread.contexts.secrets(),
        access: spread.access.entries(),
    }
}

/// Stores the access-list entries learned by gossip; returns whether any
/// was new.
async fn merge_access(access: &Access, entries: Entries) -> bool {
    match access.merge(entries).await {
        Ok(new) => new,
        Err(e) => {
            tracing::warn!(error = %e, "cannot store the access list learned by gossip");
            false
        }
    }
}

/// Stores the context secrets learned by gossip; returns whether any was
/// new.
async fn merge_secrets(
    contexts: &ContextKeys,
    secrets: Vec<crate::access::contexts::Secret>,
) -> bool {
    match contexts.merge(secrets).await {
        Ok(new) => new,
        Err(e) => {
            tracing::warn!(error = %e, "cannot store the context secrets learned by gossip");
            false
        }
    }
}

/// Stores bucket definitions learned by gossip; a new one may carry its own
/// N, so the anti-entropy trees are rebuilt. Returns whether any was new.
pub async fn merge_buckets(
    buckets: &Buckets,
    membership: &Membership,
    defined: Vec<(String, kvorum_client::BucketProps)>,
) -> bool {
    match buckets.merge(defined).await {
        Ok(true) => {
            membership.touch();
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot store the buckets learned by gossip");
            false
        }
    }
}
