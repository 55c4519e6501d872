//! Framing: the protocol version, the ALPNs and certificate names, the
//! size limit of answers, and the versioned envelope every message travels
//! in ([`encode_frame`], [`decode_frame`]).

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The version of the client protocol this crate speaks.
///
/// A node answers a frame of another version with
/// [`ErrorReply::UnsupportedVersion`]. Version 2 added the version a read
/// must reach (`at_least`), the version and replica report of reads, and
/// the version of writes. Version 3 added certificate roles and the
/// access list: the `Forbidden` error, the admin requests `Grant`,
/// `Revoke`, `Access`, `ReloadCertificates` and `Quarantined`, node
/// certificates in `Status`; and causal contexts are sealed (a context
/// of version 2 is refused: read again).
///
/// [`ErrorReply::UnsupportedVersion`]: crate::proto::ErrorReply::UnsupportedVersion
///
/// ```
/// use kvorum_client::proto::{decode_frame, encode_frame, FrameError, Request, PROTOCOL_VERSION};
/// let next = encode_frame(PROTOCOL_VERSION + 1, &Request::Status);
/// assert_eq!(
///     decode_frame::<Request>(PROTOCOL_VERSION, &next),
///     Err(FrameError::UnsupportedVersion { got: PROTOCOL_VERSION + 1, supported: PROTOCOL_VERSION }),
/// );
/// ```
pub const PROTOCOL_VERSION: u16 = 3;

/// ALPN of client-to-node connections.
///
/// ```
/// use kvorum_client::proto::{ALPN_CLIENT, ALPN_PEER};
/// assert_eq!(ALPN_CLIENT, b"kvorum-client/1");
/// assert_ne!(ALPN_CLIENT, ALPN_PEER);
/// ```
pub const ALPN_CLIENT: &[u8] = b"kvorum-client/1";

/// ALPN of node-to-node connections. Only certificates that carry the node
/// role ([`NODE_CERT_NAME`]) may use it.
///
/// ```
/// use kvorum_client::proto::ALPN_PEER;
/// assert_eq!(ALPN_PEER, b"kvorum-peer/1");
/// ```
pub const ALPN_PEER: &[u8] = b"kvorum-peer/1";

/// DNS subject alternative name that every node certificate carries. Clients
/// verify nodes against it; nodes require it of peers on [`ALPN_PEER`].
///
/// ```
/// use kvorum_client::proto::NODE_CERT_NAME;
/// assert_eq!(NODE_CERT_NAME, "node.kvorum");
/// ```
pub const NODE_CERT_NAME: &str = "node.kvorum";

/// DNS subject alternative name that application (client-role)
/// certificates carry. Their identity is a second name,
/// `NAME.client.kvorum`.
///
/// ```
/// use kvorum_client::proto::{CLIENT_CERT_NAME, NODE_CERT_NAME};
/// assert_eq!(CLIENT_CERT_NAME, "client.kvorum");
/// assert_ne!(CLIENT_CERT_NAME, NODE_CERT_NAME);
/// ```
pub const CLIENT_CERT_NAME: &str = "client.kvorum";

/// DNS subject alternative name that operator (admin-role) certificates
/// carry; nodes serve admin requests only to them. Their identity is a
/// second name, `NAME.admin.kvorum`.
///
/// ```
/// use kvorum_client::proto::{ADMIN_CERT_NAME, CLIENT_CERT_NAME};
/// assert_eq!(ADMIN_CERT_NAME, "admin.kvorum");
/// assert_ne!(ADMIN_CERT_NAME, CLIENT_CERT_NAME);
/// ```
pub const ADMIN_CERT_NAME: &str = "admin.kvorum";

/// Largest frame a client accepts from a node by default: a read answer may
/// carry every sibling of a key, up to the node's default `max_siblings` (64)
/// values of its default `max_value_bytes` (1 MiB), plus framing.
///
/// ```
/// use kvorum_client::proto::DEFAULT_MAX_RESPONSE_BYTES;
/// // 72 MiB: 64 siblings of 1 MiB, with room to spare for framing.
/// assert_eq!(DEFAULT_MAX_RESPONSE_BYTES, 72 << 20);
/// ```
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 72 * 1024 * 1024;

/// QUIC stream error code of a request a draining node refused (it is
/// shutting down gracefully): the node stopped the request stream without
/// reading it, so the request was not applied and a client sends it to
/// another node, as this crate's [`Client`](crate::Client) does.
///
/// ```
/// use kvorum_client::proto::STREAM_DRAINING;
/// assert_eq!(STREAM_DRAINING, 0x44);
/// ```
pub const STREAM_DRAINING: u32 = 0x44;

/// QUIC connection close code of a node that shut down after a complete
/// drain: every client request it read was answered, and the answer
/// delivered, before it closed, so a request still unanswered on the
/// connection was not read, and a client may send it to another node.
///
/// ```
/// use kvorum_client::proto::CLOSE_DRAINED;
/// assert_eq!(CLOSE_DRAINED, 0x15);
/// ```
pub const CLOSE_DRAINED: u32 = 0x15;

/// A versioned frame: what [`encode_frame`] writes and [`decode_frame`] reads.
///
/// ```
/// use kvorum_client::proto::{encode_frame, Envelope, Request, PROTOCOL_VERSION};
/// let env = Envelope { version: PROTOCOL_VERSION, body: Request::Status };
/// let bytes = postcard::to_stdvec(&env).unwrap();
/// assert_eq!(bytes, encode_frame(PROTOCOL_VERSION, &Request::Status));
/// assert_eq!(postcard::from_bytes::<Envelope<Request>>(&bytes).unwrap(), env);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Protocol version of `body`.
    pub version: u16,
    /// The message.
    pub body: T,
}

/// Why a frame could not be decoded.
///
/// ```
/// use kvorum_client::proto::{decode_frame, encode_frame, FrameError, Request, PROTOCOL_VERSION};
/// let mut frame = encode_frame(PROTOCOL_VERSION, &Request::Status);
/// frame.push(0);
/// let err = decode_frame::<Request>(PROTOCOL_VERSION, &frame).unwrap_err();
/// assert_eq!(err, FrameError::TrailingBytes(1));
/// assert_eq!(err.to_string(), "1 trailing bytes after the message");
/// let empty = decode_frame::<Request>(PROTOCOL_VERSION, &[]);
/// assert!(matches!(empty, Err(FrameError::Malformed(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is not a well-formed postcard envelope (garbage or truncated).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame names a protocol version this side does not speak.
    #[error("unsupported protocol version {got} (this side speaks {supported})")]
    UnsupportedVersion {
        /// Version found in the frame.
        got: u16,
        /// Version this side speaks.
        supported: u16,
    },
    /// The frame has bytes after its message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Encodes `body` as a frame of protocol `version`.
///
/// ```
/// use kvorum_client::proto::{decode_frame, encode_frame, Request, PROTOCOL_VERSION};
/// use kvorum_client::ReadOptions;
/// let req = Request::Get {
///     bucket: "users".into(),
///     key: b"alice".to_vec(),
///     options: ReadOptions::r(2),
///     at_least: None,
/// };
/// let frame = encode_frame(PROTOCOL_VERSION, &req);
/// assert_eq!(frame[0], PROTOCOL_VERSION as u8); // the version comes first (a postcard varint)
/// assert_eq!(decode_frame::<Request>(PROTOCOL_VERSION, &frame), Ok(req));
/// ```
pub fn encode_frame<T: Serialize>(version: u16, body: &T) -> Vec<u8> {
    let env = EnvelopeRef { version, body };
    // Serializing plain data into a Vec cannot fail: postcard only fails on
    // types serde cannot represent (none here) or on a full fixed buffer.
    crate::bytes::encode(&env)
}

#[derive(Serialize)]
struct EnvelopeRef<'a, T> {
    version: u16,
    body: &'a T,
}

/// Decodes a frame of protocol `version` whose bytes were read whole.
///
/// The caller bounds `bytes` (the stream is read with a size limit); nothing
/// here allocates more than `bytes.len()` in total for byte strings.
///
/// ```
/// use kvorum_client::proto::{decode_frame, encode_frame, FrameError, Response, PROTOCOL_VERSION};
/// use kvorum_client::{CausalContext, ReadReport, Version};
/// let answer = Response::NotFound {
///     context: CausalContext::empty(),
///     version: Version::default(),
///     report: ReadReport { asked: 3, r: 2, answered: 2, agreed: true },
/// };
/// let frame = encode_frame(PROTOCOL_VERSION, &answer);
/// assert_eq!(decode_frame::<Response>(PROTOCOL_VERSION, &frame), Ok(answer));
/// // A truncated frame is an error, never a panic.
/// let cut = decode_frame::<Response>(PROTOCOL_VERSION, &frame[..1]);
/// assert!(matches!(cut, Err(FrameError::Malformed(_))));
/// ```
pub fn decode_frame<T: DeserializeOwned>(version: u16, bytes: &[u8]) -> Result<T, FrameError> {
    let (got, rest) = postcard::take_from_bytes::<u16>(bytes)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if got != version {
        return Err(FrameError::UnsupportedVersion {
            got,
            supported: version,
        });
    }
    let (body, rest) =
        postcard::take_from_bytes::<T>(rest).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{CausalContext, ReadOptions, Request, WriteOptions};

    #[test]
    fn frame_round_trip() {
        let req = Request::Put {
            bucket: "b".into(),
            key: b"k".to_vec(),
            value: vec![7; 100],
            context: CausalContext(vec![1, 2, 3]),
            options: WriteOptions::w(2),
        };
        let bytes = encode_frame(PROTOCOL_VERSION, &req);
        assert_eq!(decode_frame::<Request>(PROTOCOL_VERSION, &bytes), Ok(req));
    }

    #[test]
    fn truncated_garbage_and_wrong_version_are_errors() {
        let bytes = encode_frame(PROTOCOL_VERSION, &Request::Status);
        let put = encode_frame(
            PROTOCOL_VERSION,
            &Request::Get {
                bucket: "bucket".into(),
                key: vec![1; 64],
                options: ReadOptions::default(),
                at_least: None,
            },
        );
        assert!(matches!(
            decode_frame::<Request>(PROTOCOL_VERSION, &put[..put.len() / 2]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_frame::<Request>(PROTOCOL_VERSION, &[0xff; 40]),
            Err(FrameError::Malformed(_))
        ));
        assert_eq!(
            decode_frame::<Request>(PROTOCOL_VERSION + 1, &bytes),
            Err(FrameError::UnsupportedVersion {
                got: PROTOCOL_VERSION,
                supported: PROTOCOL_VERSION + 1
            })
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            decode_frame::<Request>(PROTOCOL_VERSION, &long),
            Err(FrameError::TrailingBytes(1))
        );
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // version 3, variant Put (2), bucket length = huge varint.
        let mut bytes = vec![3u8, 2];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_frame::<Request>(PROTOCOL_VERSION, &bytes).is_err());
    }
}

#[cfg(test)]
mod measurements {
    use super::*;
    use crate::proto::{CausalContext, Request, WriteOptions};

    /// A measurement, not a check of speed (docs/performance.md quotes it):
    /// `cargo test --release -p kvorum-client --lib encode_cost --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it by name"]
    fn encode_cost() {
        let req = Request::Put {
            bucket: "default".into(),
            key: b"key00012345".to_vec(),
            value: vec![7u8; 100],
            context: CausalContext(vec![1u8; 30]),
            options: WriteOptions::w(2),
        };
        let n = 1_000_000u32;
        let started = std::time::Instant::now();
        let mut total = 0usize;
        for _ in 0..n {
            let f = encode_frame(PROTOCOL_VERSION, &req);
            let back: Request = decode_frame(PROTOCOL_VERSION, &f).unwrap();
            total += f.len() + matches!(back, Request::Put { .. }) as usize;
        }
        eprintln!(
            "put frame encode+decode: {:?} each ({total})",
            started.elapsed() / n
        );
    }
}
