//! Command-line definition. Kept apart from `main` so the man page and completions can be generated from it.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::containers::Source;

/// The default configuration file, as installed by the packages.
pub const DEFAULT_CONFIG: &str = "/etc/noexecd/noexecd.toml";

/// The version and the commit it was built from (`NOEXECD_COMMIT` at build time; see build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("NOEXECD_COMMIT_ID"), ")");

/// The commit the binary is built from.
pub const COMMIT: &str = env!("NOEXECD_COMMIT_ID");

/// The status file `run --status-file` writes in a container and `status` reads.
pub const DEFAULT_STATUS_FILE: &str = "/run/noexecd/status";

/// Host execution guard: blocks exec from /tmp and other protected paths with fanotify and writes a
/// KubeArmor-schema alert for every blocked or audited attempt.
#[derive(Debug, Parser)]
#[command(name = "noexecd", version = VERSION, propagate_version = true, disable_version_flag = false)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the guard: mark the filesystems that hold protected paths and answer every exec on them.
    Run(RunArgs),
    /// Validate the configuration and print what would be marked; exit 1 on error.
    Check(ConfigArg),
    /// Show offline how the policy decides an exec of PATH (or with --open, an open of it). Exit status: 0 allowed, 2 blocked, 3 audited, 1 error.
    Explain(ExplainArgs),
    /// Print alerts: live from the daemon's socket, or from the alert file when it is not running.
    Logs(LogsArgs),
    /// Show a desktop notification for each blocked exec (run it in your desktop session).
    Notify(NotifyArgs),
    /// Convert KubeArmorPolicy/KubeArmorClusterPolicy/KubeArmorHostPolicy YAML to noexecd TOML; what noexecd cannot enforce is listed on stderr.
    ///
    /// Process and file rules (matchPaths, matchDirectories, matchPatterns; ownerOnly, readOnly, recursive,
    /// fromSource; action, severity, tags and message at every level) map one to one; the file rules this build
    /// does not enforce (container policies', Allow rules, rules reaching every directory from /) are reported.
    /// Network, capabilities and syscalls rules,
    /// Kubernetes selectors, fromSource on patterns and unknown keys are reported on stderr, one line each, never
    /// dropped silently. Exit status 1 on invalid input, or with --strict on any such report (nothing is written
    /// then). `noexecd run` converts *.yaml files in policy_dir the same way when it loads them.
    Import(ImportArgs),
    /// List the containers running on this host now (docker, podman, containerd, CRI-O): id, runtime, name,
    /// image, Kubernetes namespace and pod, labels, first pid; one JSON object per line, or a table.
    ///
    /// Each runtime is read where it keeps its records: docker's data root, podman's API socket, containerd's
    /// state directory, CRI-O's containers/storage. A runtime that is not there gives nothing; the others are
    /// still listed. docs/containers.md tells what is read, and what is not known.
    Containers(ContainersArgs),
    /// Liveness probe: print the status line a running daemon (`run --status-file`) wrote; exit 1 when it
    /// is missing or older than --max-age (the decision thread or the control loop stalled).
    Status(StatusArgs),
    /// Keep a duplicate of a daemon's fanotify group (`run --hold-socket`) and hand it back after the daemon
    /// restarts: a second container of the Kubernetes pod. Closes it on SIGTERM or SIGINT.
    Hold(HoldArgs),
    /// Hand the running service's fanotify group to the binary now installed (what the packages run on upgrade
    /// and downgrade): the daemon checks the configuration with the new binary, and only if it accepts it exits
    /// with its marks in place for systemd to start the new binary with the group. Exec attempts meanwhile
    /// wait, none runs. Waits until the new daemon guards; exit 1 when the running daemon keeps guarding
    /// (the new binary refused the configuration) or the hand-over did not finish.
    Handover(HandoverArgs),
    /// Print the version.
    Version,
    /// Write the man page or shell completions (used by the packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(long, short = 'c', value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Join the mount namespace of pid 1 before anything else (noexecd in a container sharing the host's pid
    /// namespace; needs CAP_SYS_ADMIN and CAP_SYS_CHROOT): the host's mounts, paths and runtimes are then
    /// guarded and read, while --config, its policy_dir and --status-file stay paths of this container.
    #[arg(long)]
    pub host_namespace: bool,
    /// Reload when the configuration or a file of policy_dir changes (a Kubernetes ConfigMap update),
    /// looked at every 2 s; SIGHUP reloads either way.
    #[arg(long)]
    pub watch_config: bool,
    /// Rewrite this file every 2 s while the decision thread is alive (read by `noexecd status`).
    #[arg(long, value_name = "PATH")]
    pub status_file: Option<PathBuf>,
    /// Also write every alert, one JSON line each, to stdout (a container's log).
    #[arg(long)]
    pub alert_stdout: bool,
    /// HostName of the alerts, over host_name of the configuration (default: $NOEXECD_HOST_NAME).
    #[arg(long, value_name = "NAME")]
    pub host_name: Option<String>,
    /// ClusterName of the alerts, over cluster_name of the configuration (default: $NOEXECD_CLUSTER_NAME).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Hand the fanotify group to `noexecd hold` listening on this socket (a path of this container), and take
    /// it back from there at start: with fail_mode = "closed", execs on guarded filesystems wait across a
    /// crash or restart of this daemon instead of running.
    #[arg(long, value_name = "PATH")]
    pub hold_socket: Option<PathBuf>,
    /// Serve KubeArmor's gRPC LogService (WatchAlerts, WatchLogs, HealthCheck: what `karmor logs --gRPC` and
    /// kubearmor-relay read) on ADDR: HOST:PORT, or a port alone for every IPv4 interface (KubeArmor's is
    /// 32767). Off unless given (default: $NOEXECD_GRPC).
    #[arg(long, value_name = "ADDR", value_parser = parse_grpc_addr)]
    pub grpc: Option<SocketAddr>,
    /// With --host-namespace: kill the daemon and start it again when --status-file is older than this many
    /// seconds (a hung decision thread or control loop); the supervisor, in the container, does it.
    #[arg(long, value_name = "SECONDS", requires = "status_file")]
    pub stall_after: Option<u64>,
    /// With --host-namespace: serve an HTTP liveness endpoint on this address (ADDR:PORT) from the supervisor
    /// (a kubelet `httpGet` probe): 200 while --status-file is fresh, 503 past --stall-after; its path
    /// /readyz (a readiness probe) answers 200 only once the daemon guards (it has written --status-file).
    #[arg(long, value_name = "ADDR:PORT", requires = "host_namespace")]
    pub health_listen: Option<std::net::SocketAddr>,
}

/// `--grpc`'s address: `HOST:PORT` (`127.0.0.1:32767`, `[::]:32767`), or `PORT` alone for `0.0.0.0:PORT`.
pub fn parse_grpc_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    match text.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from(([0, 0, 0, 0], port))),
        Err(_) => text.parse().map_err(|e| format!("{text:?} is neither HOST:PORT nor a port: {e}")),
    }
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The Unix socket to listen on (in a directory shared with the daemon's container: an emptyDir).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct HandoverArgs {
    /// The systemd unit running the daemon.
    #[arg(long, value_name = "UNIT", default_value = "noexecd.service")]
    pub unit: String,
    /// Give up waiting for the new daemon after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The file the daemon writes (`run --status-file`).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
    /// Fail when the file is older than this many seconds (the daemon rewrites it every 2 s).
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub max_age: u64,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Print each alert as its JSON line (as `karmor logs --json`), not the readable form.
    #[arg(long)]
    pub json: bool,
    /// Keep printing new alerts as they come.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only alerts from this time on: a duration back from now (30s, 10m, 2h, 1d), Unix seconds, or a UTC
    /// time (2026-11-28T17:00:00Z).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The daemon's alert socket (`alert_socket` in its configuration); you need read access to it.
    #[arg(long, value_name = "PATH", default_value = crate::policy::DEFAULT_ALERT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// A table for people instead of one JSON object per line.
    #[arg(long)]
    pub table: bool,
    // Where each runtime keeps its records: one flag per runtime source that has one.
    #[command(flatten)]
    pub sources: SourceFlags,
    /// Configuration file (read by later versions for the runtimes' places; not read yet).
    #[arg(long, short = 'c', value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// The flags of `noexecd containers` that say where a runtime's records are, one per [`Source`] of the
/// runtimes' registry that has a flag, defaulting to the runtime's own place: `(key, path)` for each.
#[derive(Debug, Clone, Default)]
pub struct SourceFlags(pub Vec<(&'static str, PathBuf)>);

fn flag_sources() -> impl Iterator<Item = (&'static str, &'static Source)> {
    crate::containers::runtimes::sources().filter_map(|s| Some((s.flag?, s)))
}

impl clap::FromArgMatches for SourceFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(SourceFlags(
            flag_sources().filter_map(|(_, s)| Some((s.key, matches.get_one::<PathBuf>(s.key)?.clone()))).collect(),
        ))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for SourceFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        flag_sources().fold(cmd, |cmd, (flag, s)| {
            cmd.arg(
                clap::Arg::new(s.key)
                    .long(flag)
                    .value_name(s.value_name)
                    .default_value(s.default)
                    .value_parser(clap::value_parser!(PathBuf))
                    .help(s.about),
            )
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The file that would be executed (with --open: opened; absolute path; need not exist).
    pub path: PathBuf,
    /// Decide an open of PATH by the file rules ([[policy.file.*]]) instead of an exec.
    #[arg(long)]
    pub open: bool,
    /// With --open: an open for writing (O_WRONLY), not for reading.
    #[arg(long, requires = "open")]
    pub write: bool,
    /// Executable of the process that calls exec, or opens (for from_source rules).
    #[arg(long, value_name = "EXE")]
    pub source: Option<PathBuf>,
    /// UID of the process that calls exec (for owner_only rules); defaults to your own.
    #[arg(long, value_name = "N")]
    pub uid: Option<u32>,
    /// Owner UID of the file (for owner_only rules); defaults to the file's owner, or 0 when it does not exist.
    #[arg(long, value_name = "N")]
    pub owner: Option<u32>,
    /// Decide as inside this running container (its id, at least 12 hex digits, or its name): PATH is then a
    /// path inside the container, and the container policies that select it decide.
    #[arg(long, value_name = "ID|NAME")]
    pub container: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// KubeArmor policy files (multi-document YAML, security.kubearmor.com/v1).
    #[arg(required = true, value_name = "FILE.yaml")]
    pub files: Vec<PathBuf>,
    /// Fail (exit 1, nothing written) if any part of a policy is not enforced by noexecd.
    #[arg(long)]
    pub strict: bool,
    /// Write one <policy-name>.toml per policy here (e.g. /etc/noexecd/policy.d) instead of to stdout.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub what: GenerateWhat,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GenerateWhat {
    /// noexecd.8 and one page per subcommand (noexecd-run.8, ...).
    Man,
    /// Completions for bash, zsh and fish.
    Completions,
}

/// Exit statuses of `explain`, documented in the man page and README.
pub mod explain_status {
    pub const ALLOWED: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const BLOCKED: u8 = 2;
    pub const AUDITED: u8 = 3;
}

#[cfg(test)]
mod grpc_addr_tests {
    use super::parse_grpc_addr;

    #[test]
    fn a_port_alone_is_every_ipv4_interface() {
        assert_eq!(parse_grpc_addr("32767").unwrap().to_string(), "0.0.0.0:32767");
        assert_eq!(parse_grpc_addr("127.0.0.1:0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse_grpc_addr("[::]:32767").unwrap().to_string(), "[::]:32767");
        assert!(parse_grpc_addr("localhost").is_err());
        assert!(parse_grpc_addr("99999").is_err());
    }
}
