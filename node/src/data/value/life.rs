//! A key's replicated state: its data ([`Body`]) and its lifetime
//! ([`Life`]), and what expiry does to writes, merges and reads
//! (docs/data-types.md "Expiry").

use super::{
    clamp, counter_totals, Body, DecodeError, LwwState, Reading, Stamp, Update, ValueError,
    ValueLimits,
};
use crate::data::register::Actor;
use crdts::{ctx::RmCtx, pncounter::PNCounter, CmRDT, CvRDT, VClock};
use kvorum_client::{ActorId, BucketType, DataOp, DataValue, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The replicated state of one key: its data and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The data, by bucket type.
    pub body: Body,
    /// When the data expires (counters, sets, maps and LWW values; a
    /// register's values each carry their own expiry, see
    /// [`RegValue::Expiring`](crate::data::register::RegValue::Expiring)). Boxed: most states have the default one.
    pub life: Box<Life>,
}

/// The lifetime of a key of a counter, set, map or LWW bucket, part of its
/// replicated state (stored, hashed by anti-entropy, carried by every merge).
///
/// Merge: the lifetime set by the write with the higher [`Stamp`] wins
/// (a last-writer-wins register over the writes that set one); counter
/// floors join. The expiry is an absolute time stamped by the coordinator,
/// so replicas agree on it; each node compares it with its own clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Life {
    /// When the data expires (Unix milliseconds at the coordinator's
    /// clock); `None`: never.
    pub expires_ms: Option<u64>,
    /// The write that set `expires_ms`. For an LWW key, the lifetime
    /// applies only while that write's value is the one held.
    pub set_by: Stamp,
    /// A counter written again after it expired starts from zero: the
    /// per-actor totals it had then (every replica's view of them, joined),
    /// which its reads subtract. Increments no restart saw stay counted.
    pub floor: Option<PNCounter<Actor>>,
}

impl Life {
    /// The join: the higher `(set_by, expires_ms)` wins, floors join.
    fn merge(&mut self, other: Life) {
        let Life {
            expires_ms,
            set_by,
            floor,
        } = other;
        if (&set_by, &expires_ms) > (&self.set_by, &self.expires_ms) {
            self.set_by = set_by;
            self.expires_ms = expires_ms;
        }
        match (&mut self.floor, floor) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    /// Whether this is the lifetime of a key no write gave one.
    pub fn is_default(&self) -> bool {
        *self == Life::default()
    }
}

impl From<Body> for State {
    fn from(body: Body) -> State {
        State {
            body,
            life: Box::default(),
        }
    }
}

impl State {
    /// The empty state of a bucket type.
    pub fn empty(t: BucketType) -> State {
        Body::empty(t).into()
    }

    /// The bucket type this state belongs to.
    pub fn bucket_type(&self) -> BucketType {
        self.body.bucket_type()
    }

    /// Joins `other` into this state (the type's CRDT merge, and the
    /// lifetimes' join). States of two types are refused and nothing
    /// changes.
    pub fn merge(&mut self, other: State) -> Result<(), ValueError> {
        if let (Body::Lww(mine), Body::Lww(theirs)) = (&mut self.body, &other.body) {
            // An LWW value and its lifetime ride together: the higher
            // (stamp, value, expiry) wins whole (a lifetime not set by the
            // value's own write counts as none).
            let their_life = lww_life(theirs, &other.life);
            let my_life = lww_life(mine, &self.life);
            let key = |r: &LwwState, l: &Life| (r.marker.clone(), r.val.clone(), l.expires_ms);
            if key(theirs, &their_life) > key(mine, &my_life) {
                *mine = theirs.clone();
                *self.life = their_life;
            } else {
                *self.life = my_life;
            }
            return Ok(());
        }
        self.body.merge(other.body)?;
        self.life.merge(*other.life);
        Ok(())
    }

    /// Checks a state received from a peer.
    pub fn validate(&self) -> Result<(), DecodeError> {
        self.body.validate()
    }

    /// Checks this state against `limits` (see [`Body::check_bounds`]).
    pub fn check_bounds(&self, limits: &ValueLimits) -> Result<(), ValueError> {
        self.body.check_bounds(limits)
    }

    /// Applies a client's update without expiry (see
    /// [`State::coordinate_versioned`]) and returns the context to hand
    /// the client.
    pub fn coordinate(
        &mut self,
        me: &Actor,
        update: Update,
        floor: u64,
        now_ms: u64,
        limits: &ValueLimits,
    ) -> Result<Vec<u8>, ValueError> {
        self.coordinate_versioned(me, update, floor, now_ms, None, limits)
            .map(|(context, _)| context)
    }

    /// Applies a client's update as `me` (the coordinating replica) at
    /// `now_ms`; `floor` is the register dot floor (see
    /// [`Register::write`](crate::data::register::Register::write)); `expires_ms` is the write's expiry, if it has
    /// a time to live. Returns the context to hand the client (the
    /// register write's own context, or empty for the other types: an
    /// update's result must not claim values the client never read) and
    /// the version of the write: every state that holds the write has a
    /// version that dominates it (and, conversely, a state whose version
    /// dominates it holds the coordinator's state as of the write). Every
    /// update takes a fresh event of `me` (a dot, a counter total, a
    /// stamp), so its version is never dominated by a state that lacks
    /// it. A refused update changes nothing.
    ///
    /// Expiry: a key that expired (by `now_ms`) starts afresh: what this
    /// replica holds of it is removed causally (register values expired,
    /// set members and map fields observed, a counter's totals put under
    /// its floor) before the update applies, so nothing expired comes back
    /// and nothing this replica had not seen is lost. A write with
    /// `expires_ms` sets the key's lifetime; a put without one makes it
    /// live for ever; a typed update without one keeps it.
    pub fn coordinate_versioned(
        &mut self,
        me: &Actor,
        update: Update,
        floor: u64,
        now_ms: u64,
        expires_ms: Option<u64>,
        limits: &ValueLimits,
    ) -> Result<(Vec<u8>, Version), ValueError> {
        // Applied to a copy: the bounds are checked on the result.
        // An increment by 0 changes nothing (its time to live included):
        // an update that takes no fresh event must not change the state.
        if matches!(
            update,
            Update::Data {
                op: DataOp::Increment(0),
                ..
            }
        ) && matches!(self.body, Body::Counter(_))
        {
            return Ok((
                Vec::new(),
                Version::Counter {
                    inc: Default::default(),
                    dec: Default::default(),
                },
            ));
        }
        let mut next = self.clone();
        let restart = next.expired(now_ms);
        if restart {
            next.restart();
        }
        let written = next
            .body
            .apply_update(me, update, floor, now_ms, expires_ms)?;
        next.renew(me, now_ms, expires_ms, restart);
        next.check_bounds(limits)?;
        *self = next;
        Ok(written)
    }

    /// Removes causally what this replica holds of an expired key (see
    /// [`State::coordinate_versioned`]).
    fn restart(&mut self) {
        match &mut self.body {
            // Register values expire one by one (the write covers them);
            // an LWW write's stamp supersedes the expired value.
            Body::Register(_) | Body::Lww(_) => {}
            Body::Counter(c) => match &mut self.life.floor {
                Some(f) => f.merge(c.clone()),
                floor @ None => *floor = Some(c.clone()),
            },
            Body::Set(s) => {
                let members = s.read().val;
                let op = s.rm_all(members, RmCtx { clock: s.clock() });
                s.apply(op);
            }
            Body::Map(m) => m.clear_observed(),
        }
    }

    /// Sets the lifetime after a write (see [`State::coordinate_versioned`]).
    fn renew(&mut self, me: &Actor, now_ms: u64, expires_ms: Option<u64>, restart: bool) {
        match &self.body {
            Body::Register(_) => {}
            Body::Lww(r) => {
                // Tied to the write's stamp: it applies to its own value.
                *self.life = Life {
                    expires_ms,
                    set_by: if expires_ms.is_some() {
                        r.marker.clone()
                    } else {
                        Stamp::default()
                    },
                    floor: None,
                };
            }
            Body::Counter(_) | Body::Set(_) | Body::Map(_) => {
                if expires_ms.is_some() || restart {
                    let ms = now_ms.max(self.life.set_by.ms.saturating_add(1));
                    self.life.set_by = Stamp {
                        ms,
                        actor: Some(me.clone()),
                    };
                    self.life.expires_ms = expires_ms;
                }
            }
        }
    }

    /// Whether the whole key has expired at `now_ms` (counters, sets, maps,
    /// LWW values; a register's values expire one by one).
    pub fn expired(&self, now_ms: u64) -> bool {
        let Some(at) = self.life.expires_ms else {
            return false;
        };
        match &self.body {
            Body::Register(_) => false,
            Body::Lww(r) => self.life.set_by == r.marker && r.val.is_some() && now_ms >= at,
            Body::Counter(_) | Body::Set(_) | Body::Map(_) => now_ms >= at,
        }
    }

    /// Whether the data has an expiry (a register value with a time to
    /// live, a lifetime that applies): reaping it reclaims expired data.
    pub fn expiring(&self) -> bool {
        match &self.body {
            Body::Register(r) => r.has_expiring(),
            Body::Lww(r) => self.life.set_by == r.marker && self.life.expires_ms.is_some(),
            _ => self.life.expires_ms.is_some(),
        }
    }

    /// Whether a read at `now_ms` leaves something out because it expired
    /// (the key, or some of a register's values).
    pub fn hides_expired(&self, now_ms: u64) -> bool {
        match &self.body {
            Body::Register(r) => !r.expired_dots(now_ms).is_empty(),
            _ => self.expired(now_ms),
        }
    }

    /// The version of this state: what it has seen, in the form sessions
    /// compare (see [`Version`]). Monotone: a merge's version dominates the
    /// versions of both sides.
    pub fn version(&self) -> Version {
        self.body.version()
    }

    /// What a client sees of this state at `now_ms` by the reading node's
    /// clock: nothing of what expired (but the context of it, so a write
    /// with that context replaces it).
    pub fn read(&self, now_ms: u64) -> Reading {
        if self.expired(now_ms) {
            return match &self.body {
                Body::Lww(_) => Reading::Lww(None),
                Body::Set(s) => Reading::Data(None, s.clock()),
                Body::Map(m) => Reading::Data(None, m.clock().clone()),
                Body::Counter(_) | Body::Register(_) => Reading::Data(None, VClock::new()),
            };
        }
        match (&self.body, &self.life.floor) {
            (Body::Counter(c), Some(floor)) => counter_above(c, floor),
            (body, _) => body.read(now_ms),
        }
    }

    /// When the key holds nothing live from some time on (register values
    /// all deleted or expiring, an LWW delete or expiry, a set or map
    /// lifetime), that time, possibly still ahead: a candidate for reaping
    /// once it is past the grace. Counters are never reaped: a counter
    /// restarted from nothing on a node that reaped it would count below
    /// the totals a copy from before the reap still holds, and that copy's
    /// join would hide the new increments.
    pub fn dead_since(&self) -> Option<u64> {
        match &self.body {
            Body::Register(r) => r.dead_since(),
            Body::Lww(r) if r.val.is_none() && r.marker.ms > 0 => Some(r.marker.ms),
            Body::Lww(r) if self.life.set_by == r.marker => self.life.expires_ms,
            Body::Lww(_) | Body::Counter(_) => None,
            Body::Set(_) | Body::Map(_) => self.life.expires_ms,
        }
    }

    /// The highest register dot counter `actor` issued on this key.
    pub fn own_counter(&self, actor: &Actor) -> u64 {
        self.body.own_counter(actor)
    }

    /// This state with every expiry dropped (the planted bug
    /// `ExpiryDropped`).
    #[cfg(feature = "test-hooks")]
    pub fn without_expiry(mut self) -> State {
        if let Body::Register(r) = &mut self.body {
            r.drop_expiry();
        }
        self.life.expires_ms = None;
        self
    }
}

/// The lifetime of an LWW state's value: the one its own write set, else
/// none.
fn lww_life(r: &LwwState, life: &Life) -> Life {
    if life.set_by == r.marker && life.expires_ms.is_some() {
        Life {
            floor: None,
            ..life.clone()
        }
    } else {
        Life::default()
    }
}

/// A counter's reading above its restart floor.
fn counter_above(c: &PNCounter<Actor>, floor: &PNCounter<Actor>) -> Reading {
    let (inc, dec) = counter_totals(c);
    let (finc, fdec) = counter_totals(floor);
    let above = |t: &BTreeMap<ActorId, u64>, f: &BTreeMap<ActorId, u64>| -> i128 {
        t.iter()
            .map(|(a, n)| i128::from(n.saturating_sub(f.get(a).copied().unwrap_or(0))))
            .sum()
    };
    let (up, down) = (above(&inc, &finc), above(&dec, &fdec));
    let v = (up > 0 || down > 0).then(|| DataValue::Counter(clamp(up - down)));
    Reading::Data(v, VClock::new())
}
