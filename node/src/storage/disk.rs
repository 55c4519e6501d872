//! The free-space watermark: a node refuses new client writes before its
//! disk is full, keeps a reserve below that for its own work (repair,
//! hints, handoff, metadata), and takes writes again by itself once space
//! comes back (Elasticsearch's flood-stage watermark is the model).
//!
//! - **Client writes** (a coordinated write, a replica write or a hint a
//!   coordinator sends for one) are refused with a typed `DiskFull` while
//!   the free space of the data directory's filesystem is below the
//!   *watermark*: the larger of `min_free_bytes` and `min_free_percent` of
//!   the filesystem.
//! - **Every write** (repair, hints, handoff, metadata too) is refused below
//!   the *reserve*: half the watermark. Nothing is written, so the store
//!   does not fail-stop: it takes writes again once space is back.
//!
//! The free space is read (`statvfs`) at most every [`REFRESH`], when a
//! write or a scrape asks, so a refusal lifts within that of space coming
//! back.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::util::LockExt;

/// How long a reading of the free space is used before it is read again.
pub const REFRESH: Duration = Duration::from_millis(100);

/// The configured watermark (`[storage]` `min_free_bytes` and
/// `min_free_percent`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermark {
    /// Client writes are refused below this many free bytes.
    pub min_free_bytes: u64,
    /// ... or below this share (0 to 100) of the filesystem, whichever is larger.
    pub min_free_percent: f64,
}

impl Watermark {
    /// The defaults: 256 MiB or 2 % of the filesystem, whichever is larger.
    pub const DEFAULT: Watermark = Watermark {
        min_free_bytes: 256 << 20,
        min_free_percent: 2.0,
    };

    /// No watermark: writes go on until the engine fails (tests of that).
    pub const NONE: Watermark = Watermark {
        min_free_bytes: 0,
        min_free_percent: 0.0,
    };

    /// The free bytes below which client writes are refused on a
    /// filesystem of `total` bytes.
    pub fn client_floor(&self, total: u64) -> u64 {
        let share = (total as f64 * self.min_free_percent / 100.0) as u64;
        self.min_free_bytes.max(share)
    }
}

/// The free space of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged process may still write.
    pub free: u64,
    /// The filesystem's size.
    pub total: u64,
}

/// The free space of the filesystem holding `path` (`None` if it cannot
/// be read).
pub fn space_of(path: &std::path::Path) -> Option<Space> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path and `st` a zeroed statvfs that
    // the call fills; nothing is kept past it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some(Space {
        free: (st.f_bavail as u64).saturating_mul(unit),
        total: (st.f_blocks as u64).saturating_mul(unit),
    })
}

/// Which writes a node refuses for want of space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pressure {
    /// Above the watermark: every write is taken.
    None,
    /// Below the watermark: client writes are refused.
    Clients,
    /// Below the reserve: every write is refused.
    All,
}

impl Pressure {
    /// The name `admin status` and the logs print.
    pub fn as_str(self) -> &'static str {
        match self {
            Pressure::None => "ok",
            Pressure::Clients => "refusing client writes",
            Pressure::All => "refusing all writes",
        }
    }
}

/// What the disk looks like against the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskState {
    /// The last reading.
    pub space: Space,
    /// Client writes are refused below this many free bytes.
    pub client_floor: u64,
    /// Every write is refused below this many.
    pub reserve_floor: u64,
    /// Which writes are refused now.
    pub pressure: Pressure,
}

impl DiskState {
    /// The refusal a write of class `all` (every write) or of clients gets,
    /// if it is refused.
    pub fn refusal(&self, internal: bool) -> Option<String> {
        let (refused, floor) = if internal {
            (self.pressure == Pressure::All, self.reserve_floor)
        } else {
            (self.pressure >= Pressure::Clients, self.client_floor)
        };
        refused.then(|| {
            format!(
                "{} free, writes refused below {}",
                bytes(self.space.free),
                bytes(floor)
            )
        })
    }
}

/// Bytes as the refusals print them (`12.0 MiB`).
pub fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (MIB * 1024.0))
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}

/// A watermark with its last reading: what the store asks before a write.
pub struct DiskGuard {
    mark: Watermark,
    read: Box<dyn Fn() -> Option<Space> + Send + Sync>,
    last: Mutex<Option<(Instant, Option<Space>)>>,
}

impl DiskGuard {
    /// A guard reading the free space with `read` (`None`: unknown, which
    /// refuses nothing).
    pub fn new(mark: Watermark, read: Box<dyn Fn() -> Option<Space> + Send + Sync>) -> Self {
        Self {
            mark,
            read,
            last: Mutex::new(None),
        }
    }

    /// The disk now (read again if the last reading is older than
    /// [`REFRESH`]), or `None` if its space is unknown.
    pub fn state(&self) -> Option<DiskState> {
        let space = {
            let mut last = self.last.locked();
            match *last {
                Some((at, space)) if at.elapsed() < REFRESH => space,
                _ => {
                    let space = (self.read)();
                    *last = Some((Instant::now(), space));
                    space
                }
            }
        }?;
        let client_floor = self.mark.client_floor(space.total);
        let reserve_floor = client_floor / 2;
        let pressure = if space.free < reserve_floor {
            Pressure::All
        } else if space.free < client_floor {
            Pressure::Clients
        } else {
            Pressure::None
        };
        Some(DiskState {
            space,
            client_floor,
            reserve_floor,
            pressure,
        })
    }

    /// Why a write is refused now, if it is: `internal` for repair, hints,
    /// handoff and metadata (refused below the reserve only), else a
    /// client write (refused below the watermark).
    pub fn refusal(&self, internal: bool) -> Option<String> {
        self.state()?.refusal(internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{atomic::AtomicU64, atomic::Ordering, Arc};

    fn guard(free: Arc<AtomicU64>) -> DiskGuard {
        let mark = Watermark {
            min_free_bytes: 100,
            min_free_percent: 10.0,
        };
        DiskGuard::new(
            mark,
            Box::new(move || {
                Some(Space {
                    free: free.load(Ordering::Relaxed),
                    total: 2000,
                })
            }),
        )
    }

    #[test]
    fn client_writes_stop_at_the_watermark_and_the_rest_at_the_reserve() {
        let free = Arc::new(AtomicU64::new(1000));
        let g = guard(free.clone());
        // The watermark is 10 % of 2000 (larger than 100), the reserve half that.
        let s = g.state().unwrap();
        assert_eq!((s.client_floor, s.reserve_floor), (200, 100));
        assert_eq!(s.pressure, Pressure::None);
        for (bytes, pressure) in [(199, Pressure::Clients), (99, Pressure::All)] {
            free.store(bytes, Ordering::Relaxed);
            std::thread::sleep(REFRESH);
            assert_eq!(g.state().unwrap().pressure, pressure);
        }
        assert!(g.refusal(false).is_some() && g.refusal(true).is_some());
        free.store(150, Ordering::Relaxed);
        std::thread::sleep(REFRESH);
        assert!(g.refusal(false).is_some());
        assert_eq!(g.refusal(true), None, "the reserve is for internal writes");
        // Space comes back: the refusal lifts by itself.
        free.store(500, Ordering::Relaxed);
        std::thread::sleep(REFRESH);
        assert_eq!(g.refusal(false), None);
    }

    #[test]
    fn an_unknown_space_refuses_nothing() {
        let g = DiskGuard::new(Watermark::DEFAULT, Box::new(|| None));
        assert_eq!(g.state(), None);
        assert_eq!(g.refusal(false), None);
    }

    #[test]
    fn the_free_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = space_of(dir.path()).unwrap();
        assert!(s.total > 0 && s.free <= s.total);
        assert_eq!(space_of(&dir.path().join("missing")), None);
    }
}
