//! Typed handles on counter, set and map keys.
//!
//! A handle is cheap (a clone of the client plus the key); it carries the
//! read and write options of its requests, so per-request R, W and timeouts
//! work as for registers.

use crate::client::{Client, Error, Fetched, Route};
use crate::proto::{CausalContext, ErrorReply, ReadOptions, ReadReport, Version, WriteOptions};
use crate::session::Session;
use crate::types::{BucketType, DataOp, DataValue, FieldKind, MapOp, MapValue};

/// What every handle holds.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    client: Client,
    /// Reads and updates go through this session, if any.
    session: Option<Session>,
    bucket: String,
    key: Vec<u8>,
    read: ReadOptions,
    write: WriteOptions,
}

impl Handle {
    pub(crate) fn new(client: &Client, bucket: &str, key: &[u8]) -> Self {
        Self {
            client: client.clone(),
            session: None,
            bucket: bucket.to_string(),
            key: key.to_vec(),
            read: ReadOptions::default(),
            write: WriteOptions::default(),
        }
    }

    pub(crate) fn with_session(session: &Session, bucket: &str, key: &[u8]) -> Self {
        Self {
            session: Some(session.clone()),
            ..Self::new(session.client(), bucket, key)
        }
    }

    async fn fetch(&self) -> Result<Fetched, Error> {
        match &self.session {
            Some(s) => s.fetch(&self.bucket, &self.key, self.read).await,
            None => {
                self.client
                    .fetch(&self.bucket, &self.key, self.read, None, Route::default())
                    .await
            }
        }
    }

    async fn update(&self, op: DataOp, ctx: &CausalContext) -> Result<CausalContext, Error> {
        let (context, version) = self
            .client
            .update(&self.bucket, &self.key, op, ctx, self.write)
            .await?;
        if let Some(s) = &self.session {
            s.observe(&self.bucket, &self.key, &version);
        }
        Ok(context)
    }

    /// The error for a value of another type than the handle's (the node
    /// checks types, so this only shows a node answering out of protocol).
    fn mismatch(&self, want: BucketType, got: &DataValue) -> Error {
        Error::Protocol(format!(
            "bucket {:?}: expected a {want} value, got {got:?}",
            self.bucket
        ))
    }
}

/// A counter key: increments from any client and any node add up.
///
/// An increment that fails with a timeout or [`Error::OutcomeUnknown`] may
/// still have been applied; retrying it may count it twice. The client
/// itself never retries an increment that was sent.
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::{ReadOptions, WriteOptions};
/// let c = client
///     .counter("stats", b"hits")
///     .write_options(WriteOptions::w(3))
///     .read_options(ReadOptions::r(3));
/// c.increment(5).await?;
/// c.increment(-2).await?;
/// assert!(c.value().await? >= 3);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CounterHandle(pub(crate) Handle);

impl CounterHandle {
    /// Uses these read options (R, timeout) for reads through this handle.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let c = client.counter("stats", b"hits").read_options(kvorum_client::ReadOptions::r(1));
    /// # let _ = c; }
    /// ```
    pub fn read_options(mut self, options: ReadOptions) -> Self {
        self.0.read = options;
        self
    }

    /// Uses these write options (W, timeout) for updates through this handle.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let c = client.counter("stats", b"hits").write_options(kvorum_client::WriteOptions::w(1));
    /// # let _ = c; }
    /// ```
    pub fn write_options(mut self, options: WriteOptions) -> Self {
        self.0.write = options;
        self
    }

    /// Adds `by` (negative: subtracts) at quorum W.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// client.counter("stats", b"hits").increment(1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn increment(&self, by: i64) -> Result<(), Error> {
        self.0
            .update(DataOp::Increment(by), &CausalContext::empty())
            .await
            .map(|_| ())
    }

    /// The counter's value at quorum R (0 for a key never incremented).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let n: i64 = client.counter("stats", b"hits").value().await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub async fn value(&self) -> Result<i64, Error> {
        self.read().await.map(|c| c.value)
    }

    /// The counter's value at quorum R, with its version and what the
    /// read's replicas did.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let read = client.counter("stats", b"hits").read().await?;
    /// println!("{} ({})", read.value, read.report);
    /// # Ok(()) }
    /// ```
    pub async fn read(&self) -> Result<CounterValue, Error> {
        let f = self.0.fetch().await?;
        let value = match f.value {
            None => 0,
            Some(DataValue::Counter(v)) => v,
            Some(other) => return Err(self.0.mismatch(BucketType::Counter, &other)),
        };
        Ok(CounterValue {
            value,
            version: f.version,
            report: f.report,
        })
    }
}

/// A counter read.
///
/// ```
/// use kvorum_client::CounterValue;
/// let c = CounterValue { value: 3, version: Default::default(), report: Default::default() };
/// assert_eq!(c.value, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterValue {
    /// The counter's value (0 for a key never incremented).
    pub value: i64,
    /// Version of the merged state.
    pub version: Version,
    /// How many replicas were asked and answered, and whether they agreed.
    pub report: ReadReport,
}

/// A set read: its members (sorted) and the context that lets a later
/// update remove them.
///
/// ```
/// use kvorum_client::{CausalContext, SetValue};
/// let s = SetValue { members: vec![b"a".to_vec()], context: CausalContext::empty(),
///     version: Default::default(), report: Default::default() };
/// assert!(s.contains(b"a"));
/// assert!(!s.contains(b"b"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetValue {
    /// The members, sorted.
    pub members: Vec<Vec<u8>>,
    /// Pass to [`SetHandle::remove`]: removes only what this read saw.
    pub context: CausalContext,
    /// Version of the merged state.
    pub version: Version,
    /// How many replicas were asked and answered, and whether they agreed.
    pub report: ReadReport,
}

impl SetValue {
    /// Whether `member` is in the set.
    ///
    /// ```
    /// use kvorum_client::{CausalContext, SetValue};
    /// let s = SetValue { members: vec![], context: CausalContext::empty(),
    ///     version: Default::default(), report: Default::default() };
    /// assert!(!s.contains(b"x"));
    /// ```
    pub fn contains(&self, member: &[u8]) -> bool {
        self.members.iter().any(|m| m == member)
    }
}

/// A set key (observed-remove: a remove removes only the additions the
/// remover's read observed, so a concurrent add wins).
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// let s = client.set("tags", b"post:1");
/// s.add_all([b"a".to_vec(), b"b".to_vec()]).await?;
/// let read = s.members().await?;
/// s.remove(b"a", &read.context).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SetHandle(pub(crate) Handle);

impl SetHandle {
    /// Uses these read options (R, timeout) for reads through this handle.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let s = client.set("tags", b"t").read_options(kvorum_client::ReadOptions::r(3));
    /// # let _ = s; }
    /// ```
    pub fn read_options(mut self, options: ReadOptions) -> Self {
        self.0.read = options;
        self
    }

    /// Uses these write options (W, timeout) for updates through this handle.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let s = client.set("tags", b"t").write_options(kvorum_client::WriteOptions::w(3));
    /// # let _ = s; }
    /// ```
    pub fn write_options(mut self, options: WriteOptions) -> Self {
        self.0.write = options;
        self
    }

    /// Adds one member.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// client.set("tags", b"post:1").add(b"rust").await?;
    /// # Ok(()) }
    /// ```
    pub async fn add(&self, member: &[u8]) -> Result<(), Error> {
        self.add_all([member.to_vec()]).await
    }

    /// Adds several members in one update.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// client.set("tags", b"post:1").add_all([b"x".to_vec(), b"y".to_vec()]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_all(&self, members: impl IntoIterator<Item = Vec<u8>>) -> Result<(), Error> {
        self.update(
            members.into_iter().collect(),
            Vec::new(),
            &CausalContext::empty(),
        )
        .await
    }

    /// Removes a member as `context` (from [`SetHandle::members`]) saw it.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let s = client.set("tags", b"post:1");
    /// let read = s.members().await?;
    /// if read.contains(b"rust") {
    ///     s.remove(b"rust", &read.context).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, member: &[u8], context: &CausalContext) -> Result<(), Error> {
        self.update(Vec::new(), vec![member.to_vec()], context)
            .await
    }

    /// Adds and removes members in one update.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let s = client.set("tags", b"post:1");
    /// let read = s.members().await?;
    /// s.update(vec![b"new".to_vec()], read.members.clone(), &read.context).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update(
        &self,
        add: Vec<Vec<u8>>,
        remove: Vec<Vec<u8>>,
        context: &CausalContext,
    ) -> Result<(), Error> {
        self.0
            .update(DataOp::SetUpdate { add, remove }, context)
            .await
            .map(|_| ())
    }

    /// The members at quorum R, with the context for removes.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let read = client.set("tags", b"post:1").members().await?;
    /// println!("{} members", read.members.len());
    /// # Ok(()) }
    /// ```
    pub async fn members(&self) -> Result<SetValue, Error> {
        let f = self.0.fetch().await?;
        let members = match f.value {
            None => Vec::new(),
            Some(DataValue::Set(members)) => members,
            Some(other) => return Err(self.0.mismatch(BucketType::Set, &other)),
        };
        Ok(SetValue {
            members,
            context: f.context,
            version: f.version,
            report: f.report,
        })
    }
}

/// Field updates of one map, sent as one request and applied together.
///
/// Removes (of set members, of flags' enables, of whole fields) and
/// multi-value register writes act on what the update's context observed:
/// pass the context of a [`MapHandle::fetch`].
///
/// ```
/// use kvorum_client::{FieldKind, MapUpdate};
/// let u = MapUpdate::new()
///     .increment("apples", 2)
///     .add("notes", b"gift wrap")
///     .enable("express")
///     .set_lww("address", b"1 Main St")
///     .set_register("comment", b"ring twice")
///     .remove_field("coupon", FieldKind::Lww);
/// assert_eq!(u.ops().len(), 6);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapUpdate {
    ops: Vec<MapOp>,
    context: CausalContext,
}

impl MapUpdate {
    /// An empty update.
    ///
    /// ```
    /// assert!(kvorum_client::MapUpdate::new().ops().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The operations so far.
    ///
    /// ```
    /// assert_eq!(kvorum_client::MapUpdate::new().enable("f").ops().len(), 1);
    /// ```
    pub fn ops(&self) -> &[MapOp] {
        &self.ops
    }

    /// Sets the context (from [`MapHandle::fetch`]) that removes act on.
    ///
    /// ```
    /// use kvorum_client::{CausalContext, MapUpdate};
    /// let u = MapUpdate::new().context(&CausalContext(vec![1]));
    /// # let _ = u;
    /// ```
    pub fn context(mut self, context: &CausalContext) -> Self {
        self.context = context.clone();
        self
    }

    /// Adds `by` to counter field `field`.
    ///
    /// ```
    /// let u = kvorum_client::MapUpdate::new().increment("qty", -1);
    /// # let _ = u;
    /// ```
    pub fn increment(mut self, field: &str, by: i64) -> Self {
        self.ops.push(MapOp::Increment {
            field: field.into(),
            by,
        });
        self
    }

    /// Adds `member` to set field `field`.
    ///
    /// ```
    /// let u = kvorum_client::MapUpdate::new().add("tags", b"x");
    /// # let _ = u;
    /// ```
    pub fn add(mut self, field: &str, member: &[u8]) -> Self {
        self.ops.push(MapOp::Add {
            field: field.into(),
            members: vec![member.to_vec()],
        });
        self
    }

    /// Removes `member` (as the context saw it) from set field `field`.
    ///
    /// ```
    /// let u = kvorum_client::MapUpdate::new().remove("tags", b"x");
    /// # let _ = u;
    /// ```
    pub fn remove(mut self, field: &str, member: &[u8]) -> Self {
        self.ops.push(MapOp::Remove {
            field: field.into(),
            members: vec![member.to_vec()],
        });
        self
    }

    /// Enables flag field `field` (enable wins over a concurrent disable).
    ///
    /// ```
    /// let u = kvorum_client::MapUpdate::new().enable("express");
    /// # let _ = u;
    /// ```
    pub fn enable(mut self, field: &str) -> Self {
        self.ops.push(MapOp::Flag {
            field: field.into(),
            enable: true,
        });
        self
    }

    /// Disables flag field `field` (the enables the context saw).
    ///
    /// ```
    /// let u = kvorum_client::MapUpdate::new().disable("express");
    /// # let _ = u;
    /// ```
    pub fn disable(mut self, field: &str) -> Self {
        self.ops.push(MapOp::Flag {
            field: field.into(),
            enable: false,
        });
        self
    }

    /// Sets LWW register field `field`.
    ///
    /// ```
    /// let u = kvorum_client::MapUpdate::new().set_lww("name", b"Alice");
    /// # let _ = u;
    /// ```
    pub fn set_lww(mut self, field: &str, value: &[u8]) -> Self {
        self.ops.push(MapOp::SetLww {
            field: field.into(),
            value: value.to_vec(),
        });
        self
    }

    /// Writes multi-value register field `field`, replacing the values the
    /// context saw (a concurrent write becomes a sibling).
    ///
    /// ```
    /// let u = kvorum_client::MapUpdate::new().set_register("note", b"hi");
    /// # let _ = u;
    /// ```
    pub fn set_register(mut self, field: &str, value: &[u8]) -> Self {
        self.ops.push(MapOp::SetRegister {
            field: field.into(),
            value: value.to_vec(),
        });
        self
    }

    /// Removes field (`field`, `kind`) as the context saw it; a concurrent
    /// update of the field survives (see docs/data-types.md).
    ///
    /// ```
    /// use kvorum_client::{FieldKind, MapUpdate};
    /// let u = MapUpdate::new().remove_field("tags", FieldKind::Set);
    /// # let _ = u;
    /// ```
    pub fn remove_field(mut self, field: &str, kind: FieldKind) -> Self {
        self.ops.push(MapOp::RemoveField {
            field: field.into(),
            kind,
        });
        self
    }
}

/// A map read: its fields and the context for removes.
///
/// ```
/// use kvorum_client::{CausalContext, FieldKind, MapValue, TypedMap};
/// let m = TypedMap { value: MapValue::default(), context: CausalContext::empty(),
///     version: Default::default(), report: Default::default() };
/// assert!(m.value.get("x", FieldKind::Counter).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedMap {
    /// The fields.
    pub value: MapValue,
    /// Pass to [`MapUpdate::context`] for removes and register writes.
    pub context: CausalContext,
    /// Version of the merged state.
    pub version: Version,
    /// How many replicas were asked and answered, and whether they agreed.
    pub report: ReadReport,
}

/// A map key: named fields of counters, sets, flags, LWW and multi-value
/// registers, updated together.
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::{FieldKind, FieldValue, MapUpdate};
/// let cart = client.map("carts", b"alice");
/// cart.update(MapUpdate::new().increment("apples", 3).enable("express")).await?;
/// let read = cart.fetch().await?;
/// assert_eq!(read.value.get("apples", FieldKind::Counter), Some(&FieldValue::Counter(3)));
/// cart.update(MapUpdate::new().remove_field("apples", FieldKind::Counter).context(&read.context))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MapHandle(pub(crate) Handle);

impl MapHandle {
    /// Uses these read options (R, timeout) for reads through this handle.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let m = client.map("carts", b"a").read_options(kvorum_client::ReadOptions::r(1));
    /// # let _ = m; }
    /// ```
    pub fn read_options(mut self, options: ReadOptions) -> Self {
        self.0.read = options;
        self
    }

    /// Uses these write options (W, timeout) for updates through this handle.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let m = client.map("carts", b"a").write_options(kvorum_client::WriteOptions::w(2));
    /// # let _ = m; }
    /// ```
    pub fn write_options(mut self, options: WriteOptions) -> Self {
        self.0.write = options;
        self
    }

    /// Applies every operation of `update` in one request at quorum W. An
    /// empty update is refused.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::MapUpdate;
    /// client.map("carts", b"bob").update(MapUpdate::new().add("items", b"pear")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update(&self, update: MapUpdate) -> Result<(), Error> {
        if update.ops.is_empty() {
            return Err(Error::Server(ErrorReply::BadRequest(
                "empty map update".into(),
            )));
        }
        self.0
            .update(DataOp::MapUpdate(update.ops), &update.context)
            .await
            .map(|_| ())
    }

    /// The map at quorum R (no fields for a key never written).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let read = client.map("carts", b"bob").fetch().await?;
    /// for (name, kind, value) in &read.value.fields {
    ///     println!("{name} ({kind}): {value:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn fetch(&self) -> Result<TypedMap, Error> {
        let f = self.0.fetch().await?;
        let value = match f.value {
            None => MapValue::default(),
            Some(DataValue::Map(value)) => value,
            Some(other) => return Err(self.0.mismatch(BucketType::Map, &other)),
        };
        Ok(TypedMap {
            value,
            context: f.context,
            version: f.version,
            report: f.report,
        })
    }
}
