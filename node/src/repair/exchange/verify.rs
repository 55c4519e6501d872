//! The digest `kvorum admin verify` asks every member for (see
//! `repair::aae::digest`), served from the trees' key index.

use super::{AntiEntropy, SERVE_REFRESH_WAIT};
use crate::repair::aae::{BRANCHES, PER_BRANCH, SEGMENTS};
use crate::replication::replica;
use kvorum_client::proto::{DigestAnswer, DigestQuery, ErrorReply};

/// Most segments one keys query lists (its answer stays well under a
/// client's answer limit at millions of keys per node).
pub const MAX_DIGEST_SEGMENTS: usize = 64;

impl AntiEntropy {
    /// Answers a verify's digest query over the keys this node holds as
    /// first replica, on a blocking worker, one segment at a time under
    /// the trees' lock (a write waits for one segment, not a branch).
    /// Refused while the trees are being built or redone, and while a ring
    /// change is under way (first replicas are moving).
    pub async fn digest(&self, query: DigestQuery) -> Result<DigestAnswer, ErrorReply> {
        let ready = async {
            self.until_built().await;
            self.refresh().await;
        };
        let not_ready =
            |why: String| ErrorReply::Unavailable(format!("{why}; verify again in a moment"));
        if tokio::time::timeout(SERVE_REFRESH_WAIT, ready)
            .await
            .is_err()
        {
            return Err(not_ready(
                "anti-entropy trees are being built or redone for a new ring".into(),
            ));
        }
        self.ready().map_err(|e| not_ready(e.to_string()))?;
        let view = self.membership.view();
        if view.in_transition() || view.prev_read_ring.is_some() {
            return Err(not_ready(
                "a ring change is under way (first replicas are moving)".into(),
            ));
        }
        if let DigestQuery::Keys { segments } = &query {
            if segments.len() > MAX_DIGEST_SEGMENTS {
                return Err(ErrorReply::BadRequest(format!(
                    "{} segments asked; at most {MAX_DIGEST_SEGMENTS} per query",
                    segments.len()
                )));
            }
        }
        let trees = self.trees().clone();
        let workers = self.env.workers;
        let leaf = move |s: u32| replica::lock(&trees).first_replica_leaf(s);
        let keys = {
            let trees = self.trees().clone();
            move |s: u32| replica::lock(&trees).first_replica_keys(&[s])
        };
        let answer = workers.run_blocking(move || match query {
            DigestQuery::Branches => DigestAnswer::Branches {
                view: view.hash,
                hashes: (0..BRANCHES)
                    .map(|b| (b * PER_BRANCH..(b + 1) * PER_BRANCH).fold(0, |a, s| a ^ leaf(s)))
                    .collect(),
            },
            DigestQuery::Leaves { mut branches } => {
                branches.sort_unstable();
                branches.dedup();
                branches.retain(|b| *b < BRANCHES);
                DigestAnswer::Leaves(
                    branches
                        .into_iter()
                        .map(|b| {
                            (
                                b,
                                (b * PER_BRANCH..(b + 1) * PER_BRANCH).map(&leaf).collect(),
                            )
                        })
                        .collect(),
                )
            }
            DigestQuery::Keys { mut segments } => {
                segments.sort_unstable();
                segments.dedup();
                segments.retain(|s| *s < SEGMENTS);
                DigestAnswer::Keys(segments.into_iter().flat_map(keys).collect())
            }
        });
        answer.await.map_err(ErrorReply::Internal)
    }
}
