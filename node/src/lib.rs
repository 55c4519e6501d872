//! `kvorum-node`: the Kvorum node, a peer of a leaderless, Dynamo-style
//! replicated key-value store, as a library (the `kvorum` binary is a thin
//! shell over it).
//!
//! # Layout
//! - [`config`]: the TOML config, parsed into typed values.
//! - [`net`]: QUIC endpoint, mutual TLS, ALPN routing, bounded framing, the
//!   serving loop. Knows nothing of quorums or storage.
//! - [`transport`]: the [`transport::Transport`] trait the replication logic
//!   reaches peers through, and its QUIC implementation.
//! - [`membership`]: the member list and the ring computed from it; gossip.
//! - [`liveness`]: failure detection (phi-accrual over pings).
//! - [`hints`]: the durable, bounded hint store of hinted handoff.
//! - [`aae`]: anti-entropy hash trees (pure).
//! - [`repair`]: anti-entropy exchanges with peers.
//! - [`coordinator`]: one client request → preference list → R/W quorum →
//!   merged answer; the pure [`coordinator::QuorumTracker`].
//! - [`replica`]: this node as a replica of a key (read, coordinate a write,
//!   merge a remote state). Knows nothing of the network.
//! - [`register`]: the multi-value register (vector clocks, siblings, merge);
//!   pure.
//! - [`storage`]: the embedded engine (fjall) behind a small trait, with group
//!   commit.
//! - [`peer`]: the node-to-node protocol.
//! - [`certs`]: cluster CA and node/client certificates (rcgen).
//! - [`dev`]: the local development cluster of `kvorum dev`.
//! - [`bench`]: `kvorum bench`, the load generator and its report.
//! - [`node`]: wiring; [`node::start`] runs a node from its config.
//! - [`faults`]: fault injection under the real QUIC path, for tests.
//!
//! # Invariants
//! - A write is acknowledged to a client only after W replicas stored it
//!   durably by their sync policy; otherwise the client gets a typed error.
//! - The coordinator of a write is a replica of its key, so the new version's
//!   dot is fresh (see [`register`]).
//! - Input from the network or the disk never panics the node: every frame is
//!   size-bounded and decoded into a typed error.
#![warn(missing_docs)]

pub mod aae;
pub mod bench;
pub mod buckets;
pub mod certs;
pub mod config;
pub mod coordinator;
pub mod dev;
pub mod faults;
pub mod hints;
pub mod liveness;
pub mod membership;
pub mod metrics;
pub mod net;
pub mod node;
pub mod peer;
pub mod register;
pub mod repair;
pub mod replica;
pub mod storage;
pub mod tied;
pub mod transfer;
pub mod transport;
pub mod value;

pub use config::NodeConfig;
pub use node::{start, NodeError, RunningNode};
