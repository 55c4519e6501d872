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
//! `--shrink SEED` (with `--plant BUG` if the seed fails on a planted bug)
//! looks for the smallest plan that still fails under that seed.
//!
//! `--speed` instead measures how fast the simulation runs: one 5-node
//! cluster under steady load (4 clients, no faults) for 300 virtual
//! seconds, three times, and prints virtual seconds per wall second
//! (docs/performance.md).
//!
//! With `--plant BUG` (lost-update, dot-reuse, early-reap, split-quorum,
//! range-cut)
//! that bug is planted and the swarm stops at the first seed that finds
//! it; it fails if no seed does.
//!
//! The first seed runs twice, and its two history hashes must be equal:
//! the simulation is deterministic.

/// The allocator of the node binary (node/src/main.rs): the simulated
/// nodes allocate as the real ones do, and the heavy load runs faster
/// (docs/testing.md, "Speed").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use kvorum_node::util::plant::{plant, Bug};
use kvorum_sim::cluster::Shape;
use kvorum_sim::history::Workload;
use kvorum_sim::{run, run_seed, Plan};
use std::time::Duration;
use std::time::Instant;

struct Args {
    first: u64,
    seeds: u64,
    history: bool,
    bug: Option<Bug>,
    speed: bool,
    shrink: bool,
}

fn args() -> Args {
    let mut a = Args {
        first: 1,
        seeds: 50,
        history: false,
        bug: None,
        speed: false,
        shrink: false,
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
            "--speed" => a.speed = true,
            "--shrink" => {
                a.first = value(i).unwrap_or(a.first);
                a.seeds = 1;
                a.shrink = true;
            }
            "--plant" => {
                a.bug = match argv.get(i + 1).map(String::as_str) {
                    Some("lost-update") => Some(Bug::LostUpdate),
                    Some("dot-reuse") => Some(Bug::DotReuse),
                    Some("early-reap") => Some(Bug::EarlyReap),
                    Some("split-quorum") => Some(Bug::SplitQuorum),
                    Some("range-cut") => Some(Bug::RangeCut),
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

/// `KVORUM_SIM_LOG` (a filter such as `info` or `kvorum_node::repair=debug`)
/// prints the nodes' logs, stamped with virtual milliseconds: for a
/// replay of one seed.
fn logs() {
    struct Virtual;
    impl tracing_subscriber::fmt::time::FormatTime for Virtual {
        fn format_time(
            &self,
            w: &mut tracing_subscriber::fmt::format::Writer<'_>,
        ) -> std::fmt::Result {
            let now = tokio::runtime::Handle::try_current()
                .map(|_| tokio::time::Instant::now().into_std());
            match now {
                Ok(t) => write!(w, "{:>9?}", t.duration_since(*EPOCH)),
                Err(_) => write!(w, "-"),
            }
        }
    }
    static EPOCH: std::sync::LazyLock<std::time::Instant> =
        std::sync::LazyLock::new(std::time::Instant::now);
    if let Ok(filter) = std::env::var("KVORUM_SIM_LOG") {
        std::sync::LazyLock::force(&EPOCH);
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(Virtual)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
}

fn main() {
    let a = args();
    logs();
    if a.speed {
        speed();
        return;
    }
    plant(a.bug);
    if a.shrink {
        shrink(a.first, a.history);
        return;
    }
    let wall = Instant::now();
    let (mut ops, mut faults, mut virtual_secs, mut failed) = (0u64, 0u64, 0f64, Vec::new());
    // The first seed runs twice, alone: the two histories must be equal,
    // and no OS thread may have been started.
    let first = run_seed(a.first);
    let again = run_seed(a.first);
    if again.hash != first.hash {
        let diff = first
            .history
            .lines()
            .zip(again.history.lines())
            .find(|(x, y)| x != y);
        eprintln!("seed {}: two runs differ, first at {diff:?}", a.first);
        std::process::exit(1);
    }
    println!(
        "seed {}: two runs, one history (hash {:016x})",
        a.first, first.hash
    );
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        let threads = tasks.count();
        if threads != 1 {
            eprintln!("the simulation left {threads} threads: one was started");
            std::process::exit(1);
        }
    }
    // The other seeds run on one thread per core (each run is a whole
    // simulation of its own); reports are taken in seed order.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4) as u64;
    let rest: Vec<u64> = (a.first + 1..a.first + a.seeds).collect();
    let bug = a.bug;
    // A passing seed's history is dropped unless asked for: 10,000 of them
    // held until the end took 12 GB.
    let keep_history = a.history;
    let run_seed = move |seed: u64| {
        let mut r = run_seed(seed);
        if r.failures.is_empty() && !keep_history {
            r.history = String::new();
        }
        r
    };
    let mut reports = vec![first];
    if bug.is_some() || workers == 1 {
        for &seed in &rest {
            let r = run_seed(seed);
            let failed = !r.failures.is_empty();
            reports.push(r);
            if failed && bug.is_some() {
                break;
            }
        }
    } else {
        let results: Vec<Vec<kvorum_sim::Report>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let mine: Vec<u64> = rest
                        .iter()
                        .copied()
                        .filter(|seed| seed % workers == w)
                        .collect();
                    s.spawn(move || mine.into_iter().map(run_seed).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a swarm worker panicked"))
                .collect()
        });
        let mut all: Vec<kvorum_sim::Report> = results.into_iter().flatten().collect();
        all.sort_by_key(|r| r.seed);
        reports.extend(all);
    }
    for r in reports {
        let seed = r.seed;
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

/// Smaller plans one step smaller than `p`: each without one of its
/// faults or workloads, with one client, key, node or spare fewer, or
/// with half its duration. The cheapest to run come first.
fn smaller(p: &Plan) -> Vec<Plan> {
    let mut out = Vec::new();
    if p.duration > Duration::from_secs(5) {
        out.push(Plan {
            duration: (p.duration / 2).max(Duration::from_secs(5)),
            ..p.clone()
        });
    }
    if p.shape.nodes > 3 {
        let mut q = p.clone();
        q.shape.nodes -= 1;
        out.push(q);
    }
    for i in 0..p.faults.len() {
        let mut q = p.clone();
        q.faults.remove(i);
        out.push(q);
    }
    for i in 0..p.workloads.len() {
        if p.workloads.len() > 1 {
            let mut q = p.clone();
            q.workloads.remove(i);
            out.push(q);
        }
    }
    if p.clients > 1 {
        out.push(Plan {
            clients: p.clients - 1,
            ..p.clone()
        });
    }
    if p.keys > 1 {
        out.push(Plan {
            keys: p.keys - 1,
            ..p.clone()
        });
    }
    if p.shape.spares > 0 {
        let mut q = p.clone();
        q.shape.spares -= 1;
        out.push(q);
    }
    out
}

/// `--shrink SEED`: runs the seed's plan, and while a one-step smaller
/// plan (fewer faults, workloads, clients, keys, nodes, or a shorter run)
/// still fails under the same seed, keeps it. Prints each step and the
/// smallest failing plan with its failures; with `--history`, its whole
/// history. The shrink is deterministic, so the same command replays it.
/// The smaller plan draws other random numbers than the seed's own: what
/// it fails on may be another schedule of the same bug, which is why each
/// step prints its failures.
fn shrink(seed: u64, history: bool) {
    let mut plan = Plan::of_seed(seed);
    let mut report = run(seed, plan.clone());
    if report.failures.is_empty() {
        println!("seed {seed} passes: nothing to shrink");
        return;
    }
    println!("seed {seed} fails ({plan:?}): {:#?}", report.failures);
    let mut runs = 1;
    'smaller: loop {
        for q in smaller(&plan) {
            runs += 1;
            let r = run(seed, q.clone());
            if !r.failures.is_empty() {
                println!("still fails with {q:?}: {:#?}", r.failures);
                plan = q;
                report = r;
                continue 'smaller;
            }
        }
        break;
    }
    if history {
        println!("{}", report.history);
    }
    println!(
        "seed {seed} shrunk in {runs} runs to {plan:?}: {} operations, {} faults, {:.0} virtual s\n  failures: {:#?}\n  replay: cargo test -p kvorum-sim --release --test swarm -- --shrink {seed} --history",
        report.ops,
        report.faults,
        report.virtual_time.as_secs_f64(),
        report.failures
    );
}

/// Virtual seconds per wall second of a 5-node cluster under steady load:
/// a heavy one (4 clients, 20 ms between operations) and a light one (2
/// clients, 200 ms).
fn speed() {
    for (clients, think_ms) in [(4, 20), (2, 200)] {
        speed_at(clients, Duration::from_millis(think_ms));
    }
}

fn speed_at(clients: usize, think: Duration) {
    let plan = Plan {
        shape: Shape {
            nodes: 5,
            spares: 0,
            n: 3,
            r: 2,
            w: 2,
        },
        clients,
        keys: 50,
        workloads: Workload::ALL.to_vec(),
        think,
        faults: Vec::new(),
        nemesis_every: Duration::from_secs(1),
        duration: Duration::from_secs(300),
        script: Vec::new(),
    };
    for round in 1..=3 {
        let wall = Instant::now();
        let r = run(round, plan.clone());
        // The load runs for the plan's duration and again after the reaps.
        let secs = wall.elapsed().as_secs_f64();
        let virt = r.virtual_time.as_secs_f64();
        println!(
            "speed ({clients} clients, {think:?} think) run {round}: {virt:.0} virtual s ({:.0} s of load), {} ops ({:.0} per virtual s of load), \
             {} messages, in {secs:.1} wall s: {:.0} virtual s per wall s; failures {:?}",
            plan.duration.as_secs_f64() + 20.0,
            r.ops,
            r.ops as f64 / (plan.duration.as_secs_f64() + 20.0),
            r.net.messages,
            virt / secs,
            r.failures
        );
    }
}
