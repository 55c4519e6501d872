//! `kvorum bench` end to end: it starts its own 3-node cluster as child
//! processes, loads keys, runs a few hundred operations of a workload
//! against it, writes its report as JSON, and stops every child. Checks
//! that the report counts operations and no errors; never how fast they
//! were (speed is measured in docs/performance.md, not asserted here).

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KVORUM: &str = env!("CARGO_BIN_EXE_kvorum");

/// `count` consecutive free UDP ports on 127.0.0.1 (their metrics TCP
/// ports, 2000 above, are checked too; the echo server listens 50 above).
fn free_ports(count: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = u64::from(std::process::id()) ^ nanos;
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed.wrapping_mul(2_654_435_761) + attempt * 7919) % 38_000) as u16;
        let udp: Vec<_> = (0..count)
            .chain([50])
            .map(|i| UdpSocket::bind(("127.0.0.1", base + i)))
            .collect();
        let tcp: Vec<_> = (0..count)
            .map(|i| std::net::TcpListener::bind(("127.0.0.1", base + 2000 + i)))
            .collect();
        if udp.iter().all(|s| s.is_ok()) && tcp.iter().all(|s| s.is_ok()) {
            return base;
        }
    }
    panic!("no free ports");
}

/// The bench's children are its nodes and echo server: none may outlive it.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Whether a process is a `kvorum start` node.
fn is_node(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"start"))
}

/// The runtime's worker threads, as a node's `/metrics` on `port` reports
/// them (tokio's own count: the threads' names cannot tell workers from
/// blocking-pool threads); `None` while it does not answer.
fn runtime_workers(port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("kvorum_runtime_worker_threads"))?;
    line.split_whitespace()
        .last()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// The bench process, stopped however the test ends: SIGTERM first (the
/// bench then stops its children), SIGKILL if it does not exit within 10 s.
struct Bench(std::process::Child);

impl Drop for Bench {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn bench_runs_against_its_own_cluster_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let port_base = free_ports(3);
    let port = port_base.to_string();
    let child = Command::new(KVORUM)
        .args([
            "bench",
            "--workload",
            "a,w,counter",
            "--keys",
            "200",
            "--ops",
            "300",
            "--concurrency",
            "8",
            "--baseline",
            "--node-threads",
            "3",
            "--port",
            &port,
            "--dir",
        ])
        .arg(dir.path().join("cluster"))
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("bench.out")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("bench.err")).unwrap())
        .spawn()
        .unwrap();
    let mut bench = Bench(child);
    let pid = bench.0.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen_children = std::collections::BTreeSet::new();
    let mut nodes = std::collections::BTreeSet::new();
    // Node (by metrics port) → its runtime's worker threads.
    let mut workers = std::collections::BTreeMap::new();
    let status = loop {
        if let Some(s) = bench.0.try_wait().unwrap() {
            break s;
        }
        for c in children_of(pid) {
            seen_children.insert(c);
            if is_node(c) {
                nodes.insert(c);
            }
        }
        for p in (0..3).map(|i| port_base + 2000 + i) {
            if let std::collections::btree_map::Entry::Vacant(e) = workers.entry(p) {
                if let Some(w) = runtime_workers(p) {
                    e.insert(w);
                }
            }
        }
        // Dropping `bench` stops it and, through it, its children.
        assert!(
            Instant::now() < deadline,
            "kvorum bench did not finish within 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    let text = format!("{}{}", read("bench.out"), read("bench.err"));
    assert!(status.success(), "{text}");
    // Three nodes (and the echo server before them).
    assert!(
        seen_children.len() >= 3,
        "the bench ran its cluster as child processes: {seen_children:?}"
    );
    let alive: Vec<_> = seen_children
        .iter()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(alive.is_empty(), "children outlived the bench: {alive:?}");
    // --node-threads 3: each node ran three runtime worker threads (neither
    // the bench's default, cores / nodes, nor a node's, one per core, on a
    // machine of fewer than 3 cores).
    assert_eq!(nodes.len(), 3, "node processes seen: {nodes:?}");
    assert_eq!(
        workers.len(),
        3,
        "nodes whose metrics answered: {workers:?}"
    );
    assert!(workers.values().all(|w| *w == 3), "{workers:?}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{report}");
    assert!(
        report["cluster"]
            .as_str()
            .is_some_and(|c| c.contains("runtime threads per node: 3")),
        "{report}"
    );
    for run in runs {
        assert_eq!(run["ops"].as_u64(), Some(300), "{run}");
        assert_eq!(run["errors"].as_object().map(|e| e.len()), Some(0), "{run}");
        assert!(run["latency"]["p99_us"].as_u64().unwrap() > 0, "{run}");
        assert!(run["ratio_to_bound"].as_f64().is_some(), "{run}");
        assert!(run["server_cpu_total_seconds"].as_f64().is_some(), "{run}");
    }
    assert!(runs[0]["latency_by_op"]["read"]["count"].as_u64().unwrap() > 0);
    assert_eq!(report["baseline"][0]["ops"].as_u64(), Some(300));
    assert_eq!(report["loads"][0]["ops"].as_u64(), Some(200));
    assert!(text.contains("p99.9"), "{text}");
}

#[test]
fn a_sigkilled_bench_takes_its_nodes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(3).to_string();
    let child = Command::new(KVORUM)
        .args([
            "bench",
            "--workload",
            "c",
            "--keys",
            "100",
            "--duration-secs",
            "120",
            "--port",
            &port,
            "--dir",
        ])
        .arg(dir.path().join("cluster"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("bench.err")).unwrap())
        .spawn()
        .unwrap();
    let mut bench = Bench(child);
    let pid = bench.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let nodes = loop {
        let c = children_of(pid);
        if c.len() >= 3 {
            break c;
        }
        assert!(
            bench.0.try_wait().unwrap().is_none(),
            "the bench exited early: {}",
            std::fs::read_to_string(dir.path().join("bench.err")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "no 3 nodes within 60 s: {c:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // SIGKILL: no handler of the bench runs, no Drop.
    bench.0.kill().unwrap();
    bench.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = |p: &u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    while nodes.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<_> = nodes.iter().filter(|p| alive(p)).collect();
    // Clean up before failing, so that a regression leaves no process behind.
    for p in &left {
        let _ = Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .status();
    }
    assert!(
        left.is_empty(),
        "nodes outlived the SIGKILLed bench: {left:?}"
    );
}
