//! Map keys: [`MapHandle`], the updates it sends ([`MapUpdate`]) and what
//! it reads ([`TypedMap`]).

use crate::error::Error;
use crate::handles::handle::{option_setters, Handle};
use crate::proto::{CausalContext, ErrorReply, ReadReport, Version};
use crate::types::{BucketType, DataOp, DataValue, FieldKind, MapOp, MapValue};

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
pub struct MapHandle(pub(super) Handle);

option_setters!(MapHandle, "map(\"carts\", b\"a\")");

impl MapHandle {
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
        let read = self
            .0
            .fetch_as(BucketType::Map, |v| match v {
                DataValue::Map(value) => Ok(value),
                other => Err(other),
            })
            .await?;
        Ok(TypedMap {
            value: read.value,
            context: read.context,
            version: read.version,
            report: read.report,
        })
    }
}
