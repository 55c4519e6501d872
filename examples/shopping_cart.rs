//! A shopping cart as a map, updated concurrently from two "devices" through
//! two different nodes, surviving without losing either device's changes.
//!
//! Start a dev cluster (`kvorum dev`) in one terminal, then from the same
//! directory:
//!
//! ```text
//! cargo run -p kvorum-examples --example shopping_cart
//! ```

use kvorum_client::{
    Admin, BucketProps, BucketType, Client, FieldKind, FieldValue, MapUpdate, ReadOptions,
    TlsMaterial, WriteOptions,
};
use std::{error::Error, net::SocketAddr, path::Path};

type BoxError = Box<dyn Error + Send + Sync>;

/// The walk-through; `phone` and `laptop` should reach different nodes
/// (`admin` creates the bucket).
pub async fn run(admin: &Admin, phone: &Client, laptop: &Client) -> Result<(), BoxError> {
    // A map bucket (idempotent: creating it again with equal props is fine).
    admin
        .create_bucket("carts", BucketProps::new(BucketType::Map))
        .await?;
    let (on_phone, on_laptop) = (
        phone
            .map("carts", b"alice")
            .write_options(WriteOptions::w(2)),
        laptop
            .map("carts", b"alice")
            .read_options(ReadOptions::r(3)),
    );

    // 1. Both devices change the cart at the same time, each through its
    //    own node: quantities are counters, so both increments count.
    let (a, b) = tokio::join!(
        on_phone.update(
            MapUpdate::new()
                .increment("apples", 2)
                .set_lww("address", b"1 Main St")
        ),
        on_laptop.update(
            MapUpdate::new()
                .increment("apples", 1)
                .increment("pears", 4)
                .enable("gift-wrap")
        ),
    );
    a?;
    b?;
    let cart = on_laptop.fetch().await?;
    show("after concurrent updates", &cart.value.fields);
    let qty = |f: &str| match cart.value.get(f, FieldKind::Counter) {
        Some(FieldValue::Counter(n)) => *n,
        _ => 0,
    };
    if (qty("apples"), qty("pears")) != (3, 4) {
        return Err(format!("lost an update: {:?}", cart.value).into());
    }

    // 2. The laptop removes the pears it saw, while the phone adds more
    //    pears it had not shown the laptop: the removal only removes what
    //    the laptop observed, so the phone's new pears stay in the cart.
    let seen = cart.context;
    on_phone
        .update(MapUpdate::new().increment("pears", 1))
        .await?;
    on_laptop
        .update(
            MapUpdate::new()
                .remove_field("pears", FieldKind::Counter)
                .disable("gift-wrap")
                .context(&seen),
        )
        .await?;
    let cart = on_laptop.fetch().await?;
    show("after a removal concurrent with an add", &cart.value.fields);
    if cart.value.get("pears", FieldKind::Counter).is_none() {
        return Err("the concurrent add of pears was lost".into());
    }
    if cart.value.get("gift-wrap", FieldKind::Flag) != Some(&FieldValue::Flag(false)) {
        return Err(format!("gift-wrap not disabled: {:?}", cart.value).into());
    }
    Ok(())
}

fn show(title: &str, fields: &[(String, FieldKind, FieldValue)]) {
    println!("{title}:");
    for (name, kind, value) in fields {
        println!("  {name} ({kind}): {value:?}");
    }
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
    // Each device talks to its own node first.
    let mut other = nodes.clone();
    other.rotate_left(1);
    // Bucket creation is an admin request: it needs the admin certificate.
    let admin = Admin::connect(nodes.clone(), TlsMaterial::from_dir(&certs, "admin")?)?;
    let (phone, laptop) = (
        Client::connect(nodes, tls.clone())?,
        Client::connect(other, tls)?,
    );
    run(&admin, &phone, &laptop).await?;
    admin.close().await;
    phone.close().await;
    laptop.close().await;
    Ok(())
}
