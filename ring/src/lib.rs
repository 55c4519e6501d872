//! `kvorum-ring`: where a key lives.
//!
//! Consistent hashing with virtual nodes, as in Dynamo §4.2: every physical
//! node owns [`DEFAULT_VNODES`] (configurable) pseudo-random positions
//! ("tokens") on a 64-bit circle; a key hashes to a position of its own, and
//! its **preference list** is the first N *distinct* physical nodes met
//! walking clockwise from there, spread over N distinct zones when zones are
//! configured. The crate is pure placement: no IO, no async, no clock, no
//! randomness. The node crate builds a [`Ring`] from its membership view and
//! asks it where keys go.
//!
//! ```
//! use kvorum_ring::{Member, Ring, DEFAULT_VNODES};
//!
//! let ring = Ring::new(["n1", "n2", "n3", "n4"].map(Member::new), DEFAULT_VNODES);
//! let replicas = ring.preference_list(b"user:42", 3);
//! assert_eq!(replicas.len(), 3);
//! // The next healthy node for a sloppy-quorum fallback is further along the walk.
//! let fallback = ring.walk(b"user:42").nth(3);
//! assert!(fallback.is_some());
//! ```
//!
//! # Layout
//! - [`member`]: [`NodeId`] (a node's stable name) and
//!   [`Member`] (a node as placement sees it: id and optional zone).
//! - [`token`]: the two hash functions that put keys and vnodes
//!   on the circle ([`key_token`], [`vnode_token`]). xxh3-64, so positions are
//!   the same on every platform, Rust version and process.
//! - [`item`]: an item's storage key (bucket, partition key, sort key; a
//!   partition's items contiguous and sorted) and its token (the
//!   partition's).
//! - [`ring`]: [`Ring`] (the sorted token table, preference lists,
//!   the zone rule) and [`Walk`] (every distinct node clockwise from a key).
//!
//! # Invariants
//! - **A ring is a pure function of the member *set* and the vnode count.**
//!   Input order and duplicates do not matter; two nodes with the same
//!   membership view place every key identically (Dynamo §4.2, DESIGN.md
//!   "Placement"). Tokens never go through `std::hash::Hash`.
//! - Every member owns at least one token (a vnode count of 0 is raised to 1),
//!   so [`Ring::walk`] yields every member exactly once.
//! - [`Ring::preference_list`] returns `min(n, len)` distinct nodes; with zones
//!   on and at least `n` zones, they sit in `n` distinct zones.
//! - Adding a node only moves keys *to* that node; removing one only moves
//!   its keys to the nodes that follow it (no other token moves).
//! - A lookup is a binary search over `len × vnodes` tokens plus a clockwise
//!   walk whose length depends on the member count, not the vnode count; it
//!   allocates only per-member bookkeeping, never per token.
//!
//! See `docs/ring.md` for the design notes and why the `hashring` crate is not
//! used for placement.
#![warn(missing_docs)]

pub mod item;
pub mod member;
pub mod ring;
pub mod token;

pub use member::{Member, NodeId};
pub use ring::{Ring, Walk, DEFAULT_VNODES};
pub use token::{key_token, vnode_token};
