//! `kvorum-node`: the Kvorum node, a peer of a leaderless, Dynamo-style
//! replicated key-value store, as a library (the `kvorum` binary is a thin
//! shell over it, with its command-line code in `src/cli/`).
//!
//! # Layout
//! ```text
//! node/src/
//!   net/          QUIC endpoint, TLS, certificates and their roles, the serving loop
//!   access/       who may make which request: roles, the access list
//!   rpc/          the Transport trait, its QUIC implementation, the peer protocol
//!   cluster/      member list, gossip, liveness, buckets, admin operations, persisted metadata
//!   replication/  quorum tracker, coordinator, read path, write path, read repair, replica
//!   data/         the value types (register, counter, set, map, lww) and their record formats
//!   storage/      the Engine trait, the fjall and in-memory engines, the group-commit store
//!   repair/       hints, anti-entropy trees and exchanges, range transfers, reaping
//!   backup/       backup snapshots read page by page, the backup directory format
//!   metrics/      the metric catalogue, the HTTP endpoint, the collector
//!   util/         lock recovery, the clock seam, the node's RNG, workers, periodic ticks
//!   config.rs     the TOML config, parsed into typed values
//!   wiring.rs     a node assembled from its parts: config, engine, transport, clock, RNG
//!   start.rs      a real node: fjall and QUIC, wired by wiring.rs
//!   dev.rs        the local development cluster of `kvorum dev`
//!   main.rs, cli/ the `kvorum` binary (not part of this library)
//! ```
//!
//! # Invariants
//! - A write is acknowledged to a client only after W replicas stored it
//!   durably by their sync policy; otherwise the client gets a typed error.
//! - The coordinator of a write is a replica of its key, so the new version's
//!   dot is fresh (see [`data::register`]).
//! - Input from the network or the disk never panics the node: every frame is
//!   size-bounded and decoded into a typed error.
#![warn(missing_docs)]

pub mod access;
pub mod backup;
pub mod cluster;
pub mod config;
pub mod data;
pub mod dev;
pub mod metrics;
pub mod net;
pub mod repair;
pub mod replication;
pub mod rpc;
pub mod start;
pub mod storage;
pub mod supervise;
pub mod util;
pub mod wiring;

pub use config::NodeConfig;
pub use start::{start, NodeError, RunningNode};
