//! Sessions over sorted partitions: item writes whose versions the session
//! keeps, and range pages that reflect them. For the items a session
//! touched, a page holds what it wrote (or something newer) and never goes
//! back on what it read: the page carries the session's versions of the
//! partition's items (`RangeQuery::at_least`), the node answers `Stale`
//! when its merge of the replicas does not reach one inside the page's
//! span, and the session asks another node (as a session get does).

use super::{item_store_key, partition_store_prefix, Session, ATTEMPT_SLACK};
use crate::error::Error;
use crate::partition::with_timeout;
use crate::pool::Route;
use crate::proto::{
    CausalContext, Item, ItemKey, ItemOp, Page, RangeQuery, ReadOptions, Request, Response,
    SortBound, Version, WriteOptions,
};
use std::time::Duration;

/// Most item versions one page read carries: the node's default
/// `limits.max_page_items`. Beyond it (a session that touched more items
/// of a partition inside one query's bounds), the items nearest the
/// page's start are checked.
///
/// ```
/// assert_eq!(kvorum_client::MAX_SESSION_ITEMS_PER_PAGE, 1000);
/// ```
pub const MAX_SESSION_ITEMS_PER_PAGE: usize = 1000;

impl Session {
    /// Writes an item (see [`Partition::put_with`](crate::Partition::put_with));
    /// the session remembers the write's version.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{CausalContext, WriteOptions};
    /// let session = client.session();
    /// session
    ///     .put_item("inbox", b"alice", b"0001", b"hi", &CausalContext::empty(), WriteOptions::w(1))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_item(
        &self,
        bucket: &str,
        partition: &[u8],
        sort: &[u8],
        value: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        let op = ItemOp::put(value, context, options);
        self.write_item(ItemKey::new(bucket, partition, sort), op)
            .await
    }

    /// Deletes an item with the context a read gave; later session pages
    /// see the delete or something newer.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::WriteOptions;
    /// let session = client.session();
    /// if let Some(item) = session.get_item("inbox", b"alice", b"0001", Default::default()).await? {
    ///     session
    ///         .delete_item("inbox", b"alice", b"0001", &item.context, WriteOptions::default())
    ///         .await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn delete_item(
        &self,
        bucket: &str,
        partition: &[u8],
        sort: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        let op = ItemOp::Delete {
            context: context.clone(),
            options,
        };
        self.write_item(ItemKey::new(bucket, partition, sort), op)
            .await
    }

    /// Reads one item (a page of it alone) at least at the session's
    /// version; `None` if it is deleted or was never written.
    ///
    /// ```no_run
    /// # async fn f(session: kvorum_client::Session) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::ReadOptions;
    /// let item = session.get_item("inbox", b"alice", b"0001", ReadOptions::r(1)).await?;
    /// println!("{:?}", item.map(|i| i.value));
    /// # Ok(()) }
    /// ```
    pub async fn get_item(
        &self,
        bucket: &str,
        partition: &[u8],
        sort: &[u8],
        options: ReadOptions,
    ) -> Result<Option<Item>, Error> {
        let one = SortBound::Included(sort.to_vec());
        let q = RangeQuery::new(bucket, partition)
            .between(one.clone(), one)
            .limit(1)
            .options(options);
        Ok(self.read_page(&q).await?.items.into_iter().next())
    }

    /// Reads one page of a range (see [`Client::read_page`](crate::Client::read_page)):
    /// every item of the session's inside the page's span is there at least
    /// at the session's version (or deleted, if the session deleted it), on
    /// whichever node and at whichever R. The query's timeout bounds the
    /// whole read, retries on other nodes included; when no node can
    /// answer so in time, [`Error::Stale`]. The items read are remembered.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{proto::RangeQuery, CausalContext, ReadOptions, WriteOptions};
    /// let session = client.session();
    /// session
    ///     .put_item("inbox", b"alice", b"0002", b"lunch?", &CausalContext::empty(), WriteOptions::w(1))
    ///     .await?;
    /// // At R = 1, through any node: the page holds the write.
    /// let page = session
    ///     .read_page(&RangeQuery::new("inbox", b"alice").options(ReadOptions::r(1)))
    ///     .await?;
    /// assert!(page.items.iter().any(|i| i.sort == b"0002"));
    /// # Ok(()) }
    /// ```
    pub async fn read_page(&self, query: &RangeQuery) -> Result<Page, Error> {
        let prefix = partition_store_prefix(&query.bucket, &query.partition);
        let mut at_least: Vec<(Vec<u8>, Version)> = self
            .store()
            .with_prefix(&prefix, usize::MAX)
            .into_iter()
            .filter(|(sort, _)| in_query(query, sort))
            .collect();
        at_least.sort_by(|a, b| a.0.cmp(&b.0));
        if query.reverse {
            at_least.reverse();
        }
        at_least.truncate(MAX_SESSION_ITEMS_PER_PAGE);
        let budget =
            Duration::from_millis(self.client.pool.timeout_ms(query.options.timeout_ms).into());
        let page = if at_least.is_empty() {
            self.client.read_page(query).await?
        } else {
            self.until_fresh(&query.bucket, budget, |ms, node| {
                let mut q = query.clone();
                q.at_least = at_least.clone();
                q.options.timeout_ms = Some(ms);
                async move {
                    let route = Route {
                        start: Some(node),
                        slack: Some(ATTEMPT_SLACK),
                    };
                    self.client.read_page_at(&q, route).await
                }
            })
            .await?
        };
        let mut store = self.store();
        for item in &page.items {
            let key = item_store_key(&query.bucket, &query.partition, &item.sort);
            store.observe(&key, &item.version);
        }
        Ok(page)
    }

    async fn write_item(&self, key: ItemKey, op: ItemOp) -> Result<CausalContext, Error> {
        let op = with_timeout(op, |t| self.client.pool.timeout_ms(t));
        let req = Request::Item {
            key: key.clone(),
            op,
        };
        match self.client.pool.call(&req, false).await? {
            Response::Written { context, version } => {
                let skey = item_store_key(&key.bucket, &key.partition, &key.sort);
                self.store().observe(&skey, &version);
                Ok(context)
            }
            other => Err(Error::of_answer(other)),
        }
    }
}

/// Whether sort key `sort` is inside the query's bounds, prefix and
/// continuation.
fn in_query(q: &RangeQuery, sort: &[u8]) -> bool {
    let above = match &q.low {
        SortBound::Unbounded => true,
        SortBound::Included(l) => sort >= &l[..],
        SortBound::Excluded(l) => sort > &l[..],
    };
    let below = match &q.high {
        SortBound::Unbounded => true,
        SortBound::Included(h) => sort <= &h[..],
        SortBound::Excluded(h) => sort < &h[..],
    };
    let past = match (&q.after, q.reverse) {
        (None, _) => true,
        (Some(a), false) => sort > &a[..],
        (Some(a), true) => sort < &a[..],
    };
    above && below && past && sort.starts_with(&q.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_holds_the_sort_keys_of_its_bounds_prefix_and_continuation() {
        let q = RangeQuery::new("b", b"p")
            .between(
                SortBound::Included(b"b".to_vec()),
                SortBound::Excluded(b"m".to_vec()),
            )
            .prefix(b"c");
        assert!(in_query(&q, b"c1"));
        assert!(!in_query(&q, b"d1"), "outside the prefix");
        assert!(!in_query(&q, b"a"), "below the low bound");
        let mut q = RangeQuery::new("b", b"p");
        q.after = Some(b"k".to_vec());
        assert!(in_query(&q, b"l") && !in_query(&q, b"k"));
        q.reverse = true;
        assert!(in_query(&q, b"j") && !in_query(&q, b"l"));
    }
}
