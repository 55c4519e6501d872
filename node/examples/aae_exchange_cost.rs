//! Anti-entropy exchange cost: two replicas with 1,000,000 shared keys, with
//! 0 and with 100 keys differing. Drives the real trees (`kvorum_node::repair::aae`)
//! and encodes the real peer messages of an exchange (branch hashes, leaves of
//! differing branches, keys of differing leaves) with the real framing, so the
//! byte counts are what goes on the wire; time is the comparison work of both
//! sides (no sockets). A node reads a segment's keys from its key index on
//! disk; here the index is held in memory, so the time leaves out those reads.
//! Repairing a differing key then costs one state read and one state write
//! per key, reported separately.
//!
//! ```text
//! cargo run --release -p kvorum-node --example aae_exchange_cost [keys] [runs]
//! ```

use kvorum_client::proto::encode_frame;
use kvorum_node::repair::aae::{self, Entry, Trees, PER_BRANCH};
use kvorum_node::rpc::peer::{
    AaeRequest, AaeResponse, PeerRequest, PeerResponse, PEER_PROTOCOL_VERSION,
};
use kvorum_ring::{Member, NodeId, Ring, DEFAULT_VNODES};
use std::time::Instant;

struct Cost {
    bytes: usize,
    messages: usize,
    keys: usize,
    micros: u128,
}

fn frame_len<T: serde::Serialize>(v: &T) -> usize {
    encode_frame(PEER_PROTOCOL_VERSION, v).len()
}

/// A node's trees with its key index in memory (segment → entries).
struct Node {
    trees: Trees,
    index: Vec<Vec<Entry>>,
}

impl Node {
    /// The keys of `segments` shared with `peer`.
    fn keys(&self, peer: &NodeId, segments: &[u32]) -> Vec<(Vec<u8>, u64)> {
        let entries = segments
            .iter()
            .flat_map(|s| self.index[*s as usize].iter().cloned())
            .collect();
        self.trees.keys(peer, entries)
    }
}

/// One exchange initiated by `a` (node n1) with `b` (node n2).
fn exchange(a: &Node, b: &Node) -> Cost {
    let (a, at) = (a, &a.trees);
    let (b, bt) = (b, &b.trees);
    let (n1, n2) = (NodeId::new("n1"), NodeId::new("n2"));
    let started = Instant::now();
    let mut bytes = 0;
    let mut messages = 0;
    let mut send = |n: usize| {
        bytes += n;
        messages += 1;
    };
    send(frame_len(&PeerRequest::Aae(AaeRequest::Branches {
        from: n1.clone(),
    })));
    let remote = bt.branches(&n1);
    send(frame_len(&PeerResponse::Aae(AaeResponse::Branches(
        remote.clone(),
    ))));
    let branches = aae::differing(&at.branches(&n2), &remote);
    let mut keys = Vec::new();
    if !branches.is_empty() {
        send(frame_len(&PeerRequest::Aae(AaeRequest::Leaves {
            from: n1.clone(),
            branches: branches.clone(),
        })));
        let remote = bt.leaves(&n1, &branches);
        send(frame_len(&PeerResponse::Aae(AaeResponse::Leaves(
            remote.clone(),
        ))));
        let local = at.leaves(&n2, &branches);
        let mut segments = Vec::new();
        for ((br, l), (_, r)) in local.iter().zip(&remote) {
            segments.extend(
                aae::differing(l, r)
                    .into_iter()
                    .map(|i| br * PER_BRANCH + i),
            );
        }
        send(frame_len(&PeerRequest::Aae(AaeRequest::Keys {
            from: n1.clone(),
            segments: segments.clone(),
        })));
        let remote = b.keys(&n1, &segments);
        send(frame_len(&PeerResponse::Aae(AaeResponse::Keys(
            remote.clone(),
        ))));
        keys = aae::differing_keys(&a.keys(&n2, &segments), &remote);
    }
    Cost {
        bytes,
        messages,
        keys: keys.len(),
        micros: started.elapsed().as_micros(),
    }
}

fn median(mut v: Vec<u128>) -> u128 {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    // Three nodes and N = 3: every key is shared by every pair.
    let ring = Ring::new(
        (1..=3).map(|i| Member::new(format!("n{i}"))),
        DEFAULT_VNODES,
    );
    let build = |me: &str, differ: u64| {
        let mut t = Trees::new(
            NodeId::new(me),
            kvorum_node::repair::aae::fixed_n(3),
            ring.clone(),
        );
        let mut index = vec![Vec::new(); aae::SEGMENTS as usize];
        let records: Vec<(Vec<u8>, u64, Option<u64>)> = (0..keys)
            .map(|i| {
                let key = format!("bucket/key-{i:08}").into_bytes();
                // The state hash; the first `differ` keys hold another state on n2.
                let h = if i < differ {
                    i ^ 0xdead_beef
                } else {
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                };
                (key, h, None)
            })
            .collect();
        for (key, hash, _) in &records {
            index[aae::segment(key) as usize].push(Entry {
                key: key.clone(),
                hash: *hash,
                dead: None,
            });
        }
        t.rebuild(ring.clone(), 1, records);
        Node { trees: t, index }
    };
    let a = build("n1", 0);
    println!("keys: {keys}, runs: {runs} (medians)");
    // Baseline in the same run: without trees, a replica would send every
    // shared key with its state hash.
    let all_segments: Vec<u32> = (0..aae::SEGMENTS).collect();
    let started = Instant::now();
    let listing = a.keys(&NodeId::new("n2"), &all_segments);
    let naive_bytes = frame_len(&PeerResponse::Aae(AaeResponse::Keys(listing)));
    println!(
        "baseline (list every key and hash): {naive_bytes} bytes, {} µs",
        started.elapsed().as_micros()
    );
    println!("| differing keys | messages | bytes sent | comparison time | keys found |");
    println!("|---:|---:|---:|---:|---:|");
    for differ in [0u64, 100] {
        let b = build("n2", differ);
        let costs: Vec<Cost> = (0..runs).map(|_| exchange(&a, &b)).collect();
        let c = &costs[0];
        println!(
            "| {differ} | {} | {} | {} µs | {} |",
            c.messages,
            c.bytes,
            median(costs.iter().map(|c| c.micros).collect()),
            c.keys
        );
    }
}
