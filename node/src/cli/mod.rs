//! The `kvorum` binary's command-line code. None of it is the server; the
//! server is the `kvorum_node` library.
//!
//! - [`args`]: every verb and its arguments (clap).
//! - [`node`]: `start` and `dev`.
//! - [`data`]: `get`, `put`, `delete`, `counter`, `set`, `map`.
//! - [`admin`]: `admin ...` and `status`.
//! - [`backup`]: `admin backup` and `restore`; [`verify`]: `admin verify`.
//! - [`cert`]: `cert ca|node|client`.
//! - [`conn`]: how a command reaches a cluster.
//! - [`print`]: tables of the admin commands.
//! - [`bench`]: `kvorum bench`, with [`tied`] child processes.

pub mod access;
pub mod admin;
pub mod args;
pub mod backup;
pub mod bench;
pub mod cert;
pub mod conn;
pub mod data;
pub mod items;
pub mod node;
pub mod print;
pub mod tied;
pub mod verify;

use args::Command;
use std::process::ExitCode;

/// The error of a command, printed by `main`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs one command.
pub async fn run(cmd: Command) -> Result<ExitCode, BoxError> {
    match cmd {
        Command::Start { config } => node::start(&config).await,
        Command::Dev { nodes, dir, port } => node::dev(nodes, dir, port).await,
        Command::Cert(c) => {
            cert::run(c)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            bench::main(*args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Data(c) => data::run(*c).await,
        Command::Status { conn } => admin::status(conn).await,
        Command::Admin(c) => admin::run(c).await,
    }
}
