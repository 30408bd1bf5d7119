//! The agent against a repository served by a plain static HTTP server (Python's http.server).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_core::Scheme;
use rampart_keys::Signer;
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_repo::{ExpiryDays, InitOptions, NoProgress, ReleaseRequest, Repository, RoleSigners};

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn agent_fetches_only_verified_releases_for_its_hardware_and_security_version() {
    let work = tempfile::tempdir().unwrap();
    let key = |name: &str| {
        let (_, bytes) = FileSigner::generate(
            Scheme::Ed25519,
            "pw",
            KdfParams {
                m_kib: 64,
                t: 1,
                p: 1,
            },
        )
        .unwrap();
        let p = work.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        RoleSigners {
            keys: vec![p.display().to_string()],
            threshold: 1,
        }
    };
    let open = |r: &str| -> Result<Box<dyn Signer>, rampart_keys::SignError> {
        Ok(Box::new(FileSigner::open(Path::new(r), "pw")?))
    };
    let repo_dir = work.path().join("repo");
    let opts = InitOptions {
        root: key("root"),
        targets: key("targets"),
        snapshot: key("snap"),
        timestamp: key("ts"),
        expiry_days: ExpiryDays::default(),
    };
    let repo = Repository::init(&repo_dir, opts, &open, now()).unwrap();
    let img = work.path().join("fw.img");
    std::fs::write(&img, vec![7u8; 10_000]).unwrap();
    let req = |name: &str, hw: &str, sv: u64| ReleaseRequest {
        image: img.clone(),
        target_name: Some(name.into()),
        hardware_ids: vec![hw.into()],
        version: "1.0.0".into(),
        security_version: sv,
        sbom: None,
        provenance: None,
        role: None,
    };
    repo.add_releases(
        &[
            req("a/fw.img", "board-a", 5),
            req("a/old.img", "board-a", 5),
        ],
        &open,
        now(),
        &NoProgress,
    )
    .unwrap();
    repo.publish(&open, now()).unwrap();
    let (_server, base) = serve(&repo_dir);

    let state = work.path().join("agent");
    let agent = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, msg) = agent(&[
        "init",
        repo_dir.join("metadata/1.root.json").to_str().unwrap(),
    ]);
    assert!(ok, "{msg}");
    let out_file = work.path().join("slot-b.img");
    let (ok, msg) = agent(&[
        "fetch",
        "--repo-url",
        &base,
        "--hardware-id",
        "board-a",
        "a/fw.img",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(ok, "{msg}");
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        std::fs::read(&img).unwrap()
    );

    let (ok, msg) = agent(&[
        "check",
        "--repo-url",
        &base,
        "--hardware-id",
        "board-b",
        "a/fw.img",
    ]);
    assert!(!ok && msg.contains("wrong software installation"), "{msg}");

    std::fs::write(state.join("security-version"), "6").unwrap();
    let (ok, msg) = agent(&[
        "check",
        "--repo-url",
        &base,
        "--hardware-id",
        "board-a",
        "a/old.img",
    ]);
    assert!(!ok && msg.contains("anti-rollback"), "{msg}");

    // A second init would replace the trust anchor: refused.
    let (ok, msg) = agent(&[
        "init",
        repo_dir.join("metadata/1.root.json").to_str().unwrap(),
    ]);
    assert!(!ok && msg.contains("already holds a trusted root"), "{msg}");
}
