//! The key-value API of [`Client`]: `get`, `put` and `delete` of register
//! keys (and their `_with` variants), and the typed reads and updates that
//! handles and sessions build on.

use crate::client::Client;
use crate::error::Error;
use crate::pool::Route;
use crate::proto::{
    CausalContext, DataOp, DataValue, ItemKey, ItemOp, ReadOptions, ReadReport, Request, Response,
    Version, WriteOptions,
};

/// A key's value(s) as a read saw them.
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// let v = client.get("users", b"alice").await?;
/// match v.siblings.len() {
///     0 => println!("not found"),
///     1 => println!("value: {:?}", v.siblings[0]),
///     n => println!("{n} concurrent values; resolve by writing with v.context"),
/// }
/// println!("{}", v.report); // e.g. "2 of 3 replicas answered (R=2), they agreed"
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The live values; empty when the key is not found, more than one when
    /// writes were concurrent.
    pub siblings: Vec<Vec<u8>>,
    /// Pass this to the next `put`/`delete` of the key.
    pub context: CausalContext,
    /// Version of the merged state the read answered with.
    pub version: Version,
    /// How many replicas were asked and answered, and whether they agreed.
    pub report: ReadReport,
}

impl Versioned {
    /// True when the key has at least one live value.
    ///
    /// ```
    /// # use kvorum_client::{Versioned, CausalContext};
    /// let v = Versioned { siblings: vec![], context: CausalContext::empty(),
    ///     version: Default::default(), report: Default::default() };
    /// assert!(!v.is_found());
    /// ```
    pub fn is_found(&self) -> bool {
        !self.siblings.is_empty()
    }

    /// The value when there is exactly one (no siblings).
    ///
    /// ```
    /// # use kvorum_client::{Versioned, CausalContext};
    /// let v = Versioned { siblings: vec![b"x".to_vec()], context: CausalContext::empty(),
    ///     version: Default::default(), report: Default::default() };
    /// assert_eq!(v.single(), Some(&b"x"[..]));
    /// ```
    pub fn single(&self) -> Option<&[u8]> {
        match self.siblings.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

impl Client {
    /// Reads a key with the bucket's default R.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let v = client.get("users", b"alice").await?;
    /// println!("{} sibling(s)", v.siblings.len());
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, bucket: &str, key: &[u8]) -> Result<Versioned, Error> {
        self.get_with(bucket, key, ReadOptions::default()).await
    }

    /// Reads a key with explicit R and timeout.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::ReadOptions;
    /// let v = client
    ///     .get_with("users", b"alice", ReadOptions::r(3).timeout_ms(500))
    ///     .await?;
    /// # let _ = v; Ok(()) }
    /// ```
    pub async fn get_with(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
    ) -> Result<Versioned, Error> {
        self.read(bucket, key, options, None, Route::default())
            .await
    }

    /// Writes a value with the bucket's default W. `context` is the context of
    /// the read this value replaces ([`CausalContext::empty`] for none: the
    /// value then becomes a sibling of any existing value). Returns the
    /// context of the written value.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let read = client.get("users", b"alice").await?;
    /// let ctx = client.put("users", b"alice", b"v2", &read.context).await?;
    /// # let _ = ctx; Ok(()) }
    /// ```
    pub async fn put(
        &self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        context: &CausalContext,
    ) -> Result<CausalContext, Error> {
        self.put_with(bucket, key, value, context, WriteOptions::default())
            .await
    }

    /// Writes a value with explicit W and timeout.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{CausalContext, WriteOptions};
    /// client
    ///     .put_with("users", b"bob", b"x", &CausalContext::empty(),
    ///         WriteOptions::w(3))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_with(
        &self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        self.write_full(bucket, key, Some(value), context, options)
            .await
            .map(|(context, _)| context)
    }

    /// Deletes the values a read returned (writes a tombstone) with the
    /// bucket's default W.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let read = client.get("users", b"alice").await?;
    /// client.delete("users", b"alice", &read.context).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(
        &self,
        bucket: &str,
        key: &[u8],
        context: &CausalContext,
    ) -> Result<CausalContext, Error> {
        self.delete_with(bucket, key, context, WriteOptions::default())
            .await
    }

    /// Deletes with explicit W and timeout.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::WriteOptions;
    /// let read = client.get("users", b"alice").await?;
    /// client.delete_with("users", b"alice", &read.context,
    ///     WriteOptions::w(1).timeout_ms(1000)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_with(
        &self,
        bucket: &str,
        key: &[u8],
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<CausalContext, Error> {
        self.write_full(bucket, key, None, context, options)
            .await
            .map(|(context, _)| context)
    }

    /// Writes `value` (`None`: a tombstone) as [`Client::put_with`] and
    /// [`Client::delete_with`] do; returns the version of the write too.
    pub(crate) async fn write_full(
        &self,
        bucket: &str,
        key: &[u8],
        value: Option<&[u8]>,
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<(CausalContext, Version), Error> {
        let (bucket, key, context) = (bucket.to_string(), key.to_vec(), context.clone());
        let options = WriteOptions {
            timeout_ms: Some(self.pool.timeout_ms(options.timeout_ms)),
            ..options
        };
        let req = match value {
            // A condition or a time to live travels in an item operation
            // (the key-value request's options have no room for them).
            Some(value) if options.needs_item_op() => Request::Item {
                key: ItemKey::single(&bucket, &key),
                op: ItemOp::put(value, &context, options),
            },
            Some(value) => Request::Put {
                bucket,
                key,
                value: value.to_vec(),
                context,
                options,
            },
            None => Request::Delete {
                bucket,
                key,
                context,
                options,
            },
        };
        self.write(&req).await
    }

    /// A read of a register key ([`Versioned`]) or of a counter, set or map
    /// key ([`Fetched`]) whose answer must reach `at_least`, sent as `route`
    /// says. A read is idempotent: it is retried on the next node after any
    /// connection failure.
    pub(crate) async fn read<A: ReadAnswer>(
        &self,
        bucket: &str,
        key: &[u8],
        options: ReadOptions,
        at_least: Option<Version>,
        route: Route,
    ) -> Result<A, Error> {
        let options = ReadOptions {
            timeout_ms: Some(self.pool.timeout_ms(options.timeout_ms)),
            ..options
        };
        let req = A::request(bucket.to_string(), key.to_vec(), options, at_least);
        let answer = self.pool.call_at(&req, true, route).await?;
        A::from_response(answer).map_err(Error::of_answer)
    }

    /// Applies an update to a counter, set or map key; returns the context
    /// and the version of the write.
    pub(crate) async fn update(
        &self,
        bucket: &str,
        key: &[u8],
        op: DataOp,
        context: &CausalContext,
        options: WriteOptions,
    ) -> Result<(CausalContext, Version), Error> {
        let options = WriteOptions {
            timeout_ms: Some(self.pool.timeout_ms(options.timeout_ms)),
            ..options
        };
        let req = if !options.needs_item_op() {
            Request::Update {
                bucket: bucket.to_string(),
                key: key.to_vec(),
                op,
                context: context.clone(),
                options,
            }
        } else {
            Request::Item {
                key: ItemKey::single(bucket, key),
                op: ItemOp::update(op, context, options),
            }
        };
        self.write(&req).await
    }

    /// Sends a write; returns the context and the version of what it wrote.
    pub(crate) async fn write(&self, req: &Request) -> Result<(CausalContext, Version), Error> {
        match self.pool.call(req, false).await? {
            Response::Written { context, version } => Ok((context, version)),
            other => Err(Error::of_answer(other)),
        }
    }
}

/// A typed read's answer in full.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub(crate) value: Option<DataValue>,
    pub(crate) context: CausalContext,
    pub(crate) version: Version,
    pub(crate) report: ReadReport,
}

/// What a read answers: [`Versioned`] (a `Get`) or [`Fetched`] (a `Fetch`).
pub(crate) trait ReadAnswer: Sized {
    /// The request that reads `key` of `bucket`.
    fn request(
        bucket: String,
        key: Vec<u8>,
        options: ReadOptions,
        at_least: Option<Version>,
    ) -> Request;

    /// The answer that `r` carries, or `r` back when it carries none.
    fn from_response(r: Response) -> Result<Self, Response>;

    /// Version of the state read.
    fn version(&self) -> &Version;
}

impl ReadAnswer for Versioned {
    fn request(
        bucket: String,
        key: Vec<u8>,
        options: ReadOptions,
        at_least: Option<Version>,
    ) -> Request {
        Request::Get {
            bucket,
            key,
            options,
            at_least,
        }
    }

    fn from_response(r: Response) -> Result<Self, Response> {
        match r {
            Response::Value {
                siblings,
                context,
                version,
                report,
            } => Ok(Versioned {
                siblings,
                context,
                version,
                report,
            }),
            Response::NotFound {
                context,
                version,
                report,
            } => Ok(Versioned {
                siblings: Vec::new(),
                context,
                version,
                report,
            }),
            other => Err(other),
        }
    }

    fn version(&self) -> &Version {
        &self.version
    }
}

impl ReadAnswer for Fetched {
    fn request(
        bucket: String,
        key: Vec<u8>,
        options: ReadOptions,
        at_least: Option<Version>,
    ) -> Request {
        Request::Fetch {
            bucket,
            key,
            options,
            at_least,
        }
    }

    fn from_response(r: Response) -> Result<Self, Response> {
        match r {
            Response::Data {
                value,
                context,
                version,
                report,
            } => Ok(Fetched {
                value: Some(value),
                context,
                version,
                report,
            }),
            Response::NotFound {
                context,
                version,
                report,
            } => Ok(Fetched {
                value: None,
                context,
                version,
                report,
            }),
            other => Err(other),
        }
    }

    fn version(&self) -> &Version {
        &self.version
    }
}
