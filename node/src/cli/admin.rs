//! The operator commands (`kvorum admin ...` and `kvorum status`), through
//! the client crate's [`Admin`] handle.

use super::args::{AdminCommand, BucketCommand, Conn};
use super::print::{print_ring, print_status};
use super::BoxError;
use kvorum_client::{Admin, BucketProps};
use std::{net::SocketAddr, process::ExitCode};

/// Runs one `kvorum admin` command.
pub async fn run(cmd: AdminCommand) -> Result<ExitCode, BoxError> {
    match cmd {
        AdminCommand::Repair { conn } => {
            let client = conn.admin()?;
            let (exchanges, keys) = client.repair().await?;
            println!("{exchanges} exchange(s), {keys} key(s) repaired");
            client.close().await;
        }
        AdminCommand::Status { json, conn } => {
            let client = conn.admin()?;
            let status = client.cluster_status().await?;
            // The transfers of the nodes the change waits for (the answering
            // node knows only its own).
            let mut transfers = vec![(status.node.clone(), status.transfers.clone())];
            for id in &status.waiting_for {
                let Some(m) = status.members.iter().find(|m| &m.id == id) else {
                    continue;
                };
                if *id == status.node {
                    continue;
                }
                let Ok(addr) = m.addr.parse::<SocketAddr>() else {
                    continue;
                };
                if let Ok(other) = conn.admin_for(vec![addr]) {
                    if let Ok(s) = other.cluster_status().await {
                        transfers.push((id.clone(), s.transfers));
                    }
                    other.close().await;
                }
            }
            // Each member's disk (a node knows only its own).
            let mut disks = Vec::new();
            for m in status.members.iter().filter(|m| m.state != "removed") {
                // Asked of that member itself (a handle on several nodes
                // may send each call to another).
                let disk = if !m.reachable && m.id != status.node {
                    Err("unreachable".to_string())
                } else {
                    match m
                        .addr
                        .parse::<SocketAddr>()
                        .map(|a| conn.admin_for(vec![a]))
                    {
                        Ok(Ok(other)) => {
                            let d = other.disk().await.map_err(|e| e.to_string());
                            other.close().await;
                            d
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                };
                disks.push((m.id.clone(), disk));
            }
            client.close().await;
            if json {
                let out = serde_json::json!({
                    "disks": disks
                        .iter()
                        .map(|(n, d)| match d {
                            Ok(d) => serde_json::json!(d),
                            Err(e) => serde_json::json!({"node": n, "error": e}),
                        })
                        .collect::<Vec<_>>(),
                    "status": status,
                    "transfers_by_node": transfers
                        .iter()
                        .map(|(n, t)| serde_json::json!({"node": n, "transfers": t}))
                        .collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_status(&status, &transfers, &disks);
            }
        }
        AdminCommand::Ring { n, all, json, conn } => {
            let client = conn.admin()?;
            let ranges = client.ring(n).await?;
            client.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&ranges)?);
            } else {
                print_ring(&ranges, all);
            }
        }
        AdminCommand::Join { seed, conn } => {
            let client = conn.one_admin("join")?;
            let (id, _) = client.status().await?;
            println!("{}", client.join(&id, &seed.to_string()).await?);
            client.close().await;
        }
        AdminCommand::Leave { wait, conn } => {
            let client = conn.one_admin("leave")?;
            let (id, members) = client.status().await?;
            println!("{}", client.leave(&id).await?);
            client.close().await;
            if wait {
                // The leaving node stays reachable; ask the others too.
                let others: Vec<SocketAddr> = members
                    .iter()
                    .filter(|m| m.id != id)
                    .filter_map(|m| m.addr.parse().ok())
                    .collect();
                wait_removed(&conn.admin_for(others)?, &id).await?;
            }
        }
        AdminCommand::Remove { node, wait, conn } => {
            let client = conn.admin()?;
            println!("{}", client.remove_node(&node).await?);
            if wait {
                wait_removed(&client, &node).await?;
            }
            client.close().await;
        }
        AdminCommand::Bucket(BucketCommand::Create {
            name,
            bucket_type,
            n,
            r,
            w,
            default_ttl,
            conn,
        }) => {
            let majority = n / 2 + 1;
            let mut props = BucketProps::new(bucket_type)
                .n(n)
                .r(r.unwrap_or(majority))
                .w(w.unwrap_or(majority));
            if let Some(ttl) = default_ttl {
                props = props.default_ttl(ttl);
            }
            props.validate()?;
            let client = conn.admin()?;
            client.create_bucket(&name, props).await?;
            let ttl = props
                .default_ttl_ms
                .map(|ms| format!(" default TTL {ms} ms"))
                .unwrap_or_default();
            println!(
                "bucket {name}: {bucket_type}, N={} R={} W={}{ttl}",
                props.n, props.r, props.w
            );
            client.close().await;
        }
        cmd @ (AdminCommand::Grant { .. }
        | AdminCommand::Revoke { .. }
        | AdminCommand::Access { .. }
        | AdminCommand::ReloadCerts { .. }) => return super::access::run(cmd).await,
        cmd @ (AdminCommand::Backup { .. } | AdminCommand::Restore { .. }) => {
            return super::backup::run(cmd).await
        }
        cmd @ AdminCommand::Verify { .. } => return super::verify::run(cmd).await,
        AdminCommand::Quarantine { conn } => {
            let admin = conn.one_admin("ask")?;
            let list = admin.quarantined().await?;
            admin.close().await;
            if list.is_empty() {
                println!("no quarantined records");
            }
            for q in list {
                println!(
                    "{} {} ({} bytes, at {} ms): {}",
                    q.bucket,
                    String::from_utf8_lossy(&q.key),
                    q.bytes,
                    q.at_ms,
                    q.why
                );
            }
        }
        AdminCommand::Bucket(BucketCommand::List { conn }) => {
            let client = conn.admin()?;
            println!(
                "{:<24} {:<9} {:>2} {:>2} {:>2} DEFAULT_TTL",
                "BUCKET", "TYPE", "N", "R", "W"
            );
            for (name, p) in client.buckets().await? {
                let ttl = p
                    .default_ttl_ms
                    .map_or_else(|| "-".to_string(), |ms| format!("{ms}ms"));
                println!(
                    "{:<24} {:<9} {:>2} {:>2} {:>2} {ttl}",
                    name,
                    p.bucket_type.to_string(),
                    p.n,
                    p.r,
                    p.w
                );
            }
            client.close().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kvorum status`: the members a node knows.
pub async fn status(conn: Conn) -> Result<ExitCode, BoxError> {
    let client = conn.admin()?;
    let (node, members) = client.status().await?;
    println!("{node} knows {} member(s):", members.len());
    for m in members {
        println!(
            "  {}  {}{}",
            m.id,
            m.addr,
            m.zone.map(|z| format!("  zone {z}")).unwrap_or_default()
        );
    }
    client.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Polls until `node` is removed, printing the change's progress.
async fn wait_removed(client: &Admin, node: &str) -> Result<(), BoxError> {
    let mut last = String::new();
    loop {
        let s = client.cluster_status().await?;
        let state = s
            .members
            .iter()
            .find(|m| m.id == node)
            .map(|m| m.state.clone())
            .unwrap_or_default();
        if state == "removed" {
            println!("{node} removed");
            return Ok(());
        }
        let line = format!(
            "{node} {state}; waiting for {}",
            if s.waiting_for.is_empty() {
                "gossip".to_string()
            } else {
                s.waiting_for.join(", ")
            }
        );
        if line != last {
            println!("{line}");
            last = line;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
