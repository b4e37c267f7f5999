//! Man pages and shell completions, generated from the clap definition so they never drift from it.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, GenerateWhat};
use crate::error::{Error, Result};

pub fn generate(what: GenerateWhat, out_dir: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::WriteFile { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let cmd = Cli::command();
    match what {
        GenerateWhat::Man => {
            let path = out_dir.join("noexecd.8");
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd.clone()).section("8").render(&mut buf).map_err(io(&path))?;
            std::fs::write(&path, buf).map_err(io(&path))?;
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("noexecd-{}", sub.get_name());
                let path = out_dir.join(format!("{name}.8"));
                let mut buf = Vec::new();
                let sub = sub.clone().name(clap::builder::Str::from(name.clone().leak() as &'static str));
                clap_mangen::Man::new(sub).section("8").render(&mut buf).map_err(io(&path))?;
                std::fs::write(&path, buf).map_err(io(&path))?;
            }
        }
        GenerateWhat::Completions => {
            use clap_complete::{Shell, generate_to};
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                let mut cmd = Cli::command();
                generate_to(shell, &mut cmd, "noexecd", out_dir).map_err(io(out_dir))?;
            }
        }
    }
    Ok(())
}
