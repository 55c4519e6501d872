//! Writes, reads, makes siblings and resolves them against a running cluster.
//!
//! Start a dev cluster (`kvorum dev`) in one terminal, then from the same
//! directory:
//!
//! ```text
//! cargo run -p kvorum-examples --example siblings
//! ```
//!
//! It uses the dev cluster's client certificate and node list in `kvorum-dev/`
//! (pass another directory as the first argument).

use kvorum_client::{
    Admin, BucketProps, BucketType, CausalContext, Client, TlsMaterial, WriteOptions,
};
use std::{error::Error, net::SocketAddr, path::Path};

type BoxError = Box<dyn Error + Send + Sync>;

/// The walk-through, on any client (`admin` creates the bucket).
pub async fn run(admin: &Admin, client: &Client) -> Result<(), BoxError> {
    let (bucket, key) = ("example", b"cart:alice".as_slice());

    // 0. A register bucket (idempotent: creating it again is fine).
    admin
        .create_bucket(bucket, BucketProps::new(BucketType::Register))
        .await?;

    // 1. A first write: no context, because we have read nothing.
    let all = WriteOptions::w(3);
    client
        .put_with(bucket, key, b"milk", &CausalContext::empty(), all)
        .await?;
    let read = client.get(bucket, key).await?;
    println!("read: {:?}", strings(&read.siblings));

    // 2. Two clients update the same version concurrently: both writes carry
    //    the context of the same read, so neither supersedes the other.
    let (a, b) = tokio::join!(
        client.put_with(bucket, key, b"milk,eggs", &read.context, all),
        client.put_with(bucket, key, b"milk,bread", &read.context, all),
    );
    a?;
    b?;
    let conflicted = client.get(bucket, key).await?;
    println!(
        "after concurrent writes: {:?}",
        strings(&conflicted.siblings)
    );
    if conflicted.siblings.len() != 2 {
        return Err(format!(
            "expected 2 siblings, got {:?}",
            strings(&conflicted.siblings)
        )
        .into());
    }

    // 3. Resolve: merge the siblings (here: union of the items) and write the
    //    result with the context of the read that returned them.
    let mut items: Vec<String> = conflicted
        .siblings
        .iter()
        .flat_map(|s| {
            String::from_utf8_lossy(s)
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    items.sort();
    items.dedup();
    let merged = items.join(",");
    client
        .put_with(bucket, key, merged.as_bytes(), &conflicted.context, all)
        .await?;
    let resolved = client.get(bucket, key).await?;
    println!("resolved: {:?}", strings(&resolved.siblings));
    if resolved.single() != Some(merged.as_bytes()) {
        return Err(format!(
            "expected one value {merged:?}, got {:?}",
            strings(&resolved.siblings)
        )
        .into());
    }

    // 4. Delete with the context of what we saw.
    client.delete(bucket, key, &resolved.context).await?;
    println!(
        "deleted; found = {}",
        client.get(bucket, key).await?.is_found()
    );
    Ok(())
}

fn strings(v: &[Vec<u8>]) -> Vec<String> {
    v.iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kvorum-dev".into());
    let dir = Path::new(&dir);
    let certs = dir.join("certs");
    let tls = TlsMaterial::from_dir(&certs, "client")?;
    let nodes: Vec<SocketAddr> = std::fs::read_to_string(dir.join("nodes"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse())
        .collect::<Result<_, _>>()?;
    // Bucket creation is an admin request: it needs the admin certificate.
    let admin = Admin::connect(nodes.clone(), TlsMaterial::from_dir(&certs, "admin")?)?;
    let client = Client::connect(nodes, tls)?;
    run(&admin, &client).await?;
    admin.close().await;
    client.close().await;
    Ok(())
}
