//! The read ring as the routing table clients route by
//! ([`kvorum_client::proto::Placement`]).

use crate::cluster::membership::View;
use kvorum_client::proto::{PlacedNode, PlacedRange, Placement};
use kvorum_ring::{key_token, NodeId};
use std::collections::HashMap;

/// The view's placement id: the view's hash and the members' addresses
/// (an address can change without the ring changing).
pub fn view_id(view: &View) -> u64 {
    let mut bytes = view.hash.to_le_bytes().to_vec();
    for m in view.read_ring.members() {
        bytes.extend_from_slice(m.id.as_str().as_bytes());
        if let Some(info) = view.members.get(&m.id) {
            bytes.extend_from_slice(info.addr.to_string().as_bytes());
        }
        bytes.push(0);
    }
    key_token(&bytes)
}

/// The read ring of `view` with `n` replicas per range; adjacent ranges
/// with the same replicas are one. Members whose address is unknown are
/// left out of the node list and of every range.
pub fn placement(view: &View, n: u8) -> Placement {
    let ring = &view.read_ring;
    let mut nodes = Vec::new();
    let mut index: HashMap<&NodeId, u16> = HashMap::new();
    for m in ring.members() {
        let Some(info) = view.members.get(&m.id) else {
            continue;
        };
        let Ok(i) = u16::try_from(nodes.len()) else {
            break;
        };
        index.insert(&m.id, i);
        nodes.push(PlacedNode {
            id: m.id.to_string(),
            addr: info.addr,
        });
    }
    let mut ranges: Vec<PlacedRange> = Vec::new();
    for t in ring.tokens() {
        let owners: Vec<u16> = ring
            .preference_list_at(t, usize::from(n.max(1)))
            .iter()
            .filter_map(|id| index.get(id).copied())
            .collect();
        match ranges.last_mut() {
            Some(last) if last.owners == owners => last.end = t,
            _ => ranges.push(PlacedRange { end: t, owners }),
        }
    }
    // The first range wraps around from the last: when both have the same
    // replicas the last one's tokens are the first's too.
    if ranges.len() > 1 && ranges.first().map(|r| &r.owners) == ranges.last().map(|r| &r.owners) {
        ranges.pop();
    }
    Placement {
        view: view_id(view),
        n,
        nodes,
        ranges,
    }
}
