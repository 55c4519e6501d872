//! The checkers: pure functions of the history and the final reads.
//!
//! - set-like (set, register-union, lww-control): lost = acknowledged −
//!   final, unexpected = final − attempted; recovered = present but not
//!   acknowledged; a read is stale when it misses an element whose add was
//!   acknowledged before the read was invoked.
//! - counter: every node's final value lies in [acked + Σ negative
//!   unacknowledged deltas, acked + Σ positive unacknowledged deltas] (each
//!   unacknowledged delta may or may not have been applied), and all agree.
//! - register-siblings: an acknowledged write may be absent from the final
//!   siblings only if a write whose context covered it (transitively) is
//!   there: the closure of the final siblings' `covers` over the history
//!   must hold every acknowledged write.
//! - every workload: every node's final read is the same.

use super::workload::{Entry, FinalValue, Op, Outcome, Workload};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One line of the result table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub attempted: u64,
    pub acknowledged: u64,
    pub lost: u64,
    pub unexpected: u64,
    pub recovered: u64,
    pub reads: u64,
    pub stale: u64,
    latencies_ms: Vec<u64>,
}

impl Row {
    pub fn p99_ms(&self) -> Option<u64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let mut v = self.latencies_ms.clone();
        v.sort_unstable();
        let i = ((v.len() as f64) * 0.99).ceil() as usize;
        Some(v[i.saturating_sub(1).min(v.len() - 1)])
    }

    fn absorb(&mut self, o: &Row) {
        self.attempted += o.attempted;
        self.acknowledged += o.acknowledged;
        self.lost += o.lost;
        self.unexpected += o.unexpected;
        self.recovered += o.recovered;
        self.reads += o.reads;
        self.stale += o.stale;
        self.latencies_ms.extend(&o.latencies_ms);
    }
}

/// What the checkers found.
#[derive(Debug, Default)]
pub struct Report {
    /// (workload, fault kind) → row.
    pub rows: BTreeMap<(Workload, String), Row>,
    /// Violations of the guarantees (each fails the run).
    pub failures: Vec<String>,
    /// Examples of lost elements per workload (for the summary).
    pub examples: BTreeMap<Workload, Vec<u64>>,
}

impl Report {
    pub fn total(&self, w: Workload) -> Row {
        let mut t = Row::default();
        for ((rw, _), r) in &self.rows {
            if *rw == w {
                t.absorb(r);
            }
        }
        t
    }
}

/// Final reads of one workload: per node, the value of each key.
pub type Finals = Vec<(String, Vec<FinalValue>)>;

pub fn check(
    entries: &[Entry],
    finals: &HashMap<Workload, Finals>,
    kind: &dyn Fn(usize) -> String,
) -> Report {
    let mut report = Report::default();
    for w in Workload::ALL {
        let ops: Vec<&Entry> = entries.iter().filter(|e| e.workload == w).collect();
        for e in &ops {
            let row = report.rows.entry((w, kind(e.phase))).or_default();
            if matches!(e.op, Op::Read(_)) {
                row.reads += 1;
            } else {
                row.attempted += 1;
                if e.outcome == Outcome::Ok {
                    row.acknowledged += 1;
                }
            }
            if e.outcome == Outcome::Ok {
                row.latencies_ms.push(e.complete_ms - e.invoke_ms);
            }
        }
        let Some(fin) = finals.get(&w) else {
            report.failures.push(format!("{}: no final read", w.name()));
            continue;
        };
        let Some((first_node, reference)) = fin.first() else {
            report
                .failures
                .push(format!("{}: no node answered the final read", w.name()));
            continue;
        };
        for (node, vals) in fin {
            if vals != reference {
                report.failures.push(format!(
                    "{}: final reads differ: {node} and {first_node} (replicas did not converge)",
                    w.name()
                ));
            }
        }
        match w {
            Workload::Set | Workload::RegisterUnion | Workload::Lww => {
                check_set(w, &ops, reference, kind, &mut report)
            }
            Workload::Counter => check_counter(&ops, reference, &mut report),
            Workload::Register => check_register(&ops, reference, kind, &mut report),
        }
    }
    report
}

fn elems_of(v: &FinalValue) -> BTreeSet<u64> {
    match v {
        FinalValue::Elems(s) => s.clone(),
        _ => BTreeSet::new(),
    }
}

fn check_set(
    w: Workload,
    ops: &[&Entry],
    reference: &[FinalValue],
    kind: &dyn Fn(usize) -> String,
    report: &mut Report,
) {
    let finals: Vec<BTreeSet<u64>> = reference.iter().map(elems_of).collect();
    // elem → (key, acked, phase)
    let mut attempted: HashMap<u64, (u32, bool, usize)> = HashMap::new();
    // key → (ack completion time, elem), sorted by time
    let mut acks: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    for e in ops {
        if let Op::Add(x) = e.op {
            attempted.insert(x, (e.key, e.outcome == Outcome::Ok, e.phase));
            if e.outcome == Outcome::Ok {
                acks.entry(e.key).or_default().push((e.complete_ms, x));
            }
        }
    }
    for v in acks.values_mut() {
        v.sort_unstable();
    }
    let mut lost_total = 0;
    for (&x, &(key, acked, phase)) in &attempted {
        let present = finals.get(key as usize).is_some_and(|s| s.contains(&x));
        let row = report.rows.entry((w, kind(phase))).or_default();
        if acked && !present {
            row.lost += 1;
            lost_total += 1;
            let ex = report.examples.entry(w).or_default();
            if ex.len() < 10 {
                ex.push(x);
            }
        }
        if !acked && present {
            row.recovered += 1;
        }
    }
    for (key, s) in finals.iter().enumerate() {
        for x in s {
            if attempted.get(x).map(|a| a.0) != Some(key as u32) {
                report
                    .rows
                    .entry((w, "(final)".into()))
                    .or_default()
                    .unexpected += 1;
                report
                    .failures
                    .push(format!("{}: unexpected element {x} in key {key}", w.name()));
            }
        }
    }
    for e in ops {
        if let (Op::Read(Some(seen)), Outcome::Ok) = (&e.op, e.outcome) {
            let stale = acks.get(&e.key).is_some_and(|a| {
                a.iter()
                    .take_while(|(t, _)| *t < e.invoke_ms)
                    .any(|(_, x)| !seen.contains(x))
            });
            if stale {
                report.rows.entry((w, kind(e.phase))).or_default().stale += 1;
            }
        }
    }
    if w == Workload::Lww {
        if lost_total == 0 {
            report.failures.push(
                "lww-control lost no acknowledged write: the control shows nothing, \
                 so the checkers' zero for the other workloads proves nothing"
                    .into(),
            );
        }
    } else if lost_total > 0 {
        report.failures.push(format!(
            "{}: {lost_total} acknowledged element(s) lost, e.g. {:?}",
            w.name(),
            report.examples.get(&w)
        ));
    }
}

fn check_counter(ops: &[&Entry], reference: &[FinalValue], report: &mut Report) {
    let w = Workload::Counter;
    // key → (acked sum, Σ negative unacked, Σ positive unacked)
    let mut bounds: BTreeMap<u32, (i64, i64, i64)> = BTreeMap::new();
    for e in ops {
        if let Op::Inc(d) = e.op {
            let b = bounds.entry(e.key).or_default();
            if e.outcome == Outcome::Ok {
                b.0 += d;
            } else if d < 0 {
                b.1 += d;
            } else {
                b.2 += d;
            }
        }
    }
    for (key, v) in reference.iter().enumerate() {
        let FinalValue::Count(v) = *v else { continue };
        let (acked, neg, pos) = bounds.get(&(key as u32)).copied().unwrap_or_default();
        let (lo, hi) = (acked + neg, acked + pos);
        if v < lo {
            let row = report.rows.entry((w, "(final)".into())).or_default();
            row.lost += (lo - v) as u64;
            report.failures.push(format!(
                "counter key {key}: final {v} below {lo} (acked {acked}, unacked negative {neg})"
            ));
        }
        if v > hi {
            let row = report.rows.entry((w, "(final)".into())).or_default();
            row.unexpected += (v - hi) as u64;
            report.failures.push(format!(
                "counter key {key}: final {v} above {hi} (acked {acked}, unacked positive {pos})"
            ));
        }
    }
}

fn check_register(
    ops: &[&Entry],
    reference: &[FinalValue],
    kind: &dyn Fn(usize) -> String,
    report: &mut Report,
) {
    let w = Workload::Register;
    // id → (key, covers, acked, phase)
    let mut writes: HashMap<u64, (u32, &Vec<u64>, bool, usize)> = HashMap::new();
    for e in ops {
        if let Op::Write { id, covers } = &e.op {
            writes.insert(*id, (e.key, covers, e.outcome == Outcome::Ok, e.phase));
        }
    }
    let mut closure: HashMap<u32, BTreeSet<u64>> = HashMap::new();
    for (key, v) in reference.iter().enumerate() {
        let FinalValue::Siblings(sibs) = v else {
            continue;
        };
        let key = key as u32;
        let set = closure.entry(key).or_default();
        let mut todo: Vec<u64> = Vec::new();
        for (id, covers) in sibs {
            match writes.get(id) {
                Some((k, c, acked, phase)) if *k == key && *c == covers => {
                    if !acked {
                        report.rows.entry((w, kind(*phase))).or_default().recovered += 1;
                    }
                    todo.push(*id);
                }
                _ => {
                    report
                        .rows
                        .entry((w, "(final)".into()))
                        .or_default()
                        .unexpected += 1;
                    report.failures.push(format!(
                        "register key {key}: unexpected sibling {id};{covers:?}"
                    ));
                }
            }
        }
        while let Some(id) = todo.pop() {
            if set.insert(id) {
                if let Some((_, covers, _, _)) = writes.get(&id) {
                    todo.extend(covers.iter().copied());
                }
            }
        }
    }
    let mut lost = Vec::new();
    for (&id, &(key, _, acked, phase)) in &writes {
        if acked && !closure.get(&key).is_some_and(|s| s.contains(&id)) {
            report.rows.entry((w, kind(phase))).or_default().lost += 1;
            lost.push(id);
        }
    }
    if !lost.is_empty() {
        lost.sort_unstable();
        report.failures.push(format!(
            "register-siblings: {} acknowledged write(s) neither present nor covered by a \
             present write's context, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
}

#[cfg(test)]
mod tests {
    //! The checkers can fail: each is fed a history with a violation.
    use super::*;

    fn entry(w: Workload, key: u32, op: Op, outcome: Outcome, t: u64) -> Entry {
        Entry {
            workload: w,
            key,
            op,
            outcome,
            invoke_ms: t,
            complete_ms: t + 1,
            phase: 0,
        }
    }

    fn finals(w: Workload, v: Vec<FinalValue>) -> HashMap<Workload, Finals> {
        let mut m: HashMap<Workload, Finals> = Workload::ALL
            .iter()
            .map(|&w| {
                let empty = match w {
                    Workload::Counter => FinalValue::Count(0),
                    Workload::Register => FinalValue::Siblings(vec![]),
                    _ => FinalValue::Elems(BTreeSet::new()),
                };
                (w, vec![("n1".to_string(), vec![empty])])
            })
            .collect();
        m.insert(w, vec![("n1".into(), v.clone()), ("n2".into(), v)]);
        m
    }

    fn kind(_: usize) -> String {
        "healthy".into()
    }

    fn lww_loss() -> Entry {
        entry(Workload::Lww, 0, Op::Add(99), Outcome::Ok, 0)
    }

    #[test]
    fn a_lost_set_element_and_a_stale_read_are_found() {
        let h = vec![
            entry(Workload::Set, 0, Op::Add(1), Outcome::Ok, 0),
            entry(Workload::Set, 0, Op::Add(2), Outcome::Ok, 0),
            entry(Workload::Set, 0, Op::Add(3), Outcome::Info, 0),
            entry(
                Workload::Set,
                0,
                Op::Read(Some([1].into())),
                Outcome::Ok,
                10,
            ),
            lww_loss(),
        ];
        let f = finals(Workload::Set, vec![FinalValue::Elems([1, 3, 7].into())]);
        let r = check(&h, &f, &kind);
        let t = r.total(Workload::Set);
        assert_eq!((t.lost, t.unexpected, t.recovered, t.stale), (1, 1, 1, 1));
        assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
    }

    #[test]
    fn the_lww_control_must_lose_something() {
        let h = vec![entry(Workload::Lww, 0, Op::Add(1), Outcome::Ok, 0)];
        let f = finals(Workload::Lww, vec![FinalValue::Elems([1].into())]);
        let r = check(&h, &f, &kind);
        assert!(
            r.failures.iter().any(|f| f.contains("control")),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn a_counter_outside_its_bounds_fails() {
        let h = vec![
            entry(Workload::Counter, 0, Op::Inc(5), Outcome::Ok, 0),
            entry(Workload::Counter, 0, Op::Inc(-2), Outcome::Info, 0),
            lww_loss(),
        ];
        for (v, ok) in [(3, true), (5, true), (2, false), (6, false)] {
            let r = check(
                &h,
                &finals(Workload::Counter, vec![FinalValue::Count(v)]),
                &kind,
            );
            assert_eq!(r.failures.is_empty(), ok, "{v}: {:?}", r.failures);
        }
    }

    #[test]
    fn a_register_write_is_lost_unless_a_present_write_covered_it() {
        let w =
            |id, covers: Vec<u64>, o| entry(Workload::Register, 0, Op::Write { id, covers }, o, 0);
        let h = vec![
            w(1, vec![], Outcome::Ok),
            w(2, vec![1], Outcome::Fail),
            w(3, vec![2], Outcome::Ok),
            w(4, vec![], Outcome::Ok),
            lww_loss(),
        ];
        // 3 covers 2 covers 1; 4 is lost.
        let r = check(
            &h,
            &finals(
                Workload::Register,
                vec![FinalValue::Siblings(vec![(3, vec![2])])],
            ),
            &kind,
        );
        assert_eq!(r.total(Workload::Register).lost, 1, "{:?}", r.failures);
        let ok = FinalValue::Siblings(vec![(3, vec![2]), (4, vec![])]);
        let r = check(&h, &finals(Workload::Register, vec![ok]), &kind);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
    }

    #[test]
    fn replicas_that_disagree_fail() {
        let mut f = finals(Workload::Set, vec![FinalValue::Elems([1].into())]);
        f.get_mut(&Workload::Set).unwrap()[1].1 = vec![FinalValue::Elems([].into())];
        let h = vec![
            entry(Workload::Set, 0, Op::Add(1), Outcome::Info, 0),
            lww_loss(),
        ];
        let r = check(&h, &f, &kind);
        assert!(
            r.failures.iter().any(|f| f.contains("differ")),
            "{:?}",
            r.failures
        );
    }
}
