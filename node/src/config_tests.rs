//! Tests of the config parser (`config.rs`).

use super::*;

const MIN: &str = "id = \"n1\"\n[tls]\nca = \"ca.pem\"\ncert = \"n1.pem\"\nkey = \"n1.key\"\n";

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = NodeConfig::parse(MIN, Path::new("/etc/kvorum")).unwrap();
    assert_eq!(c.replication, Replication::DEFAULT);
    assert_eq!(c.listen, "127.0.0.1:7401".parse().unwrap());
    assert_eq!(c.tls.ca, PathBuf::from("/etc/kvorum/ca.pem"));
    assert_eq!(c.data_dir, PathBuf::from("/etc/kvorum/data/n1"));
    assert_eq!(c.sync, crate::storage::SyncPolicy::Always);
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9401".parse().unwrap()));
}

#[test]
fn the_metrics_endpoint_follows_the_listen_port_unless_set() {
    let parse = |extra: &str| NodeConfig::parse(&format!("{extra}{MIN}"), Path::new(".")).unwrap();
    let c = parse("listen = \"10.0.0.5:8000\"\n");
    assert_eq!(c.metrics_listen, Some("10.0.0.5:10000".parse().unwrap()));
    let c = parse("listen = \"127.0.0.1:0\"\n");
    assert_eq!(c.metrics_listen, Some("127.0.0.1:0".parse().unwrap()));
    let c = NodeConfig::parse(
        &format!("{MIN}[metrics]\nlisten = \"0.0.0.0:9100\"\n"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(c.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
    let c = NodeConfig::parse(
        &format!("{MIN}[metrics]\nenabled = false\n"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(c.metrics_listen, None);
    let err = NodeConfig::parse(
        &format!("listen = \"127.0.0.1:65000\"\n{MIN}"),
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.to_string().contains("[metrics] listen"), "{err}");
}

#[test]
fn bad_configs_are_refused_with_a_reason() {
    let cases = [
        (
            format!("{MIN}[replication]\nn = 3\nw = 4\n"),
            "between 1 and n = 3",
        ),
        (format!("{MIN}[replication]\nn = 0\n"), "at least 1"),
        (
            format!("{MIN}[replication]\nread_repair_chance = 1.5\n"),
            "read_repair_chance = 1.5: must be between 0 and 1",
        ),
        (
            format!("{MIN}[replication]\nread_retry_after_ms = 0\n"),
            "read_retry_after_ms must be at least 1",
        ),
        (format!("{MIN}bogus = 1\n"), "unknown field"),
        (format!("{MIN}[storage]\nsync = \"sometimes\"\n"), "always"),
        (MIN.replace("n1\"", "bad id\""), "id"),
        ("id = \"n1\"\n".to_string(), "[tls]"),
        (
            format!("listen = \"nowhere\"\n{MIN}"),
            "invalid socket address",
        ),
        (
            format!("{MIN}[limits]\nmax_frame_bytes = 10\n"),
            "max_frame_bytes",
        ),
        (
            format!("{MIN}[limits]\nmax_bucket_bytes = 70000\n"),
            "at most 1024",
        ),
        (
            format!("{MIN}[limits]\nmax_key_bytes = 16385\n"),
            "at most 16384",
        ),
        (
            format!("{MIN}[limits]\nmax_value_bytes = 18446744073709551615\n"),
            "max_frame_bytes",
        ),
        (
            format!("{MIN}[anti_entropy]\ntombstone_grace_secs = 10\n"),
            "could come back",
        ),
        (
            format!("{MIN}[failure_detector]\nphi_threshold = 0.5\n"),
            "between 1 and 30",
        ),
        (
            format!("{MIN}[hints]\nttl_secs = 18446744073709551615\n[anti_entropy]\ntombstone_grace_secs = 1\n"),
            "could come back",
        ),
    ];
    for (text, needle) in cases {
        let err = NodeConfig::parse(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
}

#[test]
fn the_example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node.toml");
    let c = NodeConfig::load(&path).unwrap();
    assert_eq!(c.id, "n1");
}
