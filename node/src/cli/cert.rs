//! `kvorum cert`: a cluster CA, node and client certificates (PEM).

use super::args::CertCommand;
use super::BoxError;
use kvorum_node::net::certs;
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
        CertCommand::Node { id, out, names } => {
            let ca = ca_of(&out)?;
            certs::write(&out, &id, &certs::make_node(&ca, &id, &names)?)?
        }
        CertCommand::Client { name, out } => {
            let ca = ca_of(&out)?;
            certs::write(&out, &name, &certs::make_client(&ca, &name)?)?
        }
    };
    println!("wrote {} and {}", cert.display(), key.display());
    Ok(())
}
