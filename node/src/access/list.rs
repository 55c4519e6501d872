//! The cluster's access list: grants (which client certificates may read or
//! write which buckets) and revoked certificates.
//!
//! Every entry is last-writer-wins on a stamp (milliseconds, then the node
//! that made the change), so merging is commutative, associative and
//! idempotent: every node that has seen the same changes holds the same
//! list, whatever the order. A change is made on one node, sent to every
//! member at once, and spread by gossip to any that missed it; each node
//! stores the list in its metadata before it uses it.
//!
//! **The default of a new cluster is an empty list: no client certificate
//! may read or write anything** until an admin grants it (`kvorum admin
//! grant`). `kvorum dev` grants its client every bucket. A node upgraded
//! from a version without access lists (its data directory holds buckets
//! or members but no list) starts with one grant, every client on every
//! bucket, stamped at time 0, so its applications keep working and any
//! later change overrides it.

use crate::net::identity::{Caller, Role};
use crate::storage::{Space, StorageError, Store};
use crate::util::clock::SharedClock;
use crate::util::lock::ReadExt;
use crate::util::LockExt;
use kvorum_client::{AccessList as AccessView, Grant, GrantScope, Revocation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// `Meta` key of the stored list.
const ACCESS_KEY: &[u8] = b"access-list";

/// The client name of a grant to every client certificate.
pub const ANY_CLIENT: &str = "*";

/// When a change was made, and where: the newer wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// Wall-clock milliseconds of the node that made the change.
    pub ms: u64,
    /// That node (breaks ties).
    pub node: String,
}

/// The list as it is stored and gossiped: each entry with its stamp.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entries {
    /// (client, scope) → (read, write, stamp).
    pub grants: BTreeMap<(String, GrantScope), (bool, bool, Stamp)>,
    /// certificate → (revoked, stamp).
    pub revoked: BTreeMap<Revocation, (bool, Stamp)>,
}

impl Entries {
    /// Takes every entry of `other` that is newer; returns (any grant
    /// changed, any revocation changed).
    fn merge(&mut self, other: Entries) -> (bool, bool) {
        let mut changed = (false, false);
        for (k, v) in other.grants {
            if self.grants.get(&k).is_none_or(|mine| mine.2 < v.2) {
                self.grants.insert(k, v);
                changed.0 = true;
            }
        }
        for (k, v) in other.revoked {
            if self.revoked.get(&k).is_none_or(|mine| mine.1 < v.1) {
                self.revoked.insert(k, v);
                changed.1 = true;
            }
        }
        changed
    }

    fn newest_ms(&self) -> u64 {
        let g = self.grants.values().map(|v| v.2.ms);
        let r = self.revoked.values().map(|v| v.1.ms);
        g.chain(r).max().unwrap_or(0)
    }
}

/// Why a change to the list was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The grant or revocation is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The store failed; nothing changed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The node's copy of the access list (cheap to clone).
#[derive(Clone)]
pub struct Access {
    entries: Arc<RwLock<Entries>>,
    store: Store,
    me: String,
    clock: SharedClock,
    /// Bumped whenever a revocation changes.
    revocations: watch::Sender<u64>,
}

impl Access {
    /// Loads the stored list. A data directory without one is new (`fresh`:
    /// the list starts empty) or predates access lists (it starts with the
    /// upgrade grant; see the module documentation); either way the list
    /// is stored at once, so the next start finds it.
    /// Entries made here are stamped by `clock`.
    pub async fn load(
        store: Store,
        me: &str,
        fresh: bool,
        clock: SharedClock,
    ) -> Result<Self, StorageError> {
        let stored = store.get(Space::Meta, ACCESS_KEY)?;
        let missing = stored.is_none();
        let entries = match stored {
            Some(b) => decode(&b)?,
            None if !fresh => {
                let mut e = Entries::default();
                e.grants.insert(
                    (ANY_CLIENT.to_string(), GrantScope::Prefix(String::new())),
                    (
                        true,
                        true,
                        Stamp {
                            ms: 0,
                            node: "upgrade".into(),
                        },
                    ),
                );
                tracing::warn!(
                    "no access list stored: this node predates them, so every client certificate \
                     keeps access to every bucket until an admin changes the grant \
                     (kvorum admin grant '*' --prefix '' ...; docs/security.md)"
                );
                e
            }
            None => Entries::default(),
        };
        if missing {
            let bytes = postcard::to_stdvec(&entries)
                .map_err(|e| StorageError::Corrupt(format!("access list: {e}")))?;
            store
                .update(Space::Meta, ACCESS_KEY.to_vec(), move |_| (Some(bytes), ()))
                .await?;
        }
        Ok(Self {
            entries: Arc::new(RwLock::new(entries)),
            store,
            me: me.to_string(),
            clock,
            revocations: watch::channel(0).0,
        })
    }

    /// Every entry, for gossip and for pushing a change to the members.
    pub fn entries(&self) -> Entries {
        self.entries.read_locked().clone()
    }

    /// The list as clients see it.
    pub fn view(&self) -> AccessView {
        let e = self.entries.read_locked();
        AccessView {
            grants: e
                .grants
                .iter()
                .filter(|(_, (r, w, _))| *r || *w)
                .map(|((client, scope), (read, write, _))| Grant {
                    client: client.clone(),
                    scope: scope.clone(),
                    read: *read,
                    write: *write,
                })
                .collect(),
            revoked: e
                .revoked
                .iter()
                .filter(|(_, (r, _))| *r)
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    /// Whether `caller`, a client certificate, may read (or, with `write`,
    /// write) `bucket`.
    pub fn allows(&self, caller: &Caller, bucket: &str, write: bool) -> bool {
        let e = self.entries.read_locked();
        e.grants.iter().any(|((client, scope), (r, w, _))| {
            let named = client == ANY_CLIENT || caller.name.as_deref() == Some(client.as_str());
            named && scope.covers(bucket) && if write { *w } else { *r }
        })
    }

    /// Whether `caller`'s certificate is revoked.
    pub fn is_revoked(&self, caller: &Caller) -> bool {
        let e = self.entries.read_locked();
        if e.revoked.is_empty() {
            return false;
        }
        let by_serial = Revocation::Serial(caller.serial.clone());
        let hit = |k: &Revocation| e.revoked.get(k).is_some_and(|(r, _)| *r);
        hit(&by_serial)
            || caller.name.as_ref().is_some_and(|name| {
                hit(&Revocation::Name {
                    role: caller.role.as_str().to_string(),
                    name: name.clone(),
                })
            })
    }

    /// Wakes whenever a revocation changes.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Sets a grant (neither read nor write: removes it), stamped now.
    pub async fn grant(&self, g: Grant) -> Result<(), AccessError> {
        if g.client != ANY_CLIENT && !crate::net::identity::is_label(&g.client) {
            return Err(AccessError::Invalid(format!(
                "{:?} is not a client name: one DNS label, or * for every client",
                g.client
            )));
        }
        if matches!(&g.scope, GrantScope::Bucket(b) if b.is_empty()) {
            return Err(AccessError::Invalid(
                "an empty bucket name: use a prefix of \"\" for every bucket".into(),
            ));
        }
        let mut change = Entries::default();
        change
            .grants
            .insert((g.client, g.scope), (g.read, g.write, self.stamp()));
        self.merge(change).await?;
        Ok(())
    }

    /// Revokes a certificate, stamped now.
    pub async fn revoke(&self, r: Revocation) -> Result<(), AccessError> {
        match &r {
            Revocation::Serial(s) if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                return Err(AccessError::Invalid(format!(
                    "{s:?} is not a serial number (hex, as admin status prints it)"
                )))
            }
            Revocation::Name { role, name }
                if !["node", "admin", "client"].contains(&role.as_str())
                    || !crate::net::identity::is_label(name) =>
            {
                return Err(AccessError::Invalid(format!(
                    "{role} {name}: the role is node, admin or client, the name one DNS label"
                )))
            }
            _ => {}
        }
        let r = match r {
            Revocation::Serial(s) => Revocation::Serial(s.to_ascii_lowercase()),
            other => other,
        };
        let mut change = Entries::default();
        change.revoked.insert(r, (true, self.stamp()));
        self.merge(change).await?;
        Ok(())
    }

    /// A stamp newer than every entry this node holds.
    fn stamp(&self) -> Stamp {
        let newest = self.entries.read_locked().newest_ms();
        Stamp {
            ms: self.clock.wall_ms().max(newest + 1),
            node: self.me.clone(),
        }
    }

    /// Takes the newer entries of `other`, stores the list; returns
    /// whether anything changed.
    pub async fn merge(&self, other: Entries) -> Result<bool, StorageError> {
        let (grants, revoked) = {
            let mut probe = self.entries();
            probe.merge(other.clone())
        };
        if !grants && !revoked {
            return Ok(false);
        }
        let merged = self
            .store
            .update(Space::Meta, ACCESS_KEY.to_vec(), move |current| {
                let mut stored = match current.and_then(|c| c.map(decode).transpose()) {
                    Ok(e) => e.unwrap_or_default(),
                    Err(e) => return (None, Err(e)),
                };
                stored.merge(other);
                match postcard::to_stdvec(&stored) {
                    Ok(bytes) => (Some(bytes), Ok(stored)),
                    Err(e) => (
                        None,
                        Err(StorageError::Corrupt(format!("access list: {e}"))),
                    ),
                }
            })
            .await??;
        let revoked = {
            let mut e = self.entries.locked();
            e.merge(merged).1
        };
        if revoked {
            self.revocations.send_modify(|v| *v += 1);
        }
        Ok(true)
    }
}

fn decode(bytes: &[u8]) -> Result<Entries, StorageError> {
    postcard::from_bytes(bytes).map_err(|_| StorageError::Corrupt("access list".into()))
}

/// Whether a request of `role` on a bucket needs the access list: only
/// client certificates are bound by it.
pub fn bound_by_list(role: Role) -> bool {
    role == Role::Client
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryEngine, SyncPolicy};
    use crate::util::clock::SystemClock;
    use proptest::prelude::*;

    fn stamp(ms: u64, node: &str) -> Stamp {
        Stamp {
            ms,
            node: node.into(),
        }
    }

    fn entries(changes: &[(u8, bool, u64)]) -> Entries {
        let mut e = Entries::default();
        for &(client, read, ms) in changes {
            let mut one = Entries::default();
            one.grants.insert(
                (format!("c{client}"), GrantScope::Prefix(String::new())),
                (read, false, stamp(ms, "n")),
            );
            e.merge(one);
        }
        e
    }

    proptest! {
        /// Merging is commutative, associative and idempotent.
        #[test]
        fn merge_laws(
            a in proptest::collection::vec((0u8..4, any::<bool>(), 0u64..20), 0..8),
            b in proptest::collection::vec((0u8..4, any::<bool>(), 0u64..20), 0..8),
            c in proptest::collection::vec((0u8..4, any::<bool>(), 0u64..20), 0..8),
        ) {
            let (a, b, c) = (entries(&a), entries(&b), entries(&c));
            let mut ab = a.clone();
            ab.merge(b.clone());
            let mut ba = b.clone();
            ba.merge(a.clone());
            // Equal stamps with different values: the first seen stays, so
            // compare only where stamps are distinct per key.
            let distinct = |x: &Entries, y: &Entries| x.grants.iter().all(|(k, v)| {
                y.grants.get(k).is_none_or(|w| w.2 != v.2 || w == v)
            });
            if distinct(&a, &b) {
                prop_assert_eq!(&ab, &ba);
            }
            let mut ab_c = ab.clone();
            ab_c.merge(c.clone());
            let mut bc = b.clone();
            bc.merge(c.clone());
            let mut a_bc = a.clone();
            a_bc.merge(bc);
            if distinct(&a, &b) && distinct(&b, &c) && distinct(&a, &c) {
                prop_assert_eq!(&ab_c, &a_bc);
            }
            let mut aa = a.clone();
            aa.merge(a.clone());
            prop_assert_eq!(aa, a);
        }
    }

    #[tokio::test]
    async fn grants_match_name_scope_and_permission_and_removal_wins_when_newer() {
        let (store, _closed) = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::Always);
        let access = Access::load(store, "n1", true, SystemClock::shared())
            .await
            .unwrap();
        let shop = Caller {
            role: Role::Client,
            name: Some("shop".into()),
            serial: "01".into(),
            not_after: 0,
        };
        assert!(
            !access.allows(&shop, "orders", false),
            "a new cluster denies"
        );
        assert!(access.view().grants.is_empty());
        access
            .grant(Grant {
                client: "shop".into(),
                scope: GrantScope::Prefix("shop-".into()),
                read: true,
                write: false,
            })
            .await
            .unwrap();
        assert!(access.allows(&shop, "shop-carts", false));
        assert!(!access.allows(&shop, "shop-carts", true));
        assert!(!access.allows(&shop, "orders", false));
        let other = Caller {
            name: Some("other".into()),
            ..shop.clone()
        };
        assert!(!access.allows(&other, "shop-carts", false));
        access
            .grant(Grant {
                client: "shop".into(),
                scope: GrantScope::Prefix("shop-".into()),
                read: false,
                write: false,
            })
            .await
            .unwrap();
        assert!(!access.allows(&shop, "shop-carts", false));
        assert!(access.view().grants.is_empty());
        // A stale change from another node does not bring it back.
        let mut stale = Entries::default();
        stale.grants.insert(
            ("shop".into(), GrantScope::Prefix("shop-".into())),
            (true, true, stamp(1, "n2")),
        );
        assert!(!access.merge(stale).await.unwrap());
        assert!(!access.allows(&shop, "shop-carts", false));
    }

    #[tokio::test]
    async fn revocation_by_serial_or_name() {
        let (store, _closed) = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::Always);
        let access = Access::load(store, "n1", true, SystemClock::shared())
            .await
            .unwrap();
        let laptop = Caller {
            role: Role::Client,
            name: Some("laptop".into()),
            serial: "0abc".into(),
            not_after: 0,
        };
        let mut changes = access.revocations();
        assert!(!access.is_revoked(&laptop));
        access
            .revoke(Revocation::Serial("0ABC".into()))
            .await
            .unwrap();
        assert!(access.is_revoked(&laptop));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let admin = Caller {
            role: Role::Admin,
            name: Some("ops".into()),
            serial: "02".into(),
            not_after: 0,
        };
        access
            .revoke(Revocation::Name {
                role: "admin".into(),
                name: "ops".into(),
            })
            .await
            .unwrap();
        assert!(access.is_revoked(&admin));
        assert!(changes.has_changed().unwrap());
        assert!(access
            .revoke(Revocation::Serial("xyz".into()))
            .await
            .is_err());
    }
}
