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
//! - [`proto`]: requests, responses, errors and framing of the client protocol
//!   (versioned postcard frames, one request per QUIC stream).
//! - [`tls`]: PEM loading and the QUIC/TLS 1.3 client configuration (mutual
//!   authentication against the cluster CA, `ring` provider).
//! - [`Client`]: the connection pool with failover.
//!
//! # Invariants
//! - Every frame carries [`proto::PROTOCOL_VERSION`]; decoding is bounded by
//!   the size of the frame read.
//! - A write is retried on another node only if it was never sent, so the
//!   client never duplicates a write behind the caller's back.
#![warn(missing_docs)]

mod client;
mod handles;
pub mod proto;
pub mod tls;
mod types;

pub use client::{
    Client, ClientBuilder, Error, Versioned, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};
pub use handles::{CounterHandle, MapHandle, MapUpdate, SetHandle, SetValue, TypedMap};
pub use proto::{
    CausalContext, ClusterStatus, ErrorReply, MemberStatus, QuorumFailure, ReadOptions,
    ReplicaOutcome, RingRange, TransferStatus, WriteOptions,
};
pub use tls::{TlsError, TlsMaterial};
pub use types::{
    BucketProps, BucketType, DataOp, DataValue, FieldKind, FieldValue, MapOp, MapValue,
};
