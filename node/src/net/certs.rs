//! Certificates of a cluster (rcgen): one CA; node certificates that serve
//! and dial peers; admin certificates for operators; client certificates
//! for applications.
//!
//! Roles and names are carried in DNS subject alternative names (see
//! [`crate::net::identity`]): a node certificate names `node.kvorum`
//! and `ID.node.kvorum`, an admin certificate `admin.kvorum` and
//! `NAME.admin.kvorum`, a client certificate `client.kvorum` and
//! `NAME.client.kvorum`.
//!
//! Leaves are valid for [`DEFAULT_LEAF_DAYS`] unless told otherwise, the CA
//! for [`DEFAULT_CA_DAYS`]; both start an hour in the past, so a peer whose
//! clock is a little behind accepts a certificate made just now.

use crate::net::identity::{is_label, Role};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen failed (bad name, bad key, unparsable CA).
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A name that a certificate cannot carry.
    #[error("{0:?} cannot name a certificate: use 1 to 63 lower-case letters, digits and '-'")]
    BadName(String),
    /// A validity of zero days, or of more than 100 years.
    #[error("a certificate's validity must be 1 to 36500 days, not {0}")]
    BadValidity(u32),
    /// A file to write already exists.
    #[error("{0} already exists; remove it first or choose another name")]
    Exists(PathBuf),
}

/// A certificate and its key, both PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

/// Days a leaf (node, admin or client) certificate is valid by default.
pub const DEFAULT_LEAF_DAYS: u32 = 365;
/// Days a cluster CA is valid by default.
pub const DEFAULT_CA_DAYS: u32 = 3650;

/// Sets `params` valid from an hour ago for `days`.
fn validity(params: &mut CertificateParams, days: u32) -> Result<(), CertError> {
    if days == 0 || days > 36_500 {
        return Err(CertError::BadValidity(days));
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    Ok(())
}

/// Makes a new cluster CA, valid for [`DEFAULT_CA_DAYS`].
pub fn make_ca(cluster: &str) -> Result<Pem, CertError> {
    make_ca_for(cluster, DEFAULT_CA_DAYS)
}

/// Makes a new cluster CA valid for `days`.
pub fn make_ca_for(cluster: &str, days: u32) -> Result<Pem, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Kvorum cluster CA ({cluster})"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Makes a node certificate for node `id`, signed by `ca`, valid for
/// [`DEFAULT_LEAF_DAYS`]. Extra names (host names or IPs the node is
/// reached at) may be added.
pub fn make_node(ca: &Pem, id: &str, extra_names: &[String]) -> Result<Pem, CertError> {
    make_node_for(ca, id, extra_names, DEFAULT_LEAF_DAYS)
}

/// [`make_node`], valid for `days`.
pub fn make_node_for(
    ca: &Pem,
    id: &str,
    extra_names: &[String],
    days: u32,
) -> Result<Pem, CertError> {
    let mut names = role_names(Role::Node, id)?;
    for n in extra_names {
        // An extra name must not smuggle in a role or another identity.
        let lower = n.to_ascii_lowercase();
        if lower == "kvorum" || lower.ends_with(".kvorum") {
            return Err(CertError::BadName(n.clone()));
        }
        names.push(n.clone());
    }
    leaf(
        ca,
        &format!("kvorum node {id}"),
        names,
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        days,
    )
}

/// Makes a client (application) certificate named `name`, signed by `ca`,
/// valid for [`DEFAULT_LEAF_DAYS`].
pub fn make_client(ca: &Pem, name: &str) -> Result<Pem, CertError> {
    make_user(ca, Role::Client, name, DEFAULT_LEAF_DAYS)
}

/// Makes an admin (operator) certificate named `name`, signed by `ca`,
/// valid for [`DEFAULT_LEAF_DAYS`].
pub fn make_admin(ca: &Pem, name: &str) -> Result<Pem, CertError> {
    make_user(ca, Role::Admin, name, DEFAULT_LEAF_DAYS)
}

/// Makes a client or admin certificate named `name`, valid for `days`.
pub fn make_user(ca: &Pem, role: Role, name: &str, days: u32) -> Result<Pem, CertError> {
    leaf(
        ca,
        &format!("kvorum {role} {name}"),
        role_names(role, name)?,
        &[ExtendedKeyUsagePurpose::ClientAuth],
        days,
    )
}

/// The DNS names of `role` for `name`.
fn role_names(role: Role, name: &str) -> Result<Vec<String>, CertError> {
    if !is_label(name) {
        return Err(CertError::BadName(name.to_string()));
    }
    Ok(vec![
        role.cert_name().to_string(),
        format!("{name}.{}", role.cert_name()),
    ])
}

/// A client-auth leaf with exactly `names`, however they break the role
/// rules (no role, two roles): for tests of the verifier.
pub fn make_leaf_with_names(ca: &Pem, names: &[&str]) -> Result<Pem, CertError> {
    leaf(
        ca,
        "kvorum test",
        names.iter().map(|n| n.to_string()).collect(),
        &[ExtendedKeyUsagePurpose::ClientAuth],
        DEFAULT_LEAF_DAYS,
    )
}

fn leaf(
    ca: &Pem,
    cn: &str,
    names: Vec<String>,
    eku: &[ExtendedKeyUsagePurpose],
    days: u32,
) -> Result<Pem, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = eku.to_vec();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, days)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Reads `<dir>/<name>.pem` and `<dir>/<name>.key`.
pub fn read(dir: &Path, name: &str) -> Result<Pem, CertError> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|source| CertError::Io { path: p, source })
    };
    Ok(Pem {
        cert: read(dir.join(format!("{name}.pem")))?,
        key: read(dir.join(format!("{name}.key")))?,
    })
}

/// Writes `<dir>/<name>.pem` and `<dir>/<name>.key` (the key readable by the
/// owner only); refuses to overwrite.
pub fn write(dir: &Path, name: &str, pem: &Pem) -> Result<(PathBuf, PathBuf), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(CertError::Exists(p.clone()));
        }
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CertError::Io { path, source }
    };
    std::fs::write(&cert_path, &pem.cert).map_err(io(&cert_path))?;
    write_private(&key_path, &pem.key).map_err(io(&key_path))?;
    Ok((cert_path, key_path))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
