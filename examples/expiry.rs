//! Things with a lifetime: login sessions in a bucket whose writes expire
//! by default, a one-time code with its own time to live, and a rate
//! limiter (a counter that starts again from zero once its window
//! expired). Expired data reads as not found through every node; its space
//! is reclaimed after the grace (docs/data-types.md "Expiry").
//!
//! Start a dev cluster (`kvorum dev`) in one terminal, then from the same
//! directory:
//!
//! ```text
//! cargo run -p kvorum-examples --example expiry
//! ```

use kvorum_client::{Admin, BucketProps, BucketType, Client, TlsMaterial, WriteOptions};
use std::{net::SocketAddr, path::Path, time::Duration};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long the walk-through's things live.
const LIFETIME: Duration = Duration::from_secs(2);

/// The walk-through (`admin` creates the buckets).
pub async fn run(admin: &Admin, client: &Client, run_id: &str) -> Result<(), BoxError> {
    admin
        .create_bucket(
            "logins",
            BucketProps::new(BucketType::Register).default_ttl(LIFETIME),
        )
        .await?;
    admin
        .create_bucket("attempts", BucketProps::new(BucketType::Counter))
        .await?;

    // 1. A session: every write to the bucket lives for its default.
    let session = format!("session-{run_id}");
    client
        .put("logins", session.as_bytes(), b"user-1", &Default::default())
        .await?;
    // 2. A one-time code with a time to live of its own.
    let code = format!("otp-{run_id}");
    client
        .put_with(
            "logins",
            code.as_bytes(),
            b"493817",
            &Default::default(),
            WriteOptions::default().ttl(LIFETIME),
        )
        .await?;
    // 3. A rate limiter: each attempt renews the window.
    let limiter = client
        .counter("attempts", format!("ip-{run_id}").as_bytes())
        .write_options(WriteOptions::default().ttl(LIFETIME));
    for _ in 0..3 {
        limiter.increment(1).await?;
    }
    let found = client.get("logins", session.as_bytes()).await?.is_found();
    println!(
        "session found: {found}; attempts: {}",
        limiter.value().await?
    );
    if !found || limiter.value().await? != 3 {
        return Err("the session and three attempts must be there".into());
    }

    tokio::time::sleep(LIFETIME + Duration::from_millis(200)).await;
    let session_found = client.get("logins", session.as_bytes()).await?.is_found();
    let code_found = client.get("logins", code.as_bytes()).await?.is_found();
    println!("after {LIFETIME:?}: session found: {session_found}, code found: {code_found}");
    if session_found || code_found {
        return Err("expired things must read as not found".into());
    }
    // The window expired: the next attempt counts from zero.
    limiter.increment(1).await?;
    let attempts = limiter.value().await?;
    println!("attempts in the new window: {attempts}");
    if attempts != 1 {
        return Err(format!("a new window starts from 0, got {attempts}").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kvorum-dev".into());
    let dir = Path::new(&dir);
    let certs = dir.join("certs");
    let nodes: Vec<SocketAddr> = std::fs::read_to_string(dir.join("nodes"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse())
        .collect::<Result<_, _>>()?;
    let admin = Admin::connect(nodes.clone(), TlsMaterial::from_dir(&certs, "admin")?)?;
    let client = Client::connect(nodes, TlsMaterial::from_dir(&certs, "client")?)?;
    // Keys unique to this run, so the example can run again.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis()
        .to_string();
    run(&admin, &client, &run_id).await?;
    admin.close().await;
    client.close().await;
    Ok(())
}
