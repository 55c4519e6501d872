//! Ownership handoff, the last step of a ring change. Once the rings agree
//! again, a node holding keys it no longer owns offers each owner their
//! hashes ([`TransferRequest::Digest`]), sends the states an owner lacks
//! ([`TransferRequest::MergeBatch`]), and drops a key only when every owner
//! acknowledged it, and only if it did not change meanwhile. The owner's
//! side (answering a digest, merging a batch) is here too.

use super::{TransferError, Transfers, CALL_TIMEOUT};
use crate::cluster::member::MemberState;
use crate::cluster::membership::View;
use crate::data::value::{self, State};
use crate::metrics;
use crate::rpc::call::ask;
use crate::rpc::peer::{PeerError, TransferRequest, TransferResponse};
use crate::storage::{Space, StorageError};
use kvorum_ring::NodeId;
use std::collections::BTreeMap;

/// Keys per handoff digest.
const HANDOFF_BATCH: usize = 256;

impl Transfers {
    /// Drops the keys this node no longer owns, each once every owner holds
    /// it. Returns whether the pass left nothing behind (false: an owner was
    /// down or failed, or a key changed meanwhile; the next step repeats it).
    ///
    /// A removed node pushes nothing: if it left, the new owners streamed
    /// its ranges from it; if it was removed while down, its data is older
    /// than the survivors' (pushing it could bring back a deleted value
    /// whose tombstone was reaped since). It just drops everything.
    pub(super) async fn hand_off(&self, view: &View) -> Result<bool, TransferError> {
        let inner = &self.inner;
        let store = inner.replica.store().clone();
        let removed = inner.membership.my_state() == MemberState::Removed;
        let mut after: Option<Vec<u8>> = None;
        let mut failed: Option<TransferError> = None;
        let mut clean = true;
        let mut rotated = removed;
        let (mut pushed, mut dropped) = (0u64, 0u64);
        loop {
            if inner.membership.view_hash() != view.hash {
                return Err(TransferError::ViewChanged);
            }
            let chunk = store.scan_after(Space::Data, after.as_deref(), HANDOFF_BATCH)?;
            let end = chunk.len() < HANDOFF_BATCH;
            after = chunk.last().map(|(k, _)| k.clone());
            // Per owner: the keys it must confirm.
            let mut by_owner: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
            let mut moving = Vec::new();
            for (key, record) in chunk {
                let n = inner.buckets.n_of_key(&key);
                let owners = view.read_ring.item_preference_list(&key, n);
                if owners.contains(&inner.me) || (owners.is_empty() && !removed) {
                    continue;
                }
                let i = moving.len();
                if !removed {
                    for o in &owners {
                        by_owner.entry(o.clone()).or_default().push(i);
                    }
                }
                moving.push((key, crate::repair::aae::state_hash(&record), record, true));
            }
            for (owner, idx) in by_owner {
                let result = if inner.liveness.is_up(&owner) {
                    self.confirm(&owner, &moving, &idx).await
                } else {
                    Err(TransferError::Peer {
                        peer: owner.clone(),
                        reason: "down".into(),
                    })
                };
                match result {
                    Ok(n) => pushed += n,
                    Err(e) => {
                        for &i in &idx {
                            moving[i].3 = false;
                        }
                        clean = false;
                        failed = Some(e);
                    }
                }
            }
            if !rotated && moving.iter().any(|m| m.3) {
                // Before the first drop: this node may own these keys again
                // one day and must not coordinate them as the same actor
                // from an empty state.
                inner.member_store.rotate_epoch().await?;
                rotated = true;
            }
            // The drops of a chunk at once: they share syncs (group commit).
            let mut drops = tokio::task::JoinSet::new();
            for (key, hash, _, confirmed) in moving {
                if confirmed {
                    let replica = inner.replica.clone();
                    drops.spawn(async move { replica.drop_if(key, hash).await });
                }
            }
            while let Some(r) = drops.join_next().await {
                match r {
                    Ok(Ok(true)) => dropped += 1,
                    Ok(Ok(false)) => clean = false, // changed meanwhile: the next pass
                    Ok(Err(e)) => {
                        clean = false;
                        failed = Some(TransferError::Storage(StorageError::Engine(e.to_string())))
                    }
                    Err(e) => {
                        clean = false;
                        failed = Some(TransferError::Storage(StorageError::Engine(e.to_string())))
                    }
                }
            }
            if end {
                break;
            }
        }
        inner
            .metrics
            .counter(metrics::KEYS_DROPPED, &[])
            .increment(dropped);
        if pushed + dropped > 0 {
            tracing::info!(pushed, dropped, "handed off keys this node no longer owns");
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(clean),
        }
    }

    /// Makes `owner` hold the states of `moving[idx]`: a digest, then the
    /// states it lacks. Returns how many were sent.
    pub(super) async fn confirm(
        &self,
        owner: &NodeId,
        moving: &[(Vec<u8>, u64, Vec<u8>, bool)],
        idx: &[usize],
    ) -> Result<u64, TransferError> {
        let inner = &self.inner;
        let err = |reason: String| TransferError::Peer {
            peer: owner.clone(),
            reason,
        };
        let keys = idx
            .iter()
            .map(|&i| (moving[i].0.clone(), moving[i].1))
            .collect();
        let digest = TransferRequest::Digest { keys };
        let wanted = match ask(&*inner.transport, owner, digest, CALL_TIMEOUT).await {
            Ok(TransferResponse::Wanted(w)) => w,
            Ok(other) => return Err(err(format!("unexpected answer {other:?}"))),
            Err(e) => return Err(err(e.to_string())),
        };
        let mut records = Vec::new();
        let mut bytes = 0u64;
        for w in wanted {
            let Some(&i) = idx.get(w as usize) else {
                return Err(err("digest answer out of range".into()));
            };
            let (key, _, record, _) = &moving[i];
            match value::decode_record(record) {
                Ok(state) => {
                    bytes += record.len() as u64;
                    records.push((key.clone(), state));
                }
                Err(e) => return Err(err(format!("undecodable local record: {e}"))),
            }
        }
        if records.is_empty() {
            return Ok(0);
        }
        let n = records.len() as u64;
        let merge = TransferRequest::MergeBatch { records };
        match ask(&*inner.transport, owner, merge, CALL_TIMEOUT).await {
            Ok(TransferResponse::Merged) => {
                let m = &inner.metrics;
                m.counter(metrics::TRANSFER_KEYS, &[("direction", "handoff")])
                    .increment(n);
                m.counter(metrics::TRANSFER_BYTES, &[("direction", "handoff")])
                    .increment(bytes);
                Ok(n)
            }
            Ok(other) => Err(err(format!("unexpected answer {other:?}"))),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Answers a handoff digest: the positions of keys held differently.
    pub fn serve_digest(&self, keys: &[(Vec<u8>, u64)]) -> Result<TransferResponse, PeerError> {
        let store = self.inner.replica.store();
        let mut wanted = Vec::new();
        for (i, (key, hash)) in keys.iter().enumerate() {
            match store.get(Space::Data, key) {
                Ok(Some(record)) if crate::repair::aae::state_hash(&record) == *hash => {}
                Ok(_) => wanted.push(i as u32),
                Err(e) => return Err(PeerError::Storage(e.to_string())),
            }
        }
        Ok(TransferResponse::Wanted(wanted))
    }

    /// Merges a handoff batch durably.
    pub async fn serve_merge(
        &self,
        records: Vec<(Vec<u8>, State)>,
    ) -> Result<TransferResponse, PeerError> {
        match self.merge_all(records).await {
            Ok(()) => Ok(TransferResponse::Merged),
            Err(TransferError::Merge(e)) => Err(e.into()),
            Err(e) => Err(PeerError::Storage(e.to_string())),
        }
    }
}
