//! Who may make which request.
//!
//! - [`contexts`]: causal contexts are sealed, so clients return only what
//!   the cluster issued.
//! - [`list`]: the cluster's access list: grants and revoked certificates.
//!
//! A certificate's role (see [`crate::net::identity`]) decides first:
//! - admin requests (`Request::is_admin`: topology, buckets, repair,
//!   status, ring, the access list, certificate reloads) need the admin
//!   role;
//! - data requests from an admin or a node certificate may touch every
//!   bucket;
//! - data requests from a client certificate need a grant of the access
//!   list for the bucket: read for get, fetch and range reads, write for
//!   put, delete and update (of an item too); a batch needs each of its
//!   operations' grants, or none of it runs.
//!
//! Status and ring need the admin role too: they name every member, its
//! address and the buckets, which an application does not need (clients
//! route with their seed list) and a tenant should not enumerate.

pub mod admin;
pub mod contexts;
pub mod gate;
pub mod list;

use crate::net::identity::{Caller, Role};
use kvorum_client::proto::{Condition, ErrorReply, Request};
use list::Access;

/// `Ok` if `caller` may make `req`, else the `Forbidden` answer.
pub fn authorize(caller: &Caller, req: &Request, access: &Access) -> Result<(), ErrorReply> {
    if req.is_admin() {
        if caller.role != Role::Admin {
            return Err(ErrorReply::Forbidden(format!(
                "admin requests need an admin certificate; this one ({}) has the {} role \
                 (make one with `kvorum cert admin NAME`)",
                caller.name_or_dash(),
                caller.role
            )));
        }
        return Ok(());
    }
    if !list::bound_by_list(caller.role) {
        return Ok(());
    }
    let needs: Vec<(&str, bool)> = match req {
        Request::Get { bucket, .. } | Request::Fetch { bucket, .. } => vec![(bucket, false)],
        Request::Put { bucket, .. }
        | Request::Delete { bucket, .. }
        | Request::Update { bucket, .. } => vec![(bucket, true)],
        // A conditional write answers a failed condition with the current
        // value: it needs a read grant too.
        Request::Item { key, op } if op.condition() != Condition::None => {
            vec![(&key.bucket, true), (&key.bucket, false)]
        }
        Request::Item { key, op } => vec![(&key.bucket, op.is_write())],
        Request::Range(q) => vec![(&q.bucket, false)],
        Request::ListPartitions { bucket, .. } => vec![(bucket, false)],
        Request::DeleteRange { query, .. } => vec![(&query.bucket, true)],
        Request::Watch { target, .. } => {
            vec![(crate::replication::watch::watched_bucket(target), false)]
        }
        // The routing table names no bucket: any client may route.
        Request::Placement { .. } => vec![],
        // Every operation of a batch must be allowed, or none runs.
        Request::Batch(ops) => ops
            .iter()
            .flat_map(|(k, op)| {
                let read =
                    (op.condition() != Condition::None).then_some((k.bucket.as_str(), false));
                std::iter::once((k.bucket.as_str(), op.is_write())).chain(read)
            })
            .collect(),
        // Admin requests returned above: a request that is neither (a
        // variant added without a rule here) is refused, never let through.
        _ => {
            return Err(ErrorReply::Forbidden(
                "this request has no access rule for client certificates".into(),
            ))
        }
    };
    for (bucket, write) in needs {
        if !access.allows(caller, bucket, write) {
            return Err(ErrorReply::Forbidden(format!(
                "client {} may not {} bucket {bucket:?}: the access list grants it no {} \
                 (kvorum admin grant)",
                caller.name_or_dash(),
                if write { "write" } else { "read" },
                if write { "write" } else { "read" },
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryEngine, Store, SyncPolicy};
    use kvorum_client::proto::{ItemKey, ItemOp, RangeQuery, WatchTarget};
    use kvorum_client::{CausalContext, Grant, GrantScope};
    use std::sync::Arc;

    fn app() -> Caller {
        Caller {
            role: Role::Client,
            name: Some("app".into()),
            serial: "01".into(),
            not_after: i64::MAX,
        }
    }

    fn get(bucket: &str) -> (ItemKey, ItemOp) {
        let op = ItemOp::Get {
            options: Default::default(),
            at_least: None,
        };
        (ItemKey::new(bucket, b"p", b"s"), op)
    }

    fn put(bucket: &str) -> (ItemKey, ItemOp) {
        let op = ItemOp::put(b"v", &CausalContext::empty(), Default::default());
        (ItemKey::new(bucket, b"p", b"s"), op)
    }

    /// Every request of sorted partitions is checked as a read or a write
    /// of its bucket; a batch needs each of its operations' grants.
    #[tokio::test]
    async fn item_range_batch_watch_and_listing_requests_need_their_grants() {
        let (store, _closed) = Store::start(Arc::new(MemoryEngine::new()), SyncPolicy::Always);
        let access = Access::load(store, "n1", true, crate::util::clock::SystemClock::shared())
            .await
            .unwrap();
        access
            .grant(Grant {
                client: "app".into(),
                scope: GrantScope::Prefix("ro-".into()),
                read: true,
                write: false,
            })
            .await
            .unwrap();
        access
            .grant(Grant {
                client: "app".into(),
                scope: GrantScope::Bucket("rw".into()),
                read: true,
                write: true,
            })
            .await
            .unwrap();
        access
            .grant(Grant {
                client: "app".into(),
                scope: GrantScope::Bucket("wo".into()),
                read: false,
                write: true,
            })
            .await
            .unwrap();
        let ok = |req: Request| authorize(&app(), &req, &access).is_ok();
        let item = |(key, op)| Request::Item { key, op };
        assert!(ok(item(get("ro-a"))));
        assert!(!ok(item(put("ro-a"))));
        assert!(ok(item(put("rw"))));
        assert!(!ok(item(get("other"))));
        assert!(ok(Request::Range(RangeQuery::new("ro-a", b"p"))));
        assert!(!ok(Request::Range(RangeQuery::new("other", b"p"))));
        assert!(ok(Request::Batch(vec![get("ro-a"), put("rw")])));
        assert!(!ok(Request::Batch(vec![get("ro-a"), put("ro-a")])));
        assert!(!ok(Request::Batch(vec![put("rw"), get("other")])));
        let delete_range = |bucket: &str| Request::DeleteRange {
            query: RangeQuery::new(bucket, b"p"),
            options: Default::default(),
        };
        assert!(!ok(delete_range("ro-a")));
        assert!(ok(delete_range("rw")));
        let list = |bucket: &str| Request::ListPartitions {
            bucket: bucket.into(),
            after: None,
            limit: 0,
            timeout_ms: None,
        };
        assert!(ok(list("ro-a")));
        assert!(!ok(list("other")));
        let watch = |bucket: &str| Request::Watch {
            target: WatchTarget::Item {
                key: ItemKey::new(bucket, b"p", b""),
                known: Default::default(),
            },
            timeout_ms: 10,
        };
        assert!(ok(watch("ro-a")));
        assert!(!ok(watch("other")));
        // The routing table is every client's (it names no bucket).
        assert!(ok(Request::Placement { known: None }));
        // A conditional write returns the current value when it fails: a
        // write-only grant is not enough.
        let conditional = |bucket: &str| Request::Item {
            key: ItemKey::new(bucket, b"p", b"s"),
            op: ItemOp::put(
                b"v",
                &CausalContext::empty(),
                kvorum_client::WriteOptions::default().if_absent(),
            ),
        };
        assert!(ok(conditional("rw")));
        assert!(!ok(conditional("wo")), "write-only may not learn the value");
    }
}
