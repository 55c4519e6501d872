//! Peer protocol versions in a mixed cluster: a node speaks
//! [`PEER_PROTOCOL_VERSION`] and the version before it
//! ([`MIN_PEER_PROTOCOL_VERSION`]), so that a cluster can be upgraded one
//! node at a time (docs/operations.md, "Rolling upgrades").
//!
//! - **Reading.** A frame of either version is read; the answer goes back
//!   in the version of the request. A frame of a version this node does
//!   not speak is answered with a `Malformed` error in this node's newest
//!   version, as every release does.
//! - **Writing.** A node sends a peer the newest version both speak. It
//!   learns that a peer is older from the peer's answer: an older node
//!   answers a frame it cannot read in its own version, having read
//!   nothing, so the request is sent again in that version at once. What
//!   it learned expires after [`LEARNED_FOR`], so an upgraded peer is
//!   spoken to in the newer version again.
//! - **What differs.** Version 8 added [`ReplicaRequest::Repair`]; to a
//!   version 7 node a repair goes as a `Write` (which it treats alike).
//!   [`downgrade`] and [`fits`] say so, and version 9 adds its cases there.

use super::{PeerRequest, PeerResponse, ReplicaRequest, PEER_PROTOCOL_VERSION};
use kvorum_client::proto::{decode_frame, ErrorReply, FrameError, Response};
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::time::Duration;

/// The oldest peer protocol version a node still speaks.
pub const MIN_PEER_PROTOCOL_VERSION: u16 = 7;

/// How long a peer's older version is used before the newest is tried again.
pub const LEARNED_FOR: Duration = Duration::from_secs(30);

/// postcard's variant index of [`ReplicaRequest::Repair`] (the first byte
/// of an encoded replica request).
const REPAIR_TAG: u8 = 5;

/// The peer protocol versions a node speaks.
///
/// ```
/// use kvorum_node::rpc::peer::PeerVersions;
/// assert!(PeerVersions::CURRENT.speaks(7) && PeerVersions::CURRENT.speaks(8));
/// assert!(!PeerVersions::only(7).speaks(8));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerVersions {
    /// The oldest.
    pub min: u16,
    /// The newest: what it sends a peer it knows nothing of.
    pub max: u16,
}

impl PeerVersions {
    /// This release: the current version and the one before.
    pub const CURRENT: PeerVersions = PeerVersions {
        min: MIN_PEER_PROTOCOL_VERSION,
        max: PEER_PROTOCOL_VERSION,
    };

    /// One version only: `only(7)` makes a node read and write as a node of
    /// the previous release does (`peer_protocol = 7` in its config: the
    /// mixed-version tests).
    pub const fn only(version: u16) -> PeerVersions {
        PeerVersions {
            min: version,
            max: version,
        }
    }

    /// Whether a frame of `version` is read.
    pub fn speaks(&self, version: u16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// Decodes a peer frame of a version `versions` speaks; returns its version
/// with it.
pub fn decode_peer_frame<T: DeserializeOwned>(
    versions: PeerVersions,
    bytes: &[u8],
) -> Result<(u16, T), FrameError> {
    let (got, _) = postcard::take_from_bytes::<u16>(bytes)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !versions.speaks(got) {
        return Err(FrameError::UnsupportedVersion {
            got,
            supported: versions.max,
        });
    }
    decode_frame(got, bytes).map(|body| (got, body))
}

/// `req` as a node of `version` reads it (see the module doc).
pub fn downgrade(req: PeerRequest, version: u16) -> PeerRequest {
    if version >= 8 {
        return req;
    }
    match req {
        PeerRequest::Replica(r) => PeerRequest::Replica(downgrade_replica(r)),
        PeerRequest::Batch(bodies) => PeerRequest::Batch(
            bodies
                .iter()
                .map(|b| downgrade_body(b, version).into_owned())
                .collect(),
        ),
        other => other,
    }
}

/// An encoded replica request as a node of `version` reads it.
pub fn downgrade_body(body: &[u8], version: u16) -> Cow<'_, [u8]> {
    if version >= 8 || body.first() != Some(&REPAIR_TAG) {
        return Cow::Borrowed(body);
    }
    match postcard::from_bytes::<ReplicaRequest>(body) {
        Ok(r) => Cow::Owned(kvorum_client::bytes::encode(&downgrade_replica(r))),
        Err(_) => Cow::Borrowed(body),
    }
}

fn downgrade_replica(r: ReplicaRequest) -> ReplicaRequest {
    match r {
        ReplicaRequest::Repair { key, state } => ReplicaRequest::Write { key, state },
        other => other,
    }
}

/// `answer` as a node of `version` reads it: version 7 has no
/// `ErrorReply::DiskFull` (version 8's forwarded-write refusal below the
/// free-space watermark), which goes to it as `Unavailable`, with the same
/// text.
pub fn downgrade_answer(answer: PeerResponse, version: u16) -> PeerResponse {
    if version >= 8 {
        return answer;
    }
    match answer {
        PeerResponse::Forwarded(Response::Error(e @ ErrorReply::DiskFull { .. })) => {
            PeerResponse::Forwarded(Response::Error(ErrorReply::Unavailable(e.to_string())))
        }
        other => other,
    }
}

/// Whether `req`, read from a frame of `version`, is something a node of
/// that version could have sent; a request a node of `version` could not
/// have read is refused as it would have refused it (a `Repair` in a
/// version 7 frame, say). Batches are checked body by body: what does not
/// fit is blanked, so that it alone is answered `Malformed`.
pub fn fits(req: &mut PeerRequest, version: u16) -> bool {
    if version >= 8 {
        return true;
    }
    match req {
        PeerRequest::Replica(ReplicaRequest::Repair { .. }) => false,
        PeerRequest::Batch(bodies) => {
            for body in bodies.iter_mut() {
                if body.first() == Some(&REPAIR_TAG) {
                    body.clear();
                }
            }
            true
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::value::State;
    use kvorum_client::proto::encode_frame;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Frames of the previous release (peer protocol 7, commit f4ce8a3):
    /// a replica read of key `k`, and a ping, as its `encode_frame` wrote
    /// them (checked against a build of f4ce8a3: docs/testing.md).
    const V7_READ: &str = "070000016b";
    const V7_PING: &str = "070202";

    #[test]
    fn frames_of_the_previous_release_are_read() {
        let (v, req) =
            decode_peer_frame::<PeerRequest>(PeerVersions::CURRENT, &unhex(V7_READ)).unwrap();
        assert_eq!(v, 7);
        assert!(
            matches!(&req, PeerRequest::Replica(ReplicaRequest::Read { key }) if key == b"k"),
            "{req:?}"
        );
        let (v, req) =
            decode_peer_frame::<PeerRequest>(PeerVersions::CURRENT, &unhex(V7_PING)).unwrap();
        assert_eq!(v, 7);
        assert!(
            matches!(
                req,
                PeerRequest::Cluster(super::super::ClusterRequest::Ping)
            ),
            "{req:?}"
        );
        // This release writes those requests the same way in version 7.
        let read = PeerRequest::Replica(ReplicaRequest::Read { key: b"k".to_vec() });
        assert_eq!(hex(&encode_frame(7, &read)), V7_READ);
        // A node of the previous release alone refuses this release's frames.
        let now = encode_frame(PEER_PROTOCOL_VERSION, &read);
        assert!(matches!(
            decode_peer_frame::<PeerRequest>(PeerVersions::only(7), &now),
            Err(FrameError::UnsupportedVersion {
                got: 8,
                supported: 7
            })
        ));
    }

    #[test]
    fn a_disk_full_answer_goes_to_a_version_7_node_as_unavailable() {
        let full = ErrorReply::DiskFull {
            node: "n1".into(),
            detail: "d".into(),
        };
        let answer = PeerResponse::Forwarded(Response::Error(full.clone()));
        match downgrade_answer(answer.clone(), 7) {
            PeerResponse::Forwarded(Response::Error(ErrorReply::Unavailable(why))) => {
                assert_eq!(why, full.to_string())
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            downgrade_answer(answer, 8),
            PeerResponse::Forwarded(Response::Error(ErrorReply::DiskFull { .. }))
        ));
    }

    #[test]
    fn a_repair_goes_to_a_version_7_node_as_a_write() {
        let state = State::empty(kvorum_client::BucketType::Lww);
        let repair = ReplicaRequest::Repair {
            key: b"k".to_vec(),
            state: state.clone(),
        };
        let body = kvorum_client::bytes::encode(&repair);
        assert_eq!(body[0], REPAIR_TAG, "the tag of Repair");
        let old = downgrade_body(&body, 7);
        assert!(matches!(
            postcard::from_bytes::<ReplicaRequest>(&old).unwrap(),
            ReplicaRequest::Write { .. }
        ));
        assert_eq!(&*downgrade_body(&body, 8), &body[..], "unchanged for 8");
        let mut req = downgrade(PeerRequest::Replica(repair), 7);
        assert!(matches!(
            req,
            PeerRequest::Replica(ReplicaRequest::Write { .. })
        ));
        assert!(fits(&mut req, 7));
        // What a version 7 node could not have read is refused.
        let mut repair = PeerRequest::Replica(ReplicaRequest::Repair {
            key: b"k".to_vec(),
            state,
        });
        assert!(!fits(&mut repair, 7) && fits(&mut repair, 8));
        let mut batch = PeerRequest::Batch(vec![body.clone(), old.into_owned()]);
        assert!(fits(&mut batch, 7));
        let PeerRequest::Batch(bodies) = batch else {
            unreachable!()
        };
        assert!(bodies[0].is_empty() && !bodies[1].is_empty());
    }
}
