//! Who may do what: an application certificate is refused operator
//! requests, and an operator scopes applications to buckets with the
//! cluster's access list.
//!
//! Start a dev cluster (`kvorum dev`) in one terminal, then from the same
//! directory:
//!
//! ```text
//! cargo run -p kvorum-examples --example access
//! ```
//!
//! It uses the dev cluster's certificates in `kvorum-dev/certs` (`admin.pem`
//! for the operator, `client.pem` for the application; pass another
//! directory as the first argument).

use kvorum_client::{
    Admin, BucketProps, BucketType, CausalContext, Client, Error, ErrorReply, Grant, GrantScope,
    TlsMaterial,
};
use std::{net::SocketAddr, path::Path};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The walk-through: `admin` holds an admin certificate; `app` and
/// `app_as_admin` (an `Admin` handle built with the application's
/// certificate) hold a client certificate named `app_name`.
pub async fn run(
    admin: &Admin,
    app: &Client,
    app_as_admin: &Admin,
    app_name: &str,
) -> Result<(), BoxError> {
    // 1. An application certificate cannot run operator requests: the
    //    node answers with the typed `Forbidden` error.
    match app_as_admin.status().await {
        Err(Error::Server(ErrorReply::Forbidden(why))) => println!("status as the app: {why}"),
        other => return Err(format!("expected Forbidden, got {other:?}").into()),
    }

    // 2. The operator creates buckets and grants the application its own:
    //    read and write on every bucket whose name starts with "notes-".
    for b in ["notes-alice", "payroll"] {
        admin
            .create_bucket(b, BucketProps::new(BucketType::Register))
            .await?;
    }
    let list = admin
        .grant(Grant {
            client: app_name.into(),
            scope: GrantScope::Prefix("notes-".into()),
            read: true,
            write: true,
        })
        .await?;
    println!("grants: {:?}", list.grants);

    // 3. The application writes its buckets...
    app.put("notes-alice", b"todo", b"milk", &CausalContext::empty())
        .await?;
    println!("wrote notes-alice/todo");

    // 4. ...and, unless another grant covers it, no one else's.
    let covered = list
        .grants
        .iter()
        .any(|g| (g.client == "*" || g.client == app_name) && g.scope.covers("payroll") && g.read);
    match app.get("payroll", b"march").await {
        Err(Error::Server(ErrorReply::Forbidden(why))) => println!("payroll: {why}"),
        Ok(_) if covered => println!("payroll: readable (another grant covers it)"),
        other => return Err(format!("expected Forbidden, got {other:?}").into()),
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
    let app_tls = TlsMaterial::from_dir(&certs, "client")?;
    let app = Client::connect(nodes.clone(), app_tls.clone())?;
    let app_as_admin = Admin::connect(nodes, app_tls)?;
    // The dev cluster's client certificate is named "dev".
    if let Err(e) = run(&admin, &app, &app_as_admin, "dev").await {
        eprintln!("error: {e} ({:?})", e.source());
        std::process::exit(1);
    }
    admin.close().await;
    app.close().await;
    app_as_admin.close().await;
    Ok(())
}
