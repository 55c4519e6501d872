//! Small helpers every layer shares, each in a file of its own: lock
//! recovery ([`lock`]) and time ([`time`]).

pub mod lock;
pub mod time;

pub use lock::LockExt;
