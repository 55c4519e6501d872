//! Range reads of a sorted partition: ask R of the partition's replicas
//! for their records in the range, merge them item by item, cut the page
//! where every answer is complete, hide what is deleted, repair what
//! differs. docs/data-model.md describes the merge and the cut.

use super::coordinator::Coordinator;
use super::quorum::{outcome_of, quorum, QuorumStatus, QuorumTracker};
use super::read_repair::Repair;
use super::replica::RangeRecords;
use super::settings::too_large;
use crate::data::register;
use crate::data::value::{self, Reading, State};
use crate::metrics;
use crate::rpc::call::ask;
use crate::rpc::peer::{KeyBound, ReplicaRequest, ReplicaResponse};
use kvorum_client::proto::{
    ErrorReply, Item, ItemValue, Limit, OpKind, Page, RangeQuery, ReplicaOutcome, Response,
    SortBound, StaleRead, Version,
};
use kvorum_client::{BucketType, CausalContext, ReadReport};
use kvorum_ring::{item, NodeId};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::mpsc;

/// A replica's answer: its records in the range's order, and whether they
/// are all it holds there.
type Answer = Result<(RangeRecords, bool), ReplicaOutcome>;

/// A replica that answered: its records, and whether they are complete.
type Replied = (NodeId, RangeRecords, bool);

/// One end of a range of storage keys: the key and whether it is included.
#[derive(Debug, Clone, PartialEq, Eq)]
struct End {
    key: Vec<u8>,
    included: bool,
}

impl End {
    fn bound(&self) -> KeyBound {
        if self.included {
            KeyBound::Included(self.key.clone())
        } else {
            KeyBound::Excluded(self.key.clone())
        }
    }
}

/// Whether `key` lies between the ends `low` and `high`.
fn within(key: &[u8], low: &End, high: &End) -> bool {
    let above = match key.cmp(&low.key[..]) {
        Ordering::Greater => true,
        Ordering::Equal => low.included,
        Ordering::Less => false,
    };
    let below = match key.cmp(&high.key[..]) {
        Ordering::Less => true,
        Ordering::Equal => high.included,
        Ordering::Greater => false,
    };
    above && below
}

/// The tighter of two lower ends.
fn max_low(a: End, b: End) -> End {
    match a.key.cmp(&b.key) {
        Ordering::Less => b,
        Ordering::Greater => a,
        Ordering::Equal => End {
            included: a.included && b.included,
            ..a
        },
    }
}

/// The tighter of two upper ends.
fn min_high(a: End, b: End) -> End {
    match a.key.cmp(&b.key) {
        Ordering::Less => a,
        Ordering::Greater => b,
        Ordering::Equal => End {
            included: a.included && b.included,
            ..a
        },
    }
}

/// Whether the range from `low` to `high` holds no key.
fn is_empty(low: &End, high: &End) -> bool {
    match low.key.cmp(&high.key) {
        Ordering::Greater => true,
        Ordering::Equal => !(low.included && high.included),
        Ordering::Less => false,
    }
}

/// The smallest byte string above every string that starts with `prefix`,
/// or `None` if there is none (the prefix is all `0xff`).
fn past_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xff {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

impl Coordinator {
    /// Serves one page of a range read.
    pub(super) async fn range(&self, q: RangeQuery) -> Result<Response, ErrorReply> {
        let props = self.bucket(&q.bucket, &q.partition)?;
        for key in [
            q.low.key(),
            q.high.key(),
            Some(&q.prefix[..]),
            q.after.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            self.check_sort_key(key)?;
        }
        let limit = match q.limit as usize {
            0 => self.limits.default_page_items,
            n if n > self.limits.max_page_items => {
                return Err(too_large(Limit::PageItems, n, self.limits.max_page_items))
            }
            n => n,
        };
        if q.at_least.len() > self.limits.max_page_items {
            return Err(too_large(
                Limit::PageItems,
                q.at_least.len(),
                self.limits.max_page_items,
            ));
        }
        for (sort, _) in &q.at_least {
            self.check_sort_key(sort)?;
        }
        let max_bytes = match q.max_bytes as usize {
            0 => self.limits.max_page_bytes,
            n if n > self.limits.max_page_bytes => {
                return Err(too_large(Limit::PageBytes, n, self.limits.max_page_bytes))
            }
            n => n,
        };
        if let (Some(l), Some(h)) = (q.low.key(), q.high.key()) {
            let both = matches!(
                (&q.low, &q.high),
                (SortBound::Included(_), SortBound::Included(_))
            );
            if l > h || (l == h && !both) {
                return Err(ErrorReply::BadRequest(format!(
                    "the range's low bound {} is above its high bound {} (low is always the \
                     lower sort key; set reverse to read from the high end down)",
                    hex(l),
                    hex(h)
                )));
            }
        }
        let base = item::partition_prefix(&q.bucket, &q.partition);
        let at = |s: &[u8]| [&base[..], s].concat();
        let end_of = |b: &SortBound, low: bool| match b {
            SortBound::Unbounded if low => End {
                key: base.clone(),
                included: true,
            },
            // (The partition prefix ends with 0x00 0x00: past it is 0x00 0x01.)
            SortBound::Unbounded => End {
                key: past_prefix(&base).unwrap_or_default(),
                included: false,
            },
            SortBound::Included(s) => End {
                key: at(s),
                included: true,
            },
            SortBound::Excluded(s) => End {
                key: at(s),
                included: false,
            },
        };
        let mut low = end_of(&q.low, true);
        let mut high = end_of(&q.high, false);
        if !q.prefix.is_empty() {
            let p = at(&q.prefix);
            low = max_low(
                low,
                End {
                    key: p.clone(),
                    included: true,
                },
            );
            if let Some(past) = past_prefix(&p) {
                high = min_high(
                    high,
                    End {
                        key: past,
                        included: false,
                    },
                );
            }
        }
        if let Some(after) = &q.after {
            let cursor = End {
                key: at(after),
                included: false,
            };
            if q.reverse {
                high = min_high(high, cursor);
            } else {
                low = max_low(low, cursor);
            }
        }
        if is_empty(&low, &high) {
            return Ok(Response::Page(Page::default()));
        }
        let r = quorum(q.options.r, props.r, props.n)?;
        let timeout = self.timeout(q.options.timeout_ms);
        let pref = self.preference_list(&base, props.n)?;
        let ask = ReplicaRequest::Range {
            low: low.bound(),
            high: high.bound(),
            reverse: q.reverse,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
        };
        let deadline = self.env.clock.now() + timeout;
        let mut tracker = QuorumTracker::unasked(r, &pref);
        let (tx, mut rx) = mpsc::channel(pref.len());
        let mut unasked = self.read_order(&pref);
        for node in unasked.drain(..r.min(unasked.len())).collect::<Vec<_>>() {
            self.ask_range(&mut tracker, node, &ask, timeout, &tx);
        }
        let mut answers: Vec<Replied> = Vec::new();
        loop {
            let (ok, pending) = tracker.group_counts(&pref);
            if ok + pending < r && !unasked.is_empty() {
                let more = (r - ok - pending).min(unasked.len());
                for node in unasked.drain(..more).collect::<Vec<_>>() {
                    self.ask_range(&mut tracker, node, &ask, timeout, &tx);
                }
                continue;
            }
            if tracker.status() != QuorumStatus::Pending {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((node, Ok((items, complete))))) => {
                    let usable = items
                        .iter()
                        .all(|(_, s)| s.validate().is_ok() && s.bucket_type() == props.bucket_type);
                    if usable {
                        tracker.record(&node, ReplicaOutcome::Ok);
                        answers.push((node, items, complete));
                    } else {
                        tracker.record(
                            &node,
                            ReplicaOutcome::Failed("inconsistent state or type".into()),
                        );
                    }
                }
                Ok(Some((node, Err(outcome)))) => tracker.record(&node, outcome),
                Ok(None) => break,
                Err(_) => {
                    tracker.expire();
                    break;
                }
            }
        }
        drop(tx);
        self.count_replies("range", &tracker);
        if tracker.status() != QuorumStatus::Met {
            return Err(ErrorReply::Quorum(tracker.failure(OpKind::Read)));
        }
        let merged = Merged::of(&answers, q.reverse, props.bucket_type);
        // A session's versions of items: the merged version of each (the
        // tombstones' too), looked up before the page takes the merge.
        let wanted: HashMap<Vec<u8>, &Version> =
            q.at_least.iter().map(|(s, v)| (at(s), v)).collect();
        let versions: HashMap<Vec<u8>, Version> = merged
            .items
            .iter()
            .filter(|(k, _)| wanted.contains_key(k))
            .map(|(k, s)| (k.clone(), s.version()))
            .collect();
        let page = self
            .page(&q, merged, limit, max_bytes, &answers, deadline)
            .await;
        let report = ReadReport {
            asked: u8::try_from(tracker.asked_count()).unwrap_or(u8::MAX),
            r: u8::try_from(r).unwrap_or(u8::MAX),
            answered: u8::try_from(answers.len()).unwrap_or(u8::MAX),
            agreed: page.1,
        };
        // The page's span runs from where the read began to where the page
        // ended (or the read's end): every item of the session's inside it
        // must be there at least at the session's version, deleted or not.
        let end = page.0.next.as_ref().map(|s| End {
            key: at(s),
            included: true,
        });
        let (from, to) = match (q.reverse, end) {
            (false, Some(end)) => (low, end),
            (true, Some(end)) => (end, high),
            (_, None) => (low, high),
        };
        let behind = wanted.iter().any(|(k, v)| {
            within(k, &from, &to) && !versions.get(k).is_some_and(|have| have.dominates(v))
        });
        if behind {
            return Err(ErrorReply::Stale(StaleRead {
                asked: report.asked,
                answered: report.answered,
                replicas: tracker.failure(OpKind::Read).replicas,
            }));
        }
        Ok(Response::Page(Page { report, ..page.0 }))
    }

    /// The page of a merge: its live items up to the limits, where it ends,
    /// and whether the replicas agreed on every item of its span. Repairs
    /// the replicas that differ on an item of the span (before answering
    /// if the read asked, else in the background).
    async fn page(
        &self,
        q: &RangeQuery,
        merged: Merged,
        limit: usize,
        max_bytes: usize,
        answers: &[Replied],
        deadline: tokio::time::Instant,
    ) -> (Page, bool) {
        let Merged { items, cut } = merged;
        let mut page = Page::default();
        let mut end = cut;
        let mut bytes = 0usize;
        let mut span: Vec<(Vec<u8>, State)> = Vec::new();
        for (skey, state) in items {
            if page.items.len() >= limit || (!page.items.is_empty() && bytes >= max_bytes) {
                // Cut before this item: the page ends at the last one kept.
                end = span.last().map(|(k, _)| k.clone());
                break;
            }
            if let Some(live) = self.live_item(&skey, &state) {
                bytes += skey.len() + value_bytes(&live.value);
                page.items.push(live);
            }
            span.push((skey, state));
        }
        page.next = end.and_then(|k| item::sort_of(&k).map(<[u8]>::to_vec));
        // Read repair: each replica that answered and differs on an item of
        // the span (or lacks it) gets the merge.
        let mut agreed = true;
        let mut repairs: Vec<(Vec<u8>, State, Vec<NodeId>)> = Vec::new();
        // Each answer's records by key, once (not a scan per item).
        let held: Vec<(&NodeId, HashMap<&[u8], &State>)> = answers
            .iter()
            .map(|(n, records, _)| {
                let by_key = records.iter().map(|(k, s)| (k.as_slice(), s)).collect();
                (n, by_key)
            })
            .collect();
        for (skey, state) in span {
            let stale: Vec<NodeId> = held
                .iter()
                .filter(|(_, records)| records.get(skey.as_slice()) != Some(&&state))
                .map(|(n, _)| (*n).clone())
                .collect();
            if !stale.is_empty() {
                agreed = false;
                repairs.push((skey, state, stale));
            }
        }
        if !repairs.is_empty() {
            self.metrics
                .counter(metrics::READS_REPAIRED, &[])
                .increment(1);
            let sent = self.metrics.counter(metrics::READ_REPAIRS, &[]);
            let (me, replica, transport, clock) = (
                self.me.clone(),
                self.replica.clone(),
                self.transport.clone(),
                self.env.clock.clone(),
            );
            let work = async move {
                for (key, state, stale) in repairs {
                    let repair = Repair {
                        me: me.clone(),
                        key,
                        replica: replica.clone(),
                        transport: transport.clone(),
                        deadline,
                        clock: clock.clone(),
                        sent: sent.clone(),
                    };
                    repair.send(&state, &stale).await;
                }
            };
            if q.options.repair_before_answer {
                work.await;
            } else {
                tokio::spawn(work);
            }
        }
        (page, agreed)
    }

    /// The item a client sees of a merged state, `None` if it is deleted
    /// (a tombstone or an empty state).
    fn live_item(&self, skey: &[u8], state: &State) -> Option<Item> {
        let sort = item::sort_of(skey)?.to_vec();
        let version = state.version();
        let seal = |raw| self.contexts.seal(&item::seal_subject(skey), raw);
        let (value, context) = match self.reading(state) {
            Reading::Register(siblings, ctx) if !siblings.is_empty() => (
                ItemValue::Siblings(siblings),
                seal(register::encode_context(&ctx)),
            ),
            Reading::Lww(Some(v)) => (ItemValue::Siblings(vec![v]), CausalContext::empty()),
            Reading::Data(Some(v), clock) => {
                (ItemValue::Data(v), seal(value::encode_clock(&clock)))
            }
            _ => return None,
        };
        Some(Item {
            sort,
            value,
            context,
            version,
        })
    }

    /// Asks `node` for its records of the range; the answer arrives on `tx`
    /// (this node's own at once).
    fn ask_range(
        &self,
        tracker: &mut QuorumTracker,
        node: NodeId,
        req: &ReplicaRequest,
        timeout: std::time::Duration,
        tx: &mpsc::Sender<(NodeId, Answer)>,
    ) {
        tracker.ask(&node);
        if node == self.me {
            let ReplicaRequest::Range {
                low,
                high,
                reverse,
                limit,
                max_bytes,
            } = req
            else {
                return;
            };
            let res = self
                .replica
                .range(
                    low.as_bound(),
                    high.as_bound(),
                    *reverse,
                    *limit as usize,
                    *max_bytes as usize,
                )
                .map_err(|e| ReplicaOutcome::Failed(e.to_string()));
            let _ = tx.try_send((node, res));
            return;
        }
        let (tx, transport, req) = (tx.clone(), self.transport.clone(), req.clone());
        tokio::spawn(async move {
            let res = match ask(&*transport, &node, req, timeout).await {
                Ok(ReplicaResponse::Range { items, complete }) => Ok((items, complete)),
                Ok(other) => Err(ReplicaOutcome::Failed(format!(
                    "unexpected answer {other:?}"
                ))),
                Err(e) => Err(outcome_of(&e)),
            };
            let _ = tx.send((node, res)).await;
        });
    }
}

/// The merge of the replicas' answers: every item inside the span that all
/// of them cover, merged, in the read's order, and where that span ends if
/// some answer stopped short (`None`: the range is done).
struct Merged {
    items: Vec<(Vec<u8>, State)>,
    cut: Option<Vec<u8>>,
}

impl Merged {
    fn of(answers: &[Replied], reverse: bool, bucket_type: BucketType) -> Merged {
        // In the read's order, "before" is smaller forward, larger in reverse.
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        // The span every answer covers ends at the earliest last key of an
        // answer that stopped short.
        let mut cut: Option<Vec<u8>> = None;
        for (_, records, complete) in answers {
            if *complete {
                continue;
            }
            let Some((last, _)) = records.last() else {
                continue;
            };
            let nearer = cut.as_deref().is_none_or(|c| before(last, c));
            if nearer != crate::util::plant::planted(crate::util::plant::Bug::RangeCut)
                || cut.is_none()
            {
                cut = Some(last.clone());
            }
        }
        let inside = |k: &[u8]| cut.as_deref().is_none_or(|c| k == c || before(k, c));
        let mut by_key: BTreeMap<Vec<u8>, State> = BTreeMap::new();
        for (_, records, _) in answers {
            for (k, s) in records.iter().filter(|(k, _)| inside(k)) {
                let slot = by_key
                    .entry(k.clone())
                    .or_insert_with(|| State::empty(bucket_type));
                // Types were checked: the merge cannot fail.
                let _ = slot.merge(s.clone());
            }
        }
        let mut items: Vec<_> = by_key.into_iter().collect();
        if reverse {
            items.reverse();
        }
        Merged { items, cut }
    }
}

/// Bytes of an item's value, for the page's byte limit.
fn value_bytes(v: &ItemValue) -> usize {
    match v {
        ItemValue::Siblings(s) => s.iter().map(Vec::len).sum(),
        ItemValue::Data(d) => kvorum_client::bytes::encode(d).len(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_prefix_is_the_first_string_above_the_prefix() {
        assert_eq!(past_prefix(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(past_prefix(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(past_prefix(b"\xff\xff"), None);
        assert_eq!(past_prefix(b"\x00\x00"), Some(b"\x00\x01".to_vec()));
    }

    #[test]
    fn ends_combine_to_the_tighter() {
        let e = |k: &[u8], included| End {
            key: k.to_vec(),
            included,
        };
        assert_eq!(max_low(e(b"a", true), e(b"b", true)), e(b"b", true));
        assert_eq!(max_low(e(b"b", true), e(b"b", false)), e(b"b", false));
        assert_eq!(min_high(e(b"a", true), e(b"b", false)), e(b"a", true));
        assert!(is_empty(&e(b"b", true), &e(b"a", true)));
        assert!(is_empty(&e(b"a", true), &e(b"a", false)));
        assert!(!is_empty(&e(b"a", true), &e(b"a", true)));
    }
}
