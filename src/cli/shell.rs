//! `cairn completions SHELL` and `cairn man`: shell completions and manual pages generated from the
//! same command definitions as `--help`, so they never drift from it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::{exit, Cli};

pub const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  cairn completions bash > /etc/bash_completion.d/cairn
  cairn completions zsh > \"${fpath[1]}/_cairn\"
  cairn completions fish > ~/.config/fish/completions/cairn.fish";

pub const MAN_EXAMPLES: &str = "\
Examples:
  cairn man | man -l -
  cairn man --dir /usr/local/share/man/man1 && mandb";

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write cairn.1 and one page per command (cairn-backup.1, ...) into this directory instead
    /// of cairn.1 to standard output.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> Result<i32> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "cairn", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(exit::OK)
}

pub fn man(args: &ManArgs) -> Result<i32> {
    let command = Cli::command();
    match &args.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the manual page")?;
            out!("{}", String::from_utf8_lossy(&page));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write manual pages into {}", dir.display()))?;
        }
    }
    Ok(exit::OK)
}
