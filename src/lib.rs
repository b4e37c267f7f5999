//! noexecd: a host execution guard. fanotify permission marks on the filesystems that hold protected paths,
//! a TOML policy with KubeArmor's process-rule semantics, and KubeArmor-schema alerts.
//!
//! One folder per stage of the pipeline; a module imports only from the stages before it:
//! `sys` → `host` → `containers` → `policy` → `alert` → `guard` → `decide` → `daemon` → `cmd`, with `error`
//! and `stats` as leaves and `cli` beside `cmd`. `sys` holds every `unsafe` block; ARCHITECTURE.md tells
//! the rest.
#![deny(unsafe_code)]

pub(crate) mod alert;
pub mod cli;
pub mod cmd;
pub(crate) mod containers;
pub mod daemon;
pub(crate) mod decide;
pub(crate) mod error;
pub(crate) mod guard;
pub(crate) mod host;
pub(crate) mod policy;
pub(crate) mod stats;
pub(crate) mod sys;

/// KubeArmor's gRPC messages, server and client (`proto/kubearmor.proto`), for the tests and other clients.
pub use alert::grpc::proto as kubearmor;
pub use error::{Error, Result};

#[cfg(test)]
mod layering;
