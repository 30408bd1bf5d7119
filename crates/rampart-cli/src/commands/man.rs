//! `rampart man`: man pages generated from the CLI's own clap definition
//! (`rampart_agent::cli_docs`, decision 0051): one page per command and subcommand
//! (`rampart.1`, `rampart-device.1`, `rampart-device-list.1`, ...).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rampart_agent::cli_docs::{write_man_page, write_man_pages};

#[derive(Args)]
pub struct ManArgs {
    /// Write every page into this directory (created if missing); without it, the top page
    /// (rampart.1) is printed.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Writes the pages of `cli` and every subcommand into `--dir`, or its top page to stdout.
pub fn man(args: &ManArgs, cli: clap::Command) -> anyhow::Result<()> {
    let name = cli.get_name().to_owned();
    let Some(dir) = &args.dir else {
        return write_man_page(cli, &mut std::io::stdout().lock()).context("writing the man page");
    };
    let pages = write_man_pages(cli, dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    eprintln!(
        "{pages} man pages in {} (read one with `man -l {}/{name}.1`)",
        dir.display(),
        dir.display()
    );
    Ok(())
}
