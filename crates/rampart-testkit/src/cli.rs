//! Driving the `rampart` binary: its commands with the tests' passphrase, their output, a
//! server child process, and a new image repository.

use std::path::Path;
use std::process::{Command, Stdio};

/// Passphrase for the encrypted key files the tests create.
pub const PASS: &str = "correct horse battery staple";

/// `rampart ARGS` with the test passphrase and no standard input.
pub fn rampart(args: &[&str]) -> Command {
    let mut c = Command::new(crate::binaries::rampart_binary());
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

/// `rampart token create --db DB --role ROLE --name NAME`: the new token's secret.
pub fn create_token(db: &str, role: &str, name: &str) -> String {
    let out = rampart(&[
        "token", "create", "--db", db, "--role", role, "--name", name,
    ])
    .output()
    .expect("binary runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("a token is text")
        .trim()
        .to_owned()
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

/// `rampart release add IMAGE --repo REPO --hw HARDWARE --version VERSION --security-version 1`,
/// for the caller to add flags to (`--sbom`, ...) and run.
pub fn release_add(repo: &Path, image: &Path, hardware: &str, version: &str) -> Command {
    rampart(&[
        "release",
        "add",
        s(image),
        "--repo",
        s(repo),
        "--hw",
        hardware,
        "--version",
        version,
        "--security-version",
        "1",
    ])
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
        let mut command = Command::new(crate::binaries::rampart_binary());
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

/// A director root of trust in `dir/director` (`rampart director init` with new keys
/// `dir/director-root.key` and `dir/director-online.key`): the directory, and the online key
/// `rampart server --director-key` signs with.
pub fn init_director(dir: &Path) -> (std::path::PathBuf, String) {
    let director = dir.join("director");
    let (root, online) = (
        new_key(dir, "director-root"),
        new_key(dir, "director-online"),
    );
    ok(rampart(&[
        "director",
        "init",
        "--dir",
        s(&director),
        "--root-key",
        &root,
        "--online-key",
        &online,
    ]));
    (director, online)
}
