//! Watches: a long poll for a change of an item, or of a range's page.
//!
//! The coordinator reads the target at its R (a quorum read, with read
//! repair, like any other), answers at once if it differs from what the
//! watcher holds, and otherwise reads again every [`WATCH_POLL`], or as
//! soon as this node's own replica applies a write to the target, until it
//! differs or the watch's time is up ([`Response::Unchanged`]). A write
//! acknowledged through any node is on W replicas, so the next poll (at R,
//! R + W > N) sees it: a watch wakes within about one poll interval plus
//! one read after the acknowledgement (docs/data-model.md, "Watches").
//!
//! Each watch holds one client request slot and no peer slot between
//! polls; at most `limits.max_watches` run on a node at once.

use super::coordinator::Coordinator;
use kvorum_client::proto::{ErrorReply, ItemOp, RangeQuery, ReadOptions, Response, WatchTarget};
use kvorum_client::Version;
use kvorum_ring::item;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often a watch reads its target again when this node's replica saw
/// no write to it.
pub const WATCH_POLL: Duration = Duration::from_millis(200);

impl Coordinator {
    /// Serves one watch.
    pub(super) async fn watch(
        &self,
        target: WatchTarget,
        timeout_ms: u32,
    ) -> Result<Response, ErrorReply> {
        let Ok(_slot) = self.watches.clone().try_acquire_owned() else {
            return Err(ErrorReply::Unavailable(format!(
                "this node runs its most watches at once ({}, limits.max_watches); retry later \
                 or on another node",
                self.limits.max_watches
            )));
        };
        let deadline = self.env.clock.now() + self.timeout(Some(timeout_ms.max(1)));
        // Which storage keys wake the watch early, subscribed before the
        // first read so that no write slips between.
        let (key, whole_partition) = match &target {
            WatchTarget::Item { key, .. } => (
                item::storage_key(&key.bucket, &key.partition, &key.sort),
                false,
            ),
            WatchTarget::Range { query, .. } => (
                item::partition_prefix(&query.bucket, &query.partition),
                true,
            ),
        };
        let wakes = |k: &[u8]| {
            if whole_partition {
                k.starts_with(&key)
            } else {
                k == key.as_slice()
            }
        };
        let mut changes = self.replica.subscribe();
        let mut first = true;
        loop {
            let left = deadline.saturating_duration_since(self.env.clock.now());
            if left.is_zero() {
                return Ok(Response::Unchanged);
            }
            match self.read_target(&target, left).await {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => {}
                // A bad target fails at once; a failed read (a quorum not
                // met) is tried again at the next poll.
                Err(e) if first && !matches!(e, ErrorReply::Quorum(_)) => return Err(e),
                Err(_) => {}
            }
            first = false;
            let poll = (self.env.clock.now() + WATCH_POLL).min(deadline);
            loop {
                match tokio::time::timeout_at(poll, changes.recv()).await {
                    Ok(Ok(k)) if !wakes(&k) => continue,
                    // A write to the target, or more writes than the
                    // channel holds: read again now.
                    Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => break,
                    // (The replica lives as long as the node.)
                    Ok(Err(RecvError::Closed)) => {
                        tokio::time::sleep_until(poll).await;
                        break;
                    }
                    // The poll interval is up.
                    Err(_) => break,
                }
            }
        }
    }

    /// Reads the target; `Some` with the answer if it differs from what the
    /// watcher holds.
    async fn read_target(
        &self,
        target: &WatchTarget,
        left: Duration,
    ) -> Result<Option<Response>, ErrorReply> {
        let timeout_ms = Some(u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1));
        match target {
            WatchTarget::Item { key, known } => {
                let props = self.bucket(&key.bucket, &key.partition)?;
                let options = ReadOptions {
                    timeout_ms,
                    ..ReadOptions::default()
                };
                let op = if props.bucket_type.is_register_like() {
                    ItemOp::Get {
                        options,
                        at_least: None,
                    }
                } else {
                    ItemOp::Fetch {
                        options,
                        at_least: None,
                    }
                };
                let answer = self.serve_item(key.clone(), op, false).await?;
                Ok((!known.dominates(&version_of(&answer))).then_some(answer))
            }
            WatchTarget::Range { query, known } => {
                let mut q: RangeQuery = query.clone();
                q.options.timeout_ms = timeout_ms;
                match self.range(q).await? {
                    Response::Page(page) if page.fingerprint() != *known => {
                        Ok(Some(Response::Page(page)))
                    }
                    _ => Ok(None),
                }
            }
        }
    }
}

/// The version of a read's answer (the empty version when it has none).
fn version_of(r: &Response) -> Version {
    match r {
        Response::Value { version, .. }
        | Response::NotFound { version, .. }
        | Response::Data { version, .. } => version.clone(),
        _ => Version::default(),
    }
}

/// The item of a watch (for access checks and metrics).
pub fn watched_bucket(target: &WatchTarget) -> &str {
    match target {
        WatchTarget::Item { key, .. } => &key.bucket,
        WatchTarget::Range { query, .. } => &query.bucket,
    }
}
