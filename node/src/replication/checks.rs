//! The checks of a client data request before any replica is asked: the
//! bucket exists and has the operation's type, and names, values, contexts
//! and versions are within the node's limits.

use super::coordinator::{Coordinator, MAX_CONTEXT_BYTES};
use super::settings::too_large;
use kvorum_client::proto::{CausalContext, ErrorReply, Limit};
use kvorum_client::{BucketProps, BucketType, DataOp, MapOp, Version};

impl Coordinator {
    /// A version a read must reach: bounded like a context, and of the kind
    /// the bucket type produces.
    pub(super) fn check_version(&self, v: &Version, t: BucketType) -> Result<(), ErrorReply> {
        let size = kvorum_client::bytes::encode(v).len();
        self.check_context_size(&CausalContext(vec![0; size.min(MAX_CONTEXT_BYTES + 1)]))?;
        let fits = matches!(
            (t, v),
            (
                BucketType::Register | BucketType::Set | BucketType::Map,
                Version::Dots { .. }
            ) | (BucketType::Counter, Version::Counter { .. })
                | (BucketType::Lww, Version::Stamp { .. })
        );
        if !fits {
            return Err(ErrorReply::InvalidContext(format!(
                "the version to read at is not one of a {t} key"
            )));
        }
        Ok(())
    }

    /// The props of `bucket` after checking the names' sizes; unknown
    /// buckets are refused.
    pub(super) fn bucket(&self, bucket: &str, key: &[u8]) -> Result<BucketProps, ErrorReply> {
        self.check_key(bucket, key)?;
        self.buckets
            .get(bucket)
            .ok_or_else(|| ErrorReply::UnknownBucket(bucket.to_string()))
    }

    pub(super) fn check_value(&self, value: &[u8]) -> Result<(), ErrorReply> {
        if value.len() > self.limits.max_value_bytes {
            return Err(too_large(
                Limit::Value,
                value.len(),
                self.limits.max_value_bytes,
            ));
        }
        Ok(())
    }

    /// Bounds of an update's parts: members and values like values, field
    /// names like keys.
    pub(super) fn check_op(&self, op: &DataOp) -> Result<(), ErrorReply> {
        match op {
            DataOp::Increment(_) => Ok(()),
            DataOp::SetUpdate { add, remove } => {
                if add.is_empty() && remove.is_empty() {
                    return Err(ErrorReply::BadRequest("empty set update".into()));
                }
                add.iter()
                    .chain(remove)
                    .try_for_each(|m| self.check_value(m))
            }
            DataOp::MapUpdate(ops) => {
                if ops.is_empty() {
                    return Err(ErrorReply::BadRequest("empty map update".into()));
                }
                for op in ops {
                    let (name, _) = op.field();
                    if name.len() > self.limits.max_key_bytes {
                        return Err(too_large(Limit::Key, name.len(), self.limits.max_key_bytes));
                    }
                    match op {
                        MapOp::Add { members, .. } | MapOp::Remove { members, .. } => {
                            members.iter().try_for_each(|m| self.check_value(m))?
                        }
                        MapOp::SetLww { value, .. } | MapOp::SetRegister { value, .. } => {
                            self.check_value(value)?
                        }
                        MapOp::Increment { .. }
                        | MapOp::Flag { .. }
                        | MapOp::RemoveField { .. } => {}
                    }
                }
                Ok(())
            }
        }
    }

    pub(super) fn check_context_size(&self, ctx: &CausalContext) -> Result<(), ErrorReply> {
        if ctx.0.len() > MAX_CONTEXT_BYTES {
            return Err(too_large(Limit::Context, ctx.0.len(), MAX_CONTEXT_BYTES));
        }
        Ok(())
    }

    /// Bucket name and key sizes.
    pub(super) fn check_key(&self, bucket: &str, key: &[u8]) -> Result<(), ErrorReply> {
        self.limits.check_key(bucket, key)
    }
}

/// The error of an operation the bucket's type does not have.
pub(super) fn wrong_type(bucket: &str, props: BucketProps, op: &str) -> ErrorReply {
    ErrorReply::WrongType {
        bucket: bucket.to_string(),
        bucket_type: props.bucket_type,
        op: op.to_string(),
    }
}
