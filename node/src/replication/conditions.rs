//! Conditional writes (`if_absent`, `if_match`), leaderless and best
//! effort: the coordinator reads the key at the bucket's R, checks the
//! condition on the merge, and writes only if it holds
//! (docs/consistency.md "Conditional writes").
//!
//! Two things make racing conditional writes of one key fail instead of
//! fork while the cluster is healthy: they are all coordinated by one node,
//! the first replica of the key that its sender sees up (others forward to
//! it), and that node runs them one at a time per key (a striped lock held
//! from the read to the write's quorum). Under a partition or a failure
//! detector that disagrees, two coordinators can each pass the same
//! condition: both writes are then acknowledged and show as siblings on the
//! next read, never lost.
//!
//! The seam for a linearizable compare-and-set (a later issue) is
//! [`Coordinator::conditional_write`]: the read, check and write would
//! become a consensus round among the key's replicas there, with the same
//! request and the same `PreconditionFailed` answer.

use super::coordinator::{Coordinator, WriteQuorum};
use crate::data::register::DotContext;
use crate::data::value::{Reading, State, Update};
use crate::metrics;
use kvorum_client::proto::{Condition, ErrorReply, Request, Response};
use kvorum_client::{BucketProps, BucketType};
use kvorum_ring::{key_token, NodeId};
use std::cmp::Ordering;
use std::time::Duration;
use tokio::sync::Mutex;

/// Stripes of the per-key lock (a key's stripe is its hash modulo this).
const STRIPES: usize = 256;

/// The locks that run one key's conditional writes one at a time on
/// their coordinator, striped by key hash: bounded memory, and two keys
/// share a stripe only by chance (they then wait for each other, never
/// for longer than one request's timeout).
#[derive(Debug)]
pub struct ConditionLocks(Vec<Mutex<()>>);

impl Default for ConditionLocks {
    fn default() -> Self {
        Self((0..STRIPES).map(|_| Mutex::new(())).collect())
    }
}

impl ConditionLocks {
    fn of(&self, key: &[u8]) -> &Mutex<()> {
        &self.0[(key_token(key) % STRIPES as u64) as usize]
    }
}

impl Coordinator {
    /// A put or update with a condition: sent on to the key's condition
    /// coordinator, or read, checked and written here under the key's lock.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn conditional_write(
        &self,
        req: Request,
        skey: Vec<u8>,
        props: BucketProps,
        update: Update,
        q: WriteQuorum,
        condition: Condition,
        forwarded: bool,
    ) -> Result<Response, ErrorReply> {
        if condition == Condition::IfMatch && props.bucket_type == BucketType::Lww {
            return Err(ErrorReply::BadRequest(
                "if_match needs a causal context, and LWW buckets have none (use if_absent, \
                 or a register bucket)"
                    .into(),
            ));
        }
        let pref = self
            .membership
            .view()
            .read_ring
            .item_preference_list(&skey, usize::from(props.n));
        // The condition coordinator: the first replica seen up (this node
        // counts itself up).
        let Some(first) = pref
            .iter()
            .find(|n| **n == self.me || self.liveness.is_up(n))
            .cloned()
        else {
            return Err(ErrorReply::Unavailable(
                "no replica of the key is up to check the condition".into(),
            ));
        };
        let race = crate::util::plant::planted(crate::util::plant::Bug::ConditionRace);
        if first != self.me && !forwarded && !race {
            let mut order: Vec<NodeId> = vec![first.clone()];
            order.extend(pref.iter().filter(|n| **n != first).cloned());
            return self.forward(req, &order, q.timeout, false).await;
        }
        let began = self.env.clock.now();
        let _one_at_a_time = if race {
            None
        } else {
            Some(self.condition_locks.of(&skey).lock().await)
        };
        let (state, report) = self
            .read(
                skey.clone(),
                props,
                usize::from(props.r),
                q.timeout,
                false,
                None,
            )
            .await?;
        if !holds(condition, &state, &update, self.env.clock.lww_ms()) {
            self.metrics
                .counter(
                    metrics::PRECONDITION_FAILURES,
                    &[("condition", condition.name())],
                )
                .increment(1);
            let current = self.answer(&skey, &state, report);
            return Err(ErrorReply::PreconditionFailed {
                condition,
                current: Box::new(current),
            });
        }
        // The write gets what is left of the request's time.
        let left = q.timeout.saturating_sub(self.env.clock.now() - began);
        let q = WriteQuorum {
            timeout: left.max(Duration::from_millis(1)),
            ..q
        };
        self.write(req, skey, props, update, q, true).await
    }
}

/// Whether `condition` holds on the merged `state` for `update`.
/// (An expired key is absent: its reading at `now_ms` holds nothing.)
fn holds(condition: Condition, state: &State, update: &Update, now_ms: u64) -> bool {
    match (condition, state.read(now_ms), update) {
        (Condition::None, _, _) => true,
        (Condition::IfAbsent, Reading::Register(siblings, _), _) => siblings.is_empty(),
        (Condition::IfAbsent, Reading::Lww(v), _) => v.is_none(),
        (Condition::IfAbsent, Reading::Data(v, _), _) => v.is_none(),
        (Condition::IfMatch, Reading::Register(_, now), Update::Register { ctx, .. }) => {
            covers(ctx, &now)
        }
        (Condition::IfMatch, Reading::Data(_, now), Update::Data { ctx, .. }) => {
            matches!(now.partial_cmp(ctx), Some(Ordering::Less | Ordering::Equal))
        }
        // A type and an update that do not go together (checked before).
        (Condition::IfMatch, _, _) => false,
    }
}

/// Whether every dot of `now` is in `read`.
fn covers(read: &DotContext, now: &DotContext) -> bool {
    let mut joined = read.clone();
    joined.join(now);
    joined == *read
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::register::Actor;

    fn dots(d: &[(&str, u64)]) -> DotContext {
        let mut c = DotContext::new();
        for (a, n) in d {
            let actor = Actor {
                node: NodeId::new(*a),
                epoch: 1,
            };
            c.insert((actor, *n));
        }
        c
    }

    #[test]
    fn a_context_covers_what_it_holds_and_not_a_later_dot() {
        let read = dots(&[("a", 1), ("a", 2), ("b", 1)]);
        assert!(covers(&read, &dots(&[("a", 1), ("b", 1)])));
        assert!(covers(&read, &DotContext::new()));
        assert!(!covers(&read, &dots(&[("a", 3)])), "a write after the read");
        assert!(!covers(&DotContext::new(), &dots(&[("c", 1)])));
    }
}
