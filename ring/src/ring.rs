//! The token ring: [`Ring`], preference lists, the zone rule, and [`Walk`].

use std::collections::BTreeMap;
use std::fmt;
use std::iter::FusedIterator;

use xxhash_rust::xxh3::xxh3_64;

use crate::member::{Member, NodeId};
use crate::token::{self, write_vnode_key};

/// Virtual nodes per physical node unless configured otherwise.
///
/// A node's share of the circle is the sum of `V` random arcs, so it deviates
/// from the fair share by about `1/sqrt(V)` (relative standard deviation),
/// and the worst of several nodes by more. Measured over 300 random sets of
/// 5 node names (exact arc lengths, `docs/ring.md`), the share of keys a node
/// is first replica for stayed within ±10% of the fair share in 73% of the
/// sets at 256 vnodes, 96% at 512 and 99.7% at 1024 (worst node 95th
/// percentile: 14.9%, 9.5%, 7.1%). 1024 is the smallest power of two that
/// meets the ±10% balance bar for practically any choice of names.
///
/// The cost is memory and lookup depth, not lookup work per replica: the
/// table holds `nodes × V` 16-byte entries (80 KiB for 5 nodes, 1.6 MiB for
/// 100) and a lookup is one binary search over them (~17 steps at 100 nodes)
/// plus a walk whose length depends on the node count, not on `V`. Changing
/// it moves data: every node of a cluster must use the same value.
pub const DEFAULT_VNODES: u32 = 1024;

/// Consistent-hash ring with virtual nodes: where every key lives.
///
/// Built from a member set with [`Ring::new`]; immutable afterwards (a
/// membership change builds a new ring). See the crate docs for the
/// invariants.
#[derive(Clone, PartialEq, Eq)]
pub struct Ring {
    /// Members sorted by id, one entry per id.
    members: Vec<Member>,
    /// `(token, index into members)`, sorted. Equal tokens (a 64-bit hash
    /// collision) are ordered by member index, i.e. by node id.
    tokens: Vec<(u64, usize)>,
    /// The zone class of each member (parallel to `members`) when zone logic
    /// is on; empty when no member has a zone.
    zone_of: Vec<usize>,
    /// Number of distinct zone classes (members without a zone form one);
    /// 0 when zone logic is off.
    zone_count: usize,
    /// Tokens per member (at least 1).
    vnodes_per_node: u32,
}

impl Ring {
    /// Builds the ring of a member set, with `vnodes_per_node` tokens per
    /// member (0 is raised to 1).
    ///
    /// The order of the input and duplicates do not matter: the same set
    /// gives an identical ring. If one id appears with different zones, the
    /// smallest zone wins (`None` before any `Some`), whatever the order.
    pub fn new(members: impl IntoIterator<Item = Member>, vnodes_per_node: u32) -> Ring {
        let mut members: Vec<Member> = members.into_iter().collect();
        // Sorting on (id, zone) then keeping the first of each id makes the
        // choice among conflicting duplicates independent of input order.
        members.sort_unstable();
        members.dedup_by(|later, first| later.id == first.id);

        let vnodes_per_node = vnodes_per_node.max(1);
        let mut tokens = Vec::with_capacity(members.len().saturating_mul(vnodes_per_node as usize));
        let mut canonical = Vec::new();
        for (index, member) in members.iter().enumerate() {
            for vnode in 0..vnodes_per_node {
                write_vnode_key(&mut canonical, &member.id, vnode);
                tokens.push((xxh3_64(&canonical), index));
            }
        }
        // Total order on (token, member index): collisions resolve by id.
        tokens.sort_unstable();

        let (zone_of, zone_count) = zone_classes(&members);
        Ring {
            members,
            tokens,
            zone_of,
            zone_count,
            vnodes_per_node,
        }
    }

    /// The members, sorted by id, without duplicates.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of (distinct) members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the ring has no member (every preference list is then empty).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.member_index(id).is_some()
    }

    /// Tokens per member this ring was built with (after raising 0 to 1).
    pub fn vnodes_per_node(&self) -> u32 {
        self.vnodes_per_node
    }

    /// Stable 64-bit hash of the key bytes (xxh3-64): the key's position on
    /// the ring. Same value on every platform, Rust version and process.
    pub fn key_token(key: &[u8]) -> u64 {
        token::key_token(key)
    }

    /// The key's preference list: the first `n` distinct physical nodes
    /// clockwise from the key's token, `min(n, len)` of them, first replica
    /// (the "coordinator" in Dynamo §4.3) first.
    ///
    /// Zone rule, when at least one member has a zone: walking clockwise, a
    /// node is taken only if its zone is not yet in the list, until `n` zones
    /// (or every zone) are in; if fewer than `n` zones exist, the list is then
    /// filled with the remaining nodes in clockwise order. So with at least
    /// `n` zones the `n` nodes are in `n` distinct zones. Members without a
    /// zone count as one zone together.
    ///
    /// Cost: one binary search (`O(log(len × vnodes))`) plus a clockwise walk
    /// until enough distinct nodes (and zones) are found.
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        self.preference_list_at(token::key_token(key), n)
    }

    /// The preference list of every key whose token is `key_token`; see
    /// [`Ring::preference_list`]. All keys of one range (see
    /// [`Ring::tokens`]) share it.
    ///
    /// ```
    /// use kvorum_ring::{key_token, Member, Ring};
    /// let ring = Ring::new(["a", "b", "c"].map(Member::new), 64);
    /// assert_eq!(
    ///     ring.preference_list_at(key_token(b"k"), 2),
    ///     ring.preference_list(b"k", 2)
    /// );
    /// ```
    pub fn preference_list_at(&self, key_token: u64, n: usize) -> Vec<NodeId> {
        let n = n.min(self.members.len());
        if n == 0 {
            return Vec::new();
        }
        let mut walk = self.walk_from(key_token);
        let chosen: Vec<usize> = if self.zone_count == 0 {
            walk.take(n).collect()
        } else {
            let zones_wanted = n.min(self.zone_count);
            let mut zone_used = vec![false; self.zone_count];
            let mut chosen = Vec::with_capacity(n);
            // Nodes passed over because their zone was taken, in clockwise
            // order: they come before anything still unwalked when filling.
            let mut passed_over = Vec::new();
            for member in walk.by_ref() {
                let zone = self.zone_of[member];
                if zone_used[zone] {
                    passed_over.push(member);
                    continue;
                }
                zone_used[zone] = true;
                chosen.push(member);
                if chosen.len() == zones_wanted {
                    break;
                }
            }
            let missing = n - chosen.len();
            chosen.extend(passed_over.into_iter().chain(walk).take(missing));
            chosen
        };
        chosen
            .into_iter()
            .map(|member| self.members[member].id.clone())
            .collect()
    }

    /// Every token of the ring, in ascending order (duplicates from a hash
    /// collision appear once). A token `t` ends the range of key tokens
    /// after the previous token, up to and including `t` (the first token's
    /// range wraps around from the last): every key of a range has the
    /// preference list [`Ring::preference_list_at`]`(t, n)`.
    ///
    /// ```
    /// use kvorum_ring::{Member, Ring};
    /// let ring = Ring::new(["a", "b"].map(Member::new), 8);
    /// let tokens = ring.tokens();
    /// assert_eq!(tokens.len(), 16);
    /// assert!(tokens.windows(2).all(|w| w[0] < w[1]));
    /// ```
    pub fn tokens(&self) -> Vec<u64> {
        let mut t: Vec<u64> = self.tokens.iter().map(|&(t, _)| t).collect();
        t.dedup();
        t
    }

    /// The share (0 to 1) of the token space whose first replica is `id`:
    /// roughly the share of keys it coordinates. 0 for a non-member.
    ///
    /// ```
    /// use kvorum_ring::{Member, NodeId, Ring};
    /// let ring = Ring::new([Member::new("a"), Member::new("b")], 64);
    /// let total = ring.ownership(&NodeId::new("a")) + ring.ownership(&NodeId::new("b"));
    /// assert!((total - 1.0).abs() < 1e-9);
    /// ```
    pub fn ownership(&self, id: &NodeId) -> f64 {
        let Some(me) = self.members.iter().position(|m| m.id == *id) else {
            return 0.0;
        };
        if self.tokens.len() == 1 {
            return 1.0;
        }
        let mut owned: u128 = 0;
        for (i, (token, member)) in self.tokens.iter().enumerate() {
            if *member != me {
                continue;
            }
            // A token owns the keys after the previous token, up to itself.
            let prev = if i == 0 {
                self.tokens[self.tokens.len() - 1].0
            } else {
                self.tokens[i - 1].0
            };
            owned += u128::from(token.wrapping_sub(prev));
        }
        owned as f64 / 2f64.powi(64)
    }

    /// Every distinct physical node, in clockwise order from the key's token
    /// (no zone rule). Its first `n` items are the preference list when zones
    /// are off; the items after them are the "next healthy nodes on the ring"
    /// for sloppy-quorum fallbacks (Dynamo §4.6).
    pub fn walk(&self, key: &[u8]) -> Walk<'_> {
        Walk {
            members: &self.members,
            indices: self.walk_indices(key),
        }
    }

    /// As [`Ring::walk`], from ring position `key_token` (an item's is
    /// [`crate::item::token`]).
    pub fn walk_at(&self, key_token: u64) -> Walk<'_> {
        Walk {
            members: &self.members,
            indices: self.walk_from(key_token),
        }
    }

    /// The preference list of an item: [`Ring::preference_list_at`] its
    /// storage key's [`crate::item::token`], the same for every item of a
    /// partition.
    ///
    /// ```
    /// use kvorum_ring::{item, Member, Ring};
    /// let ring = Ring::new(["a", "b", "c", "d"].map(Member::new), 16);
    /// let one = ring.item_preference_list(&item::storage_key("b", b"p", b"1"), 2);
    /// assert_eq!(one, ring.item_preference_list(&item::storage_key("b", b"p", b"2"), 2));
    /// ```
    pub fn item_preference_list(&self, skey: &[u8], n: usize) -> Vec<NodeId> {
        self.preference_list_at(crate::item::token(skey), n)
    }

    /// The member index of `id`, by binary search over the sorted members.
    fn member_index(&self, id: &NodeId) -> Option<usize> {
        self.members
            .binary_search_by(|member| member.id.cmp(id))
            .ok()
    }

    /// Distinct member indices clockwise from the key's token.
    fn walk_indices(&self, key: &[u8]) -> WalkIndices<'_> {
        self.walk_from(token::key_token(key))
    }

    /// Distinct member indices clockwise from ring position `key_token`.
    fn walk_from(&self, key_token: u64) -> WalkIndices<'_> {
        // The key belongs to the first vnode whose token is >= the key's
        // token, wrapping past u64::MAX to the smallest token.
        let first = self.tokens.partition_point(|&(token, _)| token < key_token);
        let start = if first == self.tokens.len() { 0 } else { first };
        WalkIndices {
            tokens: &self.tokens,
            position: start,
            steps_left: self.tokens.len(),
            seen: vec![false; self.members.len()],
            unseen: self.members.len(),
        }
    }
}

impl Default for Ring {
    /// The empty ring with [`DEFAULT_VNODES`].
    fn default() -> Ring {
        Ring::new([], DEFAULT_VNODES)
    }
}

impl fmt::Debug for Ring {
    /// Members and sizes; the token table itself is too long to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("members", &self.members)
            .field("vnodes_per_node", &self.vnodes_per_node)
            .field("tokens", &self.tokens.len())
            .field("zones", &self.zone_count)
            .finish()
    }
}

/// Every distinct physical node clockwise from a key, each exactly once;
/// see [`Ring::walk`].
#[derive(Clone, Debug)]
pub struct Walk<'a> {
    members: &'a [Member],
    indices: WalkIndices<'a>,
}

impl<'a> Iterator for Walk<'a> {
    type Item = &'a NodeId;

    fn next(&mut self) -> Option<&'a NodeId> {
        let members = self.members;
        self.indices.next().map(|member| &members[member].id)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

impl ExactSizeIterator for Walk<'_> {}
impl FusedIterator for Walk<'_> {}

/// The walk over member indices: visits tokens clockwise, yields each
/// member the first time one of its tokens is met.
#[derive(Clone, Debug)]
struct WalkIndices<'a> {
    tokens: &'a [(u64, usize)],
    /// Next token to visit (always `< tokens.len()` while tokens remain).
    position: usize,
    /// Tokens not yet visited: bounds the walk to one lap.
    steps_left: usize,
    /// Members already yielded.
    seen: Vec<bool>,
    /// Members not yet yielded.
    unseen: usize,
}

impl Iterator for WalkIndices<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.unseen > 0 && self.steps_left > 0 {
            let &(_, member) = self.tokens.get(self.position)?;
            self.position = (self.position + 1) % self.tokens.len();
            self.steps_left -= 1;
            if !self.seen[member] {
                self.seen[member] = true;
                self.unseen -= 1;
                return Some(member);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Every member owns at least one token, so one lap yields them all.
        (self.unseen, Some(self.unseen))
    }
}

/// Zone class of every member (parallel to `members`) and the number of
/// classes; `(vec![], 0)` when no member has a zone (zone logic off).
/// Members without a zone share one class.
fn zone_classes(members: &[Member]) -> (Vec<usize>, usize) {
    if members.iter().all(|member| member.zone.is_none()) {
        return (Vec::new(), 0);
    }
    let mut classes: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    let zone_of = members
        .iter()
        .map(|member| {
            let next = classes.len();
            *classes.entry(member.zone.as_deref()).or_insert(next)
        })
        .collect();
    (zone_of, classes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[&str]) -> Ring {
        Ring::new(ids.iter().map(|id| Member::new(*id)), 16)
    }

    #[test]
    fn duplicates_keep_smallest_zone_whatever_the_order() {
        let a = Ring::new([Member::in_zone("n1", "b"), Member::in_zone("n1", "a")], 8);
        let b = Ring::new([Member::in_zone("n1", "a"), Member::in_zone("n1", "b")], 8);
        assert_eq!(a, b);
        assert_eq!(a.members(), &[Member::in_zone("n1", "a")]);
    }

    #[test]
    fn ownership_shares_add_up_and_match_where_keys_land() {
        let r = ring(&["n1", "n2", "n3"]);
        let shares: Vec<f64> = ["n1", "n2", "n3"]
            .iter()
            .map(|id| r.ownership(&NodeId::new(*id)))
            .collect();
        assert!(
            (shares.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "{shares:?}"
        );
        let mut firsts = [0u32; 3];
        for i in 0..30_000u32 {
            let first = r.preference_list(&i.to_be_bytes(), 1)[0].clone();
            firsts[first.as_str()[1..].parse::<usize>().unwrap() - 1] += 1;
        }
        for (share, keys) in shares.iter().zip(firsts) {
            let measured = f64::from(keys) / 30_000.0;
            assert!((share - measured).abs() < 0.02, "{shares:?} vs {firsts:?}");
        }
        assert_eq!(r.ownership(&NodeId::new("n9")), 0.0);
        assert_eq!(ring(&["solo"]).ownership(&NodeId::new("solo")), 1.0);
    }

    #[test]
    fn zero_vnodes_is_raised_to_one() {
        let r = Ring::new([Member::new("n1"), Member::new("n2")], 0);
        assert_eq!(r.vnodes_per_node(), 1);
        assert_eq!(r.walk(b"k").count(), 2);
    }

    #[test]
    fn key_on_a_token_belongs_to_that_token_and_wraps_past_the_last() {
        let r = ring(&["n1", "n2", "n3"]);
        for &(token, member) in &r.tokens {
            assert_eq!(r.walk_from(token).next(), Some(member));
        }
        let (last, _) = r.tokens[r.tokens.len() - 1];
        if last < u64::MAX {
            assert_eq!(r.walk_from(last + 1).next(), Some(r.tokens[0].1));
        }
        assert_eq!(r.walk_from(0).next(), Some(r.tokens[0].1));
    }

    #[test]
    fn contains_and_len() {
        let r = ring(&["n2", "n1", "n2"]);
        assert_eq!(r.len(), 2);
        assert!(!r.is_empty());
        assert!(r.contains(&NodeId::new("n1")));
        assert!(!r.contains(&NodeId::new("n3")));
        assert!(Ring::default().is_empty());
    }

    #[test]
    fn zone_logic_off_without_zones() {
        let r = ring(&["n1", "n2"]);
        assert_eq!(r.zone_count, 0);
        let z = Ring::new([Member::new("n1"), Member::in_zone("n2", "a")], 4);
        assert_eq!(z.zone_count, 2, "no-zone members form a zone of their own");
    }

    #[test]
    fn walk_size_hint_is_exact() {
        let r = ring(&["n1", "n2", "n3"]);
        let mut walk = r.walk(b"x");
        assert_eq!(walk.len(), 3);
        walk.next();
        assert_eq!(walk.len(), 2);
    }
}
