//! Restore: records of a backup placed on their owners in this cluster by
//! the handoff's two steps, a digest (which states does the owner hold
//! otherwise?) and a merge of those, so an owner's state becomes the join
//! of what it held and the record. Merging makes a second placement of the
//! same record harmless: a restore that stopped runs again.

use super::{TransferError, Transfers};
use crate::data::value;
use crate::metrics;
use crate::repair::aae::state_hash;
use crate::replication::replica::bucket_of;
use kvorum_ring::NodeId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why records could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// A record is not one this cluster can hold (nothing was placed).
    #[error("{0}")]
    Invalid(String),
    /// An owner did not take its records (down, or failing): send the
    /// batch again (owners that took theirs hold them already).
    #[error("{0}")]
    Owner(TransferError),
}

/// What a placement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placed {
    /// Records placed.
    pub records: u64,
    /// Copies an owner lacked (sent to it).
    pub sent: u64,
    /// Copies an owner held so already.
    pub held: u64,
}

impl Transfers {
    /// Makes every owner of each record (its preference lists on the read
    /// and the write ring) hold it merged into its own state, durably.
    /// Refuses the whole batch if a record is undecodable, or its bucket is
    /// unknown here or of another type.
    pub async fn place(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Placed, PlaceError> {
        let inner = &self.inner;
        let view = inner.membership.view();
        let mut by_owner: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
        let mut moving = Vec::with_capacity(records.len());
        for (key, record) in records {
            check(self, &key, &record).map_err(PlaceError::Invalid)?;
            let n = inner.buckets.n_of_key(&key);
            let mut owners = view.read_ring.item_preference_list(&key, n);
            for o in view.write_ring.item_preference_list(&key, n) {
                if !owners.contains(&o) {
                    owners.push(o);
                }
            }
            if owners.is_empty() {
                return Err(PlaceError::Invalid(
                    "this cluster has no member up to own keys".into(),
                ));
            }
            let i = moving.len();
            for o in owners {
                by_owner.entry(o).or_default().push(i);
            }
            moving.push((key.clone(), state_hash(&record), record, true));
        }
        let copies: u64 = by_owner.values().map(|v| v.len() as u64).sum();
        let moving = Arc::new(moving);
        let mut confirms = tokio::task::JoinSet::new();
        for (owner, idx) in by_owner {
            let (t, moving) = (self.clone(), moving.clone());
            confirms.spawn(async move {
                if owner == t.inner.me {
                    t.place_here(&moving, &idx).await
                } else if !t.inner.liveness.is_up(&owner) {
                    Err(TransferError::Peer {
                        peer: owner,
                        reason: "down: its records wait for it (restore again once it is up)"
                            .into(),
                    })
                } else {
                    t.confirm(&owner, &moving, &idx).await
                }
            });
        }
        let mut sent = 0;
        let mut failed = None;
        while let Some(r) = confirms.join_next().await {
            match r {
                Ok(Ok(n)) => sent += n,
                Ok(Err(e)) => failed = Some(e),
                Err(e) => failed = Some(TransferError::Aborted(e.to_string())),
            }
        }
        let m = &inner.metrics;
        m.counter(metrics::RESTORED_RECORDS, &[("outcome", "sent")])
            .increment(sent);
        if let Some(e) = failed {
            return Err(PlaceError::Owner(e));
        }
        m.counter(metrics::RESTORED_RECORDS, &[("outcome", "held")])
            .increment(copies - sent);
        Ok(Placed {
            records: moving.len() as u64,
            sent,
            held: copies - sent,
        })
    }

    /// The local owner's side of [`Transfers::confirm`].
    async fn place_here(
        &self,
        moving: &[(Vec<u8>, u64, Vec<u8>, bool)],
        idx: &[usize],
    ) -> Result<u64, TransferError> {
        let keys: Vec<(Vec<u8>, u64)> = idx
            .iter()
            .map(|&i| (moving[i].0.clone(), moving[i].1))
            .collect();
        let wanted = match self.serve_digest(&keys) {
            Ok(crate::rpc::peer::TransferResponse::Wanted(w)) => w,
            Ok(_) => Vec::new(),
            Err(e) => {
                return Err(TransferError::Peer {
                    peer: self.inner.me.clone(),
                    reason: e.to_string(),
                })
            }
        };
        let mut states = Vec::with_capacity(wanted.len());
        for w in wanted {
            let (key, _, record, _) = &moving[idx[w as usize]];
            let state = value::decode_record(record).map_err(|e| TransferError::Peer {
                peer: self.inner.me.clone(),
                reason: e.to_string(),
            })?;
            states.push((key.clone(), state));
        }
        let n = states.len() as u64;
        self.merge_all(states).await?;
        Ok(n)
    }
}

/// Why this cluster cannot hold `record` under `key`, if it cannot.
fn check(t: &Transfers, key: &[u8], record: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(key);
    let Some(bucket) = bucket_of(key) else {
        return Err(format!("{shown:?} is not a storage key"));
    };
    let state = value::decode_record(record)
        .map_err(|e| format!("the record of {shown:?} does not decode: {e}"))?;
    let Some(props) = t.inner.buckets.get(bucket) else {
        return Err(format!(
            "bucket {bucket:?} is not defined in this cluster (restore defines the backup's buckets first)"
        ));
    };
    if props.bucket_type != state.bucket_type() {
        return Err(format!(
            "the record of {shown:?} is a {:?} but bucket {bucket:?} here is a {:?}",
            state.bucket_type(),
            props.bucket_type
        ));
    }
    Ok(())
}
