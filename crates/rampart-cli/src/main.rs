//! `rampart`: the operator CLI. Parses the command line (`rampart_cli::cli`) and runs it.
#![forbid(unsafe_code)]

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    rampart_agent::cli_output::exit_quietly_on_broken_pipe();
    match rampart_cli::cli::run(rampart_cli::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            rampart_agent::cli_output::print_error(e.as_ref());
            std::process::ExitCode::FAILURE
        }
    }
}
