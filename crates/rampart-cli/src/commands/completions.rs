//! `rampart completions SHELL`: a shell completion script generated from the CLI's own clap
//! definition (`rampart_agent::cli_docs`, decision 0051), so it always names the commands that
//! exist.

use clap::Args;
use rampart_agent::cli_docs::{Shell, write_completions};

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell. Install the script where the shell
    /// looks, e.g. `rampart completions bash > /etc/bash_completion.d/rampart`.
    pub shell: Shell,
}

/// Writes the completion script of `cli` for the shell to stdout.
pub fn completions(args: &CompletionsArgs, cli: clap::Command) -> anyhow::Result<()> {
    write_completions(args.shell, cli, &mut std::io::stdout().lock());
    Ok(())
}
