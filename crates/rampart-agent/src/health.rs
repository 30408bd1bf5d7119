//! Health checks after booting a new slot: configured commands, and the built-in check that
//! the update server answers a poll over mutual TLS, all within one deadline.

use std::io::Read as _;
use std::process::{Command, Stdio};
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

/// Runs `argv` (a `what`, e.g. "health check", for messages) until it exits or `until`;
/// `Err` says why it did not succeed, with the tail of its output.
pub(crate) fn run(what: &str, argv: &[String], until: Instant) -> Result<(), String> {
    let shown = argv.join(" ");
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what} `{shown}` could not run: {e}"))?;
    // Drain output in the background so a chatty check cannot block on a full pipe.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 4 * MAX_OUTPUT {
                        buf.drain(..buf.len() - MAX_OUTPUT);
                    }
                }
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} `{shown}` did not finish before the deadline"
                ));
            }
            Err(e) => return Err(format!("{what} `{shown}`: {e}")),
        }
    };
    let mut output = out.join().unwrap_or_default();
    output.extend(err.join().unwrap_or_default());
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
