//! Hinted handoff (Dynamo §4.6): writes a fallback node holds for a replica
//! that was down, kept durably and handed to it once it is back.
//!
//! A hint is the key's state (a register, merged with any earlier hint for
//! the same owner and key), stored in the `hints` keyspace under
//! `owner ++ storage key`. Hints survive restarts. Delivery sends the state to
//! the owner as an ordinary replica write and deletes the hint only after the
//! owner acknowledged it, and only if the hint did not change meanwhile.
//!
//! Bounds: total hint bytes (`hints.max_bytes`) and age (`hints.ttl_secs`).
//! A hint refused or dropped by a bound, or held for a node that is no longer
//! a member, is counted in [`HintStats::dropped`]; anti-entropy repairs what
//! it carried.

use crate::data::register::Register;
use crate::data::value::{Body, LegacyState, State};
use crate::storage::{Change, Space, StorageError, Store};
use crate::util::clock::{SharedClock, SystemClock};
use crate::util::LockExt;
use kvorum_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

/// Bounds of the hint store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintConfig {
    /// Most bytes of hints held; a new hint beyond it is refused (and counted).
    pub max_bytes: u64,
    /// Hints older than this are dropped (and counted).
    pub ttl: Duration,
    /// How often delivery runs.
    pub delivery_interval: Duration,
    /// Most hints one delivery round handles.
    pub batch: usize,
}

impl Default for HintConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            ttl: Duration::from_secs(3 * 3600),
            delivery_interval: Duration::from_secs(1),
            batch: 1024,
        }
    }
}

/// Why a hint was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HintError {
    /// The store is at `max_bytes`.
    #[error("hint store full ({held} of {max} bytes)")]
    Full {
        /// Bytes held.
        held: u64,
        /// The bound.
        max: u64,
    },
    /// The hint cannot be merged with the one held (another value type).
    #[error("hint refused: {0}")]
    Invalid(String),
    /// The disk failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Persisted hint; the enum tag is the format version.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum HintRecord {
    V1 {
        created_ms: u64,
        state: Register,
    },
    /// Maps were `crdts::Map`s (converted when read).
    V2 {
        created_ms: u64,
        state: LegacyState,
    },
    V3 {
        created_ms: u64,
        state: Body,
    },
    /// States with their lifetime.
    V4 {
        created_ms: u64,
        state: State,
    },
}

impl HintRecord {
    fn decode(bytes: &[u8]) -> Option<(u64, State)> {
        match postcard::from_bytes::<HintRecord>(bytes).ok()? {
            HintRecord::V1 { created_ms, state } => {
                Some((created_ms, Body::Register(state).into()))
            }
            HintRecord::V2 { created_ms, state } => Some((created_ms, state.into_state())),
            HintRecord::V3 { created_ms, state } => Some((created_ms, state.into())),
            HintRecord::V4 { created_ms, state } => Some((created_ms, state)),
        }
    }
}

/// Counters of the hint store since start.
#[derive(Debug, Default)]
pub struct HintStats {
    /// Hints currently held.
    pub pending: AtomicU64,
    /// Bytes currently held.
    pub bytes: AtomicU64,
    /// Hints handed to their owner and deleted.
    pub delivered: AtomicU64,
    /// Hints refused or dropped by a bound, or for a removed node.
    pub dropped: AtomicU64,
    /// Hints accepted (new, or merged into one held).
    pub stored: AtomicU64,
    /// Creation times (Unix seconds) of the hints held, with counts.
    ages: std::sync::Mutex<std::collections::BTreeMap<u64, u64>>,
}

impl HintStats {
    fn ages(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, u64>> {
        self.ages.locked()
    }

    fn held_since(&self, created_ms: u64) {
        *self.ages().entry(created_ms / 1000).or_default() += 1;
    }

    fn released(&self, created_ms: u64) {
        let mut ages = self.ages();
        let s = created_ms / 1000;
        if let Some(n) = ages.get_mut(&s) {
            *n -= 1;
            if *n == 0 {
                ages.remove(&s);
            }
        }
    }

    /// Age at `now_ms` of the oldest hint held (to the second); zero when
    /// none is held.
    pub fn oldest_age(&self, now_ms: u64) -> Duration {
        match self.ages().keys().next() {
            Some(s) => Duration::from_secs((now_ms / 1000).saturating_sub(*s)),
            None => Duration::ZERO,
        }
    }
}

/// The node's hint store.
#[derive(Clone)]
pub struct Hints {
    store: Store,
    config: HintConfig,
    stats: Arc<HintStats>,
    clock: SharedClock,
}

/// One hint, as delivery sees it.
#[derive(Debug, Clone)]
pub struct Hint {
    /// The replica it is for.
    pub owner: NodeId,
    /// The storage key.
    pub key: Vec<u8>,
    /// The state to hand over.
    pub state: State,
    created_ms: u64,
    raw: Vec<u8>,
    store_key: Vec<u8>,
}

fn hint_key(owner: &NodeId, key: &[u8]) -> Vec<u8> {
    let o = owner.as_str().as_bytes();
    let mut out = Vec::with_capacity(2 + o.len() + key.len());
    // Node ids are at most 64 bytes (config).
    out.extend_from_slice(&(o.len() as u16).to_be_bytes());
    out.extend_from_slice(o);
    out.extend_from_slice(key);
    out
}

fn parse_hint_key(k: &[u8]) -> Option<(NodeId, Vec<u8>)> {
    let len = usize::from(u16::from_be_bytes([*k.first()?, *k.get(1)?]));
    let owner = std::str::from_utf8(k.get(2..2 + len)?).ok()?;
    Some((NodeId::new(owner), k.get(2 + len..)?.to_vec()))
}

fn encode(created_ms: u64, state: &State) -> Vec<u8> {
    // A state without a lifetime keeps the format it had before lifetimes.
    let record = if state.life.is_default() {
        HintRecord::V3 {
            created_ms,
            state: state.body.clone(),
        }
    } else {
        HintRecord::V4 {
            created_ms,
            state: state.clone(),
        }
    };
    kvorum_client::bytes::encode(&record)
}

impl Hint {
    /// Where the hint is stored (unique per owner and key).
    pub fn store_key(&self) -> &[u8] {
        &self.store_key
    }
}

impl Hints {
    /// Opens the hint store and counts what it holds; hints are stamped
    /// and aged by the system clock.
    pub fn open(store: Store, config: HintConfig) -> Result<Self, StorageError> {
        Self::open_with(store, config, SystemClock::shared())
    }

    /// [`Hints::open`], with hints stamped and aged by `clock`.
    pub fn open_with(
        store: Store,
        config: HintConfig,
        clock: SharedClock,
    ) -> Result<Self, StorageError> {
        let stats = Arc::new(HintStats::default());
        // A chunk at a time: what the count holds does not grow with the
        // hints (up to `max_bytes` of them).
        const CHUNK: usize = 256;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = store.scan_after(Space::Hints, after.as_deref(), CHUNK)?;
            let full = chunk.len() == CHUNK;
            for (_, v) in &chunk {
                if let Some((created_ms, _)) = HintRecord::decode(v) {
                    stats.held_since(created_ms);
                }
                stats.pending.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(v.len() as u64, Ordering::Relaxed);
            }
            after = chunk.into_iter().last().map(|(k, _)| k);
            if !full {
                break;
            }
        }
        Ok(Self {
            store,
            config,
            stats,
            clock,
        })
    }

    /// The store's counters.
    pub fn stats(&self) -> &HintStats {
        &self.stats
    }

    /// Age of the oldest hint held (to the second), by this store's clock.
    pub fn oldest_age(&self) -> Duration {
        self.stats.oldest_age(self.clock.wall_ms())
    }

    /// Durably stores (merges) a hint of `state` for `owner`.
    pub async fn add(&self, owner: &NodeId, key: &[u8], state: State) -> Result<(), HintError> {
        let (stats, max) = (self.stats.clone(), self.config.max_bytes);
        let now_ms = self.clock.wall_ms();
        let k = hint_key(owner, key);
        let result = self
            .store
            .change_then(Space::Hints, k, move |current| {
                // (bytes held, creation time, state, whether the hint is new,
                // whether an unreadable hint is replaced)
                let (old_len, created, mut merged, new, replaced) = match current {
                    Err(e) => return (Change::Keep, Err(HintError::Storage(e)), None),
                    Ok(None) => (0, now_ms, State::empty(state.bucket_type()), true, false),
                    Ok(Some(bytes)) => match HintRecord::decode(bytes) {
                        Some((created_ms, state)) => {
                            (bytes.len() as u64, created_ms, state, false, false)
                        }
                        // An unreadable hint is replaced (and counted as dropped).
                        None => (
                            bytes.len() as u64,
                            now_ms,
                            State::empty(state.bucket_type()),
                            true,
                            true,
                        ),
                    },
                };
                if let Err(e) = merged.merge(state) {
                    return (Change::Keep, Err(HintError::Invalid(e.to_string())), None);
                }
                let bytes = encode(created, &merged);
                // (Counts change once the batch commits, so within one batch
                // the bound can be passed by that batch's hints.)
                let held = stats.bytes.load(Ordering::Relaxed);
                let after = held
                    .saturating_sub(old_len)
                    .saturating_add(bytes.len() as u64);
                if after > max {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return (Change::Keep, Err(HintError::Full { held, max }), None);
                }
                let new_len = bytes.len() as u64;
                let hook: crate::storage::Hook = Box::new(move || {
                    stats.bytes.fetch_add(new_len, Ordering::Relaxed);
                    stats.bytes.fetch_sub(old_len, Ordering::Relaxed);
                    stats.stored.fetch_add(1, Ordering::Relaxed);
                    if replaced {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    if new {
                        stats.held_since(created);
                    }
                    if old_len == 0 {
                        stats.pending.fetch_add(1, Ordering::Relaxed);
                    }
                });
                (Change::Put(bytes), Ok(()), Some(hook))
            })
            .await;
        result?
    }

    /// Up to one batch of hints for `owner` (all owners with `None`), in key order.
    pub fn batch(&self, owner: Option<&NodeId>) -> Result<Vec<Hint>, StorageError> {
        let prefix = owner.map(|o| hint_key(o, &[])).unwrap_or_default();
        let mut out = Vec::new();
        for (k, v) in self.store.scan(Space::Hints, &prefix, self.config.batch)? {
            let Some((owner, key)) = parse_hint_key(&k) else {
                continue;
            };
            let Some((created_ms, state)) = HintRecord::decode(&v) else {
                continue;
            };
            out.push(Hint {
                owner,
                key,
                state,
                created_ms,
                raw: v,
                store_key: k,
            });
        }
        Ok(out)
    }

    /// Whether a hint is past its age bound.
    pub fn expired(&self, hint: &Hint) -> bool {
        self.clock.wall_ms().saturating_sub(hint.created_ms) > self.config.ttl.as_millis() as u64
    }

    /// Deletes a hint if it is still exactly what was read (it was delivered,
    /// or is dropped); a hint merged meanwhile stays for the next round.
    /// `delivered` says which counter to bump.
    pub async fn remove(&self, hint: &Hint, delivered: bool) -> Result<bool, StorageError> {
        let (stats, raw, created_ms) = (self.stats.clone(), hint.raw.clone(), hint.created_ms);
        // Essential: it frees space, so it runs below the disk's reserve.
        self.store
            .change_essential(
                Space::Hints,
                hint.store_key.clone(),
                move |current| match current {
                    Ok(Some(bytes)) if bytes == raw.as_slice() => {
                        // Counted once the deletion is committed.
                        let hook: crate::storage::Hook = Box::new(move || {
                            stats.pending.fetch_sub(1, Ordering::Relaxed);
                            stats.bytes.fetch_sub(raw.len() as u64, Ordering::Relaxed);
                            stats.released(created_ms);
                            let counter = if delivered {
                                &stats.delivered
                            } else {
                                &stats.dropped
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                        });
                        (Change::Delete, true, Some(hook))
                    }
                    _ => (Change::Keep, false, None),
                },
            )
            .await
    }

    /// Delivery settings.
    pub fn config(&self) -> &HintConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::register::{Actor, DotContext, RegValue};
    use crate::storage::{FjallEngine, SyncPolicy};

    fn state(v: &str) -> State {
        let mut r = Register::new();
        // One actor per value, so values never share a dot.
        let a = Actor {
            node: NodeId::new(v),
            epoch: 1,
        };
        r.write(
            &a,
            &DotContext::new(),
            RegValue::Data(v.as_bytes().to_vec()),
            0,
        )
        .unwrap();
        Body::Register(r).into()
    }

    /// Hints of format 2 still decode; a map in them (a `crdts::Map`
    /// then) is converted like a stored record of format 2.
    #[test]
    fn hints_of_format_2_decode() {
        let Body::Register(r) = state("x").body else {
            unreachable!()
        };
        let old = HintRecord::V2 {
            created_ms: 5,
            state: LegacyState::Register(r.clone()),
        };
        let bytes = postcard::to_stdvec(&old).unwrap();
        assert_eq!(
            HintRecord::decode(&bytes),
            Some((5, Body::Register(r).into()))
        );
        // A map record of format 2 is its tag (1) and then the state; a
        // hint of format 2 its tag (1), its time, then the state.
        let record =
            crate::data::value::tests::unhex(include_str!("../data/value/map_record_v2.hex"));
        let mut bytes = vec![1];
        bytes.extend(postcard::to_stdvec(&5u64).unwrap());
        bytes.extend_from_slice(&record[1..]);
        let map = crate::data::value::decode_record(&record).unwrap();
        assert_eq!(HintRecord::decode(&bytes), Some((5, map.clone())));
        assert_eq!(decode_hint_of(&map), Some((7, map)));
    }

    fn decode_hint_of(state: &State) -> Option<(u64, State)> {
        HintRecord::decode(&encode(7, state))
    }

    #[tokio::test]
    async fn hints_merge_survive_reopen_and_are_removed_only_if_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let owner = NodeId::new("n9");
        {
            let (store, closed) = Store::start(
                Arc::new(FjallEngine::open(dir.path()).unwrap()),
                SyncPolicy::Always,
            );
            let hints = Hints::open(store, HintConfig::default()).unwrap();
            hints.add(&owner, b"k1", state("x")).await.unwrap();
            hints.add(&owner, b"k1", state("x")).await.unwrap();
            hints.add(&owner, b"k2", state("y")).await.unwrap();
            assert_eq!(hints.stats().pending.load(Ordering::Relaxed), 2);
            drop(hints);
            assert!(closed.wait(Duration::from_secs(5)).await);
        }
        let (store, _closed) = Store::start(
            Arc::new(FjallEngine::open(dir.path()).unwrap()),
            SyncPolicy::Always,
        );
        let hints = Hints::open(store, HintConfig::default()).unwrap();
        assert_eq!(
            hints.stats().pending.load(Ordering::Relaxed),
            2,
            "hints survive a restart"
        );
        let batch = hints.batch(None).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].owner, owner);
        // A hint merged after it was read is not deleted by the stale delivery.
        hints.add(&owner, b"k1", state("z")).await.unwrap();
        assert!(!hints.remove(&batch[0], true).await.unwrap());
        assert!(hints.remove(&batch[1], true).await.unwrap());
        assert_eq!(hints.stats().pending.load(Ordering::Relaxed), 1);
        assert_eq!(hints.stats().delivered.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_full_store_refuses_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _closed) = Store::start(
            Arc::new(FjallEngine::open(dir.path()).unwrap()),
            SyncPolicy::Always,
        );
        let config = HintConfig {
            max_bytes: 200,
            ..HintConfig::default()
        };
        let hints = Hints::open(store, config).unwrap();
        let owner = NodeId::new("n9");
        let mut refused = 0;
        for i in 0..20u8 {
            if hints.add(&owner, &[i], state("some value")).await.is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert_eq!(hints.stats().dropped.load(Ordering::Relaxed), refused);
        assert!(hints.stats().bytes.load(Ordering::Relaxed) <= 200);
    }
}
