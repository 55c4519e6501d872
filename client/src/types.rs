//! Bucket types and the convergent data types' operations and values, as
//! they travel between client and node.
//!
//! A bucket's type is fixed when it is created (see
//! [`crate::Admin::create_bucket`]); every key of the bucket holds a value
//! of that type. Register buckets use `get` / `put` / `delete`; counter, set
//! and map buckets use [`DataOp`] updates and typed reads ([`DataValue`]);
//! `lww` buckets use `get` / `put` / `delete` with last-writer-wins
//! resolution instead of siblings.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The value type of a bucket, fixed for its life.
///
/// ```
/// use kvorum_client::BucketType;
/// assert_eq!("counter".parse::<BucketType>(), Ok(BucketType::Counter));
/// assert_eq!(BucketType::Map.to_string(), "map");
/// assert!("graph".parse::<BucketType>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BucketType {
    /// Multi-value register: concurrent writes become siblings.
    Register,
    /// PN counter: increments and decrements from anywhere add up.
    Counter,
    /// Observed-remove set (add wins over a concurrent remove).
    Set,
    /// Map of named fields, each a counter, set, flag, LWW or multi-value register.
    Map,
    /// Last-writer-wins register: concurrent writes are *lost* but one
    /// (by coordinator timestamp, see docs/data-types.md).
    Lww,
}

impl BucketType {
    /// Every type, in a fixed order.
    ///
    /// ```
    /// use kvorum_client::BucketType;
    /// assert_eq!(BucketType::ALL.len(), 5);
    /// ```
    pub const ALL: [BucketType; 5] = [
        BucketType::Register,
        BucketType::Counter,
        BucketType::Set,
        BucketType::Map,
        BucketType::Lww,
    ];

    /// Whether keys of this type are read with `get` and written with
    /// `put` / `delete` (register and lww) rather than typed updates.
    ///
    /// ```
    /// use kvorum_client::BucketType;
    /// assert!(BucketType::Lww.is_register_like());
    /// assert!(!BucketType::Set.is_register_like());
    /// ```
    pub fn is_register_like(self) -> bool {
        matches!(self, BucketType::Register | BucketType::Lww)
    }
}

impl BucketType {
    /// The type's name, as `kvorum admin bucket create --type` takes it.
    ///
    /// ```
    /// use kvorum_client::BucketType;
    /// assert_eq!(BucketType::Counter.as_str(), "counter");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            BucketType::Register => "register",
            BucketType::Counter => "counter",
            BucketType::Set => "set",
            BucketType::Map => "map",
            BucketType::Lww => "lww",
        }
    }
}

impl fmt::Display for BucketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BucketType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BucketType::ALL
            .into_iter()
            .find(|t| t.to_string() == s)
            .ok_or_else(|| format!("unknown bucket type {s:?} (register, counter, set, map, lww)"))
    }
}

/// A bucket's settings, fixed when it is created.
///
/// ```
/// use kvorum_client::{BucketProps, BucketType};
/// let p = BucketProps::new(BucketType::Set).n(3).r(2).w(2);
/// assert_eq!((p.bucket_type, p.n, p.r, p.w), (BucketType::Set, 3, 2, 2));
/// assert!(p.validate().is_ok());
/// assert!(BucketProps::new(BucketType::Set).n(3).w(4).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BucketProps {
    /// The value type of every key of the bucket.
    pub bucket_type: BucketType,
    /// Replicas per key.
    pub n: u8,
    /// Default read quorum (a request may override it).
    pub r: u8,
    /// Default write quorum (a request may override it).
    pub w: u8,
    /// Time to live of every write that gives none, in milliseconds
    /// (`None`: writes without one live for ever).
    pub default_ttl_ms: Option<u64>,
}

/// Bucket props in the form the client protocol's first bucket requests
/// carry ([`Request::CreateBucket`](crate::proto::Request::CreateBucket),
/// [`Response::Buckets`](crate::proto::Response::Buckets),
/// [`ErrorReply::BucketConflict`](crate::proto::ErrorReply::BucketConflict)):
/// without the default time to live, so their frames did not change and
/// clients built before it keep working. Newer requests carry
/// [`BucketProps`] whole.
///
/// ```
/// use kvorum_client::{BucketProps, BucketType, LegacyBucketProps};
/// let p = BucketProps::new(BucketType::Set).n(5);
/// let legacy = LegacyBucketProps::from(p);
/// assert_eq!(BucketProps::from(legacy), p);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LegacyBucketProps {
    /// The value type of every key of the bucket.
    pub bucket_type: BucketType,
    /// Replicas per key.
    pub n: u8,
    /// Default read quorum.
    pub r: u8,
    /// Default write quorum.
    pub w: u8,
}

impl From<BucketProps> for LegacyBucketProps {
    fn from(p: BucketProps) -> Self {
        LegacyBucketProps {
            bucket_type: p.bucket_type,
            n: p.n,
            r: p.r,
            w: p.w,
        }
    }
}

impl From<LegacyBucketProps> for BucketProps {
    fn from(p: LegacyBucketProps) -> Self {
        BucketProps {
            bucket_type: p.bucket_type,
            n: p.n,
            r: p.r,
            w: p.w,
            default_ttl_ms: None,
        }
    }
}

impl BucketProps {
    /// Largest replication factor a bucket may ask for.
    ///
    /// ```
    /// assert_eq!(kvorum_client::BucketProps::MAX_N, 9);
    /// ```
    pub const MAX_N: u8 = 9;

    /// Props of the given type with N=3, R=2, W=2.
    ///
    /// ```
    /// use kvorum_client::{BucketProps, BucketType};
    /// assert_eq!(BucketProps::new(BucketType::Counter).n, 3);
    /// ```
    pub fn new(bucket_type: BucketType) -> Self {
        Self {
            bucket_type,
            n: 3,
            r: 2,
            w: 2,
            default_ttl_ms: None,
        }
    }

    /// Sets the time to live of every write that gives none (see
    /// [`WriteOptions::ttl`](crate::WriteOptions::ttl)).
    ///
    /// ```
    /// use kvorum_client::{BucketProps, BucketType};
    /// use std::time::Duration;
    /// let p = BucketProps::new(BucketType::Register).default_ttl(Duration::from_secs(60));
    /// assert_eq!(p.default_ttl_ms, Some(60_000));
    /// ```
    pub fn default_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.default_ttl_ms = Some(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets N (replicas per key).
    ///
    /// ```
    /// use kvorum_client::{BucketProps, BucketType};
    /// assert_eq!(BucketProps::new(BucketType::Map).n(5).n, 5);
    /// ```
    pub fn n(mut self, n: u8) -> Self {
        self.n = n;
        self
    }

    /// Sets the default R.
    ///
    /// ```
    /// use kvorum_client::{BucketProps, BucketType};
    /// assert_eq!(BucketProps::new(BucketType::Map).r(1).r, 1);
    /// ```
    pub fn r(mut self, r: u8) -> Self {
        self.r = r;
        self
    }

    /// Sets the default W.
    ///
    /// ```
    /// use kvorum_client::{BucketProps, BucketType};
    /// assert_eq!(BucketProps::new(BucketType::Map).w(3).w, 3);
    /// ```
    pub fn w(mut self, w: u8) -> Self {
        self.w = w;
        self
    }

    /// Checks `1 <= R, W <= N <= MAX_N`.
    ///
    /// ```
    /// use kvorum_client::{BucketProps, BucketType};
    /// let e = BucketProps::new(BucketType::Lww).n(0).validate().unwrap_err();
    /// assert!(e.contains("N"));
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        if self.default_ttl_ms == Some(0) {
            return Err("the default time to live must be at least 1 ms".into());
        }
        if self.n == 0 || self.n > Self::MAX_N {
            return Err(format!(
                "N must be between 1 and {}, not {}",
                Self::MAX_N,
                self.n
            ));
        }
        for (name, q) in [("R", self.r), ("W", self.w)] {
            if q == 0 || q > self.n {
                return Err(format!(
                    "{name} must be between 1 and N={}, not {q}",
                    self.n
                ));
            }
        }
        Ok(())
    }
}

/// The type of a map field. A field is named by its name *and* its type, so
/// `("n", Counter)` and `("n", Set)` are two fields.
///
/// ```
/// use kvorum_client::FieldKind;
/// assert_eq!("flag".parse::<FieldKind>(), Ok(FieldKind::Flag));
/// assert_eq!(FieldKind::Register.to_string(), "register");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FieldKind {
    /// A counter (increments survive a concurrent remove of the field).
    Counter,
    /// An observed-remove set of byte strings.
    Set,
    /// An enable-wins flag.
    Flag,
    /// A last-writer-wins register.
    Lww,
    /// A multi-value register (concurrent writes become siblings).
    Register,
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldKind::Counter => "counter",
            FieldKind::Set => "set",
            FieldKind::Flag => "flag",
            FieldKind::Lww => "lww",
            FieldKind::Register => "register",
        })
    }
}

impl std::str::FromStr for FieldKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            FieldKind::Counter,
            FieldKind::Set,
            FieldKind::Flag,
            FieldKind::Lww,
            FieldKind::Register,
        ]
        .into_iter()
        .find(|k| k.to_string() == s)
        .ok_or_else(|| format!("unknown field type {s:?} (counter, set, flag, lww, register)"))
    }
}

/// One change to one map field.
///
/// ```
/// use kvorum_client::{FieldKind, MapOp};
/// let op = MapOp::Increment { field: "visits".into(), by: 1 };
/// assert_eq!(op.field(), ("visits", FieldKind::Counter));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapOp {
    /// Add `by` (negative: subtract) to a counter field.
    Increment {
        /// Field name.
        field: String,
        /// Amount.
        by: i64,
    },
    /// Add members to a set field.
    Add {
        /// Field name.
        field: String,
        /// Members to add.
        members: Vec<Vec<u8>>,
    },
    /// Remove members a read of the map observed from a set field.
    Remove {
        /// Field name.
        field: String,
        /// Members to remove.
        members: Vec<Vec<u8>>,
    },
    /// Enable (`true`) or disable (`false`) a flag field.
    Flag {
        /// Field name.
        field: String,
        /// New state.
        enable: bool,
    },
    /// Set an LWW register field.
    SetLww {
        /// Field name.
        field: String,
        /// New value.
        value: Vec<u8>,
    },
    /// Write a multi-value register field (replacing the values the
    /// request's context covers).
    SetRegister {
        /// Field name.
        field: String,
        /// New value.
        value: Vec<u8>,
    },
    /// Remove a field (what the request's context observed of it).
    RemoveField {
        /// Field name.
        field: String,
        /// Field type.
        kind: FieldKind,
    },
}

impl MapOp {
    /// The field this operation changes.
    ///
    /// ```
    /// use kvorum_client::{FieldKind, MapOp};
    /// let op = MapOp::Flag { field: "gift".into(), enable: true };
    /// assert_eq!(op.field(), ("gift", FieldKind::Flag));
    /// ```
    pub fn field(&self) -> (&str, FieldKind) {
        match self {
            MapOp::Increment { field, .. } => (field, FieldKind::Counter),
            MapOp::Add { field, .. } | MapOp::Remove { field, .. } => (field, FieldKind::Set),
            MapOp::Flag { field, .. } => (field, FieldKind::Flag),
            MapOp::SetLww { field, .. } => (field, FieldKind::Lww),
            MapOp::SetRegister { field, .. } => (field, FieldKind::Register),
            MapOp::RemoveField { field, kind } => (field, *kind),
        }
    }
}

/// An update of a counter, set or map key, applied by one replica (the
/// coordinator) and replicated as merged state.
///
/// ```
/// use kvorum_client::{BucketType, DataOp};
/// assert_eq!(DataOp::Increment(5).bucket_type(), BucketType::Counter);
/// assert_eq!(DataOp::SetUpdate { add: vec![b"x".to_vec()], remove: vec![] }.bucket_type(),
///            BucketType::Set);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataOp {
    /// Add to a counter (negative: subtract).
    Increment(i64),
    /// Add and remove set members (removes need the context of a read).
    SetUpdate {
        /// Members to add.
        add: Vec<Vec<u8>>,
        /// Members to remove (only the additions the context observed).
        remove: Vec<Vec<u8>>,
    },
    /// Several field updates of one map, applied atomically at one replica.
    MapUpdate(Vec<MapOp>),
}

impl DataOp {
    /// The bucket type this operation applies to.
    ///
    /// ```
    /// use kvorum_client::{BucketType, DataOp};
    /// assert_eq!(DataOp::MapUpdate(vec![]).bucket_type(), BucketType::Map);
    /// ```
    pub fn bucket_type(&self) -> BucketType {
        match self {
            DataOp::Increment(_) => BucketType::Counter,
            DataOp::SetUpdate { .. } => BucketType::Set,
            DataOp::MapUpdate(_) => BucketType::Map,
        }
    }

    /// A short name of the operation, for errors.
    ///
    /// ```
    /// use kvorum_client::DataOp;
    /// assert_eq!(DataOp::Increment(1).name(), "counter increment");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            DataOp::Increment(_) => "counter increment",
            DataOp::SetUpdate { .. } => "set update",
            DataOp::MapUpdate(_) => "map update",
        }
    }
}

/// The value of one map field.
///
/// ```
/// use kvorum_client::FieldValue;
/// let v = FieldValue::Counter(3);
/// assert_eq!(v.as_counter(), Some(3));
/// assert_eq!(FieldValue::Flag(true).as_counter(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldValue {
    /// A counter's value.
    Counter(i64),
    /// A set's members, sorted.
    Set(Vec<Vec<u8>>),
    /// A flag's state.
    Flag(bool),
    /// An LWW register's value.
    Lww(Vec<u8>),
    /// A multi-value register's values (siblings), in a fixed order.
    Register(Vec<Vec<u8>>),
}

impl FieldValue {
    /// The counter's value, if this is a counter field.
    ///
    /// ```
    /// assert_eq!(kvorum_client::FieldValue::Counter(-2).as_counter(), Some(-2));
    /// ```
    pub fn as_counter(&self) -> Option<i64> {
        match self {
            FieldValue::Counter(v) => Some(*v),
            _ => None,
        }
    }
}

/// A map read: its fields, sorted by (name, type).
///
/// ```
/// use kvorum_client::{FieldKind, FieldValue, MapValue};
/// let m = MapValue {
///     fields: vec![("qty".into(), FieldKind::Counter, FieldValue::Counter(2))],
/// };
/// assert_eq!(m.get("qty", FieldKind::Counter), Some(&FieldValue::Counter(2)));
/// assert_eq!(m.get("qty", FieldKind::Set), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapValue {
    /// (name, type, value) of every field.
    pub fields: Vec<(String, FieldKind, FieldValue)>,
}

impl MapValue {
    /// The value of a field, if present.
    ///
    /// ```
    /// use kvorum_client::{FieldKind, MapValue};
    /// assert!(MapValue::default().get("x", FieldKind::Flag).is_none());
    /// ```
    pub fn get(&self, name: &str, kind: FieldKind) -> Option<&FieldValue> {
        self.fields
            .iter()
            .find(|(n, k, _)| n == name && *k == kind)
            .map(|(_, _, v)| v)
    }
}

/// The value a typed read returns.
///
/// ```
/// use kvorum_client::DataValue;
/// let v = DataValue::Set(vec![b"a".to_vec()]);
/// assert!(matches!(v, DataValue::Set(ref m) if m.len() == 1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataValue {
    /// A counter's value.
    Counter(i64),
    /// A set's members, sorted.
    Set(Vec<Vec<u8>>),
    /// A map's fields.
    Map(MapValue),
}
