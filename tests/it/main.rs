//! The integration tests: one test binary, one module per area.
//!
//! The privileged modules run the real `noexecd` binary (`NOEXECD_BIN`, else the one cargo built for these tests) as root
//! in private mount namespaces over fresh filesystems (see `common`); `cli` and `desktop_notify` need no root.
//! Run them all as `make integration-tests` does (`cargo test --locked --test it -- --test-threads=1`), or one
//! area with `cargo test --test it <module>::` (e.g. `cargo test --test it routes::`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod execloop;
mod found_runtimes;

mod alert_faults;
mod allow_posture;
mod cli;
mod container;
mod container_enforce;
mod container_files;
mod container_routes;
mod containers;
mod cri;
mod cri_daemonset;
mod desktop_notify;
mod dirtrack;
mod enforce;
mod exec_cache;
mod fail_closed;
mod file_rules;
mod first_write;
mod grpc;
mod handover;
mod hostile_load;
mod hostile_names;
mod kubernetes;
mod layouts;
mod lifecycle;
mod mounts;
mod naming;
mod reload_load;
mod routes;
mod soak;
