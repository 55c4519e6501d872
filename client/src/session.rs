//! Sessions: read-your-writes and monotonic reads for one logical user.
//!
//! A [`Session`] remembers, per key it touched, the join of the versions
//! ([`Version`]) of what it wrote and read, and sends it with every read
//! (`at_least`). The coordinating node waits for more replicas than R if
//! the first R do not hold that version, and refuses to answer with older
//! data ([`ErrorReply::Stale`]); the session then asks another node (each
//! attempt gets half of the time left), until the request timeout. What it
//! remembers is bounded ([`SessionConfig`]); see docs/consistency.md.

use crate::client::{Client, Error, Fetched, Route, Versioned};
use crate::handles::{CounterHandle, Handle, MapHandle, SetHandle};
use crate::proto::{CausalContext, ErrorReply, ReadOptions, Version, WriteOptions};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Slack past an attempt's timeout that the session waits for the node's
/// answer (the node answers at its deadline with a typed error).
const ATTEMPT_SLACK: Duration = Duration::from_millis(250);

/// Below this much time left, an attempt gets all of it.
const MIN_ATTEMPT: Duration = Duration::from_millis(200);

/// The longest pause between two rounds over every node.
const MAX_PAUSE: Duration = Duration::from_millis(500);

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Most keys remembered (default 10,000).
    pub max_keys: usize,
    /// Most bytes the session's memory may take, as
    /// [`Session::memory_bytes`] accounts it (default 4 MiB).
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

/// A session: read-your-writes and monotonic reads, for the keys it
/// touches, on top of a [`Client`]. Opt-in, cheap to create (an empty
/// table), cheap to clone (clones share their memory); use one per logical
/// user or task.
///
/// - *Read your writes*: a read after the session's acknowledged write
///   returns that write or something causally newer, at any R and whichever
///   node coordinates it.
/// - *Monotonic reads*: a read never returns something causally older than
///   what the session read before.
///
/// When no node can answer with such a state within the request timeout,
/// a read fails with [`Error::Stale`] rather than return older data.
/// Writes and typed handles ([`Session::counter`], [`Session::set`],
/// [`Session::map`]) go through the session the same way.
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::{CausalContext, Error, ReadOptions, WriteOptions};
/// let session = client.session();
/// session.put_with("users", b"alice", b"v2", &CausalContext::empty(), WriteOptions::w(1)).await?;
/// match session.get_with("users", b"alice", ReadOptions::r(1)).await {
///     Ok(read) => assert!(read.siblings.contains(&b"v2".to_vec())),
///     Err(Error::Stale { .. }) => println!("no replica with the write was reachable in time"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    client: Client,
    store: Arc<Mutex<Store>>,
}

impl Session {
    /// A session over `client` with the given bounds (see also
    /// [`Client::session`]).
    ///
    /// ```no_run
    /// # fn f(client: &kvorum_client::Client) {
    /// use kvorum_client::{Session, SessionConfig};
    /// let s = Session::new(client, SessionConfig::default());
    /// assert!(s.is_empty());
    /// # }
    /// ```
    pub fn new(client: &Client, config: SessionConfig) -> Self {
        Self {
            client: client.clone(),
            store: Arc::new(Mutex::new(Store::new(config))),
        }
    }

    /// The client this session sends its requests through.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let session = client.session();
    /// let plain = session.client().clone(); // reads through it carry no version
    /// # let _ = plain; }
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the table consistent (every
        // method updates it in one step), so a poisoned lock is used as is.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bounds of this session (`max_keys` lowered if the table for that
    /// many keys would not fit in `max_bytes`).
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// assert_eq!(client.session().config().max_keys, 10_000);
    /// # }
    /// ```
    pub fn config(&self) -> SessionConfig {
        self.store().config
    }

    /// Reads a key with the bucket's default R, at least at the session's
    /// version of it.
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// let v = session.get("users", b"alice").await?;
    /// println!("{:?} ({})", v.siblings, v.report);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, bucket: &str, key: &[u8]) -> Result<Versioned, Error> {
        self.get_with(bucket, key, ReadOptions::default()).await
    }

    /// Reads a key with explicit R and timeout, at least at the session's
    /// version of it. The timeout bounds the whole session read, retries on
    /// other nodes included.
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::ReadOptions;
    /// let v = session.get_with("users", b"alice", ReadOptions::r(1).timeout_ms(500)).await?;
    /// # let _ = v; Ok(()) }
    /// ```
    pub async fn get_with(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
    ) -> Result<Versioned, Error> {
        match self.read(bucket, key, options, false).await? {
            Answer::Get(v) => Ok(v),
            Answer::Fetch(_) => Err(Error::Protocol("a get answered as a typed read".into())),
        }
    }

    /// A typed read (counter, set, map) at least at the session's version.
    pub(crate) async fn fetch(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
    ) -> Result<Fetched, Error> {
        match self.read(bucket, key, options, true).await? {
            Answer::Fetch(f) => Ok(f),
            Answer::Get(_) => Err(Error::Protocol("a typed read answered as a get".into())),
        }
    }

    /// Writes a value (see [`Client::put`]); the session remembers the
    /// write's version.
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// let read = session.get("users", b"alice").await?;
    /// session.put("users", b"alice", b"v3", &read.context).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put(
        &self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        context: &CausalContext,
    ) -> Result<CausalContext, Error> {
        self.put_with(bucket, key, value, context, WriteOptions::default())
            .await
    }

    /// Writes a value with explicit W and timeout (see [`Client::put_with`]).
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{CausalContext, WriteOptions};
    /// session.put_with("users", b"bob", b"x", &CausalContext::empty(), WriteOptions::w(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_with(
        &self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        let (context, version) = self
            .client
            .put_full(bucket, key, value, context, options)
            .await?;
        self.observe(bucket, key, &version);
        Ok(context)
    }

    /// Deletes what a read returned (see [`Client::delete`]); later session
    /// reads see the delete or something newer.
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// let read = session.get("users", b"alice").await?;
    /// session.delete("users", b"alice", &read.context).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(
        &self,
        bucket: &str,
        key: &[u8],
        context: &CausalContext,
    ) -> Result<CausalContext, Error> {
        self.delete_with(bucket, key, context, WriteOptions::default())
            .await
    }

    /// Deletes with explicit W and timeout (see [`Client::delete_with`]).
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::WriteOptions;
    /// let read = session.get("users", b"alice").await?;
    /// session.delete_with("users", b"alice", &read.context, WriteOptions::w(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_with(
        &self,
        bucket: &str,
        key: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        let (context, version) = self
            .client
            .delete_full(bucket, key, context, options)
            .await?;
        self.observe(bucket, key, &version);
        Ok(context)
    }

    /// A counter handle whose reads and updates go through this session.
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// let hits = session.counter("stats", b"home");
    /// hits.increment(1).await?;
    /// assert!(hits.value().await? >= 1); // sees the increment
    /// # Ok(()) }
    /// ```
    pub fn counter(&self, bucket: &str, key: &[u8]) -> CounterHandle {
        CounterHandle(Handle::with_session(self, bucket, key))
    }

    /// A set handle whose reads and updates go through this session.
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// let tags = session.set("tags", b"post:1");
    /// tags.add(b"rust").await?;
    /// assert!(tags.members().await?.contains(b"rust"));
    /// # Ok(()) }
    /// ```
    pub fn set(&self, bucket: &str, key: &[u8]) -> SetHandle {
        SetHandle(Handle::with_session(self, bucket, key))
    }

    /// A map handle whose reads and updates go through this session.
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::MapUpdate;
    /// session.map("carts", b"alice").update(MapUpdate::new().increment("apples", 1)).await?;
    /// # Ok(()) }
    /// ```
    pub fn map(&self, bucket: &str, key: &[u8]) -> MapHandle {
        MapHandle(Handle::with_session(self, bucket, key))
    }

    /// Tells the session about a version of a key obtained elsewhere (from
    /// another session, another process, a message): later reads through
    /// this session return that version or newer. Joins it with what the
    /// session already holds for the key.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let (writer, reader) = (client.session(), client.session());
    /// writer.put("users", b"alice", b"v", &Default::default()).await?;
    /// if let Some(v) = writer.version("users", b"alice") {
    ///     reader.observe("users", b"alice", &v); // causality handed over
    /// }
    /// # Ok(()) }
    /// ```
    pub fn observe(&self, bucket: &str, key: &[u8], version: &Version) {
        self.store().observe(&store_key(bucket, key), version);
    }

    /// The version the session holds for a key (`None`: it holds none).
    ///
    /// ```no_run
    /// # fn f(session: kvorum_client::Session) {
    /// assert!(session.version("users", b"never-touched").is_none());
    /// # }
    /// ```
    pub fn version(&self, bucket: &str, key: &[u8]) -> Option<Version> {
        self.store().version(&store_key(bucket, key))
    }

    /// Forgets a key: later reads of it carry no version (as for a key the
    /// session never touched).
    ///
    /// ```no_run
    /// # fn f(session: kvorum_client::Session) {
    /// session.forget("users", b"alice");
    /// assert!(session.version("users", b"alice").is_none());
    /// # }
    /// ```
    pub fn forget(&self, bucket: &str, key: &[u8]) {
        self.store().remove(&store_key(bucket, key));
    }

    /// Keys the session holds a version for.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// assert_eq!(client.session().len(), 0);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.store().entries.len()
    }

    /// True when the session holds no version.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// assert!(client.session().is_empty());
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys forgotten so far by a bound (least recently used beyond
    /// `max_keys` or `max_bytes`, a version over `max_version_bytes`, or
    /// older than `max_age`); [`Session::forget`] is not counted.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// assert_eq!(client.session().forgotten(), 0);
    /// # }
    /// ```
    pub fn forgotten(&self) -> u64 {
        self.store().forgotten
    }

    /// The memory the session's table takes, in bytes, as accounted: the
    /// table's slots, each key and version with the allocator's overhead,
    /// and the recency index. Never more than
    /// [`SessionConfig::max_bytes`] after a call returns.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let s = client.session();
    /// assert!(s.memory_bytes() <= s.config().max_bytes);
    /// # }
    /// ```
    pub fn memory_bytes(&self) -> usize {
        self.store().memory_bytes()
    }

    /// One session read: plain if the session holds no version of the key,
    /// else attempts on node after node until one answers at least at that
    /// version or the timeout has passed.
    async fn read(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
        typed: bool,
    ) -> Result<Answer, Error> {
        let at_least = self.version(bucket, key);
        let budget = Duration::from_millis(self.client.timeout_ms(options.timeout_ms).into());
        let Some(at_least) = at_least.filter(|v| !v.is_empty()) else {
            let options = ReadOptions {
                timeout_ms: Some(millis(budget)),
                ..options
            };
            let answer = self
                .attempt(bucket, key, options, None, typed, None)
                .await?;
            self.observe(bucket, key, answer.version());
            return Ok(answer);
        };
        let started = Instant::now();
        let deadline = started + budget;
        let nodes = self.client.node_count().max(1);
        let mut node = self.client.next_node();
        let mut attempts = 0u32;
        let mut pause = Duration::from_millis(20);
        let mut last = String::from("no attempt made");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Leave time for other nodes: a coordinator that cannot reach the
            // replica holding the version may wait for it until its deadline.
            let this = if left > MIN_ATTEMPT { left / 2 } else { left };
            let attempt_options = ReadOptions {
                timeout_ms: Some(millis(this)),
                ..options
            };
            attempts += 1;
            let result = self
                .attempt(
                    bucket,
                    key,
                    attempt_options,
                    Some(at_least.clone()),
                    typed,
                    Some(node),
                )
                .await;
            node = node.wrapping_add(1);
            match result {
                Ok(answer) if answer.version().dominates(&at_least) => {
                    self.observe(bucket, key, answer.version());
                    return Ok(answer);
                }
                // A node that ignored the version (it must not): try another.
                Ok(_) => last = "a node answered with an older version".into(),
                Err(Error::Server(ErrorReply::Stale(s))) => last = s.to_string(),
                Err(
                    e @ (Error::Server(ErrorReply::Quorum(_) | ErrorReply::Unavailable(_))
                    | Error::Timeout { .. }
                    | Error::NoNodeAvailable(_)),
                ) => last = e.to_string(),
                Err(e) => return Err(e),
            }
            if attempts as usize % nodes == 0 {
                // Every node tried once more: give replication a moment.
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
        Err(Error::Stale {
            bucket: bucket.to_string(),
            attempts,
            after: started.elapsed(),
            last,
        })
    }

    async fn attempt(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
        at_least: Option<Version>,
        typed: bool,
        start: Option<usize>,
    ) -> Result<Answer, Error> {
        let route = Route {
            start,
            slack: start.map(|_| ATTEMPT_SLACK),
        };
        if typed {
            self.client
                .fetch(bucket, key, options, at_least, route)
                .await
                .map(Answer::Fetch)
        } else {
            self.client
                .get_at(bucket, key, options, at_least, route)
                .await
                .map(Answer::Get)
        }
    }
}

/// What a session read answered.
enum Answer {
    Get(Versioned),
    Fetch(Fetched),
}

impl Answer {
    fn version(&self) -> &Version {
        match self {
            Answer::Get(v) => &v.version,
            Answer::Fetch(f) => &f.version,
        }
    }
}

fn millis(d: Duration) -> u32 {
    // Never 0: a node reads a timeout of 0 as "the default".
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// The table key of (bucket, key): the bucket's length (4 bytes, little
/// endian), the bucket, the key.
fn store_key(bucket: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + bucket.len() + key.len());
    k.extend_from_slice(&(bucket.len() as u32).to_le_bytes());
    k.extend_from_slice(bucket.as_bytes());
    k.extend_from_slice(key);
    k
}

/// The session's table: per key its version (postcard-encoded), in least
/// recently used order. Pure bookkeeping; no IO.
#[derive(Debug)]
struct Store {
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
    fn new(mut config: SessionConfig) -> Self {
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

    fn memory_bytes(&self) -> usize {
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

    fn version(&mut self, key: &[u8]) -> Option<Version> {
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

    fn observe(&mut self, key: &[u8], version: &Version) {
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
        let encoded = postcard::to_stdvec(&joined).unwrap_or_default();
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

    fn remove(&mut self, key: &[u8]) -> bool {
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
