//! A per-user inbox on sorted partitions: each user is a partition, each
//! message an item whose sort key is its time, so "the newest 10" is one
//! reverse range read and paging is the page's `next`.
//!
//! Start a dev cluster (`kvorum dev`) in one terminal, then from the same
//! directory:
//!
//! ```text
//! cargo run -p kvorum-examples --example inbox
//! ```

use kvorum_client::proto::RangeQuery;
use kvorum_client::{Admin, BucketProps, BucketType, CausalContext, Client, Outcome, TlsMaterial};
use std::{error::Error, net::SocketAddr, path::Path};

type BoxError = Box<dyn Error + Send + Sync>;

/// A message's sort key: its time, zero-padded so byte order is time order.
fn at(minute: u32) -> Vec<u8> {
    format!("2026-12-06T{:02}:{:02}", 9 + minute / 60, minute % 60).into_bytes()
}

/// The walk-through (`admin` creates the bucket).
pub async fn run(admin: &Admin, client: &Client) -> Result<(), BoxError> {
    admin
        .create_bucket("inbox", BucketProps::new(BucketType::Register))
        .await?;

    // 0. A clean slate, so the example can run again: delete what an
    //    earlier run left (each item's context covers what the page saw).
    for user in [&b"alice"[..], b"bob"] {
        for item in client
            .read_range(RangeQuery::new("inbox", user), 10_000)
            .await?
        {
            client
                .partition("inbox", user)
                .delete(&item.sort, &item.context)
                .await?;
        }
    }

    // 1. A morning of mail, 45 messages for alice and 5 for bob, in one
    //    batch: one request, one outcome per message.
    let mut batch = client.batch();
    for m in 0..45u32 {
        let body = format!("message {m} for alice");
        batch = batch.put(
            "inbox",
            b"alice",
            &at(m),
            body.as_bytes(),
            &CausalContext::empty(),
        );
    }
    for m in 0..5u32 {
        let body = format!("message {m} for bob");
        batch = batch.put(
            "inbox",
            b"bob",
            &at(m),
            body.as_bytes(),
            &CausalContext::empty(),
        );
    }
    let outcomes = batch.send().await?;
    let written = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Outcome::Written { .. })))
        .count();
    println!("batch: {written} of {} messages written", outcomes.len());
    if written != 50 {
        return Err(format!("a batch write failed: {outcomes:?}").into());
    }

    // 2. Alice opens her inbox: the newest 10, newest first.
    let inbox = client.partition("inbox", b"alice");
    let first = inbox.page(&inbox.range().reverse().limit(10)).await?;
    println!("alice's newest:");
    for item in &first.items {
        let body = item.value.siblings().and_then(|s| s.first()).cloned();
        println!(
            "  {}  {}",
            String::from_utf8_lossy(&item.sort),
            String::from_utf8_lossy(&body.unwrap_or_default())
        );
    }
    if first.items.first().map(|i| i.sort.clone()) != Some(at(44)) {
        return Err("the newest message is not first".into());
    }

    // 3. She scrolls: the next page goes on where the first ended.
    let mut q = inbox.range().reverse().limit(10);
    q.after = first.next.clone();
    let second = inbox.page(&q).await?;
    println!(
        "next page: {} .. {}",
        String::from_utf8_lossy(&second.items[0].sort),
        String::from_utf8_lossy(&second.items[second.items.len() - 1].sort)
    );
    if second.items[0].sort != at(34) {
        return Err("the second page does not follow the first".into());
    }

    // 4. She deletes the 9 o'clock messages (the item's own context from
    //    the page says which values the delete covers), then counts what
    //    is left; bob's inbox is untouched.
    let nine = client
        .read_range(
            RangeQuery::new("inbox", b"alice").prefix(b"2026-12-06T09:0"),
            100,
        )
        .await?;
    for item in &nine {
        inbox.delete(&item.sort, &item.context).await?;
    }
    let left = client
        .read_range(RangeQuery::new("inbox", b"alice"), 1_000)
        .await?;
    let bobs = client
        .read_range(RangeQuery::new("inbox", b"bob"), 1_000)
        .await?;
    println!(
        "deleted {} messages; alice has {} left, bob {}",
        nine.len(),
        left.len(),
        bobs.len()
    );
    if (nine.len(), left.len(), bobs.len()) != (10, 35, 5) {
        return Err("unexpected counts after the delete".into());
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
    run(&admin, &client).await?;
    admin.close().await;
    client.close().await;
    Ok(())
}
