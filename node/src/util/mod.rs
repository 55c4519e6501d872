//! Small helpers every layer shares, each in a file of its own: lock
//! recovery ([`lock`]), the clock seam ([`clock`]), wall-clock helpers and
//! periodic ticks ([`time`]), the node's randomness ([`rng`]), where
//! long-lived work runs ([`workers`]) and the simulator's planted bugs
//! ([`plant`]).

pub mod clock;
pub mod join;
pub mod lock;
pub mod plant;
pub mod rng;
pub mod time;
pub mod workers;

pub use lock::LockExt;

/// What a node takes from its surroundings besides its config, storage and
/// network: its clocks, its randomness and where its long-lived work runs.
/// A real node gets [`NodeEnv::real`]; the simulator gives each node a
/// virtual clock, a seeded generator and [`workers::Workers::Tasks`].
#[derive(Clone)]
pub struct NodeEnv {
    /// The node's clocks.
    pub clock: clock::SharedClock,
    /// The node's randomness.
    pub rng: rng::NodeRng,
    /// Threads or tasks.
    pub workers: workers::Workers,
}

impl NodeEnv {
    /// The system clocks, an OS-seeded generator and threads.
    pub fn real() -> Self {
        Self {
            clock: clock::SystemClock::shared(),
            rng: rng::NodeRng::from_os(),
            workers: workers::Workers::Threads,
        }
    }
}

/// A boxed, sendable future (what the object-safe traits of the node,
/// such as [`crate::rpc::transport::Transport`] and
/// [`crate::net::Handler`], return).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
