//! Child processes that die with this one: the nodes that `kvorum bench`
//! and the fault suite start must not outlive them, even when they are
//! killed with SIGKILL (which no handler sees, so no `Drop` runs).
//!
//! Linux delivers a child's parent-death signal (`PR_SET_PDEATHSIG`) when
//! the *thread* that forked it ends, not the process. So every child is
//! spawned from one thread that lives as long as the process: the signal
//! then arrives exactly when the process dies, whichever thread asked.

use kvorum_node::util::LockExt;
use std::io;
use std::process::{Child, Command};
use std::sync::{mpsc, Mutex, OnceLock};

type Reply = mpsc::Sender<io::Result<Child>>;

/// Spawns `cmd` so that the child gets SIGKILL when this process dies, by
/// any means. Elsewhere than on Linux it is a plain spawn.
///
/// ```ignore
/// let mut sleep = std::process::Command::new("sleep");
/// sleep.arg("60");
/// let child = spawn(sleep)?;
/// # let _ = child;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spawn(mut cmd: Command) -> io::Result<Child> {
    tie(&mut cmd);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<(Command, Reply)>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Command, Reply)>();
        let started = std::thread::Builder::new()
            .name("kvorum-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "no spawner thread; children spawn unchained");
        }
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    let sent = spawner.locked().send((cmd, reply));
    match sent {
        Ok(()) => answer
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the spawner thread is gone"))),
        // No spawner thread: spawn here (the child dies with this thread).
        Err(mpsc::SendError((mut cmd, _))) => cmd.spawn(),
    }
}

#[cfg(target_os = "linux")]
fn tie(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only async-signal-safe functions (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the prctl: nobody would signal us.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn tie(_: &mut Command) {}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tied_child_runs_and_can_be_killed() {
        let mut child = super::spawn({
            let mut c = std::process::Command::new("sleep");
            c.arg("30");
            c
        })
        .unwrap();
        assert!(child.try_wait().unwrap().is_none(), "running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
