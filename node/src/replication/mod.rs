//! One request, many replicas: the coordinator that turns a client request
//! into a fan-out to the key's preference list and a quorum-checked answer,
//! and this node's own part as a replica of a key.

pub mod coordinator;
pub mod replica;
pub mod settings;
