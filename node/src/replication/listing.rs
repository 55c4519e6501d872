//! Listing the partitions of a bucket, page by page (K2V's ReadIndex,
//! without its counts).
//!
//! A partition lives on N replicas anywhere on the ring, so a page asks
//! every member for the partition keys it holds past the cursor (each one
//! seek per partition, `Replica::partitions`), merges them in byte order,
//! and cuts the page where every answer is complete, as a range read does.
//! Every partition has a replica among the members that answered when
//! fewer than N of them failed; with N or more failed, the page is refused
//! rather than answered with holes.

use super::coordinator::Coordinator;
use super::quorum::outcome_of;
use super::settings::too_large;
use crate::rpc::call::ask;
use crate::rpc::peer::{ReplicaRequest, ReplicaResponse};
use kvorum_client::proto::{ErrorReply, Limit, Response};
use std::collections::BTreeSet;

impl Coordinator {
    /// Serves one page of a bucket's partition keys.
    pub(super) async fn list_partitions(
        &self,
        bucket: String,
        after: Option<Vec<u8>>,
        limit: u32,
        timeout_ms: Option<u32>,
    ) -> Result<Response, ErrorReply> {
        let props = self.bucket(&bucket, after.as_deref().unwrap_or_default())?;
        let limit = match limit as usize {
            0 => self.limits.default_page_items,
            n if n > self.limits.max_page_items => {
                return Err(too_large(Limit::PageItems, n, self.limits.max_page_items))
            }
            n => n,
        };
        let timeout = self.timeout(timeout_ms);
        let members: Vec<_> = self
            .membership
            .ring()
            .members()
            .iter()
            .map(|m| m.id.clone())
            .collect();
        let req = ReplicaRequest::Partitions {
            bucket: bucket.clone(),
            after: after.clone(),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        let mut calls = tokio::task::JoinSet::new();
        let mut answers: Vec<(Vec<Vec<u8>>, bool)> = Vec::new();
        let mut failed = Vec::new();
        for node in members {
            if node == self.me {
                match self.replica.partitions(&bucket, after.as_deref(), limit) {
                    Ok(a) => answers.push(a),
                    Err(e) => failed.push(format!("{node}: {e}")),
                }
                continue;
            }
            let (transport, req) = (self.transport.clone(), req.clone());
            calls.spawn(async move {
                let res = match ask(&*transport, &node, req, timeout).await {
                    Ok(ReplicaResponse::Partitions { keys, complete }) => Ok((keys, complete)),
                    Ok(other) => Err(format!("unexpected answer {other:?}")),
                    Err(e) => Err(format!("{:?}", outcome_of(&e))),
                };
                (node, res)
            });
        }
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok((_, Ok(a))) => answers.push(a),
                Ok((node, Err(why))) => failed.push(format!("{node}: {why}")),
                Err(e) => failed.push(format!("a call failed: {e}")),
            }
        }
        if failed.len() >= usize::from(props.n) {
            return Err(ErrorReply::Unavailable(format!(
                "{} members did not answer (with N = {}, a partition may have no replica among \
                 those that did): {}",
                failed.len(),
                props.n,
                failed.join("; ")
            )));
        }
        // The span every answer covers ends at the smallest last key of an
        // answer that stopped short.
        let cut = answers
            .iter()
            .filter(|(keys, complete)| !complete && !keys.is_empty())
            .filter_map(|(keys, _)| keys.last())
            .min()
            .cloned();
        let mut all: BTreeSet<Vec<u8>> = BTreeSet::new();
        for (keys, _) in &answers {
            all.extend(
                keys.iter()
                    .filter(|k| cut.as_ref().is_none_or(|c| *k <= c))
                    .cloned(),
            );
        }
        let mut keys: Vec<Vec<u8>> = all.into_iter().take(limit + 1).collect();
        let next = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().cloned()
        } else {
            cut
        };
        Ok(Response::Partitions { keys, next })
    }
}
