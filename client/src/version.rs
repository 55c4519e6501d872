//! Versions of a key's state, and what a read reports about its replicas.
//!
//! Every bucket type produces a [`Version`] from its merged state, with one
//! partial order for all of them ([`Version::dominates`]): a state that
//! contains another state's changes has a version that dominates the
//! other's. Reads return the version of the state they answer with, writes
//! the version of what they wrote; a [`crate::Session`] keeps the join of
//! the versions it saw per key and asks later reads for at least that.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The identity that made a change: a node, in one epoch of its data
/// directory (a node whose data is wiped comes back as a new actor).
///
/// ```
/// use kvorum_client::ActorId;
/// let a = ActorId { node: "n1".into(), epoch: 7 };
/// assert!(a < ActorId { node: "n2".into(), epoch: 1 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId {
    /// The node that coordinated the change.
    pub node: String,
    /// The epoch of its data directory.
    pub epoch: u64,
}

/// What a state of one key has seen, in a form every bucket type produces.
///
/// - Registers, sets and maps: [`Version::Dots`], the events (writes,
///   field operations) the state has seen.
/// - Counters: [`Version::Counter`], each actor's totals, which only grow.
/// - LWW registers: [`Version::Stamp`], the stamp of the write held.
///
/// Merging two states of a key gives a state whose version dominates both
/// (the versions join), so a version is a lower bound a later read can be
/// asked to meet. An empty version (of any kind) is dominated by every
/// version.
///
/// ```
/// use kvorum_client::{ActorId, Version};
/// let a = ActorId { node: "n1".into(), epoch: 1 };
/// let old = Version::Dots { vv: [(a.clone(), 2)].into(), cloud: Default::default() };
/// let new = Version::Dots { vv: [(a.clone(), 3)].into(), cloud: Default::default() };
/// assert!(new.dominates(&old) && !old.dominates(&new));
/// assert!(old.dominates(&Version::default()));
/// let mut joined = old.clone();
/// joined.join(&new);
/// assert_eq!(joined, new);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// Events seen: per actor every event up to a counter (`vv`), plus
    /// events seen out of order (`cloud`, as `(actor, counter)`).
    Dots {
        /// Per actor, the highest counter up to which every event was seen.
        vv: BTreeMap<ActorId, u64>,
        /// Events seen beyond `vv`.
        cloud: BTreeSet<(ActorId, u64)>,
    },
    /// A counter: per actor, its totals of increments and of decrements.
    Counter {
        /// Per actor, the sum of its increments.
        inc: BTreeMap<ActorId, u64>,
        /// Per actor, the sum of its decrements (as a positive number).
        dec: BTreeMap<ActorId, u64>,
    },
    /// An LWW register: the stamp (coordinator milliseconds, then actor) of
    /// the write the state holds.
    Stamp {
        /// Unix milliseconds at the coordinator of the write.
        ms: u64,
        /// The coordinator (`None` only for the empty register).
        actor: Option<ActorId>,
    },
}

impl Default for Version {
    /// The empty version: dominated by every version.
    fn default() -> Self {
        Version::Dots {
            vv: BTreeMap::new(),
            cloud: BTreeSet::new(),
        }
    }
}

impl Version {
    /// True for a version that has seen nothing (of any kind).
    ///
    /// ```
    /// use kvorum_client::Version;
    /// assert!(Version::default().is_empty());
    /// assert!(Version::Stamp { ms: 0, actor: None }.is_empty());
    /// assert!(!Version::Stamp { ms: 5, actor: None }.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        match self {
            Version::Dots { vv, cloud } => vv.values().all(|n| *n == 0) && cloud.is_empty(),
            Version::Counter { inc, dec } => inc.values().chain(dec.values()).all(|n| *n == 0),
            Version::Stamp { ms, actor } => *ms == 0 && actor.is_none(),
        }
    }

    /// Whether a state of this version contains everything a state of
    /// version `other` contains. Versions of two kinds (two bucket types)
    /// never dominate each other, unless `other` is empty.
    ///
    /// ```
    /// use kvorum_client::{ActorId, Version};
    /// let a = ActorId { node: "n1".into(), epoch: 1 };
    /// let s = |ms| Version::Stamp { ms, actor: Some(a.clone()) };
    /// assert!(s(5).dominates(&s(5)) && s(6).dominates(&s(5)) && !s(4).dominates(&s(5)));
    /// let c = Version::Counter { inc: [(a.clone(), 1)].into(), dec: Default::default() };
    /// assert!(!c.dominates(&s(1)));
    /// ```
    pub fn dominates(&self, other: &Version) -> bool {
        if other.is_empty() {
            return true;
        }
        match (self, other) {
            (
                Version::Dots { vv, cloud },
                Version::Dots {
                    vv: ovv,
                    cloud: ocloud,
                },
            ) => {
                ovv.iter().all(|(a, n)| dots_contain_run(vv, cloud, a, *n))
                    && ocloud.iter().all(|(a, n)| {
                        vv.get(a).is_some_and(|have| have >= n) || cloud.contains(&(a.clone(), *n))
                    })
            }
            (Version::Counter { inc, dec }, Version::Counter { inc: oi, dec: od }) => {
                covers(inc, oi) && covers(dec, od)
            }
            (Version::Stamp { ms, actor }, Version::Stamp { ms: oms, actor: oa }) => {
                (ms, actor) >= (oms, oa)
            }
            _ => false,
        }
    }

    /// Joins `other` into this version: the result is dominated by nothing
    /// either dominates alone, and dominates both. Joining a version of
    /// another kind replaces this one (a key's bucket type never changes, so
    /// this happens only with a version from somewhere else).
    ///
    /// ```
    /// use kvorum_client::{ActorId, Version};
    /// let (a, b) = (ActorId { node: "a".into(), epoch: 1 }, ActorId { node: "b".into(), epoch: 1 });
    /// let mut v = Version::Counter { inc: [(a.clone(), 3)].into(), dec: Default::default() };
    /// v.join(&Version::Counter { inc: [(b.clone(), 1)].into(), dec: [(a.clone(), 2)].into() });
    /// assert_eq!(v, Version::Counter {
    ///     inc: [(a.clone(), 3), (b, 1)].into(),
    ///     dec: [(a, 2)].into(),
    /// });
    /// ```
    pub fn join(&mut self, other: &Version) {
        if other.is_empty() {
            return;
        }
        match (&mut *self, other) {
            (
                Version::Dots { vv, cloud },
                Version::Dots {
                    vv: ovv,
                    cloud: ocloud,
                },
            ) => {
                max_into(vv, ovv);
                cloud.extend(ocloud.iter().cloned());
                compact(vv, cloud);
            }
            (Version::Counter { inc, dec }, Version::Counter { inc: oi, dec: od }) => {
                max_into(inc, oi);
                max_into(dec, od);
            }
            (Version::Stamp { ms, actor }, Version::Stamp { ms: oms, actor: oa }) => {
                if (oms, oa) > (&*ms, &*actor) {
                    *ms = *oms;
                    *actor = oa.clone();
                }
            }
            (me, other) => *me = other.clone(),
        }
    }
}

/// Whether `(vv, cloud)` contains every event `a:1..=n`.
fn dots_contain_run(
    vv: &BTreeMap<ActorId, u64>,
    cloud: &BTreeSet<(ActorId, u64)>,
    a: &ActorId,
    n: u64,
) -> bool {
    let have = vv.get(a).copied().unwrap_or(0);
    if have >= n {
        return true;
    }
    // The events have+1..=n must all be in the cloud.
    let want = n - have;
    let found = cloud.range((a.clone(), have + 1)..=(a.clone(), n)).count() as u64;
    found == want
}

fn covers(mine: &BTreeMap<ActorId, u64>, theirs: &BTreeMap<ActorId, u64>) -> bool {
    theirs
        .iter()
        .all(|(a, n)| mine.get(a).copied().unwrap_or(0) >= *n)
}

fn max_into(mine: &mut BTreeMap<ActorId, u64>, theirs: &BTreeMap<ActorId, u64>) {
    for (a, n) in theirs {
        let slot = mine.entry(a.clone()).or_insert(0);
        *slot = (*slot).max(*n);
    }
}

/// Folds cloud events that continue an actor's run into `vv`, and drops
/// those `vv` already covers.
fn compact(vv: &mut BTreeMap<ActorId, u64>, cloud: &mut BTreeSet<(ActorId, u64)>) {
    for (a, n) in std::mem::take(cloud) {
        let have = vv.get(&a).copied().unwrap_or(0);
        if n == have + 1 {
            vv.insert(a, n);
        } else if n > have {
            cloud.insert((a, n));
        }
    }
}

/// What the coordinator of a read saw of the key's replicas.
///
/// `answered` counts the replicas whose states were merged into the answer:
/// R, or more when a session's version made the coordinator wait for more
/// (replicas that answer after the coordinator answered are not counted).
/// `agreed` is true when all of those held the same state, false when some
/// replica was behind (a read repair was sent to it).
///
/// ```
/// use kvorum_client::ReadReport;
/// let r = ReadReport { asked: 3, r: 1, answered: 2, agreed: false };
/// assert_eq!(r.to_string(), "2 of 3 replicas answered (R=1), they disagreed");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReport {
    /// Replicas the coordinator asked (the key's preference list).
    pub asked: u8,
    /// The read quorum R of the request.
    pub r: u8,
    /// Replicas whose answers were merged into the result.
    pub answered: u8,
    /// Whether those answers were all the same state.
    pub agreed: bool,
}

impl std::fmt::Display for ReadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} replicas answered (R={}), they {}",
            self.answered,
            self.asked,
            self.r,
            if self.agreed { "agreed" } else { "disagreed" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(s: &str) -> ActorId {
        ActorId {
            node: s.into(),
            epoch: 1,
        }
    }

    fn dots(vv: &[(&str, u64)], cloud: &[(&str, u64)]) -> Version {
        Version::Dots {
            vv: vv.iter().map(|(a, n)| (actor(a), *n)).collect(),
            cloud: cloud.iter().map(|(a, n)| (actor(a), *n)).collect(),
        }
    }

    #[test]
    fn dots_dominate_by_containment() {
        let v = dots(&[("a", 2)], &[("a", 4), ("b", 2)]);
        assert!(v.dominates(&dots(&[("a", 2)], &[])));
        assert!(v.dominates(&dots(&[], &[("a", 4)])));
        assert!(!v.dominates(&dots(&[("a", 3)], &[])), "a:3 missing");
        assert!(!v.dominates(&dots(&[("b", 1)], &[])), "b:1 missing");
        assert!(v.dominates(&dots(&[], &[("b", 2)])));
        // A run covered by the cloud counts.
        let w = dots(&[("a", 1)], &[("a", 3)]);
        let mut x = w.clone();
        x.join(&dots(&[], &[("a", 2)]));
        assert_eq!(x, dots(&[("a", 3)], &[]));
        assert!(x.dominates(&w));
    }

    #[test]
    fn join_dominates_both_and_kinds_do_not_mix() {
        let a = dots(&[("a", 2)], &[("b", 5)]);
        let b = dots(&[("b", 3)], &[]);
        let mut j = a.clone();
        j.join(&b);
        assert!(j.dominates(&a) && j.dominates(&b));
        let c = Version::Counter {
            inc: [(actor("a"), 1)].into(),
            dec: BTreeMap::new(),
        };
        assert!(!j.dominates(&c) && !c.dominates(&j));
        assert!(c.dominates(&Version::default()));
    }
}
