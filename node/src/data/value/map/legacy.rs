//! The map of record format 2 (a `crdts::Map` of reset-remove fields), as it
//! was serialized, and its conversion. Also used to canonicalize set
//! records, whose format did not change (see `canon` in `data/value/record.rs`).

use super::*;

/// A `crdts::Map`: clock, entries, deferred removals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Map {
    clock: VClock<Actor>,
    entries: Vec<(FieldKey, Entry)>,
    deferred: Vec<(VClock<Actor>, Vec<FieldKey>)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// Per actor, its latest dot on the field.
    clock: VClock<Actor>,
    val: Field,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Field {
    Empty,
    Counter(BTreeMap<Actor, CounterEntry>),
    Set(Orswot<Vec<u8>>),
    Flag(Orswot<()>),
    Lww(BTreeMap<Actor, LwwEntry>),
    Register(Register),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CounterEntry {
    dot: u64,
    inc: u64,
    dec: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LwwEntry {
    dot: u64,
    stamp: Stamp,
    value: Vec<u8>,
}

/// `crate::data::register::Register` as serialized: its context (version
/// vector and dot cloud) and values.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Register {
    context: (VClock<Actor>, Vec<Dot>),
    values: BTreeMap<Dot, RegValue>,
}

/// A `crdts::Orswot` as serialized, its hash maps as lists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Orswot<M> {
    clock: VClock<Actor>,
    entries: Vec<(M, VClock<Actor>)>,
    deferred: Vec<(VClock<Actor>, Vec<M>)>,
}

impl<M: Ord> Orswot<M> {
    /// Sorts the lists: the canonical form of the set.
    pub(crate) fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, members) in &mut self.deferred {
            members.sort();
        }
        self.deferred
            .sort_by_cached_key(|(c, _)| postcard::to_stdvec(c).unwrap_or_default());
    }
}

fn dots(clock: &VClock<Actor>) -> DotSet {
    clock
        .dots
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(a, n)| ((a.clone(), *n), ()))
        .collect()
}

impl Map {
    /// The same map as a causal-context map: each field's entry clock
    /// becomes its support, its contents keep their dots, and deferred
    /// removals (of fields, or inside set and flag fields) and register
    /// contexts ahead of the map become pending removals. (A register
    /// context's dot cloud is left out: it only ever held dots of
    /// client contexts, and leaving it out can only keep a value, as a
    /// sibling.)
    pub(crate) fn convert(self) -> MapState {
        let mut m = MapState {
            clock: self.clock,
            ..MapState::default()
        };
        let mut pending: Vec<(Target, VClock<Actor>)> = Vec::new();
        for (key, entry) in self.entries {
            let mut f = FieldState::new(key.kind);
            f.support = dots(&entry.clock);
            let target = |scope| Target {
                key: key.clone(),
                scope,
            };
            match (entry.val, &mut f.data) {
                (Field::Counter(c), FieldData::Counter(d)) => {
                    for (a, e) in c {
                        if e.dot > 0 {
                            let t = Totals {
                                inc: e.inc,
                                dec: e.dec,
                            };
                            d.insert((a, e.dot), t);
                        }
                    }
                }
                (Field::Set(s), FieldData::Set(d)) => {
                    for (member, clock) in s.entries {
                        d.insert(member, dots(&clock));
                    }
                    for (clock, members) in s.deferred {
                        for member in members {
                            pending.push((target(Scope::Member(member)), clock.clone()));
                        }
                    }
                }
                (Field::Flag(s), FieldData::Flag(d)) => {
                    for ((), clock) in s.entries {
                        d.extend(dots(&clock));
                    }
                    for (clock, _) in s.deferred {
                        pending.push((target(Scope::Values), clock));
                    }
                }
                (Field::Lww(w), FieldData::Lww(d)) => {
                    for (a, e) in w {
                        let write = LwwWrite {
                            stamp: e.stamp,
                            value: e.value,
                        };
                        d.insert((a, e.dot), write);
                    }
                }
                (Field::Register(r), FieldData::Register(d)) => {
                    // The register's context covers its own values too:
                    // only the actors it is ahead of the map for, and of
                    // which it holds no value, are a removal's context
                    // (a write whose client read another replica).
                    let (mut ctx, _cloud) = r.context;
                    ctx.dots
                        .retain(|a, n| *n > m.clock.get(a) && !r.values.keys().any(|d| d.0 == *a));
                    for (dot, v) in r.values {
                        if let RegValue::Data(v) = v {
                            d.insert(dot, v);
                        }
                    }
                    pending.push((target(Scope::Values), ctx));
                }
                // Empty (never stored), or contents of another kind than
                // the key's (never written).
                _ => {}
            }
            m.fields.insert(key, f);
        }
        for (clock, keys) in self.deferred {
            for key in keys {
                let scope = Scope::Field;
                pending.push((Target { key, scope }, clock.clone()));
            }
        }
        // Dots outside the clock were never written; the join needs
        // every dot inside it.
        let clock = m.clock.clone();
        for f in m.fields.values_mut() {
            f.retain(&Scope::Field, |d| seen(&clock, d));
        }
        for (target, ctx) in pending {
            m.pending.entry(target).or_default().merge(ctx);
        }
        m.settle();
        m
    }
}
