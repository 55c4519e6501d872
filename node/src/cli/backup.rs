//! `kvorum admin backup` and `restore`: a backup directory (see
//! [`kvorum_node::backup::file`]) written from each member's storage
//! snapshot, and placed into a new cluster; the members and the cluster's
//! digest branches, which `verify` (in `verify.rs`) uses too.

use super::args::{AdminCommand, Conn};
use super::BoxError;
use kvorum_client::proto::{BackupManifest, DigestAnswer, DigestQuery};
use kvorum_client::{Admin, Error as ClientError, ErrorReply};
use kvorum_node::backup::file::{
    self, BackupError, BackupIndex, BackupSet, NodeBackup, RecordWriter, INDEX_FILE, MANIFEST_FILE,
};
use kvorum_node::repair::aae::BRANCHES;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Bytes asked per backup page.
const PAGE_BYTES: u32 = 4 << 20;
/// Bytes of records per restore request (a node takes frames of 2 MiB by
/// default; a larger record goes alone).
const RESTORE_BATCH_BYTES: usize = 1 << 20;

/// Runs `admin backup` or `restore`.
pub async fn run(cmd: AdminCommand) -> Result<ExitCode, BoxError> {
    match cmd {
        AdminCommand::Backup {
            out,
            only,
            allow_down,
            conn,
        } => backup(&out, &only, allow_down, &conn).await,
        AdminCommand::Restore { from, merge, conn } => restore(&from, merge, &conn).await,
        _ => Err("not a backup or restore command".into()),
    }
}

/// The members to back up, restore into or verify: every member that is
/// not removed, each with an admin handle of its own address. A member
/// that is down is an error, or left out (with a warning) if `allow_down`.
pub(super) async fn members(
    conn: &Conn,
    allow_down: bool,
) -> Result<Vec<(String, Admin)>, BoxError> {
    let admin = conn.admin()?;
    let status = admin.cluster_status().await?;
    admin.close().await;
    let mut out = Vec::new();
    for m in status.members.iter().filter(|m| m.state != "removed") {
        if !m.reachable {
            if allow_down {
                eprintln!("warning: member {} ({}) is down: left out", m.id, m.addr);
                continue;
            }
            return Err(format!(
                "member {} ({}) is down: every member must answer{}",
                m.id,
                m.addr,
                if allow_down {
                    ""
                } else {
                    " (backup --allow-down leaves it out)"
                }
            )
            .into());
        }
        if !file::is_node_dir(&m.id) {
            return Err(format!("member id {:?} cannot name a directory", m.id).into());
        }
        let addr: SocketAddr = m
            .addr
            .parse()
            .map_err(|e| format!("member {} has address {:?}: {e}", m.id, m.addr))?;
        out.push((m.id.clone(), conn.admin_for(vec![addr])?));
    }
    Ok(out)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

async fn backup(
    out: &Path,
    only: &[String],
    allow_down: bool,
    conn: &Conn,
) -> Result<ExitCode, BoxError> {
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        return Err(format!("{}: exists and is not empty", out.display()).into());
    }
    let mut nodes = members(conn, allow_down).await?;
    if !only.is_empty() {
        for id in only {
            if !nodes.iter().any(|(n, _)| n == id) {
                return Err(format!("no member {id:?} up in this cluster").into());
            }
        }
        nodes.retain(|(n, _)| only.contains(n));
    }
    std::fs::create_dir_all(out)?;
    // Every snapshot first, so that they are close in time; the nodes are
    // then read at once, so no snapshot waits unread (a node releases one
    // left unread for a minute).
    let mut begun: Vec<(String, Admin, BackupManifest)> = Vec::new();
    let mut failed = None;
    for (id, admin) in nodes {
        match admin.backup_begin().await {
            Ok(m) if m.node == id => begun.push((id, admin, m)),
            Ok(m) => {
                let _ = admin.backup_end(m.snapshot).await;
                failed = Some(format!("{id}'s address is now node {}'s", m.node));
                break;
            }
            Err(e) => {
                failed = Some(format!("{id}: {e}"));
                break;
            }
        }
    }
    if let Some(why) = failed {
        for (_, admin, m) in &begun {
            let _ = admin.backup_end(m.snapshot).await;
        }
        return Err(why.into());
    }
    let began_ms = begun.iter().map(|(_, _, m)| m.taken_ms).min().unwrap_or(0);
    let started = Instant::now();
    let ids: Vec<String> = begun.iter().map(|(id, _, _)| id.clone()).collect();
    let mut reads = tokio::task::JoinSet::new();
    for (id, admin, manifest) in begun {
        let out = out.to_path_buf();
        reads.spawn(async move {
            let snapshot = manifest.snapshot;
            let done = back_up_node(&out, &admin, manifest).await;
            let _ = admin.backup_end(snapshot).await;
            admin.close().await;
            done.map_err(|e| format!("{id}: {e}"))
        });
    }
    let (mut records, mut bytes) = (0, 0);
    let mut failed = Vec::new();
    while let Some(done) = reads.join_next().await {
        match done {
            Ok(Ok(node)) => {
                records += node.records;
                bytes += node.bytes;
            }
            Ok(Err(e)) => failed.push(e),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        return Err(format!("backup not finished: {}", failed.join("; ")).into());
    }
    let index = BackupIndex {
        format: file::FORMAT,
        began_ms,
        finished_ms: now_ms(),
        nodes: ids,
    };
    // The index last: a directory without it is an unfinished backup.
    file::write_json(&out.join(INDEX_FILE), &index)?;
    println!(
        "backup of {} node(s) in {}: {records} records, {} in {:.1} s",
        index.nodes.len(),
        out.display(),
        mib(bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Pages through one node's snapshot into its directory.
async fn back_up_node(
    out: &Path,
    admin: &Admin,
    manifest: BackupManifest,
) -> Result<NodeBackup, BoxError> {
    let dir = out.join(&manifest.node);
    std::fs::create_dir_all(&dir)?;
    let mut writer = RecordWriter::create(&dir)?;
    let started = Instant::now();
    let mut shown = Instant::now();
    let mut after = None;
    loop {
        let (page, next) = admin
            .backup_page(manifest.snapshot, after.take(), PAGE_BYTES)
            .await?;
        for (k, r) in &page {
            writer.write(k, r)?;
        }
        let (records, bytes) = writer.written();
        if shown.elapsed() >= Duration::from_secs(1) && next.is_some() {
            println!(
                "{}: {records} records (of about {}), {}, {:.1} s",
                manifest.node,
                manifest.keys.max(records),
                mib(bytes),
                started.elapsed().as_secs_f64()
            );
            shown = Instant::now();
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let (records, bytes, checksum) = writer.finish()?;
    println!(
        "{}: {records} records, {}, {:.1} s",
        manifest.node,
        mib(bytes),
        started.elapsed().as_secs_f64()
    );
    let node = NodeBackup {
        manifest,
        records,
        bytes,
        checksum,
        took_ms: started.elapsed().as_millis() as u64,
    };
    file::write_json(&dir.join(MANIFEST_FILE), &node)?;
    Ok(node)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads every records file whole, checking each against its manifest.
fn check_files(set: &BackupSet) -> Result<(u64, Vec<String>), BackupError> {
    let mut merged = set.merged()?;
    let mut keys = 0;
    while merged.next()?.is_some() {
        keys += 1;
    }
    Ok((keys, merged.altered()))
}

/// The cluster's digest branches, or an error if its members computed
/// theirs on different rings.
pub(super) async fn cluster_branches(members: &[(String, Admin)]) -> Result<Vec<u64>, BoxError> {
    let mut out = vec![0u64; BRANCHES as usize];
    let mut views = BTreeMap::new();
    for (id, admin) in members {
        let DigestAnswer::Branches { view, hashes } = admin
            .digest(DigestQuery::Branches)
            .await
            .map_err(|e| format!("{id}: {e}"))?
        else {
            return Err(format!("{id} answered something else than branches").into());
        };
        if hashes.len() != out.len() {
            return Err(format!("{id} answered {} branches", hashes.len()).into());
        }
        views.insert(view, id.clone());
        out.iter_mut().zip(hashes).for_each(|(o, h)| *o ^= h);
    }
    if views.len() > 1 {
        return Err(format!(
            "the members hold different rings ({}): wait for gossip to settle, then run it again",
            views.values().cloned().collect::<Vec<_>>().join(" and ")
        )
        .into());
    }
    Ok(out)
}

async fn restore(from: &Path, merge: bool, conn: &Conn) -> Result<ExitCode, BoxError> {
    let set = BackupSet::open(from)?;
    let manifests = set.manifests()?;
    let (keys, altered) = check_files(&set)?;
    if !altered.is_empty() {
        return Err(format!("the backup is damaged or altered: {}", altered.join("; ")).into());
    }
    let targets = members(conn, false).await?;
    // A new cluster's nodes have data epochs of their own: none of the
    // backup's dots can be issued again by them. A node with a backed-up
    // node's actor is that node (or a copy of its data directory).
    for (id, admin) in &targets {
        let m = admin.backup_begin().await?;
        let _ = admin.backup_end(m.snapshot).await;
        if let Some(b) = manifests
            .iter()
            .find(|b| b.manifest.node == m.node && b.manifest.epoch == m.epoch)
        {
            return Err(format!(
                "member {id} has the data epoch of the backup's {} ({}): this is the cluster that was \
                 backed up, or a copy of its data; restore into a new cluster",
                b.manifest.node, m.epoch
            )
            .into());
        }
    }
    // Into an empty cluster: merging into one with data would bring back
    // keys deleted there whose tombstones were reaped since.
    if !merge && cluster_branches(&targets).await?.iter().any(|h| *h != 0) {
        return Err(
            "this cluster holds data: restore goes into an empty cluster \
                    (--merge joins the backup with what it holds; keys deleted here since \
                    the backup, their tombstones reaped, come back)"
                .into(),
        );
    }
    let admin = conn.admin()?;
    let mut buckets: BTreeMap<String, kvorum_client::BucketProps> = BTreeMap::new();
    for b in &manifests {
        for (name, props) in &b.manifest.buckets {
            match buckets.insert(name.clone(), *props) {
                Some(other) if other != *props => {
                    return Err(format!(
                        "the backup's nodes disagree on bucket {name}: {other:?} and {props:?}"
                    )
                    .into())
                }
                _ => {}
            }
        }
    }
    let here: BTreeMap<String, kvorum_client::BucketProps> =
        admin.buckets().await?.into_iter().collect();
    for (name, props) in &buckets {
        match here.get(name) {
            Some(p) if p == props => {}
            Some(p) if name == "default" && p.bucket_type == props.bucket_type => println!(
                "note: the default bucket here is {p:?}, in the backup {props:?} (its keys take this cluster's)"
            ),
            Some(p) => {
                return Err(format!(
                    "bucket {name} here is {p:?}, in the backup {props:?}: restore into another cluster"
                )
                .into())
            }
            None => admin.create_bucket(name, *props).await?,
        }
    }
    let started = Instant::now();
    let mut shown = Instant::now();
    let mut merged = set.merged()?;
    let (mut placed, mut sent, mut bytes, mut skipped) = (0u64, 0u64, 0u64, 0usize);
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let next = merged.next()?;
        let last = next.is_none();
        let record = match next {
            Some((key, copies)) => {
                let (record, left_out) =
                    file::merge_copies(&copies).map_err(|e| format!("{}: {e}", shown_key(&key)))?;
                if left_out > 0 {
                    eprintln!(
                        "warning: {}: {left_out} undecodable cop(ies) left out",
                        shown_key(&key)
                    );
                    skipped += left_out;
                }
                Some((key, record))
            }
            None => None,
        };
        let size = record.as_ref().map_or(0, |(k, r)| k.len() + r.len());
        // The batch goes before a record would take it past its size.
        if !batch.is_empty() && (last || batch_bytes + size > RESTORE_BATCH_BYTES) {
            placed += batch.len() as u64;
            sent += u64::from(place(&admin, std::mem::take(&mut batch)).await?);
            batch_bytes = 0;
        }
        if let Some((key, record)) = record {
            batch_bytes += size;
            bytes += size as u64;
            batch.push((key, record));
        }
        if shown.elapsed() >= Duration::from_secs(1) && !last {
            println!(
                "restored {placed} of {keys} keys, {}, {:.1} s",
                mib(bytes),
                started.elapsed().as_secs_f64()
            );
            shown = Instant::now();
        }
        if last {
            break;
        }
    }
    admin.close().await;
    let altered = merged.altered();
    if !altered.is_empty() {
        return Err(format!(
            "the backup changed while it was restored: {}",
            altered.join("; ")
        )
        .into());
    }
    println!(
        "restore of {} into {} node(s): {placed} keys, {} ({sent} copies sent to owners{}) in {:.1} s",
        from.display(),
        targets.len(),
        mib(bytes),
        if skipped > 0 { format!(", {skipped} undecodable copies left out") } else { String::new() },
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Places one batch, again while an owner is unavailable (for a minute).
async fn place(admin: &Admin, batch: Vec<(Vec<u8>, Vec<u8>)>) -> Result<u32, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match admin.restore(batch.clone()).await {
            Ok(sent) => return Ok(sent),
            Err(ClientError::Server(ErrorReply::BadRequest(why))) => return Err(why.into()),
            Err(ClientError::Server(ErrorReply::TooLarge { size, max, .. })) => {
                let key = batch.first().map(|(k, _)| shown_key(k)).unwrap_or_default();
                return Err(format!(
                    "a restore request of {size} bytes (from key {key}) is over the node's {max}: \
                     a record this large needs a larger [limits] max_frame_bytes on the nodes \
                     while they are restored"
                )
                .into());
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("restore batch: {e}; again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A storage key as `bucket/partition[/sort]`.
pub(super) fn shown_key(key: &[u8]) -> String {
    match kvorum_ring::item::decode(key) {
        Some((bucket, partition, [])) => {
            format!("{bucket}/{}", String::from_utf8_lossy(&partition))
        }
        Some((bucket, partition, sort)) => format!(
            "{bucket}/{}/{}",
            String::from_utf8_lossy(&partition),
            String::from_utf8_lossy(sort)
        ),
        None => format!("{key:?}"),
    }
}
