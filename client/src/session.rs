//! Sessions: read-your-writes and monotonic reads for one logical user.
//!
//! A [`Session`] remembers, per key it touched, the join of the versions
//! ([`Version`]) of what it wrote and read, and sends it with every read
//! (`at_least`). The coordinating node waits for more replicas than R if
//! the first R do not hold that version, and refuses to answer with older
//! data ([`ErrorReply::Stale`]); the session then asks another node (each
//! attempt gets half of the time left), until the request timeout. What it
//! remembers is bounded ([`SessionConfig`]); see docs/consistency.md.

mod items;
mod store;

pub use items::MAX_SESSION_ITEMS_PER_PAGE;
pub use store::SessionConfig;

use crate::client::Client;
use crate::error::Error;
use crate::kv::{ReadAnswer, Versioned};
use crate::pool::Route;
use crate::proto::{CausalContext, ErrorReply, ReadOptions, StaleRead, Version, WriteOptions};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store::Store;

/// Slack past an attempt's timeout that the session waits for the node's
/// answer (the node answers at its deadline with a typed error).
const ATTEMPT_SLACK: Duration = Duration::from_millis(250);

/// Below this much time left, an attempt gets all of it.
const MIN_ATTEMPT: Duration = Duration::from_millis(200);

/// The longest pause between two rounds over every node.
const MAX_PAUSE: Duration = Duration::from_millis(500);

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
        self.store().config()
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
        self.read(bucket, key, options).await
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
        self.write(bucket, key, Some(value), context, options).await
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
        self.write(bucket, key, None, context, options).await
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
        self.store().len()
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
        self.store().forgotten()
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

    /// A put (`value`) or a delete (`None`) whose version the session
    /// remembers.
    async fn write(
        &self,
        bucket: &str,
        key: &[u8],
        value: Option<&[u8]>,
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        let (context, version) = self
            .client
            .write_full(bucket, key, value, context, options)
            .await?;
        self.observe(bucket, key, &version);
        Ok(context)
    }

    /// One session read: plain if the session holds no version of the key,
    /// else attempts on node after node until one answers at least at that
    /// version or the timeout has passed.
    pub(crate) async fn read<A: ReadAnswer>(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
    ) -> Result<A, Error> {
        let at_least = self.version(bucket, key);
        let budget = Duration::from_millis(self.client.pool.timeout_ms(options.timeout_ms).into());
        let Some(at_least) = at_least.filter(|v| !v.is_empty()) else {
            let options = ReadOptions {
                timeout_ms: Some(millis(budget)),
                ..options
            };
            let answer: A = self.attempt(bucket, key, options, None, None).await?;
            self.observe(bucket, key, answer.version());
            return Ok(answer);
        };
        let answer: A = self
            .until_fresh(bucket, budget, |ms, node| {
                let at_least = at_least.clone();
                let options = ReadOptions {
                    timeout_ms: Some(ms),
                    ..options
                };
                async move {
                    let answer: A = self
                        .attempt(bucket, key, options, Some(at_least.clone()), Some(node))
                        .await?;
                    if answer.version().dominates(&at_least) {
                        Ok(answer)
                    } else {
                        // A node that ignored the version (it must not).
                        Err(Error::Server(ErrorReply::Stale(StaleRead {
                            asked: 0,
                            answered: 1,
                            replicas: Vec::new(),
                        })))
                    }
                }
            })
            .await?;
        self.observe(bucket, key, answer.version());
        Ok(answer)
    }

    /// Runs `attempt` (given its timeout in milliseconds and the node to
    /// start from) on node after node, each with half of the time left,
    /// until one answers without a stale or quorum error or `budget` has
    /// passed ([`Error::Stale`]).
    pub(crate) async fn until_fresh<T, F, Fut>(
        &self,
        bucket: &str,
        budget: Duration,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(u32, usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let deadline = started + budget;
        let nodes = self.client.pool.node_count().max(1);
        let mut node = self.client.pool.next_node();
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
            attempts += 1;
            let result = attempt(millis(this), node).await;
            node = node.wrapping_add(1);
            match result {
                Ok(answer) => return Ok(answer),
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

    /// One read, from the node `start` names (with a short slack past its
    /// timeout) or, for `None`, from the next in the round robin.
    async fn attempt<A: ReadAnswer>(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
        at_least: Option<Version>,
        start: Option<usize>,
    ) -> Result<A, Error> {
        let route = Route {
            start,
            slack: start.map(|_| ATTEMPT_SLACK),
        };
        self.client
            .read(bucket, key, options, at_least, route)
            .await
    }
}

fn millis(d: Duration) -> u32 {
    // Never 0: a node reads a timeout of 0 as "the default".
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// The table key of (bucket, key): the key-value API's key is the item of
/// partition `key` with the empty sort key.
fn store_key(bucket: &str, key: &[u8]) -> Vec<u8> {
    item_store_key(bucket, key, b"")
}

/// The table key of an item: the bucket's length (4 bytes, little endian),
/// the bucket, the partition key's length (4 bytes), the partition key, the
/// sort key. A partition's items share [`partition_store_prefix`].
fn item_store_key(bucket: &str, partition: &[u8], sort: &[u8]) -> Vec<u8> {
    let mut k = partition_store_prefix(bucket, partition);
    k.extend_from_slice(sort);
    k
}

/// The start of the table keys of a partition's items.
fn partition_store_prefix(bucket: &str, partition: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + bucket.len() + partition.len());
    k.extend_from_slice(&(bucket.len() as u32).to_le_bytes());
    k.extend_from_slice(bucket.as_bytes());
    k.extend_from_slice(&(partition.len() as u32).to_le_bytes());
    k.extend_from_slice(partition);
    k
}

impl Client {
    /// A session for this client (see [`Session`]), with the default
    /// bounds ([`SessionConfig::default`]).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{CausalContext, ReadOptions, WriteOptions};
    /// let session = client.session();
    /// session.put_with("users", b"alice", b"admin", &CausalContext::empty(), WriteOptions::w(1)).await?;
    /// // Even at R = 1 through another node: this write, or something newer.
    /// let read = session.get_with("users", b"alice", ReadOptions::r(1)).await?;
    /// assert!(read.is_found());
    /// # Ok(()) }
    /// ```
    pub fn session(&self) -> Session {
        Session::new(self, SessionConfig::default())
    }

    /// A session with explicit memory bounds.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// use kvorum_client::SessionConfig;
    /// let session = client.session_with(SessionConfig { max_keys: 100, ..SessionConfig::default() });
    /// # let _ = session; }
    /// ```
    pub fn session_with(&self, config: SessionConfig) -> Session {
        Session::new(self, config)
    }
}
