//! The commands other than `run`: what `main` calls for each subcommand. `check` and `explain` decide
//! without fanotify; `logs` and `notify` read the alert stream; `import` converts KubeArmor YAML;
//! `generate` writes man pages and completions; `containers` lists the containers the runtimes run;
//! `status` is a container's liveness probe; `hold` keeps a daemon's fanotify group across its restart;
//! `handover` asks the running service to hand its group to a newly installed binary.
#![forbid(unsafe_code)]

pub mod check;
pub mod containers;
pub mod explain;
pub mod generate;
pub mod handover;
pub mod hold;
pub mod import;
pub mod logs;
pub mod notify;
pub mod status;
