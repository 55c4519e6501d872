//! The write path: the coordinator (a replica of the key) applies the
//! update locally, sends the new state to the key's other replicas (and to
//! fallbacks holding hints for those that are down), and answers once W of
//! them (of every replica group during a ring change) stored it. A node
//! that is not a replica forwards the write to one that is.

use super::coordinator::{Coordinator, WriteQuorum, FORWARD_MARGIN};
use super::quorum::{outcome_of, QuorumStatus, QuorumTracker};
use crate::cluster::member::MemberState;
use crate::data::value::{State, Update, ValueError};
use crate::metrics;
use crate::replication::replica::ReplicaError;
use crate::rpc::call::ask;
use crate::rpc::peer::{ReplicaRequest, ReplicaResponse};
use crate::rpc::transport::Transport;
use crate::storage::StorageError;
use kvorum_client::proto::{ErrorReply, ItemOp, OpKind, ReplicaOutcome, Request, Response};
use kvorum_client::BucketProps;
use kvorum_ring::NodeId;
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;

impl Coordinator {
    pub(super) async fn write(
        &self,
        req: Request,
        skey: Vec<u8>,
        props: BucketProps,
        update: Update,
        q: WriteQuorum,
        forwarded: bool,
    ) -> Result<Response, ErrorReply> {
        let WriteQuorum { w, timeout, strict } = q;
        let ttl = ttl_of(&req, &props);
        if ttl == Some(0) {
            return Err(ErrorReply::BadRequest(
                "a time to live must be at least 1 ms".into(),
            ));
        }
        // One reading of the view for the whole request.
        let view = self.membership.view();
        let n = usize::from(props.n);
        let pref = view.read_ring.item_preference_list(&skey, n);
        if pref.is_empty() {
            return Err(ErrorReply::Unavailable("the ring is empty".into()));
        }
        if !pref.contains(&self.me) {
            if forwarded {
                return Err(ErrorReply::Unavailable(format!(
                    "{} is not a replica of the key (ring views differ); retry",
                    self.me
                )));
            }
            self.metrics
                .counter(metrics::WRITES_FORWARDED, &[])
                .increment(1);
            return self.forward(req, &pref, timeout, true).await;
        }
        let groups = write_groups(&view, &pref, &skey, n, w);
        let mut targets: Vec<NodeId> = Vec::new();
        for (g, _) in &groups {
            for node in g {
                if !targets.contains(node) {
                    targets.push(node.clone());
                }
            }
        }
        let mut tracker = QuorumTracker::joint(groups);
        // Below the free-space watermark nothing new is taken (before a dot
        // is issued): the write fails whole, reads go on. A delete is taken
        // (down to the reserve): it is how space is freed.
        let delete = matches!(
            &update,
            Update::Lww(None)
                | Update::Register {
                    value: crate::data::register::RegValue::Tombstone { .. },
                    ..
                }
        );
        if let Some(full) = self
            .replica
            .store()
            .refuses_client_writes()
            .filter(|_| !delete)
        {
            return Err(self.disk_full(full));
        }
        // A storage engine holding writes back refuses new ones at once,
        // before a dot is issued: nothing is written, and the client may
        // try later or through another node instead of timing out.
        if let Some(busy) = self.replica.store().overloaded() {
            self.metrics
                .counter(metrics::OVERLOADED_REFUSALS, &[("side", "coordinator")])
                .increment(1);
            let detail = match busy {
                StorageError::Overloaded(d) => d,
                other => other.to_string(),
            };
            return Err(ErrorReply::overloaded(format!(
                "on {}, {detail}: nothing was written; retry later or through another node",
                self.me
            )));
        }
        // Expiry is stamped here, by the clock LWW stamps use, as an
        // absolute time every replica then holds.
        let now = self.env.clock.lww_ms();
        let expires_ms = ttl.map(|t| now.saturating_add(t));
        let local = tokio::time::timeout(
            timeout,
            self.replica
                .coordinate(skey.clone(), props.bucket_type, update, now, expires_ms),
        );
        let ((state, own, version), durable) = match local.await {
            Err(_) => {
                return Err(ErrorReply::Internal(
                    "local write timed out (storage stalled)".into(),
                ))
            }
            Ok(Ok(x)) => x,
            Ok(Err(ReplicaError::Value(ValueError::TooLarge { what, size, max }))) => {
                return Err(ErrorReply::TooLarge { what, size, max });
            }
            Ok(Err(ReplicaError::Value(ValueError::Context(e)))) => {
                return Err(ErrorReply::InvalidContext(e.to_string()))
            }
            Ok(Err(ReplicaError::Value(e @ ValueError::CounterOverflow { .. }))) => {
                return Err(ErrorReply::BadRequest(e.to_string()))
            }
            Ok(Err(ReplicaError::Storage(e @ StorageError::DiskFull(_)))) => {
                return Err(self.disk_full(e))
            }
            Ok(Err(e)) => return Err(ErrorReply::Internal(format!("local write failed: {e}"))),
        };
        // The client gets its write's context sealed for this key.
        let own = self
            .contexts
            .seal(&kvorum_ring::item::seal_subject(&skey), own);
        // Sloppy quorum (Dynamo §4.6): a replica that is down, or that fails
        // fast, is replaced by the next healthy node clockwise past the
        // preference list, which keeps the write as a hint for it and counts
        // toward W. Strict requests use the preference list only.
        let mut fallbacks: std::collections::VecDeque<NodeId> = if strict {
            Default::default()
        } else {
            // Not a leaving node: it is about to go, with its hints.
            let leaving = |id: &NodeId| {
                view.members
                    .get(id)
                    .is_some_and(|m| m.state == MemberState::Leaving)
            };
            view.read_ring
                .walk_at(kvorum_ring::item::token(&skey))
                .filter(|n| !targets.contains(n) && !leaving(n))
                .cloned()
                .collect()
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fan = Fanout {
            key: skey,
            state,
            timeout,
            transport: self.transport.clone(),
            tx,
        };
        for node in targets.iter().filter(|n| **n != self.me) {
            // A suspected replica is replaced by a fallback; with no
            // fallback left it is still tried, since a suspicion can be
            // false (a starved heartbeat) and trying costs one timeout.
            if !strict
                && !self.liveness.is_up(node)
                && self.hand_to_fallback(&fan, &mut tracker, &mut fallbacks, node)
            {
                tracker.record(
                    node,
                    ReplicaOutcome::Unreachable("down (failure detector)".into()),
                );
            } else {
                fan.direct(node.clone());
            }
        }
        let deadline = self.env.clock.now() + timeout;
        // The answer waits for this replica's own outcome too (its sync
        // overlaps the others'): a write is acknowledged only once the
        // coordinating node holds it durably, so a read through this node
        // sees it whatever R and W (docs/consistency.md), and an error names
        // every replica that holds the write.
        // This replica's copy counts once it is durable; the other replicas
        // got the state meanwhile (their syncs overlap with this one). It
        // has no fallback: a store that failed a commit takes no writes
        // (storage::run_batch).
        let mut durable = std::pin::pin!(durable.wait());
        let mut local: Option<ReplicaOutcome> = None;
        while tracker.status() == QuorumStatus::Pending || local.is_none() {
            let answer = tokio::select! {
                done = &mut durable, if local.is_none() => {
                    let outcome = match done {
                        Ok(()) => ReplicaOutcome::Ok,
                        // Not a DiskFull answer even for a full disk: the
                        // state went out, so the outcome is unknown.
                        Err(e) => ReplicaOutcome::Failed(format!("local write failed: {e}")),
                    };
                    tracker.record(&self.me, outcome.clone());
                    local = Some(outcome);
                    continue;
                }
                answer = tokio::time::timeout_at(deadline, rx.recv()) => answer,
            };
            match answer {
                Ok(Some((node, owner, outcome))) => {
                    let failed_fast = matches!(
                        outcome,
                        ReplicaOutcome::Unreachable(_) | ReplicaOutcome::Failed(_)
                    );
                    tracker.record(&node, outcome);
                    if failed_fast && !strict {
                        let owner = owner.unwrap_or(node);
                        self.hand_to_fallback(&fan, &mut tracker, &mut fallbacks, &owner);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    // The deadline: whoever has not answered timed out.
                    tracker.expire();
                    break;
                }
            }
        }
        self.count_replies("write", &tracker);
        // The coordinator's own write failed or did not finish in time: the
        // others may hold it; the outcome is unknown, as after a timeout.
        match local {
            Some(ReplicaOutcome::Failed(e)) => return Err(ErrorReply::Internal(e)),
            None => {
                return Err(ErrorReply::Internal(
                    "local write timed out (storage stalled)".into(),
                ))
            }
            Some(_) => {}
        }
        if tracker.status() != QuorumStatus::Met {
            return Err(ErrorReply::Quorum(tracker.failure(OpKind::Write)));
        }
        Ok(Response::Written {
            context: own,
            version,
        })
    }

    /// A refusal for want of space on this node, as the client gets it.
    fn disk_full(&self, e: StorageError) -> ErrorReply {
        self.metrics
            .counter(metrics::DISK_FULL_REFUSALS, &[])
            .increment(1);
        let detail = match e {
            StorageError::DiskFull(d) => d,
            other => other.to_string(),
        };
        ErrorReply::DiskFull {
            node: self.me.to_string(),
            detail,
        }
    }

    /// Sends the write for `owner` to the next fallback, as a hint: the
    /// first one the failure detector sees up, or, if every one left is
    /// suspected, the first of those (a suspicion may be false, and failing
    /// the write without trying is worse than one more timeout). Returns
    /// whether a fallback was found.
    fn hand_to_fallback(
        &self,
        fan: &Fanout,
        tracker: &mut QuorumTracker,
        fallbacks: &mut std::collections::VecDeque<NodeId>,
        owner: &NodeId,
    ) -> bool {
        fallbacks.retain(|f| *f != self.me && !tracker.asked(f));
        let pick = fallbacks
            .iter()
            .position(|f| self.liveness.is_up(f))
            .or((!fallbacks.is_empty()).then_some(0));
        match pick.and_then(|i| fallbacks.remove(i)) {
            Some(f) => {
                tracker.add(&f, owner);
                fan.hinted(f, owner.clone());
                true
            }
            None => false,
        }
    }

    /// Hands a write to a replica of its key, trying them in preference
    /// order. A replica's refusal as overloaded (nothing written) goes to
    /// the next one if `fail_over`; a conditional write passes false, since
    /// its condition is checked by its first replica alone.
    pub(super) async fn forward(
        &self,
        req: Request,
        pref: &[NodeId],
        timeout: Duration,
        fail_over: bool,
    ) -> Result<Response, ErrorReply> {
        let mut tracker = QuorumTracker::new(1, pref);
        // The whole forward ends by the request's timeout: the replica runs
        // its own quorum in what is left less a margin, so that its typed
        // answer (success or quorum error) comes back in time.
        let deadline = self.env.clock.now() + timeout;
        let mut refused = None;
        // Whether some forward went out and its outcome is unknown: then
        // nothing may be reported as "not written".
        let mut unknown = false;
        let mut order: Vec<&NodeId> = pref.iter().collect();
        order.sort_by_key(|n| !self.liveness.is_up(n)); // stable: up nodes first
        for node in order {
            let left = deadline.saturating_duration_since(self.env.clock.now());
            let inner = left.saturating_sub(FORWARD_MARGIN);
            if inner.is_zero() {
                break;
            }
            let req = with_timeout(req.clone(), inner);
            match ask(&*self.transport, node, req, left).await {
                // Refused as overloaded before anything was written there:
                // the next replica may take it.
                Ok(Response::Error(e)) if e.is_overloaded() && fail_over => {
                    tracker.record(node, ReplicaOutcome::Failed(e.to_string()));
                    refused = Some(e);
                }
                Ok(resp) => return Ok(resp),
                // Only a forward that was never sent may go to another
                // replica: one that was sent may have been applied, and a
                // second copy would be a spurious sibling.
                Err(e) if e.not_sent() => tracker.record(node, outcome_of(&e)),
                Err(e) => {
                    tracker.record(node, outcome_of(&e));
                    unknown = true;
                    break;
                }
            }
        }
        self.count_replies("write", &tracker);
        // Every replica tried refused as overloaded or was never reached:
        // nothing was written, which the refusal says (and a client may
        // send it again). Not after a forward whose outcome is unknown.
        if let Some(e) = refused.filter(|_| !unknown) {
            return Err(e);
        }
        Err(ErrorReply::Quorum(tracker.failure(OpKind::Write)))
    }
}

/// `req` (a forwarded item write) with its timeout set to `t`.
/// The time to live of a write: the one it asks for, else its bucket's
/// default; none for a delete.
fn ttl_of(req: &Request, props: &BucketProps) -> Option<u64> {
    match req {
        Request::Item {
            op: ItemOp::Put { ttl_ms, .. } | ItemOp::Update { ttl_ms, .. },
            ..
        } => ttl_ms.or(props.default_ttl_ms),
        Request::Put { .. } | Request::Update { .. } => props.default_ttl_ms,
        _ => None,
    }
}

fn with_timeout(mut req: Request, t: Duration) -> Request {
    if let Request::Item { op, .. } = &mut req {
        op.set_timeout_ms(u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1));
    }
    req
}

/// The replica writes of one coordinated write; each answer comes back on
/// `tx` as (node, owner if it was a hint, outcome). Detached tasks: a replica
/// that answers after the quorum still gets the write (each task ends at the
/// deadline either way).
pub(super) struct Fanout {
    key: Vec<u8>,
    state: State,
    timeout: Duration,
    transport: Arc<dyn Transport>,
    tx: mpsc::UnboundedSender<(NodeId, Option<NodeId>, ReplicaOutcome)>,
}

impl Fanout {
    fn direct(&self, node: NodeId) {
        let req = ReplicaRequest::Write {
            key: self.key.clone(),
            state: self.state.clone(),
        };
        self.send(node, None, req);
    }

    fn hinted(&self, fallback: NodeId, owner: NodeId) {
        let req = ReplicaRequest::HintedWrite {
            owner: owner.clone(),
            key: self.key.clone(),
            state: self.state.clone(),
        };
        self.send(fallback, Some(owner), req);
    }

    fn send(&self, node: NodeId, owner: Option<NodeId>, req: ReplicaRequest) {
        let (tx, transport, timeout) = (self.tx.clone(), self.transport.clone(), self.timeout);
        tokio::spawn(async move {
            let outcome = match ask(&*transport, &node, req, timeout).await {
                Ok(ReplicaResponse::Stored) => ReplicaOutcome::Ok,
                Ok(other) => ReplicaOutcome::Failed(format!("unexpected answer {other:?}")),
                Err(e) => outcome_of(&e),
            };
            let _ = tx.send((node, owner, outcome));
        });
    }
}

/// The replica groups a write needs W acknowledgements in: a joint quorum
/// while the replicas of the key change. W among its current replicas
/// (`pref`), W among its future ones (during a topology change), W among
/// its replicas in every read ring between the two (gossip may bring a
/// node the marks of one change one member at a time,
/// `View::between_rings`, and those of the view before the last change
/// until it settles), and W among its replicas before the last change
/// (until every member not removed, and every member the change removed
/// and not down, has seen that change: a coordinator a gossip round
/// behind still reads there). The write
/// reaches every group, so it stays on W replicas whichever view a reader
/// holds.
pub(super) fn write_groups(
    view: &crate::cluster::membership::View,
    pref: &[NodeId],
    skey: &[u8],
    n: usize,
    w: usize,
) -> Vec<(Vec<NodeId>, usize)> {
    let mut groups = vec![(pref.to_vec(), w)];
    let mut add = |list: Vec<NodeId>| {
        if !list.is_empty() && !groups.iter().any(|(g, _)| *g == list) {
            let need = w.min(list.len());
            groups.push((list, need));
        }
    };
    if view.in_transition() {
        add(view.write_ring.item_preference_list(skey, n));
    }
    for ring in view
        .between_rings
        .iter()
        .chain(view.prev_between_rings.iter())
    {
        add(ring.item_preference_list(skey, n));
    }
    let split = crate::util::plant::planted(crate::util::plant::Bug::SplitQuorum);
    if let Some(prev) = view.prev_read_ring.as_ref().filter(|_| !split) {
        add(prev.item_preference_list(skey, n));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::member::{MemberInfo, MemberState};
    use crate::cluster::membership::Membership;
    use kvorum_ring::{Member, Ring};

    fn info(id: &str, state: MemberState) -> MemberInfo {
        MemberInfo::for_test(id, state)
    }

    /// Two joiners and a leaver: whichever of them a reader's view has
    /// seen done, its R = 2 replicas of a key meet two that a W = 2 write
    /// reached (each read ring's replicas are one of the write's groups).
    #[test]
    fn a_write_keeps_w_in_every_read_ring_a_change_can_pass_through() {
        let mut known = vec![
            info("b", MemberState::Up),
            info("c", MemberState::Up),
            info("j1", MemberState::Joining),
            info("j2", MemberState::Joining),
            info("l", MemberState::Leaving),
        ];
        let me = info("a", MemberState::Up);
        known.push(me.clone());
        let m = Membership::new(me, known, 16, false);
        let view = m.view();
        let ring = |done: [bool; 3]| {
            let mut ids = vec!["a", "b", "c"];
            for (i, (id, joiner)) in [("j1", true), ("j2", true), ("l", false)]
                .iter()
                .enumerate()
            {
                if done[i] == *joiner {
                    ids.push(id);
                }
            }
            ids.sort();
            Ring::new(ids.into_iter().map(Member::new), 16)
        };
        let mut rings = Vec::new();
        for bits in 0..8u8 {
            rings.push(ring([bits & 1 != 0, bits & 2 != 0, bits & 4 != 0]));
        }
        for k in 0..300u32 {
            let key = format!("key-{k}").into_bytes();
            let pref = view.read_ring.item_preference_list(&key, 3);
            let groups = write_groups(&view, &pref, &key, 3, 2);
            for r in &rings {
                let replicas = r.item_preference_list(&key, 3);
                assert!(
                    groups.iter().any(|(g, need)| *g == replicas && *need == 2),
                    "key {k}: the replicas {replicas:?} of a read ring are in no group"
                );
            }
        }
    }
}
