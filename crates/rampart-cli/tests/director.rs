//! `rampart director init` and `rampart director rotate-root`: the director root a device pins
//! and the server runs with.

use std::path::Path;

use rampart_core::director::{DirectorTrust, check_director_root};
use rampart_testkit::cli::{fails, init_director, new_key, ok, rampart, s};

fn key_id(path: &str) -> String {
    rampart_keys::file::read_public(Path::new(path))
        .unwrap()
        .key_id()
}

#[test]
fn director_init_and_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path();
    let (root, online) = (new_key(keys, "root"), new_key(keys, "online"));
    let dir = tmp.path().join("director");

    // The online key may not double as the offline root key.
    let out = fails(rampart(&[
        "director",
        "init",
        "--dir",
        s(&dir),
        "--root-key",
        &root,
        "--online-key",
        &root,
    ]));
    assert!(
        out.contains("online key must not also be a root key"),
        "{out}"
    );

    ok(rampart(&[
        "director",
        "init",
        "--dir",
        s(&dir),
        "--root-key",
        &root,
        "--online-key",
        &online,
    ]));
    let v1 = std::fs::read(dir.join("1.root.json")).unwrap();
    assert_eq!(std::fs::read(dir.join("root.json")).unwrap(), v1);
    let mut trust = DirectorTrust::new(&v1).unwrap();
    check_director_root(&v1, &key_id(&online)).unwrap();
    let out = fails(rampart(&[
        "director",
        "init",
        "--dir",
        s(&dir),
        "--root-key",
        &root,
        "--online-key",
        &online,
    ]));
    assert!(out.contains("already holds a director root"), "{out}");

    // Rotation: new root and online keys, signed by the old and the new root keys.
    let (root2, online2) = (new_key(keys, "root2"), new_key(keys, "online2"));
    let out = fails(rampart(&[
        "director",
        "rotate-root",
        "--dir",
        s(&dir),
        "--old-root-key",
        &root2,
        "--root-key",
        &root2,
        "--online-key",
        &online2,
    ]));
    assert!(out.contains("would not be accepted by devices"), "{out}");
    assert!(!dir.join("2.root.json").exists());
    ok(rampart(&[
        "director",
        "rotate-root",
        "--dir",
        s(&dir),
        "--old-root-key",
        &root,
        "--root-key",
        &root2,
        "--online-key",
        &online2,
    ]));
    let v2 = std::fs::read(dir.join("2.root.json")).unwrap();
    assert_eq!(std::fs::read(dir.join("root.json")).unwrap(), v2);
    assert_eq!(trust.update_root(&v2).unwrap(), 2);
    check_director_root(&v2, &key_id(&online2)).unwrap();
    assert!(check_director_root(&v2, &key_id(&online)).is_err());
}

/// `rampart server --repo DIR --director-root FILE --director-key KEY`, end to end: the device
/// agent updates through the running binary with full verification.
#[test]
fn server_runs_the_director_from_the_command_line() {
    use std::io::BufRead as _;
    use std::process::Stdio;
    use std::time::{Duration, SystemTime};

    let tmp = tempfile::tempdir().unwrap();
    let w = std::fs::canonicalize(tmp.path()).unwrap();
    let keys = w.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let k = |name: &str| new_key(&keys, name);
    let repo = w.join("repo");
    let (root, targets, snapshot, timestamp) =
        (k("root"), k("targets"), k("snapshot"), k("timestamp"));
    ok(rampart(&[
        "repo",
        "init",
        s(&repo),
        "--root-key",
        &root,
        "--targets-key",
        &targets,
        "--snapshot-key",
        &snapshot,
        "--timestamp-key",
        &timestamp,
    ]));
    let image: Vec<u8> = (0..150_000u32)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    let img = w.join("fw.img");
    std::fs::write(&img, &image).unwrap();
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
    let (director, online) = init_director(&w);

    // Device PKI.
    let ca = rampart_pki::CertificateAuthority::generate("CLI Test CA", 30).unwrap();
    let server_cert = ca.issue_server(&["localhost"], 30).unwrap();
    let now = SystemTime::now();
    let crl = ca
        .crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)
        .unwrap();
    let write = |name: &str, text: &str| {
        let p = w.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert_pem, key_pem) = (
        write("server.pem", &server_cert.cert_pem),
        write("server.key", &server_cert.key_pem),
    );
    let (ca_pem, crl_pem) = (write("ca.pem", ca.cert_pem()), write("crl.pem", &crl));
    let db = w.join("server.db");
    let db_url = format!("sqlite://{}", db.display());

    let mut server = rampart(&[
        "server",
        "--db",
        &db_url,
        "--listen",
        "127.0.0.1:0",
        "--cert",
        s(&cert_pem),
        "--key",
        s(&key_pem),
        "--client-ca",
        s(&ca_pem),
        "--crl",
        s(&crl_pem),
        "--repo",
        s(&repo),
        "--director-root",
        s(&director.join("root.json")),
        "--director-key",
        &online,
    ]);
    let stderr_log = w.join("server.stderr");
    let mut child = server
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_log).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("device API listening on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr: std::net::SocketAddr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr.parse().unwrap(),
        Err(e) => {
            let _ = child.0.kill();
            let _ = child.0.wait();
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            panic!("rampart server did not start ({e}): {log}");
        }
    };

    // Provision the device, and assign it the release (as the management API would).
    let device = ca.issue_device("dev-cli", 30).unwrap();
    let state = w.join("device");
    std::fs::create_dir_all(state.join("metadata")).unwrap();
    std::fs::copy(
        repo.join("metadata/1.root.json"),
        state.join("metadata/root.json"),
    )
    .unwrap();
    rampart_agent::director::pin_director_root(
        &state,
        &std::fs::read(director.join("1.root.json")).unwrap(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = rampart_db::Db::connect(&db_url).await.unwrap();
        let unix =
            |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
        db.register_if_new("dev-cli", unix(now)).await.unwrap();
        let last = db.last_audit().await.unwrap();
        let last = last.map(|l| {
            rampart_audit::parse_jsonl(l.line.as_bytes())
                .unwrap()
                .remove(0)
        });
        let mut chain = rampart_audit::AuditChain::resume(last.as_ref()).unwrap();
        let record = chain
            .append(
                unix(now),
                "token:test",
                "assignment.created",
                "a-cli",
                serde_json::json!({}),
            )
            .unwrap();
        let assignment = rampart_db::Assignment {
            id: "a-cli".into(),
            target: "1.0.0/fw.img".into(),
            selector: serde_json::json!({}),
            created: unix(now),
            created_by: "token:test".into(),
            device_count: 1,
            update_type: "forced".into(),
            forced_at: 0,
            reimage: false,
        };
        let line = rampart_db::AuditLine {
            seq: record.seq,
            line: rampart_audit::to_json_line(&record),
        };
        db.create_assignment(&assignment, &["dev-cli".to_owned()], &line)
            .await
            .unwrap();
        db.close().await;
    });

    let tls = rampart_agent::server_client::DeviceTls {
        server_ca_pem: ca.cert_pem().as_bytes().to_vec(),
        cert_pem: device.cert_pem.as_bytes().to_vec(),
        key_pem: device.key_pem.as_bytes().to_vec(),
    };
    let client = rampart_agent::server_client::ServerClient::new(
        &format!("https://localhost:{}", addr.port()),
        &tls,
    )
    .unwrap();
    let out = w.join("installed.img");
    let unix_now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let outcome =
        rampart_agent::server_update::update(&state, &client, "board-a", &out, unix_now).unwrap();
    assert!(
        matches!(
            &outcome,
            rampart_agent::server_update::UpdateOutcome::Downloaded {
                director_version: 1,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), image);
}
