//! The digest `kvorum admin verify` asks every member for (see
//! `repair::aae::digest`), served from the trees' key index.

use super::{AntiEntropy, MAX_SEGMENTS_PER_EXCHANGE, SERVE_REFRESH_WAIT};
use crate::repair::aae::BRANCHES;
use crate::replication::replica;
use kvorum_client::proto::{DigestAnswer, DigestQuery, ErrorReply};

impl AntiEntropy {
    /// Answers a verify's digest query over the keys this node holds as
    /// first replica. Branches are computed one at a time, each under the
    /// trees' lock (writes wait for one branch, not for the whole key
    /// space). Refused while the trees are being built or redone.
    pub async fn digest(&self, query: DigestQuery) -> Result<DigestAnswer, ErrorReply> {
        let ready = async {
            self.until_built().await;
            self.refresh().await;
        };
        let not_ready = |why: String| {
            ErrorReply::Unavailable(format!(
                "anti-entropy trees not ready ({why}); verify again in a moment"
            ))
        };
        if tokio::time::timeout(SERVE_REFRESH_WAIT, ready)
            .await
            .is_err()
        {
            return Err(not_ready("being built or redone for a new ring".into()));
        }
        self.ready().map_err(|e| not_ready(e.to_string()))?;
        let leaves = |b: u32| replica::lock(self.trees()).first_replica_leaves(b);
        Ok(match query {
            DigestQuery::Branches => {
                let mut branches = Vec::with_capacity(BRANCHES as usize);
                for b in 0..BRANCHES {
                    branches.push(leaves(b).iter().fold(0, |a, h| a ^ h));
                    tokio::task::yield_now().await;
                }
                DigestAnswer::Branches(branches)
            }
            DigestQuery::Leaves { mut branches } => {
                branches.sort_unstable();
                branches.dedup();
                branches.retain(|b| *b < BRANCHES);
                let mut out = Vec::with_capacity(branches.len());
                for b in branches {
                    out.push((b, leaves(b)));
                    tokio::task::yield_now().await;
                }
                DigestAnswer::Leaves(out)
            }
            DigestQuery::Keys { mut segments } => {
                segments.sort_unstable();
                segments.dedup();
                if segments.len() > MAX_SEGMENTS_PER_EXCHANGE {
                    return Err(ErrorReply::BadRequest(format!(
                        "{} segments asked; at most {MAX_SEGMENTS_PER_EXCHANGE} per query",
                        segments.len()
                    )));
                }
                let trees = replica::lock(self.trees());
                DigestAnswer::Keys(trees.first_replica_keys(&segments))
            }
        })
    }
}
