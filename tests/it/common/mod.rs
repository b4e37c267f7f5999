//! Shared harness for the integration tests.
//!
//! Privileged tests run the real `noexecd` binary ([`bin`]: env `NOEXECD_BIN`, else the one cargo built for these tests) inside a
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
//! - `alerts`: reading the alert log and checking alerts (`Expect`);
//! - `wait`: bounded polls, and waits on the counters of the daemon's status file (decided events, the
//!   alert writer caught up, reloads, mount checks, container refreshes) instead of sleeps.
//!
//! A privileged test starts with `let mut env = privileged!(Layout::Tmpfs);` (see `privileged!`).

mod alerts;
mod daemon;
mod environment;
mod exec;
mod wait;

pub use alerts::*;
pub use daemon::*;
pub use environment::*;
pub use exec::*;
pub use wait::*;

/// The path below the crate root of the function this is expanded in, e.g.
/// `enforce::audit_mode_turns_block_into_audit_runs_and_alerts`: the name the test harness prints for a test
/// function, taken from the function itself so that it cannot drift from it.
macro_rules! test_name {
    () => {{
        fn here() {}
        $crate::common::test_name_of(::std::any::type_name_of_val(&here))
    }};
}
pub(crate) use test_name;

/// The preamble of a privileged test, which names the test after the function it is written in:
///
/// - `let mut env = privileged!(Layout::Tmpfs);` sets up an [`Env`] with that layout;
/// - `privileged!();` only checks, for a test that sets up its own namespace.
///
/// - `privileged!(needs: Needs::X)` and `privileged!(Layout::Tmpfs, needs: Needs::X)`: the same, for a test
///   needing what the container of `make test-in-container` cannot have (see [`Needs`]; a loop-mounted
///   layout needs [`Needs::LoopDevices`] without saying so).
///
/// Where privileged tests cannot run here (see [`may_run_privileged`]), it prints why and returns from the test
/// (a skip), or fails the test when `NOEXECD_REQUIRE_PRIVILEGED=1`. In the test container a test whose
/// [`Needs`] it cannot meet skips, whatever `NOEXECD_REQUIRE_PRIVILEGED` says.
macro_rules! privileged {
    (needs: $needs:expr) => {
        if !$crate::common::may_run_privileged(&$crate::common::test_name!())
            || !$crate::common::available_here(&$crate::common::test_name!(), $needs)
        {
            return;
        }
    };
    ($layout:expr, needs: $needs:expr) => {
        match $crate::common::may_run_privileged(&$crate::common::test_name!())
            && $crate::common::available_here(&$crate::common::test_name!(), $needs)
        {
            true => privileged!($layout),
            false => return,
        }
    };
    () => {
        if !$crate::common::may_run_privileged(&$crate::common::test_name!()) {
            return;
        }
    };
    ($layout:expr) => {
        match $crate::common::Env::new(&$crate::common::test_name!(), $layout) {
            Some(env) => env,
            None => return,
        }
    };
}
pub(crate) use privileged;

/// `it::enforce::f::here` (or `it::enforce::f::{{closure}}::here`, expanded in a closure) -> `enforce::f`.
pub fn test_name_of(here: &str) -> String {
    let path = here.strip_suffix("::here").unwrap_or(here);
    let below_crate = path.split_once("::").map_or(path, |(_crate, rest)| rest);
    below_crate.split("::").filter(|s| *s != "{{closure}}").collect::<Vec<_>>().join("::")
}

#[test]
fn test_name_is_the_enclosing_functions_path_below_the_crate() {
    assert_eq!(test_name!(), "common::test_name_is_the_enclosing_functions_path_below_the_crate");
    let in_closure = || test_name!();
    assert_eq!(in_closure(), "common::test_name_is_the_enclosing_functions_path_below_the_crate");
}
