//! How evenly keys spread for a given number of vnodes per node: the figures
//! behind `DEFAULT_VNODES` in `docs/ring.md`.
//!
//! For each vnode count it builds 300 rings of 5 nodes with different names
//! (`node-{set}-{i}`) plus the ring of `n1..n5`, computes every node's exact
//! share of the circle (arc lengths, no sampling) as first replica and as one
//! of 3 replicas, and reports the worst node's deviation from the fair share.
//!
//! Run: `cargo run --release -p kvorum-ring --example vnode_balance`

use kvorum_ring::{vnode_token, NodeId};

const NODES: usize = 5;
const REPLICAS: usize = 3;
const NAME_SETS: usize = 300;
/// The balance bar of the tests: every node within ±10% of its fair share.
const BAR: f64 = 0.10;

/// Worst relative deviation from the fair share, as (first replica, any of
/// `REPLICAS`), for nodes `names` with `vnodes` tokens each.
fn worst_deviation(names: &[String], vnodes: u32) -> (f64, f64) {
    let mut tokens: Vec<(u64, usize)> = names
        .iter()
        .enumerate()
        .flat_map(|(node, name)| {
            let id = NodeId::new(name.as_str());
            (0..vnodes).map(move |v| (vnode_token(&id, v), node))
        })
        .collect();
    tokens.sort_unstable();
    let mut primary = vec![0.0; names.len()];
    let mut replica = vec![0.0; names.len()];
    for (i, &(token, _)) in tokens.iter().enumerate() {
        // The arc (previous token, token] belongs to this token's walk.
        let previous = tokens[(i + tokens.len() - 1) % tokens.len()].0;
        let arc = token.wrapping_sub(previous) as f64 / 2f64.powi(64);
        let mut seen = vec![false; names.len()];
        let mut found = 0;
        let mut position = i;
        while found < REPLICAS.min(names.len()) {
            let node = tokens[position].1;
            if !seen[node] {
                if found == 0 {
                    primary[node] += arc;
                }
                seen[node] = true;
                replica[node] += arc;
                found += 1;
            }
            position = (position + 1) % tokens.len();
        }
    }
    let fair = 1.0 / names.len() as f64;
    let worst = |shares: &[f64], fair: f64| {
        shares
            .iter()
            .map(|share| (share / fair - 1.0).abs())
            .fold(0.0, f64::max)
    };
    (
        worst(&primary, fair),
        worst(&replica, REPLICAS as f64 * fair),
    )
}

fn main() {
    let fixed: Vec<String> = (1..=NODES).map(|i| format!("n{i}")).collect();
    println!("vnodes | n1..n5 worst primary / any-of-3 | name sets within ±10% | worst primary median / p95");
    for vnodes in [64, 128, 256, 512, 1024, 2048] {
        let (fixed_primary, fixed_replica) = worst_deviation(&fixed, vnodes);
        let mut worst_primary = Vec::with_capacity(NAME_SETS);
        let mut within = 0;
        for set in 0..NAME_SETS {
            let names: Vec<String> = (0..NODES).map(|i| format!("node-{set}-{i}")).collect();
            let (primary, replica) = worst_deviation(&names, vnodes);
            if primary <= BAR && replica <= BAR {
                within += 1;
            }
            worst_primary.push(primary);
        }
        worst_primary.sort_by(f64::total_cmp);
        println!(
            "{vnodes:>6} | {:>5.1}% / {:>4.1}% | {within:>3}/{NAME_SETS} | {:>4.1}% / {:>4.1}%",
            fixed_primary * 100.0,
            fixed_replica * 100.0,
            worst_primary[NAME_SETS / 2] * 100.0,
            worst_primary[NAME_SETS * 95 / 100] * 100.0,
        );
    }
}
