//! Child processes of `kvorum bench` (the nodes of its own cluster, the echo
//! server of the baseline) and what `/proc` says about them: CPU seconds,
//! resident memory.
//!
//! Every child is killed when its [`Child`] handle drops, so an error, a
//! panic or Ctrl-C in the bench stops them all; and each is tied to the
//! bench's life ([`crate::cli::tied`]), so a SIGKILL of the bench stops them too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Clock ticks per second of `/proc/<pid>/stat` times. The kernel reports
/// them in USER_HZ, which is 100 on every Linux architecture we build for
/// (x86-64, aarch64); it is not the kernel's internal HZ.
const USER_HZ: f64 = 100.0;

/// Why a child could not be started or read.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The child could not be spawned.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What was started.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A log file could not be created.
    #[error("{path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A child exited early.
    #[error("{what} exited early ({status}); see {log}")]
    Exited {
        /// The child.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
    },
}

/// A child process of this binary, killed on drop.
#[derive(Debug)]
pub struct Child {
    name: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts this binary (`std::env::current_exe`) with `args`, in `dir`,
    /// its stdout and stderr going to `<dir>/<name>.log`.
    pub fn spawn(name: &str, args: &[&str], dir: &Path) -> Result<Self, ProcError> {
        let log = dir.join(format!("{name}.log"));
        let open = || {
            std::fs::File::create(&log).map_err(|source| ProcError::Log {
                path: log.clone(),
                source,
            })
        };
        let (out, err) = (open()?, open()?);
        let exe = std::env::current_exe().map_err(|source| ProcError::Spawn {
            what: name.to_string(),
            source,
        })?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its nodes log warnings only, unless KVORUM_BENCH_NODE_LOG
            // names other levels (RUST_LOG syntax) to look into a run.
            .env(
                "RUST_LOG",
                std::env::var("KVORUM_BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            );
        // Tied: killed with the bench, even by SIGKILL.
        let child = crate::cli::tied::spawn(cmd).map_err(|source| ProcError::Spawn {
            what: name.to_string(),
            source,
        })?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the child has exited.
    pub fn check_running(&mut self) -> Result<(), ProcError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(ProcError::Exited {
                what: self.name.clone(),
                status,
                log: self.log.clone(),
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/<pid>/stat`; `None` when it cannot be read (not Linux, gone).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, utime (14) index 11, stime (15) 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident memory of a process in bytes (`VmRSS`), `None` when unknown.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of disk the files under `dir` occupy (allocated blocks, so
/// preallocated but unwritten journal space does not count on file systems
/// that allocate lazily); 0 when it does not exist.
pub fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| allocated(&m)),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(unix)]
fn allocated(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.blocks() * 512
}

#[cfg(not(unix))]
fn allocated(m: &std::fs::Metadata) -> u64 {
    m.len()
}

/// The machine: cores, memory, load average, kernel time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// Total memory in bytes (`MemTotal`), 0 when unknown.
    pub memory_bytes: u64,
    /// `/proc/loadavg` when the run started.
    pub loadavg: String,
    /// Seconds since the Unix epoch when the run started.
    pub unix_time: u64,
}

impl Machine {
    /// Reads the machine's description now.
    pub fn now() -> Self {
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kib| kib * 1024);
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_bytes,
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        // Burn a little CPU so the counter is not zero at 10 ms resolution.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some_and(|s| s > 0.0));
        assert!(rss_bytes(pid).is_some_and(|b| b > 0));
        assert!(cpu_seconds(u32::MAX).is_none());
    }
}
