//! End to end: releases recorded in a witnessed transparency log, proofs checked offline by the
//! device, and the monitor catching a release signed with a stolen release key.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rampart_testkit::cli::{ok, rampart, run, s};
use rampart_testkit::http::BlockingClient;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server and returns it with the base URL it printed.
fn start(mut c: Command) -> (Proc, String) {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(u) = line.strip_prefix("listening on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), url)
}

fn keygen(dir: &Path, name: &str, witness: bool) -> (PathBuf, String) {
    let path = dir.join(format!("{}.key", name.replace('/', "_")));
    let mut args = vec!["log", "keygen", "--name", name, "--out", s(&path)];
    if witness {
        args.push("--witness");
    }
    (path.clone(), ok(rampart(&args)).trim().to_string())
}

#[test]
fn releases_are_logged_witnessed_verified_offline_and_monitored() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (log_key, log_vkey) = keygen(w, "log.example/firmware", false);
    let (release_key, release_vkey) = keygen(w, "vendor.example/releases", false);
    let mut witnesses = Vec::new();
    let mut witness_args = Vec::new();
    let mut policy = format!("log {log_vkey}\n");
    for i in 1..=3 {
        let (key, vkey) = keygen(w, &format!("w{i}.example"), true);
        let state = w.join(format!("w{i}-state"));
        let (p, url) = start(rampart(&[
            "witness",
            "serve",
            "--key",
            s(&key),
            "--state",
            s(&state),
            "--listen",
            "127.0.0.1:0",
            "--log",
            &log_vkey,
        ]));
        witnesses.push(p);
        witness_args.push(format!("{url}={vkey}"));
        policy.push_str(&format!("witness {vkey}\n"));
    }
    policy.push_str("quorum 2\n");
    let policy_file = w.join("policy.txt");
    std::fs::write(&policy_file, &policy).unwrap();
    let log_dir = w.join("log");
    let mut log_args = vec![
        "log",
        "serve",
        "--dir",
        s(&log_dir),
        "--key",
        s(&log_key),
        "--listen",
        "127.0.0.1:0",
        "--quorum",
        "2",
        "--publish-interval-ms",
        "50",
    ];
    for a in &witness_args {
        log_args.extend(["--witness", a]);
    }
    let (_log, log_url) = start(rampart(&log_args));

    // Oversized entries are refused before they reach the log.
    let resp = BlockingClient::new(&log_url, None).post("/add", &vec![b'x'; 70_000]);
    assert_eq!(resp.status, 413, "entries over 65,535 bytes are refused");

    // A repository that records every release.
    let keys = w.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = |n: &str| {
        let p = keys.join(n);
        ok(rampart(&["key", "generate", "--out", s(&p)]));
        p.display().to_string()
    };
    let repo = w.join("repo");
    let (root, targets, snap, ts) = (key("root"), key("targets"), key("snap"), key("ts"));
    ok(rampart(&[
        "repo",
        "init",
        s(&repo),
        "--root-key",
        &root,
        "--targets-key",
        &targets,
        "--snapshot-key",
        &snap,
        "--timestamp-key",
        &ts,
    ]));
    ok(rampart(&[
        "repo",
        "set-log",
        s(&repo),
        "--log-url",
        &log_url,
        "--policy",
        s(&policy_file),
        "--release-key",
        s(&release_key),
    ]));
    let img = w.join("fw.img");
    std::fs::write(&img, vec![42u8; 300_000]).unwrap();
    ok(rampart(&[
        "release",
        "add",
        s(&img),
        "--repo",
        s(&repo),
        "--hw",
        "board-a",
        "--version",
        "1.0.0",
        "--security-version",
        "1",
    ]));
    let proof_files: Vec<_> = walk(&repo.join("targets"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tlog-proof"))
        .collect();
    assert_eq!(
        proof_files.len(),
        1,
        "the release ships with its tlog-proof"
    );
    let proof_text = std::fs::read_to_string(&proof_files[0]).unwrap();
    assert!(
        proof_text.starts_with("c2sp.org/tlog-proof@v1\nextra "),
        "{proof_text}"
    );

    // A release without a proof, for the refusal below.
    ok(rampart(&["repo", "set-log", s(&repo), "--off"]));
    ok(rampart(&[
        "release",
        "add",
        s(&img),
        "--repo",
        s(&repo),
        "--hw",
        "board-a",
        "--version",
        "1.0.1",
        "--security-version",
        "1",
        "--name",
        "unlogged/fw.img",
    ]));

    // The device checks the proof offline against its policy.
    let (_server, repo_url) = start(rampart(&[
        "repo",
        "serve",
        s(&repo),
        "--listen",
        "127.0.0.1:0",
    ]));
    let repo_url = repo_url.trim_end_matches('/').to_string();
    let state = w.join("device");
    // The agent is another package's binary, built beside ours by `cargo test --workspace`.
    let agent_bin = rampart_testkit::binaries::agent_binary();
    assert!(
        agent_bin.exists(),
        "{} missing: run the tests with `cargo test --workspace`",
        agent_bin.display()
    );
    let agent = |args: &[&str]| {
        let mut c = Command::new(&agent_bin);
        c.arg("--state-dir").arg(&state).args(args);
        c
    };
    ok(agent(&[
        "init",
        s(&repo.join("metadata/1.root.json")),
        "--log-policy",
        s(&policy_file),
        "--release-key",
        &release_vkey,
    ]));
    let out = ok(agent(&[
        "fetch",
        "--repo-url",
        &repo_url,
        "--hardware-id",
        "board-a",
        "1.0.0/fw.img",
        "--out",
        s(&w.join("slot.img")),
    ]));
    assert!(
        out.contains("is in transparency log log.example/firmware"),
        "{out}"
    );
    let (success, out) = run(agent(&[
        "check",
        "--repo-url",
        &repo_url,
        "--hardware-id",
        "board-a",
        "unlogged/fw.img",
    ]));
    assert!(!success && out.contains("carries no tlog-proof"), "{out}");

    // The monitor: consistent and complete so far...
    let mon_state = w.join("monitor.state");
    let monitor = || {
        rampart(&[
            "log",
            "monitor",
            "--url",
            &log_url,
            "--policy",
            s(&policy_file),
            "--release-key",
            &release_vkey,
            "--repo",
            s(&repo),
            "--state",
            s(&mon_state),
            "--once",
        ])
    };
    let out = ok(monitor());
    assert!(out.contains("every release entry is known"), "{out}");
    // ...until someone holding the release key logs a release the vendor never published.
    let client = rampart_tlog::client::LogClient::new(&log_url, policy.parse().unwrap());
    let stolen = rampart_log::note::NoteSigner::parse_signer_key(
        std::fs::read_to_string(&release_key).unwrap().trim(),
    )
    .unwrap();
    let evil = rampart_log::statement::ReleaseStatement {
        target: "1.0.0/fw.img".into(),
        version: "1.0.0".into(),
        security_version: 99,
        hardware_ids: vec!["board-a".into()],
        sha256: [0x66; 32],
        sbom_sha256: None,
    };
    client
        .log_release(&evil, &stolen, std::time::Duration::from_secs(30))
        .unwrap();
    let (success, out) = run(monitor());
    assert!(!success, "the monitor must fail on an unknown release");
    assert!(
        out.contains("ALERT: entry 1: release 1.0.0/fw.img version 1.0.0 (sha256 6666"),
        "{out}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
