//! The demo's update-server chapter: the real `rampart server` process on loopback (embedded
//! SQLite), a device with a manufacturer certificate, an operator with a token, a release
//! assigned through the management API and installed through the director, a revocation, and
//! the audit log checked at the end.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};

/// The running `rampart server` child; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct ServerProcess {
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

pub fn rampart(passphrase: &str) -> anyhow::Result<Command> {
    let mut c = Command::new(crate::shared::rampart_binary()?);
    c.env("RAMPART_KEY_PASSPHRASE", passphrase)
        .stdin(Stdio::null());
    Ok(c)
}

pub fn run_ok(mut c: Command, what: &str) -> anyhow::Result<String> {
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
pub struct DemoServer {
    pub process: ServerProcess,
    pub ca: rampart_pki::CertificateAuthority,
    pub ca_pem: PathBuf,
    pub director: PathBuf,
    pub db: String,
}

/// Creates the manufacturer CA, the server certificate, an empty CRL and the director's keys
/// and root in `base`, and starts `rampart server` on SQLite serving `repo`.
pub fn start_server(
    base: &Path,
    repo: &Path,
    passphrase: &str,
    extra_args: &[&str],
) -> anyhow::Result<DemoServer> {
    start_server_on(base, repo, passphrase, extra_args, None)
}

/// [`start_server`] on the database at `db_url` (`None`: a new SQLite file under `base`), for
/// the benchmarks that measure PostgreSQL too.
pub fn start_server_on(
    base: &Path,
    repo: &Path,
    passphrase: &str,
    extra_args: &[&str],
    db_url: Option<&str>,
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
    let db = db_url.map_or_else(
        || format!("sqlite://{}", base.join("server.db").display()),
        str::to_owned,
    );
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
        // Outside SQLite the webhook secrets are sealed with a key kept beside the database.
        .args(
            db_url
                .map(|_| vec!["--secrets-key".into(), base.join("secrets.key")])
                .unwrap_or_default(),
        )
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
