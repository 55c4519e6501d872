//! The Debian package, for real: `packaging/deb/build` packages the test
//! build's `kvorum` binary, `dpkg -i` installs it, `systemd-analyze verify`
//! checks its unit, and the installed binary runs with the installed config
//! as the package's user; a client certificate made with the installed CLI
//! is granted a bucket, then the CLI puts and gets a key; SIGTERM stops the
//! node (it drains and exits 0); `dpkg --purge` removes it all.
//!
//! The container and Kubernetes recipes are checked as far as this machine
//! class allows (no container engine, no Kubernetes): the image's
//! entrypoint makes a config the node takes, and the manifests pass an
//! offline schema check (kubernetes-validate --strict, installed by
//! `.ci/run`), which a planted typo fails.
//!
//! Installing a package needs root (CI runs as root). Where the test cannot
//! (not root, no dpkg or systemd-analyze, or a kvorum package already
//! installed, which it will not touch) it says so and passes, unless
//! `KVORUM_REQUIRE_ROOT=1` (set by `.ci/run` in CI), which makes that a
//! failure.

use kvorum_node::NodeConfig;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

const KVORUM: &str = env!("CARGO_BIN_EXE_kvorum");
const TLS: &str = "/etc/kvorum/tls";

/// Why the test cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("it installs a package: run it as root".into());
    }
    for tool in ["dpkg", "dpkg-deb", "systemd-analyze", "setpriv", "pkill"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    let installed = Command::new("dpkg")
        .args(["-s", "kvorum"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Some("a kvorum package is installed on this machine: not touched".into());
    }
    None
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Purges the package and stops the node however the test ends.
struct Installed {
    node: Option<Child>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(mut n) = self.node.take() {
            let _ = n.kill();
            let _ = n.wait();
        }
        // Whatever else runs as the package's user.
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", "kvorum"])
            .output();
        let _ = Command::new("dpkg").args(["--purge", "kvorum"]).output();
        let _ = Command::new("userdel").arg("kvorum").output();
    }
}

/// The answer of the installed node's metrics listener to `GET path`.
fn probe(path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect("127.0.0.1:9401").ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The installed CLI, with the given certificate, against the installed node.
fn cli(cert: &str, args: &[&str]) -> String {
    let out = run(Command::new("/usr/bin/kvorum").args(args).args([
        "--nodes",
        "127.0.0.1:7401",
        "--ca",
        &format!("{TLS}/ca.pem"),
        "--cert",
        &format!("{TLS}/{cert}.pem"),
        "--key",
        &format!("{TLS}/{cert}.key"),
    ]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_debian_package_installs_serves_as_its_user_and_purges() {
    if let Some(why) = cannot_run() {
        assert!(
            std::env::var("KVORUM_REQUIRE_ROOT").as_deref() != Ok("1"),
            "the package test cannot run ({why}) and KVORUM_REQUIRE_ROOT=1"
        );
        eprintln!("SKIPPED: {why}");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let built = run(Command::new(repo.join("packaging/deb/build")).args([
        "--binary",
        KVORUM,
        "--out",
        &out.path().display().to_string(),
        "--fast",
    ]));
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    let mut installed = Installed { node: None };
    run(Command::new("dpkg").arg("-i").arg(&deb));
    // What the package laid down.
    for path in [
        "/usr/bin/kvorum",
        "/lib/systemd/system/kvorum.service",
        "/etc/kvorum/kvorum.toml",
        "/etc/kvorum/tls/node1.pem",
        "/var/lib/kvorum",
    ] {
        assert!(Path::new(path).exists(), "{path} is installed");
    }
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "kvorum"]));
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains("/etc/kvorum/kvorum.toml"),
        "the config is a conffile"
    );
    // Warnings too (an unknown key or a bad value is only ignored).
    let verified =
        run(Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/kvorum.service"]));
    let warnings = String::from_utf8_lossy(&verified.stderr);
    assert!(
        warnings.trim().is_empty(),
        "systemd-analyze verify: {warnings}"
    );
    let unit = std::fs::read_to_string("/lib/systemd/system/kvorum.service").unwrap();
    for line in [
        "User=kvorum",
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        "LimitNOFILE=65536",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(line), "the unit has {line}");
    }
    // Nothing may hold the node's ports (a node left over would answer).
    assert!(
        probe("/health").is_none(),
        "something serves on 127.0.0.1:9401 already"
    );
    // The installed binary, the installed config, the package's user (as
    // the unit runs it; systemd itself is not running here).
    let log = out.path().join("node.log");
    installed.node = Some(
        // setpriv execs the node in place (runuser would fork): this
        // child is the node, and gets the SIGTERM.
        Command::new("setpriv")
            .args(["--reuid", "kvorum", "--regid", "kvorum", "--init-groups"])
            .args(["/usr/bin/kvorum", "start"])
            .args(["--config", "/etc/kvorum/kvorum.toml"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = probe("/ready").is_some_and(|answer| answer.starts_with("HTTP/1.1 200"));
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the installed node is not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let owner = run(Command::new("stat").args(["-c", "%U", "/var/lib/kvorum/db"]));
    assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), "kvorum");
    // An operator's first steps: a client certificate, its grant, a put
    // and a get.
    run(Command::new("/usr/bin/kvorum").args(["cert", "client", "app", "--out", TLS]));
    cli(
        "admin",
        &[
            "admin", "grant", "app", "--bucket", "default", "--read", "--write",
        ],
    );
    cli("app", &["put", "default", "hello", "world"]);
    let got = cli("app", &["get", "default", "hello"]);
    assert!(got.lines().next() == Some("world"), "get: {got}");
    // SIGTERM, as systemd stops it: the node drains and exits 0.
    let mut node = installed.node.take().unwrap();
    run(Command::new("kill").args(["-TERM", &node.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit on SIGTERM: {status:?}\n{log}");
    assert!(log.contains("drained in"), "{log}");
    drop(installed);
    assert!(!Path::new("/usr/bin/kvorum").exists(), "purged");
    assert!(
        !Path::new("/var/lib/kvorum").exists(),
        "purge removes the data"
    );
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_container_entrypoint_makes_a_config_the_node_takes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kvorum.toml");
    // The entrypoint execs the node; `echo` stands in for it here.
    let out = Command::new("sh")
        .arg(repo().join("packaging/container/entrypoint.sh"))
        .env(
            "KVORUM_TEMPLATE",
            repo().join("packaging/container/kvorum.toml.in"),
        )
        .env("KVORUM_CONFIG", &config)
        .env("KVORUM_BIN", "echo")
        .env("KVORUM_ID", "kvorum-1")
        .env("KVORUM_ADDR", "10.1.2.3")
        .env(
            "KVORUM_SEEDS",
            "localhost,kvorum-9.does-not-resolve.invalid",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("start --config {}", config.display())
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let cfg = NodeConfig::parse(&text, dir.path()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(cfg.id, "kvorum-1");
    assert_eq!(cfg.advertised().to_string(), "10.1.2.3:7401");
    // A name that resolves is a seed; one that does not (its pod is not up
    // yet) is left out.
    assert_eq!(cfg.seeds, vec!["127.0.0.1:7401".parse().unwrap()], "{text}");
    assert_eq!(cfg.tls.cert, Path::new("/etc/kvorum/tls/tls.crt"));
    assert_eq!(cfg.metrics_listen.map(|a| a.port()), Some(9401));
}

#[test]
fn the_kubernetes_manifests_pass_an_offline_schema_check() {
    let found = Command::new("sh")
        .args(["-c", "command -v kubernetes-validate"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("KVORUM_REQUIRE_ROOT").as_deref() != Ok("1"),
            "kubernetes-validate is not installed (.ci/run installs it)"
        );
        eprintln!(
            "SKIPPED: kubernetes-validate is not installed (pip install kubernetes-validate)"
        );
        return;
    }
    let validate = |path: &Path| {
        Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .arg(path)
            .output()
            .unwrap()
    };
    let manifests = repo().join("packaging/k8s/kvorum.yaml");
    let out = validate(&manifests);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&manifests).unwrap();
    for kind in ["StatefulSet", "Service", "PodDisruptionBudget"] {
        assert!(text.contains(&format!("kind: {kind}")), "{kind} is there");
    }
    // The check can fail: a misspelt field is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, text.replace("maxUnavailable:", "maxUnavailabel:")).unwrap();
    assert!(!validate(&bad).status.success(), "a typo is refused");
}
