//! `kvorum cert`: a cluster CA, node, admin and client certificates (PEM).

use super::args::CertCommand;
use super::BoxError;
use kvorum_node::net::certs;
use kvorum_node::net::identity::Role;
use std::path::Path;

/// Makes the certificate `c` asks for and prints where it went.
pub fn run(c: CertCommand) -> Result<(), BoxError> {
    let ca_of = |out: &Path| {
        certs::read(out, "ca").map_err(|e| {
            format!(
                "{e} (make a CA first: kvorum cert ca --out {})",
                out.display()
            )
        })
    };
    let (cert, key) = match c {
        CertCommand::Ca { out, cluster } => certs::write(&out, "ca", &certs::make_ca(&cluster)?)?,
        CertCommand::Node {
            id,
            out,
            names,
            days,
        } => {
            let ca = ca_of(&out)?;
            certs::write(&out, &id, &certs::make_node_for(&ca, &id, &names, days)?)?
        }
        CertCommand::Client { name, out, days } => {
            let ca = ca_of(&out)?;
            let pem = certs::make_user(&ca, Role::Client, &name, days)?;
            certs::write(&out, &name, &pem)?
        }
        CertCommand::Admin { name, out, days } => {
            let ca = ca_of(&out)?;
            let pem = certs::make_user(&ca, Role::Admin, &name, days)?;
            certs::write(&out, &name, &pem)?
        }
    };
    println!("wrote {} and {}", cert.display(), key.display());
    Ok(())
}
