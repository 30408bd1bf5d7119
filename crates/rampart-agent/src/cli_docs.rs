//! Shell completions and man pages of the `rampart` and `rampart-agent` binaries, generated
//! from their clap definitions (clap_complete, clap_mangen; decision 0051): one rule for both,
//! as [`crate::cli_output`] is for their errors.

use std::io::Write;
use std::path::Path;

pub use clap_complete::Shell;

/// Writes the completion script of `cmd` (the binary it names) for `shell`.
pub fn write_completions(shell: Shell, mut cmd: clap::Command, out: &mut dyn Write) {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes the man page of `cmd` alone (`NAME.1`'s text).
pub fn write_man_page(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(cmd).render(out)
}

/// Writes one page per command and visible subcommand into `dir` (created if missing), named
/// `NAME.1`, `NAME-SUB.1`, ...; returns how many.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<usize> {
    fn count(cmd: &clap::Command) -> usize {
        1 + cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(count)
            .sum::<usize>()
    }
    std::fs::create_dir_all(dir)?;
    let pages = count(&cmd);
    clap_mangen::generate_to(cmd, dir)?;
    Ok(pages)
}
