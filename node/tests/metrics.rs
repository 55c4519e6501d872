//! Metrics end to end: docs/metrics.md agrees with the code, every node's
//! `/metrics` passes `promtool check metrics`, a real Prometheus server
//! scrapes a 3-node cluster and sees the traffic we drove, the dashboard's
//! queries evaluate, the alert rules load, and handshake failures are
//! counted by reason.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`, which
//! `.ci/run` installs).

mod common;

use common::{raw_request, sum_of, TestCluster, TEST_TIMEOUT};
use kvorum_client::{CausalContext, Client, TlsMaterial};
use kvorum_node::{metrics as m, net::certs};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `| `name` | type | `l1`, `l2` | meaning |` rows of docs/metrics.md.
fn documented() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[1].starts_with("`kvorum_") {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty() && l != "—")
            .collect();
        assert!(
            out.insert(name.clone(), (cells[2].to_string(), labels))
                .is_none(),
            "{name} documented twice"
        );
    }
    out
}

/// Every `"kvorum_…"` string literal in node/src.
fn names_in_code() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![repo().join("node/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split("\"kvorum_").skip(1) {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && piece[name.len()..].starts_with('"') {
                    out.insert(format!("kvorum_{name}"));
                }
            }
        }
    }
    out
}

#[test]
fn the_reference_lists_every_metric_of_the_code_and_no_other() {
    let doc = documented();
    let catalog: BTreeMap<String, (String, BTreeSet<String>)> = m::CATALOG
        .iter()
        .map(|d| {
            let labels = d.labels.iter().map(|l| l.to_string()).collect();
            (d.name.to_string(), (d.kind.as_str().to_string(), labels))
        })
        .collect();
    let doc_names: BTreeSet<_> = doc.keys().cloned().collect();
    let code_names: BTreeSet<_> = catalog.keys().cloned().collect();
    assert_eq!(
        doc_names.difference(&code_names).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented but not in the code"
    );
    assert_eq!(
        code_names.difference(&doc_names).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the code but not documented"
    );
    for (name, entry) in &catalog {
        assert_eq!(
            &doc[name], entry,
            "{name}: type or labels differ from the doc"
        );
    }
    // No metric is named outside the catalog.
    let stray: Vec<_> = names_in_code()
        .into_iter()
        .filter(|n| !code_names.contains(n))
        .collect();
    assert!(
        stray.is_empty(),
        "metric names outside the catalog: {stray:?}"
    );
    // The dashboard and the alert rules only use metrics that exist (a
    // misspelt one would just draw nothing).
    for file in ["docs/grafana-dashboard.json", "docs/alerts.yml"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let mut used = 0;
        for piece in text.split("kvorum_").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let name = format!("kvorum_{name}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| code_names.contains(*f)))
                .map_or(name.clone(), str::to_string);
            assert!(
                code_names.contains(&family),
                "{file} uses {name}, which does not exist"
            );
            used += 1;
        }
        assert!(used > 5, "{file}: {used} metric uses");
    }
}

/// Minimal HTTP GET over loopback: (status code, body).
async fn http_get(addr: SocketAddr, target: &str) -> Result<(u16, String), String> {
    let go = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8(buf).map_err(|e| e.to_string())?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("no status")?;
        // Prometheus answers chunked; our endpoint with a length. Both are
        // read to the end: undo chunking if present.
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Ok::<_, String>((code, body))
    };
    tokio::time::timeout(Duration::from_secs(10), go)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server on loopback, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: kvorum\n    static_configs:\n      - targets: [{}]\n",
            repo().join("docs/alerts.yml").display(),
            targets.join(", ")
        );
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the prometheus binary (Debian package `prometheus`; .ci/run installs it)");
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Evaluates an instant query; the result vector as (labels, value).
    async fn query(&self, q: &str) -> Result<Vec<(serde_json::Value, f64)>, String> {
        let (code, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", percent_encode(q)),
        )
        .await?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("{q}: HTTP {code}: {body}"));
        }
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        Ok(result
            .into_iter()
            .filter_map(|r| {
                let value = r["value"][1].as_str()?.parse().ok()?;
                Some((r["metric"].clone(), value))
            })
            .collect())
    }

    /// The single value of `q`, or None if the result is empty.
    async fn scalar(&self, q: &str) -> Option<f64> {
        match self.query(q).await {
            Ok(r) if r.len() == 1 => Some(r[0].1),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn promtool_check_metrics(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the promtool binary (Debian package `prometheus`; .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Metric family names in an exposition.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_cluster_and_sees_the_traffic() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let c = TestCluster::start(3, "").await;
        c.wait_all_reachable().await;
        let targets: Vec<SocketAddr> = c
            .nodes
            .iter()
            .map(|n| n.as_ref().unwrap().metrics_addr().expect("metrics served"))
            .collect();
        let prom = Prometheus::start(&targets);
        // What the cluster's own start-up did (wait_all_reachable writes).
        let before = |name: &str, labels: &[(&str, &str)]| -> f64 {
            c.nodes
                .iter()
                .flatten()
                .map(|n| sum_of(&n.metrics().render(), name, labels))
                .sum()
        };
        let put_ok = [("op", "put"), ("type", "register"), ("outcome", "ok")];
        let puts_before = before(m::REQUESTS, &put_ok);
        let put_hist_before = before("kvorum_request_duration_seconds_count", &[("op", "put")]);
        let gets_before = before(m::REQUESTS, &[("op", "get")]);
        assert_eq!(gets_before, 0.0);

        // Traffic: 40 writes, 60 reads (20 of missing keys), 3 writes to an
        // unknown bucket.
        let client = c.client();
        for i in 0..40u32 {
            client
                .put("default", format!("k{i}").as_bytes(), b"v", &CausalContext::empty())
                .await
                .unwrap();
        }
        for i in 0..60u32 {
            client.get("default", format!("k{i}").as_bytes()).await.unwrap();
        }
        for _ in 0..3 {
            let e = client.put("nope", b"k", b"v", &CausalContext::empty()).await;
            assert!(e.is_err());
        }

        // Each node's own endpoint: the path, promtool, and only catalogued families.
        let catalog: BTreeSet<String> = m::CATALOG.iter().map(|d| d.name.to_string()).collect();
        for addr in &targets {
            let (code, text) = http_get(*addr, "/metrics").await.unwrap();
            assert_eq!(code, 200);
            promtool_check_metrics(&text).unwrap_or_else(|e| panic!("promtool on {addr}: {e}"));
            let fams = families(&text);
            assert!(fams.is_subset(&catalog), "{:?}", fams.difference(&catalog));
            assert!(fams.contains(m::REQUEST_DURATION), "{text}");
            assert_eq!(http_get(*addr, "/other").await.unwrap().0, 404);
        }

        // Through Prometheus: wait for a scrape that has all of it.
        let mut waited = Duration::ZERO;
        loop {
            let puts = prom
                .scalar(r#"sum(kvorum_requests_total{op="put",type="register",outcome="ok"})"#)
                .await;
            let gets_ok = prom
                .scalar(r#"sum(kvorum_requests_total{op="get",outcome="ok"})"#)
                .await;
            let unknown = prom
                .scalar(r#"sum(kvorum_requests_total{op="put",type="unknown",outcome="unknown_bucket"})"#)
                .await;
            if (puts, gets_ok, unknown) == (Some(puts_before + 40.0), Some(40.0), Some(3.0)) {
                break;
            }
            assert!(
                waited < Duration::from_secs(60),
                "Prometheus never saw the traffic: puts {puts:?} gets {gets_ok:?} unknown {unknown:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            waited += Duration::from_millis(500);
        }
        let not_found = prom
            .scalar(r#"sum(kvorum_requests_total{op="get",outcome="not_found"})"#)
            .await;
        assert_eq!(not_found, Some(20.0));
        // The histograms arrived with the same counts, and as histograms.
        let hist_puts = prom
            .scalar(r#"sum(kvorum_request_duration_seconds_count{op="put"})"#)
            .await;
        // (the three refused puts are timed too)
        assert_eq!(hist_puts, Some(put_hist_before + 43.0));
        let le_inf = prom
            .scalar(r#"sum(kvorum_request_duration_seconds_bucket{op="get",le="+Inf"})"#)
            .await;
        assert_eq!(le_inf, Some(60.0));
        let p99 = prom
            .scalar(r#"histogram_quantile(0.99, sum by (le) (kvorum_request_duration_seconds_bucket{op="put"}))"#)
            .await
            .expect("a p99");
        assert!(p99 > 0.0 && p99 < 10.0, "p99 {p99}");
        // W=2 of N=3: at least two successful replica answers per write.
        let replica_ok = prom
            .scalar(r#"sum(kvorum_replica_responses_total{op="write",outcome="ok"})"#)
            .await
            .unwrap();
        assert!(replica_ok >= 80.0, "{replica_ok}");
        // Every node scraped, labelled with its id, sees 3 members up.
        let nodes = prom.query("kvorum_members{state=\"up\"}").await.unwrap();
        let ids: BTreeSet<String> = nodes
            .iter()
            .map(|(l, _)| l["node"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids, ["n1", "n2", "n3"].map(String::from).into());
        assert!(nodes.iter().all(|(_, v)| *v == 3.0), "{nodes:?}");
        let share = prom.scalar("sum(kvorum_ring_ownership_ratio)").await.unwrap();
        assert!((share - 1.0).abs() < 1e-6, "{share}");

        // The dashboard's queries all evaluate.
        let dash: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("docs/grafana-dashboard.json")).unwrap(),
        )
        .unwrap();
        let mut evaluated = 0;
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let q = target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "1m")
                    .replace("$node", ".*");
                prom.query(&q).await.unwrap_or_else(|e| panic!("dashboard query: {e}"));
                evaluated += 1;
            }
        }
        assert!(evaluated >= 14);
        // The alert rules loaded.
        let (_, rules) = http_get(prom.addr, "/api/v1/rules").await.unwrap();
        assert!(rules.contains("KvorumQuorumFailures"), "{rules}");
        drop(prom);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

/// `/health` answers 200 while the process serves; `/ready` answers 200
/// while the node is a member up in the ring, and 503 with the reason once
/// it has left (neither needs the scrape token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_answer_for_orchestrators() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(2, "[replication]\nn = 1\n").await;
        let addr = c.nodes[1].as_ref().unwrap().metrics_addr().unwrap();
        assert_eq!(
            http_get(addr, "/health").await.unwrap(),
            (200, "ok\n".into())
        );
        assert_eq!(
            http_get(addr, "/ready").await.unwrap(),
            (200, "ready\n".into())
        );
        c.admin_of(&c.addrs[1..2]).leave("n2").await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (code, body) = http_get(addr, "/ready").await.unwrap();
            if code == 503 {
                assert_eq!(body, "not ready: not a member of the cluster\n");
                break;
            }
            assert_eq!(code, 200, "{body}");
            assert!(
                std::time::Instant::now() < deadline,
                "n2 still ready after leaving"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(http_get(addr, "/health").await.unwrap().0, 200);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_scrapers_get_a_quick_503_and_cannot_hold_the_endpoint() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(1, "[replication]\nn = 1\n").await;
        let addr = c.nodes[0].as_ref().unwrap().metrics_addr().unwrap();
        // Eight connections that never send a request take every slot.
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let (code, _) = http_get(addr, "/metrics").await.unwrap();
        assert_eq!(code, 503);
        assert!(started.elapsed() < Duration::from_secs(1));
        // Probes are answered all the same.
        assert_eq!(
            http_get(addr, "/health").await.unwrap(),
            (200, "ok\n".into())
        );
        assert_eq!(http_get(addr, "/ready").await.unwrap().0, 200);
        // They are dropped after the 2 s read timeout; scrapes work again.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (code, body) = http_get(addr, "/metrics").await.unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("kvorum_members"), "{body}");
        drop(idle);
        c.shutdown().await;
    })
    .await
    .unwrap();
}

#[test]
fn the_alert_rules_pass_promtool() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo().join("docs/alerts.yml"))
        .output()
        .expect("the promtool binary (Debian package `prometheus`; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the series `series` (name and labels exactly as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failures_are_counted_by_reason() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let c = TestCluster::start(1, "[replication]\nn = 1\n").await;
        let addr = c.addrs[0];
        let node = c.nodes[0].as_ref().unwrap();
        let failures = |reason: &str| {
            value(
                &node.metrics().render(),
                &format!(r#"kvorum_handshake_failures_total{{node="n1",reason="{reason}"}}"#),
            )
            .unwrap_or(0.0)
        };
        // A protocol the node does not speak.
        assert!(raw_request(addr, &c.client_tls(), b"h3", b"x")
            .await
            .is_err());
        // A client certificate from another CA.
        let other = tempfile::tempdir().unwrap();
        let foreign = certs::make_ca("intruder").unwrap();
        certs::write(
            other.path(),
            "client",
            &certs::make_client(&foreign, "eve").unwrap(),
        )
        .unwrap();
        let eve = TlsMaterial::from_files(
            c.dir.path().join("ca.pem"),
            other.path().join("client.pem"),
            other.path().join("client.key"),
        )
        .unwrap();
        let client = Client::builder(vec![addr], eve)
            .connect_timeout(Duration::from_secs(2))
            .request_timeout(Duration::from_secs(2))
            .token_aware(false)
            .build()
            .unwrap();
        assert!(client.get("default", b"k").await.is_err());
        // A frame that is not a request: refused before decoding, counted.
        let bad = raw_request(
            addr,
            &c.client_tls(),
            kvorum_client::proto::ALPN_CLIENT,
            // The current version (one varint byte), then bytes that are no request.
            &[&[kvorum_client::proto::PROTOCOL_VERSION as u8][..], b"junk"].concat(),
        )
        .await
        .unwrap();
        assert!(!bad.is_empty());
        let text = node.metrics().render();
        assert_eq!(
            sum_of(
                &text,
                m::REQUESTS,
                &[("op", "invalid"), ("outcome", "bad_request")]
            ),
            1.0,
            "{text}"
        );
        // A client certificate on the peer protocol.
        assert!(
            raw_request(addr, &c.client_tls(), kvorum_client::proto::ALPN_PEER, b"x")
                .await
                .is_err()
        );
        common::until("failures counted", Duration::from_secs(10), || {
            failures("wrong_alpn") >= 1.0
                && failures("untrusted_certificate") >= 1.0
                && failures("not_a_node") >= 1.0
        })
        .await;
        // And the control: a good client is served, over one client connection.
        let good = c.client();
        good.get("default", b"k").await.unwrap();
        let text = node.metrics().render();
        assert!(
            value(&text, r#"kvorum_connections{node="n1",kind="client"}"#).unwrap_or(0.0) >= 1.0,
            "{text}"
        );
        assert!(
            value(
                &text,
                r#"kvorum_network_bytes_total{node="n1",direction="received",kind="client"}"#
            )
            .unwrap_or(0.0)
                > 0.0,
            "{text}"
        );
        c.shutdown().await;
    })
    .await
    .unwrap();
}
