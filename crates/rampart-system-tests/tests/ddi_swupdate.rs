//! Debian's real `swupdate` (its suricatta hawkBit client) against `rampart server`'s DDI API on
//! loopback, over HTTPS with a TargetToken per device: a campaign assigns a signed `.swu`
//! release (registered in the TUF image repository like any other) to two devices; the first
//! polls, downloads, installs it and, after its "reboot" (swupdate restarted with `-c 2`, as it
//! is after a real reboot with the update state `testing`), reports success; the second is a
//! different hardware revision, refuses the image and reports failure, and the campaign's gate
//! counts it and halts. Needs `swupdate`, `openssl` and `cpio` (scripts/test.sh installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_testkit::cli;
use rampart_testkit::cli::{ServerChild, StderrOnPanic, ok, rampart, s};
use rampart_testkit::http::ManagementClient;
use rampart_testkit::pki::ServerPki;
use serde_json::{Value, json};

const HARDWARE: &str = "board-a";

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is not installed; this test runs Debian's swupdate against the DDI API \
         (scripts/test.sh installs swupdate, openssl and cpio)"
    );
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds a signed `.swu`: `sw-description` (one `rawfile` written to `dest`, for hardware
/// revision 1.0), its CMS signature by `signer`, and the payload, in a `crc` cpio archive.
fn build_swu(dir: &Path, payload: &[u8], dest: &Path, signer: (&Path, &Path)) -> PathBuf {
    let work = dir.join("swu");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("payload.bin"), payload).unwrap();
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, payload));
    std::fs::write(
        work.join("sw-description"),
        format!(
            "software =\n{{\n  version = \"1.0.1\";\n  description = \"rampart DDI interoperability test\";\n  \
             hardware-compatibility = [ \"1.0\" ];\n  files: (\n    {{\n      filename = \"payload.bin\";\n      \
             path = \"{}\";\n      type = \"rawfile\";\n      sha256 = \"{sha256}\";\n      \
             properties: {{ create-destination = \"true\"; }};\n    }}\n  );\n}}\n",
            dest.display()
        ),
    )
    .unwrap();
    sh(Command::new("openssl")
        .args(["cms", "-sign", "-in"])
        .arg(work.join("sw-description"))
        .arg("-out")
        .arg(work.join("sw-description.sig"))
        .arg("-signer")
        .arg(signer.0)
        .arg("-inkey")
        .arg(signer.1)
        .args(["-outform", "DER", "-nosmimecap", "-binary"]));
    let swu = dir.join("rampart-update.swu");
    let out = std::fs::File::create(&swu).unwrap();
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "crc", "--quiet"])
        .current_dir(&work)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out))
        .spawn()
        .expect("cpio runs");
    use std::io::Write as _;
    // sw-description first, its signature second, then the payloads.
    cpio.stdin
        .take()
        .unwrap()
        .write_all(b"sw-description\nsw-description.sig\npayload.bin\n")
        .unwrap();
    assert!(cpio.wait().unwrap().success(), "cpio failed");
    swu
}

/// One swupdate process (its own TMPDIR for sockets and scratch files).
struct Swupdate {
    child: Child,
    log: PathBuf,
}

impl Swupdate {
    fn start(dir: &Path, config: &Path, hw_revision: &str, suricatta: &str) -> Swupdate {
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let log = dir.join(format!("swupdate-{}.log", suricatta.len()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("swupdate")
            .arg("-f")
            .arg(config)
            .args(["-H", &format!("test:{hw_revision}"), "-u", suricatta])
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("swupdate starts");
        Swupdate { child, log }
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Swupdate {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.log.display(), cli::tail(&self.log));
        }
    }
}

struct Api {
    api: ManagementClient,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api.call(method, path, body)
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// Waits until `f` holds for `GET path`, returning that answer.
    fn wait_for(&self, path: &str, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.ok("GET", path, None);
            if f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {secs} s: {v:#}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[test]
fn swupdate_installs_a_campaign_release_through_ddi_and_a_failure_counts_toward_the_gate() {
    for tool in ["swupdate", "openssl", "cpio"] {
        need(tool);
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = std::fs::canonicalize(tmp.path()).unwrap();
    let _stderr = StderrOnPanic(w.join("server.stderr"));

    // The image signer SWUpdate trusts, and the .swu.
    let (sig_cert, sig_key) = (w.join("signing.crt"), w.join("signing.key"));
    sh(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(&sig_key)
        .arg("-out")
        .arg(&sig_cert)
        .args(["-subj", "/CN=rampart-swu-signer", "-days", "30"]));
    let installed = w.join("device-1/installed.bin");
    let payload = b"rampart application image 1.0.1\n".repeat(64);
    let swu = build_swu(&w, &payload, &installed, (&sig_cert, &sig_key));

    // A TUF image repository holding the .swu as release 1.0.1 (any file is a release).
    let repo = cli::init_repo(&w);
    ok(rampart(&[
        "release",
        "add",
        s(&swu),
        "--repo",
        s(&repo),
        "--hw",
        HARDWARE,
        "--version",
        "1.0.1",
        "--security-version",
        "1",
    ]));
    let release = "1.0.1/rampart-update.swu";

    // The server: HTTPS for DDI and management, with a certificate for 127.0.0.1.
    let pki = ServerPki::write(&w, "DDI Test CA", 1, "server.key");
    let (ca, ca_pem) = (&pki.ca, &pki.ca_pem);
    let db = format!("sqlite://{}", w.join("server.db").display());
    let mut args = pki.server_command(&db);
    args.extend(
        [
            "--ddi-listen",
            "127.0.0.1:0",
            "--repo",
            s(&repo),
            "--poll-interval",
            "1",
        ]
        .map(String::from),
    );
    let mut server = ServerChild::start(
        &args,
        &w.join("server.stderr"),
        "DDI API listening on ",
        Duration::from_secs(60),
    );
    let ddi_url = server.listening.trim_end_matches('/').to_owned();
    let management = server
        .line_after("management API listening on ", Duration::from_secs(30))
        .expect("the management API listens");
    let created = rampart(&[
        "token", "create", "--db", &db, "--role", "admin", "--name", "ddi-test",
    ])
    .output()
    .unwrap();
    assert!(created.status.success(), "{created:?}");
    let api = Api {
        api: ManagementClient::new(
            &management,
            String::from_utf8(created.stdout).unwrap().trim(),
            ca.cert_pem(),
        ),
    };

    // Tenant DEFAULT with TargetTokens; one token per device.
    api.ok(
        "POST",
        "/api/v1/ddi/tenants",
        Some(json!({"name": "DEFAULT"})),
    );
    let token = |device: &str| {
        api.ok(
            "POST",
            &format!("/api/v1/ddi/tenants/DEFAULT/devices/{device}/token"),
            Some(json!({"hardware_id": HARDWARE})),
        )["target_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let config = |device: &str, token: &str| {
        let dir = w.join(device);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("swupdate.cfg");
        std::fs::write(
            &path,
            format!(
                "globals : {{\n  verbose = true;\n  loglevel = 6;\n  public-key-file = \"{cert}\";\n}};\n\
                 suricatta : {{\n  tenant = \"DEFAULT\";\n  id = \"{device}\";\n  url = \"{ddi_url}\";\n  \
                 targettoken = \"{token}\";\n  cafile = \"{ca}\";\n  polldelay = 1;\n  retry = 3;\n  retrywait = 1;\n}};\n",
                cert = sig_cert.display(),
                ca = ca_pem.display(),
            ),
        )
        .unwrap();
        (dir, path)
    };
    let (dir1, cfg1) = config("swu-1", &token("swu-1"));
    let (dir2, cfg2) = config("swu-2", &token("swu-2"));

    // The campaign: both devices in the canary; one failure is more than the gate allows.
    let spec = json!({"name": "swupdate rollout", "release": release,
        "targets": {"devices": ["swu-1", "swu-2"]},
        "phases": {"canary": {"devices": 2}},
        "gate": {"min_success_pct": 90, "max_failure_pct": 10, "min_results": 1},
        "on_breach": "pause"});
    let campaign = api.ok(
        "POST",
        "/api/v1/campaigns",
        Some(json!({"spec": spec, "start": true})),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Device 1: polls, downloads over HTTPS, installs (the rawfile lands), reports progress.
    let mut first = Swupdate::start(&dir1, &cfg1, "1.0", "");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read(&installed).ok().as_deref() != Some(&payload[..]) {
        assert!(
            Instant::now() < deadline,
            "swupdate did not install the payload"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    api.wait_for(
        "/api/v1/ddi/devices/swu-1/actions",
        "the install report",
        30,
        |v| v["actions"][0]["statuses"].as_i64().unwrap_or(0) >= 3,
    );
    // Its "reboot": swupdate starts again with the update state `testing` and confirms.
    first.stop();
    let _confirmed = Swupdate::start(&dir1, &cfg1, "1.0", "-c 2");
    let actions = api.wait_for(
        "/api/v1/ddi/devices/swu-1/actions",
        "the success report",
        60,
        |v| v["actions"][0]["state"] == "finished",
    );
    assert_eq!(actions["actions"][0]["target"], release, "{actions:#}");

    // Device 2: another hardware revision; swupdate refuses the image and reports failure.
    let _second = Swupdate::start(&dir2, &cfg2, "2.0", "");
    api.wait_for(
        "/api/v1/ddi/devices/swu-2/actions",
        "the failure report",
        60,
        |v| v["actions"][0]["state"] == "error",
    );

    // The campaign saw both: one finished, one failed, and the gate halted it.
    let c = api.wait_for(
        &format!("/api/v1/campaigns/{campaign}"),
        "the gate's halt",
        30,
        |v| v["status"] == "paused",
    );
    assert_eq!(c["state"]["halt"]["by"], "gate", "{c:#}");
    let total = &c["figures"]["total"];
    assert_eq!(total["succeeded"], 1, "{c:#}");
    assert_eq!(total["failed"], 1, "{c:#}");
    let reports = api.ok("GET", "/api/v1/reports?device=swu-1", None);
    assert_eq!(reports["reports"][0]["status"], "installed", "{reports:#}");
    server.kill();
}
