//! Real `kvorum` processes for the tests that run the binary
//! (`process.rs`, `drain.rs`): spawning and signalling them, free ports,
//! three node configs, and clients of them.

use kvorum_client::{Admin, Client, TlsMaterial};
use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const KVORUM: &str = env!("CARGO_BIN_EXE_kvorum");

/// A child process that is killed when the test ends, however it ends.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(args: &[&str], dir: &Path, log: &str) -> Proc {
        let out = std::fs::File::create(dir.join(format!("{log}.out"))).unwrap();
        let err = std::fs::File::create(dir.join(format!("{log}.err"))).unwrap();
        Proc(
            Command::new(KVORUM)
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("kvorum starts"),
        )
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGINT (Ctrl-C), then wait up to `within` for a clean exit.
    pub fn interrupt(&mut self, within: Duration) -> std::process::ExitStatus {
        self.signal("-INT", within)
    }

    /// SIGTERM (a service manager's stop), then wait up to `within`.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.signal("-TERM", within)
    }

    /// Sends `signal` (`-INT`, `-TERM`), then waits up to `within` for the exit.
    fn signal(&mut self, signal: &str, within: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "process did not stop on {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Prints the end of every node log in `dir` (`*.err`) if the test
/// panics while it lives: a failed process test shows what the nodes said.
pub struct LogsOnPanic<'a>(pub &'a Path);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.0) else {
            return;
        };
        let mut logs: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "err"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("==== {} (last {} lines)", log.display(), tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// `count` consecutive free UDP ports on 127.0.0.1.
pub fn free_ports(count: u16) -> u16 {
    // Tests of this file run concurrently: a process-wide counter keeps them
    // from probing (and then binding) the same ports.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = (std::process::id() as u64 ^ nanos).wrapping_add(call.wrapping_mul(4099));
    for attempt in 0..200u64 {
        let base = 20_000
            + ((seed
                .wrapping_mul(2_654_435_761)
                .wrapping_add(attempt * 7919))
                % 40_000) as u16;
        let socks: Vec<_> = (0..count)
            .map(|i| UdpSocket::bind(("127.0.0.1", base + i)))
            .collect();
        if socks.iter().all(|s| s.is_ok()) {
            return base;
        }
    }
    panic!("no free ports");
}

pub fn tls_of(dir: &Path) -> TlsMaterial {
    TlsMaterial::from_dir(dir, "client").unwrap()
}

pub fn admin_tls_of(dir: &Path) -> TlsMaterial {
    TlsMaterial::from_dir(dir, "admin").unwrap()
}

pub fn client_of(dir: &Path, addrs: &[SocketAddr]) -> Client {
    Client::builder(addrs.iter().copied(), tls_of(dir))
        .connect_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

pub async fn wait_for_members(dir: &Path, addrs: &[SocketAddr], count: usize) {
    let client = &Admin::connect(addrs.iter().copied(), admin_tls_of(dir)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((_, members)) = client.status().await {
            if members.len() == count {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not form: {:?}",
            client.status().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Certificates and the configs `n1.toml` to `n3.toml` of three nodes on
/// free loopback ports in `d`; returns their addresses.
pub fn three_configs(d: &Path) -> Vec<SocketAddr> {
    super::make_certs(d, 3);
    let base = free_ports(3);
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], base + i)))
        .collect();
    for i in 1..=3usize {
        let seeds: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        let text = format!(
            "id = \"n{i}\"\nlisten = \"{}\"\nseeds = [{}]\ngossip_interval_ms = 100\n\
             peer_connect_timeout_ms = 500\n\
             [tls]\nca = \"ca.pem\"\ncert = \"n{i}.pem\"\nkey = \"n{i}.key\"\n",
            addrs[i - 1],
            seeds.join(", ")
        );
        std::fs::write(d.join(format!("n{i}.toml")), text).unwrap();
    }
    addrs
}

/// Grants every client certificate every bucket (a new cluster grants
/// nothing), confirmed by every member.
pub async fn grant_every_bucket(dir: &Path, addrs: &[SocketAddr]) {
    let admin = Admin::connect(addrs.iter().copied(), admin_tls_of(dir)).unwrap();
    let all = kvorum_client::Grant::every_bucket("*");
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = admin.grant(all.clone()).await {
        assert!(Instant::now() < deadline, "grant: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
