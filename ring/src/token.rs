//! Positions on the ring: the hash of a key and of a virtual node.
//!
//! Both are xxh3-64 (seed 0, default secret) of a byte string. XXH3's output
//! is fixed by its specification, independent of platform, endianness and
//! Rust version, so every node of a mixed-version cluster computes the same
//! positions. `std::hash::Hash` / `DefaultHasher` are never used: their output
//! is not promised stable (and `usize` hashes differently on 32-bit targets).
//!
//! Changing either function moves data between nodes on upgrade; the golden
//! values in `tests/placement.rs` exist to catch that.

use xxhash_rust::xxh3::xxh3_64;

use crate::member::NodeId;

/// The byte that separates the node id from the vnode index in the canonical
/// vnode string. The index has a fixed width, so the encoding is injective
/// even for ids that contain this byte.
const VNODE_SEPARATOR: u8 = 0x00;

/// Position of `key` on the ring: `xxh3_64(key)`.
pub fn key_token(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Position of virtual node `index` of node `id`:
/// `xxh3_64(id bytes ++ 0x00 ++ index as u32 big-endian)`.
pub fn vnode_token(id: &NodeId, index: u32) -> u64 {
    let mut canonical = Vec::new();
    write_vnode_key(&mut canonical, id, index);
    xxh3_64(&canonical)
}

/// Writes the canonical byte string of vnode `index` of `id` into `buf`
/// (replacing its contents), so [`Ring::new`](crate::Ring::new) can hash every
/// vnode through one reused buffer.
pub(crate) fn write_vnode_key(buf: &mut Vec<u8>, id: &NodeId, index: u32) {
    buf.clear();
    buf.extend_from_slice(id.as_str().as_bytes());
    buf.push(VNODE_SEPARATOR);
    buf.extend_from_slice(&index.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    // XXH3_64bits("") with seed 0 is 0x2D06800538D394C2 in the reference
    // implementation's test vectors: the hash is the specified one.
    #[test]
    fn key_token_matches_reference_vector() {
        assert_eq!(key_token(b""), 0x2D06_8005_38D3_94C2);
    }

    #[test]
    fn vnode_token_is_hash_of_canonical_bytes() {
        let id = NodeId::new("n1");
        assert_eq!(vnode_token(&id, 7), xxh3_64(&[b'n', b'1', 0, 0, 0, 0, 7]));
        assert_ne!(vnode_token(&id, 7), vnode_token(&id, 8));
    }

    #[test]
    fn id_containing_separator_does_not_collide() {
        // "a" vnode 0 is "a\0\0\0\0\0"; an id "a\0" would need a 7-byte string.
        let plain = vnode_token(&NodeId::new("a"), 0);
        let tricky = NodeId::new("a\0\0\0\0");
        assert_ne!(plain, vnode_token(&tricky, 0));
    }
}
