//! Certificates of a cluster (rcgen): one CA, node certificates that serve and
//! dial peers, client certificates that can only call the client ALPN.
//!
//! Roles are carried in DNS subject alternative names: every node certificate
//! names [`NODE_CERT_NAME`] (clients verify nodes against it, nodes require it
//! of peers), client certificates name [`CLIENT_CERT_NAME`] only.

use kvorum_client::proto::{CLIENT_CERT_NAME, NODE_CERT_NAME};
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

/// Makes a new cluster CA.
pub fn make_ca(cluster: &str) -> Result<Pem, CertError> {
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
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Makes a node certificate for node `id`, signed by `ca`. Extra names (host
/// names or IPs the node is reached at) may be added.
pub fn make_node(ca: &Pem, id: &str, extra_names: &[String]) -> Result<Pem, CertError> {
    let mut names = vec![NODE_CERT_NAME.to_string(), format!("{id}.{NODE_CERT_NAME}")];
    names.extend(extra_names.iter().cloned());
    leaf(
        ca,
        &format!("kvorum node {id}"),
        names,
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )
}

/// Makes a client certificate named `name`, signed by `ca`.
pub fn make_client(ca: &Pem, name: &str) -> Result<Pem, CertError> {
    leaf(
        ca,
        &format!("kvorum client {name}"),
        vec![CLIENT_CERT_NAME.to_string()],
        &[ExtendedKeyUsagePurpose::ClientAuth],
    )
}

fn leaf(
    ca: &Pem,
    cn: &str,
    names: Vec<String>,
    eku: &[ExtendedKeyUsagePurpose],
) -> Result<Pem, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = eku.to_vec();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
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
