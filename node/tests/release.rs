//! A release build has no test hooks.
//!
//! Two checks:
//! - `the_root_build_has_no_test_hooks` (in the test command): cargo's own
//!   feature resolution for `cargo build --release` at the root, and for
//!   `-p kvorum-node`, leaves out `test-hooks`; the control, the
//!   workspace with the simulator, turns it on, which shows the check can
//!   fail. It takes a second.
//! - `a_release_build_ignores_the_clock_offset_hook` (ignored: it builds the
//!   release binary, about 4 minutes and 1 GB from scratch): the `kvorum` a
//!   user builds ignores `KVORUM_TEST_CLOCK_OFFSET_MS`, while the tests'
//!   build obeys it. Run it with
//!   `cargo test -p kvorum-node --test release -- --ignored`.

use kvorum_client::{CausalContext, Client, TlsMaterial, Version};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const TESTS_KVORUM: &str = env!("CARGO_BIN_EXE_kvorum");
const OFFSET_ENV: &str = "KVORUM_TEST_CLOCK_OFFSET_MS";
/// One day back.
const OFFSET_MS: i64 = -86_400_000;

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/` of this build (the tests' binary is `target/debug/kvorum`).
fn target_dir() -> PathBuf {
    let exe = Path::new(TESTS_KVORUM);
    exe.parent()
        .and_then(Path::parent)
        .expect("the tests' kvorum lies in target/<profile>/")
        .to_path_buf()
}

/// Builds `kvorum` as a user does (`cargo build --release`, no features)
/// and returns its path.
fn release_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = target_dir();
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "kvorum-node", "--bin", "kvorum"])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdin(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the release build failed");
    target.join("release").join("kvorum")
}

/// `count` consecutive free UDP ports on 127.0.0.1.
fn free_ports(count: u16) -> u16 {
    let seed = std::process::id() as u64 ^ now_ms();
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed.wrapping_mul(2_654_435_761) + attempt * 7919) % 40_000) as u16;
        let socks: Vec<_> = (0..count)
            .map(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)))
            .collect();
        if socks.iter().all(|s| s.is_ok()) {
            return base;
        }
    }
    panic!("no free ports");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The stamp (ms) a one-node dev cluster of `binary`, started with the
/// clock-offset variable set, gives an LWW write.
async fn lww_stamp_of(binary: &Path) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let dev = dir.path().join("kvorum-dev");
    let log = std::fs::File::create(dir.path().join("dev.out")).unwrap();
    let _proc = Proc(
        Command::new(binary)
            .args(["dev", "--nodes", "1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(&dev)
            .env(OFFSET_ENV, OFFSET_MS.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("kvorum starts"),
    );
    // The banner comes once the tour buckets (with the LWW bucket `names`)
    // exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(dir.path().join("dev.out"))
        .unwrap_or_default()
        .contains("Ctrl-C stops the cluster")
    {
        assert!(Instant::now() < deadline, "the dev cluster did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let certs = dev.join("certs");
    let tls = TlsMaterial::from_dir(certs, "client").unwrap();
    let client = Client::connect([([127, 0, 0, 1], port).into()], tls).unwrap();
    client
        .put("names", b"k", b"v", &CausalContext::empty())
        .await
        .unwrap();
    let read = client.get("names", b"k").await.unwrap();
    client.close().await;
    match read.version {
        Version::Stamp { ms, .. } => ms,
        other => panic!("an LWW read has a stamp: {other:?}"),
    }
}

/// The features cargo resolves for `kvorum-node` in a build (no dev
/// dependencies) at the workspace root with `args`.
fn node_features(args: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-e", "features,no-dev", "-i", "kvorum-node"])
        .args(["--prefix", "none", "--offline"])
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdin(Stdio::null())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut features: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("kvorum-node feature \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_owned)
        .collect();
    features.sort();
    features.dedup();
    features
}

#[test]
fn the_root_build_has_no_test_hooks() {
    let hooks = "test-hooks".to_owned();
    // The control: the workspace with the simulator turns the hooks on.
    let all = node_features(&["--workspace"]);
    assert!(all.contains(&hooks), "the control lost its hooks: {all:?}");
    // What `cargo build --release` and `-p kvorum-node` build does not.
    for args in [&[][..], &["-p", "kvorum-node"][..]] {
        let features = node_features(args);
        assert!(
            !features.is_empty() && !features.contains(&hooks),
            "a build with {args:?} has features {features:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds the release binary; run with --ignored"]
async fn a_release_build_ignores_the_clock_offset_hook() {
    let release = tokio::task::spawn_blocking(release_binary).await.unwrap();
    tokio::time::timeout(Duration::from_secs(180), async {
        let hour = 3_600_000;
        // The control: the tests' build obeys the variable.
        let skewed = lww_stamp_of(Path::new(TESTS_KVORUM)).await;
        let behind = now_ms().saturating_sub(skewed);
        assert!(
            behind > 23 * hour,
            "the test-hooks build stamped {skewed}, only {behind} ms behind"
        );
        // A release build does not.
        let stamp = lww_stamp_of(&release).await;
        let off = now_ms().abs_diff(stamp);
        assert!(
            off < hour,
            "the release build stamped {stamp}, {off} ms from now: it read {OFFSET_ENV}"
        );
    })
    .await
    .expect("the test finished in time");
}
