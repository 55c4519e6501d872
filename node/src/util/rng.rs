//! The node's randomness: one [`NodeRng`] per node. A real node seeds it
//! from the operating system; the deterministic simulator seeds it from the
//! simulation seed, so a run replays exactly. It is a cryptographic
//! generator (ChaCha12, [`rand::rngs::StdRng`]): the context-sealing secrets
//! come from it too.

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
pub struct NodeRng(Arc<Mutex<StdRng>>);

impl NodeRng {
    /// Seeded from the operating system (a real node).
    pub fn from_os() -> Self {
        Self(Arc::new(Mutex::new(StdRng::from_os_rng())))
    }

    /// Seeded from `seed`: the same seed gives the same numbers.
    pub fn seeded(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }

    /// A random u64.
    pub fn u64(&self) -> u64 {
        self.0.locked().next_u64()
    }

    /// A random number in `0..n` (0 when `n` is 0).
    pub fn below(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        self.0.locked().random_range(0..n)
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        self.0.locked().random::<f64>() < p
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&self, buf: &mut [u8]) {
        self.0.locked().fill_bytes(buf)
    }
}

impl std::fmt::Debug for NodeRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeRng")
    }
}
