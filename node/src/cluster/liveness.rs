//! Failure detection: which peers are up, by a phi-accrual detector
//! (Hayashibara et al., 2004, as in Cassandra and Akka) over periodic pings.
//!
//! Why phi-accrual rather than a fixed timeout or SWIM: the detector learns
//! each peer's heartbeat inter-arrival distribution, so a node that answers
//! slowly under load raises its own mean and is not declared down (no
//! flapping), while a killed node, whose pings stop, is suspected after
//! `mean + acceptable_pause + a few standard deviations`. With the defaults
//! (pings every 500 ms, threshold 8, acceptable pause 3 s) a killed node is
//! down within about 4 s. Pings ride the existing QUIC peer connections, so a
//! peer that is up for the detector is one the coordinator can reach. SWIM's
//! indirect probes matter for clusters of hundreds of nodes; `foca` can
//! replace the ping loop then without changing this interface.
//!
//! [`PhiDetector`] is pure (time comes in as an argument); [`Liveness`] is
//! the shared view the coordinator and hint delivery read.

use crate::util::clock::SharedClock;
use crate::util::lock::ReadExt;
use crate::util::LockExt;
use kvorum_ring::NodeId;
use std::{
    collections::{HashMap, VecDeque},
    sync::RwLock,
    time::Duration,
};
use tokio::time::Instant;

/// Settings of the detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// How often each peer is pinged.
    pub heartbeat_interval: Duration,
    /// Suspicion level above which a peer is down (8: one false suspicion in
    /// 10^8 heartbeats under the learned distribution).
    pub phi_threshold: f64,
    /// Silence tolerated on top of the learned mean (GC pauses, load).
    pub acceptable_pause: Duration,
    /// Floor of the learned standard deviation.
    pub min_std_dev: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(500),
            phi_threshold: 8.0,
            acceptable_pause: Duration::from_secs(3),
            min_std_dev: Duration::from_millis(100),
        }
    }
}

/// Inter-arrival samples kept per peer.
const WINDOW: usize = 100;

/// Heartbeat history of one peer.
#[derive(Debug, Clone)]
struct History {
    last: Instant,
    intervals_ms: VecDeque<f64>,
}

/// A phi-accrual failure detector over many peers. Pure.
#[derive(Debug, Clone)]
pub struct PhiDetector {
    config: DetectorConfig,
    peers: HashMap<NodeId, History>,
}

impl PhiDetector {
    /// A detector with no history (every peer unknown).
    pub fn new(config: DetectorConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
        }
    }

    /// Records a heartbeat (a ping answer) from `peer` at `now`.
    pub fn heartbeat(&mut self, peer: &NodeId, now: Instant) {
        let was_up = self.is_up(peer, now);
        let first = self.config.heartbeat_interval.as_secs_f64() * 1000.0;
        match self.peers.get_mut(peer) {
            // A peer coming back from down starts a fresh history: the gap
            // of its absence is not an inter-arrival time.
            Some(h) if was_up => {
                let gap = now.saturating_duration_since(h.last).as_secs_f64() * 1000.0;
                if h.intervals_ms.len() == WINDOW {
                    h.intervals_ms.pop_front();
                }
                h.intervals_ms.push_back(gap);
                h.last = now;
            }
            _ => {
                self.peers.insert(
                    peer.clone(),
                    History {
                        last: now,
                        intervals_ms: VecDeque::from([first]),
                    },
                );
            }
        }
    }

    /// Starts watching `peer` as if it had just answered, so a peer that
    /// never answers is suspected after the usual silence. No-op for a peer
    /// already watched.
    pub fn watch(&mut self, peer: &NodeId, now: Instant) {
        if !self.peers.contains_key(peer) {
            self.heartbeat(peer, now);
        }
    }

    /// The suspicion level of `peer` at `now` (infinite for an unknown peer).
    pub fn phi(&self, peer: &NodeId, now: Instant) -> f64 {
        let Some(h) = self.peers.get(peer) else {
            return f64::INFINITY;
        };
        let n = h.intervals_ms.len() as f64;
        let mean = h.intervals_ms.iter().sum::<f64>() / n;
        let var = h
            .intervals_ms
            .iter()
            .map(|x| (x - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var
            .sqrt()
            .max(self.config.min_std_dev.as_secs_f64() * 1000.0);
        let mean = mean + self.config.acceptable_pause.as_secs_f64() * 1000.0;
        let elapsed = now.saturating_duration_since(h.last).as_secs_f64() * 1000.0;
        // P(a heartbeat arrives later than `elapsed`) under a normal
        // distribution, with the logistic approximation of its CDF that Akka
        // uses (accurate to 1e-4, and free of erf).
        let y = (elapsed - mean) / std;
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        let p_later = if elapsed > mean {
            e / (1.0 + e)
        } else {
            1.0 - 1.0 / (1.0 + e)
        };
        -p_later.max(f64::MIN_POSITIVE).log10()
    }

    /// Whether `peer` is up at `now`.
    pub fn is_up(&self, peer: &NodeId, now: Instant) -> bool {
        self.phi(peer, now) < self.config.phi_threshold
    }

    /// Forgets a peer (it left the cluster).
    pub fn remove(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }
}

/// The node's shared view of which peers are up.
pub struct Liveness {
    me: NodeId,
    detector: RwLock<PhiDetector>,
    clock: SharedClock,
}

impl Liveness {
    /// A view for node `me` (always up to itself).
    pub fn new(me: NodeId, config: DetectorConfig, clock: SharedClock) -> Self {
        Self {
            me,
            detector: RwLock::new(PhiDetector::new(config)),
            clock,
        }
    }

    /// Starts watching `peer` (see [`PhiDetector::watch`]).
    pub fn watch(&self, peer: &NodeId) {
        let now = self.clock.now();
        self.detector.locked().watch(peer, now);
    }

    /// Records a ping answer from `peer`.
    pub fn heartbeat(&self, peer: &NodeId) {
        let now = self.clock.now();
        let mut d = self.detector.locked();
        let was = d.is_up(peer, now);
        d.heartbeat(peer, now);
        if !was {
            tracing::info!(%peer, "peer up");
        }
    }

    /// Whether `peer` is up now. A peer not watched yet (just learned) is
    /// presumed up: the coordinator tries it, and a fast failure still sends
    /// the write to a fallback.
    pub fn is_up(&self, peer: &NodeId) -> bool {
        let d = self.detector.read_locked();
        *peer == self.me || !d.peers.contains_key(peer) || d.is_up(peer, self.clock.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat_every(
        d: &mut PhiDetector,
        peer: &NodeId,
        start: Instant,
        every_ms: u64,
        count: u64,
    ) -> Instant {
        let mut t = start;
        for _ in 0..count {
            t += Duration::from_millis(every_ms);
            d.heartbeat(peer, t);
        }
        t
    }

    #[test]
    fn unknown_peers_are_down_and_a_heartbeat_brings_them_up() {
        let mut d = PhiDetector::new(DetectorConfig::default());
        let (p, now) = (NodeId::new("p"), Instant::now());
        assert!(!d.is_up(&p, now));
        d.heartbeat(&p, now);
        assert!(d.is_up(&p, now + Duration::from_millis(10)));
    }

    #[test]
    fn a_silent_peer_is_down_within_five_seconds_with_the_defaults() {
        let mut d = PhiDetector::new(DetectorConfig::default());
        let p = NodeId::new("p");
        let last = beat_every(&mut d, &p, Instant::now(), 500, 60);
        assert!(
            d.is_up(&p, last + Duration::from_millis(3000)),
            "a 3 s pause is tolerated"
        );
        let down_at = (1..=100)
            .map(|i| Duration::from_millis(i * 100))
            .find(|t| !d.is_up(&p, last + *t))
            .unwrap();
        assert!(
            down_at <= Duration::from_secs(5),
            "suspected after {down_at:?}"
        );
        // Back again: up at its first answer, with a fresh history.
        let back = last + Duration::from_secs(30);
        d.heartbeat(&p, back);
        assert!(d.is_up(&p, back + Duration::from_millis(500)));
    }

    #[test]
    fn a_slow_but_alive_peer_does_not_flap() {
        // Answers every 1.5-2.5 s (a loaded node): never suspected between
        // its answers, because the detector learned its slower rhythm.
        let mut d = PhiDetector::new(DetectorConfig::default());
        let p = NodeId::new("p");
        let mut t = beat_every(&mut d, &p, Instant::now(), 500, 20);
        for i in 0..200u64 {
            let gap = Duration::from_millis(1500 + (i * 373) % 1000);
            for probe in 1..=10 {
                assert!(d.is_up(&p, t + gap * probe / 10), "flapped at sample {i}");
            }
            t += gap;
            d.heartbeat(&p, t);
        }
    }

    #[test]
    fn phi_grows_with_silence() {
        let mut d = PhiDetector::new(DetectorConfig::default());
        let p = NodeId::new("p");
        let last = beat_every(&mut d, &p, Instant::now(), 500, 30);
        let phis: Vec<f64> = (1..=8)
            .map(|s| d.phi(&p, last + Duration::from_secs(s)))
            .collect();
        assert!(phis.windows(2).all(|w| w[0] <= w[1]), "{phis:?}");
    }
}
