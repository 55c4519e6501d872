//! Sealed causal contexts: a context a node hands to a client carries a
//! MAC, so a client can return only contexts this cluster issued, and only
//! for the key it read.
//!
//! A context names dots (actor, counter). A forged one (a counter of
//! `u64::MAX - 1`, say) would make the next write's dot overflow, raise the
//! coordinator's dot floor past what it ever issued once the key is reaped,
//! or cover writes that were never made, so that later writes are
//! acknowledged and dropped. Bounding contexts by what the coordinating
//! replica has seen is not enough: a replica that missed a write sees less
//! than a context legitimately read elsewhere, and a forged counter of
//! another actor reaches that actor through replication. So contexts are
//! authenticated instead:
//!
//! - the sealed form is `raw || key_id (8 bytes, big-endian) || tag (16
//!   bytes)`, `tag = HMAC-SHA256(secret[key_id], len(skey) || skey || raw)`
//!   cut to 128 bits, where `skey` is the bucket and key (a context read
//!   from one key is refused on another);
//! - the secrets are the cluster's: each node makes one at first start
//!   (`key_id` = its creation time in milliseconds, then 16 random bits),
//!   keeps every secret it learns in its metadata, and spreads them by
//!   gossip over the peer channel (mutual TLS between node certificates,
//!   so only nodes see them). Every node seals with the oldest secret it
//!   knows, so once gossip has spread them all nodes seal alike; a context
//!   sealed with any known secret is accepted;
//! - the empty context needs no seal (it covers nothing).
//!
//! The guarantee: every dot in a context a node accepts was issued by its
//! actor for this key (the context was built by a node from stored state of
//! this key), so no client can make a dot overflow, raise a floor beyond
//! what a replica issued, or cover a write it has not read.

use crate::storage::{Space, StorageError, Store};
use crate::util::lock::ReadExt;
use crate::util::{LockExt, NodeEnv};
use kvorum_client::CausalContext;
use ring::hmac;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Bytes a seal adds to a context: the key id and the tag.
pub const SEAL_BYTES: usize = 8 + TAG_BYTES;
const TAG_BYTES: usize = 16;

/// `Meta` key of the stored secrets.
const SECRETS_KEY: &[u8] = b"context-secrets";

/// One secret: its id and 32 bytes.
pub type Secret = (u64, [u8; 32]);

/// Why a sealed context is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Too short to hold a seal.
    #[error("not a context this cluster issued (no seal)")]
    Unsealed,
    /// Sealed with a secret this node does not know (yet: a node that just
    /// joined learns the cluster's secrets within a gossip round).
    #[error("sealed with a key this node does not know (if the node just joined, retry)")]
    UnknownKey,
    /// The tag does not match: altered, forged, or read from another key.
    #[error("not a context this cluster issued for this key (seal does not match)")]
    BadSeal,
}

/// The cluster's context secrets (cheap to clone).
#[derive(Clone)]
pub struct ContextKeys {
    keys: Arc<RwLock<BTreeMap<u64, hmac::Key>>>,
    raw: Arc<RwLock<BTreeMap<u64, [u8; 32]>>>,
    store: Store,
}

impl ContextKeys {
    /// Loads the stored secrets; makes and stores one if there is none.
    /// A new secret is drawn from the node's generator and named by its
    /// wall clock.
    pub async fn load(store: Store, env: &NodeEnv) -> Result<Self, StorageError> {
        let raw = match store.get(Space::Meta, SECRETS_KEY)? {
            None => BTreeMap::new(),
            Some(b) => decode(&b)?,
        };
        let this = Self {
            keys: Arc::new(RwLock::new(BTreeMap::new())),
            raw: Arc::new(RwLock::new(BTreeMap::new())),
            store,
        };
        if raw.is_empty() {
            let mut secret = [0u8; 32];
            env.rng.fill(&mut secret);
            let id = (env.clock.wall_ms() << 16) | (env.rng.u64() & 0xffff);
            this.merge(vec![(id, secret)]).await?;
        } else {
            this.install(raw.into_iter().collect());
        }
        Ok(this)
    }

    /// Every secret known, for gossip.
    pub fn secrets(&self) -> Vec<Secret> {
        self.raw
            .read_locked()
            .iter()
            .map(|(i, s)| (*i, *s))
            .collect()
    }

    /// Adds the secrets not known yet, stores them; returns whether any
    /// was new.
    pub async fn merge(&self, secrets: Vec<Secret>) -> Result<bool, StorageError> {
        let new: Vec<Secret> = {
            let raw = self.raw.read_locked();
            secrets
                .into_iter()
                .filter(|(id, _)| !raw.contains_key(id))
                .collect()
        };
        if new.is_empty() {
            return Ok(false);
        }
        let all = self
            .store
            .update(Space::Meta, SECRETS_KEY.to_vec(), move |current| {
                let mut all: BTreeMap<u64, [u8; 32]> =
                    match current.and_then(|c| c.map(decode).transpose()) {
                        Ok(m) => m.unwrap_or_default(),
                        Err(e) => return (None, Err(e)),
                    };
                all.extend(new);
                let list: Vec<Secret> = all.iter().map(|(i, s)| (*i, *s)).collect();
                match postcard::to_stdvec(&list) {
                    Ok(bytes) => (Some(bytes), Ok(list)),
                    Err(e) => (
                        None,
                        Err(StorageError::Corrupt(format!("context secrets: {e}"))),
                    ),
                }
            })
            .await??;
        self.install(all);
        Ok(true)
    }

    fn install(&self, secrets: Vec<Secret>) {
        let mut keys = self.keys.locked();
        let mut raw = self.raw.locked();
        for (id, s) in secrets {
            keys.insert(id, hmac::Key::new(hmac::HMAC_SHA256, &s));
            raw.insert(id, s);
        }
    }

    /// `raw` sealed for the key `skey` (the empty context stays empty).
    pub fn seal(&self, skey: &[u8], raw: Vec<u8>) -> CausalContext {
        if raw.is_empty() {
            return CausalContext(raw);
        }
        let keys = self.keys.read_locked();
        let Some((id, key)) = keys.iter().next() else {
            // `load` always installs one.
            return CausalContext(raw);
        };
        let tag = tag(key, skey, &raw);
        let mut sealed = raw;
        sealed.extend_from_slice(&id.to_be_bytes());
        sealed.extend_from_slice(&tag.as_ref()[..TAG_BYTES]);
        CausalContext(sealed)
    }

    /// The raw context of `ctx`, if a node of this cluster sealed it for
    /// `skey`.
    pub fn open<'a>(&self, skey: &[u8], ctx: &'a CausalContext) -> Result<&'a [u8], SealError> {
        let bytes = &ctx.0;
        if bytes.is_empty() {
            return Ok(bytes);
        }
        let Some(split) = bytes.len().checked_sub(SEAL_BYTES) else {
            return Err(SealError::Unsealed);
        };
        let (raw, seal) = bytes.split_at(split);
        let (id, given) = seal.split_at(8);
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(id);
        let keys = self.keys.read_locked();
        let key = keys
            .get(&u64::from_be_bytes(id_bytes))
            .ok_or(SealError::UnknownKey)?;
        let want = tag(key, skey, raw);
        // Constant time: a forger learns nothing from how long a refusal took.
        if ring_eq(&want.as_ref()[..TAG_BYTES], given) {
            Ok(raw)
        } else {
            Err(SealError::BadSeal)
        }
    }
}

fn decode(bytes: &[u8]) -> Result<BTreeMap<u64, [u8; 32]>, StorageError> {
    postcard::from_bytes::<Vec<Secret>>(bytes)
        .map(|v| v.into_iter().collect())
        .map_err(|_| StorageError::Corrupt("context secrets".into()))
}

fn tag(key: &hmac::Key, skey: &[u8], raw: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(&(skey.len() as u64).to_be_bytes());
    ctx.update(skey);
    ctx.update(raw);
    ctx.sign()
}

fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;
    use crate::storage::SyncPolicy;

    async fn keys() -> ContextKeys {
        let (store, _closed) = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::Always);
        ContextKeys::load(store, &crate::util::NodeEnv::real())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_sealed_context_opens_only_for_its_key_and_unaltered() {
        let k = keys().await;
        let sealed = k.seal(b"b/k", vec![1, 2, 3]);
        assert_eq!(sealed.0.len(), 3 + SEAL_BYTES);
        assert_eq!(k.open(b"b/k", &sealed), Ok(&[1u8, 2, 3][..]));
        assert_eq!(k.open(b"b/other", &sealed), Err(SealError::BadSeal));
        for i in 0..sealed.0.len() {
            let mut altered = sealed.clone();
            altered.0[i] ^= 1;
            assert!(k.open(b"b/k", &altered).is_err(), "byte {i} altered");
        }
        assert_eq!(
            k.open(b"b/k", &CausalContext(vec![1, 2])),
            Err(SealError::Unsealed)
        );
        assert_eq!(k.open(b"b/k", &CausalContext::empty()), Ok(&[][..]));
    }

    #[tokio::test]
    async fn nodes_that_learned_each_others_secrets_accept_each_others_contexts() {
        let (a, b) = (keys().await, keys().await);
        let from_a = a.seal(b"k", vec![9]);
        assert_eq!(b.open(b"k", &from_a), Err(SealError::UnknownKey));
        b.merge(a.secrets()).await.unwrap();
        a.merge(b.secrets()).await.unwrap();
        assert_eq!(b.open(b"k", &from_a), Ok(&[9u8][..]));
        // Both now seal with the same (oldest) secret.
        assert_eq!(a.seal(b"k", vec![7]), b.seal(b"k", vec![7]));
    }
}
