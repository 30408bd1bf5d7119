//! Helpers shared by the integration tests that drive the `rampart` binary.
#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;
use std::process::{Command, Stdio};

/// Passphrase for the encrypted key files the tests create.
pub const PASS: &str = "correct horse battery staple";

/// `rampart ARGS` with the test passphrase and no standard input.
pub fn rampart(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rampart"));
    c.args(args)
        .env("RAMPART_KEY_PASSPHRASE", PASS)
        .stdin(Stdio::null());
    c
}

/// Runs a command: whether it succeeded, and its standard output followed by its standard error.
pub fn run(mut c: Command) -> (bool, String) {
    let out = c.output().expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Runs a command that must succeed; returns its output.
pub fn ok(c: Command) -> String {
    let (success, out) = run(c);
    assert!(success, "command failed:\n{out}");
    out
}

/// Runs a command that must fail; returns its output.
pub fn fails(c: Command) -> String {
    let (success, out) = run(c);
    assert!(!success, "command unexpectedly succeeded:\n{out}");
    out
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `rampart key generate` into `dir/NAME.key`; returns its path.
pub fn new_key(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.key"));
    ok(rampart(&["key", "generate", "--out", s(&path)]));
    path.to_str().expect("test paths are UTF-8").to_owned()
}

/// `rampart repo init dir/repo` with one new key per top-level role (`dir/<role>.key`).
pub fn init_repo(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("repo");
    let keys: Vec<String> = ["root", "targets", "snapshot", "timestamp"]
        .iter()
        .map(|role| new_key(dir, role))
        .collect();
    ok(rampart(&[
        "repo",
        "init",
        s(&repo),
        "--root-key",
        &keys[0],
        "--targets-key",
        &keys[1],
        "--snapshot-key",
        &keys[2],
        "--timestamp-key",
        &keys[3],
    ]));
    repo
}

/// A `rampart` server started as a child process; killed (SIGKILL) and reaped when dropped.
pub struct ServerChild {
    child: std::process::Child,
    /// What followed the listening prefix on its standard output (an address or URL).
    pub listening: String,
    /// Standard-output lines not read yet, and the ones read.
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl ServerChild {
    /// Starts `rampart ARGS` with standard error appended to `stderr_log`, and waits up to
    /// `timeout` for a standard-output line starting with `prefix` (e.g. `listening on `).
    pub fn start<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        stderr_log: &Path,
        prefix: &'static str,
        timeout: std::time::Duration,
    ) -> ServerChild {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rampart"));
        command.args(args);
        Self::start_command(command, stderr_log, prefix, timeout)
    }

    /// [`Self::start`] for a prepared command (e.g. with its own environment).
    pub fn start_command(
        mut command: Command,
        stderr_log: &Path,
        prefix: &'static str,
        timeout: std::time::Duration,
    ) -> ServerChild {
        use std::io::BufRead as _;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr_log)
            .expect("open the stderr log");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("the rampart binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Forwards every line until the process dies.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut server = ServerChild {
            child,
            listening: String::new(),
            lines: rx,
            seen: Vec::new(),
        };
        match server.line_after(prefix, timeout) {
            Some(listening) => {
                server.listening = listening;
                server
            }
            None => {
                let _ = server.child.kill();
                let status = server.child.wait();
                let args: Vec<String> = command
                    .get_args()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                panic!(
                    "`rampart {}` did not start listening (exit status {status:?}); its stderr:\n{}",
                    args.join(" "),
                    tail(stderr_log)
                );
            }
        }
    }

    /// What follows `prefix` on the first standard-output line that starts with it (already
    /// printed, or printed within `timeout`).
    pub fn line_after(&mut self, prefix: &str, timeout: std::time::Duration) -> Option<String> {
        let found = |line: &str| line.strip_prefix(prefix).map(|r| r.trim().to_string());
        if let Some(hit) = self.seen.iter().find_map(|l| found(l)) {
            return Some(hit);
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            let hit = found(&line);
            self.seen.push(line);
            if hit.is_some() {
                return hit;
            }
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 4000 bytes of a file, for failure messages.
pub fn tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(4000);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Prints the servers' stderr if the test fails (before the temporary directory goes).
pub struct StderrOnPanic(pub std::path::PathBuf);

impl Drop for StderrOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- stderr of the rampart servers (tail) ----\n{}",
                tail(&self.0)
            );
        }
    }
}

/// The `rampart-agent` binary, built (or found up to date) beside the `rampart` binary.
///
/// It is another package's binary: `cargo test -p rampart-cli` does not build it, so this runs
/// `cargo build -p rampart-agent --bin rampart-agent` with the same profile and target
/// directory (cargo releases its build lock before running tests, so this does not deadlock).
pub fn agent_binary() -> std::path::PathBuf {
    let rampart = Path::new(env!("CARGO_BIN_EXE_rampart"));
    let bin = rampart.with_file_name("rampart-agent");
    let profile_dir = rampart
        .parent()
        .expect("the rampart binary has a directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("cannot tell the profile from {}", rampart.display()),
    };
    let target_dir = profile_dir.parent().expect("a target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "rampart-agent",
            "--bin",
            "rampart-agent",
        ])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() && bin.exists() => bin,
        Ok(out) => panic!(
            "building the rampart-agent binary failed ({}); build it with `cargo build -p rampart-agent` \
             (expected at {}):\n{}",
            out.status,
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "could not run {} to build rampart-agent ({e}); build it with `cargo build -p rampart-agent` \
             (expected at {})",
            cargo.to_string_lossy(),
            bin.display()
        ),
    }
}
