//! Backups through the admin API: what `kvorum admin backup` and `verify`
//! do, for tooling of your own (streaming records to object storage, say).
//! For each member: take a storage snapshot (writes go on), page through
//! its records, release it; then the cluster's digest, the XOR of every
//! member's over the keys it holds as first replica (docs/operations.md
//! "Backups, restores and verification").
//!
//! Start a dev cluster (`kvorum dev`) in one terminal, then from the same
//! directory:
//!
//! ```text
//! cargo run -p kvorum-examples --example backup
//! ```

use kvorum_client::proto::{DigestAnswer, DigestQuery};
use kvorum_client::{Admin, TlsMaterial};
use std::{net::SocketAddr, path::Path};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads every member's snapshot through `admin_tls` (an admin
/// certificate); returns the records read and the cluster's digest root.
pub async fn run(seeds: &[SocketAddr], admin_tls: &TlsMaterial) -> Result<(u64, u64), BoxError> {
    let admin = Admin::connect(seeds.iter().copied(), admin_tls.clone())?;
    let members = admin.cluster_status().await?.members;
    admin.close().await;
    let (mut records, mut root) = (0u64, 0u64);
    for m in members.iter().filter(|m| m.state != "removed") {
        // One node's handle: a snapshot lives on the node that took it.
        let one = Admin::connect([m.addr.parse::<SocketAddr>()?], admin_tls.clone())?;
        let manifest = one.backup_begin().await?;
        let (mut after, mut bytes, mut count) = (None, 0u64, 0u64);
        loop {
            let (page, next) = one.backup_page(manifest.snapshot, after, 1 << 20).await?;
            count += page.len() as u64;
            bytes += page
                .iter()
                .map(|(k, r)| (k.len() + r.len()) as u64)
                .sum::<u64>();
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        one.backup_end(manifest.snapshot).await?;
        println!(
            "{}: epoch {}, {count} records, {bytes} bytes, {} buckets",
            manifest.node,
            manifest.epoch,
            manifest.buckets.len()
        );
        records += count;
        if let DigestAnswer::Branches { hashes, .. } = one.digest(DigestQuery::Branches).await? {
            root ^= hashes.iter().fold(0, |a, h| a ^ h);
        }
        one.close().await;
    }
    println!("{records} records in all; the cluster's digest root is {root:016x}");
    Ok((records, root))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kvorum-dev".into());
    let dir = Path::new(&dir);
    let nodes: Vec<SocketAddr> = std::fs::read_to_string(dir.join("nodes"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse())
        .collect::<Result<_, _>>()?;
    let tls = TlsMaterial::from_dir(dir.join("certs"), "admin")?;
    run(&nodes, &tls).await?;
    Ok(())
}
