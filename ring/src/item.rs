//! Item addresses: how `(bucket, partition key, sort key)` becomes the byte
//! string a replica stores, and where on the ring it lives.
//!
//! # The storage key
//! ```text
//! u16 big-endian (0x8000 | bucket length) | bucket | escaped partition key | 0x00 0x00 | sort key
//! ```
//! (Bucket names are at most 1,024 bytes.) The high bit of the first byte
//! tells it from a key of format 1, the format before partitions (`u16
//! bucket length | bucket | key`), whose high bit is clear: so every key of
//! format 1 sorts before every key of today's, and a node migrating its
//! store finds the keys still to rewrite at the front
//! ([`from_format_1`]).
//! The partition key is escaped so that it ends unambiguously: each `0x00`
//! byte becomes `0x00 0x01`, and `0x00 0x00` closes it. So:
//! - the items of one partition share one prefix ([`partition_prefix`]) and
//!   are **contiguous**, sorted by sort key in plain byte order (the empty
//!   sort key first);
//! - partitions of a bucket sort by partition key in plain byte order (a
//!   shorter key before its extensions), and no partition's prefix is the
//!   prefix of another's (the first `0x00 0x00` ends it);
//! - the bucket comes first, so a bucket's keys are one range too.
//!
//! A single key of the key-value API is the partition of that key with one
//! item, the empty sort key.
//!
//! # Placement
//! An item's position on the ring ([`token`]) depends on its bucket and
//! partition key only, so every item of a partition has the same
//! preference list. It is `key_token` of `u16 bucket length | bucket |
//! partition key` (unescaped), which is exactly the storage key of format
//! 1 (before partitions): upgrading moves no key between nodes.

use crate::token::key_token;
use xxhash_rust::xxh3::Xxh3;

/// The bit of the bucket length that marks a key of today's format.
const FORMAT_2: u16 = 0x8000;
/// Bucket names longer than this are cut (the node refuses names over
/// 1,024 bytes long before they get here).
const MAX_BUCKET_LEN: usize = 0x7fff;

/// The two bytes that close an escaped partition key.
const END: [u8; 2] = [0x00, 0x00];
/// What a `0x00` byte of a partition key becomes.
const ESCAPED_ZERO: [u8; 2] = [0x00, 0x01];

/// The storage key of an item.
///
/// ```
/// use kvorum_ring::item::{decode, storage_key};
/// let k = storage_key("orders", b"alice", b"2026-12-06");
/// assert_eq!(decode(&k), Some(("orders", b"alice".to_vec(), &b"2026-12-06"[..])));
/// // A partition's items sort by sort key.
/// assert!(storage_key("orders", b"alice", b"a") < storage_key("orders", b"alice", b"b"));
/// ```
pub fn storage_key(bucket: &str, partition: &[u8], sort: &[u8]) -> Vec<u8> {
    let mut out = partition_prefix(bucket, partition);
    out.extend_from_slice(sort);
    out
}

/// The prefix every storage key of a partition starts with, and no other.
///
/// ```
/// use kvorum_ring::item::{partition_prefix, storage_key};
/// let p = partition_prefix("b", b"a");
/// assert!(storage_key("b", b"a", b"xyz").starts_with(&p));
/// assert!(!storage_key("b", b"ab", b"").starts_with(&p));
/// assert!(!storage_key("b", b"a\0", b"").starts_with(&p));
/// ```
pub fn partition_prefix(bucket: &str, partition: &[u8]) -> Vec<u8> {
    let mut out = bucket_prefix(bucket);
    out.reserve(partition.len() + 2);
    for &b in partition {
        if b == 0 {
            out.extend_from_slice(&ESCAPED_ZERO);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&END);
    out
}

/// The prefix every storage key of a bucket starts with.
///
/// ```
/// use kvorum_ring::item::{bucket_prefix, storage_key};
/// assert!(storage_key("b", b"p", b"s").starts_with(&bucket_prefix("b")));
/// assert!(!storage_key("bb", b"p", b"s").starts_with(&bucket_prefix("b")));
/// ```
pub fn bucket_prefix(bucket: &str) -> Vec<u8> {
    let b = bucket.as_bytes();
    let mut out = Vec::with_capacity(2 + b.len());
    out.extend_from_slice(&(FORMAT_2 | b.len().min(MAX_BUCKET_LEN) as u16).to_be_bytes());
    out.extend_from_slice(b);
    out
}

/// The parts of a storage key: bucket, partition key (unescaped) and sort
/// key. `None` for bytes that are not a storage key.
///
/// ```
/// use kvorum_ring::item::{decode, storage_key};
/// let k = storage_key("b", b"p\0q", b"\0\0");
/// assert_eq!(decode(&k), Some(("b", b"p\0q".to_vec(), &b"\0\0"[..])));
/// assert_eq!(decode(b"\x80\x05ab"), None);
/// ```
pub fn decode(skey: &[u8]) -> Option<(&str, Vec<u8>, &[u8])> {
    let (bucket, rest) = split_bucket(skey)?;
    let end = partition_end(rest)?;
    let partition = unescape(&rest[..end]);
    Some((bucket, partition, &rest[end + 2..]))
}

/// The bucket of a storage key.
///
/// ```
/// use kvorum_ring::item::{bucket_of, storage_key};
/// assert_eq!(bucket_of(&storage_key("users", b"k", b"")), Some("users"));
/// ```
pub fn bucket_of(skey: &[u8]) -> Option<&str> {
    split_bucket(skey).map(|(b, _)| b)
}

/// The partition prefix of a storage key (see [`partition_prefix`]).
///
/// ```
/// use kvorum_ring::item::{partition_of, partition_prefix, storage_key};
/// let k = storage_key("b", b"p", b"sort");
/// assert_eq!(partition_of(&k), Some(&partition_prefix("b", b"p")[..]));
/// ```
pub fn partition_of(skey: &[u8]) -> Option<&[u8]> {
    let (_, rest) = split_bucket(skey)?;
    let end = partition_end(rest)?;
    Some(&skey[..skey.len() - rest.len() + end + 2])
}

/// The sort key of a storage key.
///
/// ```
/// use kvorum_ring::item::{sort_of, storage_key};
/// assert_eq!(sort_of(&storage_key("b", b"p", b"s1")), Some(&b"s1"[..]));
/// ```
pub fn sort_of(skey: &[u8]) -> Option<&[u8]> {
    let prefix = partition_of(skey)?;
    Some(&skey[prefix.len()..])
}

/// Where an item lives on the ring: the token of its bucket and partition
/// key, equal for every item of a partition (see the module doc). Bytes that
/// are not a storage key hash whole.
///
/// ```
/// use kvorum_ring::{item, key_token};
/// let t = item::token(&item::storage_key("b", b"p", b"one"));
/// assert_eq!(t, item::token(&item::storage_key("b", b"p", b"two")));
/// // As before partitions: the hash of length, bucket and key.
/// assert_eq!(t, key_token(b"\x00\x01bp"));
/// ```
pub fn token(skey: &[u8]) -> u64 {
    let Some((bucket, rest)) = split_bucket(skey) else {
        return key_token(skey);
    };
    let Some(end) = partition_end(rest) else {
        return key_token(skey);
    };
    let escaped = &rest[..end];
    let mut h = Xxh3::new();
    h.update(&(bucket.len() as u16).to_be_bytes());
    h.update(bucket.as_bytes());
    if escaped.contains(&0) {
        h.update(&unescape(escaped));
    } else {
        // The common case: nothing to unescape.
        h.update(escaped);
    }
    h.digest()
}

/// The bytes a causal context of an item is sealed to: the storage key of
/// format 1 for the empty sort key (so contexts handed out before the
/// upgrade still open), today's storage key otherwise. The two formats
/// differ in their first bit, so no two items share them.
///
/// ```
/// use kvorum_ring::item::{seal_subject, storage_key};
/// assert_eq!(seal_subject(&storage_key("b", b"k", b"")), b"\x00\x01bk".to_vec());
/// let item = storage_key("b", b"k", b"s");
/// assert_eq!(seal_subject(&item), item);
/// ```
pub fn seal_subject(skey: &[u8]) -> Vec<u8> {
    match decode(skey) {
        Some((bucket, partition, [])) => {
            let mut out = Vec::with_capacity(2 + bucket.len() + partition.len());
            out.extend_from_slice(&(bucket.len() as u16).to_be_bytes());
            out.extend_from_slice(bucket.as_bytes());
            out.extend_from_slice(&partition);
            out
        }
        _ => skey.to_vec(),
    }
}

/// The storage key of format 1 (before partitions: `u16 length | bucket |
/// key`) as a storage key of today: the partition `key` with the empty sort
/// key. `None` for bytes that are not a key of format 1.
///
/// ```
/// use kvorum_ring::item::{from_format_1, storage_key};
/// assert_eq!(from_format_1(b"\x00\x01bkey"), Some(storage_key("b", b"key", b"")));
/// ```
pub fn from_format_1(old: &[u8]) -> Option<Vec<u8>> {
    let len = u16::from_be_bytes(old.get(..2)?.try_into().ok()?);
    if len & FORMAT_2 != 0 {
        return None;
    }
    let len = len as usize;
    let bucket = std::str::from_utf8(old.get(2..2 + len)?).ok()?;
    Some(storage_key(bucket, &old[2 + len..], b""))
}

/// True for the bytes of a key of format 1 (see [`from_format_1`]); those of
/// today's format start with a set bit.
///
/// ```
/// use kvorum_ring::item::{is_format_1, storage_key};
/// assert!(is_format_1(b"\x00\x01bk"));
/// assert!(!is_format_1(&storage_key("b", b"k", b"")));
/// ```
pub fn is_format_1(key: &[u8]) -> bool {
    key.first().is_some_and(|b| b & 0x80 == 0)
}

/// The first key of today's format: every key of format 1 sorts before it.
pub const FIRST_FORMAT_2_KEY: &[u8] = &[0x80];

fn split_bucket(skey: &[u8]) -> Option<(&str, &[u8])> {
    let len = u16::from_be_bytes(skey.get(..2)?.try_into().ok()?);
    if len & FORMAT_2 == 0 {
        return None;
    }
    let len = (len & !FORMAT_2) as usize;
    let bucket = std::str::from_utf8(skey.get(2..2 + len)?).ok()?;
    Some((bucket, &skey[2 + len..]))
}

/// Where the closing `0x00 0x00` of an escaped partition key starts.
fn partition_end(rest: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == 0 {
            match rest.get(i + 1)? {
                0 => return Some(i),
                1 => i += 2,
                _ => return None,
            }
        } else {
            i += 1;
        }
    }
    None
}

fn unescape(escaped: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        out.push(escaped[i]);
        i += if escaped[i] == 0 { 2 } else { 1 };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        // Zeros and ones are the interesting bytes: weigh them up.
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..6)
    }

    proptest! {
        #[test]
        fn storage_keys_round_trip(b in "[a-z]{1,3}", p in bytes(), s in bytes()) {
            let k = storage_key(&b, &p, &s);
            prop_assert_eq!(decode(&k), Some((b.as_str(), p.clone(), &s[..])));
            prop_assert_eq!(sort_of(&k), Some(&s[..]));
            prop_assert_eq!(partition_of(&k), Some(&partition_prefix(&b, &p)[..]));
        }

        /// Storage keys sort by (bucket, partition key, sort key), each in
        /// plain byte order, and a partition is one contiguous range.
        #[test]
        fn order_is_partition_then_sort(p1 in bytes(), s1 in bytes(), p2 in bytes(), s2 in bytes()) {
            let k1 = storage_key("b", &p1, &s1);
            let k2 = storage_key("b", &p2, &s2);
            prop_assert_eq!(k1.cmp(&k2), (&p1, &s1).cmp(&(&p2, &s2)));
            prop_assert_eq!(k2.starts_with(&partition_prefix("b", &p1)), p1 == p2);
        }

        /// Placement ignores the sort key and equals format 1's.
        #[test]
        fn token_is_the_partitions_and_format_1s(p in bytes(), s in bytes()) {
            let mut old = vec![0, 1, b'b'];
            old.extend_from_slice(&p);
            prop_assert_eq!(token(&storage_key("b", &p, &s)), key_token(&old));
            if s.is_empty() {
                prop_assert_eq!(seal_subject(&storage_key("b", &p, &s)), old.clone());
            }
            prop_assert_eq!(from_format_1(&old), Some(storage_key("b", &p, b"")));
        }
    }

    #[test]
    fn malformed_keys_decode_to_none() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"\x80\x02a"), None);
        assert_eq!(decode(b"\x80\x01bp"), None); // no end of partition
        assert_eq!(decode(b"\x80\x01bp\x00\x07"), None); // a bad escape
        assert_eq!(decode(b"\x80\x01\xffp\x00\x00"), None); // not UTF-8
        assert_eq!(decode(b"\x00\x01bp\x00\x00"), None); // format 1
    }
}
