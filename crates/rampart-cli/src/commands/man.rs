//! `rampart man`: man pages generated from the CLI's own clap definition (clap_mangen,
//! decision 0050): one page per command and subcommand (`rampart.1`, `rampart-device.1`,
//! `rampart-device-list.1`, ...).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub struct ManArgs {
    /// Write every page into this directory (created if missing); without it, the top page
    /// (rampart.1) is printed.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Writes the pages of `cli` and every subcommand into `--dir`, or its top page to stdout.
pub fn man(args: &ManArgs, cli: clap::Command) -> anyhow::Result<()> {
    let Some(dir) = &args.dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(cli)
            .render(&mut out)
            .context("writing the man page")?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(cli, dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let pages = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
        .count();
    eprintln!(
        "{pages} man pages in {} (read one with `man -l {}/rampart.1`)",
        dir.display(),
        dir.display()
    );
    Ok(())
}
