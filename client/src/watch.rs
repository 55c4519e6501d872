//! Watches: long polls for a change of an item or of a range's page, and
//! the change loops built on them ([`Changes`], [`RangeChanges`]).

use crate::client::Client;
use crate::error::Error;
use crate::kv::Versioned;
use crate::proto::{
    ErrorReply, ItemKey, Page, RangeQuery, Request, Response, Version, WatchTarget,
};
use std::time::Duration;

/// How long one long poll of a change loop waits before it asks again.
const LOOP_WAIT: Duration = Duration::from_secs(30);
/// The pause before a change loop asks again after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

impl Client {
    /// Waits up to `wait` for a state of an item (register or LWW bucket)
    /// whose version `known` does not dominate: a write the holder of
    /// `known` has not seen. `Ok(None)`: nothing changed in time.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::proto::ItemKey;
    /// use std::time::Duration;
    /// let key = ItemKey::new("inbox", b"alice", b"m1");
    /// let now = client.partition("inbox", b"alice").get(b"m1").await?;
    /// if let Some(newer) = client.watch(key, &now.version, Duration::from_secs(10)).await? {
    ///     println!("changed: {:?}", newer.siblings);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(
        &self,
        key: ItemKey,
        known: &Version,
        wait: Duration,
    ) -> Result<Option<Versioned>, Error> {
        let target = WatchTarget::Item {
            key,
            known: known.clone(),
        };
        match self.watch_target(target, wait).await? {
            Response::Unchanged => Ok(None),
            r @ (Response::Value { .. } | Response::NotFound { .. }) => {
                Ok(Some(crate::partition::versioned(r)?))
            }
            other => Err(Error::of_answer(other)),
        }
    }

    /// Waits up to `wait` for the page `query` reads to differ from the one
    /// whose [`Page::fingerprint`] is `known`. `Ok(None)`: nothing changed.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::proto::RangeQuery;
    /// use std::time::Duration;
    /// let q = RangeQuery::new("inbox", b"alice").reverse().limit(10);
    /// let page = client.read_page(&q).await?;
    /// if let Some(newer) = client.watch_range(&q, page.fingerprint(), Duration::from_secs(10)).await? {
    ///     println!("{} items now", newer.items.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch_range(
        &self,
        query: &RangeQuery,
        known: u64,
        wait: Duration,
    ) -> Result<Option<Page>, Error> {
        let target = WatchTarget::Range {
            query: query.clone(),
            known,
        };
        match self.watch_target(target, wait).await? {
            Response::Unchanged => Ok(None),
            Response::Page(page) => Ok(Some(page)),
            other => Err(Error::of_answer(other)),
        }
    }

    async fn watch_target(&self, target: WatchTarget, wait: Duration) -> Result<Response, Error> {
        let timeout_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1);
        self.pool
            .call(&Request::Watch { target, timeout_ms }, true)
            .await
    }

    /// A change loop on an item: each [`Changes::next`] returns the item's
    /// next state (the first call: any state newer than `known`).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{proto::ItemKey, Version};
    /// let mut changes = client.changes(ItemKey::new("inbox", b"alice", b"m1"), Version::default());
    /// loop {
    ///     let now = changes.next().await?;
    ///     println!("{:?}", now.siblings);
    /// }
    /// # }
    /// ```
    pub fn changes(&self, key: ItemKey, known: Version) -> Changes {
        Changes {
            client: self.clone(),
            key,
            known,
        }
    }

    /// A change loop on a range's page: the first [`RangeChanges::next`]
    /// returns the page as it is, each later one the next page that
    /// differs.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::proto::RangeQuery;
    /// let mut newest = client.range_changes(RangeQuery::new("inbox", b"alice").reverse().limit(5));
    /// loop {
    ///     let page = newest.next().await?;
    ///     println!("{} newest", page.items.len());
    /// }
    /// # }
    /// ```
    pub fn range_changes(&self, query: RangeQuery) -> RangeChanges {
        RangeChanges {
            client: self.clone(),
            query,
            known: None,
        }
    }
}

/// Whether a change loop should give up on `e` (a request that cannot
/// succeed) rather than ask again.
fn is_final(e: &Error) -> bool {
    matches!(
        e,
        Error::Server(
            ErrorReply::BadRequest(_)
                | ErrorReply::UnknownBucket(_)
                | ErrorReply::WrongType { .. }
                | ErrorReply::TooLarge { .. }
                | ErrorReply::Forbidden(_)
                | ErrorReply::InvalidQuorum { .. }
        ) | Error::Protocol(_)
    )
}

/// A change loop on one item (see [`Client::changes`]).
///
/// What it can miss: nothing that lasts. Every long poll starts with a
/// quorum read compared by version, so a write made while no poll was
/// waiting (between two polls, or while the node was unreachable) is
/// returned by the next poll. Two writes that land within one poll
/// interval come back as one state (the later, merged). After a failure
/// (a node down, a quorum not met) the loop pauses 200 ms and polls again,
/// through the next node.
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::{proto::ItemKey, Version};
/// let mut c = client.changes(ItemKey::new("b", b"p", b"s"), Version::default());
/// let first = c.next().await?;
/// # let _ = first; Ok(()) }
/// ```
pub struct Changes {
    client: Client,
    key: ItemKey,
    known: Version,
}

impl Changes {
    /// The item's next state: the first one whose version the last one
    /// returned (or the `known` the loop began with) does not dominate.
    ///
    /// ```no_run
    /// # async fn f(mut c: kvorum_client::Changes) -> Result<(), kvorum_client::Error> {
    /// let v = c.next().await?;
    /// println!("{:?} at {:?}", v.siblings, v.version);
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Result<Versioned, Error> {
        loop {
            match self
                .client
                .watch(self.key.clone(), &self.known, LOOP_WAIT)
                .await
            {
                Ok(Some(v)) => {
                    self.known = v.version.clone();
                    return Ok(v);
                }
                Ok(None) => {}
                Err(e) if is_final(&e) => return Err(e),
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }
}

/// A change loop on a range's page (see [`Client::range_changes`]); it
/// recovers from failures as [`Changes`] does.
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::proto::RangeQuery;
/// let mut c = client.range_changes(RangeQuery::new("b", b"p"));
/// let now = c.next().await?;
/// # let _ = now; Ok(()) }
/// ```
pub struct RangeChanges {
    client: Client,
    query: RangeQuery,
    known: Option<u64>,
}

impl RangeChanges {
    /// The page now (the first call), then each page that differs from
    /// the last one returned.
    ///
    /// ```no_run
    /// # async fn f(mut c: kvorum_client::RangeChanges) -> Result<(), kvorum_client::Error> {
    /// let page = c.next().await?;
    /// # let _ = page; Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Result<Page, Error> {
        loop {
            let answer = match self.known {
                None => self.client.read_page(&self.query).await.map(Some),
                Some(known) => self.client.watch_range(&self.query, known, LOOP_WAIT).await,
            };
            match answer {
                Ok(Some(page)) => {
                    self.known = Some(page.fingerprint());
                    return Ok(page);
                }
                Ok(None) => {}
                Err(e) if is_final(&e) => return Err(e),
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }
}
