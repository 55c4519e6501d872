//! The client wire protocol: what a client sends a node and what it gets back.
//!
//! One request per bidirectional QUIC stream: the client writes one frame and
//! finishes its side, the node answers with one frame and finishes. A frame is
//! a postcard-encoded [`Envelope`]: a protocol version followed by the body.
//! Every decode is bounded by the frame size the reader accepted (see
//! [`decode_frame`]), so a hostile length prefix cannot make a reader allocate
//! more than the frame it already holds.
//!
//! ```
//! use kvorum_client::proto::{decode_frame, encode_frame, Request, PROTOCOL_VERSION};
//! let frame = encode_frame(PROTOCOL_VERSION, &Request::Status);
//! assert_eq!(decode_frame::<Request>(PROTOCOL_VERSION, &frame), Ok(Request::Status));
//! ```
//!
//! # Layout
//! - `frame`: the protocol version, ALPNs, certificate names, the answer
//!   size limit, and [`encode_frame`]/[`decode_frame`].
//! - `request`: [`Request`], [`ReadOptions`], [`WriteOptions`],
//!   [`CausalContext`].
//! - `response`: [`Response`].
//! - `items`: sorted partitions: [`ItemKey`], [`ItemOp`], [`RangeQuery`],
//!   [`SortBound`], [`Page`], [`Item`], [`ItemValue`].
//! - `placement`: the routing table clients route by ([`Placement`]).
//! - `error`: [`ErrorReply`] and its details ([`QuorumFailure`],
//!   [`StaleRead`], [`ReplicaOutcome`], [`Limit`], [`OpKind`]).
//! - `admin`: what operator calls answer ([`ClusterStatus`],
//!   [`MemberStatus`], [`RingRange`], [`TransferStatus`]).
//! - `backup`: backups, restores and verification ([`BackupStep`],
//!   [`BackupManifest`], [`BackupAnswer`], [`DigestQuery`],
//!   [`DigestAnswer`]).
//!
//! Every item is re-exported here: use `kvorum_client::proto::Name`.

mod admin;
mod backup;
mod error;
mod frame;
mod items;
mod placement;
mod request;
mod response;

pub use crate::types::{
    BucketProps, BucketType, DataOp, DataValue, FieldKind, FieldValue, MapOp, MapValue,
};
pub use crate::version::{ActorId, ReadReport, Version};
pub use admin::{
    AccessList, CertificateStatus, ClusterStatus, DiskRefusal, DiskStatus, Grant, GrantScope,
    MemberStatus, QuarantinedRecord, Revocation, RingRange, TransferStatus,
};
pub use backup::{BackupAnswer, BackupManifest, BackupStep, DigestAnswer, DigestQuery};
pub use error::{ErrorReply, Limit, OpKind, QuorumFailure, ReplicaOutcome, StaleRead};
pub use frame::{
    decode_frame, encode_frame, Envelope, FrameError, ADMIN_CERT_NAME, ALPN_CLIENT, ALPN_PEER,
    CLIENT_CERT_NAME, CLOSE_DRAINED, DEFAULT_MAX_RESPONSE_BYTES, NODE_CERT_NAME, PROTOCOL_VERSION,
    STREAM_DRAINING,
};
pub use items::{Item, ItemKey, ItemOp, ItemValue, Page, RangeQuery, SortBound, WatchTarget};
pub use placement::{PlacedNode, PlacedRange, Placement, PlacementError};
pub use request::{CausalContext, Condition, ReadOptions, Request, WriteOptions};
pub use response::Response;
