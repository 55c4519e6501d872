//! Time: the wall clock in milliseconds, the LWW stamp clock (with the
//! fault suite's skew hook when built with the `test-hooks` feature), and
//! the tick of a periodic task.

use std::time::Duration;
use tokio::sync::watch;

/// Milliseconds since the Unix epoch by the system clock (0 before it).
///
/// ```
/// assert!(kvorum_node::util::time::now_ms() > 1_600_000_000_000);
/// ```
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Test-only clock skew: the environment variable that offsets the clock a
/// coordinator stamps LWW writes with (signed milliseconds). The fault suite
/// (`node/tests/faults.rs`) sets it on one node to skew its clock. Only a
/// build with the `test-hooks` feature reads it: a release binary ignores it.
pub const CLOCK_OFFSET_ENV: &str = "KVORUM_TEST_CLOCK_OFFSET_MS";

/// The clock of LWW stamps (LWW buckets and map LWW fields): the system
/// clock, plus [`CLOCK_OFFSET_ENV`] in a `test-hooks` build where it is set.
pub fn lww_clock_ms() -> u64 {
    now_ms().saturating_add_signed(clock_offset_ms())
}

/// The skew of [`lww_clock_ms`]: read once from [`CLOCK_OFFSET_ENV`].
#[cfg(feature = "test-hooks")]
pub fn clock_offset_ms() -> i64 {
    static OFFSET_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET_MS.get_or_init(|| {
        let offset = std::env::var(CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if offset != 0 {
            tracing::warn!(
                offset_ms = offset,
                "LWW clock skewed for testing ({CLOCK_OFFSET_ENV})"
            );
        }
        offset
    })
}

/// The skew of [`lww_clock_ms`]: none outside a `test-hooks` build.
#[cfg(not(feature = "test-hooks"))]
pub fn clock_offset_ms() -> i64 {
    0
}

/// The clock of a periodic task: a tick every interval, until shutdown.
pub struct Every {
    tick: tokio::time::Interval,
    shutdown: watch::Receiver<bool>,
}

impl Every {
    /// Ticks every `every` (a tick that falls behind is delayed, not
    /// bunched) until `shutdown` changes.
    pub fn new(every: Duration, shutdown: watch::Receiver<bool>) -> Self {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { tick, shutdown }
    }

    /// Waits for the next tick; false once the node is shutting down.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => true,
            _ = self.shutdown.changed() => false,
        }
    }
}
