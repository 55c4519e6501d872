//! Sending one membership request to every other member at once, as the
//! admin changes that must reach every member do (bucket definitions,
//! access-list changes), and saying which members did not confirm.

use super::membership::Membership;
use crate::rpc::call::{ask, CallError};
use crate::rpc::peer::{ClusterRequest, ClusterResponse};
use crate::rpc::transport::{Transport, TransportError};
use kvorum_client::proto::ErrorReply;
use kvorum_ring::NodeId;
use std::sync::Arc;
use std::time::Duration;

/// What every other member answered to one request.
pub struct Answers {
    /// How many members were asked (this node not counted).
    pub asked: usize,
    /// Each member's answer.
    pub answers: Vec<(NodeId, Result<ClusterResponse, CallError>)>,
}

/// Sends `req` to every member but this one, at once, each within
/// `timeout`.
pub async fn ask_every_other(
    transport: &Arc<dyn Transport>,
    membership: &Membership,
    req: ClusterRequest,
    timeout: Duration,
) -> Answers {
    let me = membership.me_id().clone();
    let others: Vec<NodeId> = membership
        .members()
        .into_iter()
        .map(|m| m.id)
        .filter(|id| *id != me)
        .collect();
    let mut calls = tokio::task::JoinSet::new();
    for node in &others {
        let (transport, node, req) = (transport.clone(), node.clone(), req.clone());
        calls.spawn(async move { (node.clone(), ask(&*transport, &node, req, timeout).await) });
    }
    let mut answers = Vec::new();
    while let Some(joined) = calls.join_next().await {
        if let Ok(answer) = joined {
            answers.push(answer);
        }
    }
    Answers {
        asked: others.len(),
        answers,
    }
}

impl Answers {
    /// `Ok` if every member answered `confirmed`, else the `Unavailable`
    /// error that names the ones that did not (the change is stored here
    /// and spreads by gossip; `what` names it). A member this node sends
    /// nothing to (its certificate is revoked) is not asked to confirm.
    pub fn all_confirmed(
        &self,
        what: &str,
        confirmed: impl Fn(&ClusterResponse) -> bool,
    ) -> Result<(), ErrorReply> {
        let mut missing: Vec<String> = self
            .answers
            .iter()
            .filter_map(|(node, a)| match a {
                Ok(r) if confirmed(r) => None,
                Err(CallError::Transport(TransportError::Refused(_))) => None,
                Ok(other) => Some(format!("{node} ({other:?})")),
                Err(e) => Some(format!("{node} ({e})")),
            })
            .collect();
        // A member whose call task failed to run answered nothing.
        let unanswered = self.asked.saturating_sub(self.answers.len());
        missing.extend((0..unanswered).map(|_| "a member (no answer)".to_string()));
        if missing.is_empty() {
            return Ok(());
        }
        Err(ErrorReply::Unavailable(format!(
            "{what} is stored on {} of {} members; not confirmed by {}. \
             It spreads by gossip; make the change again to confirm",
            1 + self.asked - missing.len().min(self.asked),
            1 + self.asked,
            missing.join(", ")
        )))
    }
}
