//! Token-aware routing: the client's copy of the cluster's placement (the
//! read ring as a routing table, [`Placement`]), and the order in which a
//! request tries the nodes: the replicas of its partition first, a
//! rotating one of them first, then every other node.
//!
//! The client asks a node for the placement at its first request about a
//! partition, and again every refresh interval ([`PLACEMENT_REFRESH`]) and
//! after a replica it routed to failed; a node answers `Unchanged` when the
//! client's copy is current. Until the first answer, and whenever the copy
//! is stale, requests go round-robin and a node that is not a replica
//! forwards writes, so a stale copy costs a hop, never a wrong answer.

use crate::proto::{Placement, Request, Response};
use kvorum_ring::item;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::time::Instant;

/// How often a client asks for the placement again (a node answers
/// `Unchanged` when it has not changed), unless set with
/// [`ClientBuilder::placement_refresh`](crate::ClientBuilder::placement_refresh).
///
/// ```
/// assert_eq!(kvorum_client::PLACEMENT_REFRESH.as_secs(), 5);
/// ```
pub const PLACEMENT_REFRESH: Duration = Duration::from_secs(5);

/// The placement a client routes by, and when it was asked for.
#[derive(Debug)]
pub(crate) struct Router {
    enabled: bool,
    refresh: Duration,
    /// The client's seeds (always known, placement or not).
    seeds: Vec<SocketAddr>,
    state: Mutex<State>,
    /// Which replica of a partition goes first (spreads a partition's
    /// requests over its replicas).
    turn: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    table: Option<Arc<Placement>>,
    /// The seeds and the placement's members, each once: every node a
    /// request may fall back to (computed when a placement is learned, not
    /// per request).
    known: Option<Arc<[SocketAddr]>>,
    /// When the placement was last asked for; `None`: ask at the next call.
    asked: Option<Instant>,
}

impl Router {
    /// A router; `enabled: false` never asks and never routes (requests go
    /// round-robin).
    pub(crate) fn new(enabled: bool, refresh: Duration, seeds: Vec<SocketAddr>) -> Self {
        Self {
            enabled,
            refresh,
            seeds,
            state: Mutex::new(State::default()),
            turn: AtomicUsize::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock left a whole `State`: use it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The replicas of `req`'s partition, a rotating one first; empty when
    /// the request is about no partition or no placement is known.
    pub(crate) fn replicas(&self, req: &Request) -> Vec<SocketAddr> {
        if !self.enabled {
            return Vec::new();
        }
        let Some((bucket, partition)) = req.partition() else {
            return Vec::new();
        };
        let Some(table) = self.state().table.clone() else {
            return Vec::new();
        };
        let token = item::token(&item::partition_prefix(bucket, partition));
        let mut owners: Vec<SocketAddr> = table.owners_at(token).map(|n| n.addr).collect();
        if !owners.is_empty() {
            let first = self.turn.fetch_add(1, Ordering::Relaxed) % owners.len();
            owners.rotate_left(first);
        }
        owners
    }

    /// Every node a request may go to: the seeds, then the placement's
    /// other members (the seeds alone before the first answer).
    pub(crate) fn known(&self) -> Arc<[SocketAddr]> {
        let known = self.state().known.clone();
        known.unwrap_or_else(|| Arc::from(self.seeds.as_slice()))
    }

    /// If the placement should be asked for now (routing is on, `req` is
    /// about a partition, and the last ask is a refresh interval old),
    /// marks it asked and returns the request to send.
    pub(crate) fn due(&self, req: &Request) -> Option<Request> {
        if !self.enabled || req.partition().is_none() {
            return None;
        }
        let mut state = self.state();
        let now = Instant::now();
        if state.asked.is_some_and(|at| now < at + self.refresh) {
            return None;
        }
        state.asked = Some(now);
        Some(Request::Placement {
            known: state.table.as_ref().map(|t| t.view),
        })
    }

    /// Takes a node's answer to a placement request. Anything but a valid
    /// placement keeps the copy held (an older node, which does not know
    /// the request, leaves the client round-robin).
    pub(crate) fn learned(&self, answer: Response) {
        if let Response::Placement(p) = answer {
            if p.check().is_ok() {
                let mut known = self.seeds.clone();
                for n in &p.nodes {
                    if !known.contains(&n.addr) {
                        known.push(n.addr);
                    }
                }
                let mut state = self.state();
                state.table = Some(Arc::from(p));
                state.known = Some(Arc::from(known));
            }
        }
    }

    /// A replica the client routed to failed: ask for the placement again
    /// at the next request.
    pub(crate) fn stale(&self) {
        self.state().asked = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ItemKey, ItemOp, PlacedNode, PlacedRange};

    fn placement() -> Placement {
        let node = |id: &str, port| PlacedNode {
            id: id.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        Placement {
            view: 9,
            n: 2,
            nodes: vec![node("a", 1), node("b", 2), node("c", 3)],
            ranges: vec![
                PlacedRange {
                    end: u64::MAX / 3,
                    owners: vec![0, 1],
                },
                PlacedRange {
                    end: u64::MAX / 3 * 2,
                    owners: vec![1, 2],
                },
                PlacedRange {
                    end: u64::MAX,
                    owners: vec![2, 0],
                },
            ],
        }
    }

    fn get(bucket: &str, partition: &[u8]) -> Request {
        Request::Item {
            key: ItemKey::new(bucket, partition, b"s"),
            op: ItemOp::Get {
                options: Default::default(),
                at_least: None,
            },
        }
    }

    #[test]
    fn a_request_goes_to_the_replicas_of_its_partition_in_turn() {
        let router = Router::new(true, PLACEMENT_REFRESH, Vec::new());
        let req = get("b", b"p");
        assert!(router.replicas(&req).is_empty(), "nothing known yet");
        router.learned(Response::Placement(Box::new(placement())));
        let p = placement();
        let token = item::token(&item::partition_prefix("b", b"p"));
        let mut want: Vec<SocketAddr> = p.owners_at(token).map(|n| n.addr).collect();
        want.sort();
        let mut firsts = Vec::new();
        for _ in 0..4 {
            let mut got = router.replicas(&req);
            firsts.push(got[0]);
            got.sort();
            assert_eq!(got, want);
        }
        firsts.sort();
        firsts.dedup();
        assert_eq!(firsts, want, "each replica takes its turn first");
        assert!(router.replicas(&Request::Status).is_empty());
    }

    #[test]
    fn a_bad_placement_is_not_used_and_routing_off_never_asks() {
        let seed = SocketAddr::from(([127, 0, 0, 1], 9));
        let router = Router::new(true, PLACEMENT_REFRESH, vec![seed]);
        let mut bad = placement();
        bad.ranges[1].owners = vec![7];
        router.learned(Response::Placement(Box::new(bad)));
        assert!(router.replicas(&get("b", b"p")).is_empty());
        assert_eq!(&router.known()[..], [seed], "the seeds alone");
        let off = Router::new(false, PLACEMENT_REFRESH, Vec::new());
        assert!(off.due(&get("b", b"p")).is_none());
        off.learned(Response::Placement(Box::new(placement())));
        assert!(off.replicas(&get("b", b"p")).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_placement_is_asked_for_again_after_the_refresh_or_a_failure() {
        let seed = SocketAddr::from(([127, 0, 0, 1], 1));
        let router = Router::new(true, Duration::from_secs(5), vec![seed]);
        let req = get("b", b"p");
        assert_eq!(router.due(&req), Some(Request::Placement { known: None }));
        assert_eq!(router.due(&req), None, "asked already");
        assert_eq!(router.due(&Request::Status), None, "no partition");
        router.learned(Response::Placement(Box::new(placement())));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            router.due(&req),
            Some(Request::Placement { known: Some(9) })
        );
        router.stale();
        assert!(router.due(&req).is_some());
        // An `Unchanged` answer keeps the copy.
        router.learned(Response::Unchanged);
        // The seed (also a member) once, then the other members.
        assert_eq!(router.known().len(), 3);
    }
}
