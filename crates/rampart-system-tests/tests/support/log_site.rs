//! A witnessed transparency log as separate processes: `rampart witness serve` and `rampart log
//! serve` (quorum 1, publishing every 50 ms), with the policy file a verifier needs.

#![allow(dead_code)] // each test file uses its part

use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_testkit::cli::{ServerChild, ok, rampart, s};

/// The log, its witness and the policy naming both.
pub struct LogSite {
    pub log: ServerChild,
    pub witness: ServerChild,
    /// `log <vkey>`, `witness <vkey>`, `quorum 1`.
    pub policy: PathBuf,
    /// The log's URL.
    pub url: String,
}

/// A helper process (log, witness) that prints `listening on URL`.
pub fn start_listening(w: &Path, args: &[&str], name: &str) -> ServerChild {
    ServerChild::start(
        args,
        &w.join(format!("{name}.stderr")),
        "listening on ",
        Duration::from_secs(60),
    )
}

impl LogSite {
    /// Starts a log named `origin` and one witness, in `w`.
    pub fn start(w: &Path, origin: &str) -> LogSite {
        let keygen = |name: &str, witness: bool| {
            let path = w.join(format!("{}.key", name.replace('/', "_")));
            let mut args = vec!["log", "keygen", "--name", name, "--out", s(&path)];
            if witness {
                args.push("--witness");
            }
            let vkey = ok(rampart(&args)).trim().to_owned();
            (path, vkey)
        };
        let (log_key, log_vkey) = keygen(origin, false);
        let (witness_key, witness_vkey) = keygen("w1.example", true);
        let witness = start_listening(
            w,
            &[
                "witness",
                "serve",
                "--key",
                s(&witness_key),
                "--state",
                s(&w.join("w1-state")),
                "--listen",
                "127.0.0.1:0",
                "--log",
                &log_vkey,
            ],
            "witness",
        );
        let policy = w.join("policy.txt");
        std::fs::write(
            &policy,
            format!("log {log_vkey}\nwitness {witness_vkey}\nquorum 1\n"),
        )
        .unwrap();
        let witness_arg = format!("{}={witness_vkey}", witness.listening);
        let log = start_listening(
            w,
            &[
                "log",
                "serve",
                "--dir",
                s(&w.join("log")),
                "--key",
                s(&log_key),
                "--listen",
                "127.0.0.1:0",
                "--quorum",
                "1",
                "--publish-interval-ms",
                "50",
                "--witness",
                &witness_arg,
            ],
            "log",
        );
        let url = log.listening.clone();
        LogSite {
            log,
            witness,
            policy,
            url,
        }
    }
}
