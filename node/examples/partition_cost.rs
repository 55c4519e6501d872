//! What sorted partitions save, on a local 3-node cluster (N = 3, R = W = 2,
//! real QUIC on loopback, fjall in a temp dir):
//! - a 100-item range read (one page) against 100 gets of the same items,
//!   one after another;
//! - a 100-item batch write against 100 puts, one after another;
//! - how long a watch through n1 takes to wake after a write acknowledged
//!   through n2, on an item n1 holds (N = 3) and on one it does not (a
//!   bucket of N = 1 whose replica is n2 or n3).
//!
//! ```sh
//! cargo run --release -p kvorum-node --example partition_cost -- [ROUNDS] [RUNS]
//! ```
//! (defaults 30 rounds per run, 3 runs; each run is a new cluster; the
//! medians over every round of every run are printed.)

use kvorum_client::proto::{ItemKey, RangeQuery};
use kvorum_client::{CausalContext, Client, ReadOptions, TlsMaterial};
use kvorum_node::cluster::member::MemberState;
use kvorum_node::net::certs;
use kvorum_node::{NodeConfig, RunningNode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ITEMS: u32 = 100;

fn config(dir: &std::path::Path, i: usize, seeds: &[SocketAddr]) -> Result<NodeConfig, BoxError> {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "id = \"n{i}\"\nlisten = \"127.0.0.1:0\"\nseeds = [{}]\ndata_dir = \"data/n{i}\"\n\
         [metrics]\nenabled = false\n\
         [tls]\nca = \"ca.pem\"\ncert = \"n{i}.pem\"\nkey = \"n{i}.key\"\n",
        seeds.join(", ")
    );
    Ok(NodeConfig::parse(&text, dir)?)
}

fn sort(i: u32) -> Vec<u8> {
    format!("item{i:04}").into_bytes()
}

#[derive(Default)]
struct Times {
    range: Vec<f64>,
    gets: Vec<f64>,
    batch: Vec<f64>,
    puts: Vec<f64>,
    wake: Vec<f64>,
    remote_wake: Vec<f64>,
}

async fn one_run(rounds: u32, t: &mut Times) -> Result<(), BoxError> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let ca = certs::make_ca("bench")?;
    certs::write(dir, "ca", &ca)?;
    for i in 1..=3 {
        let name = format!("n{i}");
        certs::write(dir, &name, &certs::make_node(&ca, &name, &[])?)?;
    }
    certs::write(dir, "admin", &certs::make_admin(&ca, "bench")?)?;
    let mut nodes: Vec<RunningNode> = Vec::new();
    for i in 1..=3 {
        let seeds: Vec<SocketAddr> = nodes.first().map(|n| n.addr()).into_iter().collect();
        nodes.push(kvorum_node::start(config(dir, i, &seeds)?).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !nodes.iter().all(|n| {
        let m = n.members();
        m.len() == 3 && m.iter().all(|m| m.state == MemberState::Up)
    }) {
        if Instant::now() > deadline {
            return Err("the cluster did not form".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new cluster grants clients nothing: connect with a node's
    // certificate, which may touch every bucket.
    let node_tls = TlsMaterial::from_dir(dir, "n1")?;
    let via1 = Client::connect([nodes[0].addr()], node_tls.clone())?;
    let via2 = Client::connect([nodes[1].addr()], node_tls)?;
    // A bucket of one replica, for watches whose coordinator (n1) is not a
    // replica of the item: they wake by polling.
    let admin = kvorum_client::Admin::connect(
        nodes.iter().map(|n| n.addr()),
        TlsMaterial::from_dir(dir, "admin")?,
    )?;
    admin
        .create_bucket(
            "solo",
            kvorum_client::BucketProps::new(kvorum_client::BucketType::Register)
                .n(1)
                .r(1)
                .w(1),
        )
        .await?;
    admin.close().await;
    let ring = nodes[0].view().read_ring.clone();
    let n1 = kvorum_ring::NodeId::new("n1");
    let remote: Vec<String> = (0..)
        .map(|i| format!("far-{i}"))
        .filter(|pk| {
            let skey = kvorum_ring::item::storage_key("solo", pk.as_bytes(), b"w");
            !ring.item_preference_list(&skey, 1).contains(&n1)
        })
        .take(rounds as usize)
        .collect();
    let value = vec![b'v'; 100];
    for round in 0..rounds {
        let pk = format!("user-{round}");
        let p = via1.partition("default", pk.as_bytes());
        // 100 puts, one after another.
        let start = Instant::now();
        for i in 0..ITEMS {
            p.put(&sort(i), &value, &CausalContext::empty()).await?;
        }
        t.puts.push(start.elapsed().as_secs_f64());
        // The same 100 items again, as one batch (a sibling each: a put
        // with the empty context).
        let mut b = via1.batch();
        for i in 0..ITEMS {
            b = b.put(
                "default",
                pk.as_bytes(),
                &sort(i),
                &value,
                &CausalContext::empty(),
            );
        }
        let start = Instant::now();
        for o in b.send().await? {
            o?;
        }
        t.batch.push(start.elapsed().as_secs_f64());
        // 100 gets, one after another.
        let start = Instant::now();
        for i in 0..ITEMS {
            p.get_with(&sort(i), ReadOptions::r(2)).await?;
        }
        t.gets.push(start.elapsed().as_secs_f64());
        // One range read of the 100.
        let q = RangeQuery::new("default", pk.as_bytes())
            .limit(ITEMS)
            .options(ReadOptions::r(2));
        let start = Instant::now();
        let page = via1.read_page(&q).await?;
        t.range.push(start.elapsed().as_secs_f64());
        if page.items.len() != ITEMS as usize {
            return Err(format!("a page of {} items", page.items.len()).into());
        }
        // A watch through n1, a write through n2.
        let key = ItemKey::new("default", pk.as_bytes(), b"watched");
        let known = p.get(b"watched").await?.version;
        let watcher = via1.clone();
        let watch = tokio::spawn(async move {
            let v = watcher.watch(key, &known, Duration::from_secs(10)).await;
            (v, Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        via2.partition("default", pk.as_bytes())
            .put(b"watched", b"now", &CausalContext::empty())
            .await?;
        let acked = Instant::now();
        let (v, woke) = watch.await?;
        if v?.is_none() {
            return Err("the watch did not wake".into());
        }
        t.wake
            .push(woke.saturating_duration_since(acked).as_secs_f64());
        // The same through n1 on an item n1 does not hold.
        let pk = remote[round as usize].clone();
        let key = ItemKey::new("solo", pk.as_bytes(), b"w");
        let known = via1
            .partition("solo", pk.as_bytes())
            .get(b"w")
            .await?
            .version;
        let watcher = via1.clone();
        let watch = tokio::spawn(async move {
            let v = watcher.watch(key, &known, Duration::from_secs(10)).await;
            (v, Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        via2.partition("solo", pk.as_bytes())
            .put(b"w", b"now", &CausalContext::empty())
            .await?;
        let acked = Instant::now();
        let (v, woke) = watch.await?;
        if v?.is_none() {
            return Err("the remote watch did not wake".into());
        }
        t.remote_wake
            .push(woke.saturating_duration_since(acked).as_secs_f64());
    }
    via1.close().await;
    via2.close().await;
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: u32 = args.first().map_or(Ok(30), |a| a.parse())?;
    let runs: usize = args.get(1).map_or(Ok(3), |a| a.parse())?;
    let mut t = Times::default();
    for r in 1..=runs {
        let mut one = Times::default();
        one_run(rounds, &mut one).await?;
        println!(
            "run {r}: range {:.2} ms, 100 gets {:.2} ms, batch {:.2} ms, 100 puts {:.2} ms, \
             watch wake {:.2} ms, through a non-replica {:.1} ms (medians of {rounds} rounds)",
            median(&one.range) * 1e3,
            median(&one.gets) * 1e3,
            median(&one.batch) * 1e3,
            median(&one.puts) * 1e3,
            median(&one.wake) * 1e3,
            median(&one.remote_wake) * 1e3,
        );
        t.range.extend(one.range);
        t.gets.extend(one.gets);
        t.batch.extend(one.batch);
        t.puts.extend(one.puts);
        t.wake.extend(one.wake);
        t.remote_wake.extend(one.remote_wake);
    }
    let (range, gets, batch, puts) = (
        median(&t.range),
        median(&t.gets),
        median(&t.batch),
        median(&t.puts),
    );
    println!(
        "median of {runs} runs x {rounds} rounds: a 100-item range read {:.2} ms vs 100 gets \
         {:.2} ms ({:.1}x faster); a 100-item batch write {:.2} ms vs 100 puts {:.2} ms ({:.1}x \
         faster); a watch wakes {:.2} ms after the write's acknowledgement (max {:.2} ms) \
         through a replica, {:.1} ms (max {:.1} ms) through a node that is not one",
        range * 1e3,
        gets * 1e3,
        gets / range,
        batch * 1e3,
        puts * 1e3,
        puts / batch,
        median(&t.wake) * 1e3,
        t.wake.iter().copied().fold(0.0, f64::max) * 1e3,
        median(&t.remote_wake) * 1e3,
        t.remote_wake.iter().copied().fold(0.0, f64::max) * 1e3,
    );
    Ok(())
}
