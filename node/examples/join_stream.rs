//! How fast a joining node streams its ranges in: a 3-node cluster (N = 3)
//! holding K keys, a 4th node joins; measured: time from its start until every
//! node sees it up (its ranges streamed in), keys and bytes streamed, and the
//! time until the old owners have handed off and dropped what moved (every
//! node holds exactly the keys it owns).
//!
//! ```sh
//! cargo run --release -p kvorum-node --example join_stream -- [KEYS] [VALUE_BYTES] [RUNS]
//! ```
//! (defaults 100000 keys, 100-byte values, 3 runs; medians are printed).

use kvorum_client::{CausalContext, Client, TlsMaterial, WriteOptions};
use kvorum_node::cluster::member::MemberState;
use kvorum_node::net::certs;
use kvorum_node::{NodeConfig, RunningNode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn config(dir: &std::path::Path, i: usize, seeds: &[SocketAddr]) -> Result<NodeConfig, BoxError> {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "id = \"n{i}\"\nlisten = \"127.0.0.1:0\"\nseeds = [{}]\ndata_dir = \"data/n{i}\"\n\
         [anti_entropy]\nenabled = false\n[metrics]\nenabled = false\n\
         [tls]\nca = \"ca.pem\"\ncert = \"n{i}.pem\"\nkey = \"n{i}.key\"\n",
        seeds.join(", ")
    );
    Ok(NodeConfig::parse(&text, dir)?)
}

fn all_up(nodes: &[RunningNode], count: usize) -> bool {
    nodes.iter().all(|n| {
        let m = n.members();
        m.len() == count && m.iter().all(|m| m.state == MemberState::Up)
    })
}

async fn wait(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<(), BoxError> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn metric_sum(node: &RunningNode, name: &str, label: &str) -> f64 {
    node.metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Run {
    join: Duration,
    settle: Duration,
    keys_in: f64,
    bytes_in: f64,
}

async fn one_run(keys: u32, value_bytes: usize) -> Result<Run, BoxError> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let ca = certs::make_ca("bench")?;
    certs::write(dir, "ca", &ca)?;
    certs::write(dir, "client", &certs::make_client(&ca, "bench")?)?;
    for i in 1..=4 {
        certs::write(
            dir,
            &format!("n{i}"),
            &certs::make_node(&ca, &format!("n{i}"), &[])?,
        )?;
    }
    let mut nodes: Vec<RunningNode> = Vec::new();
    for i in 1..=3 {
        let seeds: Vec<SocketAddr> = nodes.first().map(|n| n.addr()).into_iter().collect();
        nodes.push(kvorum_node::start(config(dir, i, &seeds)?).await?);
    }
    wait("three nodes up", Duration::from_secs(60), || {
        all_up(&nodes, 3)
    })
    .await?;
    let tls = TlsMaterial::from_dir(dir, "client")?;
    let client = Client::connect(nodes.iter().map(|n| n.addr()), tls)?;
    // Load: 64 writers at W = 2.
    let value = vec![b'v'; value_bytes];
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..64u32 {
        let (client, value) = (client.clone(), value.clone());
        writers.spawn(async move {
            let mut i = w;
            while i < keys {
                client
                    .put_with(
                        "default",
                        format!("key{i:08}").as_bytes(),
                        &value,
                        &CausalContext::empty(),
                        WriteOptions::w(2),
                    )
                    .await?;
                i += 64;
            }
            Ok::<_, kvorum_client::Error>(())
        });
    }
    while let Some(r) = writers.join_next().await {
        r??;
    }
    // Every replica holds every key before the join (W = 2 may leave one behind).
    wait("loaded replicas", Duration::from_secs(120), || {
        nodes
            .iter()
            .all(|n| n.data_keys().map_or(0, |k| k.len()) >= keys as usize)
    })
    .await?;
    let started = Instant::now();
    let seeds = [nodes[0].addr()];
    nodes.push(kvorum_node::start(config(dir, 4, &seeds)?).await?);
    wait("n4 up", Duration::from_secs(600), || all_up(&nodes, 4)).await?;
    let join = started.elapsed();
    // Handoff done: each key on exactly N = 3 nodes again.
    wait("handoff", Duration::from_secs(600), || {
        let held: usize = nodes
            .iter()
            .map(|n| n.data_keys().map_or(0, |k| k.len()))
            .sum();
        held == 3 * keys as usize
    })
    .await?;
    let settle = started.elapsed();
    let keys_in = metric_sum(&nodes[3], "kvorum_transfer_keys_total", "direction=\"in\"");
    let bytes_in = metric_sum(&nodes[3], "kvorum_transfer_bytes_total", "direction=\"in\"");
    client.close().await;
    for n in nodes {
        n.shutdown().await;
    }
    Ok(Run {
        join,
        settle,
        keys_in,
        bytes_in,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keys: u32 = args.first().map_or(Ok(100_000), |a| a.parse())?;
    let value_bytes: usize = args.get(1).map_or(Ok(100), |a| a.parse())?;
    let runs: usize = args.get(2).map_or(Ok(3), |a| a.parse())?;
    let mut all = Vec::new();
    for r in 1..=runs {
        let run = one_run(keys, value_bytes).await?;
        println!(
            "run {r}: joined (ranges streamed in) after {:.2} s, handed off after {:.2} s; \
             streamed {} keys, {:.1} MB ({:.0} keys/s, {:.1} MB/s)",
            run.join.as_secs_f64(),
            run.settle.as_secs_f64(),
            run.keys_in,
            run.bytes_in / 1e6,
            run.keys_in / run.join.as_secs_f64(),
            run.bytes_in / 1e6 / run.join.as_secs_f64()
        );
        all.push(run);
    }
    println!(
        "median of {runs}: join {:.2} s, join + handoff {:.2} s, {:.0} keys/s streamed in, {:.1} MB/s",
        median(all.iter().map(|r| r.join.as_secs_f64()).collect()),
        median(all.iter().map(|r| r.settle.as_secs_f64()).collect()),
        median(all.iter().map(|r| r.keys_in / r.join.as_secs_f64()).collect()),
        median(all.iter().map(|r| r.bytes_in / 1e6 / r.join.as_secs_f64()).collect()),
    );
    Ok(())
}
