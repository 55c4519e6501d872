//! How long a scrape of `/metrics` takes on a node that has coordinated many
//! requests (docs/performance.md). Starts a 3-node cluster in this process
//! (like `kvorum dev`, in a temporary directory), sends `REQUESTS` client
//! requests (half writes of new keys, half reads of them, 64 in flight) all to
//! n1, then renders n1's metrics 101 times in process and scrapes its HTTP
//! endpoint 101 times, and prints the medians.
//!
//! ```text
//! cargo run --release -p kvorum-node --example metrics_scrape -- 1000000
//! ```

use kvorum_client::{CausalContext, Client, TlsMaterial};
use kvorum_node::dev::{self, DevOptions};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const IN_FLIGHT: u64 = 64;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let requests: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let base_port = 27_400 + (std::process::id() % 1000) as u16 * 4;
    let opts = DevOptions {
        dir: dir.path().to_path_buf(),
        nodes: 3,
        base_port,
    };
    let nodes = dev::start(&opts).await?;
    let certs = dir.path().join("certs");
    let tls = TlsMaterial::from_dir(certs, "client")?;
    let client = Client::builder([nodes[0].addr()], tls).build()?;
    // Wait for the cluster to form (a write at W=3 succeeds).
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .put_with(
            "default",
            b"probe",
            b"",
            &CausalContext::empty(),
            kvorum_client::WriteOptions::w(3),
        )
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return Err("cluster did not form".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (client, next, errors) = (client.clone(), next.clone(), errors.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return;
                }
                // Even requests write a new key, odd ones read the key the
                // previous request wrote (blind writes to a few keys would
                // pile up siblings until the sibling limit refuses them).
                let key = format!("k{}", i / 2);
                let r = if i % 2 == 0 {
                    client
                        .put(
                            "default",
                            key.as_bytes(),
                            &i.to_be_bytes(),
                            &CausalContext::empty(),
                        )
                        .await
                        .map(|_| ())
                } else {
                    client.get("default", key.as_bytes()).await.map(|_| ())
                };
                if r.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let mut last = 0;
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {
                let done = next.load(Ordering::Relaxed).min(requests);
                eprintln!("{done} requests ({:.0}/s)", (done - last) as f64 / 10.0);
                last = done;
            }
        }
    }
    let took = started.elapsed();
    let n1 = &nodes[0];
    let text = n1.metrics().render();
    let served: f64 = text
        .lines()
        .filter(|l| l.starts_with("kvorum_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let series = text.lines().filter(|l| !l.starts_with('#')).count();

    let mut render = Vec::new();
    for _ in 0..101 {
        let t = Instant::now();
        let out = n1.metrics().render();
        render.push(t.elapsed());
        std::hint::black_box(out);
    }
    let addr = n1.metrics_addr().ok_or("metrics disabled")?;
    let mut scrape = Vec::new();
    let mut bytes = 0;
    for _ in 0..101 {
        let t = Instant::now();
        let body = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(addr)?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .await??;
        scrape.push(t.elapsed());
        bytes = body.len();
    }
    println!(
        "requests sent {requests} in {:.1} s ({:.0}/s), errors {}",
        took.as_secs_f64(),
        requests as f64 / took.as_secs_f64(),
        errors.load(Ordering::Relaxed)
    );
    println!("n1 counted {served} client requests; exposition: {series} samples, {bytes} bytes");
    println!(
        "render (in process): median {:?}, max {:?}",
        median(render.clone()),
        render.iter().max().copied().unwrap_or_default()
    );
    println!(
        "HTTP scrape: median {:?}, max {:?}",
        median(scrape.clone()),
        scrape.iter().max().copied().unwrap_or_default()
    );
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}
