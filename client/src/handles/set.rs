//! Set keys: [`SetHandle`] and what it reads, [`SetValue`].

use crate::error::Error;
use crate::handles::handle::{option_setters, Handle};
use crate::proto::{CausalContext, ReadReport, Version};
use crate::types::{BucketType, DataOp, DataValue};

/// A set read: its members (sorted) and the context that lets a later
/// update remove them.
///
/// ```
/// use kvorum_client::{CausalContext, SetValue};
/// let s = SetValue { members: vec![b"a".to_vec()], context: CausalContext::empty(),
///     version: Default::default(), report: Default::default() };
/// assert!(s.contains(b"a"));
/// assert!(!s.contains(b"b"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetValue {
    /// The members, sorted.
    pub members: Vec<Vec<u8>>,
    /// Pass to [`SetHandle::remove`]: removes only what this read saw.
    pub context: CausalContext,
    /// Version of the merged state.
    pub version: Version,
    /// How many replicas were asked and answered, and whether they agreed.
    pub report: ReadReport,
}

impl SetValue {
    /// Whether `member` is in the set.
    ///
    /// ```
    /// use kvorum_client::{CausalContext, SetValue};
    /// let s = SetValue { members: vec![], context: CausalContext::empty(),
    ///     version: Default::default(), report: Default::default() };
    /// assert!(!s.contains(b"x"));
    /// ```
    pub fn contains(&self, member: &[u8]) -> bool {
        self.members.iter().any(|m| m == member)
    }
}

/// A set key (observed-remove: a remove removes only the additions the
/// remover's read observed, so a concurrent add wins).
///
/// ```no_run
/// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
/// let s = client.set("tags", b"post:1");
/// s.add_all([b"a".to_vec(), b"b".to_vec()]).await?;
/// let read = s.members().await?;
/// s.remove(b"a", &read.context).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SetHandle(pub(super) Handle);

option_setters!(SetHandle, "set(\"tags\", b\"t\")");

impl SetHandle {
    /// Adds one member.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// client.set("tags", b"post:1").add(b"rust").await?;
    /// # Ok(()) }
    /// ```
    pub async fn add(&self, member: &[u8]) -> Result<(), Error> {
        self.add_all([member.to_vec()]).await
    }

    /// Adds several members in one update.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// client.set("tags", b"post:1").add_all([b"x".to_vec(), b"y".to_vec()]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_all(&self, members: impl IntoIterator<Item = Vec<u8>>) -> Result<(), Error> {
        self.update(
            members.into_iter().collect(),
            Vec::new(),
            &CausalContext::empty(),
        )
        .await
    }

    /// Removes a member as `context` (from [`SetHandle::members`]) saw it.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let s = client.set("tags", b"post:1");
    /// let read = s.members().await?;
    /// if read.contains(b"rust") {
    ///     s.remove(b"rust", &read.context).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, member: &[u8], context: &CausalContext) -> Result<(), Error> {
        self.update(Vec::new(), vec![member.to_vec()], context)
            .await
    }

    /// Adds and removes members in one update.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let s = client.set("tags", b"post:1");
    /// let read = s.members().await?;
    /// s.update(vec![b"new".to_vec()], read.members.clone(), &read.context).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update(
        &self,
        add: Vec<Vec<u8>>,
        remove: Vec<Vec<u8>>,
        context: &CausalContext,
    ) -> Result<(), Error> {
        self.0
            .update(DataOp::SetUpdate { add, remove }, context)
            .await
            .map(|_| ())
    }

    /// The members at quorum R, with the context for removes.
    ///
    /// ```no_run
    /// # async fn f(client: kvorum_client::Client) -> Result<(), kvorum_client::Error> {
    /// let read = client.set("tags", b"post:1").members().await?;
    /// println!("{} members", read.members.len());
    /// # Ok(()) }
    /// ```
    pub async fn members(&self) -> Result<SetValue, Error> {
        let read = self
            .0
            .fetch_as(BucketType::Set, |v| match v {
                DataValue::Set(members) => Ok(members),
                other => Err(other),
            })
            .await?;
        Ok(SetValue {
            members: read.value,
            context: read.context,
            version: read.version,
            report: read.report,
        })
    }
}
