//! `kvorum-sim`: the deterministic simulator of Kvorum.
//!
//! A whole cluster runs in one thread, on a paused tokio runtime whose
//! clock is virtual: real nodes (assembled by
//! [`kvorum_node::wiring::assemble`]) on in-memory engines
//! ([`kvorum_node::storage::MemoryEngine`]), an in-memory network that
//! drops, delays, duplicates, reorders and partitions ([`net`]), clients
//! sending the real `kvorum-client` requests ([`workload`]), and a nemesis
//! ([`nemesis`]). Every source of randomness is seeded from the run's seed,
//! so a seed replays its run exactly: the same history, byte for byte.
//!
//! ```text
//! sim/src/
//!   lib.rs       this map
//!   clock.rs     SimClock: virtual wall clocks with skew
//!   net.rs       SimNet: the in-memory network and its faults
//!   cluster.rs   SimCluster: machines, their disks, start / crash / stop
//!   history.rs   History: operations and faults, and their hash
//!   workload.rs  Client: register, counter and set workloads
//!   nemesis.rs   Nemesis: the fault schedule
//!   check.rs     the checkers
//!   run.rs       one run: plan, exercise, converge, final reads, check
//! ```
//!
//! docs/testing.md says how to run, replay and extend it.

pub mod check;
pub mod clock;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod run;
pub mod workload;

pub use run::{run, run_seed, Plan, Report};
