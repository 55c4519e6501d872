//! The membership metadata a node persists: its member list and data epoch
//! (a versioned record in the storage's meta space), saved after every
//! change of this node's own state.

use super::membership::Membership;
use crate::cluster::member::{MemberInfo, MemberInfoV1};
use crate::replication::replica::Replica;
use crate::storage::{Space, StorageError, Store};
use crate::util::rng::NodeRng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The key of the record in [`Space::Meta`].
pub(crate) const META_KEY: &[u8] = b"node";

/// Node metadata kept in [`Space::Meta`], versioned by its enum tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum MetaRecord {
    V1 {
        incarnation: u64,
        /// Epoch of the data, part of the actor that issues dots (see
        /// [`crate::data::register::Actor`]).
        epoch: u64,
        members: Vec<MemberInfoV1>,
    },
    /// With member states: this node's own entry is among `members`.
    V2 {
        /// As in `V1`.
        epoch: u64,
        members: Vec<MemberInfo>,
    },
}

/// Persists the member list (with this node's entry and data epoch) in
/// `meta`: after every change of this node's own state, so a crash cannot
/// bring it back in an older state.
#[derive(Clone)]
pub struct MemberStore {
    store: Store,
    membership: Arc<Membership>,
    replica: Replica,
    rng: NodeRng,
    /// One save at a time: a save that read the epoch before a rotation
    /// must not land after it (the stored epoch would go back to the
    /// retired one, and a restart would issue its dots again).
    saving: Arc<tokio::sync::Mutex<()>>,
}

impl MemberStore {
    /// Persists `membership` in `store`, with the data epoch of `replica`;
    /// new epochs are drawn from `rng`.
    pub fn new(store: Store, membership: Arc<Membership>, replica: Replica, rng: NodeRng) -> Self {
        Self {
            store,
            membership,
            replica,
            rng,
            saving: Default::default(),
        }
    }

    /// Writes the current list, durably.
    pub async fn save(&self) -> Result<(), StorageError> {
        let _one = self.saving.lock().await;
        persist_members(&self.store, &self.membership, self.replica.actor().epoch).await
    }

    /// What rotates the epoch of a replica passed in, without holding one
    /// (a replica may keep it: no reference cycle).
    pub fn epoch_rotator(&self) -> EpochRotator {
        EpochRotator {
            store: self.store.clone(),
            membership: self.membership.clone(),
            rng: self.rng.clone(),
            saving: self.saving.clone(),
        }
    }

    /// Starts a new data epoch (persisted before it is used).
    pub async fn rotate_epoch(&self) -> Result<(), StorageError> {
        let _one = self.saving.lock().await;
        let epoch = self.rng.u64();
        persist_members(&self.store, &self.membership, epoch).await?;
        self.replica.set_epoch(epoch);
        tracing::info!(
            epoch,
            "new data epoch (this node dropped keys it handed off)"
        );
        Ok(())
    }
}

/// Starts new data epochs, in turn with the member store's saves.
#[derive(Clone)]
pub struct EpochRotator {
    store: Store,
    membership: Arc<Membership>,
    rng: NodeRng,
    saving: Arc<tokio::sync::Mutex<()>>,
}

impl EpochRotator {
    /// Starts a new data epoch of `replica` (persisted before it is used).
    pub async fn rotate(&self, replica: &Replica, why: &str) -> Result<(), StorageError> {
        let _one = self.saving.lock().await;
        let epoch = self.rng.u64();
        persist_members(&self.store, &self.membership, epoch).await?;
        replica.set_epoch(epoch);
        tracing::info!(epoch, why, "new data epoch");
        Ok(())
    }
}

pub(crate) async fn persist_members(
    store: &Store,
    membership: &Membership,
    epoch: u64,
) -> Result<(), StorageError> {
    let record = MetaRecord::V2 {
        epoch,
        members: membership.all_members(),
    };
    let bytes = kvorum_client::bytes::encode(&record);
    store
        .update(Space::Meta, META_KEY.to_vec(), move |_| (Some(bytes), ()))
        .await
}

/// What a node's data directory says of its membership at start-up.
#[derive(Debug)]
pub struct Stored {
    /// The data epoch (a new random one for a new data directory).
    pub epoch: u64,
    /// The persisted member list.
    pub members: Vec<MemberInfo>,
    /// A new data directory: the node must join.
    pub fresh: bool,
    /// The list came from a data directory of a build without member
    /// states (its node was up).
    pub upgraded: bool,
}

/// Reads the persisted membership of node `id` (a new epoch and no members
/// for a new data directory).
pub fn load(store: &Store, id: &str, rng: &NodeRng) -> Result<Stored, StorageError> {
    let Some(bytes) = store.get(Space::Meta, META_KEY)? else {
        return Ok(Stored {
            epoch: rng.u64(),
            members: Vec::new(),
            fresh: true,
            upgraded: false,
        });
    };
    match postcard::from_bytes::<MetaRecord>(&bytes) {
        Ok(MetaRecord::V1 {
            incarnation,
            epoch,
            members,
        }) => {
            let mut members: Vec<MemberInfo> = members.into_iter().map(MemberInfo::from).collect();
            for m in &mut members {
                if m.id.as_str() == id {
                    m.version = m.version.max(incarnation);
                }
            }
            Ok(Stored {
                epoch,
                members,
                fresh: false,
                upgraded: true,
            })
        }
        Ok(MetaRecord::V2 { epoch, members }) => Ok(Stored {
            epoch,
            members,
            fresh: false,
            upgraded: false,
        }),
        Err(e) => Err(StorageError::Corrupt(format!("node metadata: {e}"))),
    }
}
