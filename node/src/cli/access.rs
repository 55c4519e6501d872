//! `kvorum admin grant|revoke|access|reload-certs`: the access list and
//! certificate reloads (docs/security.md).

use super::args::AdminCommand;
use super::BoxError;
use kvorum_client::{AccessList, Grant, GrantScope, Revocation};
use std::process::ExitCode;

/// Runs one access command.
pub async fn run(cmd: AdminCommand) -> Result<ExitCode, BoxError> {
    match cmd {
        AdminCommand::Grant {
            client,
            bucket,
            prefix,
            read,
            write,
            conn,
        } => {
            let scope = match (bucket, prefix) {
                (Some(b), _) => GrantScope::Bucket(b),
                (None, Some(p)) => GrantScope::Prefix(p),
                (None, None) => return Err("name a --bucket or a --prefix".into()),
            };
            let admin = conn.admin()?;
            let list = admin
                .grant(Grant {
                    client,
                    scope,
                    read,
                    write,
                })
                .await?;
            admin.close().await;
            print_access(&list);
        }
        AdminCommand::Revoke {
            serial,
            role,
            name,
            conn,
        } => {
            let revocation = match (serial, role, name) {
                (Some(s), _, _) => Revocation::Serial(s),
                (None, Some(role), Some(name)) => Revocation::Name { role, name },
                _ => return Err("name a --serial, or a --role and a --name".into()),
            };
            let admin = conn.admin()?;
            let list = admin.revoke(revocation).await?;
            admin.close().await;
            print_access(&list);
        }
        AdminCommand::Access { json, conn } => {
            let admin = conn.admin()?;
            let list = admin.access().await?;
            admin.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_access(&list);
            }
        }
        AdminCommand::ReloadCerts { conn } => {
            let admin = conn.one_admin("reload")?;
            let cert = admin.reload_certificates().await?;
            admin.close().await;
            println!(
                "{} serves certificate {} (expires at {} Unix seconds)",
                cert.node, cert.serial, cert.not_after
            );
        }
        _ => return Err("not an access command".into()),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_access(list: &AccessList) {
    if list.grants.is_empty() {
        println!("no grants: client certificates may read and write nothing");
    } else {
        println!("{:<20} {:<32} ACCESS", "CLIENT", "BUCKETS");
        for g in &list.grants {
            let scope = match &g.scope {
                GrantScope::Bucket(b) => b.clone(),
                GrantScope::Prefix(p) if p.is_empty() => "(every bucket)".to_string(),
                GrantScope::Prefix(p) => format!("{p}*"),
            };
            let access = match (g.read, g.write) {
                (true, true) => "read, write",
                (true, false) => "read",
                _ => "write",
            };
            println!("{:<20} {:<32} {access}", g.client, scope);
        }
    }
    for r in &list.revoked {
        println!("revoked: {r}");
    }
}
