//! The history of a run: every operation the clients completed and every
//! fault the nemesis injected, in order, with virtual times. Two runs of
//! one seed must give byte-identical histories ([`History::hash`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

/// Which workload an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// Register with siblings: read, then write with the read's context.
    Register,
    /// A PN counter: increments and decrements.
    Counter,
    /// An OR-set: adds of unique elements.
    Set,
    /// A sorted partition per key: inserts of unique items (strict W),
    /// and scans of the whole partition page by page.
    Range,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 4] = [
        Workload::Register,
        Workload::Counter,
        Workload::Set,
        Workload::Range,
    ];

    /// Its bucket.
    pub fn bucket(self) -> &'static str {
        match self {
            Workload::Register => "reg",
            Workload::Counter => "ctr",
            Workload::Set => "set",
            Workload::Range => "rng",
        }
    }
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Wrote register value `id`, whose context covered the writes `covers`.
    Write {
        /// The value's unique id.
        id: u64,
        /// The writes the context read before it covered.
        covers: Vec<u64>,
    },
    /// Deleted a register (operation `id`) with a context that covered the
    /// writes `covers`.
    Delete {
        /// The delete's unique id.
        id: u64,
        /// The writes the context read before it covered.
        covers: Vec<u64>,
    },
    /// Added `delta` to a counter.
    Inc(i64),
    /// Added a unique element to a set.
    Add(u64),
    /// Read a set's elements.
    Read(BTreeSet<u64>),
    /// Put item `id` (sort key and value: the id) into the partition.
    Insert(u64),
    /// Scanned the partition page by page: the items seen, and whether a
    /// page repeated an item or broke the order.
    Scan {
        /// The items seen.
        seen: BTreeSet<u64>,
        /// A page repeated an item or went back in sort order.
        disorder: bool,
    },
}

/// One completed operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The client.
    pub client: usize,
    /// Its workload.
    pub workload: Workload,
    /// The key's number.
    pub key: u32,
    /// What it did.
    pub op: Op,
    /// Whether it was acknowledged (otherwise it may or may not have
    /// been applied).
    pub ok: bool,
    /// Virtual milliseconds since the start, at invocation.
    pub invoked_ms: u64,
    /// Virtual milliseconds since the start, at completion.
    pub completed_ms: u64,
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    text: String,
    faults: u64,
    first_wipe_ms: Option<u64>,
}

/// The history of one run. Cheap to clone.
#[derive(Clone)]
pub struct History {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl History {
    /// An empty history starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            inner: Arc::default(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Virtual milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.start)
            .as_millis() as u64
    }

    /// Records a completed operation.
    pub fn op(&self, e: Entry) {
        let mut i = self.inner();
        let _ = writeln!(
            i.text,
            "{} {} c{} {:?} k{} {:?} {}",
            e.invoked_ms,
            e.completed_ms,
            e.client,
            e.workload,
            e.key,
            e.op,
            if e.ok { "ok" } else { "?" }
        );
        i.entries.push(e);
    }

    /// Records a fault or another event of the nemesis.
    pub fn fault(&self, what: &str) {
        let now = self.now_ms();
        let mut i = self.inner();
        i.faults += 1;
        if what.starts_with("wipe") && i.first_wipe_ms.is_none() {
            i.first_wipe_ms = Some(now);
        }
        let _ = writeln!(i.text, "{now} nemesis {what}");
    }

    /// When the nemesis first wiped a member's disk, if it did.
    pub fn first_wipe_ms(&self) -> Option<u64> {
        self.inner().first_wipe_ms
    }

    /// Records a note (final reads, checks).
    pub fn note(&self, what: &str) {
        let now = self.now_ms();
        let _ = writeln!(self.inner().text, "{now} {what}");
    }

    /// The operations so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.inner().entries.clone()
    }

    /// Faults injected so far.
    pub fn faults(&self) -> u64 {
        self.inner().faults
    }

    /// The whole history as text.
    pub fn text(&self) -> String {
        self.inner().text.clone()
    }

    /// A hash of the whole history: equal for byte-identical histories.
    pub fn hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.inner().text.as_bytes())
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}
