//! End-to-end tests of the `rampart` and `rampart-agent` binaries.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_testkit::cli;
use rampart_testkit::cli::{fails, ok, rampart, s};
use rampart_testkit::softhsm::SoftHsm;

fn gen_key(dir: &Path, name: &str, scheme: &str) -> String {
    let path = dir.join(name);
    ok(rampart(&[
        "key",
        "generate",
        "--scheme",
        scheme,
        "--out",
        path.to_str().unwrap(),
    ]));
    path.display().to_string()
}

fn init_repo(work: &Path, root: &[&str], targets: &str) -> PathBuf {
    let keys = work.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let snap = gen_key(&keys, "snapshot.key", "ed25519");
    let ts = gen_key(&keys, "timestamp.key", "ed25519");
    let repo = work.join("repo");
    let mut args = vec!["repo", "init", s(&repo)];
    for r in root {
        args.extend(["--root-key", r]);
    }
    args.extend([
        "--targets-key",
        targets,
        "--snapshot-key",
        &snap,
        "--timestamp-key",
        &ts,
    ]);
    ok(rampart(&args));
    repo
}

fn write_image(dir: &Path, name: &str, len: usize) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, (0..len).map(|i| (i * 7) as u8).collect::<Vec<_>>()).unwrap();
    p
}

#[test]
fn release_workflow_with_sbom_rotation_and_verify() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let root = gen_key(&keys, "root.key", "ed25519");
    let root_pq = gen_key(&keys, "root-pq.key", "ml-dsa-65");
    let targets = gen_key(&keys, "targets.key", "p256");
    let repo = init_repo(work.path(), &[&root, &root_pq], &targets);
    for f in [
        "metadata/1.root.json",
        "metadata/1.targets.json",
        "metadata/1.snapshot.json",
        "metadata/timestamp.json",
    ] {
        assert!(repo.join(f).is_file(), "{f} missing");
    }

    let listed = ok(rampart(&["key", "list", s(&keys)]));
    assert!(
        listed.contains("ml-dsa-65") && listed.contains("ecdsa-sha2-nistp256"),
        "{listed}"
    );
    let exported = ok(rampart(&["key", "export-public", &root]));
    let v: serde_json::Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(v["key"]["scheme"], "ed25519");

    let img = write_image(work.path(), "fw.img", 100_000);
    let sbom = work.path().join("sbom.json");
    std::fs::write(&sbom, r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[{"type":"firmware","name":"fw"}]}"#).unwrap();
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
        "3",
        "--sbom",
        s(&sbom),
    ]));
    let targets_md: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata/2.targets.json")).unwrap())
            .unwrap();
    let t = &targets_md["signed"]["targets"]["1.0.0/fw.img"];
    assert_eq!(t["length"], 100_000);
    let custom = &t["custom"]["rampart"];
    assert_eq!(custom["hardware_ids"][0], "board-a");
    assert_eq!(custom["security_version"], 3);
    assert_eq!(custom["sbom"]["path"], "1.0.0/fw.img.cdx.json");
    let sha = t["hashes"]["sha256"].as_str().unwrap();
    assert!(
        repo.join(format!("targets/1.0.0/{sha}.fw.img")).is_file(),
        "hash-prefixed target file"
    );

    // A malformed SBOM is refused and nothing new is signed.
    let bad = work.path().join("bad-sbom.json");
    std::fs::write(&bad, r#"{"bomFormat":"SPDX"}"#).unwrap();
    let img2 = write_image(work.path(), "fw2.img", 1000);
    let err = fails(rampart(&[
        "release",
        "add",
        s(&img2),
        "--repo",
        s(&repo),
        "--hw",
        "board-a",
        "--version",
        "1.1.0",
        "--security-version",
        "3",
        "--sbom",
        s(&bad),
    ]));
    assert!(err.contains("CycloneDX"), "{err}");
    assert!(!repo.join("metadata/3.targets.json").exists());

    // Provenance must name the image; a mismatch leaves nothing behind in targets/.
    let prov = work.path().join("prov.json");
    std::fs::write(&prov, r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1","subject":[{"name":"x","digest":{"sha256":"00"}}]}"#).unwrap();
    let err = fails(rampart(&[
        "release",
        "add",
        s(&img2),
        "--repo",
        s(&repo),
        "--hw",
        "board-a",
        "--version",
        "1.1.0",
        "--security-version",
        "3",
        "--provenance",
        s(&prov),
    ]));
    assert!(err.contains("provenance does not name the image"), "{err}");
    let leftovers = std::fs::read_dir(repo.join("targets/1.1.0"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "a refused release leaves no image behind");

    // Security versions only go up for the same hardware.
    let err = fails(rampart(&[
        "release",
        "add",
        s(&img2),
        "--repo",
        s(&repo),
        "--hw",
        "board-a",
        "--version",
        "1.1.0",
        "--security-version",
        "2",
    ]));
    assert!(err.contains("security version 2 is below 3"), "{err}");

    // Rotate the targets key (revoking the old one) and verify from root v1.
    let targets2 = gen_key(&keys, "targets2.key", "ed25519");
    let old_id = serde_json::from_str::<serde_json::Value>(&ok(rampart(&[
        "key",
        "export-public",
        &targets,
    ])))
    .unwrap()["keyid"]
        .as_str()
        .unwrap()
        .to_string();
    ok(rampart(&[
        "repo",
        "rotate-root",
        s(&repo),
        "--role",
        "targets",
        "--add-key",
        &targets2,
        "--remove-key",
        &old_id,
    ]));
    let root2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata/2.root.json")).unwrap()).unwrap();
    assert_eq!(
        root2["signatures"].as_array().unwrap().len(),
        2,
        "root v2 signed by both root keys"
    );
    assert!(
        root2["signed"]["keys"].get(&old_id).is_none(),
        "revoked key left the root"
    );
    let out = ok(rampart(&["repo", "verify", s(&repo)]));
    assert!(
        out.contains("root v2") && out.contains("2 target(s) verified"),
        "{out}"
    );

    // Tampering with a target on disk is caught by verify.
    let target_file = repo.join(format!("targets/1.0.0/{sha}.fw.img"));
    let mut bytes = std::fs::read(&target_file).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&target_file, bytes).unwrap();
    let err = fails(rampart(&["repo", "verify", s(&repo)]));
    assert!(err.contains("does not match its sha256 hash"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_static_server(dir: &Path) -> (Server, String) {
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "python http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server(child), format!("http://127.0.0.1:{port}"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Interoperability: python-tuf's ngclient updates from a Rampart repository served by a plain
/// static HTTP server, including a target in a delegated role.
#[test]
fn python_tuf_ngclient_updates_from_our_repository() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let root = gen_key(&keys, "root.key", "ecdsa-sha2-nistp256");
    let targets = gen_key(&keys, "targets.key", "ed25519");
    let fleet = gen_key(&keys, "fleet.key", "ed25519");
    let repo = init_repo(work.path(), &[&root], &targets);
    ok(rampart(&[
        "repo",
        "delegate",
        s(&repo),
        "--name",
        "fleet",
        "--path",
        "fleet/*",
        "--key",
        &fleet,
    ]));
    let img = write_image(work.path(), "fw.img", 50_000);
    ok(rampart(&[
        "release",
        "add",
        s(&img),
        "--repo",
        s(&repo),
        "--hw",
        "board-a",
        "--version",
        "2.0.0",
        "--security-version",
        "1",
        "--name",
        "fleet/fw.img",
        "--role",
        "fleet",
    ]));
    let (_server, base) = python_static_server(&repo);
    let out = Command::new("python3")
        .arg(workspace_root().join("scripts/bench_ngclient.py"))
        .args([
            "--metadata-url",
            &format!("{base}/metadata"),
            "--targets-url",
            &format!("{base}/targets"),
        ])
        .arg("--root")
        .arg(repo.join("metadata/1.root.json"))
        .args([
            "--target-name",
            "fleet/fw.img",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-tuf could not update from our repository (is `tuf` installed? pip install -r scripts/requirements-bench.txt):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Offline roles (root, targets) signed inside a PKCS#11 token (SoftHSM2), online roles with files.
#[test]
fn hsm_signed_offline_roles() {
    let work = tempfile::tempdir().unwrap();
    let token = SoftHsm::init(work.path(), "rampart-ci", "12345678", "4321");
    let hsm = |args: &[&str]| {
        let mut c = rampart(args);
        token.env(&mut c);
        c
    };
    ok(hsm(&[
        "key",
        "generate",
        "--scheme",
        "ed25519",
        "--pkcs11",
        "token=rampart-ci;object=root",
    ]));
    ok(hsm(&[
        "key",
        "generate",
        "--scheme",
        "p256",
        "--pkcs11",
        "token=rampart-ci;object=targets",
    ]));
    let listed = ok(hsm(&["key", "list", "--pkcs11-token", "rampart-ci"]));
    assert!(
        listed.contains("object=root") && listed.contains("object=targets"),
        "{listed}"
    );

    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let snap = gen_key(&keys, "snapshot.key", "ed25519");
    let ts = gen_key(&keys, "timestamp.key", "ed25519");
    let repo = work.path().join("repo");
    ok(hsm(&[
        "repo",
        "init",
        s(&repo),
        "--root-key",
        "pkcs11:token=rampart-ci;object=root",
        "--targets-key",
        "pkcs11:token=rampart-ci;object=targets",
        "--snapshot-key",
        &snap,
        "--timestamp-key",
        &ts,
    ]));
    let img = write_image(work.path(), "fw.img", 4096);
    ok(hsm(&[
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
    let out = ok(hsm(&["repo", "verify", s(&repo)]));
    assert!(out.contains("1 target(s) verified"), "{out}");
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata/1.root.json")).unwrap()).unwrap();
    let schemes: Vec<String> = root["signed"]["keys"]
        .as_object()
        .unwrap()
        .values()
        .map(|k| k["scheme"].as_str().unwrap().to_string())
        .collect();
    assert!(
        schemes.contains(&"ecdsa-sha2-nistp256".to_string()),
        "{schemes:?}"
    );

    // Without the PIN the token refuses to sign the targets role, and the error says what to set.
    let mut c = rampart(&[
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
    ]);
    token.env(&mut c).env_remove("RAMPART_PKCS11_PIN");
    let err = fails(c);
    assert!(err.contains("RAMPART_PKCS11_PIN"), "{err}");
}

/// An error whose type shows its I/O error and also returns it as its source is printed with
/// the operating system's text once, not `...(os error 2): ...(os error 2)`.
#[test]
fn rampart_errors_print_the_os_text_once() {
    let work = tempfile::tempdir().unwrap();
    let repo = cli::init_repo(work.path());
    let missing = work.path().join("missing.img");
    let err = fails(rampart(&[
        "release",
        "add",
        s(&missing),
        "--repo",
        s(&repo),
        "--hw",
        "board-a",
        "--version",
        "1.0.0",
        "--security-version",
        "1",
    ]));
    let os_text = std::io::Error::from_raw_os_error(2).to_string();
    assert!(err.contains(s(&missing)), "{err}");
    assert_eq!(err.matches(&os_text).count(), 1, "{err}");
    assert_eq!(err.matches("error:").count(), 1, "{err}");
}

/// `rampart ... | head`: standard output whose reader is gone ends the command quietly and
/// successfully, with no panic message.
#[test]
fn a_closed_standard_output_ends_rampart_quietly() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for name in ["a.key", "b.key"] {
        gen_key(&keys, name, "ed25519");
    }
    // A pipe whose read end is closed before rampart starts: every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = rampart(&["key", "list", s(&keys)])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

/// `rampart demo --keep-running` leaves the server running and prints the `export` line of the
/// CLI's API settings: pasted into a shell, `rampart campaign list` reaches the demo's server
/// with its operator token and sees the demo's two campaigns. Ctrl-C stops the demo and what it
/// started.
#[test]
fn demo_keep_running_prints_the_cli_settings_for_its_server() {
    use std::io::BufRead as _;
    let w = tempfile::tempdir().unwrap();
    let dir = w.path().join("demo");
    let mut demo = cli::rampart(&[
        "demo",
        "--devices",
        "10",
        "--keep-running",
        "--dir",
        s(&dir),
    ]);
    demo.env_remove("RAMPART_KEY_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = demo.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    let export = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no export line in:\n{}", seen.join("\n"))
        });
        if let Some(export) = line.trim().strip_prefix("export ") {
            break export.to_owned();
        }
        seen.push(line);
    };
    let out = seen.join("\n");
    assert!(out.contains("Still running (Ctrl-C stops):"), "{out}");
    let management = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("management API"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(management.starts_with("https://127.0.0.1:"), "{management}");
    // The variables ApiArgs reads, and nothing else.
    let vars: Vec<(String, String)> = export
        .split(' ')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["RAMPART_API_URL", "RAMPART_API_TOKEN", "RAMPART_API_CA"]
    );
    assert!(
        management.starts_with(&vars[0].1),
        "{management} vs {}",
        vars[0].1
    );
    assert!(Path::new(&vars[2].1).is_absolute() && Path::new(&vars[2].1).exists());
    // The web console's URL, where the printed token logs in (a session cookie, a redirect).
    let console = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("web console"))
        .unwrap_or_else(|| panic!("no web console line in:\n{out}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(console, format!("{}/console/", vars[0].1));
    let ca_pem = std::fs::read(&vars[2].1).unwrap();
    let ca = pem::parse(&ca_pem).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(rampart_cli::shared::api_client::tls_trusting(ca.contents()))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let login = agent
        .post(format!("{console}login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(format!("token={}", vars[1].1).as_bytes())
        .unwrap();
    assert_eq!(
        login.status(),
        303,
        "the printed token logs in to the console"
    );
    let cookie = login.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("__Host-rampart_console="), "{cookie}");
    let mut list = rampart(&["campaign", "list"]);
    list.envs(vars.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let campaigns = ok(list);
    assert!(
        campaigns.contains("fleet to 2.0.0") && campaigns.contains("fleet to 3.0.0"),
        "{campaigns}"
    );
    // Ctrl-C: the demo stops, and the server it started with it.
    ok({
        let mut c = Command::new("kill");
        c.args(["-INT", &child.id().to_string()]);
        c
    });
    let stopped = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < stopped, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(200));
    }
    let api = vars[0].1.trim_start_matches("https://").to_owned();
    let gone = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(&api).is_ok() {
        assert!(
            Instant::now() < gone,
            "the demo's server still answers at {api}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `rampart demo --security-tour` runs every chapter, including the update server (device
/// enrolment, assignment through the management API, verified download through the director,
/// revocation, and a verified audit log).
#[test]
fn security_tour_runs_end_to_end() {
    let w = tempfile::tempdir().unwrap();
    let dir = w.path().join("demo");
    let out = cli::ok({
        let mut c = cli::rampart(&["demo", "--security-tour", "--dir", dir.to_str().unwrap()]);
        c.env_remove("RAMPART_KEY_PASSPHRASE");
        c
    });
    for expected in [
        "ALERT: entry 2",
        "device dev-0001: nothing assigned",
        "device verified and downloaded",
        "assignment status: {\"downloaded\":1}",
        "refused: the update server",
        "device_revoked",
        "device.revoked",
        "credential.revoked_use",
        "rampart audit verify: ok: 5 records",
        "Demo complete.",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

/// The README's main job, with a smaller fleet: the simulated devices (the agent's update flow
/// over mutual TLS) take a good release in waves to every device, and a bad release is halted
/// at its canary by the gate and rolled back with no operator; everything stays in --dir.
#[test]
fn demo_rolls_out_a_good_release_and_halts_a_bad_one() {
    let w = tempfile::tempdir().unwrap();
    let dir = w.path().join("demo");
    let out = cli::ok({
        let mut c = cli::rampart(&["demo", "--devices", "200", "--dir", dir.to_str().unwrap()]);
        c.env_remove("RAMPART_KEY_PASSPHRASE");
        c
    });
    assert!(out.contains("halted automatically at its canary"), "{out}");
    // The demo's server holds the online keys, so a demo left running stays valid past a day.
    assert!(
        out.contains("server: the server renews the repository's timestamp and snapshot"),
        "{out}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let good = &report["campaigns"][0];
    assert_eq!(good["status"], "completed", "{good:#}");
    assert_eq!(good["figures"]["total"]["succeeded"], 200);
    assert!(good["figures"]["waves"].as_array().unwrap().len() >= 3);
    let bad = &report["campaigns"][1];
    assert_eq!(
        (bad["status"].as_str(), bad["wave"].as_u64()),
        (Some("paused"), Some(0))
    );
    assert_eq!(bad["state"]["halt"]["by"], "gate");
    assert!(
        bad["fleet_rollback"]["devices"].as_u64().unwrap() > 0,
        "{bad:#}"
    );
    // Every device told 2.0.0 again has its result: none is left assigned.
    let by_status = bad["fleet_rollback"]["by_status"].as_object().unwrap();
    assert!(
        by_status
            .keys()
            .all(|s| ["installed", "failed", "rolled_back"].contains(&s.as_str())),
        "{bad:#}"
    );
    // The end state, not a moment of it: every device settled (nothing in progress, every
    // result stored, its version told to the server) and on 2.0.0, in the server's inventory
    // and in the fleet itself, however slowly the machine ran.
    assert_eq!(
        report["fleet_versions"]["versions"],
        serde_json::json!([{"firmware_version": "2.0.0", "devices": 200}]),
        "{report:#}"
    );
    assert_eq!(report["simulator"]["settled"], 200, "{report:#}");
    assert_eq!(report["simulator"]["busy"], 0, "{report:#}");
    assert_eq!(report["simulator"]["bricked"], 0);
    // The documented layout.
    for path in [
        "repo/metadata/timestamp.json",
        "repo/metadata/1.root.json",
        "tlog/log/checkpoint",
        "tlog/policy.txt",
        "tlog/release-key.pub",
        "tlog/witness1",
        "tlog/witness2",
        "server/server.db",
        "server/ca.pem",
        "report.json",
    ] {
        assert!(dir.join(path).exists(), "{path} missing");
    }
}
