//! How the `rampart` and `rampart-agent` binaries end and print errors: one rule for both.
//!
//! - A closed standard output or error (`rampart ... | head`) ends the process quietly with
//!   status 0, as a reader that stopped reading is not a failure of the command. Rust ignores
//!   SIGPIPE, so every `println!` would otherwise panic with "failed printing to stdout:
//!   Broken pipe"; the check is made once, in a panic hook, so it covers every output path.
//! - An error is printed once, with its causes, each cause only if the text before it does not
//!   already say it (many error types put their source's text in their own message *and*
//!   return it as their source, which `{:#}` would print twice).

use std::error::Error;

/// The start of the panic message `print!`/`println!` (and the `e` variants) give when
/// writing fails.
const FAILED_PRINTING: &str = "failed printing to std";

/// Ends the process quietly (status 0) when a `print!` panics because the reader of standard
/// output or error has gone; every other panic is reported as before. Call first in `main`.
pub fn exit_quietly_on_broken_pipe() {
    let report_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_broken_pipe_panic(message) {
            std::process::exit(0);
        }
        report_panic(info);
    }));
}

/// Whether a panic message is the one `print!` gives when its pipe's reader is gone.
fn is_broken_pipe_panic(message: &str) -> bool {
    let broken_pipe = std::io::Error::from_raw_os_error(EPIPE).to_string();
    message.starts_with(FAILED_PRINTING) && message.contains(&broken_pipe)
}

/// EPIPE on every Unix Rampart runs on (Linux, the BSDs, macOS).
const EPIPE: i32 = 32;

/// The error and its causes, `: `-separated, leaving out a cause whose text is already
/// printed (the `No such file or directory (os error 2): No such file or directory (os error
/// 2)` of an error that shows its source and also returns it).
pub fn error_text(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

/// Prints `error: ...` (see [`error_text`]) to standard error, once.
pub fn print_error(error: &(dyn Error + 'static)) {
    eprintln!("error: {}", error_text(error));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}: {source}")]
    struct ShowsAndChains {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}")]
    struct Chains {
        path: String,
        source: std::io::Error,
    }

    fn not_found() -> std::io::Error {
        std::io::Error::from_raw_os_error(2)
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let e = ShowsAndChains {
            path: "/x".into(),
            source: not_found(),
        };
        let os = not_found().to_string();
        let text = error_text(&e);
        assert_eq!(text, format!("reading /x: {os}"));
        assert_eq!(text.matches(&os).count(), 1, "{text}");
        // Wrapped in context too.
        let wrapped = anyhow::Error::new(e).context("loading the configuration");
        let text = error_text(wrapped.as_ref());
        assert_eq!(text.matches(&os).count(), 1, "{text}");
        assert!(
            text.starts_with("loading the configuration: reading /x"),
            "{text}"
        );
    }

    #[test]
    fn a_cause_not_in_the_message_is_printed() {
        let e = Chains {
            path: "/x".into(),
            source: not_found(),
        };
        assert_eq!(error_text(&e), format!("reading /x: {}", not_found()));
    }

    #[test]
    fn only_the_broken_pipe_print_panic_is_quiet() {
        let epipe = std::io::Error::from_raw_os_error(EPIPE);
        assert!(is_broken_pipe_panic(&format!(
            "failed printing to stdout: {epipe}"
        )));
        assert!(is_broken_pipe_panic(&format!(
            "failed printing to stderr: {epipe}"
        )));
        assert!(!is_broken_pipe_panic(&format!(
            "failed printing to stdout: {}",
            not_found()
        )));
        assert!(!is_broken_pipe_panic("index out of bounds"));
    }
}
