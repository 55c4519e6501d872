//! The node's clocks, behind one seam: [`Clock`]. Replication, membership,
//! liveness, hints, anti-entropy, transfers, reaping and sessions read time
//! only through it.
//!
//! - **Monotonic time** is tokio's clock ([`tokio::time::Instant`]), which
//!   also drives every timer and timeout of the node. On a normal runtime it
//!   is the OS's monotonic clock; on a paused runtime (the deterministic
//!   simulator, `kvorum-sim`) it is virtual and jumps to the next timer
//!   whenever every task waits.
//! - **Wall time** (milliseconds since the Unix epoch) stamps what other
//!   nodes compare: LWW writes, tombstones, hints' ages, access-list
//!   entries. [`SystemClock`] reads the system clock; the simulator's
//!   clock is virtual time plus a per-node skew.

use std::time::Duration;

/// Where a node reads time. Cheap to call; shared as [`SharedClock`].
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now: tokio's clock (virtual on a paused runtime).
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
    /// Milliseconds since the Unix epoch by this node's wall clock.
    fn wall_ms(&self) -> u64;
    /// The clock of LWW stamps (LWW buckets, map LWW fields): the wall
    /// clock, unless a test skews it.
    fn lww_ms(&self) -> u64 {
        self.wall_ms()
    }
    /// Time since `earlier` by [`Clock::now`].
    fn since(&self, earlier: tokio::time::Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

/// A node's clock, shared by its parts.
pub type SharedClock = std::sync::Arc<dyn Clock>;

/// The real clocks: tokio's monotonic clock and the system wall clock
/// (with the fault suite's LWW skew in a `test-hooks` build, see
/// [`crate::util::time::CLOCK_OFFSET_ENV`]).
///
/// ```
/// use kvorum_node::util::clock::{Clock, SystemClock};
/// assert!(SystemClock.wall_ms() > 1_600_000_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ms(&self) -> u64 {
        crate::util::time::now_ms()
    }
    fn lww_ms(&self) -> u64 {
        crate::util::time::lww_clock_ms()
    }
}

impl SystemClock {
    /// The system clocks, shared.
    pub fn shared() -> SharedClock {
        std::sync::Arc::new(SystemClock)
    }
}

/// The system clocks with the wall clock set off by a fixed number of
/// milliseconds (a `test-hooks` build: the clock-skew tests run nodes of
/// one process ahead of and behind each other).
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, Default)]
pub struct SkewedClock {
    /// Added to the system's wall clock (negative: behind).
    pub offset_ms: i64,
}

#[cfg(feature = "test-hooks")]
impl Clock for SkewedClock {
    fn wall_ms(&self) -> u64 {
        crate::util::time::now_ms().saturating_add_signed(self.offset_ms)
    }
}
