//! The `kvorum` binary: run a node, a local dev cluster, make certificates,
//! and talk to a cluster from the shell. Its command-line code is in
//! `cli/`; the server is the `kvorum_node` library.

mod cli;

use clap::Parser;
use cli::args::{Cli, LogFormat};
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a node allocates and frees small
/// buffers on every request (frames, states, stream tasks), and glibc's
/// allocator was 16-19 % of a node's CPU in the profile of a quorum write
/// (docs/bench-data/history.md, "Where the CPU of a quorum write goes").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: not in a file or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.worker_threads {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
