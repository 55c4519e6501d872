//! One request, many replicas: the coordinator that turns a client data
//! request into a fan-out to the key's preference list and a quorum-checked
//! answer, this node's own part as a replica of a key, and the router of
//! the requests peers send it.
//!
//! - [`coordinator`]: dispatch of a client data request.
//! - [`checks`]: bounds and types, checked before any replica is asked.
//! - [`read`]: the read path; [`read_repair`]: repairing stale replicas.
//! - [`range`]: range reads of a sorted partition (merge, page cut, repair).
//! - [`batch`]: several item operations in one request.
//! - [`listing`]: the partition keys of a bucket, page by page.
//! - [`watch`]: long polls for a change of an item or a range.
//! - [`write`]: the write path (sloppy quorum, hints, forwarding).
//! - [`conditions`]: conditional writes (`if_absent`, `if_match`).
//! - [`quorum`]: the pure quorum tracker.
//! - [`replica`]: this node as a replica of a key; [`quarantine`]:
//!   undecodable records moved aside.
//! - [`peer_router`]: peer requests to the services that serve them.
//! - [`settings`]: replication factor, default quorums, limits.

pub mod batch;
pub mod checks;
pub mod conditions;
pub mod coordinator;
pub mod listing;
pub mod peer_router;
pub mod quarantine;
pub mod quorum;
pub mod range;
pub mod read;
pub mod read_repair;
pub mod replica;
pub mod settings;
pub mod watch;
pub mod write;
