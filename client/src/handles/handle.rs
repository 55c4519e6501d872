//! What every typed handle holds, and the reads and updates they share.

use crate::client::Client;
use crate::error::Error;
use crate::kv::Fetched;
use crate::pool::Route;
use crate::proto::{CausalContext, ReadOptions, ReadReport, Version, WriteOptions};
use crate::session::Session;
use crate::types::{BucketType, DataOp, DataValue};

/// What every handle holds.
#[derive(Debug, Clone)]
pub(super) struct Handle {
    client: Client,
    /// Reads and updates go through this session, if any.
    session: Option<Session>,
    bucket: String,
    key: Vec<u8>,
    pub(super) read: ReadOptions,
    pub(super) write: WriteOptions,
}

impl Handle {
    pub(super) fn new(client: &Client, bucket: &str, key: &[u8]) -> Self {
        Self {
            client: client.clone(),
            session: None,
            bucket: bucket.to_string(),
            key: key.to_vec(),
            read: ReadOptions::default(),
            write: WriteOptions::default(),
        }
    }

    pub(super) fn with_session(session: &Session, bucket: &str, key: &[u8]) -> Self {
        Self {
            session: Some(session.clone()),
            ..Self::new(session.client(), bucket, key)
        }
    }

    /// A read of the key whose value must be of the handle's type `want`:
    /// `take` takes it out of the value, or gives the value back when it is
    /// of another type. A key with no state reads as `T::default()`.
    pub(super) async fn fetch_as<T: Default>(
        &self,
        want: BucketType,
        take: fn(DataValue) -> Result<T, DataValue>,
    ) -> Result<Read<T>, Error> {
        let f = self.fetch().await?;
        let value = match f.value.map(take) {
            None => T::default(),
            Some(Ok(value)) => value,
            Some(Err(other)) => return Err(self.mismatch(want, &other)),
        };
        Ok(Read {
            value,
            context: f.context,
            version: f.version,
            report: f.report,
        })
    }

    async fn fetch(&self) -> Result<Fetched, Error> {
        match &self.session {
            Some(s) => s.read(&self.bucket, &self.key, self.read).await,
            None => {
                self.client
                    .read(&self.bucket, &self.key, self.read, None, Route::default())
                    .await
            }
        }
    }

    pub(super) async fn update(
        &self,
        op: DataOp,
        ctx: &CausalContext,
    ) -> Result<CausalContext, Error> {
        let (context, version) = self
            .client
            .update(&self.bucket, &self.key, op, ctx, self.write)
            .await?;
        if let Some(s) = &self.session {
            s.observe(&self.bucket, &self.key, &version);
        }
        Ok(context)
    }

    /// The error for a value of another type than the handle's (the node
    /// checks types, so this only shows a node answering out of protocol).
    fn mismatch(&self, want: BucketType, got: &DataValue) -> Error {
        Error::Protocol(format!(
            "bucket {:?}: expected a {want} value, got {got:?}",
            self.bucket
        ))
    }
}

/// A typed read: the value, and the read's context, version and report.
pub(super) struct Read<T> {
    pub(super) value: T,
    pub(super) context: CausalContext,
    pub(super) version: Version,
    pub(super) report: ReadReport,
}

/// The read and write option setters of a handle type: `$handle` holds a
/// [`Handle`]; `$make` is the call that makes one in the doc examples.
macro_rules! option_setters {
    ($handle:ident, $make:literal) => {
        impl $handle {
            /// Uses these read options (R, timeout) for reads through this handle.
            ///
            #[doc = concat!("```no_run\n# fn f(client: kvorum_client::Client) {\nlet h = client.", $make, ".read_options(kvorum_client::ReadOptions::r(1));\n# let _ = h; }\n```")]
            pub fn read_options(mut self, options: $crate::ReadOptions) -> Self {
                self.0.read = options;
                self
            }

            /// Uses these write options (W, timeout) for updates through this handle.
            ///
            #[doc = concat!("```no_run\n# fn f(client: kvorum_client::Client) {\nlet h = client.", $make, ".write_options(kvorum_client::WriteOptions::w(2));\n# let _ = h; }\n```")]
            pub fn write_options(mut self, options: $crate::WriteOptions) -> Self {
                self.0.write = options;
                self
            }
        }
    };
}

pub(super) use option_setters;
