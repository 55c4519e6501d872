//! How a command reaches a cluster: certificates and node addresses from
//! the flags, or the dev cluster's.

use super::args::Conn;
use super::BoxError;
use kvorum_client::{Admin, Client, ReadOptions, TlsMaterial, WriteOptions};
use kvorum_node::dev;
use std::net::SocketAddr;

impl Conn {
    /// Read options from the flags and `r`.
    pub fn read_options(&self, r: Option<u8>) -> ReadOptions {
        ReadOptions {
            r,
            timeout_ms: self.timeout_ms,
            strict: self.strict,
            repair_before_answer: false,
        }
    }

    /// Write options from the flags and `w`.
    pub fn write_options(&self, w: Option<u8>) -> WriteOptions {
        WriteOptions {
            w,
            timeout_ms: self.timeout_ms,
            strict: self.strict,
            ..WriteOptions::default()
        }
    }

    /// The TLS material and node addresses this command uses: the dev
    /// cluster's admin certificate for `admin`, its client certificate
    /// otherwise, unless --cert names one.
    fn reach(&self, admin: bool) -> Result<(TlsMaterial, Vec<SocketAddr>), BoxError> {
        let certs = self.dev_dir.join("certs");
        let ca = self.ca.clone().unwrap_or_else(|| certs.join("ca.pem"));
        let role = if admin { "admin" } else { "client" };
        let cert = self
            .client_cert
            .clone()
            .unwrap_or_else(|| certs.join(format!("{role}.pem")));
        let key = self
            .client_key
            .clone()
            .unwrap_or_else(|| match &self.client_cert {
                Some(c) => c.with_extension("key"),
                None => certs.join(format!("{role}.key")),
            });
        let tls = TlsMaterial::from_files(&ca, &cert, &key).map_err(|e| {
            format!("{e}\n(start a dev cluster with `kvorum dev`, or pass --ca/--cert/--key and --nodes; admin verbs need a certificate of `kvorum cert admin`)")
        })?;
        let nodes = if self.nodes.is_empty() {
            let path = self.dev_dir.join(dev::NODES_FILE);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "{}: {e} (pass --nodes, or start `kvorum dev`)",
                    path.display()
                )
            })?;
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    l.trim()
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("{}: {l:?}: {e}", path.display()))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            self.nodes.clone()
        };
        Ok((tls, nodes))
    }

    /// A data-plane client.
    pub fn client(&self) -> Result<Client, BoxError> {
        let (tls, nodes) = self.reach(false)?;
        Ok(Client::connect(nodes, tls)?)
    }

    /// An admin handle (operator calls).
    pub fn admin(&self) -> Result<Admin, BoxError> {
        let (tls, nodes) = self.reach(true)?;
        Ok(Admin::connect(nodes, tls)?)
    }

    /// An admin handle of exactly the node a topology command is about.
    pub fn one_admin(&self, what: &str) -> Result<Admin, BoxError> {
        if self.nodes.len() != 1 {
            return Err(
                format!("name the node to {what} with --nodes ADDR (exactly one address)").into(),
            );
        }
        self.admin()
    }

    /// An admin handle of `nodes` with this command's certificates.
    pub fn admin_for(&self, nodes: Vec<SocketAddr>) -> Result<Admin, BoxError> {
        Conn {
            nodes,
            dev_dir: self.dev_dir.clone(),
            ca: self.ca.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            timeout_ms: self.timeout_ms,
            strict: self.strict,
        }
        .admin()
    }
}
