//! The digest `kvorum admin verify` asks every member for (see
//! `repair::aae::digest`), served from the key index on disk.

use super::{AntiEntropy, SERVE_REFRESH_WAIT};
use crate::repair::aae::{self, BRANCHES, PER_BRANCH, SEGMENTS};
use crate::replication::replica;
use crate::storage::{Space, StorageError};
use kvorum_client::proto::{DigestAnswer, DigestQuery, ErrorReply};

/// Most segments one keys query lists (its answer stays well under a
/// client's answer limit at millions of keys per node).
pub const MAX_DIGEST_SEGMENTS: usize = 64;

impl AntiEntropy {
    /// Answers a verify's digest query over the keys this node holds as
    /// first replica, on a blocking worker, one segment of the key index
    /// at a time.
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
        if view.in_transition() {
            return Err(not_ready(
                "a ring change is under way (first replicas are moving)".into(),
            ));
        }
        if view.prev_read_ring.is_some() {
            return Err(not_ready(unsettled(&view)));
        }
        if let DigestQuery::Keys { segments } = &query {
            if segments.len() > MAX_DIGEST_SEGMENTS {
                return Err(ErrorReply::BadRequest(format!(
                    "{} segments asked; at most {MAX_DIGEST_SEGMENTS} per query",
                    segments.len()
                )));
            }
        }
        let (trees, store) = (self.trees().clone(), self.replica.store().clone());
        let workers = self.env.workers;
        // One segment of the index, read from storage.
        let entries =
            move |s: u32| aae::index::read(s..s + 1, |p| store.scan(Space::Index, p, usize::MAX));
        let leaf = {
            let (trees, entries) = (trees.clone(), entries.clone());
            move |s: u32| -> Result<u64, StorageError> {
                let e = entries(s)?;
                Ok(replica::lock(&trees).first_replica_leaf(&e))
            }
        };
        let keys = move |s: u32| -> Result<Vec<(Vec<u8>, u64)>, StorageError> {
            let e = entries(s)?;
            Ok(replica::lock(&trees).first_replica_keys(e))
        };
        let answer = workers.run_blocking(move || -> Result<DigestAnswer, StorageError> {
            Ok(match query {
                DigestQuery::Branches => {
                    let mut hashes = Vec::with_capacity(BRANCHES as usize);
                    for b in 0..BRANCHES {
                        let mut h = 0;
                        for s in b * PER_BRANCH..(b + 1) * PER_BRANCH {
                            h ^= leaf(s)?;
                        }
                        hashes.push(h);
                    }
                    DigestAnswer::Branches {
                        view: view.hash,
                        hashes,
                    }
                }
                DigestQuery::Leaves { mut branches } => {
                    branches.sort_unstable();
                    branches.dedup();
                    branches.retain(|b| *b < BRANCHES);
                    let mut out = Vec::with_capacity(branches.len());
                    for b in branches {
                        let leaves = (b * PER_BRANCH..(b + 1) * PER_BRANCH)
                            .map(&leaf)
                            .collect::<Result<Vec<u64>, _>>()?;
                        out.push((b, leaves));
                    }
                    DigestAnswer::Leaves(out)
                }
                DigestQuery::Keys { mut segments } => {
                    segments.sort_unstable();
                    segments.dedup();
                    segments.retain(|s| *s < SEGMENTS);
                    let mut out = Vec::new();
                    for s in segments {
                        out.extend(keys(s)?);
                    }
                    DigestAnswer::Keys(out)
                }
            })
        });
        answer
            .await
            .map_err(ErrorReply::Internal)?
            .map_err(|e| ErrorReply::Internal(format!("reading the key index: {e}")))
    }
}

/// Why the last ring change has not settled: the members that have not
/// seen it yet (writes still reach the previous ring's replicas until
/// they have; a member down for good holds that until it is removed).
fn unsettled(view: &crate::cluster::membership::View) -> String {
    let behind: Vec<String> = view
        .live_members()
        .chain(view.departed())
        .filter(|m| m.seen_view != view.hash)
        .map(|m| m.id.to_string())
        .collect();
    if behind.is_empty() {
        "the last ring change is settling (first replicas have moved)".into()
    } else {
        format!(
            "the last ring change has not settled: {} {} not seen it (a member \
             down for good holds this until it is removed)",
            behind.join(", "),
            if behind.len() == 1 { "has" } else { "have" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::member::{MemberInfo, MemberState};
    use crate::cluster::membership::Membership;
    use kvorum_ring::NodeId;

    fn info(id: &str, state: MemberState) -> MemberInfo {
        MemberInfo::for_test(id, state)
    }

    #[test]
    fn an_unsettled_change_names_the_members_behind() {
        let m = Membership::new(
            info("a", MemberState::Up),
            vec![info("b", MemberState::Up), info("c", MemberState::Joining)],
            16,
            false,
        );
        m.mark_all(m.view().hash, &[(NodeId::new("c"), MemberState::Up)]);
        let why = unsettled(&m.view());
        assert!(why.contains("b, c have not seen it"), "{why}");
        assert!(
            !why.contains("a,"),
            "this node has seen its own view: {why}"
        );
    }
}
