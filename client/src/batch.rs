//! Batches: several item operations across partitions in one request,
//! one outcome each ([`Batch`], [`Outcome`]).

use crate::client::Client;
use crate::error::Error;
use crate::kv::Versioned;
use crate::partition::{versioned, with_timeout};
use crate::proto::{
    CausalContext, DataValue, ItemKey, ItemOp, ReadOptions, Request, Response, Version,
    WriteOptions,
};

impl Client {
    /// An empty batch of item operations on this client.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::CausalContext;
    /// let outcomes = client
    ///     .batch()
    ///     .put("inbox", b"alice", b"m1", b"hi", &CausalContext::empty())
    ///     .put("inbox", b"bob", b"m1", b"hey", &CausalContext::empty())
    ///     .get("inbox", b"carol", b"m9")
    ///     .send()
    ///     .await?;
    /// assert_eq!(outcomes.len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn batch(&self) -> Batch {
        Batch {
            client: self.clone(),
            ops: Vec::new(),
        }
    }
}

/// What one operation of a [`Batch`] answered.
///
/// ```
/// use kvorum_client::{CausalContext, Outcome, Version};
/// let o = Outcome::Written { context: CausalContext::empty(), version: Version::default() };
/// assert!(matches!(o, Outcome::Written { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A get's answer (no siblings: not found).
    Read(Versioned),
    /// A fetch's answer (`None`: not found).
    Fetched {
        /// The value.
        value: Option<DataValue>,
        /// Its context.
        context: CausalContext,
        /// Its version.
        version: Version,
    },
    /// A put, delete or update reached its W.
    Written {
        /// The written value's context.
        context: CausalContext,
        /// The write's version.
        version: Version,
    },
}

/// Several item operations, across partitions, in one request: each gets
/// its own outcome (one failing does not fail the others). Built with
/// [`Client::batch`].
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::{CausalContext, Outcome};
/// let outcomes = client.batch()
///     .put("inbox", b"alice", b"m2", b"lunch?", &CausalContext::empty())
///     .delete("inbox", b"alice", b"m1", &CausalContext::empty())
///     .send().await?;
/// for o in outcomes {
///     match o {
///         Ok(Outcome::Written { .. }) => {}
///         Ok(other) => println!("{other:?}"),
///         Err(e) => println!("failed: {e}"),
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Batch {
    client: Client,
    ops: Vec<(ItemKey, ItemOp)>,
}

impl Batch {
    /// Adds an operation.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// use kvorum_client::proto::{ItemKey, ItemOp};
    /// let b = client.batch().op(ItemKey::new("b", b"p", b"s"), ItemOp::Get { options: Default::default(), at_least: None });
    /// assert_eq!(b.len(), 1);
    /// # }
    /// ```
    pub fn op(mut self, key: ItemKey, op: ItemOp) -> Self {
        self.ops.push((key, op));
        self
    }

    /// Adds a get of an item.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// let b = client.batch().get("inbox", b"alice", b"m1");
    /// # let _ = b; }
    /// ```
    pub fn get(self, bucket: &str, partition: &[u8], sort: &[u8]) -> Self {
        let op = ItemOp::Get {
            options: ReadOptions::default(),
            at_least: None,
        };
        self.op(ItemKey::new(bucket, partition, sort), op)
    }

    /// Adds a put of an item.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// use kvorum_client::CausalContext;
    /// let b = client.batch().put("inbox", b"alice", b"m1", b"hi", &CausalContext::empty());
    /// # let _ = b; }
    /// ```
    pub fn put(
        self,
        bucket: &str,
        partition: &[u8],
        sort: &[u8],
        value: &[u8],
        context: &CausalContext,
    ) -> Self {
        let op = ItemOp::put(value, context, WriteOptions::default());
        self.op(ItemKey::new(bucket, partition, sort), op)
    }

    /// Adds a delete of an item.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// use kvorum_client::CausalContext;
    /// let b = client.batch().delete("inbox", b"alice", b"m1", &CausalContext::empty());
    /// # let _ = b; }
    /// ```
    pub fn delete(
        self,
        bucket: &str,
        partition: &[u8],
        sort: &[u8],
        context: &CausalContext,
    ) -> Self {
        let op = ItemOp::Delete {
            context: context.clone(),
            options: WriteOptions::default(),
        };
        self.op(ItemKey::new(bucket, partition, sort), op)
    }

    /// The number of operations so far.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// assert!(client.batch().is_empty());
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when no operation was added.
    ///
    /// ```no_run
    /// # fn f(client: kvorum_client::Client) {
    /// assert_eq!(client.batch().len(), 0);
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sends the batch: one outcome per operation, in order. The call
    /// itself fails only when no node answered it or the node refused it
    /// whole (too many operations, a missing grant). A batch with a write
    /// is not retried on another node once sent.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let outcomes = client.batch().get("inbox", b"alice", b"m1").send().await?;
    /// assert_eq!(outcomes.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn send(self) -> Result<Vec<Result<Outcome, Error>>, Error> {
        let idempotent = self.ops.iter().all(|(_, op)| !op.is_write());
        let fill = |t| self.client.pool.timeout_ms(t);
        let ops: Vec<_> = self
            .ops
            .into_iter()
            .map(|(k, op)| (k, with_timeout(op, fill)))
            .collect();
        let sent = ops.len();
        let fetches: Vec<bool> = ops
            .iter()
            .map(|(_, op)| matches!(op, ItemOp::Fetch { .. }))
            .collect();
        match self
            .client
            .pool
            .call(&Request::Batch(ops), idempotent)
            .await?
        {
            Response::Batch(answers) if answers.len() == sent => Ok(answers
                .into_iter()
                .zip(fetches)
                .map(|(a, fetch)| outcome(a, fetch))
                .collect()),
            Response::Batch(answers) => Err(Error::Protocol(format!(
                "a batch of {sent} operations got {} answers",
                answers.len()
            ))),
            other => Err(Error::of_answer(other)),
        }
    }
}

fn outcome(r: Response, fetch: bool) -> Result<Outcome, Error> {
    Ok(match r {
        Response::NotFound {
            context, version, ..
        } if fetch => Outcome::Fetched {
            value: None,
            context,
            version,
        },
        Response::Written { context, version } => Outcome::Written { context, version },
        Response::Data {
            value,
            context,
            version,
            ..
        } => Outcome::Fetched {
            value: Some(value),
            context,
            version,
        },
        r @ (Response::Value { .. } | Response::NotFound { .. }) => Outcome::Read(versioned(r)?),
        other => return Err(Error::of_answer(other)),
    })
}
