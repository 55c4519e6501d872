//! Backups under load (issue 28): a 3-node cluster is backed up with
//! `kvorum admin backup` while writes go on, restored with `kvorum admin
//! restore` into a new 4-node cluster, and compared with `kvorum admin
//! verify`; an altered backup is found out.

mod common;

use common::TestCluster;
use kvorum_client::{BucketProps, BucketType, CausalContext};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const KVORUM: &str = env!("CARGO_BIN_EXE_kvorum");

/// Runs `kvorum admin ARGS` against `c` with its admin certificate.
fn admin(c: &TestCluster, args: &[&str]) -> Output {
    let d = c.dir.path();
    let out = Command::new(KVORUM)
        .arg("admin")
        .args(args)
        .arg("--nodes")
        .arg(c.addrs[0].to_string())
        .arg("--ca")
        .arg(d.join("ca.pem"))
        .arg("--cert")
        .arg(d.join("admin.pem"))
        .arg("--key")
        .arg(d.join("admin.key"))
        .stdin(Stdio::null())
        .output()
        .expect("kvorum runs");
    eprintln!(
        "kvorum admin {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kvorum admin verify` of `c` with these arguments: (exit code, stdout).
fn verify(c: &TestCluster, args: &[&str]) -> (i32, String) {
    let mut all = vec!["verify"];
    all.extend(args);
    all.push("--all");
    let out = admin(c, &all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The differing keys a verify listed (`  bucket/key: why` lines).
fn listed(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split(": ").next())
        .map(str::to_string)
        .collect()
}

fn pre_key(i: u32) -> Vec<u8> {
    format!("pre-{i}").into_bytes()
}

fn pre_value(i: u32) -> Vec<u8> {
    format!("value-of-pre-{i:04}").into_bytes()
}

/// Replaces `from` by `to` (same length) in a file; true if it was there.
fn alter(path: &Path, from: &[u8], to: &[u8]) -> bool {
    let mut bytes = std::fs::read(path).unwrap();
    let Some(at) = bytes.windows(from.len()).position(|w| w == from) else {
        return false;
    };
    bytes[at..at + to.len()].copy_from_slice(to);
    std::fs::write(path, bytes).unwrap();
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_writes_restores_into_a_bigger_cluster_and_verifies() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let source = TestCluster::start(3, "").await;
        let client = source.client();
        source
            .admin()
            .create_bucket("tags", BucketProps::new(BucketType::Set).n(3))
            .await
            .unwrap();
        for i in 0..300u32 {
            client
                .put(
                    "default",
                    &pre_key(i),
                    &pre_value(i),
                    &CausalContext::empty(),
                )
                .await
                .unwrap();
        }
        // A deleted key and a set: a tombstone and another type restore too.
        let gone = client.get("default", &pre_key(7)).await.unwrap();
        client
            .delete("default", &pre_key(7), &gone.context)
            .await
            .unwrap();
        client.set("tags", b"post").add(b"rust").await.unwrap();
        // Writers go on through the backup.
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (client, stop, written) = (client.clone(), stop.clone(), written.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("live-{w}-{}", i % 50);
                        if client
                            .put(
                                "default",
                                key.as_bytes(),
                                &i.to_be_bytes(),
                                &CausalContext::empty(),
                            )
                            .await
                            .is_ok()
                        {
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        let before = written.load(Ordering::Relaxed);
        let out = tempfile::tempdir().unwrap();
        let backup_dir = out.path().join("backup");
        let backup = backup_dir.to_str().unwrap();
        let done = admin(&source, &["backup", "--out", backup]);
        assert!(done.status.success(), "backup failed");
        let during = written.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        eprintln!("{during} writes acknowledged while the backup ran");
        for n in ["n1", "n2", "n3"] {
            assert!(backup_dir.join(n).join("records.kvb").exists());
        }
        let printed = String::from_utf8_lossy(&done.stdout);
        assert!(printed.contains("backup of 3 node(s)"), "{printed}");
        let served = common::metric(
            source.nodes[0].as_ref().unwrap(),
            "kvorum_backup_records_total",
            &[],
        );
        assert!(served >= 300.0, "n1 served {served} records to the backup");
        // The example program, against this cluster: the same records.
        let (records, root) = backup_example::run(&source.addrs, &source.admin_tls())
            .await
            .unwrap();
        assert!(records >= 3 * 300, "{records} records");
        assert_ne!(root, 0);

        // A new cluster of 4 nodes, its own CA.
        let target = TestCluster::start(4, "").await;
        // The source itself is refused: its nodes issued the backup's dots.
        let refused = admin(&source, &["restore", backup]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("restore into a new cluster"));
        let restored = admin(&target, &["restore", backup]);
        assert!(restored.status.success(), "restore failed");
        let client4 = target.client();
        for i in 0..300u32 {
            let read = client4.get("default", &pre_key(i)).await.unwrap();
            if i == 7 {
                assert_eq!(read.single(), None, "pre-7 was deleted");
            } else {
                assert_eq!(
                    read.single(),
                    Some(&pre_value(i)[..]),
                    "pre-{i} after restore"
                );
            }
        }
        let tags = client4.set("tags", b"post").members().await.unwrap();
        assert!(tags.members.contains(&b"rust".to_vec()));
        // A write to the restored cluster supersedes a restored value.
        let read = client4.get("default", &pre_key(1)).await.unwrap();
        client4
            .put("default", &pre_key(1), b"new", &read.context)
            .await
            .unwrap();
        let read = client4.get("default", &pre_key(1)).await.unwrap();
        assert_eq!(read.single(), Some(&b"new"[..]));
        client4
            .put("default", &pre_key(1), &pre_value(1), &read.context)
            .await
            .unwrap();
        // The restored cluster holds exactly the backup: 0 differences.
        // (pre-1 was written again: it differs, and is the only one.)
        let (code, printed) = verify(&target, &[backup]);
        assert_eq!(listed(&printed), vec!["default/pre-1"], "{printed}");
        assert_eq!(code, 1);
        // Its cost follows the differences: one segment's keys were listed.
        assert!(printed.contains("1 segments differ"), "{printed}");
        // Against the source, after a repair: only keys written during or
        // after the backup may differ, never a key acknowledged before it.
        source.admin().repair().await.unwrap();
        let (_, printed) = verify(&source, &[backup]);
        for key in listed(&printed) {
            assert!(key.starts_with("default/live-"), "{key} differs: {printed}");
        }
        // The two clusters compared directly, certificates of each.
        let t = target.dir.path();
        let nodes = target.addrs[0].to_string();
        let (ca, cert, key) = (t.join("ca.pem"), t.join("admin.pem"), t.join("admin.key"));
        let (_, printed) = verify(
            &source,
            &[
                "--with-nodes",
                &nodes,
                "--with-ca",
                ca.to_str().unwrap(),
                "--with-cert",
                cert.to_str().unwrap(),
                "--with-key",
                key.to_str().unwrap(),
            ],
        );
        assert!(printed.contains("differences"), "{printed}");
        for key in listed(&printed) {
            assert!(
                key.starts_with("default/live-") || key == "default/pre-1",
                "{key} differs between the clusters: {printed}"
            );
        }

        // A copy of the backup equals it; altered, it differs from the
        // cluster and from the copy, and restore refuses it.
        let copy = out.path().join("copy");
        let status = Command::new("cp")
            .args(["-r", backup, copy.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        let (code, printed) = verify(&target, &[backup, "--with", copy.to_str().unwrap()]);
        assert_eq!(code, 0, "{printed}");
        assert!(printed.contains("0 differences"), "{printed}");
        let mut altered = 0;
        for n in ["n1", "n2", "n3"] {
            let file = backup_dir.join(n).join("records.kvb");
            altered += usize::from(alter(&file, &pre_value(42), b"VALUE-of-pre-0042"));
        }
        assert_eq!(altered, 3, "every replica's copy of pre-42 altered");
        let (code, printed) = verify(&target, &[backup, "--with", copy.to_str().unwrap()]);
        assert_eq!(code, 1, "{printed}");
        assert_eq!(listed(&printed), vec!["default/pre-42"], "{printed}");
        assert!(printed.contains("damaged"), "{printed}");
        let (code, printed) = verify(&target, &[backup]);
        assert_eq!(code, 1, "{printed}");
        assert!(
            listed(&printed).contains(&"default/pre-42".to_string()),
            "{printed}"
        );
        let refused = admin(&target, &["restore", backup]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("altered"));
        // A cluster holding data is refused, unless the restore merges.
        let copy = copy.to_str().unwrap();
        let refused = admin(&target, &["restore", copy]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("holds data"));
        assert!(admin(&target, &["restore", copy, "--merge"])
            .status
            .success());
        target.shutdown().await;
        source.shutdown().await;
    })
    .await
    .unwrap();
}

// The example program itself, so the test runs exactly what users read.
#[path = "../../examples/backup.rs"]
#[allow(dead_code)]
mod backup_example;
