//! Byte strings as one blob on the wire, for `#[serde(with = ...)]`.
//!
//! Serde sees a `Vec<u8>` as a sequence of `u8`s, so a format writes and
//! reads it one byte at a time. In postcard a sequence of `u8` and a byte
//! string have the same encoding (a varint length, then the bytes), so
//! these helpers change no byte on the wire or on disk; they only let
//! postcard copy a value whole. A reader that hands a sequence instead
//! (a self-describing format) is accepted too.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Plain(Vec<u8>);
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Blob(#[serde(with = "kvorum_client::bytes")] Vec<u8>);
//! let plain = postcard::to_stdvec(&Plain(b"value".to_vec())).unwrap();
//! let blob = postcard::to_stdvec(&Blob(b"value".to_vec())).unwrap();
//! assert_eq!(plain, blob);
//! assert_eq!(postcard::from_bytes::<Blob>(&plain).unwrap(), Blob(b"value".to_vec()));
//! ```

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use std::fmt;

/// Most bytes a sequence's length hint may reserve before they arrive (a
/// hostile hint cannot make a reader allocate more).
const MAX_RESERVE: usize = 64 * 1024;

/// Writes `bytes` as one byte string.
///
/// ```
/// use postcard::ser_flavors::{AllocVec, Flavor};
/// let mut out = postcard::Serializer { output: AllocVec::new() };
/// kvorum_client::bytes::serialize(b"ab", &mut out).unwrap();
/// assert_eq!(out.output.finalize().unwrap(), vec![2, b'a', b'b']);
/// ```
pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Reads a byte string (or a sequence of `u8`).
///
/// ```
/// let mut de = postcard::Deserializer::from_bytes(&[2, b'a', b'b']);
/// assert_eq!(kvorum_client::bytes::deserialize(&mut de).unwrap(), b"ab".to_vec());
/// ```
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_byte_buf(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_RESERVE));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// The same for a list of byte strings (`Vec<Vec<u8>>`): each one a blob.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// struct Plain(Vec<Vec<u8>>);
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// struct Blobs(#[serde(with = "kvorum_client::bytes::list")] Vec<Vec<u8>>);
/// let items = vec![b"a".to_vec(), Vec::new(), b"bc".to_vec()];
/// let plain = postcard::to_stdvec(&Plain(items.clone())).unwrap();
/// assert_eq!(postcard::to_stdvec(&Blobs(items.clone())).unwrap(), plain);
/// assert_eq!(postcard::from_bytes::<Blobs>(&plain).unwrap(), Blobs(items));
/// ```
pub mod list {
    use super::{BytesVisitor, MAX_RESERVE};
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;
    use serde::{Deserialize, Serialize};
    use std::fmt;

    struct Blob<'a>(&'a [u8]);

    impl Serialize for Blob<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    struct Owned(Vec<u8>);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_byte_buf(BytesVisitor).map(Owned)
        }
    }

    /// Writes each byte string of `items` as one blob.
    ///
    /// ```
    /// use postcard::ser_flavors::{AllocVec, Flavor};
    /// let mut out = postcard::Serializer { output: AllocVec::new() };
    /// kvorum_client::bytes::list::serialize(&[b"a".to_vec()], &mut out).unwrap();
    /// assert_eq!(out.output.finalize().unwrap(), vec![1, 1, b'a']);
    /// ```
    pub fn serialize<S: Serializer>(items: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(items.iter().map(|b| Blob(b)))
    }

    /// Reads a list of byte strings.
    ///
    /// ```
    /// let mut de = postcard::Deserializer::from_bytes(&[1, 1, b'a']);
    /// assert_eq!(kvorum_client::bytes::list::deserialize(&mut de).unwrap(), vec![b"a".to_vec()]);
    /// ```
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        deserializer.deserialize_seq(ListVisitor)
    }

    struct ListVisitor;

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<Vec<u8>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of byte strings")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Vec<u8>>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0).min(MAX_RESERVE / 24);
            let mut out = Vec::with_capacity(hint);
            while let Some(Owned(b)) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// The postcard encoding of `value`, written into a buffer of its exact
/// size (measured first, without writing), where `postcard::to_stdvec`
/// grows its buffer from empty, copying it at every doubling. Empty if
/// `value` cannot be encoded (only types serde cannot represent fail).
///
/// ```
/// let encoded = kvorum_client::bytes::encode(&(7u8, b"value".to_vec()));
/// assert_eq!(encoded, postcard::to_stdvec(&(7u8, b"value".to_vec())).unwrap());
/// assert_eq!(encoded.capacity(), encoded.len());
/// ```
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let size = postcard::experimental::serialized_size(value).unwrap_or(0);
    postcard::to_extend(value, Vec::with_capacity(size)).unwrap_or_default()
}
