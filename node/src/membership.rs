//! Who is in the cluster, and the ring that follows from it.
//!
//! This is the simple form the core cluster needs: members are learned from
//! the seeds and spread by periodic gossip of the whole member list (newer
//! incarnation of a member wins). Failure detection, leave and removal come
//! later and plug in here.

use crate::peer::MemberInfo;
use kvorum_ring::{Member, NodeId, Ring};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
};

/// The member list and the ring computed from it.
#[derive(Debug)]
pub struct Membership {
    me: MemberInfo,
    vnodes: u32,
    view: RwLock<View>,
}

#[derive(Debug)]
struct View {
    members: BTreeMap<NodeId, MemberInfo>,
    ring: Arc<Ring>,
    /// Bumped on every change, whichever path it came by (own gossip round
    /// or a peer's), so the node can tell when to persist the list.
    version: u64,
}

impl Membership {
    /// A view holding only this node (and whatever `known` adds).
    pub fn new(me: MemberInfo, known: Vec<MemberInfo>, vnodes: u32) -> Self {
        let m = Self {
            view: RwLock::new(View {
                members: BTreeMap::from([(me.id.clone(), me.clone())]),
                ring: Arc::new(Ring::new([], vnodes)),
                version: 0,
            }),
            me,
            vnodes,
        };
        m.merge(known);
        m.rebuild();
        m
    }

    /// This node.
    pub fn me(&self) -> &MemberInfo {
        &self.me
    }

    /// The current ring (a pure function of the member set).
    pub fn ring(&self) -> Arc<Ring> {
        self.read().ring.clone()
    }

    /// Every known member, sorted by id.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.read().members.values().cloned().collect()
    }

    /// Changes so far; differs from an earlier reading iff the view changed.
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// Marks the view changed without a member change (e.g. a bucket with
    /// its own N was learned: the anti-entropy trees must be rebuilt).
    pub fn touch(&self) {
        self.write().version += 1;
    }

    /// Address of a member.
    pub fn addr_of(&self, id: &NodeId) -> Option<SocketAddr> {
        self.read().members.get(id).map(|m| m.addr)
    }

    /// The member at `addr`, if any.
    pub fn id_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.read()
            .members
            .values()
            .find(|m| m.addr == addr)
            .map(|m| m.id.clone())
    }

    /// Merges news of members; returns true when the view changed.
    pub fn merge(&self, news: Vec<MemberInfo>) -> bool {
        let changed = {
            let mut view = self.write();
            let mut changed = false;
            for m in news {
                if m.id == self.me.id {
                    continue; // nobody knows this node better than itself
                }
                match view.members.get(&m.id) {
                    Some(old) if old.incarnation >= m.incarnation => {}
                    _ => {
                        tracing::info!(node = %m.id, addr = %m.addr, "member learned");
                        view.members.insert(m.id.clone(), m);
                        view.version += 1;
                        changed = true;
                    }
                }
            }
            changed
        };
        if changed {
            self.rebuild();
        }
        changed
    }

    fn rebuild(&self) {
        let mut view = self.write();
        let ring = Ring::new(
            view.members.values().map(|m| Member {
                id: m.id.clone(),
                zone: m.zone.clone(),
            }),
            self.vnodes,
        );
        view.ring = Arc::new(ring);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        // A poisoned lock means a panic while holding it; the view is still a
        // consistent map (every write is a single insert), so keep serving.
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }
}
