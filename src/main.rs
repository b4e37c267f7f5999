//! The `noexecd` binary: parse the command line, run the command, report errors. One exit point.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use noexecd::cli::{Cli, Command, explain_status};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref());
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // `{:#}` prints the context chain on one line: "cannot check config/x.toml: x.toml:3:7: ...".
            eprintln!("noexecd: {e:#}");
            ExitCode::from(explain_status::ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(args) => {
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let options = noexecd::daemon::RunOptions {
                host_namespace: args.host_namespace,
                watch_config: args.watch_config,
                status_file: args.status_file,
                alert_stdout: args.alert_stdout,
                host_name: args.host_name.or_else(|| env("NOEXECD_HOST_NAME")),
                cluster_name: args.cluster_name.or_else(|| env("NOEXECD_CLUSTER_NAME")),
                hold_socket: args.hold_socket,
                grpc: match args.grpc {
                    Some(addr) => Some(addr),
                    None => env("NOEXECD_GRPC")
                        .map(|v| noexecd::cli::parse_grpc_addr(&v))
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("NOEXECD_GRPC: {e}"))?,
                },
                stall_after: args.stall_after.map(std::time::Duration::from_secs),
                health_listen: args.health_listen,
            };
            let config = &args.config.config;
            noexecd::daemon::run(config, &options)
                .with_context(|| format!("guard stopped on an error (config {})", config.display()))?;
            Ok(0)
        }
        Command::Hold(args) => {
            noexecd::cmd::hold::hold(&args.socket)
                .with_context(|| format!("noexecd hold stopped on an error (socket {})", args.socket.display()))?;
            Ok(0)
        }
        Command::Status(args) => {
            use noexecd::cmd::status::{Liveness, status};
            let max_age = std::time::Duration::from_secs(args.max_age);
            match status(&args.status_file, max_age, std::time::SystemTime::now()).context("not alive")? {
                Liveness::Alive(line) => {
                    println!("{line}");
                    Ok(0)
                }
                Liveness::Stale { age, line } => {
                    eprintln!(
                        "noexecd: not alive: {} was last written {}s ago (more than {}s): {line}",
                        args.status_file.display(),
                        age.as_secs(),
                        args.max_age
                    );
                    Ok(explain_status::ERROR)
                }
            }
        }
        Command::Check(args) => {
            noexecd::cmd::check::check(&args.config, &mut std::io::stdout().lock(), &mut std::io::stderr().lock())
                .with_context(|| format!("{} is not usable", args.config.display()))?;
            Ok(0)
        }
        Command::Explain(args) if args.open => {
            let asked = noexecd::cmd::explain::Asked {
                source: args.source.as_deref(),
                uid: args.uid,
                owner: args.owner,
                container: args.container.as_deref(),
            };
            let e = noexecd::cmd::explain::explain_open(&args.config.config, &args.path, args.write, &asked)
                .with_context(|| format!("cannot explain with {}", args.config.config.display()))?;
            print!("{}", e.text);
            Ok(e.exit_status())
        }
        Command::Explain(args) => {
            let e = noexecd::cmd::explain::explain(
                &args.config.config,
                &args.path,
                args.source.as_deref(),
                args.uid,
                args.owner,
                args.container.as_deref(),
            )
            .with_context(|| format!("cannot explain with {}", args.config.config.display()))?;
            print!("{}", e.text);
            Ok(e.exit_status())
        }
        Command::Logs(args) => {
            let (alert_log, alert_socket) = noexecd::cmd::logs::sources(&args.config.config)
                .with_context(|| format!("cannot find the alert log through {}", args.config.config.display()))?;
            let since = match &args.since {
                Some(text) => {
                    Some(noexecd::cmd::logs::parse_since(text, std::time::SystemTime::now()).with_context(|| {
                        format!("--since {text}: write a duration (10m, 2h), Unix seconds or 2026-11-28T17:00:00Z")
                    })?)
                }
                None => None,
            };
            let opts = noexecd::cmd::logs::LogsOptions { json: args.json, follow: args.follow, since };
            noexecd::cmd::logs::run(&alert_log, alert_socket.as_deref(), &opts, &mut std::io::stdout().lock())
                .context("cannot print alerts")?;
            Ok(0)
        }
        Command::Notify(args) => {
            noexecd::cmd::notify::run_blocking(&args.socket).context("desktop notices stopped")?;
            Ok(0)
        }
        Command::Import(args) => {
            let options = noexecd::cmd::import::ImportOptions { strict: args.strict, output_dir: args.output_dir };
            let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
            noexecd::cmd::import::import(&args.files, &options, &mut out, &mut err).context("import failed")?;
            Ok(0)
        }
        Command::Containers(args) => {
            let options = noexecd::cmd::containers::Options { sources: args.sources.0, table: args.table };
            noexecd::cmd::containers::run(&options, &mut std::io::stdout().lock()).context("cannot list containers")?;
            Ok(0)
        }
        Command::Handover(args) => {
            let done = noexecd::cmd::handover::handover(&args.unit, std::time::Duration::from_secs(args.timeout))?;
            println!("{done}");
            Ok(0)
        }
        Command::Version => {
            println!("noexecd {} (commit {})", noexecd::daemon::version::version(), noexecd::cli::COMMIT);
            Ok(0)
        }
        Command::Generate(args) => {
            noexecd::cmd::generate::generate(args.what, &args.out_dir).context("cannot generate")?;
            Ok(0)
        }
    }
}

fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.unwrap_or("info")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}
