//! Counter keys: [`CounterHandle`] and what it reads, [`CounterValue`].

use crate::error::Error;
use crate::handles::handle::{option_setters, Handle};
use crate::proto::{CausalContext, ReadReport, Version};
use crate::types::{BucketType, DataOp, DataValue};

/// A counter key: increments from any client and any node add up.
///
/// An increment that fails with a timeout or [`Error::OutcomeUnknown`] may
/// still have been applied; retrying it may count it twice. The client
/// itself never retries an increment that was sent.
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::{ReadOptions, WriteOptions};
/// let c = client
///     .counter("stats", b"hits")
///     .write_options(WriteOptions::w(3))
///     .read_options(ReadOptions::r(3));
/// c.increment(5).await?;
/// c.increment(-2).await?;
/// assert!(c.value().await? >= 3);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CounterHandle(pub(super) Handle);

option_setters!(CounterHandle, "counter(\"stats\", b\"hits\")");

impl CounterHandle {
    /// Adds `by` (negative: subtracts) at quorum W.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// client.counter("stats", b"hits").increment(1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn increment(&self, by: i64) -> Result<(), Error> {
        self.0
            .update(DataOp::Increment(by), &CausalContext::empty())
            .await
            .map(|_| ())
    }

    /// The counter's value at quorum R (0 for a key never incremented).
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let n: i64 = client.counter("stats", b"hits").value().await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub async fn value(&self) -> Result<i64, Error> {
        self.read().await.map(|c| c.value)
    }

    /// The counter's value at quorum R, with its version and what the
    /// read's replicas did.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let read = client.counter("stats", b"hits").read().await?;
    /// println!("{} ({})", read.value, read.report);
    /// # Ok(()) }
    /// ```
    pub async fn read(&self) -> Result<CounterValue, Error> {
        let read = self
            .0
            .fetch_as(BucketType::Counter, |v| match v {
                DataValue::Counter(n) => Ok(n),
                other => Err(other),
            })
            .await?;
        Ok(CounterValue {
            value: read.value,
            version: read.version,
            report: read.report,
        })
    }
}

/// A counter read.
///
/// ```
/// use kvorum_client::CounterValue;
/// let c = CounterValue { value: 3, version: Default::default(), report: Default::default() };
/// assert_eq!(c.value, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterValue {
    /// The counter's value (0 for a key never incremented).
    pub value: i64,
    /// Version of the merged state.
    pub version: Version,
    /// How many replicas were asked and answered, and whether they agreed.
    pub report: ReadReport,
}
