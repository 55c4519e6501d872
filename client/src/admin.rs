//! Operator calls: [`Admin`], a handle on the same kind of connection pool
//! as [`Client`](crate::Client), for the cluster's status, topology changes,
//! the ring, repairs and buckets.

use crate::client::{ClientBuilder, FromPool};
use crate::error::Error;
use crate::pool::Pool;
use crate::proto::{
    AccessList, BackupAnswer, BackupStep, BucketProps, CertificateStatus, ClusterStatus,
    DiskStatus, Grant, MemberStatus, QuarantinedRecord, Request, Response, Revocation, RingRange,
};
use crate::tls::TlsMaterial;
use std::net::SocketAddr;

/// The builder of an [`Admin`]: the same settings as a
/// [`Client`](crate::Client)'s.
///
/// ```no_run
/// # fn f(tls: kvorum_client::TlsMaterial) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::{Admin, AdminBuilder};
/// let b: AdminBuilder = Admin::builder(["127.0.0.1:7401".parse().unwrap()], tls);
/// let admin = b.connect_timeout(std::time::Duration::from_secs(1)).build()?;
/// # let _ = admin; Ok(()) }
/// ```
pub type AdminBuilder = ClientBuilder<Admin>;

/// The operator's handle on a Kvorum cluster: status, topology changes
/// (leave, remove, join), the ring, repair, and buckets. Cheap to clone.
///
/// It sends through a pool like a [`Client`](crate::Client)'s, with the same
/// settings ([`AdminBuilder`]) and failover: every call here is idempotent
/// (a node refuses a topology request meant for another node), so it is
/// retried on the next node after any connection failure.
///
/// ```no_run
/// # async fn f(tls: kvorum_client::TlsMaterial) -> Result<(), kvorum_client::Error> {
/// use kvorum_client::{Admin, BucketProps, BucketType};
/// let admin = Admin::connect(["127.0.0.1:7401".parse().unwrap()], tls)?;
/// admin.create_bucket("carts", BucketProps::new(BucketType::Map)).await?;
/// let (node, members) = admin.status().await?;
/// println!("{node} sees {} members", members.len());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Admin {
    pool: Pool,
}

impl Admin {
    /// A builder with the default timeouts (the same settings as
    /// [`Client::builder`](crate::Client::builder)).
    ///
    /// ```no_run
    /// # fn f(tls: kvorum_client::TlsMaterial) -> Result<(), kvorum_client::Error> {
    /// use std::time::Duration;
    /// let admin = kvorum_client::Admin::builder(["127.0.0.1:7401".parse().unwrap()], tls)
    ///     .request_timeout(Duration::from_secs(30))
    ///     .build()?;
    /// # let _ = admin; Ok(()) }
    /// ```
    pub fn builder(seeds: impl IntoIterator<Item = SocketAddr>, tls: TlsMaterial) -> AdminBuilder {
        AdminBuilder::new(seeds, tls)
    }

    /// An admin handle with default settings (see [`Admin::builder`]).
    ///
    /// ```no_run
    /// # fn f(tls: kvorum_client::TlsMaterial) -> Result<(), kvorum_client::Error> {
    /// let admin = kvorum_client::Admin::connect(["127.0.0.1:7401".parse().unwrap()], tls)?;
    /// # let _ = admin; Ok(()) }
    /// ```
    pub fn connect(
        seeds: impl IntoIterator<Item = SocketAddr>,
        tls: TlsMaterial,
    ) -> Result<Admin, Error> {
        Self::builder(seeds, tls).build()
    }

    /// Closes every connection; in-flight calls fail.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) {
    /// admin.close().await;
    /// # }
    /// ```
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The cluster members as the answering node sees them: `(node id, members)`.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// let (node, members) = admin.status().await?;
    /// println!("{node} sees {} members", members.len());
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<(String, Vec<MemberStatus>), Error> {
        let s = self.cluster_status().await?;
        let members = s
            .members
            .into_iter()
            .filter(|m| m.state != "removed")
            .collect();
        Ok((s.node, members))
    }

    /// The answering node's whole view: members with their states (removed
    /// ones included), whether a topology change is in progress, who it
    /// waits for, and the node's incoming range streams.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// let s = admin.cluster_status().await?;
    /// for m in &s.members {
    ///     println!("{} {} {}", m.id, m.state, if m.reachable { "reachable" } else { "down" });
    /// }
    /// if s.in_transition {
    ///     println!("waiting for {:?}", s.waiting_for);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        match self.pool.call(&Request::Status, true).await? {
            Response::Status(s) => Ok(*s),
            other => Err(Error::of_answer(other)),
        }
    }

    /// The answering node's disk against its free-space watermark: free
    /// bytes, the watermark, which writes it refuses, and whether its
    /// storage failed a commit (`kvorum admin status` asks every member).
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// let d = admin.disk().await?;
    /// println!("{}: {} bytes free, {}", d.node, d.free_bytes, d.refusing);
    /// # Ok(()) }
    /// ```
    pub async fn disk(&self) -> Result<DiskStatus, Error> {
        match self.pool.call(&Request::Disk, true).await? {
            Response::Disk(d) => Ok(d),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Takes a storage snapshot of the answering node (its writes go on)
    /// and returns its manifest: epoch, dot floor, members, buckets. Page
    /// through its records with [`Admin::backup_page`], then release it
    /// with [`Admin::backup_end`]. Build the handle with one node's address
    /// to back that node up (`kvorum admin backup` does each member).
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// let m = admin.backup_begin().await?;
    /// let (mut after, mut records) = (None, 0);
    /// loop {
    ///     let (page, next) = admin.backup_page(m.snapshot, after, 1 << 20).await?;
    ///     records += page.len();
    ///     match next {
    ///         Some(n) => after = Some(n),
    ///         None => break,
    ///     }
    /// }
    /// admin.backup_end(m.snapshot).await?;
    /// println!("{}: {records} records", m.node);
    /// # Ok(()) }
    /// ```
    pub async fn backup_begin(&self) -> Result<crate::proto::BackupManifest, Error> {
        match self
            .pool
            .call(&Request::Backup(BackupStep::Begin), true)
            .await?
        {
            Response::Backup(BackupAnswer::Begun(m)) => Ok(*m),
            other => Err(Error::of_answer(other)),
        }
    }

    /// One page of snapshot `snapshot`'s records after storage key `after`:
    /// (storage key, stored record) in key order, and where the next page
    /// starts (`None` after the last). See [`Admin::backup_begin`].
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin, id: u64) -> Result<(), kvorum_client::Error> {
    /// let (records, next) = admin.backup_page(id, None, 4 << 20).await?;
    /// println!("{} records, more: {}", records.len(), next.is_some());
    /// # Ok(()) }
    /// ```
    #[allow(clippy::type_complexity)]
    pub async fn backup_page(
        &self,
        snapshot: u64,
        after: Option<Vec<u8>>,
        max_bytes: u32,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>), Error> {
        let step = BackupStep::Page {
            id: snapshot,
            after,
            max_bytes,
        };
        match self.pool.call(&Request::Backup(step), true).await? {
            Response::Backup(BackupAnswer::Page { records, next }) => Ok((records, next)),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Releases snapshot `snapshot` (see [`Admin::backup_begin`]).
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin, id: u64) -> Result<(), kvorum_client::Error> {
    /// admin.backup_end(id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn backup_end(&self, snapshot: u64) -> Result<(), Error> {
        let step = BackupStep::End { id: snapshot };
        match self.pool.call(&Request::Backup(step), true).await? {
            Response::Backup(BackupAnswer::Ended) => Ok(()),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Places stored records of a backup on their owners in this cluster,
    /// merging each into what an owner holds; returns how many an owner
    /// lacked. Merging makes it safe to send a record again (`kvorum admin
    /// restore` resumes so).
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin, page: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), kvorum_client::Error> {
    /// let sent = admin.restore(page).await?;
    /// println!("{sent} records were new to their owners");
    /// # Ok(()) }
    /// ```
    pub async fn restore(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<u32, Error> {
        match self.pool.call(&Request::Restore { records }, true).await? {
            Response::Restored { sent, .. } => Ok(sent),
            other => Err(Error::of_answer(other)),
        }
    }

    /// A digest of the keys the answering node holds as first replica
    /// (`kvorum admin verify` asks every member and XORs their answers).
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::proto::{DigestAnswer, DigestQuery};
    /// if let DigestAnswer::Branches { view, hashes } = admin.digest(DigestQuery::Branches).await? {
    ///     println!("{} branches on view {view:x}", hashes.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn digest(
        &self,
        query: crate::proto::DigestQuery,
    ) -> Result<crate::proto::DigestAnswer, Error> {
        match self.pool.call(&Request::Digest(query), true).await? {
            Response::Digest(d) => Ok(d),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Decommissions node `node`: it streams its ranges to the nodes that
    /// take them over, then leaves. Only `node` itself accepts this (an admin
    /// handle of several nodes tries them in turn until one answers, and
    /// every other node refuses), so build the admin handle with that node's
    /// address. Returns once the node accepted; the transfer runs in the
    /// background (see [`Admin::cluster_status`]). Refused
    /// ([`ErrorReply::Refused`]) when the remaining nodes could not hold N
    /// replicas.
    ///
    /// [`ErrorReply::Refused`]: crate::proto::ErrorReply::Refused
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// println!("{}", admin.leave("n3").await?);
    /// # Ok(()) }
    /// ```
    pub async fn leave(&self, node: &str) -> Result<String, Error> {
        self.accepted(&Request::Leave {
            node: node.to_string(),
        })
        .await
    }

    /// Removes a dead node: its ranges are re-replicated from the surviving
    /// replicas. Refused for a node that is up (use [`Admin::leave`] on it),
    /// an unknown node, or the last node.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// println!("{}", admin.remove_node("n4").await?);
    /// # Ok(()) }
    /// ```
    pub async fn remove_node(&self, node: &str) -> Result<String, Error> {
        self.accepted(&Request::Remove {
            node: node.to_string(),
        })
        .await
    }

    /// Makes node `node`, which must be alone in its own cluster, join the
    /// cluster of the node at `seed`: it streams in the ranges it will own,
    /// then serves them. As for [`Admin::leave`], only `node` accepts this.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// println!("{}", admin.join("n4", "127.0.0.1:7401").await?);
    /// # Ok(()) }
    /// ```
    pub async fn join(&self, node: &str, seed: &str) -> Result<String, Error> {
        self.accepted(&Request::Join {
            node: node.to_string(),
            seed: seed.to_string(),
        })
        .await
    }

    /// The ring's ranges and their `n` replicas (default: the default
    /// bucket's N); adjacent ranges with the same replicas come merged.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// for r in admin.ring(None).await? {
    ///     println!("({:016x}, {:016x}] {}", r.start, r.end, r.owners.join(","));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ring(&self, n: Option<u8>) -> Result<Vec<RingRange>, Error> {
        match self.pool.call(&Request::Ring { n }, true).await? {
            Response::Ring(r) => Ok(r),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Asks the node to run an anti-entropy exchange with every peer now;
    /// returns (exchanges completed, keys repaired).
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// let (exchanges, keys) = admin.repair().await?;
    /// println!("{exchanges} exchanges repaired {keys} keys");
    /// # Ok(()) }
    /// ```
    pub async fn repair(&self) -> Result<(u32, u64), Error> {
        match self.pool.call(&Request::Repair, true).await? {
            Response::Repaired { exchanges, keys } => Ok((exchanges, keys)),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Creates a bucket on every member of the cluster. Idempotent: creating
    /// a bucket again with the same props succeeds; with other props it fails
    /// with [`ErrorReply::BucketConflict`] (a bucket's type is fixed for life).
    ///
    /// [`ErrorReply::BucketConflict`]: crate::proto::ErrorReply::BucketConflict
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{BucketProps, BucketType};
    /// admin.create_bucket("carts", BucketProps::new(BucketType::Map)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_bucket(&self, name: &str, props: BucketProps) -> Result<(), Error> {
        // Props without a default time to live go in the first form, which
        // nodes built before it understand too.
        let req = match props.default_ttl_ms {
            None => Request::CreateBucket {
                name: name.to_string(),
                props: props.into(),
            },
            Some(_) => Request::DefineBucket {
                name: name.to_string(),
                props,
            },
        };
        match self.pool.call(&req, true).await? {
            Response::BucketCreated => Ok(()),
            other => Err(Error::of_answer(other)),
        }
    }

    /// The buckets the answering node knows, sorted by name.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// for (name, props) in admin.buckets().await? {
    ///     println!("{name}: {} N={}", props.bucket_type, props.n);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn buckets(&self) -> Result<Vec<(String, BucketProps)>, Error> {
        match self.pool.call(&Request::ListBucketProps, true).await? {
            Response::BucketProps(b) => Ok(b),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Sets a grant of the cluster's access list: what the client
    /// certificate named `grant.client` (`*`: every one) may do on the
    /// buckets of `grant.scope`. A grant with neither read nor write
    /// removes that client's grant for the scope. The answering node sends
    /// it to every member and gossip carries it to any that missed it; the
    /// newest change of a (client, scope) wins everywhere. Returns the
    /// access list after the change.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::{Grant, GrantScope};
    /// admin.grant(Grant {
    ///     client: "shop".into(),
    ///     scope: GrantScope::Prefix("shop-".into()),
    ///     read: true,
    ///     write: true,
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn grant(&self, grant: Grant) -> Result<AccessList, Error> {
        self.access_call(&Request::Grant(grant)).await
    }

    /// Revokes a certificate, by serial number or by role and name: within
    /// a gossip round every node refuses it new connections and closes the
    /// ones it has. Returns the access list after the change.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// use kvorum_client::Revocation;
    /// admin.revoke(Revocation::Name { role: "client".into(), name: "laptop".into() }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self, revocation: Revocation) -> Result<AccessList, Error> {
        self.access_call(&Request::Revoke(revocation)).await
    }

    /// The access list as the answering node holds it.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// for g in admin.access().await?.grants {
    ///     println!("{} {:?} read={} write={}", g.client, g.scope, g.read, g.write);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn access(&self) -> Result<AccessList, Error> {
        self.access_call(&Request::Access).await
    }

    /// Makes the answering node read its certificate, key and CA bundle
    /// again (as SIGHUP does): new connections use them, open ones are
    /// kept. Build the handle with exactly the node to reload. Returns the
    /// certificate it now serves with.
    ///
    /// ```no_run
    /// # async fn f(tls: kvorum_client::TlsMaterial) -> Result<(), kvorum_client::Error> {
    /// let one = kvorum_client::Admin::connect(["10.0.0.1:7401".parse().unwrap()], tls)?;
    /// let cert = one.reload_certificates().await?;
    /// println!("{} now serves certificate {} (until {})", cert.node, cert.serial, cert.not_after);
    /// # Ok(()) }
    /// ```
    pub async fn reload_certificates(&self) -> Result<CertificateStatus, Error> {
        match self.pool.call(&Request::ReloadCertificates, true).await? {
            Response::Reloaded(c) => Ok(c),
            other => Err(Error::of_answer(other)),
        }
    }

    /// The stored records the answering node could not decode and moved
    /// aside. Build the handle with exactly the node to ask.
    ///
    /// ```no_run
    /// # async fn f(admin: kvorum_client::Admin) -> Result<(), kvorum_client::Error> {
    /// for q in admin.quarantined().await? {
    ///     println!("{} {:?}: {} bytes, {}", q.bucket, q.key, q.bytes, q.why);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn quarantined(&self) -> Result<Vec<QuarantinedRecord>, Error> {
        match self.pool.call(&Request::Quarantined, true).await? {
            Response::Quarantined(q) => Ok(q),
            other => Err(Error::of_answer(other)),
        }
    }

    async fn access_call(&self, req: &Request) -> Result<AccessList, Error> {
        match self.pool.call(req, true).await? {
            Response::Access(a) => Ok(a),
            other => Err(Error::of_answer(other)),
        }
    }

    /// Sends a topology request; returns the node's acceptance message.
    async fn accepted(&self, req: &Request) -> Result<String, Error> {
        match self.pool.call(req, true).await? {
            Response::Accepted(m) => Ok(m),
            other => Err(Error::of_answer(other)),
        }
    }
}

impl FromPool for Admin {
    fn from_pool(pool: Pool) -> Self {
        Self { pool }
    }
}
