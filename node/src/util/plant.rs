//! Planted bugs: switches that break one guarantee on purpose, so the
//! simulator's swarm can show it finds each (docs/testing.md). They exist
//! only in a build with the `test-hooks` feature (the tests and the
//! simulator); elsewhere [`planted`] is a constant `false` and every
//! switch compiles away.

/// A bug that can be planted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// A register write's context covers every sibling the coordinator
    /// holds, seen by the client or not (a lost update).
    LostUpdate = 1,
    /// The dot floor is ignored: a dot may be issued again after a reap.
    DotReuse = 2,
    /// A tombstone is reaped without checking that every replica holds it.
    EarlyReap = 4,
    /// A write during a ring change skips its previous ring's group, so
    /// read and write quorums stop overlapping.
    SplitQuorum = 8,
    /// A range page ends at the last key of the replica answer that
    /// reached furthest, not the nearest: past it, a replica that stopped
    /// short has not said what it holds.
    RangeCut = 16,
    /// A conditional write is checked wherever it lands, without going to
    /// the key's condition coordinator or taking the key's lock: racing
    /// `if_absent` writes through different nodes can all pass.
    ConditionRace = 32,
    /// Client reads ignore expiry: an expired key still reads as live.
    ExpiryIgnored = 64,
    /// A replica merging a state from a peer (replication, hints, repair,
    /// transfers) drops its expiry: its copy of an expiring value lives
    /// for ever.
    ExpiryDropped = 128,
}

#[cfg(feature = "test-hooks")]
static PLANTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Plants `bug` (or, with `None`, removes every planted bug) for the whole
/// process.
#[cfg(feature = "test-hooks")]
pub fn plant(bug: Option<Bug>) {
    PLANTED.store(
        bug.map_or(0, |b| b as u32),
        std::sync::atomic::Ordering::SeqCst,
    );
}

/// Whether `bug` is planted.
#[cfg(feature = "test-hooks")]
pub fn planted(bug: Bug) -> bool {
    PLANTED.load(std::sync::atomic::Ordering::Relaxed) & bug as u32 != 0
}

/// Whether `bug` is planted: never, outside a `test-hooks` build.
#[cfg(not(feature = "test-hooks"))]
pub const fn planted(_bug: Bug) -> bool {
    false
}
