//! The read path: ask R replicas (more on failure, speculatively when late,
//! or to reach a session's version), merge the answers, repair the stale.

use super::coordinator::Coordinator;
use super::quorum::{outcome_of, QuorumStatus, QuorumTracker};
use super::read_repair::Repair;
use crate::data::register;
use crate::data::value::{self, Reading, State};
use crate::metrics;
use crate::rpc::call::ask;
use crate::rpc::peer::{ReplicaRequest, ReplicaResponse};
use kvorum_client::proto::{
    CausalContext, ErrorReply, OpKind, ReplicaOutcome, Response, StaleRead,
};
use kvorum_client::{BucketProps, ReadReport, Version};
use kvorum_ring::{item, NodeId};
use std::time::Duration;
use tokio::sync::mpsc;

impl Coordinator {
    /// Reads a key at quorum R and returns the merge of the answers
    /// (repairing stale replicas), with what the replicas did.
    ///
    /// With `at_least` (a session's version), R answers are not enough:
    /// the coordinator keeps merging answers, up to every replica, until
    /// the merge's version dominates `at_least`; if the replicas that
    /// answered in time (or every one not suspected down) do not reach it,
    /// the read fails with [`ErrorReply::Stale`] rather than answer older
    /// data.
    pub(super) async fn read(
        &self,
        skey: Vec<u8>,
        props: BucketProps,
        r: usize,
        timeout: Duration,
        repair_before_answer: bool,
        at_least: Option<&Version>,
    ) -> Result<(State, ReadReport), ErrorReply> {
        let bucket_type = props.bucket_type;
        let pref = self.preference_list(&skey, props.n)?;
        let mut tracker = QuorumTracker::unasked(r, &pref);
        let (tx, mut rx) = mpsc::channel(pref.len());
        // R replicas are asked first (R answers are what the quorum needs;
        // asking all N would cost a third more peer calls at N = 3, R = 2),
        // every replica on a `read_repair_chance` share of reads so that the
        // others are read-repaired too. Another replica is asked when one
        // fails, when R have not answered after `read_retry_after` (a
        // speculative retry: a stalled replica costs that delay, not the
        // timeout), and when the answers do not reach a session's version.
        let mut unasked = self.read_order(&pref);
        let first = if self.env.rng.chance(self.replication.read_repair_chance) {
            pref.len()
        } else {
            r
        };
        for node in unasked
            .drain(..first.min(unasked.len()))
            .collect::<Vec<_>>()
        {
            self.ask_read(&mut tracker, node, &skey, timeout, &tx);
        }
        // The state each replica that answered holds (none: the empty state).
        let mut answers: Vec<(NodeId, State)> = Vec::new();
        let mut merged = State::empty(bucket_type);
        let deadline = self.env.clock.now() + timeout;
        // (Within half the request's time, so that a short timeout still
        // leaves room for the retry.)
        let retry_after = self.replication.read_retry_after.min(timeout / 2);
        let mut retry_at = self.env.clock.now() + retry_after;
        let usable = move |s: &State| s.validate().is_ok() && s.bucket_type() == bucket_type;
        let reached = |m: &State| at_least.is_none_or(|v| m.version().dominates(v));
        loop {
            let (ok, pending) = tracker.group_counts(&pref);
            // Too few asked to still meet R (some failed): ask as many more.
            // R met below a session's version: ask every replica left.
            let more = if ok + pending < r {
                r - ok - pending
            } else if ok >= r && !reached(&merged) {
                unasked.len()
            } else {
                0
            };
            if more > 0 && !unasked.is_empty() {
                for node in unasked.drain(..more.min(unasked.len())).collect::<Vec<_>>() {
                    self.ask_read(&mut tracker, node, &skey, timeout, &tx);
                }
                continue;
            }
            match tracker.status() {
                QuorumStatus::Failed => break,
                QuorumStatus::Met if reached(&merged) => break,
                // The replicas still silent are all suspected down: waiting
                // for them would only spend the session's time.
                QuorumStatus::Met if tracker.pending().all(|n| !self.liveness.is_up(n)) => break,
                _ => {}
            }
            let speculate = !unasked.is_empty() && tracker.status() == QuorumStatus::Pending;
            let until = if speculate {
                retry_at.min(deadline)
            } else {
                deadline
            };
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some((node, Ok(state)))) => {
                    match state.unwrap_or_else(|| State::empty(bucket_type)) {
                        s if usable(&s) => {
                            tracker.record(&node, ReplicaOutcome::Ok);
                            // Types were checked: the merge cannot fail.
                            let _ = merged.merge(s.clone());
                            answers.push((node, s));
                        }
                        _ => tracker.record(
                            &node,
                            ReplicaOutcome::Failed("inconsistent state or type".into()),
                        ),
                    }
                }
                Ok(Some((node, Err(outcome)))) => tracker.record(&node, outcome),
                // (This loop holds a sender: not reached.)
                Ok(None) => break,
                Err(_) if self.env.clock.now() < deadline => {
                    // A speculative retry: R answers are late.
                    if let Some(node) = unasked.pop_front() {
                        self.metrics
                            .counter(metrics::READ_SPECULATIVE_RETRIES, &[])
                            .increment(1);
                        self.ask_read(&mut tracker, node, &skey, timeout, &tx);
                    }
                    retry_at = self.env.clock.now() + retry_after;
                }
                Err(_) => {
                    // The deadline: whoever has not answered timed out.
                    tracker.expire();
                    break;
                }
            }
        }
        // Late answers go to the repair below, which ends once every replica
        // asked answered (every sender is gone) or at the deadline.
        drop(tx);
        self.count_replies("read", &tracker);
        if tracker.status() != QuorumStatus::Met {
            return Err(ErrorReply::Quorum(tracker.failure(OpKind::Read)));
        }
        let report = ReadReport {
            asked: u8::try_from(tracker.asked_count()).unwrap_or(u8::MAX),
            r: u8::try_from(r).unwrap_or(u8::MAX),
            answered: u8::try_from(answers.len()).unwrap_or(u8::MAX),
            agreed: answers.iter().all(|(_, s)| *s == merged),
        };
        if !reached(&merged) {
            return Err(ErrorReply::Stale(StaleRead {
                asked: report.asked,
                answered: report.answered,
                replicas: tracker.failure(OpKind::Read).replicas,
            }));
        }
        // Read repair (Dynamo §4.7 / §5): replicas whose state differs from
        // the merge get the merge, now if the request asked, else after the
        // answer; replicas that answer after the quorum are repaired too.
        let repair = Repair {
            me: self.me.clone(),
            key: skey,
            replica: self.replica.clone(),
            transport: self.transport.clone(),
            deadline,
            clock: self.env.clock.clone(),
            sent: self.metrics.counter(metrics::READ_REPAIRS, &[]),
        };
        let needed_repair = self.metrics.counter(metrics::READS_REPAIRED, &[]);
        let mut repaired = Vec::new();
        let mut repaired_before = false;
        if repair_before_answer {
            let stale: Vec<NodeId> = answers
                .iter()
                .filter(|(_, s)| *s != merged)
                .map(|(n, _)| n.clone())
                .collect();
            repair.send(&merged, &stale).await;
            repaired_before = !stale.is_empty();
            repaired = answers.iter().map(|(n, _)| n.clone()).collect();
        }
        let answer_state = merged.clone();
        let answer = merged.clone();
        tokio::spawn(async move {
            // Late answers, until every replica answered or the deadline.
            // (A replica that answered with an error is skipped, not the end.)
            while let Ok(Some((node, answer))) =
                tokio::time::timeout_at(repair.deadline, rx.recv()).await
            {
                let Ok(state) = answer else { continue };
                let s = state.unwrap_or_else(|| State::empty(bucket_type));
                if usable(&s) && merged.merge(s.clone()).is_ok() {
                    answers.push((node, s));
                }
            }
            let stale: Vec<NodeId> = answers
                .iter()
                .filter(|(n, s)| *s != merged && !(repaired.contains(n) && answer_state == merged))
                .map(|(n, _)| n.clone())
                .collect();
            if repaired_before || !stale.is_empty() {
                needed_repair.increment(1);
            }
            repair.send(&merged, &stale).await;
        });
        Ok((answer, report))
    }

    /// The replicas of `pref` in the order a read asks them: this node
    /// first (its answer costs no round trip), then the replicas the failure
    /// detector sees up, from a turn that moves with every read (so a hot
    /// key's reads spread over its replicas), then the suspected ones.
    pub(super) fn read_order(&self, pref: &[NodeId]) -> std::collections::VecDeque<NodeId> {
        let mut order = std::collections::VecDeque::with_capacity(pref.len());
        let (mut up, mut down): (Vec<&NodeId>, Vec<&NodeId>) = pref
            .iter()
            .filter(|n| **n != self.me)
            .partition(|n| self.liveness.is_up(n));
        if !up.is_empty() {
            let turn = self
                .read_turn
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let k = turn % up.len();
            up.rotate_left(k);
        }
        if pref.contains(&self.me) {
            order.push_back(self.me.clone());
        }
        order.extend(up.drain(..).chain(down.drain(..)).cloned());
        order
    }

    /// Asks `node` for its state of `skey`; the answer arrives on `tx`
    /// (this node's own at once).
    fn ask_read(
        &self,
        tracker: &mut QuorumTracker,
        node: NodeId,
        skey: &[u8],
        timeout: Duration,
        tx: &mpsc::Sender<(NodeId, Result<Option<State>, ReplicaOutcome>)>,
    ) {
        tracker.ask(&node);
        if node == self.me {
            let res = self
                .replica
                .read(skey)
                .map_err(|e| ReplicaOutcome::Failed(e.to_string()));
            // The channel holds one answer per replica: this one fits.
            let _ = tx.try_send((node, res));
            return;
        }
        let tx = tx.clone();
        let transport = self.transport.clone();
        let key = skey.to_vec();
        tokio::spawn(async move {
            let res = match ask(&*transport, &node, ReplicaRequest::Read { key }, timeout).await {
                Ok(ReplicaResponse::State(s)) => Ok(s),
                Ok(other) => Err(ReplicaOutcome::Failed(format!(
                    "unexpected answer {other:?}"
                ))),
                Err(e) => Err(outcome_of(&e)),
            };
            let _ = tx.send((node, res)).await;
        });
    }
}

impl Coordinator {
    /// What a client sees of a merged `state` now, by this node's clock
    /// (the clock expiry is stamped with): what expired is left out, and
    /// counted.
    pub(super) fn reading(&self, state: &State) -> Reading {
        let now = if crate::util::plant::planted(crate::util::plant::Bug::ExpiryIgnored) {
            0
        } else {
            self.env.clock.lww_ms()
        };
        if state.hides_expired(now) {
            self.metrics
                .counter(metrics::ITEMS_EXPIRED, &[])
                .increment(1);
        }
        state.read(now)
    }

    /// What a get or fetch of a key answers for its merged `state` (also
    /// the current read a failed condition carries).
    pub(super) fn answer(&self, skey: &[u8], state: &State, report: ReadReport) -> Response {
        let seal = |raw| self.contexts.seal(&item::seal_subject(skey), raw);
        let version = state.version();
        match self.reading(state) {
            Reading::Register(siblings, ctx) if !siblings.is_empty() => Response::Value {
                siblings,
                context: seal(register::encode_context(&ctx)),
                version,
                report,
            },
            Reading::Register(_, ctx) => Response::NotFound {
                context: seal(register::encode_context(&ctx)),
                version,
                report,
            },
            Reading::Lww(Some(v)) => Response::Value {
                siblings: vec![v],
                context: CausalContext::empty(),
                version,
                report,
            },
            Reading::Lww(None) => Response::NotFound {
                context: CausalContext::empty(),
                version,
                report,
            },
            Reading::Data(Some(value), clock) => Response::Data {
                value,
                context: seal(value::encode_clock(&clock)),
                version,
                report,
            },
            Reading::Data(None, clock) => Response::NotFound {
                context: seal(value::encode_clock(&clock)),
                version,
                report,
            },
        }
    }
}
