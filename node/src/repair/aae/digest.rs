//! The digest of `kvorum admin verify`: a tree over the keys this node
//! holds as their first replica. Each key counts once in a cluster, on its
//! first replica, so the XOR of every member's tree is the cluster's,
//! whatever its size and placement, and equals the tree a backup's merged
//! records give. It is computed from the key index (no read of the
//! data), segment by segment.

use super::{contribution, Entry, Trees};

impl Trees {
    /// Whether this node is the first replica of `key` on its ring (the
    /// first of a preference list does not depend on its length).
    fn first_replica(&self, key: &[u8]) -> bool {
        self.ring.item_preference_list(key, 1).first() == Some(&self.me)
    }

    /// The leaf hash over the index `entries` of one segment that this
    /// node holds as first replica.
    pub fn first_replica_leaf(&self, entries: &[Entry]) -> u64 {
        entries
            .iter()
            .filter(|e| self.first_replica(&e.key))
            .fold(0, |acc, e| acc ^ contribution(&e.key, e.hash))
    }

    /// The keys of index `entries` held as first replica, with state hashes.
    pub fn first_replica_keys(&self, entries: Vec<Entry>) -> Vec<(Vec<u8>, u64)> {
        entries
            .into_iter()
            .filter(|e| self.first_replica(&e.key))
            .map(|e| (e.key, e.hash))
            .collect()
    }
}

/// The leaf hash of a set of (key, state hash): what a tree's leaf holds
/// for them (a backup's side of a verify).
pub fn leaf_of<'a>(keys: impl IntoIterator<Item = (&'a [u8], u64)>) -> u64 {
    keys.into_iter()
        .fold(0, |acc, (k, h)| acc ^ contribution(k, h))
}

#[cfg(test)]
mod tests {
    use super::super::{fixed_n, segment, SEGMENTS};
    use super::*;
    use kvorum_ring::{Member, NodeId, Ring};
    use std::collections::BTreeMap;

    fn ring(nodes: u32) -> Ring {
        Ring::new((1..=nodes).map(|i| Member::new(format!("n{i}"))), 64)
    }

    /// A node's trees with its key index: segment → entries.
    type Node = (Trees, BTreeMap<u32, Vec<Entry>>);

    /// Every node's trees and index over the keys it replicates on a ring
    /// of `nodes` (N = 2: with an odd N, counting every replica would XOR
    /// to the same tree as counting the first, and the test could not tell
    /// them apart).
    fn cluster(nodes: u32, keys: &[(Vec<u8>, u64)]) -> Vec<Node> {
        let mut all: Vec<Node> = (1..=nodes)
            .map(|i| {
                let t = Trees::new(NodeId::new(format!("n{i}")), fixed_n(2), ring(nodes));
                (t, BTreeMap::new())
            })
            .collect();
        for (k, h) in keys {
            for (t, index) in &mut all {
                if t.replicas(k).contains(&t.me) {
                    t.update(k, None, Some(*h), None);
                    index.entry(segment(k)).or_default().push(Entry {
                        key: k.clone(),
                        hash: *h,
                        dead: None,
                    });
                }
            }
        }
        all
    }

    fn entries(node: &Node, seg: u32) -> Vec<Entry> {
        node.1.get(&seg).cloned().unwrap_or_default()
    }

    fn digest(nodes: &[Node]) -> Vec<u64> {
        (0..SEGMENTS)
            .map(|s| {
                nodes
                    .iter()
                    .fold(0, |acc, n| acc ^ n.0.first_replica_leaf(&entries(n, s)))
            })
            .collect()
    }

    /// The XOR of the members' first-replica leaves is one tree over every
    /// key once: equal for a 3-node and a 4-node cluster with the same data,
    /// equal to the leaves computed from the keys alone, and a changed
    /// state shows in exactly its segment, where the keys listing finds it.
    #[test]
    fn the_members_digests_make_one_tree_of_every_key_whatever_the_cluster() {
        let keys: Vec<(Vec<u8>, u64)> = (0..2_000u32)
            .map(|i| (format!("key-{i}").into_bytes(), u64::from(i) * 7 + 1))
            .collect();
        let mut alone = vec![0u64; SEGMENTS as usize];
        for (k, h) in &keys {
            alone[segment(k) as usize] ^= leaf_of([(k.as_slice(), *h)]);
        }
        let three = digest(&cluster(3, &keys));
        assert_eq!(three, alone);
        assert_eq!(digest(&cluster(4, &keys)), alone);
        let mut changed = keys.clone();
        changed[5].1 += 1;
        let other = cluster(4, &changed);
        let differ = super::super::differing(&digest(&other), &alone);
        assert_eq!(differ, vec![segment(&keys[5].0)]);
        let listed: Vec<_> = other
            .iter()
            .flat_map(|n| n.0.first_replica_keys(entries(n, differ[0])))
            .collect();
        assert!(listed.contains(&(keys[5].0.clone(), keys[5].1 + 1)));
    }
}
