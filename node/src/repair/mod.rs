//! How replicas heal: hinted handoff, anti-entropy trees and exchanges,
//! range transfers on a ring change, and tombstone reaping.

pub mod aae;
pub mod aae_loop;
pub mod exchange;
pub mod hint_delivery;
pub mod hints;
pub mod transfer;
