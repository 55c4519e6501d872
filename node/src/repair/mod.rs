//! How replicas heal: hinted handoff, anti-entropy trees and exchanges,
//! range transfers on a ring change, and tombstone reaping.
//!
//! [`transfer`] holds the whole ring-change machinery: the gainer's streams
//! in that file, the ownership handoff of ranges a node lost in
//! `transfer/handoff.rs`, and the persisted stream cursors, status report
//! and gauges in `transfer/progress.rs`.

pub mod aae;
pub mod aae_loop;
pub mod exchange;
pub mod hint_delivery;
pub mod hints;
pub mod transfer;
