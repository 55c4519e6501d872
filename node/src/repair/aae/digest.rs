//! The digest of `kvorum admin verify`: a tree over the keys this node
//! holds as their first replica. Each key counts once in a cluster, on its
//! first replica, so the XOR of every member's tree is the cluster's,
//! whatever its size and placement, and equals the tree a backup's merged
//! records give. It is computed from the in-memory key index (no storage
//! read), branch by branch.

use super::{contribution, Trees, PER_BRANCH, SEGMENTS};

impl Trees {
    /// Whether this node is the first replica of `key` on its ring (the
    /// first of a preference list does not depend on its length).
    fn first_replica(&self, key: &[u8]) -> bool {
        self.ring.item_preference_list(key, 1).first() == Some(&self.me)
    }

    /// The leaf hash of `segment` over the keys held as first replica
    /// (0 for a segment out of range).
    pub fn first_replica_leaf(&self, segment: u32) -> u64 {
        self.index.get(segment as usize).map_or(0, |m| {
            m.iter()
                .filter(|(k, _)| self.first_replica(k))
                .fold(0, |acc, (k, h)| acc ^ contribution(k, *h))
        })
    }

    /// The leaf hashes of `branch` over the keys held as first replica.
    pub fn first_replica_leaves(&self, branch: u32) -> Vec<u64> {
        let start = branch.saturating_mul(PER_BRANCH).min(SEGMENTS);
        let end = start.saturating_add(PER_BRANCH).min(SEGMENTS);
        (start..end).map(|s| self.first_replica_leaf(s)).collect()
    }

    /// The keys of `segments` held as first replica, with state hashes.
    pub fn first_replica_keys(&self, segments: &[u32]) -> Vec<(Vec<u8>, u64)> {
        segments
            .iter()
            .filter_map(|s| self.index.get(*s as usize))
            .flat_map(|m| m.iter())
            .filter(|(k, _)| self.first_replica(k))
            .map(|(k, h)| (k.to_vec(), *h))
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
    use super::super::{fixed_n, segment, BRANCHES};
    use super::*;
    use kvorum_ring::{Member, NodeId, Ring};

    fn ring(nodes: u32) -> Ring {
        Ring::new((1..=nodes).map(|i| Member::new(format!("n{i}"))), 64)
    }

    /// Every node's trees over the keys it replicates on a ring of `nodes`
    /// (N = 2: with an odd N, counting every replica would XOR to the same
    /// tree as counting the first, and the test could not tell them apart).
    fn cluster(nodes: u32, keys: &[(Vec<u8>, u64)]) -> Vec<Trees> {
        let mut all: Vec<Trees> = (1..=nodes)
            .map(|i| Trees::new(NodeId::new(format!("n{i}")), fixed_n(2), ring(nodes)))
            .collect();
        for (k, h) in keys {
            for t in &mut all {
                if t.replicas(k).contains(&t.me) {
                    t.update(k, *h, None);
                }
            }
        }
        all
    }

    fn digest(trees: &[Trees]) -> Vec<u64> {
        (0..BRANCHES)
            .flat_map(|b| {
                trees.iter().fold(vec![0; PER_BRANCH as usize], |acc, t| {
                    acc.iter()
                        .zip(t.first_replica_leaves(b))
                        .map(|(a, l)| a ^ l)
                        .collect()
                })
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
            .flat_map(|t| t.first_replica_keys(&differ))
            .collect();
        assert!(listed.contains(&(keys[5].0.clone(), keys[5].1 + 1)));
    }
}
