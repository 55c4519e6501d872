//! Decoding a request frame and asking the handler: a client's, or a
//! peer's in the peer protocol version it came in.

use super::{identity::Caller, Handler};
use crate::rpc::peer::{PeerError, PeerRequest, PeerResponse};
use kvorum_client::proto::{
    decode_frame, ErrorReply, FrameError, Request, Response, PROTOCOL_VERSION,
};

/// The handler's answer, or `Err` with the answer to a frame that could
/// not be decoded (which the handler never sees).
pub(super) async fn client_answer(
    handler: &dyn Handler,
    caller: &Caller,
    bytes: &[u8],
) -> Result<Response, Response> {
    match decode_frame::<Request>(PROTOCOL_VERSION, bytes) {
        Ok(req) => Ok(handler.client(caller, req).await),
        Err(FrameError::UnsupportedVersion { got, supported }) => {
            Err(Response::Error(ErrorReply::UnsupportedVersion {
                got,
                supported,
            }))
        }
        Err(e) => Err(Response::Error(ErrorReply::BadRequest(e.to_string()))),
    }
}

/// A peer request's answer, with the version to write it in: the
/// request's, or this node's newest for a frame it cannot read.
pub(super) async fn peer_answer(
    handler: &dyn Handler,
    caller: &Caller,
    bytes: &[u8],
    versions: crate::rpc::peer::PeerVersions,
) -> (u16, PeerResponse) {
    match crate::rpc::peer::decode_peer_frame::<PeerRequest>(versions, bytes) {
        Ok((version, mut req)) => {
            if !crate::rpc::peer::fits(&mut req, version) {
                let why = format!("not a request of peer protocol {version}");
                return (version, PeerResponse::Error(PeerError::Malformed(why)));
            }
            let answer = handler.peer(caller, req).await;
            (version, crate::rpc::peer::downgrade_answer(answer, version))
        }
        Err(e) => (
            versions.max,
            PeerResponse::Error(PeerError::Malformed(e.to_string())),
        ),
    }
}
