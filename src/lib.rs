//! noexecd: a host execution guard. fanotify permission marks on the filesystems that hold protected paths,
//! a TOML policy with KubeArmor's process-rule semantics, and KubeArmor-schema alerts.
//!
//! Layout: `sys` is the only module with `unsafe`; `policy` loads and validates; `matcher` decides (pure);
//! `mounts` and `guard` map files to canonical paths and filesystems to marks; `decide` is the decision
//! thread; `alert` and `alert_sink` write alerts; `daemon` ties them together.
#![deny(unsafe_code)]

pub mod alert;
pub mod alert_sink;
pub mod alert_stream;
pub mod cli;
pub mod commands;
pub mod container;
pub mod daemon;
pub mod decide;
pub mod desktop;
pub mod drop_report;
pub mod error;
pub mod exec_cache;
pub mod fdstore;
pub mod generate;
pub mod guard;
pub mod hardening;
pub mod import;
pub mod logs;
pub mod matcher;
pub mod mounts;
pub mod notify;
pub mod open_guard;
pub mod open_marks;
pub mod opener;
pub mod policy;
pub mod procfs;
pub mod sys;

pub use error::{Error, Result};
