//! Read repair (Dynamo §4.7 / §5): after a read, replicas whose state
//! differs from the merge get the merge.

use crate::data::value::State;
use crate::replication::replica::Replica;
use crate::rpc::call::ask;
use crate::rpc::peer::ReplicaRequest;
use crate::rpc::transport::Transport;
use kvorum_ring::NodeId;
use std::sync::Arc;

/// Sends a merged state to stale replicas of a key (read repair).
pub(super) struct Repair {
    pub(super) me: NodeId,
    pub(super) key: Vec<u8>,
    pub(super) replica: Replica,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) deadline: tokio::time::Instant,
    /// The node's clock (the time left to the deadline).
    pub(super) clock: crate::util::clock::SharedClock,
    /// Counts the repairs sent.
    pub(super) sent: ::metrics::Counter,
}

impl Repair {
    /// Merges `state` into each of `stale` (this node locally), waiting for
    /// the acknowledgements until the deadline. Failures are logged: the
    /// next read or anti-entropy repairs what this one could not.
    pub(super) async fn send(&self, state: &State, stale: &[NodeId]) {
        self.sent.increment(stale.len() as u64);
        let mut calls = tokio::task::JoinSet::new();
        for node in stale {
            if *node == self.me {
                if let Err(e) = self.replica.merge(self.key.clone(), state.clone()).await {
                    tracing::warn!(error = %e, "local read repair failed");
                }
                continue;
            }
            let (transport, node) = (self.transport.clone(), node.clone());
            let req = ReplicaRequest::Repair {
                key: self.key.clone(),
                state: state.clone(),
            };
            let left = self.deadline.saturating_duration_since(self.clock.now());
            calls.spawn(async move {
                if let Err(e) = ask(&*transport, &node, req, left).await {
                    tracing::debug!(%node, error = %e, "read repair not delivered");
                }
            });
        }
        while calls.join_next().await.is_some() {}
    }
}
