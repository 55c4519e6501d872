//! The nemesis: faults drawn from a seeded generator, each recorded in the
//! history. Partitions (two-way and one-way), message loss, long delays,
//! duplication, process crashes (`kill -9`: what was committed survives),
//! machine crashes (power loss: only what was synced survives), pauses,
//! clock skew, stalled gossip, and ring changes: a spare machine joins, a member leaves, a
//! crashed member is removed. Every fault is undone by a later step or by
//! [`Nemesis::heal`]; a ring change is completed by it.

use crate::cluster::{SimCluster, Status};
use crate::history::History;
use crate::net::Link;
use kvorum_client::proto::{Request, Response};
use kvorum_node::cluster::member::MemberState;
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
    /// A node's membership falls behind: its gossip is lost both ways
    /// while it serves and answers pings (a coordinator reading and
    /// writing on a ring the others have left).
    GossipStall,
    /// A spare machine joins.
    Join,
    /// A member leaves (its ranges stream out; then it stops).
    Leave,
    /// A member is killed and removed by the others.
    Remove,
    /// A member crashes and loses its disk; it restarts empty under the
    /// same id.
    Wipe,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 14] = [
        Fault::Partition,
        Fault::OneWay,
        Fault::Loss,
        Fault::Delay,
        Fault::Duplicate,
        Fault::Kill,
        Fault::PowerLoss,
        Fault::Pause,
        Fault::Skew,
        Fault::GossipStall,
        Fault::Join,
        Fault::Leave,
        Fault::Remove,
        Fault::Wipe,
    ];
}

/// One scripted step of a scenario (machines are 0-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Block messages from the machines of the first group to those of
    /// the second, and back unless one-way.
    Partition(Vec<usize>, Vec<usize>, bool),
    /// Heal the network.
    Heal,
    /// Crash a machine (with power loss, or as `kill -9`).
    Crash(usize, bool),
    /// Restart a crashed machine.
    Restart(usize),
    /// A spare machine joins.
    Join(usize),
    /// A member is asked to leave.
    Leave(usize),
    /// A member is killed and removed by the others.
    Remove(usize),
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
    /// Machines to remove, with when their removal was first asked.
    removing_since: std::collections::BTreeMap<usize, Instant>,
}

/// The share of faults that last 17 to 40 s instead of 0.5 to 8 s.
pub const LONG_FAULTS: f64 = 0.125;

/// How long the nemesis, as an operator, asks for a removal that the
/// cluster refuses (another ring change is under way, and it cannot
/// complete without the dead node's ranges) before it gives up and
/// restarts the node instead.
pub const REMOVAL_PATIENCE: Duration = Duration::from_secs(60);

impl Nemesis {
    /// A nemesis drawing from `mix`.
    pub fn new(mix: Vec<Fault>, rng: StdRng, history: History) -> Self {
        Self {
            mix,
            rng,
            history,
            down: Vec::new(),
            heal_at: None,
            removing_since: Default::default(),
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

    /// One step: undoes faults that are due, moves ring changes on, then
    /// injects a new fault.
    pub async fn step(&mut self, c: &mut SimCluster) {
        let now = Instant::now();
        self.restart_due(c, now).await;
        self.ring_changes(c).await;
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
        // Most faults are short; one in eight outlasts the hints' TTL and
        // the tombstone grace (10 s and 16 s, cluster.rs), so that a
        // replica out of reach for that long comes back to keys deleted
        // and maybe reaped meanwhile (the reaper's all-replicas check).
        let lasting = if self.rng.random_bool(LONG_FAULTS) {
            Duration::from_millis(self.rng.random_range(17_000..=40_000))
        } else {
            Duration::from_millis(self.rng.random_range(500..=8_000))
        };
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
                if c.machines[i].node.is_none()
                    || !matches!(c.machines[i].status, Status::Member | Status::Leaving)
                {
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
            Fault::GossipStall => {
                let i = self.rng.random_range(0..n);
                let id = c.machines[i].id.clone();
                c.net.stall_gossip(&id);
                self.heal_at = Some(now + lasting);
                self.history
                    .fault(&format!("gossip of n{} stalled for {lasting:?}", i + 1));
            }
            Fault::Skew => {
                let i = self.rng.random_range(0..n);
                let ms = self.rng.random_range(-30_000..=30_000);
                c.machines[i].clock.skew(ms);
                self.history.fault(&format!("skew n{} by {ms} ms", i + 1));
            }
            Fault::Join => {
                let Some(i) = c.machines.iter().position(|m| m.status == Status::Spare) else {
                    return;
                };
                c.machines[i].status = Status::Member;
                self.restart(c, i).await;
                self.history.fault(&format!("join n{}", i + 1));
            }
            Fault::Leave | Fault::Remove | Fault::Wipe => {
                // One ring change at a time, on a settled cluster, and
                // three members stay (N = 3): a second machine lost for
                // good before the first one's ranges are re-replicated
                // could take every replica of a range with it, which no
                // replication factor of 3 survives.
                let members = c.members();
                let changing = c
                    .machines
                    .iter()
                    .any(|m| matches!(m.status, Status::Leaving | Status::Removing));
                // And, as an operator should, only once no hint waits
                // anywhere: a write acknowledged by one replica and a hint
                // is on that replica alone until the hint is delivered
                // (docs/consistency.md).
                let hints = members
                    .iter()
                    .filter_map(|i| c.machines[*i].node.as_ref())
                    .any(|n| n.hints_pending() > 0);
                // And a machine's data is lost for good (a wipe, a removal)
                // only once the replicas agree again after the last loss:
                // two disks lost within anti-entropy's repair window can
                // take both copies of a write acknowledged at W = 2, which
                // no N = 3 survives (the long swarm's seed 1090 wiped three
                // machines in 14 s).
                let shrinks = fault != Fault::Wipe;
                if (shrinks && members.len() <= 3)
                    || changing
                    || hints
                    || !c.settled()
                    || c.trees_differ().is_some()
                {
                    return;
                }
                let i = members[self.rng.random_range(0..members.len())];
                if fault == Fault::Wipe {
                    if c.machines[i].node.is_none() {
                        return;
                    }
                    c.wipe(i);
                    self.down.push((i, now + lasting));
                    self.history
                        .fault(&format!("wipe n{} for {lasting:?}", i + 1));
                } else if fault == Fault::Remove {
                    if c.machines[i].node.is_some() {
                        c.crash(i, false);
                    }
                    self.down.retain(|(d, _)| *d != i);
                    c.machines[i].status = Status::Removing;
                    self.history.fault(&format!("kill n{} to remove it", i + 1));
                } else if c.own_state(i) == Some(MemberState::Up) {
                    let id = c.machines[i].id.clone();
                    let leave = Request::Leave {
                        node: id.as_str().into(),
                    };
                    let answer = c.net.client_call(&id, leave, Duration::from_secs(3)).await;
                    let accepted = matches!(answer, Some(Response::Accepted(_)));
                    if accepted {
                        c.machines[i].status = Status::Leaving;
                    }
                    self.history.fault(&format!(
                        "leave n{}: {}",
                        i + 1,
                        if accepted { "accepted" } else { "refused" }
                    ));
                }
            }
        }
    }

    /// Runs one scripted action.
    pub async fn act(&mut self, c: &mut SimCluster, action: &Action) {
        self.history.fault(&format!("script {action:?}"));
        match action {
            Action::Partition(a, b, one_way) => {
                c.net
                    .partition(&Self::ids(c, a), &Self::ids(c, b), *one_way)
            }
            Action::Heal => c.net.heal(),
            Action::Crash(i, power) => {
                if c.machines[*i].node.is_some() {
                    c.crash(*i, *power);
                }
            }
            Action::Restart(i) => {
                if c.machines[*i].node.is_none() {
                    self.restart(c, *i).await;
                }
            }
            Action::Join(i) => {
                if c.machines[*i].status == Status::Spare {
                    c.machines[*i].status = Status::Member;
                    self.restart(c, *i).await;
                }
            }
            Action::Leave(i) => {
                let id = c.machines[*i].id.clone();
                let leave = Request::Leave {
                    node: id.as_str().into(),
                };
                let answer = c.net.client_call(&id, leave, Duration::from_secs(3)).await;
                self.history.fault(&format!("leave n{}: {answer:?}", i + 1));
                if matches!(answer, Some(Response::Accepted(_))) {
                    c.machines[*i].status = Status::Leaving;
                }
            }
            Action::Remove(i) => {
                if c.machines[*i].node.is_some() {
                    c.crash(*i, false);
                }
                self.down.retain(|(d, _)| d != i);
                c.machines[*i].status = Status::Removing;
            }
        }
        self.ring_changes(c).await;
    }

    /// Moves ring changes on: a member that has left is stopped; a crashed
    /// member to remove is asked to be removed (through a running member)
    /// until one accepts. Returns whether a change is still under way.
    async fn ring_changes(&mut self, c: &mut SimCluster) -> bool {
        let mut pending = false;
        for i in 0..c.machines.len() {
            // A leave whose answer was lost may have been applied.
            if c.machines[i].status == Status::Member
                && matches!(
                    c.own_state(i),
                    Some(MemberState::Leaving | MemberState::Removed)
                )
            {
                c.machines[i].status = Status::Leaving;
                self.history.fault(&format!("n{} is leaving", i + 1));
            }
            match c.machines[i].status {
                Status::Leaving => {
                    if c.own_state(i) == Some(MemberState::Removed) {
                        c.stop(i).await;
                        c.machines[i].status = Status::Gone;
                        self.history.fault(&format!("n{} left", i + 1));
                    } else {
                        pending = true;
                    }
                }
                Status::Removing => {
                    let running = c.running_members();
                    if running.is_empty() {
                        pending = true;
                        continue;
                    }
                    let via = running[self.rng.random_range(0..running.len())];
                    let remove = Request::Remove {
                        node: c.machines[i].id.as_str().into(),
                    };
                    let via_id = c.machines[via].id.clone();
                    let answer = c
                        .net
                        .client_call(&via_id, remove, Duration::from_secs(3))
                        .await;
                    let since = *self.removing_since.entry(i).or_insert_with(Instant::now);
                    if matches!(answer, Some(Response::Accepted(_))) {
                        c.machines[i].status = Status::Gone;
                        self.removing_since.remove(&i);
                        self.history
                            .fault(&format!("n{} removed through n{}", i + 1, via + 1));
                    } else if since.elapsed() >= REMOVAL_PATIENCE {
                        // A join or leave under way cannot finish without
                        // the dead node's ranges, and the cluster refuses
                        // the removal until it does: bring the node back.
                        c.machines[i].status = Status::Member;
                        self.removing_since.remove(&i);
                        self.history.fault(&format!(
                            "removal of n{} refused for {REMOVAL_PATIENCE:?}: {answer:?}; restarting it",
                            i + 1
                        ));
                        self.restart(c, i).await;
                        pending = true;
                    } else {
                        pending = true;
                    }
                }
                _ => {}
            }
        }
        pending
    }

    async fn restart_due(&mut self, c: &mut SimCluster, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = self.down.drain(..).partition(|(_, t)| *t <= now);
        self.down = later;
        for (i, _) in due {
            self.restart(c, i).await;
        }
    }

    async fn restart(&mut self, c: &mut SimCluster, i: usize) {
        if matches!(
            c.machines[i].status,
            Status::Gone | Status::Removing | Status::Spare
        ) {
            return;
        }
        match c.start(i).await {
            Ok(()) => self.history.fault(&format!("restart n{}", i + 1)),
            Err(e) => self
                .history
                .fault(&format!("restart n{} failed: {e}", i + 1)),
        }
    }

    /// Undoes every fault: the network heals and every member runs (clock
    /// skews stay); then waits (up to `limit`) for the ring changes under
    /// way to complete.
    pub async fn heal(&mut self, c: &mut SimCluster, limit: Duration) {
        c.net.heal();
        self.heal_at = None;
        let down: Vec<usize> = self.down.drain(..).map(|(i, _)| i).collect();
        for i in down {
            self.restart(c, i).await;
        }
        self.history.fault("heal all");
        let deadline = Instant::now() + limit;
        while self.ring_changes(c).await && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
