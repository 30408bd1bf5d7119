//! Health checks after booting a new slot: configured commands, and the built-in check that
//! the update server answers a poll over mutual TLS, all within one deadline.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::device::HealthCheck;
use crate::server_client::ServerClient;

/// Output kept from each failing command, for the rollback report.
const MAX_OUTPUT: usize = 2048;

/// The configured checks.
pub struct Checks<'a> {
    pub commands: Vec<Vec<String>>,
    /// The server to reach over mutual TLS (`None`: not checked).
    pub server: Option<&'a ServerClient>,
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(MAX_OUTPUT);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// How long [`capture`] waits for a finished command's output to end (its children may still
/// hold the pipes).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// A command's output as its reader thread fills it, and whether some was dropped.
type SharedOutput = Arc<Mutex<(Vec<u8>, bool)>>;

/// Which part of a long output [`capture`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    Head,
    Tail,
}

/// What a command run by [`capture`] did.
#[derive(Debug)]
pub(crate) struct Captured {
    /// `None`: still running at the deadline, so it was killed.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output beyond the limit was dropped.
    pub cut: bool,
}

/// Runs `argv` until it exits or `until` (then kills it), keeping at most `max` bytes of each
/// of its outputs (their head or tail). `Err`: it could not be started.
pub(crate) fn capture(
    argv: &[String],
    until: Instant,
    max: usize,
    keep: Keep,
) -> std::io::Result<Captured> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drain output in the background so a chatty command cannot block on a full pipe. The
    // buffers are shared: a killed command's children may hold the pipes open, so its output
    // is taken after a short grace rather than at end of file.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        let shared: SharedOutput = Arc::new(Mutex::new((Vec::new(), false)));
        let sink = Arc::clone(&shared);
        let done = std::thread::spawn(move || {
            let Some(mut r) = r else { return };
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut guard = sink.lock().unwrap_or_else(|p| p.into_inner());
                let (buf, cut) = &mut *guard;
                match keep {
                    Keep::Head => {
                        let room = max.saturating_sub(buf.len()).min(n);
                        buf.extend_from_slice(&chunk[..room]);
                        *cut |= room < n;
                    }
                    Keep::Tail => {
                        buf.extend_from_slice(&chunk[..n]);
                        if buf.len() > 4 * max {
                            let excess = buf.len() - max;
                            buf.drain(..excess);
                            *cut = true;
                        }
                    }
                }
            }
        });
        (shared, done)
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let status = loop {
        match child.try_wait()? {
            Some(status) => break Some(status),
            None if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let grace = Instant::now() + OUTPUT_GRACE;
    let take = |(shared, done): (SharedOutput, std::thread::JoinHandle<()>)| {
        while !done.is_finished() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        let (mut buf, mut cut) = std::mem::take(&mut *guard);
        if buf.len() > max {
            buf.drain(..buf.len() - max);
            cut = true;
        }
        (buf, cut)
    };
    let (stdout, cut_out) = take(out);
    let (stderr, cut_err) = take(err);
    Ok(Captured {
        status,
        stdout,
        stderr,
        cut: cut_out || cut_err,
    })
}

/// Runs `argv` (a `what`, e.g. "health check", for messages) until it exits or `until`;
/// `Err` says why it did not succeed, with the tail of its output.
pub(crate) fn run(what: &str, argv: &[String], until: Instant) -> Result<(), String> {
    let shown = argv.join(" ");
    let captured = capture(argv, until, MAX_OUTPUT, Keep::Tail)
        .map_err(|e| format!("{what} `{shown}` could not run: {e}"))?;
    let Some(status) = captured.status else {
        return Err(format!(
            "{what} `{shown}` did not finish before the deadline"
        ));
    };
    let mut output = captured.stdout;
    output.extend(captured.stderr);
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} `{shown}` failed ({status}); output: {}",
            tail(&output)
        ))
    }
}

impl HealthCheck for Checks<'_> {
    fn check(&self, deadline: Duration) -> Result<(), String> {
        let until = Instant::now() + deadline;
        for argv in &self.commands {
            run("health check", argv, until)?;
        }
        if let Some(server) = self.server {
            // Retried until the deadline: the network may come up after the agent.
            loop {
                let last = match server.poll() {
                    Ok(_) => break,
                    Err(e) => e.to_string(),
                };
                if Instant::now() + Duration::from_secs(2) >= until {
                    return Err(format!(
                        "the update server did not answer over mutual TLS before the deadline: {last}"
                    ));
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn commands_pass_fail_and_time_out_with_their_output() {
        let ok = Checks {
            commands: vec![sh("exit 0"), sh("true")],
            server: None,
        };
        assert!(ok.check(Duration::from_secs(10)).is_ok());
        let failing = Checks {
            commands: vec![sh("echo app did not start >&2; exit 3")],
            server: None,
        };
        let err = failing.check(Duration::from_secs(10)).unwrap_err();
        assert!(err.contains("app did not start"), "{err}");
        let slow = Checks {
            commands: vec![sh("sleep 5")],
            server: None,
        };
        let err = slow.check(Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("deadline"), "{err}");
    }
}
