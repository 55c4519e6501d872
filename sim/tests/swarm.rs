//! The swarm: many seeds, each a run with its own cluster size, fault mix
//! and workload shape ([`kvorum_sim::Plan::of_seed`]). Runs as part of
//! `cargo test` with 50 seeds; a long swarm and a replay are arguments:
//!
//! ```text
//! cargo test -p kvorum-sim --release --test swarm -- --seeds 10000
//! cargo test -p kvorum-sim --release --test swarm -- --seed 1234 --history
//! cargo test -p kvorum-sim --release --test swarm -- --first 5000 --seeds 100
//! cargo test -p kvorum-sim --release --test swarm -- --plant early-reap --seeds 500
//! ```
//!
//! With `--plant BUG` (lost-update, dot-reuse, early-reap, split-quorum)
//! that bug is planted and the swarm stops at the first seed that finds
//! it; it fails if no seed does.
//!
//! The first seed runs twice, and its two history hashes must be equal:
//! the simulation is deterministic.

use kvorum_node::util::plant::{plant, Bug};
use kvorum_sim::run_seed;
use std::time::Instant;

struct Args {
    first: u64,
    seeds: u64,
    history: bool,
    bug: Option<Bug>,
}

fn args() -> Args {
    let mut a = Args {
        first: 1,
        seeds: 50,
        history: false,
        bug: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let value = |i: usize| argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
    for (i, arg) in argv.iter().enumerate() {
        match arg.as_str() {
            "--seeds" => a.seeds = value(i).unwrap_or(a.seeds),
            "--first" => a.first = value(i).unwrap_or(a.first),
            "--seed" => {
                a.first = value(i).unwrap_or(a.first);
                a.seeds = 1;
            }
            "--history" => a.history = true,
            "--plant" => {
                a.bug = match argv.get(i + 1).map(String::as_str) {
                    Some("lost-update") => Some(Bug::LostUpdate),
                    Some("dot-reuse") => Some(Bug::DotReuse),
                    Some("early-reap") => Some(Bug::EarlyReap),
                    Some("split-quorum") => Some(Bug::SplitQuorum),
                    other => {
                        eprintln!("--plant: unknown bug {other:?}");
                        std::process::exit(2);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(n) = std::env::var("KVORUM_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        a.seeds = n;
    }
    a
}

fn main() {
    let a = args();
    plant(a.bug);
    let wall = Instant::now();
    let (mut ops, mut faults, mut virtual_secs, mut failed) = (0u64, 0u64, 0f64, Vec::new());
    for seed in a.first..a.first + a.seeds {
        let r = run_seed(seed);
        if seed == a.first {
            let again = run_seed(seed);
            if again.hash != r.hash {
                let diff = r
                    .history
                    .lines()
                    .zip(again.history.lines())
                    .find(|(x, y)| x != y);
                eprintln!("seed {seed}: two runs differ, first at {diff:?}");
                std::process::exit(1);
            }
            println!("seed {seed}: two runs, one history (hash {:016x})", r.hash);
        }
        ops += r.ops;
        faults += r.faults;
        virtual_secs += r.virtual_time.as_secs_f64();
        if a.history {
            println!("{}", r.history);
        }
        if !r.failures.is_empty() {
            println!(
                "seed {seed} FAILED ({:?}): {:#?}\n  replay: cargo test -p kvorum-sim --release --test swarm -- --seed {seed} --history",
                r.plan, r.failures
            );
            failed.push(seed);
            if let Some(bug) = a.bug {
                println!(
                    "planted {bug:?}: found by seed {seed}, the {} seed run",
                    seed - a.first + 1
                );
                return;
            }
        } else if a.seeds <= 100 || seed % 100 == 0 {
            println!(
                "seed {seed}: ok, {} nodes, {} ops ({} acknowledged), {} faults, net {:?}, {:.0} virtual s",
                r.plan.shape.nodes,
                r.ops,
                r.acked,
                r.faults,
                r.net,
                r.virtual_time.as_secs_f64()
            );
        }
    }
    let secs = wall.elapsed().as_secs_f64();
    println!(
        "swarm: {} seeds from {}, {} failed {:?}; {ops} operations, {faults} faults, \
         {:.2} virtual hours in {secs:.0} s ({:.0} virtual s per s)",
        a.seeds,
        a.first,
        failed.len(),
        failed,
        virtual_secs / 3600.0,
        virtual_secs / secs.max(1e-9)
    );
    if let Some(bug) = a.bug {
        println!("planted {bug:?}: no seed found it");
        std::process::exit(1);
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
