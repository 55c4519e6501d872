//! Quorum bookkeeping (pure): who was asked, who answered how, and whether
//! R or W is met, failed, or still pending.

use crate::rpc::call::CallError;
use crate::rpc::transport::TransportError;
use kvorum_client::proto::{ErrorReply, OpKind, QuorumFailure, ReplicaOutcome};
use kvorum_ring::NodeId;

/// Where a quorum stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumStatus {
    /// Enough replicas succeeded.
    Met,
    /// Not yet decided.
    Pending,
    /// Too many replicas failed for the quorum ever to be met.
    Failed,
}

/// Bookkeeping of one quorum: who was asked, who answered how. Pure.
///
/// A quorum is one or more groups of replicas, each with its own count
/// (during a topology change a write needs W of the key's current replicas
/// *and* W of its future ones). A fallback asked in place of a replica
/// counts for that replica's groups.
#[derive(Debug, Clone)]
pub struct QuorumTracker {
    /// (replicas, how many of them must succeed)
    groups: Vec<(Vec<NodeId>, usize)>,
    /// (node asked, the replica it stands in for, outcome so far)
    replicas: Vec<(NodeId, Option<NodeId>, Option<ReplicaOutcome>)>,
}

impl QuorumTracker {
    /// A quorum of `needed` among `replicas`.
    pub fn new(needed: usize, replicas: &[NodeId]) -> Self {
        Self::joint(vec![(replicas.to_vec(), needed)])
    }

    /// A quorum of every group: `needed` successes among its replicas.
    /// Every replica of every group is asked (once).
    pub fn joint(groups: Vec<(Vec<NodeId>, usize)>) -> Self {
        let mut replicas: Vec<(NodeId, Option<NodeId>, Option<ReplicaOutcome>)> = Vec::new();
        for (g, _) in &groups {
            for n in g {
                if !replicas.iter().any(|(r, _, _)| r == n) {
                    replicas.push((n.clone(), None, None));
                }
            }
        }
        Self { groups, replicas }
    }

    /// A quorum of `needed` among `replicas`, none of them asked yet:
    /// [`QuorumTracker::ask`] adds them as they are asked. Until then a
    /// replica neither counts as pending nor as failed.
    pub fn unasked(needed: usize, replicas: &[NodeId]) -> Self {
        Self {
            groups: vec![(replicas.to_vec(), needed)],
            replicas: Vec::new(),
        }
    }

    /// Adds a replica of the quorum as asked (see [`QuorumTracker::unasked`]).
    pub fn ask(&mut self, node: &NodeId) {
        if !self.asked(node) {
            self.replicas.push((node.clone(), None, None));
        }
    }

    /// How many replicas were asked.
    pub fn asked_count(&self) -> usize {
        self.replicas.len()
    }

    /// Adds a node to ask in place of replica `owner` (a fallback of a
    /// sloppy quorum).
    pub fn add(&mut self, node: &NodeId, owner: &NodeId) {
        if !self.asked(node) {
            self.replicas
                .push((node.clone(), Some(owner.clone()), None));
        }
    }

    /// Records every replica that has not answered as timed out.
    pub fn expire(&mut self) {
        for (_, _, o) in &mut self.replicas {
            if o.is_none() {
                *o = Some(ReplicaOutcome::Timeout);
            }
        }
    }

    /// What each replica asked did so far (`None`: no answer yet).
    pub fn outcomes(&self) -> impl Iterator<Item = Option<&ReplicaOutcome>> {
        self.replicas.iter().map(|(_, _, o)| o.as_ref())
    }

    /// The replicas asked that have not answered yet.
    pub fn pending(&self) -> impl Iterator<Item = &NodeId> {
        self.replicas
            .iter()
            .filter(|(_, _, o)| o.is_none())
            .map(|(n, _, _)| n)
    }

    /// Whether `node` is already among the replicas asked.
    pub fn asked(&self, node: &NodeId) -> bool {
        self.replicas.iter().any(|(n, _, _)| n == node)
    }

    /// Records what `node` did; a second outcome for a node is ignored.
    pub fn record(&mut self, node: &NodeId, outcome: ReplicaOutcome) {
        if let Some((_, _, slot @ None)) = self.replicas.iter_mut().find(|(n, _, _)| n == node) {
            *slot = Some(outcome);
        }
    }

    /// Successful replicas so far.
    pub fn succeeded(&self) -> usize {
        self.replicas
            .iter()
            .filter(|(_, _, o)| o == &Some(ReplicaOutcome::Ok))
            .count()
    }

    /// (successes, still pending) counting for group `g`.
    pub(crate) fn group_counts(&self, g: &[NodeId]) -> (usize, usize) {
        let (mut ok, mut pending) = (0, 0);
        for (n, owner, o) in &self.replicas {
            if !g.contains(owner.as_ref().unwrap_or(n)) {
                continue;
            }
            match o {
                Some(ReplicaOutcome::Ok) => ok += 1,
                None => pending += 1,
                Some(_) => {}
            }
        }
        (ok, pending)
    }

    /// Met, pending or failed.
    pub fn status(&self) -> QuorumStatus {
        let mut status = QuorumStatus::Met;
        for (g, needed) in &self.groups {
            let (ok, pending) = self.group_counts(g);
            if ok >= *needed {
                continue;
            }
            if ok + pending < *needed {
                return QuorumStatus::Failed;
            }
            status = QuorumStatus::Pending;
        }
        status
    }

    /// The failure report (of the first group not met); replicas that never
    /// answered count as timed out.
    pub fn failure(&self, op: OpKind) -> QuorumFailure {
        let (needed, succeeded) = self
            .groups
            .iter()
            .map(|(g, needed)| (*needed, self.group_counts(g).0))
            .find(|(needed, ok)| ok < needed)
            .unwrap_or_else(|| (self.groups.first().map_or(0, |g| g.1), self.succeeded()));
        QuorumFailure {
            op,
            needed: u8::try_from(needed).unwrap_or(u8::MAX),
            succeeded: u8::try_from(succeeded).unwrap_or(u8::MAX),
            replicas: self
                .replicas
                .iter()
                .map(|(n, _, o)| (n.to_string(), o.clone().unwrap_or(ReplicaOutcome::Timeout)))
                .collect(),
        }
    }
}

/// Turns a failed call into what the client is told about that replica.
pub fn outcome_of(e: &CallError) -> ReplicaOutcome {
    match e {
        CallError::Transport(TransportError::Timeout) => ReplicaOutcome::Timeout,
        CallError::Transport(TransportError::Unreachable(why) | TransportError::Refused(why)) => {
            ReplicaOutcome::Unreachable(why.clone())
        }
        CallError::Transport(TransportError::Lost(why)) => {
            ReplicaOutcome::Failed(format!("connection lost: {why}"))
        }
        CallError::Transport(TransportError::Protocol(why)) => ReplicaOutcome::Failed(why.clone()),
        CallError::Peer(e) => ReplicaOutcome::Failed(e.to_string()),
        CallError::Unexpected(what) => ReplicaOutcome::Failed(format!("unexpected answer {what}")),
    }
}

/// R or W: the request's, else the bucket's default; within 1..=N.
pub fn quorum(asked: Option<u8>, default: u8, n: u8) -> Result<usize, ErrorReply> {
    match asked.unwrap_or(default) {
        q if (1..=n).contains(&q) => Ok(q.into()),
        q => Err(ErrorReply::InvalidQuorum { requested: q, n }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<NodeId> {
        v.iter().map(|s| NodeId::new(*s)).collect()
    }

    #[test]
    fn quorum_is_met_after_enough_successes() {
        let mut t = QuorumTracker::new(2, &ids(&["a", "b", "c"]));
        assert_eq!(t.status(), QuorumStatus::Pending);
        t.record(&NodeId::new("a"), ReplicaOutcome::Ok);
        assert_eq!(t.status(), QuorumStatus::Pending);
        t.record(&NodeId::new("c"), ReplicaOutcome::Ok);
        assert_eq!(t.status(), QuorumStatus::Met);
    }

    #[test]
    fn quorum_fails_as_soon_as_it_cannot_be_met() {
        let mut t = QuorumTracker::new(2, &ids(&["a", "b", "c"]));
        t.record(&NodeId::new("a"), ReplicaOutcome::Ok);
        t.record(
            &NodeId::new("b"),
            ReplicaOutcome::Unreachable("down".into()),
        );
        assert_eq!(t.status(), QuorumStatus::Pending);
        t.record(&NodeId::new("c"), ReplicaOutcome::Timeout);
        assert_eq!(t.status(), QuorumStatus::Failed);
        let f = t.failure(OpKind::Write);
        assert_eq!((f.needed, f.succeeded), (2, 1));
        assert_eq!(
            f.replicas[1],
            ("b".to_string(), ReplicaOutcome::Unreachable("down".into()))
        );
        assert!(f.to_string().contains("1 of 2"), "{f}");
    }

    #[test]
    fn duplicate_and_unknown_answers_are_ignored() {
        let mut t = QuorumTracker::new(2, &ids(&["a", "b"]));
        t.record(&NodeId::new("a"), ReplicaOutcome::Ok);
        t.record(&NodeId::new("a"), ReplicaOutcome::Ok);
        t.record(&NodeId::new("zz"), ReplicaOutcome::Ok);
        assert_eq!(t.status(), QuorumStatus::Pending);
        // Pending replicas are reported as timed out.
        assert_eq!(
            t.failure(OpKind::Read).replicas[1].1,
            ReplicaOutcome::Timeout
        );
    }

    #[test]
    fn quorum_larger_than_the_replica_list_fails_at_once() {
        let t = QuorumTracker::new(3, &ids(&["a", "b"]));
        assert_eq!(t.status(), QuorumStatus::Failed);
    }
}
