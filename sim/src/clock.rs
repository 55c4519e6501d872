//! The simulator's clocks: virtual monotonic time (tokio's paused clock)
//! and a per-node wall clock that the nemesis can skew.

use kvorum_node::util::clock::Clock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// The wall-clock time at which every simulation starts (2026-01-01 UTC),
/// so histories do not depend on the day they run.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// One node's clock: the simulation's virtual time, plus its skew.
pub struct SimClock {
    start: Instant,
    skew_ms: AtomicI64,
}

impl SimClock {
    /// A clock with no skew, starting at [`EPOCH_MS`] at `start`.
    pub fn new(start: Instant) -> Arc<Self> {
        Arc::new(Self {
            start,
            skew_ms: AtomicI64::new(0),
        })
    }

    /// Sets the node's skew (signed milliseconds).
    pub fn skew(&self, ms: i64) {
        self.skew_ms.store(ms, Ordering::Relaxed);
    }
}

impl Clock for SimClock {
    fn wall_ms(&self) -> u64 {
        let elapsed = Instant::now()
            .saturating_duration_since(self.start)
            .as_millis() as u64;
        (EPOCH_MS + elapsed).saturating_add_signed(self.skew_ms.load(Ordering::Relaxed))
    }
}
