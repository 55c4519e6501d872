//! Who can own keys: [`NodeId`] and [`Member`].

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Stable identity of a physical node, e.g. `"n1"`.
///
/// The id is what placement hashes (see [`vnode_token`](crate::vnode_token)),
/// so renaming a node moves all its keys: it must stay the same across
/// restarts. Any string is accepted here; the node's config decides what a
/// valid name is. Serialized as a plain string. Cheap to clone (a shared
/// string): preference lists, quorum trackers and fan-outs copy ids on
/// every request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// A node id from its name.
    pub fn new(id: impl Into<String>) -> NodeId {
        NodeId(Arc::from(id.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> NodeId {
        NodeId::new(id)
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> NodeId {
        NodeId::new(id)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        String::deserialize(d).map(NodeId::new)
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Sound because `NodeId`'s derived Hash/Eq/Ord are exactly those of its string.
impl Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A member as placement sees it: its id and, optionally, its failure zone
/// (rack, availability zone, ...).
///
/// Zones only matter if at least one member has one; then members without a
/// zone together count as one more zone ("no zone").
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// The node's stable id.
    pub id: NodeId,
    /// The failure zone the node runs in, if zones are configured.
    #[serde(default)]
    pub zone: Option<String>,
}

impl Member {
    /// A member with no zone.
    pub fn new(id: impl Into<NodeId>) -> Member {
        Member {
            id: id.into(),
            zone: None,
        }
    }

    /// A member in `zone`.
    pub fn in_zone(id: impl Into<NodeId>, zone: impl Into<String>) -> Member {
        Member {
            id: id.into(),
            zone: Some(zone.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_conversions_agree() {
        let a = NodeId::new("n1");
        assert_eq!(a, NodeId::from("n1"));
        assert_eq!(a, NodeId::from(String::from("n1")));
        assert_eq!(a.as_str(), "n1");
        assert_eq!(a.to_string(), "n1");
        let set: std::collections::HashSet<NodeId> = [a.clone()].into();
        assert!(
            set.contains("n1"),
            "Borrow<str> lookups must hash like the id"
        );
    }

    #[test]
    fn member_constructors() {
        assert_eq!(Member::new("n1").zone, None);
        assert_eq!(Member::in_zone("n1", "az-a").zone.as_deref(), Some("az-a"));
    }
}
