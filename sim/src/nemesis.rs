//! The nemesis: faults drawn from a seeded generator, each recorded in the
//! history. Partitions (two-way and one-way), message loss, long delays,
//! duplication, process crashes (`kill -9`: what was committed survives),
//! machine crashes (power loss: only what was synced survives), pauses and
//! clock skew. Every fault is undone by a later step or by [`Nemesis::heal`].

use crate::cluster::SimCluster;
use crate::history::History;
use crate::net::Link;
use kvorum_ring::NodeId;
use rand::{rngs::StdRng, Rng};
use std::time::Duration;
use tokio::time::Instant;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Split the nodes in two groups, both ways.
    Partition,
    /// Block one direction between two groups.
    OneWay,
    /// Drop a share of every message.
    Loss,
    /// Delay messages by up to hundreds of milliseconds (reordering them).
    Delay,
    /// Deliver a share of requests twice.
    Duplicate,
    /// Kill a process; it restarts on everything it committed.
    Kill,
    /// Crash a machine; it restarts on what it synced.
    PowerLoss,
    /// Pause a node: it holds every request for a while.
    Pause,
    /// Skew a node's wall clock by up to 30 s either way.
    Skew,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 9] = [
        Fault::Partition,
        Fault::OneWay,
        Fault::Loss,
        Fault::Delay,
        Fault::Duplicate,
        Fault::Kill,
        Fault::PowerLoss,
        Fault::Pause,
        Fault::Skew,
    ];
}

/// Injects faults into a cluster.
pub struct Nemesis {
    /// The faults it draws from.
    pub mix: Vec<Fault>,
    /// Its randomness.
    pub rng: StdRng,
    /// The history.
    pub history: History,
    /// Machines down, with when they restart.
    down: Vec<(usize, Instant)>,
    /// When the network heals.
    heal_at: Option<Instant>,
}

impl Nemesis {
    /// A nemesis drawing from `mix`.
    pub fn new(mix: Vec<Fault>, rng: StdRng, history: History) -> Self {
        Self {
            mix,
            rng,
            history,
            down: Vec::new(),
            heal_at: None,
        }
    }

    fn ids(c: &SimCluster, idx: &[usize]) -> Vec<NodeId> {
        idx.iter().map(|i| c.machines[*i].id.clone()).collect()
    }

    /// A random split of the machines into two non-empty groups.
    fn split(&mut self, c: &SimCluster) -> (Vec<usize>, Vec<usize>) {
        let n = c.machines.len();
        let k = self.rng.random_range(1..n);
        let mut all: Vec<usize> = (0..n).collect();
        let mut a = Vec::new();
        for _ in 0..k {
            a.push(all.swap_remove(self.rng.random_range(0..all.len())));
        }
        a.sort_unstable();
        all.sort_unstable();
        (a, all)
    }

    /// One step: undoes faults that are due, then injects a new one.
    pub async fn step(&mut self, c: &mut SimCluster) {
        let now = Instant::now();
        self.restart_due(c, now).await;
        if self.heal_at.is_some_and(|t| t <= now) {
            c.net.heal();
            self.heal_at = None;
            self.history.fault("heal");
        }
        let Some(&fault) = self
            .mix
            .get(self.rng.random_range(0..self.mix.len().max(1)))
        else {
            return;
        };
        let lasting = Duration::from_millis(self.rng.random_range(500..=15_000));
        let n = c.machines.len();
        match fault {
            Fault::Partition | Fault::OneWay => {
                let (a, b) = self.split(c);
                let one_way = fault == Fault::OneWay;
                c.net
                    .partition(&Self::ids(c, &a), &Self::ids(c, &b), one_way);
                self.heal_at = Some(now + lasting);
                self.history.fault(&format!(
                    "partition {a:?} {} {b:?} for {lasting:?}",
                    if one_way { "->" } else { "<->" }
                ));
            }
            Fault::Loss | Fault::Delay | Fault::Duplicate => {
                let mut link = Link::default();
                match fault {
                    Fault::Loss => link.loss = self.rng.random_range(0.05..0.4),
                    Fault::Delay => {
                        link.delay_max = Duration::from_millis(self.rng.random_range(20..400))
                    }
                    _ => link.duplicate = self.rng.random_range(0.05..0.5),
                }
                c.net.set_base(link);
                self.heal_at = Some(now + lasting);
                self.history
                    .fault(&format!("links {link:?} for {lasting:?}"));
            }
            Fault::Kill | Fault::PowerLoss => {
                let i = self.rng.random_range(0..n);
                if c.machines[i].node.is_none() {
                    return;
                }
                let power = fault == Fault::PowerLoss;
                c.crash(i, power);
                self.down.push((i, now + lasting));
                self.history.fault(&format!(
                    "{} n{} for {lasting:?}",
                    if power { "power loss" } else { "kill" },
                    i + 1
                ));
            }
            Fault::Pause => {
                let i = self.rng.random_range(0..n);
                let id = c.machines[i].id.clone();
                c.net.pause(&id, now + lasting);
                self.history
                    .fault(&format!("pause n{} for {lasting:?}", i + 1));
            }
            Fault::Skew => {
                let i = self.rng.random_range(0..n);
                let ms = self.rng.random_range(-30_000..=30_000);
                c.machines[i].clock.skew(ms);
                self.history.fault(&format!("skew n{} by {ms} ms", i + 1));
            }
        }
    }

    async fn restart_due(&mut self, c: &mut SimCluster, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = self.down.drain(..).partition(|(_, t)| *t <= now);
        self.down = later;
        for (i, _) in due {
            self.restart(c, i).await;
        }
    }

    async fn restart(&mut self, c: &mut SimCluster, i: usize) {
        match c.start(i).await {
            Ok(()) => self.history.fault(&format!("restart n{}", i + 1)),
            Err(e) => self
                .history
                .fault(&format!("restart n{} failed: {e}", i + 1)),
        }
    }

    /// Undoes every fault: the network heals and every machine runs
    /// (clock skews stay).
    pub async fn heal(&mut self, c: &mut SimCluster) {
        c.net.heal();
        self.heal_at = None;
        let down: Vec<usize> = self.down.drain(..).map(|(i, _)| i).collect();
        for i in down {
            self.restart(c, i).await;
        }
        self.history.fault("heal all");
    }
}
