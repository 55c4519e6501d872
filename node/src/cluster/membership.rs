//! Who is in the cluster, in which state, and the rings that follow.
//!
//! The member list is a map from node id to [`MemberInfo`]; entries merge by
//! version (higher wins, ties broken by [`newer`] on the content), so it is a
//! convergent structure: any two nodes that exchanged gossip hold the same
//! list. A node changes only its own entry, except that `kvorum admin
//! remove` marks a dead node `Leaving`, and any node marks a `Leaving` node
//! `Removed` once its ranges are held elsewhere (every node computes the
//! same entry for it, so those writes agree).
//!
//! Two rings follow from the list: the **read ring** (members `Up` or
//! `Leaving`: they hold their ranges and serve them) and the **write ring**
//! (members `Up` or `Joining`: who will own the ranges once the change
//! settles). When they differ, a topology change is in progress: writes go
//! to both preference lists, and each node that *gains* ranges (is in a
//! key's write list but not its read list) streams them in
//! ([`crate::repair::transfer`]). The pair of rings is named by [`View::hash`].

use crate::cluster::member::{MemberInfo, MemberState};
use crate::util::lock::ReadExt;
use crate::util::LockExt;
use kvorum_ring::{Member, NodeId, Ring};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
};

/// Whether entry `b` supersedes entry `a` of the same member: a higher
/// version, or the same version and a greater content (so that two nodes
/// that wrote the same version concurrently still agree on one entry).
pub fn newer(a: &MemberInfo, b: &MemberInfo) -> bool {
    let key = |m: &MemberInfo| {
        (
            m.version,
            m.state,
            m.state_since,
            m.seen_view,
            m.synced_view,
            m.addr,
            m.zone.clone(),
        )
    };
    key(b) > key(a)
}

/// The member list and the rings computed from it.
#[derive(Debug)]
pub struct Membership {
    me: NodeId,
    vnodes: u32,
    /// Started on an empty data directory and not yet up: news that this
    /// node was removed concerns an earlier life, and is overruled.
    fresh: std::sync::atomic::AtomicBool,
    view: RwLock<View>,
    /// Addresses for first contact (the config's seeds, and the seed of a
    /// `kvorum admin join`).
    seeds: RwLock<Vec<SocketAddr>>,
    /// Gossip rounds this node started.
    rounds: std::sync::atomic::AtomicU64,
}

/// One consistent reading of the member list.
#[derive(Debug, Clone)]
pub struct View {
    /// Every member ever known, tombstones (`Removed`) included.
    pub members: Arc<BTreeMap<NodeId, MemberInfo>>,
    /// Members `Up` or `Leaving`.
    pub read_ring: Arc<Ring>,
    /// Members `Up` or `Joining`.
    pub write_ring: Arc<Ring>,
    /// Names the pair of rings and the change in progress: equal on two
    /// nodes iff their rings (and the states that made them) are.
    pub hash: u64,
    /// The read ring before its last change, until every live member has
    /// seen the new one ([`Membership::settled`]): writes keep a quorum in
    /// it meanwhile, so a coordinator a gossip round behind still reads
    /// them.
    pub prev_read_ring: Option<Arc<Ring>>,
    /// The read rings between the read ring and the write ring. A change
    /// completes in one step (every joiner up and every leaver removed at
    /// once, [`Membership::mark_all`]), but a member's own newer entry can
    /// still reach a node before the mark of it (gossip merges entries
    /// one by one), so a node's read ring may pass through rings of some
    /// of them done. Writes keep a quorum
    /// in each ([`MAX_BETWEEN`] changing members at most; beyond, only one
    /// change at a time is covered), so a member done first never reads
    /// ranges that writes skipped (swarm seed 8: two joiners, the first up
    /// read a range only the final ring's owners had been written).
    pub between_rings: Arc<Vec<Arc<Ring>>>,
    /// The rings between of the view before the read ring's last change,
    /// kept as long as [`View::prev_read_ring`]: two coordinators may hear
    /// two members go up in either order, and one that heard A first must
    /// still write where one that heard B first reads.
    pub prev_between_rings: Arc<Vec<Arc<Ring>>>,
    /// Bumped on every change, whichever path it came by, so the node can
    /// tell when to persist the list.
    pub version: u64,
    /// Bumped only when where keys are placed may have changed: the read
    /// ring changed, or a bucket's N became known ([`Membership::touch`]).
    /// What depends on placement (the anti-entropy trees) is redone then,
    /// and not on the many changes that move no key (a member's seen view).
    pub placement: u64,
}

/// Most changing members (joining or leaving) whose every combination of
/// done and not done gets a ring in [`View::between_rings`] (2^4 - 2 = 14
/// rings); with more, only rings with one of them done are kept.
pub const MAX_BETWEEN: usize = 4;

/// The read rings between the read ring and the write ring of `members`
/// (see [`View::between_rings`]).
fn between(members: &BTreeMap<NodeId, MemberInfo>, vnodes: u32) -> Vec<Arc<Ring>> {
    let member = |m: &MemberInfo| Member {
        id: m.id.clone(),
        zone: m.zone.clone(),
    };
    let changing: Vec<&MemberInfo> = members
        .values()
        .filter(|m| matches!(m.state, MemberState::Joining | MemberState::Leaving))
        .collect();
    let k = changing.len();
    if k < 2 {
        return Vec::new();
    }
    // Subsets of the changing members that are done (which ones, by
    // index): all proper non-empty ones for few, else one at a time.
    let subsets: Vec<Vec<bool>> = if k <= MAX_BETWEEN {
        (1..(1usize << k) - 1)
            .map(|bits| (0..k).map(|i| bits & (1 << i) != 0).collect())
            .collect()
    } else {
        (0..k)
            .map(|one| (0..k).map(|i| i == one).collect())
            .collect()
    };
    subsets
        .into_iter()
        .map(|done| {
            let mut ring: Vec<Member> = members
                .values()
                .filter(|m| m.state == MemberState::Up)
                .map(member)
                .collect();
            for (i, m) in changing.iter().enumerate() {
                let is_done = done[i];
                // A joiner reads once done; a leaver until done.
                if (m.state == MemberState::Joining) == is_done {
                    ring.push(member(m));
                }
            }
            ring.sort_by(|a, b| a.id.cmp(&b.id));
            Arc::new(Ring::new(ring, vnodes))
        })
        .collect()
}

impl View {
    /// Whether a topology change is in progress (the rings differ).
    pub fn in_transition(&self) -> bool {
        self.read_ring.members() != self.write_ring.members()
    }

    /// Members that are not removed.
    pub fn live_members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members
            .values()
            .filter(|m| m.state != MemberState::Removed)
    }

    /// Members the read ring's last change removed (in the previous read
    /// ring, removed now), until the change settles: one that still runs
    /// and has not heard of its removal (its gossip lost) coordinates
    /// reads on the ring it knew, where it reads its own copy (swarm seed
    /// 5387: a leaver whose gossip stalled read its range alone for 4 s
    /// after writes stopped reaching it).
    pub fn departed(&self) -> impl Iterator<Item = &MemberInfo> {
        let prev = self.prev_read_ring.as_deref();
        self.members.values().filter(move |m| {
            m.state == MemberState::Removed
                && prev.is_some_and(|r| r.members().iter().any(|x| x.id == m.id))
        })
    }

    /// Whether `node` gains the key `skey` (replication factor `n`): it is
    /// in the key's write preference list but not its read one.
    pub fn gains(&self, node: &NodeId, skey: &[u8], n: usize) -> bool {
        let token = kvorum_ring::item::token(skey);
        self.gains_at(node, token, n)
    }

    fn gains_at(&self, node: &NodeId, token: u64, n: usize) -> bool {
        self.write_ring.preference_list_at(token, n).contains(node)
            && !self.read_ring.preference_list_at(token, n).contains(node)
    }

    /// The nodes that gain some range, for any of the replication factors
    /// `ns`, and how many ranges each gains (ranges are the segments between
    /// consecutive tokens of the two rings).
    pub fn gainers(&self, ns: &[usize]) -> BTreeMap<NodeId, u64> {
        let mut out = BTreeMap::new();
        if !self.in_transition() {
            return out;
        }
        let mut tokens = self.read_ring.tokens();
        tokens.extend(self.write_ring.tokens());
        tokens.sort_unstable();
        tokens.dedup();
        let candidates: Vec<NodeId> = self
            .write_ring
            .members()
            .iter()
            .map(|m| m.id.clone())
            .collect();
        for t in tokens {
            for &n in ns {
                let w = self.write_ring.preference_list_at(t, n);
                let r = self.read_ring.preference_list_at(t, n);
                for node in w.iter().filter(|x| !r.contains(x)) {
                    if candidates.contains(node) {
                        *out.entry(node.clone()).or_insert(0) += 1;
                    }
                }
            }
        }
        out
    }
}

impl Membership {
    /// A view holding this node and whatever `known` adds (the persisted
    /// list). `fresh`: the data directory was empty.
    pub fn new(me: MemberInfo, known: Vec<MemberInfo>, vnodes: u32, fresh: bool) -> Self {
        let m = Self {
            me: me.id.clone(),
            vnodes,
            fresh: fresh.into(),
            seeds: RwLock::new(Vec::new()),
            rounds: Default::default(),
            view: RwLock::new(View {
                members: Arc::new(BTreeMap::from([(me.id.clone(), me)])),
                read_ring: Arc::new(Ring::new([], vnodes)),
                write_ring: Arc::new(Ring::new([], vnodes)),
                prev_read_ring: None,
                between_rings: Default::default(),
                prev_between_rings: Default::default(),
                hash: 0,
                version: 0,
                placement: 0,
            }),
        };
        {
            let mut view = m.write();
            for k in known.into_iter().filter(|k| k.id != m.me) {
                Arc::make_mut(&mut view.members).insert(k.id.clone(), k);
            }
            m.rebuild(&mut view);
        }
        m
    }

    /// Counts a gossip round (the gossip task, once per round).
    pub fn count_round(&self) {
        self.rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Gossip rounds this node started.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Addresses for first contact.
    pub fn seeds(&self) -> Vec<SocketAddr> {
        self.seeds.read_locked().clone()
    }

    /// Adds addresses for first contact.
    pub fn add_seeds(&self, seeds: impl IntoIterator<Item = SocketAddr>) {
        let mut s = self.seeds.locked();
        for a in seeds {
            if !s.contains(&a) {
                s.push(a);
            }
        }
    }

    /// This node's id.
    pub fn me_id(&self) -> &NodeId {
        &self.me
    }

    /// This node's current entry.
    pub fn me(&self) -> MemberInfo {
        let view = self.read();
        view.members
            .get(&self.me)
            .cloned()
            .unwrap_or_else(|| unreachable_member(&self.me))
    }

    /// This node's state (without copying its entry: asked on every
    /// replica write).
    pub fn my_state(&self) -> MemberState {
        self.read()
            .members
            .get(&self.me)
            .map_or(MemberState::Removed, |m| m.state)
    }

    /// A snapshot of the whole view.
    pub fn view(&self) -> View {
        self.read().clone()
    }

    /// The read ring: where keys are read, and who coordinates writes.
    pub fn ring(&self) -> Arc<Ring> {
        self.read().read_ring.clone()
    }

    /// The write ring: who owns the ranges once the current change settles.
    pub fn write_ring(&self) -> Arc<Ring> {
        self.read().write_ring.clone()
    }

    /// The hash of the current pair of rings.
    pub fn view_hash(&self) -> u64 {
        self.read().hash
    }

    /// Members that are not removed, sorted by id.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.read().live_members().cloned().collect()
    }

    /// The members whose liveness matters: those not removed, and those
    /// removed by a change not yet settled ([`View::departed`]).
    pub fn watched(&self) -> Vec<MemberInfo> {
        let view = self.read();
        view.live_members()
            .chain(view.departed())
            .cloned()
            .collect()
    }

    /// Every member entry, tombstones included (what gossip carries).
    pub fn all_members(&self) -> Vec<MemberInfo> {
        self.read().members.values().cloned().collect()
    }

    /// One member's entry.
    pub fn get(&self, id: &NodeId) -> Option<MemberInfo> {
        self.read().members.get(id).cloned()
    }

    /// Changes so far; differs from an earlier reading iff the view changed.
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// Marks the view changed without a member change (e.g. a bucket with
    /// its own N was learned: the anti-entropy trees must be rebuilt).
    pub fn touch(&self) {
        let mut view = self.write();
        view.version += 1;
        view.placement += 1;
    }

    /// Changes of placement so far (see [`View::placement`]), with the read
    /// ring of that placement.
    pub fn placement_ring(&self) -> (u64, Arc<Ring>) {
        let view = self.read();
        (view.placement, view.read_ring.clone())
    }

    /// Address of a member.
    pub fn addr_of(&self, id: &NodeId) -> Option<SocketAddr> {
        self.read().members.get(id).map(|m| m.addr)
    }

    /// The (live) member at `addr`, if any.
    pub fn id_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.read()
            .live_members()
            .find(|m| m.addr == addr)
            .map(|m| m.id.clone())
    }

    /// Merges news of members; returns true when the view changed.
    pub fn merge(&self, news: Vec<MemberInfo>) -> bool {
        let mut view = self.write();
        let mut changed = false;
        for m in news {
            let Some(old) = view.members.get(&m.id) else {
                tracing::info!(node = %m.id, addr = %m.addr, state = m.state.as_str(), "member learned");
                Arc::make_mut(&mut view.members).insert(m.id.clone(), m);
                changed = true;
                continue;
            };
            if !newer(old, &m) {
                continue;
            }
            if m.id == self.me {
                // News of this node that is newer than its own entry: an
                // earlier life of it, or a removal decided elsewhere.
                let mut mine = old.clone();
                let fresh = self.fresh.load(std::sync::atomic::Ordering::SeqCst);
                if matches!(m.state, MemberState::Leaving | MemberState::Removed)
                    && m.state != mine.state
                    && !(fresh && m.state == MemberState::Removed)
                {
                    tracing::warn!(
                        state = m.state.as_str(),
                        "this node was marked {} by another node",
                        m.state.as_str()
                    );
                    mine.state = m.state;
                    mine.state_since = m.state_since;
                } else if m.state == MemberState::Up
                    && mine.state == MemberState::Joining
                    && (!fresh || m.synced_view == mine.synced_view)
                {
                    // Another node completed the join this node synced
                    // (every joiner goes up at once). Not after a wipe:
                    // the ranges it synced are gone, so it joins again.
                    tracing::info!("this node was marked up by another node");
                    mine.state = m.state;
                    mine.state_since = m.state_since;
                    self.fresh.store(false, std::sync::atomic::Ordering::SeqCst);
                }
                mine.version = m.version + 1;
                Arc::make_mut(&mut view.members).insert(m.id.clone(), mine);
                changed = true;
                continue;
            }
            if old.state != m.state {
                tracing::info!(node = %m.id, from = old.state.as_str(), to = m.state.as_str(), "member state changed");
            }
            Arc::make_mut(&mut view.members).insert(m.id.clone(), m);
            changed = true;
        }
        if changed {
            self.rebuild(&mut view);
        }
        changed
    }

    /// Sets this node's state (a new version of its entry).
    pub fn set_my_state(&self, state: MemberState) {
        let mut view = self.write();
        if let Some(me) = Arc::make_mut(&mut view.members).get_mut(&self.me) {
            if me.state == state {
                return;
            }
            tracing::info!(
                from = me.state.as_str(),
                to = state.as_str(),
                "this node's state changed"
            );
            me.state = state;
            me.version += 1;
            me.state_since = me.version;
        }
        if state == MemberState::Up {
            self.fresh.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        self.rebuild(&mut view);
    }

    /// Records that this node holds every range it gains in view `hash`.
    pub fn set_synced(&self, hash: u64) {
        let mut view = self.write();
        if let Some(me) = Arc::make_mut(&mut view.members).get_mut(&self.me) {
            if me.synced_view != hash {
                me.synced_view = hash;
                me.version += 1;
                view.version += 1;
            }
        }
    }

    /// Every live member has seen the current view: the previous read ring
    /// no longer needs writes.
    pub fn settled(&self, hash: u64) {
        let mut view = self.write();
        if view.hash == hash && view.prev_read_ring.is_some() {
            view.prev_read_ring = None;
            view.prev_between_rings = Default::default();
        }
    }

    /// Sets several members' states as one change of the view (one
    /// rebuild of the rings), this node's own entry included: completing a
    /// topology change moves every joiner up and every leaver out at once,
    /// so this node never holds a read ring between them, not even as the
    /// previous ring its writes still reach. Only while the view is still
    /// `hash`, the one the changes were decided on (gossip may have moved
    /// it since). Returns whether anything changed.
    pub fn mark_all(&self, hash: u64, changes: &[(NodeId, MemberState)]) -> bool {
        let mut view = self.write();
        if view.hash != hash {
            return false;
        }
        let mut changed = false;
        for (id, state) in changes {
            let Some(m) = Arc::make_mut(&mut view.members).get_mut(id) else {
                continue;
            };
            if m.state == *state {
                continue;
            }
            tracing::info!(node = %id, from = m.state.as_str(), to = state.as_str(), "member marked");
            m.state = *state;
            m.version += 1;
            m.state_since = m.version;
            if *id == self.me && *state == MemberState::Up {
                self.fresh.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            changed = true;
        }
        if changed {
            self.rebuild(&mut view);
        }
        changed
    }

    /// Sets another member's state (an operator's leave or remove); false
    /// if the member is unknown. Every node that marks the same entry the
    /// same way writes the same new entry.
    pub fn mark(&self, id: &NodeId, state: MemberState) -> bool {
        let mut view = self.write();
        let Some(m) = Arc::make_mut(&mut view.members).get_mut(id) else {
            return false;
        };
        if m.state != state {
            tracing::info!(node = %id, from = m.state.as_str(), to = state.as_str(), "member marked");
            m.state = state;
            m.version += 1;
            m.state_since = m.version;
            self.rebuild(&mut view);
        }
        true
    }

    /// Recomputes the rings and the view hash, and publishes that this node
    /// has seen the view.
    fn rebuild(&self, view: &mut View) {
        let members = |f: fn(MemberState) -> bool| {
            view.members
                .values()
                .filter(|m| f(m.state))
                .map(|m| Member {
                    id: m.id.clone(),
                    zone: m.zone.clone(),
                })
                .collect::<Vec<_>>()
        };
        let read = members(MemberState::reads);
        let write = members(MemberState::owns);
        let hash = {
            let mut bytes = Vec::new();
            // Which change this is: the same rings reached again later (a
            // node leaves, rejoins, leaves) is another change.
            for m in view.members.values() {
                if matches!(m.state, MemberState::Joining | MemberState::Leaving) {
                    bytes.extend_from_slice(m.id.as_str().as_bytes());
                    bytes.push(0);
                    bytes.extend_from_slice(&m.state_since.to_le_bytes());
                }
            }
            for (tag, list) in [(b'r', &read), (b'w', &write)] {
                bytes.push(tag);
                let mut sorted: Vec<_> = list.iter().collect();
                sorted.sort();
                for m in sorted {
                    bytes.extend_from_slice(m.id.as_str().as_bytes());
                    bytes.push(0);
                    bytes.extend_from_slice(m.zone.as_deref().unwrap_or("").as_bytes());
                    bytes.push(0);
                }
            }
            xxhash_rust::xxh3::xxh3_64(&bytes)
        };
        let mut rings_changed = false;
        if view.read_ring.members() != read.as_slice() {
            let old =
                std::mem::replace(&mut view.read_ring, Arc::new(Ring::new(read, self.vnodes)));
            if !old.is_empty() {
                view.prev_read_ring = Some(old);
                view.prev_between_rings = view.between_rings.clone();
            }
            view.placement += 1;
            rings_changed = true;
        }
        if view.write_ring.members() != write.as_slice() {
            view.write_ring = Arc::new(Ring::new(write, self.vnodes));
            rings_changed = true;
        }
        // The read and write rings name the changing members (joining:
        // written, not read; leaving: read, not written).
        if rings_changed {
            view.between_rings = Arc::new(between(&view.members, self.vnodes));
        }
        view.hash = hash;
        if let Some(me) = Arc::make_mut(&mut view.members).get_mut(&self.me) {
            if me.seen_view != hash {
                me.seen_view = hash;
                me.version += 1;
            }
        }
        view.version += 1;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        // A poisoned lock means a panic while holding it; the view is still a
        // consistent map (every write is a single insert), so keep serving.
        self.view.read_locked()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.locked()
    }
}

/// This node's entry is inserted at construction and never removed; this
/// stands in should that ever break, rather than panicking.
fn unreachable_member(id: &NodeId) -> MemberInfo {
    MemberInfo {
        id: id.clone(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        zone: None,
        version: 0,
        state: MemberState::Removed,
        state_since: 0,
        seen_view: 0,
        synced_view: 0,
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
