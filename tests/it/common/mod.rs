//! Shared harness for the integration tests.
//!
//! Privileged tests run the real `noexecd` binary (env `NOEXECD_BIN`, else `target/release/noexecd`) inside a
//! private mount namespace held open by a "holder" process:
//! `setpriv --pdeathsig KILL -- unshare --mount --propagation private -- sh -c '<mount tmpfs...>; exec sleep'`.
//! The daemon and every exec attempt enter that namespace with `nsenter -t <holder> -m`, each bounded by a
//! timeout. The test itself reads and writes files on those filesystems through `/proc/<holder>/root/...`.
//!
//! Safety: every policy handed to the daemon is first run through `noexecd check` inside the namespace, and
//! every `mark` line must name one of the filesystems this harness mounted (never the host's `/` or `/tmp`).
//! Once the daemon is READY its fanotify fdinfo is read back and checked the same way.
//!
//! - `environment`: privileges and skipping, tools, forbidden devices, the namespace (`Env`, `Layout`);
//! - `daemon`: config and policies, `noexecd check`, starting the daemon up to READY=1, its marks, stopping it;
//! - `exec`: bounded commands, commands in the namespace, exec attempts (`Exec`);
//! - `alerts`: reading the alert log and checking alerts (`Expect`).

mod alerts;
mod daemon;
mod environment;
mod exec;

pub use alerts::*;
pub use daemon::*;
pub use environment::*;
pub use exec::*;
