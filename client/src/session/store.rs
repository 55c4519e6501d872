//! What a session remembers: per key the join of the versions it saw, in a
//! table bounded by [`SessionConfig`]. Pure bookkeeping; no IO.

use crate::version::Version;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bounds on what a [`Session`] remembers.
///
/// The session keeps at most `max_keys` keys, and its accounted memory
/// ([`Session::memory_bytes`]) never exceeds `max_bytes`: when either would
/// be exceeded, the least recently used key is forgotten. A key's version
/// larger than `max_version_bytes` (encoded) is not kept, and a version not
/// changed for `max_age` is dropped. A forgotten key loses the session's
/// guarantees until the session reads or writes it again.
///
/// ```
/// use kvorum_client::SessionConfig;
/// let c = SessionConfig::default();
/// assert_eq!((c.max_keys, c.max_bytes, c.max_version_bytes), (10_000, 4 << 20, 4096));
/// assert_eq!(c.max_age, std::time::Duration::from_secs(3600));
/// ```
///
/// [`Session`]: crate::Session
/// [`Session::memory_bytes`]: crate::Session::memory_bytes
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Most keys remembered (default 10,000).
    pub max_keys: usize,
    /// Most bytes the session's memory may take, as
    /// [`Session::memory_bytes`](crate::Session::memory_bytes) accounts it
    /// (default 4 MiB).
    pub max_bytes: usize,
    /// Largest version kept for one key, encoded (default 4 KiB: a version
    /// has about one entry per node that coordinated writes of the key).
    pub max_version_bytes: usize,
    /// A key's version unchanged for this long is dropped (default 1 h;
    /// keep it below the cluster's `anti_entropy.tombstone_grace_secs`, see
    /// docs/consistency.md).
    pub max_age: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_keys: 10_000,
            max_bytes: 4 << 20,
            max_version_bytes: 4096,
            max_age: Duration::from_secs(3600),
        }
    }
}

/// The session's table: per key its version (postcard-encoded), in least
/// recently used order. Pure bookkeeping; no IO.
#[derive(Debug)]
pub(super) struct Store {
    config: SessionConfig,
    entries: HashMap<Arc<[u8]>, Entry>,
    /// Recency: tick of last use → key. The oldest is forgotten first.
    order: BTreeMap<u64, Arc<[u8]>>,
    tick: u64,
    /// Accounted bytes of the entries' own allocations and index shares.
    entry_bytes: usize,
    forgotten: u64,
    created: Instant,
}

#[derive(Debug)]
struct Entry {
    tick: u64,
    /// Seconds after the store's creation when the version last changed.
    changed_s: u32,
    version: Box<[u8]>,
}

/// What one allocation of `n` bytes takes from a glibc-like allocator:
/// an 8-byte header, rounded up to 16, at least 32.
fn alloc_bytes(n: usize) -> usize {
    ((n + 8 + 15) & !15).max(32)
}

/// The recency index's share per entry: a B-tree leaf holds 5 to 11
/// (tick, key) pairs in about 280 bytes, and inner nodes add about a fifth.
const ORDER_BYTES_PER_ENTRY: usize = 72;

/// A hash table slot: the key (a fat pointer), the entry, a control byte.
const SLOT_BYTES: usize = std::mem::size_of::<(Arc<[u8]>, Entry)>() + 1;

/// Bytes of a hash table with `capacity` usable slots (hashbrown: buckets
/// a power of two, 7/8 of them usable, 16 control bytes more).
fn table_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * SLOT_BYTES + 16 + 16
}

impl Store {
    /// The bounds in force.
    pub(super) fn config(&self) -> SessionConfig {
        self.config
    }

    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keys forgotten by a bound so far.
    pub(super) fn forgotten(&self) -> u64 {
        self.forgotten
    }

    pub(super) fn new(mut config: SessionConfig) -> Self {
        // The table for max_keys keys may take at most half the budget
        // (it grows by doubling, up to 2 × max_keys slots).
        while config.max_keys > 1 && table_bytes(config.max_keys * 2) > config.max_bytes / 2 {
            config.max_keys /= 2;
        }
        Self {
            config,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            entry_bytes: 0,
            forgotten: 0,
            created: Instant::now(),
        }
    }

    pub(super) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Mutex<Store>>()
            + 16
            + table_bytes(self.entries.capacity())
            + self.entry_bytes
    }

    fn entry_cost(key: &[u8], version: &[u8]) -> usize {
        // The key as an Arc<[u8]> (two counters and the bytes), the version.
        alloc_bytes(16 + key.len()) + alloc_bytes(version.len()) + ORDER_BYTES_PER_ENTRY
    }

    fn now_s(&self) -> u32 {
        u32::try_from(self.created.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    pub(super) fn version(&mut self, key: &[u8]) -> Option<Version> {
        let now = self.now_s();
        let max_age = self.config.max_age.as_secs();
        let (expired, decoded) = {
            let e = self.entries.get(key)?;
            let expired = u64::from(now.saturating_sub(e.changed_s)) > max_age;
            (expired, postcard::from_bytes::<Version>(&e.version).ok())
        };
        if expired || decoded.is_none() {
            self.remove(key);
            self.forgotten += 1;
            return None;
        }
        self.touch(key);
        decoded
    }

    /// The keys that start with `prefix` and their versions (what follows
    /// the prefix, and the version), at most `max` of them; each read is a
    /// use, as [`Store::version`]. A scan of the table: a session holds at
    /// most `max_keys` keys.
    pub(super) fn with_prefix(&mut self, prefix: &[u8], max: usize) -> Vec<(Vec<u8>, Version)> {
        let keys: Vec<Arc<[u8]>> = self
            .entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .take(max)
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| Some((k[prefix.len()..].to_vec(), self.version(&k)?)))
            .collect()
    }

    fn touch(&mut self, key: &[u8]) {
        self.tick += 1;
        let tick = self.tick;
        let Some((k, e)) = self.entries.get_key_value(key) else {
            return;
        };
        let (k, old) = (k.clone(), e.tick);
        self.order.remove(&old);
        self.order.insert(tick, k);
        if let Some(e) = self.entries.get_mut(key) {
            e.tick = tick;
        }
    }

    pub(super) fn observe(&mut self, key: &[u8], version: &Version) {
        if version.is_empty() {
            return;
        }
        let now = self.now_s();
        let mut joined = match self.entries.get(key) {
            Some(e) => postcard::from_bytes::<Version>(&e.version).unwrap_or_default(),
            None => Version::default(),
        };
        let before = joined.clone();
        joined.join(version);
        let encoded = crate::bytes::encode(&joined);
        if encoded.len() > self.config.max_version_bytes {
            // Too large to keep: the key loses the session's guarantees.
            self.remove(key);
            self.forgotten += 1;
            return;
        }
        let changed = joined != before;
        let cost = Self::entry_cost(key, &encoded);
        if let Some(old) = self.remove_entry(key) {
            let changed_s = if changed { now } else { old.changed_s };
            self.insert(key, encoded, changed_s, cost);
        } else {
            self.insert(key, encoded, now, cost);
        }
    }

    fn insert(&mut self, key: &[u8], version: Vec<u8>, changed_s: u32, cost: usize) {
        // Make room first, so the table never holds more than max_keys.
        while !self.entries.is_empty()
            && (self.entries.len() >= self.config.max_keys
                || self.memory_bytes() + cost > self.config.max_bytes)
        {
            self.evict_oldest();
        }
        if table_bytes(self.entries.capacity().max(self.entries.len() + 1))
            + std::mem::size_of::<Mutex<Store>>()
            + 16
            + cost
            > self.config.max_bytes
        {
            // Even alone it would not fit.
            self.forgotten += 1;
            return;
        }
        self.tick += 1;
        let k: Arc<[u8]> = Arc::from(key);
        self.order.insert(self.tick, k.clone());
        self.entries.insert(
            k,
            Entry {
                tick: self.tick,
                changed_s,
                version: version.into_boxed_slice(),
            },
        );
        self.entry_bytes += cost;
        // Growing the table may have taken the total over: evict again.
        while self.memory_bytes() > self.config.max_bytes && self.entries.len() > 1 {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, k)) = self.order.pop_first() {
            if let Some(e) = self.entries.remove(&k) {
                self.entry_bytes -= Self::entry_cost(&k, &e.version);
            }
            self.forgotten += 1;
        }
    }

    fn remove_entry(&mut self, key: &[u8]) -> Option<Entry> {
        let (k, e) = self.entries.remove_entry(key)?;
        self.order.remove(&e.tick);
        self.entry_bytes -= Self::entry_cost(&k, &e.version);
        Some(e)
    }

    pub(super) fn remove(&mut self, key: &[u8]) -> bool {
        self.remove_entry(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ActorId;

    fn version(n: u64) -> Version {
        Version::Dots {
            vv: (1..=3)
                .map(|i| {
                    (
                        ActorId {
                            node: format!("n{i}"),
                            epoch: 0x1234_5678_9abc_def0,
                        },
                        n,
                    )
                })
                .collect(),
            cloud: Default::default(),
        }
    }

    #[test]
    fn versions_join_and_the_oldest_key_goes_first() {
        let mut s = Store::new(SessionConfig {
            max_keys: 2,
            ..SessionConfig::default()
        });
        s.observe(b"a", &version(2));
        s.observe(b"a", &version(1));
        assert_eq!(s.version(b"a"), Some(version(2)), "joined, not replaced");
        s.observe(b"b", &version(1));
        s.version(b"a"); // a is now more recent than b
        s.observe(b"c", &version(1));
        assert!(s.version(b"b").is_none(), "least recently used forgotten");
        assert!(s.version(b"a").is_some() && s.version(b"c").is_some());
        assert_eq!(s.forgotten, 1);
        assert!(s.remove(b"a"));
        assert_eq!(s.entries.len(), s.order.len());
    }

    #[test]
    fn oversized_and_expired_versions_are_not_kept() {
        let mut s = Store::new(SessionConfig {
            max_version_bytes: 16,
            ..SessionConfig::default()
        });
        s.observe(b"k", &version(1));
        assert!(s.version(b"k").is_none());
        assert_eq!(s.forgotten, 1);
        let mut s = Store::new(SessionConfig {
            max_age: Duration::ZERO,
            ..SessionConfig::default()
        });
        s.observe(b"k", &version(1));
        s.created -= Duration::from_secs(2); // the version is now 2 s old
        assert!(s.version(b"k").is_none());
    }

    #[test]
    fn accounted_memory_never_exceeds_the_budget() {
        let mut s = Store::new(SessionConfig {
            max_bytes: 64 * 1024,
            ..SessionConfig::default()
        });
        for i in 0..5_000u32 {
            s.observe(&i.to_le_bytes(), &version(u64::from(i)));
            assert!(s.memory_bytes() <= 64 * 1024, "{}", s.memory_bytes());
        }
        assert!(s.entries.len() > 100, "{}", s.entries.len());
        assert_eq!(s.entries.len(), s.order.len());
    }
}
