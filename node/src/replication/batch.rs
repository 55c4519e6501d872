//! Batches, and deleting a range (a page's items, each with its context).
//!
//! Batches: several item operations across partitions in one request, each
//! coordinated on its own (its own quorum outcome), all at once. Operations
//! whose items share a replica share its peer round trips: the QUIC
//! transport sends the first request for a peer at once and the ones that
//! queue behind it as one batch frame (`rpc::quic`), so a batch of many
//! items costs a replica about two round trips, not one per item.

use super::coordinator::Coordinator;
use super::settings::too_large;
use crate::util::join::join_all;
use kvorum_client::proto::{ErrorReply, ItemKey, ItemOp, Limit, RangeQuery, Response};
use kvorum_client::WriteOptions;

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

    /// Deletes the live items of one page of `query`, each with its own
    /// context from the page, all at once.
    pub(super) async fn delete_range(
        &self,
        query: RangeQuery,
        options: WriteOptions,
    ) -> Result<Response, ErrorReply> {
        let (bucket, partition) = (query.bucket.clone(), query.partition.clone());
        let Response::Page(page) = self.range(query).await? else {
            return Err(ErrorReply::Internal("a range read answered no page".into()));
        };
        let deletes = page
            .items
            .into_iter()
            .map(|item| {
                let key = ItemKey::new(&bucket, &partition, &item.sort);
                let op = ItemOp::Delete {
                    context: item.context,
                    options,
                };
                self.serve_item(key, op, false)
            })
            .collect();
        let (mut deleted, mut failed, mut errors) = (0, 0, Vec::new());
        for answer in join_all(deletes).await {
            match answer {
                Ok(Response::Written { .. }) => deleted += 1,
                Ok(other) => {
                    failed += 1;
                    if errors.len() < 16 {
                        errors.push(ErrorReply::Internal(format!("unexpected answer {other:?}")));
                    }
                }
                Err(e) => {
                    failed += 1;
                    if errors.len() < 16 {
                        errors.push(e);
                    }
                }
            }
        }
        Ok(Response::Deleted {
            deleted,
            errors,
            failed,
            next: page.next,
        })
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
