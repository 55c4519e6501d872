//! Who is calling: the role and name a certificate carries.
//!
//! A certificate carries its role in a DNS subject alternative name, one
//! of [`NODE_CERT_NAME`], [`ADMIN_CERT_NAME`] and [`CLIENT_CERT_NAME`], and
//! its name in a second one, `NAME.<role name>` (`n1.node.kvorum`,
//! `ops.admin.kvorum`, `shop.client.kvorum`). DNS names because the node
//! role already is one (clients verify nodes against it with ordinary
//! host-name verification), any X.509 tool shows them, and any CA can issue
//! them; a private extension would need its own OID and parser in every
//! tool. A certificate that names no role, or more than one, is refused:
//! every certificate has exactly one role.
//!
//! The chain is verified by rustls before this runs; this only reads names.

use kvorum_client::proto::{ADMIN_CERT_NAME, CLIENT_CERT_NAME, NODE_CERT_NAME};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a certificate may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A cluster member: peer calls, and data requests on every bucket.
    Node,
    /// An operator: admin requests, and data requests on every bucket.
    Admin,
    /// An application: data requests on the buckets the access list grants
    /// its name.
    Client,
}

impl Role {
    /// The DNS name that carries the role.
    pub fn cert_name(self) -> &'static str {
        match self {
            Role::Node => NODE_CERT_NAME,
            Role::Admin => ADMIN_CERT_NAME,
            Role::Client => CLIENT_CERT_NAME,
        }
    }

    /// The role's name, as `kvorum cert` and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Admin => "admin",
            Role::Client => "client",
        }
    }

    const ALL: [Role; 3] = [Role::Node, Role::Admin, Role::Client];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified caller of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its role.
    pub role: Role,
    /// Its name (`NAME` of `NAME.<role>.kvorum`); `None` for a certificate
    /// made before names were carried (it matches only `*` grants).
    pub name: Option<String>,
    /// The certificate's serial number, lower-case hex.
    pub serial: String,
    /// When the certificate expires, seconds since the Unix epoch.
    pub not_after: i64,
}

impl Caller {
    /// The caller's name, or `-` when its certificate names none.
    pub fn name_or_dash(&self) -> &str {
        self.name.as_deref().unwrap_or("-")
    }
}

/// Why a certificate carries no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate could not be parsed.
    #[error("unparsable certificate: {0}")]
    Unparsable(String),
    /// The certificate names none of the three roles.
    #[error(
        "the certificate carries no role (a DNS name node.kvorum, admin.kvorum or client.kvorum)"
    )]
    NoRole,
    /// The certificate names more than one role.
    #[error("the certificate carries more than one role ({0:?}); make one certificate per role")]
    ManyRoles(Vec<Role>),
    /// The certificate names more than one identity for its role.
    #[error("the certificate carries more than one name for its role ({0:?})")]
    ManyNames(Vec<String>),
}

/// The caller a verified leaf certificate (DER) names.
pub fn of_certificate(der: &[u8]) -> Result<Caller, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(IdentityError::Unparsable(e.to_string())),
    };
    let roles: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| names.iter().any(|n| n == r.cert_name()))
        .collect();
    let role = match roles.as_slice() {
        [] => return Err(IdentityError::NoRole),
        [one] => *one,
        _ => return Err(IdentityError::ManyRoles(roles)),
    };
    let suffix = format!(".{}", role.cert_name());
    let mut named: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix(&suffix))
        .filter(|label| is_label(label))
        .map(str::to_string)
        .collect();
    named.sort();
    named.dedup();
    let name = match named.len() {
        0 => None,
        1 => named.pop(),
        _ => return Err(IdentityError::ManyNames(named)),
    };
    Ok(Caller {
        role,
        name,
        serial: hex(cert.tbs_certificate.raw_serial()),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// True for a name a certificate can carry: one DNS label, lower-case
/// letters, digits and `-`, not starting or ending with `-`, 1 to 63 bytes.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The caller of a QUIC connection: its verified client certificate's.
pub fn of_connection(conn: &quinn::Connection) -> Result<Caller, IdentityError> {
    let chain = conn
        .peer_identity()
        .and_then(|i| {
            i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or(IdentityError::NoRole)?;
    let leaf = chain.first().ok_or(IdentityError::NoRole)?;
    of_certificate(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::certs;

    fn caller(pem: &certs::Pem) -> Result<Caller, IdentityError> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let der = CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap();
        of_certificate(&der)
    }

    #[test]
    fn each_role_and_name_is_read_back() {
        let ca = certs::make_ca("t").unwrap();
        let node = caller(&certs::make_node(&ca, "n1", &[]).unwrap()).unwrap();
        assert_eq!((node.role, node.name.as_deref()), (Role::Node, Some("n1")));
        let admin = caller(&certs::make_admin(&ca, "ops").unwrap()).unwrap();
        assert_eq!(
            (admin.role, admin.name.as_deref()),
            (Role::Admin, Some("ops"))
        );
        let client = caller(&certs::make_client(&ca, "shop").unwrap()).unwrap();
        assert_eq!(
            (client.role, client.name.as_deref()),
            (Role::Client, Some("shop"))
        );
        assert!(!client.serial.is_empty());
        assert_ne!(client.serial, admin.serial);
    }

    #[test]
    fn no_role_or_two_roles_are_refused() {
        let ca = certs::make_ca("t").unwrap();
        let none = certs::make_leaf_with_names(&ca, &["example.org"]).unwrap();
        assert_eq!(caller(&none), Err(IdentityError::NoRole));
        let two = certs::make_leaf_with_names(&ca, &[CLIENT_CERT_NAME, ADMIN_CERT_NAME]).unwrap();
        assert!(matches!(caller(&two), Err(IdentityError::ManyRoles(_))));
        let legacy = certs::make_leaf_with_names(&ca, &[CLIENT_CERT_NAME]).unwrap();
        let c = caller(&legacy).unwrap();
        assert_eq!((c.role, c.name), (Role::Client, None));
    }

    #[test]
    fn labels() {
        assert!(is_label("shop-1"));
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"x".repeat(64)] {
            assert!(!is_label(bad), "{bad:?}");
        }
    }
}
