//! Sorted partitions: [`Partition`], a handle on the items of one partition
//! key (read, write and delete by sort key, range reads page by page), the
//! client's range reads and partition listing ([`Client::read_page`],
//! [`Client::list_partitions`]); batches are in `batch.rs`.

use crate::client::Client;
use crate::error::Error;
use crate::kv::{ReadAnswer, Versioned};
use crate::pool::Route;
use crate::proto::{
    CausalContext, DataOp, DataValue, Item, ItemKey, ItemOp, Page, RangeQuery, ReadOptions,
    Request, Response, Version, WriteOptions,
};

/// The items of one partition of a bucket, by sort key.
///
/// Every item of a partition lives on the same N replicas, sorted by sort
/// key in byte order; the key-value API's key `k` is the item of partition
/// `k` with the empty sort key.
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::CausalContext;
/// let inbox = client.partition("inbox", b"alice");
/// inbox.put(b"2026-12-06T10:00", b"hello", &CausalContext::empty()).await?;
/// let newest = inbox.page(&inbox.range().reverse().limit(20)).await?;
/// for item in &newest.items {
///     println!("{:?}: {:?}", item.sort, item.value);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Partition {
    client: Client,
    bucket: String,
    key: Vec<u8>,
}

impl Client {
    /// A handle on partition `key` of `bucket`.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let orders = client.partition("orders", b"customer-42");
    /// # let _ = orders; }
    /// ```
    pub fn partition(&self, bucket: &str, key: &[u8]) -> Partition {
        Partition {
            client: self.clone(),
            bucket: bucket.to_owned(),
            key: key.to_vec(),
        }
    }

    /// One page of a range read.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::proto::RangeQuery;
    /// let page = client.read_page(&RangeQuery::new("inbox", b"alice").limit(10)).await?;
    /// println!("{} items, more: {}", page.items.len(), page.next.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn read_page(&self, query: &RangeQuery) -> Result<Page, Error> {
        self.read_page_at(query, Route::default()).await
    }

    /// [`Client::read_page`], sent as `route` says.
    pub(crate) async fn read_page_at(
        &self,
        query: &RangeQuery,
        route: Route,
    ) -> Result<Page, Error> {
        let mut query = query.clone();
        query.options.timeout_ms = Some(self.pool.timeout_ms(query.options.timeout_ms));
        match self
            .pool
            .call_at(&Request::Range(query), true, route)
            .await?
        {
            Response::Page(page) => Ok(page),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Every item of a range read, page after page, stopping after `max`
    /// items.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::proto::RangeQuery;
    /// let all = client.read_range(RangeQuery::new("inbox", b"alice").prefix(b"2026-"), 10_000).await?;
    /// # let _ = all; Ok(()) }
    /// ```
    pub async fn read_range(&self, mut query: RangeQuery, max: usize) -> Result<Vec<Item>, Error> {
        let mut items = Vec::new();
        while items.len() < max {
            let page = self.read_page(&query).await?;
            items.extend(page.items);
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        items.truncate(max);
        Ok(items)
    }

    /// One page of the partition keys of `bucket`, in byte order, past
    /// `after` (the previous page's `next`); returns the keys and the next
    /// page's `after` (`None`: done). Every member is asked: see
    /// docs/data-model.md for what a listing costs.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let (users, next) = client.list_partitions("inbox", None, 100).await?;
    /// println!("{} users, more: {}", users.len(), next.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn list_partitions(
        &self,
        bucket: &str,
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), Error> {
        let req = Request::ListPartitions {
            bucket: bucket.to_owned(),
            after: after.map(<[u8]>::to_vec),
            limit,
            timeout_ms: Some(self.pool.timeout_ms(None)),
        };
        match self.pool.call(&req, true).await? {
            Response::Partitions { keys, next } => Ok((keys, next)),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Sends one item request; the read answers are idempotent.
    async fn item(&self, key: ItemKey, op: ItemOp) -> Result<Response, Error> {
        let idempotent = !op.is_write();
        let op = with_timeout(op, |t| self.pool.timeout_ms(t));
        self.pool.call(&Request::Item { key, op }, idempotent).await
    }
}

/// `op` with its timeout filled from the client's default.
pub(crate) fn with_timeout(mut op: ItemOp, fill: impl Fn(Option<u32>) -> u32) -> ItemOp {
    op.set_timeout_ms(fill(op.timeout_ms()));
    op
}

impl Partition {
    /// The item's address.
    fn at(&self, sort: &[u8]) -> ItemKey {
        ItemKey::new(&self.bucket, &self.key, sort)
    }

    /// A range read of the whole partition, forward, to narrow down with
    /// [`RangeQuery`]'s builders and pass to [`Partition::page`].
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let q = client.partition("inbox", b"alice").range().prefix(b"2026-12").limit(50);
    /// # let _ = q; }
    /// ```
    pub fn range(&self) -> RangeQuery {
        RangeQuery::new(&self.bucket, &self.key)
    }

    /// One page of a range read of this partition (the query's bucket and
    /// partition are this handle's).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let inbox = client.partition("inbox", b"alice");
    /// let mut q = inbox.range().limit(100);
    /// loop {
    ///     let page = inbox.page(&q).await?;
    ///     // ... use page.items ...
    ///     match page.next { Some(next) => q.after = Some(next), None => break }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn page(&self, query: &RangeQuery) -> Result<Page, Error> {
        let query = RangeQuery {
            bucket: self.bucket.clone(),
            partition: self.key.clone(),
            ..query.clone()
        };
        self.client.read_page(&query).await
    }

    /// Deletes every live item of a range read (its bounds and prefix),
    /// page by page, each with the context the page gave it; returns how
    /// many were deleted. An item written after its page was read is not
    /// deleted (its context did not cover it), as with any delete.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let inbox = client.partition("inbox", b"alice");
    /// let gone = inbox.delete_range(inbox.range().prefix(b"2025-")).await?;
    /// println!("{gone} old messages deleted");
    /// # Ok(()) }
    /// ```
    pub async fn delete_range(&self, query: RangeQuery) -> Result<u64, Error> {
        let mut query = RangeQuery {
            bucket: self.bucket.clone(),
            partition: self.key.clone(),
            ..query
        };
        query.options.timeout_ms = Some(self.client.pool.timeout_ms(query.options.timeout_ms));
        let options = WriteOptions {
            timeout_ms: Some(self.client.pool.timeout_ms(None)),
            ..WriteOptions::default()
        };
        let mut total = 0;
        loop {
            let req = Request::DeleteRange {
                query: query.clone(),
                options,
            };
            match self.client.pool.call(&req, false).await? {
                Response::Deleted {
                    deleted,
                    mut errors,
                    failed,
                    next,
                } => {
                    total += deleted;
                    if failed > 0 {
                        let first = errors.pop().map_or_else(
                            || Error::Protocol(format!("{failed} deletes failed")),
                            Error::Server,
                        );
                        return Err(first);
                    }
                    match next {
                        Some(n) => query.after = Some(n),
                        None => return Ok(total),
                    }
                }
                other => return Err(Error::of_answer(other)),
            }
        }
    }

    /// Reads an item of a register or LWW bucket.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let v = client.partition("inbox", b"alice").get(b"m1").await?;
    /// println!("{:?}", v.single());
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, sort: &[u8]) -> Result<Versioned, Error> {
        self.get_with(sort, ReadOptions::default()).await
    }

    /// Reads an item with explicit R and timeout.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::ReadOptions;
    /// let v = client.partition("inbox", b"alice").get_with(b"m1", ReadOptions::r(3)).await?;
    /// # let _ = v; Ok(()) }
    /// ```
    pub async fn get_with(&self, sort: &[u8], options: ReadOptions) -> Result<Versioned, Error> {
        let answer = self
            .client
            .item(
                self.at(sort),
                ItemOp::Get {
                    options,
                    at_least: None,
                },
            )
            .await?;
        versioned(answer)
    }

    /// Writes an item of a register or LWW bucket; `context` is that of the
    /// read it replaces. Returns the written value's context.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::CausalContext;
    /// client.partition("inbox", b"alice").put(b"m1", b"hi", &CausalContext::empty()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put(
        &self,
        sort: &[u8],
        value: &[u8],
        context: &CausalContext,
    ) -> Result<CausalContext, Error> {
        self.put_with(sort, value, context, WriteOptions::default())
            .await
    }

    /// Writes an item with explicit W and timeout.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{CausalContext, WriteOptions};
    /// let p = client.partition("inbox", b"alice");
    /// p.put_with(b"m1", b"hi", &CausalContext::empty(), WriteOptions::w(3)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_with(
        &self,
        sort: &[u8],
        value: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        let op = ItemOp::put(value, context, options);
        written(self.client.item(self.at(sort), op).await?).map(|(c, _)| c)
    }

    /// Deletes an item (the values its context covers).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let p = client.partition("inbox", b"alice");
    /// let read = p.get(b"m1").await?;
    /// p.delete(b"m1", &read.context).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(
        &self,
        sort: &[u8],
        context: &CausalContext,
    ) -> Result<CausalContext, Error> {
        self.delete_with(sort, context, WriteOptions::default())
            .await
    }

    /// Deletes an item with explicit W and timeout.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{CausalContext, WriteOptions};
    /// let p = client.partition("inbox", b"alice");
    /// p.delete_with(b"m1", &CausalContext::empty(), WriteOptions::w(3)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_with(
        &self,
        sort: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        let op = ItemOp::Delete {
            context: context.clone(),
            options,
        };
        written(self.client.item(self.at(sort), op).await?).map(|(c, _)| c)
    }

    /// Applies a typed update (counter, set or map bucket) to an item.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{CausalContext, DataOp};
    /// let likes = client.partition("likes", b"post-7");
    /// likes.update(b"2026-12-06", DataOp::Increment(1), &CausalContext::empty()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update(
        &self,
        sort: &[u8],
        op: DataOp,
        context: &CausalContext,
    ) -> Result<CausalContext, Error> {
        let op = ItemOp::update(op, context, WriteOptions::default());
        written(self.client.item(self.at(sort), op).await?).map(|(c, _)| c)
    }

    /// Reads an item of a counter, set or map bucket: its value (`None`
    /// when absent) and context.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let (value, _ctx) = client.partition("likes", b"post-7").fetch(b"2026-12-06").await?;
    /// println!("{value:?}");
    /// # Ok(()) }
    /// ```
    pub async fn fetch(&self, sort: &[u8]) -> Result<(Option<DataValue>, CausalContext), Error> {
        let op = ItemOp::Fetch {
            options: ReadOptions::default(),
            at_least: None,
        };
        match self.client.item(self.at(sort), op).await? {
            Response::Data { value, context, .. } => Ok((Some(value), context)),
            Response::NotFound { context, .. } => Ok((None, context)),
            other => Err(Error::of_answer(other)),
        }
    }
}

/// A get's answer (`Value` or `NotFound`) as [`Versioned`].
pub(crate) fn versioned(r: Response) -> Result<Versioned, Error> {
    <Versioned as ReadAnswer>::from_response(r).map_err(Error::of_answer)
}

fn written(r: Response) -> Result<(CausalContext, Version), Error> {
    match r {
        Response::Written { context, version } => Ok((context, version)),
        other => Err(Error::of_answer(other)),
    }
}
