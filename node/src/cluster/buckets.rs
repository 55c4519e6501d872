//! The buckets this node knows: name → type, N and default quorums.
//!
//! A bucket is created on every member (see
//! [`crate::replication::coordinator::Coordinator`]'s `CreateBucket`): each member accepts
//! a definition only if it holds none or an equal one, and stores it durably
//! before acknowledging. So a creation acknowledged by every member can
//! never meet a conflicting one. Definitions also travel with gossip, to
//! members that missed a creation; two conflicting definitions there (only
//! possible for creations that were not acknowledged) resolve to the smaller
//! props on every node, with an error logged.
//!
//! The bucket `default` always exists: a register bucket with the node's
//! `[replication]` settings.

use crate::storage::{Space, StorageError, Store};
use crate::util::lock::ReadExt;
use crate::util::LockExt;
use kvorum_client::{BucketProps, BucketType};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

/// Name of the bucket that exists without being created.
pub const DEFAULT_BUCKET: &str = "default";

/// `Meta` key of the stored definitions.
const BUCKETS_KEY: &[u8] = b"buckets";

/// Stored form; the tag is the format version.
#[derive(Serialize, Deserialize)]
enum Stored {
    V1(Vec<(String, PropsV1)>),
    /// With the default time to live.
    V2(Vec<(String, BucketProps)>),
}

/// Bucket props before the default time to live.
#[derive(Serialize, Deserialize)]
struct PropsV1 {
    bucket_type: BucketType,
    n: u8,
    r: u8,
    w: u8,
}

/// Why a definition was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DefineError {
    /// The bucket exists with other props.
    #[error("bucket {name:?} already exists as {existing:?}")]
    Conflict {
        /// The bucket.
        name: String,
        /// Its props.
        existing: BucketProps,
    },
    /// The props are invalid.
    #[error("invalid bucket props: {0}")]
    Invalid(String),
    /// The store failed; nothing was defined.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The registry (cheap to clone).
#[derive(Clone)]
pub struct Buckets {
    map: Arc<RwLock<BTreeMap<String, BucketProps>>>,
    default: BucketProps,
    store: Store,
}

impl Buckets {
    /// Loads the stored definitions; `default` are the props of [`DEFAULT_BUCKET`].
    pub fn open(store: Store, default: BucketProps) -> Result<Self, StorageError> {
        let map = match store.get(Space::Meta, BUCKETS_KEY)? {
            None => BTreeMap::new(),
            Some(b) => decode(&b)?,
        };
        Ok(Self {
            map: Arc::new(RwLock::new(map)),
            default,
            store,
        })
    }

    /// The props of a bucket, if it exists.
    pub fn get(&self, name: &str) -> Option<BucketProps> {
        if name == DEFAULT_BUCKET {
            return Some(self.default);
        }
        self.read().get(name).copied()
    }

    /// Every bucket, sorted by name (`default` included).
    pub fn all(&self) -> Vec<(String, BucketProps)> {
        let mut all: Vec<_> = self.read().iter().map(|(n, p)| (n.clone(), *p)).collect();
        all.push((DEFAULT_BUCKET.to_string(), self.default));
        all.sort();
        all
    }

    /// The created buckets (what gossip carries).
    pub fn defined(&self) -> Vec<(String, BucketProps)> {
        self.read().iter().map(|(n, p)| (n.clone(), *p)).collect()
    }

    /// N of the bucket a storage key belongs to (the default N for a key
    /// whose bucket is unknown here).
    pub fn n_of_key(&self, skey: &[u8]) -> usize {
        crate::replication::replica::bucket_of(skey)
            .and_then(|b| self.get(b))
            .unwrap_or(self.default)
            .n
            .into()
    }

    /// Defines a bucket durably. Equal props: no change (`Ok(false)`).
    /// Other props: [`DefineError::Conflict`], nothing changes.
    pub async fn define(&self, name: &str, props: BucketProps) -> Result<bool, DefineError> {
        props.validate().map_err(DefineError::Invalid)?;
        if let Some(existing) = self.get(name) {
            return if existing == props {
                Ok(false)
            } else {
                Err(DefineError::Conflict {
                    name: name.to_string(),
                    existing,
                })
            };
        }
        let n = name.to_string();
        let stored = self
            .store
            .update(Space::Meta, BUCKETS_KEY.to_vec(), move |current| {
                let mut map = match current.and_then(|c| c.map(decode).transpose()) {
                    Ok(m) => m.unwrap_or_default(),
                    Err(e) => return (None, Err(DefineError::Storage(e))),
                };
                match map.get(&n) {
                    Some(existing) if *existing != props => {
                        return (
                            None,
                            Err(DefineError::Conflict {
                                name: n,
                                existing: *existing,
                            }),
                        )
                    }
                    Some(_) => return (None, Ok((map, false))),
                    None => {}
                }
                map.insert(n, props);
                (Some(encode(&map)), Ok((map, true)))
            })
            .await??;
        let (map, changed) = stored;
        self.absorb(map);
        if changed {
            tracing::info!(bucket = name, ?props, "bucket defined");
        }
        Ok(changed)
    }

    /// Merges definitions learned by gossip; returns whether what this node
    /// uses changed (a bucket it did not know, or smaller props).
    /// A conflict resolves to the smaller props (the same on every node).
    pub async fn merge(&self, news: Vec<(String, BucketProps)>) -> Result<bool, StorageError> {
        let fresh: Vec<_> = news
            .into_iter()
            .filter(|(n, p)| n != DEFAULT_BUCKET && p.validate().is_ok() && self.get(n) != Some(*p))
            .collect();
        if fresh.is_empty() {
            return Ok(false);
        }
        let map = self
            .store
            .update(Space::Meta, BUCKETS_KEY.to_vec(), move |current| {
                let mut map = match current.and_then(|c| c.map(decode).transpose()) {
                    Ok(m) => m.unwrap_or_default(),
                    Err(e) => return (None, Err(e)),
                };
                let mut changed = false;
                for (n, p) in fresh {
                    match map.get(&n) {
                        Some(old) if *old <= p => {
                            if *old != p {
                                tracing::error!(bucket = %n, kept = ?old, dropped = ?p,
                                    "conflicting bucket definitions (an unacknowledged creation); keeping the smaller");
                            }
                        }
                        old => {
                            if let Some(old) = old {
                                tracing::error!(bucket = %n, kept = ?p, dropped = ?old,
                                    "conflicting bucket definitions (an unacknowledged creation); keeping the smaller");
                            } else {
                                tracing::info!(bucket = %n, props = ?p, "bucket learned");
                            }
                            map.insert(n, p);
                            changed = true;
                        }
                    }
                }
                let put = changed.then(|| encode(&map));
                (put, Ok(map))
            })
            .await??;
        Ok(self.absorb(map))
    }

    /// Joins a stored map into memory (min on conflicts, like the store);
    /// returns whether any entry in memory changed.
    fn absorb(&self, stored: BTreeMap<String, BucketProps>) -> bool {
        let mut map = self.map.locked();
        let mut changed = false;
        for (n, p) in stored {
            match map.get_mut(&n) {
                Some(e) if *e <= p => {}
                Some(e) => {
                    *e = p;
                    changed = true;
                }
                None => {
                    map.insert(n, p);
                    changed = true;
                }
            }
        }
        changed
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, BucketProps>> {
        self.map.read_locked()
    }
}

/// The props of the `default` bucket for a node's replication settings.
pub fn default_props(n: u8, r: u8, w: u8) -> BucketProps {
    BucketProps {
        bucket_type: BucketType::Register,
        n,
        r,
        w,
        default_ttl_ms: None,
    }
}

fn encode(map: &BTreeMap<String, BucketProps>) -> Vec<u8> {
    let list = map.iter().map(|(n, p)| (n.clone(), *p)).collect();
    kvorum_client::bytes::encode(&Stored::V2(list))
}

fn decode(bytes: &[u8]) -> Result<BTreeMap<String, BucketProps>, StorageError> {
    match postcard::from_bytes::<Stored>(bytes) {
        Ok(Stored::V1(list)) => Ok(list
            .into_iter()
            .map(|(name, p)| {
                let props = BucketProps {
                    bucket_type: p.bucket_type,
                    n: p.n,
                    r: p.r,
                    w: p.w,
                    default_ttl_ms: None,
                };
                (name, props)
            })
            .collect()),
        Ok(Stored::V2(list)) => Ok(list.into_iter().collect()),
        Err(e) => Err(StorageError::Corrupt(format!("bucket definitions: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FjallEngine, SyncPolicy};
    use std::sync::Arc;

    #[tokio::test]
    async fn merge_says_changed_only_when_what_the_node_uses_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _closed) = Store::start(
            Arc::new(FjallEngine::open(dir.path()).unwrap()),
            SyncPolicy::Always,
        );
        let b = Buckets::open(store, default_props(3, 2, 2)).unwrap();
        let small = default_props(2, 1, 1);
        let big = default_props(5, 3, 3);
        assert!(b.merge(vec![("x".into(), small)]).await.unwrap(), "new");
        assert!(!b.merge(vec![("x".into(), small)]).await.unwrap(), "known");
        // A conflicting, larger definition loses: nothing changes here.
        assert!(!b.merge(vec![("x".into(), big)]).await.unwrap());
        assert_eq!(b.get("x"), Some(small));
        // A smaller one wins.
        assert!(b.merge(vec![("y".into(), big)]).await.unwrap());
        assert!(b.merge(vec![("y".into(), small)]).await.unwrap());
        assert_eq!(b.get("y"), Some(small));
    }
}
