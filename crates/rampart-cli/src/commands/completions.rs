//! `rampart completions SHELL`: a shell completion script generated from the CLI's own clap
//! definition (clap_complete, decision 0050), so it always names the commands that exist.

use clap::Args;
use clap_complete::Shell;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell. Install the script where the shell
    /// looks, e.g. `rampart completions bash > /etc/bash_completion.d/rampart`.
    pub shell: Shell,
}

/// Writes the completion script of `cli` (whose binary is named by it) for the shell.
pub fn completions(args: &CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<()> {
    let name = cli.get_name().to_owned();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cli, name, &mut out);
    Ok(())
}
