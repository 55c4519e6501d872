//! Sorted partitions on the wire: an item's address ([`ItemKey`]), what a
//! request does to one item ([`ItemOp`]), range reads ([`RangeQuery`]) and
//! what they answer ([`Page`], [`Item`]). docs/data-model.md describes the
//! model.

use super::request::{CausalContext, Condition, ReadOptions, WriteOptions};
use crate::types::{DataOp, DataValue};
use crate::version::{ReadReport, Version};
use serde::{Deserialize, Serialize};

/// The address of an item: a bucket, a partition key and a sort key.
///
/// The partition key places the item (every item of a partition has the
/// same N replicas); within a partition, items are sorted by sort key in
/// byte order. A key of the key-value API is the item with the empty sort
/// key.
///
/// ```
/// use kvorum_client::proto::ItemKey;
/// let k = ItemKey::new("inbox", b"alice", b"2026-12-06T10:00");
/// assert_eq!(k.partition, b"alice");
/// assert_eq!(ItemKey::new("b", b"k", b""), ItemKey::single("b", b"k"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ItemKey {
    /// The bucket.
    pub bucket: String,
    /// The partition key.
    #[serde(with = "crate::bytes")]
    pub partition: Vec<u8>,
    /// The sort key.
    #[serde(with = "crate::bytes")]
    pub sort: Vec<u8>,
}

impl ItemKey {
    /// The item `sort` of partition `partition` of `bucket`.
    ///
    /// ```
    /// let k = kvorum_client::proto::ItemKey::new("b", b"p", b"s");
    /// assert_eq!((k.bucket.as_str(), &k.sort[..]), ("b", &b"s"[..]));
    /// ```
    pub fn new(bucket: &str, partition: &[u8], sort: &[u8]) -> Self {
        Self {
            bucket: bucket.to_owned(),
            partition: partition.to_vec(),
            sort: sort.to_vec(),
        }
    }

    /// The item of a key of the key-value API (the empty sort key).
    ///
    /// ```
    /// assert!(kvorum_client::proto::ItemKey::single("b", b"k").sort.is_empty());
    /// ```
    pub fn single(bucket: &str, key: &[u8]) -> Self {
        Self::new(bucket, key, b"")
    }
}

/// What a request does to one item: the five operations of the key-value
/// API.
///
/// ```
/// use kvorum_client::proto::ItemOp;
/// use kvorum_client::{CausalContext, WriteOptions};
/// let put = ItemOp::put(b"hello", &CausalContext::empty(), WriteOptions::w(2));
/// assert!(put.is_write());
/// assert!(!ItemOp::Get { options: Default::default(), at_least: None }.is_write());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemOp {
    /// Read a register or LWW item (as [`Request::Get`](crate::proto::Request::Get)).
    Get {
        /// R and timeout.
        options: ReadOptions,
        /// A session's version the answer must reach.
        at_least: Option<Version>,
    },
    /// Read a counter, set or map item (as [`Request::Fetch`](crate::proto::Request::Fetch)).
    Fetch {
        /// R and timeout.
        options: ReadOptions,
        /// A session's version the answer must reach.
        at_least: Option<Version>,
    },
    /// Write a value (as [`Request::Put`](crate::proto::Request::Put)).
    Put {
        /// The value.
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
        /// Context of the read this write replaces.
        context: CausalContext,
        /// W and timeout.
        options: WriteOptions,
        /// What must hold for the write to be applied.
        condition: Condition,
        /// The write's time to live in milliseconds (`None`: the bucket's
        /// default, if any).
        ttl_ms: Option<u64>,
    },
    /// Delete (as [`Request::Delete`](crate::proto::Request::Delete)).
    Delete {
        /// Context of the read whose siblings this delete removes.
        context: CausalContext,
        /// W and timeout.
        options: WriteOptions,
    },
    /// A typed update (as [`Request::Update`](crate::proto::Request::Update)).
    Update {
        /// The update.
        op: DataOp,
        /// Context of an earlier read (what removes may remove).
        context: CausalContext,
        /// W and timeout.
        options: WriteOptions,
        /// What must hold for the update to be applied.
        condition: Condition,
        /// The update's time to live in milliseconds (`None`: the
        /// bucket's default, if any; without either, the key's lifetime
        /// is kept).
        ttl_ms: Option<u64>,
    },
}

impl ItemOp {
    /// A put of `value` replacing what `context` covers, with the options'
    /// quorum, condition and time to live.
    ///
    /// ```
    /// use kvorum_client::{proto::{Condition, ItemOp}, CausalContext, WriteOptions};
    /// let op = ItemOp::put(b"v", &CausalContext::empty(), WriteOptions::w(2).if_absent());
    /// assert_eq!(op.condition(), Condition::IfAbsent);
    /// ```
    pub fn put(value: &[u8], context: &CausalContext, options: WriteOptions) -> ItemOp {
        ItemOp::Put {
            value: value.to_vec(),
            context: context.clone(),
            options,
            condition: options.condition,
            ttl_ms: options.ttl_ms(),
        }
    }

    /// A typed update with the options' quorum, condition and time to live.
    ///
    /// ```
    /// use kvorum_client::{proto::ItemOp, CausalContext, DataOp, WriteOptions};
    /// use std::time::Duration;
    /// let o = WriteOptions::default().ttl(Duration::from_secs(60));
    /// let op = ItemOp::update(DataOp::Increment(1), &CausalContext::empty(), o);
    /// assert!(matches!(op, ItemOp::Update { ttl_ms: Some(60_000), .. }));
    /// ```
    pub fn update(op: DataOp, context: &CausalContext, options: WriteOptions) -> ItemOp {
        ItemOp::Update {
            op,
            context: context.clone(),
            options,
            condition: options.condition,
            ttl_ms: options.ttl_ms(),
        }
    }

    /// The operation's condition ([`Condition::None`] for reads and
    /// deletes).
    ///
    /// ```
    /// use kvorum_client::proto::{Condition, ItemOp};
    /// let op = ItemOp::put(b"v", &Default::default(), kvorum_client::WriteOptions::default().if_absent());
    /// assert_eq!(op.condition(), Condition::IfAbsent);
    /// ```
    pub fn condition(&self) -> Condition {
        match self {
            ItemOp::Put { condition, .. } | ItemOp::Update { condition, .. } => *condition,
            _ => Condition::None,
        }
    }

    /// The timeout the operation asks for.
    ///
    /// ```
    /// use kvorum_client::{proto::ItemOp, WriteOptions};
    /// let op = ItemOp::Delete { context: Default::default(), options: WriteOptions::default().timeout_ms(9) };
    /// assert_eq!(op.timeout_ms(), Some(9));
    /// ```
    pub fn timeout_ms(&self) -> Option<u32> {
        match self {
            ItemOp::Get { options, .. } | ItemOp::Fetch { options, .. } => options.timeout_ms,
            ItemOp::Put { options, .. }
            | ItemOp::Delete { options, .. }
            | ItemOp::Update { options, .. } => options.timeout_ms,
        }
    }

    /// Sets the timeout the operation asks for.
    ///
    /// ```
    /// use kvorum_client::proto::ItemOp;
    /// let mut op = ItemOp::Get { options: Default::default(), at_least: None };
    /// op.set_timeout_ms(250);
    /// assert_eq!(op.timeout_ms(), Some(250));
    /// ```
    pub fn set_timeout_ms(&mut self, ms: u32) {
        match self {
            ItemOp::Get { options, .. } | ItemOp::Fetch { options, .. } => {
                options.timeout_ms = Some(ms)
            }
            ItemOp::Put { options, .. }
            | ItemOp::Delete { options, .. }
            | ItemOp::Update { options, .. } => options.timeout_ms = Some(ms),
        }
    }

    /// True for puts, deletes and updates.
    ///
    /// ```
    /// use kvorum_client::proto::ItemOp;
    /// assert!(ItemOp::Delete { context: Default::default(), options: Default::default() }.is_write());
    /// ```
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            ItemOp::Put { .. } | ItemOp::Delete { .. } | ItemOp::Update { .. }
        )
    }
}

/// One end of a sort-key range.
///
/// ```
/// use kvorum_client::proto::SortBound;
/// assert_eq!(SortBound::default(), SortBound::Unbounded);
/// assert_eq!(SortBound::Included(b"a".to_vec()).key(), Some(&b"a"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortBound {
    /// No bound: the partition's first (or last) item.
    #[default]
    Unbounded,
    /// From or up to this sort key, itself included.
    Included(#[serde(with = "crate::bytes")] Vec<u8>),
    /// From or up to this sort key, itself left out.
    Excluded(#[serde(with = "crate::bytes")] Vec<u8>),
}

impl SortBound {
    /// The bound's sort key, if it has one.
    ///
    /// ```
    /// assert_eq!(kvorum_client::proto::SortBound::Unbounded.key(), None);
    /// ```
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            SortBound::Unbounded => None,
            SortBound::Included(k) | SortBound::Excluded(k) => Some(k),
        }
    }
}

/// A range read of one partition: the items whose sort key lies between
/// `low` and `high` (and starts with `prefix`), in sort-key order or in
/// reverse, one page at a time.
///
/// `low` is always the lower bound and `high` the upper one, whatever the
/// direction: a reverse read starts at `high`. A range whose `low` lies
/// above its `high` is refused with a typed error.
///
/// ```
/// use kvorum_client::proto::{RangeQuery, SortBound};
/// let q = RangeQuery::new("inbox", b"alice").prefix(b"2026-").reverse().limit(20);
/// assert_eq!((q.limit, q.reverse), (20, true));
/// let r = RangeQuery::new("b", b"p").between(SortBound::Included(b"a".to_vec()), SortBound::Excluded(b"m".to_vec()));
/// assert_eq!(r.high, SortBound::Excluded(b"m".to_vec()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeQuery {
    /// The bucket.
    pub bucket: String,
    /// The partition key.
    #[serde(with = "crate::bytes")]
    pub partition: Vec<u8>,
    /// The lower bound.
    pub low: SortBound,
    /// The upper bound.
    pub high: SortBound,
    /// Only sort keys that start with these bytes (empty: any).
    #[serde(with = "crate::bytes")]
    pub prefix: Vec<u8>,
    /// From the upper end down.
    pub reverse: bool,
    /// Most items in the page (0: the node's default,
    /// `limits.default_page_items`).
    pub limit: u32,
    /// Most bytes of values in the page, roughly (0: the node's
    /// `limits.max_page_bytes`). A page always holds at least one item.
    pub max_bytes: u32,
    /// Where the previous page ended ([`Page::next`]): this page continues
    /// past it.
    pub after: Option<Vec<u8>>,
    /// R, timeout and repair, as for a get.
    pub options: ReadOptions,
    /// A session's versions of items of the partition (sort key, version):
    /// each one inside the page's span must be in the merge at least at
    /// that version (as an item, or as its delete), else the node answers
    /// `Stale` ([`Session::read_page`](crate::Session::read_page) sets
    /// it). At most `limits.max_page_items` entries.
    pub at_least: Vec<(Vec<u8>, Version)>,
}

impl RangeQuery {
    /// The whole partition, forward, in pages of the node's default size.
    ///
    /// ```
    /// let q = kvorum_client::proto::RangeQuery::new("b", b"p");
    /// assert!(q.prefix.is_empty() && !q.reverse && q.after.is_none());
    /// ```
    pub fn new(bucket: &str, partition: &[u8]) -> Self {
        Self {
            bucket: bucket.to_owned(),
            partition: partition.to_vec(),
            ..Self::default()
        }
    }

    /// Between `low` and `high`.
    ///
    /// ```
    /// use kvorum_client::proto::{RangeQuery, SortBound};
    /// let q = RangeQuery::new("b", b"p").between(SortBound::Unbounded, SortBound::Included(b"z".to_vec()));
    /// assert_eq!(q.low, SortBound::Unbounded);
    /// ```
    pub fn between(mut self, low: SortBound, high: SortBound) -> Self {
        self.low = low;
        self.high = high;
        self
    }

    /// Only sort keys starting with `prefix`.
    ///
    /// ```
    /// assert_eq!(kvorum_client::proto::RangeQuery::new("b", b"p").prefix(b"x").prefix, b"x");
    /// ```
    pub fn prefix(mut self, prefix: &[u8]) -> Self {
        self.prefix = prefix.to_vec();
        self
    }

    /// From the upper end down.
    ///
    /// ```
    /// assert!(kvorum_client::proto::RangeQuery::new("b", b"p").reverse().reverse);
    /// ```
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// At most `items` items per page.
    ///
    /// ```
    /// assert_eq!(kvorum_client::proto::RangeQuery::new("b", b"p").limit(5).limit, 5);
    /// ```
    pub fn limit(mut self, items: u32) -> Self {
        self.limit = items;
        self
    }

    /// At most about `bytes` bytes of values per page.
    ///
    /// ```
    /// assert_eq!(kvorum_client::proto::RangeQuery::new("b", b"p").max_bytes(4096).max_bytes, 4096);
    /// ```
    pub fn max_bytes(mut self, bytes: u32) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Read options (R, timeout, repair before answering).
    ///
    /// ```
    /// use kvorum_client::{proto::RangeQuery, ReadOptions};
    /// assert_eq!(RangeQuery::new("b", b"p").options(ReadOptions::r(3)).options.r, Some(3));
    /// ```
    pub fn options(mut self, options: ReadOptions) -> Self {
        self.options = options;
        self
    }
}

/// What an item holds, by bucket type.
///
/// ```
/// use kvorum_client::proto::ItemValue;
/// let v = ItemValue::Siblings(vec![b"a".to_vec()]);
/// assert_eq!(v.siblings().map(|s| s.len()), Some(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemValue {
    /// A register's live values (more than one: concurrent writes), or an
    /// LWW item's one value.
    Siblings(Vec<Vec<u8>>),
    /// A counter's, set's or map's value.
    Data(DataValue),
}

impl ItemValue {
    /// The siblings of a register or LWW item.
    ///
    /// ```
    /// use kvorum_client::proto::{DataValue, ItemValue};
    /// assert_eq!(ItemValue::Data(DataValue::Counter(3)).siblings(), None);
    /// ```
    pub fn siblings(&self) -> Option<&[Vec<u8>]> {
        match self {
            ItemValue::Siblings(s) => Some(s),
            ItemValue::Data(_) => None,
        }
    }
}

/// One live item of a [`Page`].
///
/// ```
/// use kvorum_client::proto::{Item, ItemValue};
/// use kvorum_client::{CausalContext, Version};
/// let item = Item {
///     sort: b"s".to_vec(),
///     value: ItemValue::Siblings(vec![b"v".to_vec()]),
///     context: CausalContext::empty(),
///     version: Version::default(),
/// };
/// assert_eq!(item.sort, b"s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its sort key.
    #[serde(with = "crate::bytes")]
    pub sort: Vec<u8>,
    /// Its value (merged across the replicas asked).
    pub value: ItemValue,
    /// Its own causal context: pass it to the next write of this item.
    pub context: CausalContext,
    /// Its version.
    pub version: Version,
}

/// One page of a range read.
///
/// ```
/// use kvorum_client::proto::Page;
/// let last = Page::default();
/// assert!(last.items.is_empty() && last.next.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The live items of the page, in the read's order.
    pub items: Vec<Item>,
    /// Where this page ended, if the range goes on: pass it as
    /// [`RangeQuery::after`] for the next page. `None`: the range is done.
    pub next: Option<Vec<u8>>,
    /// The replicas the read asked and merged.
    pub report: ReadReport,
}

impl Page {
    /// A digest of the page's items (sort keys and versions): a range
    /// watch ([`WatchTarget::Range`]) wakes when the page its query reads
    /// has another one.
    ///
    /// ```
    /// use kvorum_client::proto::Page;
    /// assert_eq!(Page::default().fingerprint(), Page::default().fingerprint());
    /// ```
    pub fn fingerprint(&self) -> u64 {
        let summary: Vec<(&[u8], &Version)> = self
            .items
            .iter()
            .map(|i| (i.sort.as_slice(), &i.version))
            .collect();
        kvorum_ring::key_token(&crate::bytes::encode(&summary))
    }
}

/// What a watch waits for.
///
/// ```
/// use kvorum_client::proto::{ItemKey, WatchTarget};
/// use kvorum_client::Version;
/// let t = WatchTarget::Item { key: ItemKey::new("inbox", b"alice", b"m1"), known: Version::default() };
/// assert!(matches!(t, WatchTarget::Item { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchTarget {
    /// A state of the item whose version `known` does not dominate (a
    /// write the holder of `known` has not seen). The answer is the
    /// item's read (`Value`, `NotFound` or `Data`).
    Item {
        /// The item.
        key: ItemKey,
        /// The version the watcher holds (the empty version: any write).
        known: Version,
    },
    /// A page of `query` other than the one whose
    /// [`Page::fingerprint`] is `known`. The answer is the new page.
    Range {
        /// The range read whose page is watched.
        query: RangeQuery,
        /// The fingerprint of the page the watcher holds.
        known: u64,
    },
}
