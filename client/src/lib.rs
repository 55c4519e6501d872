//! `kvorum-client`: the async Rust client of the Kvorum replicated key-value
//! store, and the client wire protocol that nodes speak.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use kvorum_client::{CausalContext, Client, TlsMaterial};
//! let tls = TlsMaterial::from_files(
//!     "kvorum-dev/certs/ca.pem",
//!     "kvorum-dev/certs/client.pem",
//!     "kvorum-dev/certs/client.key",
//! )?;
//! let client = Client::connect(["127.0.0.1:7401".parse()?], tls)?;
//! client.put("demo", b"greeting", b"hello", &CausalContext::empty()).await?;
//! let v = client.get("demo", b"greeting").await?;
//! println!("{:?}", v.siblings);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`proto`]: the wire protocol: framing, requests, answers, error replies, admin answers.
//! - [`tls`]: PEM loading and the QUIC/TLS 1.3 client configuration (mutual auth, `ring`).
//! - [`conn`]: one cached QUIC connection per address, connect timeout, reconnect backoff.
//! - `pool`: the order a request tries the nodes in, and failover, shared by [`Client`] and [`Admin`].
//! - `routing`: token-aware routing: the placement a client routes by, and when it asks again.
//! - `error`: [`Error`], what every call of this crate fails with.
//! - `client`: [`Client`], the data-plane handle, and [`ClientBuilder`] (which builds both).
//! - `kv`: `get`, `put`, `delete` of [`Client`] and their `_with` variants; [`Versioned`].
//! - `partition`: sorted partitions: [`Partition`] (items by sort key, range
//!   reads page by page, listing partitions).
//! - `batch`: [`Batch`], several item operations in one request, one outcome each.
//! - `watch`: long polls for a change ([`Client::watch`], [`Client::watch_range`]) and the
//!   change loops on them ([`Changes`], [`RangeChanges`]).
//! - `handles`: typed handles on counter, set and map keys ([`CounterHandle`] and the others).
//! - `session`: [`Session`], read-your-writes and monotonic reads with bounded memory.
//! - `admin`: [`Admin`], the operator calls: status, topology changes, ring, repair, buckets.
//! - `types`: bucket types, typed values and their operations ([`BucketType`], [`DataOp`]).
//! - `version`: the [`Version`] of a read or write (which sessions compare), [`ReadReport`].
//! - [`bytes`]: compact serde encoding of byte strings.
//!
//! # Invariants
//! - Every frame carries [`proto::PROTOCOL_VERSION`]; decoding is bounded by
//!   the size of the frame read.
//! - A write is retried on another node only if it was never sent, so the
//!   client never duplicates a write behind the caller's back.
//! - A session read never returns a state whose version does not dominate
//!   the session's version of the key; it fails with [`Error::Stale`]
//!   instead.
#![warn(missing_docs)]

mod admin;
mod batch;
pub mod bytes;
mod client;
pub mod conn;
mod error;
mod handles;
mod kv;
mod partition;
mod pool;
pub mod proto;
mod routing;
mod session;
pub mod tls;
mod types;
mod version;
mod watch;

pub use admin::{Admin, AdminBuilder};
pub use batch::{Batch, Outcome};
pub use client::{Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use error::Error;
pub use handles::{
    CounterHandle, CounterValue, MapHandle, MapUpdate, SetHandle, SetValue, TypedMap,
};
pub use kv::Versioned;
pub use partition::Partition;
pub use pool::{DEADLINE_SLACK, SPECULATIVE_DELAY};
pub use proto::{
    AccessList, BackupManifest, CausalContext, CertificateStatus, ClusterStatus, DiskRefusal,
    DiskStatus, ErrorReply, Grant, GrantScope, MemberStatus, PlacedNode, Placement,
    QuarantinedRecord, QuorumFailure, ReadOptions, ReplicaOutcome, Revocation, RingRange,
    StaleRead, TransferStatus, WriteOptions,
};
pub use routing::PLACEMENT_REFRESH;
pub use session::{Session, SessionConfig, MAX_SESSION_ITEMS_PER_PAGE};
pub use tls::{TlsError, TlsMaterial};
pub use types::{
    BucketProps, BucketType, DataOp, DataValue, FieldKind, FieldValue, LegacyBucketProps, MapOp,
    MapValue,
};
pub use version::{ActorId, ReadReport, Version};
pub use watch::{Changes, RangeChanges};
