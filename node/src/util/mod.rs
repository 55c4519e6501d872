//! Small helpers every layer shares, each in a file of its own: lock
//! recovery ([`lock`]) and time ([`time`]).

pub mod lock;
pub mod time;

pub use lock::LockExt;

/// A boxed, sendable future (what the object-safe traits of the node,
/// such as [`crate::rpc::transport::Transport`] and
/// [`crate::net::Handler`], return).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
