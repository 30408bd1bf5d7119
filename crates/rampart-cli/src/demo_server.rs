//! The demo's update-server chapter: the real `rampart server` process on loopback (embedded
//! SQLite), a device with a manufacturer certificate, an operator with a token, a release
//! assigned through the management API and installed through the director, a revocation, and
//! the audit log checked at the end.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use rampart_agent::director::{DeviceTls, ServerClient};
use rampart_agent::server_update::UpdateOutcome;
use serde_json::{Value, json};

/// The running `rampart server` child; stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct ServerProcess {
    pub child: Child,
    pub device_url: String,
    pub management_url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn rampart(passphrase: &str) -> anyhow::Result<Command> {
    let mut c = Command::new(std::env::current_exe().context("finding the rampart binary")?);
    c.env("RAMPART_KEY_PASSPHRASE", passphrase)
        .stdin(Stdio::null());
    Ok(c)
}

pub(crate) fn run_ok(mut c: Command, what: &str) -> anyhow::Result<String> {
    let out = c.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running demo server and what it was made with.
pub(crate) struct DemoServer {
    pub process: ServerProcess,
    pub ca: rampart_pki::CertificateAuthority,
    pub ca_pem: PathBuf,
    pub director: PathBuf,
    pub db: String,
}

/// Creates the manufacturer CA, the server certificate, an empty CRL and the director's keys
/// and root in `base`, and starts `rampart server` on SQLite serving `repo`.
pub(crate) fn start_server(
    base: &Path,
    repo: &Path,
    passphrase: &str,
    extra_args: &[&str],
) -> anyhow::Result<DemoServer> {
    std::fs::create_dir_all(base)?;
    let ca = rampart_pki::CertificateAuthority::generate("Demo manufacturer CA", 30)?;
    let server_cert = ca.issue_server(&["127.0.0.1"], 30)?;
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let path = base.join(name);
        if name.ends_with(".key") {
            rampart_pki::write_private_key_pem(&path, text)?;
        } else {
            std::fs::write(&path, text)?;
        }
        Ok(path)
    };
    let now = std::time::SystemTime::now();
    let crl = ca.crl::<&str>(&[], now, now + Duration::from_secs(30 * 86_400), 1)?;
    let ca_pem = write("ca.pem", ca.cert_pem())?;
    let crl_pem = write("crl.pem", &crl)?;
    let server_pem = write("server.pem", &server_cert.cert_pem)?;
    let server_key = write("server.key", &server_cert.key_pem)?;
    for name in ["director-root", "director-online"] {
        let key = base.join(format!("{name}.key"));
        run_ok(
            {
                let mut c = rampart(passphrase)?;
                c.args(["key", "generate", "--out"]).arg(&key);
                c
            },
            "rampart key generate",
        )?;
    }
    let director = base.join("director");
    run_ok(
        {
            let mut c = rampart(passphrase)?;
            c.args(["director", "init", "--dir"])
                .arg(&director)
                .arg("--root-key")
                .arg(base.join("director-root.key"))
                .arg("--online-key")
                .arg(base.join("director-online.key"));
            c
        },
        "rampart director init",
    )?;
    let db = format!("sqlite://{}", base.join("server.db").display());
    let mut child = rampart(passphrase)?
        .arg("server")
        .args([
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            "127.0.0.1:0",
        ])
        .arg("--cert")
        .arg(&server_pem)
        .arg("--key")
        .arg(&server_key)
        .arg("--client-ca")
        .arg(&ca_pem)
        .arg("--crl")
        .arg(&crl_pem)
        .arg("--repo")
        .arg(repo)
        .arg("--director-root")
        .arg(director.join("root.json"))
        .arg("--director-key")
        .arg(base.join("director-online.key"))
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(base.join("server.log"))?)
        .spawn()
        .context("starting rampart server")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut server = ServerProcess {
        child,
        device_url: String::new(),
        management_url: String::new(),
    };
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(addr) = line.strip_prefix("device API listening on ") {
            server.device_url = format!("https://{addr}");
        } else if let Some(url) = line.strip_prefix("management API listening on ") {
            server.management_url = url.trim_end_matches("/api/v1/").to_owned();
            break;
        } else if !line.contains(" listening on ") {
            // What the server says about itself (renewal, audit heads) is part of the tour.
            println!("    server: {line}");
        }
    }
    ensure!(
        !server.device_url.is_empty() && !server.management_url.is_empty(),
        "the server did not start; see {}",
        base.join("server.log").display()
    );
    Ok(DemoServer {
        process: server,
        ca,
        ca_pem,
        director,
        db,
    })
}

/// Runs the chapter, numbering steps from `first`. `target` is a board-a release in `repo`.
pub fn run(
    dir: &Path,
    repo: &Path,
    target: &str,
    passphrase: &str,
    first: u32,
) -> anyhow::Result<()> {
    let step = |n: u32, text: &str| println!("\n[{}] {text}", first + n);
    let base = dir.join("server");
    std::fs::create_dir_all(&base)?;

    step(
        0,
        "The update server: manufacturer CA, device certificate, director root, `rampart server` on SQLite",
    );
    let DemoServer {
        process: server,
        ca,
        ca_pem,
        director,
        db,
    } = start_server(&base, repo, passphrase, &[])?;
    let device_cert = ca.issue_device("dev-0001", 30)?;
    let device_pem = base.join("dev-0001.pem");
    std::fs::write(&device_pem, &device_cert.cert_pem)?;
    let device_key = base.join("dev-0001.key");
    rampart_pki::write_private_key_pem(&device_key, &device_cert.key_pem)?;
    println!(
        "    CA, server certificate for 127.0.0.1, device dev-0001 (serial {})",
        device_cert.serial
    );
    println!(
        "    device API {} (mutual TLS), management API {} (tokens); log in server/server.log",
        server.device_url, server.management_url
    );

    step(
        1,
        "A device pins both roots and polls: it enrols, nothing is assigned yet",
    );
    let state = base.join("dev-0001-state");
    std::fs::create_dir_all(state.join("metadata"))?;
    std::fs::copy(
        repo.join("metadata/1.root.json"),
        state.join("metadata/root.json"),
    )?;
    rampart_agent::director::pin_director_root(
        &state,
        &std::fs::read(director.join("1.root.json"))?,
    )?;
    let tls = DeviceTls {
        server_ca_pem: std::fs::read(&ca_pem)?,
        cert_pem: std::fs::read(&device_pem)?,
        key_pem: std::fs::read(&device_key)?,
    };
    let client = ServerClient::new(&server.device_url, &tls)?;
    let slot = base.join("dev-0001-slot-b.img");
    let outcome =
        rampart_agent::server_update::update(&state, &client, "board-a", &slot, crate::now_unix())?;
    ensure!(
        matches!(outcome, UpdateOutcome::NothingAssigned),
        "unexpected {outcome:?}"
    );
    println!("    device {}: nothing assigned", client.device_id());

    let token = run_ok(
        {
            let mut c = rampart(passphrase)?;
            c.args([
                "token", "create", "--db", &db, "--role", "operator", "--name", "demo",
            ]);
            c
        },
        "rampart token create",
    )?
    .trim()
    .to_owned();
    let operator =
        crate::api_client::ApiClient::new(&server.management_url, &token, ca.cert_der().as_ref());
    let (_, devices) = operator.call("GET", "/api/v1/devices", None)?;
    println!(
        "    operator (token role operator) sees {} device(s) in the inventory: {}",
        devices["devices"].as_array().map_or(0, Vec::len),
        devices["devices"][0]["id"]
    );

    step(
        2,
        "The operator assigns the release; the device verifies director and image repository agree, then downloads",
    );
    let (status, assignment) = operator.call(
        "POST",
        "/api/v1/assignments",
        Some(json!({"target": target, "devices": ["dev-0001"]})),
    )?;
    ensure!(status == 201, "assignment refused: {status} {assignment}");
    println!("    assignment {} of {target}", assignment["id"]);
    let outcome =
        rampart_agent::server_update::update(&state, &client, "board-a", &slot, crate::now_unix())?;
    match outcome {
        UpdateOutcome::Downloaded { path, .. } => println!(
            "    device verified and downloaded {} ({} bytes)",
            path.display(),
            std::fs::metadata(&path)?.len()
        ),
        other => bail!("expected a download, got {other:?}"),
    }
    let (_, progress) = operator.call(
        "GET",
        &format!(
            "/api/v1/assignments/{}",
            assignment["id"].as_str().unwrap_or_default()
        ),
        None,
    )?;
    println!(
        "    assignment status: {}",
        progress["devices_by_last_status"]
    );

    step(
        3,
        "Attack: the device is stolen; the operator revokes it and the server refuses it",
    );
    let (status, _) = operator.call(
        "POST",
        "/api/v1/devices/dev-0001/revoke",
        Some(json!({"reason": "reported stolen"})),
    )?;
    ensure!(status == 200, "revocation failed: {status}");
    match rampart_agent::server_update::update(&state, &client, "board-a", &slot, crate::now_unix())
    {
        Err(e) => println!("    refused: {e}"),
        Ok(o) => bail!("a revoked device was served: {o:?}"),
    }

    step(
        4,
        "The audit log: every operator action and security event, hash-chained",
    );
    drop(server);
    let out = run_ok(
        {
            let mut c = rampart(passphrase)?;
            c.args(["audit", "export", "--db", &db, "--format", "json"]);
            c
        },
        "rampart audit export",
    )?;
    let records: Vec<Value> = serde_json::from_str(&out).context("the audit export")?;
    for r in &records {
        println!(
            "    #{:<2} {:<26} {:<22} {}",
            r["seq"],
            r["action"].as_str().unwrap_or_default(),
            r["actor"].as_str().unwrap_or_default(),
            r["subject"].as_str().unwrap_or_default()
        );
    }
    let verified = run_ok(
        {
            let mut c = rampart(passphrase)?;
            c.args(["audit", "verify", "--db", &db]);
            c
        },
        "rampart audit verify",
    )?;
    println!("    rampart audit verify: {}", verified.trim());
    Ok(())
}
