//! `kvorum admin verify`: two sides, each a backup or a cluster, compared
//! by digests of the whole key space, from the branches down to the keys
//! of differing segments only.

use super::args::{AdminCommand, Conn};
use super::backup::{cluster_branches, members, shown_key};
use super::BoxError;
use kvorum_client::proto::{DigestAnswer, DigestQuery};
use kvorum_client::Admin;
use kvorum_node::backup::file::{self, BackupSet};
use kvorum_node::repair::aae::{differing, leaf_of, segment, BRANCHES, PER_BRANCH, SEGMENTS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Runs `admin verify`.
pub async fn run(cmd: AdminCommand) -> Result<ExitCode, BoxError> {
    let AdminCommand::Verify {
        backup,
        with,
        with_nodes,
        with_ca,
        with_cert,
        with_key,
        all,
        conn,
    } = cmd
    else {
        return Err("not a verify command".into());
    };
    let a = match &backup {
        Some(dir) => Side::backup(dir)?,
        None => Side::cluster(&conn).await?,
    };
    let b = if let Some(dir) = &with {
        Side::backup(dir)?
    } else if !with_nodes.is_empty() {
        let other = Conn {
            nodes: with_nodes,
            ca: with_ca.or(conn.ca.clone()),
            client_cert: with_cert.or(conn.client_cert.clone()),
            client_key: with_key.or(conn.client_key.clone()),
            ..conn
        };
        Side::cluster(&other).await?
    } else if backup.is_some() {
        Side::cluster(&conn).await?
    } else {
        return Err("verify what? name a backup directory, --with DIR or --with-nodes".into());
    };
    verify(a, b, all).await
}

/// Segments per digest key listing (the node's limit).
const SEGMENTS_PER_QUERY: usize = 64;

/// One side of a verify: a backup's merged records, or a cluster's members.
enum Side {
    Backup {
        dir: PathBuf,
        set: BackupSet,
        leaves: Vec<u64>,
        keys: u64,
        altered: Vec<String>,
    },
    Cluster {
        what: String,
        members: Vec<(String, Admin)>,
    },
}

/// Keys of differing segments, with their state hashes, and the keys two
/// members listed (each key counts on one first replica: two mean their
/// rings differed).
type Listing = (BTreeMap<Vec<u8>, u64>, Vec<Vec<u8>>);

impl Side {
    /// A backup's digest: one pass over its merged records.
    fn backup(dir: &Path) -> Result<Side, BoxError> {
        let set = BackupSet::open(dir)?;
        let mut leaves = vec![0u64; SEGMENTS as usize];
        let mut merged = set.merged()?;
        let mut keys = 0;
        while let Some((key, copies)) = merged.next()? {
            let hash = state_hash_of(&key, &copies)?;
            leaves[segment(&key) as usize] ^= leaf_of([(key.as_slice(), hash)]);
            keys += 1;
        }
        let altered = merged.altered();
        Ok(Side::Backup {
            dir: dir.to_path_buf(),
            set,
            leaves,
            keys,
            altered,
        })
    }

    async fn cluster(conn: &Conn) -> Result<Side, BoxError> {
        let members = members(conn, false).await?;
        let what = format!(
            "the cluster of {}",
            members
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        Ok(Side::Cluster { what, members })
    }

    fn name(&self) -> String {
        match self {
            Side::Backup { dir, .. } => format!("backup {}", dir.display()),
            Side::Cluster { what, .. } => what.clone(),
        }
    }

    async fn branches(&self) -> Result<Vec<u64>, BoxError> {
        match self {
            Side::Backup { leaves, .. } => Ok(leaves
                .chunks(PER_BRANCH as usize)
                .map(|c| c.iter().fold(0, |a, h| a ^ h))
                .collect()),
            Side::Cluster { members, .. } => cluster_branches(members).await,
        }
    }

    /// The leaves of `branches`, branch by branch, flattened.
    async fn leaves(&self, branches: &[u32]) -> Result<Vec<u64>, BoxError> {
        let members = match self {
            Side::Backup { leaves, .. } => {
                return Ok(branches
                    .iter()
                    .flat_map(|b| {
                        let at = (*b * PER_BRANCH) as usize;
                        leaves[at..at + PER_BRANCH as usize].to_vec()
                    })
                    .collect())
            }
            Side::Cluster { members, .. } => members,
        };
        let mut out = vec![0u64; branches.len() * PER_BRANCH as usize];
        let q = DigestQuery::Leaves {
            branches: branches.to_vec(),
        };
        for (id, admin) in members {
            let DigestAnswer::Leaves(got) = admin
                .digest(q.clone())
                .await
                .map_err(|e| format!("{id}: {e}"))?
            else {
                return Err(format!("{id} answered something else than leaves").into());
            };
            for (b, l) in got {
                let Some(i) = branches.iter().position(|x| *x == b) else {
                    return Err(format!("{id} answered branch {b}, not asked").into());
                };
                if l.len() != PER_BRANCH as usize {
                    return Err(format!("{id} answered {} leaves for branch {b}", l.len()).into());
                }
                let at = i * PER_BRANCH as usize;
                for (o, h) in out[at..at + PER_BRANCH as usize].iter_mut().zip(l) {
                    *o ^= h;
                }
            }
        }
        Ok(out)
    }

    /// The keys of `segments` with their state hashes.
    async fn keys(&self, segments: &[u32]) -> Result<Listing, BoxError> {
        let mut out = BTreeMap::new();
        let mut twice = Vec::new();
        match self {
            Side::Backup { set, .. } => {
                let wanted: std::collections::BTreeSet<u32> = segments.iter().copied().collect();
                let mut merged = set.merged()?;
                while let Some((key, copies)) = merged.next()? {
                    if wanted.contains(&segment(&key)) {
                        let hash = state_hash_of(&key, &copies)?;
                        out.insert(key, hash);
                    }
                }
            }
            Side::Cluster { members, .. } => {
                for chunk in segments.chunks(SEGMENTS_PER_QUERY) {
                    let q = DigestQuery::Keys {
                        segments: chunk.to_vec(),
                    };
                    for (id, admin) in members {
                        let DigestAnswer::Keys(keys) = admin
                            .digest(q.clone())
                            .await
                            .map_err(|e| format!("{id}: {e}"))?
                        else {
                            return Err(format!("{id} answered something else than keys").into());
                        };
                        for (k, h) in keys {
                            if out.insert(k.clone(), h).is_some() {
                                twice.push(k);
                            }
                        }
                    }
                }
            }
        }
        Ok((out, twice))
    }

    async fn close(self) {
        if let Side::Cluster { members, .. } = self {
            for (_, a) in members {
                a.close().await;
            }
        }
    }
}

/// The state hash a cluster holding `copies` merged would have for `key`.
fn state_hash_of(key: &[u8], copies: &[Vec<u8>]) -> Result<u64, BoxError> {
    let (record, _) = file::merge_copies(copies).map_err(|e| format!("{}: {e}", shown_key(key)))?;
    Ok(kvorum_node::repair::aae::state_hash(&record))
}

/// Differing segments whose keys a verify lists without --all.
const LISTED_SEGMENTS: usize = 1024;

async fn verify(a: Side, b: Side, all: bool) -> Result<ExitCode, BoxError> {
    let started = Instant::now();
    let mut damaged = Vec::new();
    for side in [&a, &b] {
        if let Side::Backup {
            altered, keys, dir, ..
        } = side
        {
            println!("{}: {keys} keys", dir.display());
            damaged.extend(altered.iter().map(|w| format!("{}: {w}", dir.display())));
        }
    }
    let branches = differing(&a.branches().await?, &b.branches().await?);
    let mut segments = Vec::new();
    if !branches.is_empty() {
        let (la, lb) = (a.leaves(&branches).await?, b.leaves(&branches).await?);
        for i in differing(&la, &lb) {
            let branch = branches[i as usize / PER_BRANCH as usize];
            segments.push(branch * PER_BRANCH + i % PER_BRANCH);
        }
    }
    let listed = if all {
        &segments[..]
    } else {
        &segments[..segments.len().min(LISTED_SEGMENTS)]
    };
    let ((ka, twice_a), (kb, twice_b)) = if listed.is_empty() {
        Default::default()
    } else {
        (a.keys(listed).await?, b.keys(listed).await?)
    };
    let mut differences = Vec::new();
    for (k, h) in &ka {
        match kb.get(k) {
            None => differences.push((k.clone(), format!("only in {}", a.name()))),
            Some(o) if o != h => differences.push((k.clone(), "different states".to_string())),
            Some(_) => {}
        }
    }
    for k in kb.keys().filter(|k| !ka.contains_key(*k)) {
        differences.push((k.clone(), format!("only in {}", b.name())));
    }
    differences.sort();
    println!(
        "compared {} with {}: {} of {BRANCHES} branches and {} segments differ, {} keys listed, in {:.1} s",
        a.name(),
        b.name(),
        branches.len(),
        segments.len(),
        ka.len() + kb.len(),
        started.elapsed().as_secs_f64()
    );
    for (k, why) in differences.iter().take(if all { usize::MAX } else { 20 }) {
        println!("  {}: {why}", shown_key(k));
    }
    if !all && differences.len() > 20 {
        println!(
            "  ... and {} more (--all lists every one)",
            differences.len() - 20
        );
    }
    if listed.len() < segments.len() {
        println!(
            "  ... and the keys of {} more differing segments (--all lists them)",
            segments.len() - listed.len()
        );
    }
    // Digests that differ with no key to show for it: the members' rings
    // or data changed between the queries. Nothing can be said.
    let unexplained = !segments.is_empty() && differences.is_empty();
    for k in twice_a.iter().chain(&twice_b) {
        println!(
            "  {}: listed by two members (their rings differed)",
            shown_key(k)
        );
    }
    if unexplained || !twice_a.is_empty() || !twice_b.is_empty() {
        println!("inconclusive: the digests changed during the verify (a ring change, or writes); run it again");
    }
    for d in &damaged {
        println!("damaged: {d}");
    }
    println!("{} differences", differences.len());
    a.close().await;
    b.close().await;
    let clean = differences.is_empty()
        && damaged.is_empty()
        && !unexplained
        && twice_a.is_empty()
        && twice_b.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
