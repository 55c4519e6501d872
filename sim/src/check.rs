//! The checkers, pure functions of a history and the final reads (ported
//! from the real-process fault suite's, `node/tests/faults/checker.rs`):
//!
//! - **register-siblings**: an acknowledged write may be absent from the
//!   final siblings only if a write whose context covered it (transitively)
//!   is there, or a delete covered it; a sibling nobody wrote is
//!   unexpected; a sibling that an acknowledged write or delete covered
//!   (its context saw it) has come back from the dead.
//! - **set**: every acknowledged add is in the final set; no element that
//!   was never added is.
//! - **counter**: the final value lies in [acknowledged + Σ negative
//!   unacknowledged deltas, acknowledged + Σ positive unacknowledged
//!   deltas] (each unacknowledged delta may or may not have applied).
//! - **convergence** (checked by the run): every node reads the same final
//!   values, every pair of replicas has equal anti-entropy trees, no hint
//!   is left, and every node's trees equal a rebuild from its storage
//!   (whatever point a crash cut its writes at).

use crate::history::{Entry, Op, Workload};
use std::collections::{BTreeMap, BTreeSet};

/// A key's final value, as every node read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    /// Register siblings: (id, covers) of each.
    Siblings(Vec<(u64, Vec<u64>)>),
    /// A counter's value.
    Count(i64),
    /// A set's elements.
    Elems(BTreeSet<u64>),
    /// Not found.
    Absent,
}

/// Checks one workload's history against its final values (key number →
/// value); returns the violations found.
pub fn check(w: Workload, entries: &[Entry], finals: &BTreeMap<u32, Final>) -> Vec<String> {
    check_after_wipe(w, entries, finals, None)
}

/// [`check`], for a run whose nemesis first wiped a member's disk at
/// `wipe_ms`: from then on a read's quorum may hold the wiped replica,
/// which answers with what it has until anti-entropy refills it, so the
/// in-run range check (every item acknowledged before a scan is in it)
/// covers only the scans that completed before it (a scan of several
/// pages begun before the wipe may read its later pages from the wiped
/// replica: swarm seeds 1317 and 8483). The final reads, after
/// convergence, are checked in full.
pub fn check_after_wipe(
    w: Workload,
    entries: &[Entry],
    finals: &BTreeMap<u32, Final>,
    wipe_ms: Option<u64>,
) -> Vec<String> {
    let ops: Vec<&Entry> = entries.iter().filter(|e| e.workload == w).collect();
    match w {
        Workload::Register => check_register(&ops, finals),
        Workload::Counter => check_counter(&ops, finals),
        Workload::Set => check_set(&ops, finals),
        Workload::Range => check_range(&ops, finals, wipe_ms.unwrap_or(u64::MAX)),
    }
}

/// **range**: a scan that completed holds every item whose insert was
/// acknowledged before the scan began (strict W and R + W > N), in order
/// and once each, and no item never inserted into its partition; the final
/// scans hold every acknowledged insert.
fn check_range(ops: &[&Entry], finals: &BTreeMap<u32, Final>, wipe_ms: u64) -> Vec<String> {
    let mut failures = Vec::new();
    // id → (key, acknowledged, completed at)
    let mut inserted: BTreeMap<u64, (u32, bool, u64)> = BTreeMap::new();
    for e in ops {
        if let Op::Insert(id) = e.op {
            inserted.insert(id, (e.key, e.ok, e.completed_ms));
        }
    }
    let foreign = |key: u32, seen: &BTreeSet<u64>| -> Vec<u64> {
        seen.iter()
            .filter(|x| inserted.get(x).map(|i| i.0) != Some(key))
            .copied()
            .collect()
    };
    for e in ops {
        let Op::Scan { seen, disorder } = &e.op else {
            continue;
        };
        if *disorder {
            failures.push(format!(
                "range key {}: a scan at {} ms repeated an item or broke the order",
                e.key, e.invoked_ms
            ));
        }
        let missed: Vec<u64> = inserted
            .iter()
            .filter(|(id, (k, ok, done))| {
                *k == e.key
                    && *ok
                    && *done < e.invoked_ms
                    && e.completed_ms < wipe_ms
                    && !seen.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        if !missed.is_empty() {
            failures.push(format!(
                "range key {}: a scan begun at {} ms missed {} item(s) acknowledged before it, \
                 e.g. {:?}",
                e.key,
                e.invoked_ms,
                missed.len(),
                &missed[..missed.len().min(10)]
            ));
        }
        let unknown = foreign(e.key, seen);
        if !unknown.is_empty() {
            failures.push(format!(
                "range key {}: a scan saw items never inserted there: {unknown:?}",
                e.key
            ));
        }
    }
    let empty = BTreeSet::new();
    for (&key, v) in finals {
        let all = match v {
            Final::Elems(s) => s,
            Final::Absent => &empty,
            other => {
                failures.push(format!("range key {key}: not a scan: {other:?}"));
                continue;
            }
        };
        let lost: Vec<u64> = inserted
            .iter()
            .filter(|(id, (k, ok, _))| *k == key && *ok && !all.contains(id))
            .map(|(id, _)| *id)
            .collect();
        if !lost.is_empty() {
            failures.push(format!(
                "range key {key}: acknowledged items lost: {lost:?}"
            ));
        }
        let unknown = foreign(key, all);
        if !unknown.is_empty() {
            failures.push(format!(
                "range key {key}: items never inserted there: {unknown:?}"
            ));
        }
    }
    failures
}

fn check_register(ops: &[&Entry], finals: &BTreeMap<u32, Final>) -> Vec<String> {
    let mut failures = Vec::new();
    // id → (key, covers, acknowledged)
    let mut writes: BTreeMap<u64, (u32, &Vec<u64>, bool)> = BTreeMap::new();
    // Deletes, and the writes an acknowledged write or delete covered.
    let (mut deletes, mut superseded) = (Vec::new(), BTreeSet::new());
    for e in ops {
        match &e.op {
            Op::Write { id, covers } => {
                writes.insert(*id, (e.key, covers, e.ok));
            }
            Op::Delete { covers, .. } => deletes.push((e.key, covers)),
            _ => continue,
        }
        if let (Op::Write { covers, .. } | Op::Delete { covers, .. }, true) = (&e.op, e.ok) {
            superseded.extend(covers.iter().copied());
        }
    }
    let mut closure: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for (&key, v) in finals {
        let sibs = match v {
            Final::Siblings(s) => s.clone(),
            Final::Absent => Vec::new(),
            other => {
                failures.push(format!("register key {key}: not a register: {other:?}"));
                continue;
            }
        };
        let set = closure.entry(key).or_default();
        // Whatever any delete of the key covered may be gone (an
        // unacknowledged delete may have applied).
        let mut todo: Vec<u64> = deletes
            .iter()
            .filter(|(k, _)| *k == key)
            .flat_map(|(_, c)| c.iter().copied())
            .collect();
        for (id, covers) in &sibs {
            if superseded.contains(id) {
                failures.push(format!(
                    "register key {key}: sibling {id} came back after an acknowledged write or \
                     delete covered it"
                ));
            }
            match writes.get(id) {
                Some((k, c, _)) if *k == key && *c == covers => todo.push(*id),
                _ => failures.push(format!(
                    "register key {key}: unexpected sibling {id};{covers:?}"
                )),
            }
        }
        while let Some(id) = todo.pop() {
            if set.insert(id) {
                if let Some((_, covers, _)) = writes.get(&id) {
                    todo.extend(covers.iter().copied());
                }
            }
        }
    }
    let lost: Vec<u64> = writes
        .iter()
        .filter(|(id, (key, _, ok))| *ok && !closure.get(key).is_some_and(|s| s.contains(id)))
        .map(|(id, _)| *id)
        .collect();
    if !lost.is_empty() {
        failures.push(format!(
            "register-siblings: {} acknowledged write(s) neither present nor covered by a \
             present write's context, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    failures
}

fn check_counter(ops: &[&Entry], finals: &BTreeMap<u32, Final>) -> Vec<String> {
    let mut failures = Vec::new();
    // key → (acknowledged sum, Σ negative unacknowledged, Σ positive unacknowledged)
    let mut bounds: BTreeMap<u32, (i64, i64, i64)> = BTreeMap::new();
    for e in ops {
        if let Op::Inc(d) = e.op {
            let b = bounds.entry(e.key).or_default();
            if e.ok {
                b.0 += d;
            } else if d < 0 {
                b.1 += d;
            } else {
                b.2 += d;
            }
        }
    }
    for (&key, v) in finals {
        let v = match v {
            Final::Count(v) => *v,
            Final::Absent => 0,
            other => {
                failures.push(format!("counter key {key}: not a counter: {other:?}"));
                continue;
            }
        };
        let (acked, neg, pos) = bounds.get(&key).copied().unwrap_or_default();
        let (lo, hi) = (acked + neg, acked + pos);
        if v < lo || v > hi {
            failures.push(format!(
                "counter key {key}: final {v} outside [{lo}, {hi}] (acknowledged {acked})"
            ));
        }
    }
    failures
}

fn check_set(ops: &[&Entry], finals: &BTreeMap<u32, Final>) -> Vec<String> {
    let mut failures = Vec::new();
    // element → (key, acknowledged)
    let mut added: BTreeMap<u64, (u32, bool)> = BTreeMap::new();
    for e in ops {
        if let Op::Add(x) = e.op {
            added.insert(x, (e.key, e.ok));
        }
    }
    let empty = BTreeSet::new();
    let elems = |key: u32| match finals.get(&key) {
        Some(Final::Elems(s)) => s,
        _ => &empty,
    };
    let lost: Vec<u64> = added
        .iter()
        .filter(|(x, (key, ok))| *ok && !elems(*key).contains(x))
        .map(|(x, _)| *x)
        .collect();
    if !lost.is_empty() {
        failures.push(format!(
            "set: {} acknowledged element(s) lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    for (&key, v) in finals {
        if let Final::Elems(s) = v {
            for x in s {
                if added.get(x).map(|a| a.0) != Some(key) {
                    failures.push(format!("set key {key}: unexpected element {x}"));
                }
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    //! The checkers can fail: each is fed a violation.
    use super::*;

    fn entry(w: Workload, key: u32, op: Op, ok: bool) -> Entry {
        Entry {
            client: 0,
            workload: w,
            key,
            op,
            ok,
            invoked_ms: 0,
            completed_ms: 1,
        }
    }

    #[test]
    fn a_scan_that_misses_an_earlier_item_or_repeats_one_fails() {
        let w = Workload::Range;
        let at = |op, ok, invoked_ms, completed_ms| Entry {
            invoked_ms,
            completed_ms,
            ..entry(w, 0, op, ok)
        };
        let scan = |ids: &[u64], disorder| Op::Scan {
            seen: ids.iter().copied().collect(),
            disorder,
        };
        let finals = BTreeMap::from([(0, Final::Elems([1, 2, 3].into()))]);
        let good = vec![
            at(Op::Insert(1), true, 0, 10),
            at(Op::Insert(2), true, 5, 30),
            at(Op::Insert(3), false, 5, 30),
            // Begun before 2 was acknowledged: 2 may be missing.
            at(scan(&[1], false), true, 20, 40),
            at(scan(&[1, 2, 3], false), true, 50, 60),
        ];
        assert!(check(w, &good, &finals).is_empty());
        // Begun after 2 was acknowledged, without it.
        let mut missed = good.clone();
        missed.push(at(scan(&[1, 3], false), true, 31, 40));
        assert_eq!(check(w, &missed, &finals).len(), 1);
        let mut repeated = good.clone();
        repeated.push(at(scan(&[1, 2], true), true, 31, 40));
        assert_eq!(check(w, &repeated, &finals).len(), 1);
        let mut foreign = good.clone();
        foreign.push(at(scan(&[1, 2, 9], false), true, 31, 40));
        assert_eq!(check(w, &foreign, &finals).len(), 1);
        let lost = BTreeMap::from([(0, Final::Elems([1].into()))]);
        assert_eq!(check(w, &good, &lost).len(), 1);
        // After a wipe, a scan may miss what only the wiped replica held,
        // a scan still paging when it came too (31-40 ms, a wipe at 32).
        assert!(check_after_wipe(w, &missed, &finals, Some(31)).is_empty());
        assert!(check_after_wipe(w, &missed, &finals, Some(32)).is_empty());
        assert_eq!(check_after_wipe(w, &missed, &finals, Some(41)).len(), 1);
    }

    #[test]
    fn a_lost_register_write_fails_unless_covered() {
        let w = Workload::Register;
        let h = vec![
            entry(
                w,
                0,
                Op::Write {
                    id: 1,
                    covers: vec![],
                },
                true,
            ),
            entry(
                w,
                0,
                Op::Write {
                    id: 2,
                    covers: vec![],
                },
                true,
            ),
            entry(
                w,
                0,
                Op::Write {
                    id: 3,
                    covers: vec![1],
                },
                true,
            ),
        ];
        // 3 covers 1, but nothing covers 2.
        let finals = BTreeMap::from([(0, Final::Siblings(vec![(3, vec![1])]))]);
        assert_eq!(check(w, &h, &finals).len(), 1);
        let finals = BTreeMap::from([(0, Final::Siblings(vec![(3, vec![1]), (2, vec![])]))]);
        assert!(check(w, &h, &finals).is_empty());
        let forged = BTreeMap::from([(0, Final::Siblings(vec![(3, vec![1, 2])]))]);
        assert!(!check(w, &h, &forged).is_empty());
        // 1 came back after 3, acknowledged, covered it.
        let back = BTreeMap::from([(
            0,
            Final::Siblings(vec![(3, vec![1]), (2, vec![]), (1, vec![])]),
        )]);
        assert_eq!(check(w, &h, &back).len(), 1);
    }

    #[test]
    fn a_delete_excuses_what_it_covered_and_a_resurrection_fails() {
        let w = Workload::Register;
        let h = vec![
            entry(
                w,
                0,
                Op::Write {
                    id: 1,
                    covers: vec![],
                },
                true,
            ),
            entry(
                w,
                0,
                Op::Delete {
                    id: 2,
                    covers: vec![1],
                },
                true,
            ),
        ];
        assert!(check(w, &h, &BTreeMap::from([(0, Final::Absent)])).is_empty());
        let back = BTreeMap::from([(0, Final::Siblings(vec![(1, vec![])]))]);
        assert_eq!(check(w, &h, &back).len(), 1);
    }

    #[test]
    fn a_counter_outside_its_bounds_fails() {
        let w = Workload::Counter;
        let h = vec![
            entry(w, 0, Op::Inc(5), true),
            entry(w, 0, Op::Inc(2), false),
            entry(w, 0, Op::Inc(-1), false),
        ];
        for (v, ok) in [(4, true), (7, true), (3, false), (8, false)] {
            let finals = BTreeMap::from([(0, Final::Count(v))]);
            assert_eq!(check(w, &h, &finals).is_empty(), ok, "value {v}");
        }
    }

    #[test]
    fn a_lost_or_unexpected_set_element_fails() {
        let w = Workload::Set;
        let h = vec![
            entry(w, 0, Op::Add(1), true),
            entry(w, 0, Op::Add(2), false),
        ];
        let ok = BTreeMap::from([(0, Final::Elems(BTreeSet::from([1])))]);
        assert!(check(w, &h, &ok).is_empty());
        let lost = BTreeMap::from([(0, Final::Elems(BTreeSet::from([2])))]);
        assert_eq!(check(w, &h, &lost).len(), 1);
        let odd = BTreeMap::from([(0, Final::Elems(BTreeSet::from([1, 9])))]);
        assert_eq!(check(w, &h, &odd).len(), 1);
    }
}
