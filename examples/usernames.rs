//! Reserving usernames with conditional writes: a name is claimed with
//! `if_absent` (a second claim fails with `PreconditionFailed`, carrying
//! the owner), and a profile is edited with `if_match` (an edit based on
//! a stale read is refused instead of becoming a sibling).
//!
//! Start a dev cluster (`kvorum dev`) in one terminal, then from the same
//! directory:
//!
//! ```text
//! cargo run -p kvorum-examples --example usernames
//! ```

use kvorum_client::proto::Response;
use kvorum_client::{
    Admin, BucketProps, BucketType, Client, Error, ErrorReply, TlsMaterial, WriteOptions,
};
use std::{net::SocketAddr, path::Path};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Claims `name` for `user`: `Ok(true)` if it was free, `Ok(false)` (and
/// the owner printed) if someone holds it.
async fn claim(client: &Client, name: &str, user: &str) -> Result<bool, BoxError> {
    let claimed = client
        .put_with(
            "usernames",
            name.as_bytes(),
            user.as_bytes(),
            &Default::default(),
            WriteOptions::default().if_absent(),
        )
        .await;
    match claimed {
        Ok(_) => Ok(true),
        Err(Error::Server(ErrorReply::PreconditionFailed { current, .. })) => {
            if let Response::Value { siblings, .. } = *current {
                let owners: Vec<_> = siblings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect();
                println!("{name:?} is taken by {owners:?}");
            }
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The walk-through (`admin` creates the bucket).
pub async fn run(admin: &Admin, client: &Client, run_id: &str) -> Result<(), BoxError> {
    admin
        .create_bucket("usernames", BucketProps::new(BucketType::Register))
        .await?;

    // 1. Two sign-ups race for the same name: exactly one gets it.
    let name = format!("ada-{run_id}");
    let (a, b) = tokio::join!(
        claim(client, &name, "user-1"),
        claim(client, &name, "user-2")
    );
    let (a, b) = (a?, b?);
    println!("user-1 got {name:?}: {a}; user-2 got it: {b}");
    if a == b {
        return Err(format!("exactly one claim must win, got {a} and {b}").into());
    }

    // 2. A profile edited from two stale reads: the second edit is refused
    //    (its read is older than the first edit), re-read and applied.
    let key = format!("profile-{run_id}");
    let ctx = client
        .put(
            "usernames",
            key.as_bytes(),
            b"bio: hello",
            &Default::default(),
        )
        .await?;
    let first = WriteOptions::default().if_match();
    client
        .put_with(
            "usernames",
            key.as_bytes(),
            b"bio: hello, world",
            &ctx,
            first,
        )
        .await?;
    let stale = client
        .put_with("usernames", key.as_bytes(), b"bio: hi", &ctx, first)
        .await;
    match stale {
        Err(Error::Server(ErrorReply::PreconditionFailed { current, .. })) => {
            let Response::Value {
                siblings, context, ..
            } = *current
            else {
                return Err("the refused edit carries the current value".into());
            };
            println!(
                "stale edit refused; current: {:?}",
                String::from_utf8_lossy(&siblings[0])
            );
            client
                .put_with("usernames", key.as_bytes(), b"bio: hi", &context, first)
                .await?;
        }
        Ok(_) => return Err("an edit from a stale read was applied".into()),
        Err(e) => return Err(e.into()),
    }
    let read = client.get("usernames", key.as_bytes()).await?;
    println!(
        "profile now: {:?} (one value, no siblings)",
        read.siblings
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect::<Vec<_>>()
    );
    if read.siblings != vec![b"bio: hi".to_vec()] {
        return Err(format!("expected the re-read edit alone, got {:?}", read.siblings).into());
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
    // Names unique to this run, so the example can run again.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis()
        .to_string();
    run(&admin, &client, &run_id).await?;
    admin.close().await;
    client.close().await;
    Ok(())
}
