//! The node's randomness: one [`NodeRng`] per node. A real node draws from
//! the thread-local, OS-seeded generator ([`rand::rng`]: no lock on the
//! request path); the deterministic simulator gives each node one generator
//! seeded from the simulation seed, so a run replays exactly. Both are
//! cryptographic (ChaCha12): the context-sealing secrets come from it too.

use crate::util::LockExt;
use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};
use std::sync::{Arc, Mutex};

/// A node's random number generator. Cheap to clone (clones share the
/// generator).
///
/// ```
/// use kvorum_node::util::rng::NodeRng;
/// let (a, b) = (NodeRng::seeded(7), NodeRng::seeded(7));
/// assert_eq!(a.u64(), b.u64());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Clone)]
pub struct NodeRng(Option<Arc<Mutex<StdRng>>>);

impl NodeRng {
    /// The thread-local OS-seeded generator (a real node).
    pub fn from_os() -> Self {
        Self(None)
    }

    /// Seeded from `seed`: the same seed gives the same numbers.
    pub fn seeded(seed: u64) -> Self {
        Self(Some(Arc::new(Mutex::new(StdRng::seed_from_u64(seed)))))
    }

    /// Runs `f` with this node's generator.
    fn with<T>(&self, f: impl FnOnce(&mut dyn RngCore) -> T) -> T {
        match &self.0 {
            Some(seeded) => f(&mut *seeded.locked()),
            None => f(&mut rand::rng()),
        }
    }

    /// A random u64.
    pub fn u64(&self) -> u64 {
        self.with(|r| r.next_u64())
    }

    /// A random number in `0..n` (0 when `n` is 0).
    pub fn below(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        self.with(|r| r.random_range(0..n))
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        self.with(|r| r.random::<f64>() < p)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&self, buf: &mut [u8]) {
        self.with(|r| r.fill_bytes(buf))
    }
}

impl std::fmt::Debug for NodeRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeRng")
    }
}
