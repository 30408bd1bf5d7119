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
