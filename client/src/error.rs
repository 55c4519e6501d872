//! The errors of client calls: [`Error`].

use crate::proto::{ErrorReply, Response};
use crate::tls::TlsError;
use std::{net::SocketAddr, time::Duration};

/// Errors of [`Client`](crate::Client), [`Admin`](crate::Admin) and
/// [`Session`](crate::Session) calls.
///
/// ```
/// use kvorum_client::{Client, Error, ErrorReply};
/// # let ck = rcgen::generate_simple_self_signed(vec!["client.kvorum".to_string()]).unwrap();
/// # let (ca_pem, cert_pem, key_pem) = (ck.cert.pem(), ck.cert.pem(), ck.signing_key.serialize_pem());
/// let tls = kvorum_client::TlsMaterial::from_pem(&ca_pem, &cert_pem, &key_pem)?;
/// let err = Client::connect([], tls).unwrap_err();
/// assert_eq!(err.to_string(), "no seed addresses given");
/// let transient = matches!(&err,
///     Error::Server(ErrorReply::Quorum(_) | ErrorReply::Unavailable(_))
///         | Error::NoNodeAvailable(_) | Error::Timeout { .. });
/// assert!(!transient);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node refused or failed the request; nothing was acknowledged.
    #[error("node error: {0}")]
    Server(#[from] ErrorReply),
    /// No node could be reached; each entry says why for one address.
    #[error("no node reachable: {}", describe(.0))]
    NoNodeAvailable(Vec<(SocketAddr, String)>),
    /// The connection failed after a write was sent: it may or may not have
    /// been applied. Read the key to find out.
    #[error("connection to {addr} lost during a write (outcome unknown): {reason}")]
    OutcomeUnknown {
        /// The node.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The node did not answer in time.
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The node.
        addr: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
    /// The node's answer could not be decoded or was not the expected kind.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The local QUIC endpoint could not be created.
    #[error("cannot create the client endpoint: {0}")]
    Endpoint(std::io::Error),
    /// The client was built without seed addresses.
    #[error("no seed addresses given")]
    NoSeeds,
    /// A [`Session`](crate::Session) read found no node that could answer
    /// with the key's state at least as new as what the session wrote or
    /// read before, within the request timeout. Nothing older was returned;
    /// retrying later may succeed (the replica holding the session's
    /// version may be partitioned away or down).
    #[error("session read of {bucket:?} not served at the session's version within {after:?} ({attempts} attempts; last: {last})")]
    Stale {
        /// The bucket of the key.
        bucket: String,
        /// Requests sent (each to another node where possible).
        attempts: u32,
        /// How long the session tried.
        after: Duration,
        /// Why the last attempt failed.
        last: String,
    },
}

fn describe(v: &[(SocketAddr, String)]) -> String {
    v.iter()
        .map(|(a, why)| format!("{a}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The error of an answer that does not carry what the request asked
    /// for: the node's error reply, or else a protocol error.
    pub(crate) fn of_answer(r: Response) -> Error {
        match r {
            Response::Error(e) => Error::Server(e),
            other => Error::Protocol(format!("unexpected answer: {other:?}")),
        }
    }
}
