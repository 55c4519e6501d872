//! Batches: several item operations across partitions in one request, each
//! coordinated on its own (its own quorum outcome), all at once. Operations
//! whose items share a replica share its peer round trips: the QUIC
//! transport sends the first request for a peer at once and the ones that
//! queue behind it as one batch frame (`rpc::quic`), so a batch of many
//! items costs a replica about two round trips, not one per item.

use super::coordinator::Coordinator;
use super::settings::too_large;
use crate::util::join::join_all;
use kvorum_client::proto::{ErrorReply, ItemKey, ItemOp, Limit, Response};

impl Coordinator {
    /// Serves a batch: one answer per operation, in order.
    pub(super) async fn batch(
        &self,
        ops: Vec<(ItemKey, ItemOp)>,
        forwarded: bool,
    ) -> Result<Response, ErrorReply> {
        if ops.is_empty() {
            return Err(ErrorReply::BadRequest("an empty batch".into()));
        }
        if ops.len() > self.limits.max_batch_items {
            return Err(too_large(
                Limit::BatchItems,
                ops.len(),
                self.limits.max_batch_items,
            ));
        }
        let answers = join_all(
            ops.into_iter()
                .map(|(key, op)| self.serve_item(key, op, forwarded))
                .collect(),
        )
        .await;
        Ok(Response::Batch(
            answers
                .into_iter()
                .map(|a| a.unwrap_or_else(Response::Error))
                .collect(),
        ))
    }

    /// Refuses a sort key over the key limit (`limits.max_key_bytes`).
    pub(super) fn check_sort_key(&self, sort: &[u8]) -> Result<(), ErrorReply> {
        if sort.len() > self.limits.max_key_bytes {
            return Err(too_large(
                Limit::SortKey,
                sort.len(),
                self.limits.max_key_bytes,
            ));
        }
        Ok(())
    }
}
