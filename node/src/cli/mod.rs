//! The `kvorum` binary's command-line code: argument definitions, the data
//! and admin commands, certificate making, printing, and `kvorum bench`.
//! None of it is the server; the server is the `kvorum_node` library.

pub mod bench;
pub mod tied;
