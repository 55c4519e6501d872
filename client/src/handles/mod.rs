//! Typed handles on counter, set and map keys.
//!
//! A handle is cheap (a clone of the client plus the key); it carries the
//! read and write options of its requests, so per-request R, W and timeouts
//! work as for registers.

mod counter;
mod handle;
mod map;
mod set;

pub use counter::{CounterHandle, CounterValue};
pub use map::{MapHandle, MapUpdate, TypedMap};
pub use set::{SetHandle, SetValue};

use crate::client::Client;
use crate::handles::handle::Handle;
use crate::session::Session;

impl Client {
    /// A handle on a counter key (the bucket must be of type `counter`).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let visits = client.counter("stats", b"page:home");
    /// visits.increment(1).await?;
    /// println!("{}", visits.value().await?);
    /// # Ok(()) }
    /// ```
    pub fn counter(&self, bucket: &str, key: &[u8]) -> CounterHandle {
        CounterHandle(Handle::new(self, bucket, key))
    }

    /// A handle on a set key (the bucket must be of type `set`).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let tags = client.set("tags", b"post:1");
    /// tags.add(b"rust").await?;
    /// let read = tags.members().await?;
    /// tags.remove(b"rust", &read.context).await?;
    /// # Ok(()) }
    /// ```
    pub fn set(&self, bucket: &str, key: &[u8]) -> SetHandle {
        SetHandle(Handle::new(self, bucket, key))
    }

    /// A handle on a map key (the bucket must be of type `map`).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::MapUpdate;
    /// let cart = client.map("carts", b"alice");
    /// cart.update(MapUpdate::new().increment("apples", 2)).await?;
    /// # Ok(()) }
    /// ```
    pub fn map(&self, bucket: &str, key: &[u8]) -> MapHandle {
        MapHandle(Handle::new(self, bucket, key))
    }
}

impl Session {
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
}
