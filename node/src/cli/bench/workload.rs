//! The workloads of `kvorum bench` and their key choosers. Pure: randomness
//! comes from the caller's seeded RNG.

use rand::Rng;
use std::fmt;
use std::str::FromStr;

/// A YCSB-style workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// YCSB A: 50% reads, 50% updates of loaded keys.
    A,
    /// YCSB B: 95% reads, 5% updates of loaded keys.
    B,
    /// YCSB C: reads of loaded keys only.
    C,
    /// Writes of new keys only (no load phase).
    W,
    /// Increments of CRDT counters (no load phase).
    Counter,
    /// YCSB E: 95% short range scans (1 to 100 items from a random item of
    /// a partition), 5% inserts of new items into loaded partitions.
    E,
    /// Range reads of whole loaded partitions (100 items each).
    Range,
}

impl Workload {
    /// Percentage of reads; the rest are writes.
    pub fn read_percent(self) -> u32 {
        match self {
            Workload::A => 50,
            Workload::B => 95,
            Workload::C | Workload::Range => 100,
            Workload::E => 95,
            Workload::W | Workload::Counter => 0,
        }
    }

    /// True when the workload reads or updates keys that must exist first.
    pub fn needs_load(self) -> bool {
        matches!(self, Workload::A | Workload::B | Workload::C)
    }

    /// True when the workload reads partitions of items that must exist
    /// first ([`ITEMS_PER_PARTITION`] each).
    pub fn needs_items(self) -> bool {
        matches!(self, Workload::E | Workload::Range)
    }

    /// The operation to run next, drawn with `rng`.
    pub fn next_op(self, rng: &mut impl Rng) -> Op {
        match self {
            Workload::W => Op::Insert,
            Workload::Counter => Op::Increment,
            Workload::Range => Op::Scan,
            Workload::E if rng.random_range(0..100) < self.read_percent() => Op::Scan,
            Workload::E => Op::Insert,
            _ if rng.random_range(0..100) < self.read_percent() => Op::Read,
            _ => Op::Update,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::W => "w",
            Workload::Counter => "counter",
            Workload::E => "e",
            Workload::Range => "range",
        })
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "a" => Ok(Workload::A),
            "b" => Ok(Workload::B),
            "c" => Ok(Workload::C),
            "w" => Ok(Workload::W),
            "counter" => Ok(Workload::Counter),
            "e" => Ok(Workload::E),
            "range" => Ok(Workload::Range),
            other => Err(format!(
                "unknown workload {other:?}: expected a, b, c, w, counter, e or range"
            )),
        }
    }
}

/// One operation of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Quorum read of a loaded key.
    Read,
    /// Quorum write of a loaded key, with the last context seen for it.
    Update,
    /// Quorum write of a new key.
    Insert,
    /// Counter increment.
    Increment,
    /// Range read of a partition's items.
    Scan,
    /// The baseline's empty request.
    Echo,
}

impl Op {
    /// Lower-case name (report keys).
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::Increment => "increment",
            Op::Scan => "scan",
            Op::Echo => "echo",
        }
    }
}

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// YCSB's scrambled zipfian (theta 0.99): a few keys are hot, spread
    /// over the key space by a hash.
    Zipfian,
}

/// Draws key indexes in `0..n`.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Uniform over `0..n`.
    Uniform(u64),
    /// Scrambled zipfian over `0..n`.
    Zipfian(Zipfian),
}

impl KeyChooser {
    /// A chooser over `0..n` keys (`n` ≥ 1).
    pub fn new(dist: Distribution, n: u64) -> Self {
        let n = n.max(1);
        match dist {
            Distribution::Uniform => KeyChooser::Uniform(n),
            Distribution::Zipfian => KeyChooser::Zipfian(Zipfian::new(n, ZIPFIAN_THETA)),
        }
    }

    /// The next key index.
    pub fn next(&self, rng: &mut impl Rng) -> u64 {
        match self {
            KeyChooser::Uniform(n) => rng.random_range(0..*n),
            KeyChooser::Zipfian(z) => {
                // Scramble so that the hot keys are not neighbours (YCSB's
                // ScrambledZipfianGenerator).
                let rank = z.next(rng);
                xxhash_rust::xxh3::xxh3_64(&rank.to_le_bytes()) % z.n
            }
        }
    }
}

/// YCSB's zipfian constant.
pub const ZIPFIAN_THETA: f64 = 0.99;

/// Zipfian ranks in `0..n` (rank 0 most popular), by the method of Gray et
/// al., "Quickly generating billion-record synthetic databases" (SIGMOD
/// 1994), as YCSB's `ZipfianGenerator` does. Setup is O(n) (ζ(n)); each
/// draw is O(1).
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// A generator over `0..n` (`n` ≥ 1) with skew `theta` in (0, 1).
    pub fn new(n: u64, theta: f64) -> Self {
        let n = n.max(1);
        let zeta = |k: u64| (1..=k).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Self {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    /// The next rank.
    pub fn next(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }
}

/// The key of index `i`: fixed width, so every key has the same size.
pub fn key_of(i: u64) -> Vec<u8> {
    format!("user{i:012}").into_bytes()
}

/// Items per loaded partition of workloads e and range.
pub const ITEMS_PER_PARTITION: u64 = 100;

/// The partition key of loaded partition `p`.
pub fn partition_of(p: u64) -> Vec<u8> {
    format!("part{p:010}").into_bytes()
}

/// Partition key and sort key of loaded item `i`: item `i % 100` of
/// partition `i / 100`.
pub fn item_of(i: u64) -> (Vec<u8>, Vec<u8>) {
    (
        partition_of(i / ITEMS_PER_PARTITION),
        sort_of(i % ITEMS_PER_PARTITION),
    )
}

/// The sort key of item `j` of a loaded partition (inserted items sort
/// after the loaded ones: `n` and their index).
pub fn sort_of(j: u64) -> Vec<u8> {
    format!("{j:06}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    #[test]
    fn workload_names_round_trip() {
        for w in [
            Workload::A,
            Workload::B,
            Workload::C,
            Workload::W,
            Workload::Counter,
            Workload::E,
            Workload::Range,
        ] {
            assert_eq!(w.to_string().parse::<Workload>(), Ok(w));
        }
        assert!("x".parse::<Workload>().is_err());
    }

    #[test]
    fn mixes_follow_the_ycsb_percentages() {
        let seed = 7;
        let mut rng = SmallRng::seed_from_u64(seed);
        let reads = (0..100_000)
            .filter(|_| Workload::B.next_op(&mut rng) == Op::Read)
            .count();
        assert!((94_000..96_000).contains(&reads), "seed {seed}: {reads}");
        assert_eq!(Workload::W.next_op(&mut rng), Op::Insert);
        assert_eq!(Workload::C.next_op(&mut rng), Op::Read);
        let scans = (0..100_000)
            .filter(|_| Workload::E.next_op(&mut rng) == Op::Scan)
            .count();
        assert!((94_000..96_000).contains(&scans), "seed {seed}: {scans}");
        assert_eq!(Workload::Range.next_op(&mut rng), Op::Scan);
    }

    /// Zipfian with theta 0.99 over 1000 keys: rank 0 takes about
    /// 1/ζ(1000) ≈ 13% of draws, and every draw is in range.
    #[test]
    fn zipfian_is_skewed_and_in_range() {
        let seed = 11;
        let mut rng = SmallRng::seed_from_u64(seed);
        let z = Zipfian::new(1000, ZIPFIAN_THETA);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.next(&mut rng) as usize] += 1;
        }
        let expected = 100_000.0 / z.zetan;
        assert!(
            (f64::from(counts[0]) - expected).abs() < expected * 0.1,
            "seed {seed}: rank 0 drawn {} times, expected about {expected}",
            counts[0]
        );
        assert!(counts[0] > counts[10] && counts[10] > counts[500]);
        let chooser = KeyChooser::new(Distribution::Zipfian, 1000);
        assert!((0..10_000).all(|_| chooser.next(&mut rng) < 1000));
        assert_eq!(KeyChooser::new(Distribution::Zipfian, 1).next(&mut rng), 0);
    }

    #[test]
    fn keys_have_one_width() {
        assert_eq!(key_of(0).len(), key_of(999_999_999).len());
    }
}
