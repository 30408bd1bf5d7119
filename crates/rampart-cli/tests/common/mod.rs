//! What the CLI's live-server tests share: a `rampart server` started as an operator would (hosting an
//! image repository whose releases carry SBOMs), `rampart risk ...` run against it, devices
//! polling its device API over mutual TLS so the inventory knows what they run, and the real
//! PyPI advisories of ../shared/vectors/osv-pypi.
//!
//! Each test file includes this module and uses part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_testkit::cli::{self, ServerChild, s};
use rampart_testkit::http::{BlockingClient, mutual_tls_config};
use serde_json::{Value, json};

pub const PYPI_ADVISORIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/osv-pypi"
);

/// A server, its PKI, its repository and an operator token, in a temporary directory.
pub struct Site {
    // Declared first: dropped first (fields drop in order), while the directory is still there.
    _stderr: cli::StderrOnPanic,
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub operator: String,
    /// The management API, `https://localhost:PORT`.
    pub api: String,
    /// The device API, `https://127.0.0.1:PORT` (where it listens; the test's client takes
    /// the first address a name resolves to, which for `localhost` may be `::1`).
    pub device_api: String,
    ca: rampart_pki::CertificateAuthority,
    _server: ServerChild,
}

/// What a test prepares before its server starts: the directory, and the repository
/// (`rampart repo init`, its role keys in the directory).
pub struct Prepare<'a> {
    pub dir: &'a Path,
    pub repo: &'a Path,
}

impl Site {
    /// A server hosting a new, empty repository.
    pub fn start() -> Site {
        Site::start_with(|_| Vec::new())
    }

    /// A server hosting a new repository: `prepare` adds releases (or writes files) before the
    /// server starts and returns extra `rampart server` arguments.
    pub fn start_with(prepare: impl FnOnce(&Prepare) -> Vec<String>) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let repo = cli::init_repo(&dir);
        let extra = prepare(&Prepare {
            dir: &dir,
            repo: &repo,
        });
        let ca = rampart_pki::CertificateAuthority::generate("Risk CLI CA", 30).unwrap();
        let server_cert = ca.issue_server(&["localhost", "127.0.0.1"], 30).unwrap();
        let now = std::time::SystemTime::now();
        let crl = ca
            .crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)
            .unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let db = format!("sqlite://{}", dir.join("server.db").display());
        let mut args = vec![
            "server".to_owned(),
            "--db".into(),
            db.clone(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--cert".into(),
            write("server.pem", &server_cert.cert_pem),
            "--key".into(),
            write("server.key", &server_cert.key_pem),
            "--client-ca".into(),
            write("ca.pem", ca.cert_pem()),
            "--crl".into(),
            write("crl.pem", &crl),
            "--management-listen".into(),
            "127.0.0.1:0".into(),
            "--repo".into(),
            s(&repo).to_owned(),
        ];
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = ServerChild::start_command(
            cli::rampart(&args),
            &dir.join("server.stderr"),
            "management API listening on ",
            Duration::from_secs(60),
        );
        let port = |address: &str| {
            address
                .trim_end_matches('/')
                .trim_end_matches("/api/v1")
                .rsplit(':')
                .next()
                .unwrap()
                .to_owned()
        };
        let management_port = port(&server.listening);
        // Printed before the management API's line.
        let device_address = server
            .line_after("device API listening on ", Duration::from_secs(60))
            .expect("the server prints its device API address");
        let device_port = port(&device_address);
        // The token is stdout alone (notes go to stderr).
        let out = cli::rampart(&["token", "create", "--db", &db, "--role", "operator"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let token = String::from_utf8(out.stdout).unwrap();
        Site {
            ca_pem: dir.join("ca.pem"),
            operator: token.trim().to_owned(),
            api: format!("https://localhost:{management_port}"),
            device_api: format!("https://127.0.0.1:{device_port}"),
            dir: dir.clone(),
            ca,
            _tmp: tmp,
            _server: server,
            _stderr: cli::StderrOnPanic(dir.join("server.stderr")),
        }
    }

    /// `rampart risk ARGS --api .. --token .. --ca ..` as the operator.
    pub fn risk(&self, args: &[&str]) -> std::process::Command {
        let mut all = vec!["risk"];
        all.extend(args);
        self.as_token(&self.operator, &all)
    }

    /// `rampart ARGS --api .. --token TOKEN --ca ..`.
    pub fn as_token(&self, token: &str, args: &[&str]) -> std::process::Command {
        let mut all = args.to_vec();
        all.extend([
            "--api",
            &self.api,
            "--token",
            token,
            "--ca",
            s(&self.ca_pem),
        ]);
        cli::rampart(&all)
    }

    /// `rampart ARGS` against the management API as the operator.
    pub fn as_operator(&self, args: &[&str]) -> std::process::Command {
        self.as_token(&self.operator, args)
    }

    /// The server's database URL (`rampart token ... --db`).
    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("server.db").display())
    }

    /// A new admin token, created in the database as for the first one.
    pub fn admin_token(&self) -> String {
        let out = cli::rampart(&["token", "create", "--db", &self.db_url(), "--role", "admin"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// What the server has written to its standard error so far (its log).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.stderr")).unwrap_or_default()
    }

    /// Device `id` (a certificate of this site's CA) polls, reporting `hardware`, `region` and
    /// the firmware `version` it runs: the inventory then counts it as running that release.
    pub fn poll_as(&self, id: &str, hardware: &str, region: &str, version: &str) {
        let issued = self.ca.issue_device(id, 30).unwrap();
        let tls = mutual_tls_config(self.ca.cert_pem(), &issued.cert_pem, &issued.key_pem);
        let device = BlockingClient::new(&self.device_api, Some(tls));
        let body = json!({"hardware_id": hardware, "firmware_version": version,
                          "security_version": 1, "region": region, "tags": [],
                          "slots": {"a": "good", "b": "inactive"}});
        let answer = device.post("/device/v1/poll", body.to_string().as_bytes());
        assert_eq!(answer.status, 200, "{id} polls: {}", answer.text());
    }

    /// Device `id` (which has polled) sends the report `report` (the device API's JSON).
    pub fn report_as(&self, id: &str, report: &Value) {
        let issued = self.ca.issue_device(id, 30).unwrap();
        let tls = mutual_tls_config(self.ca.cert_pem(), &issued.cert_pem, &issued.key_pem);
        let device = BlockingClient::new(&self.device_api, Some(tls));
        let answer = device.post("/device/v1/reports", report.to_string().as_bytes());
        assert_eq!(answer.status, 201, "{id} reports: {}", answer.text());
    }
}

/// A CycloneDX 1.5 SBOM of PyPI packages at the given versions.
pub fn pypi_cyclonedx(pins: &[(&str, &str)]) -> String {
    let components: Vec<Value> = pins
        .iter()
        .map(|(name, version)| {
            let purl = format!("pkg:pypi/{}@{version}", name.to_ascii_lowercase());
            json!({"type": "library", "bom-ref": purl, "name": name, "version": version,
                   "purl": purl})
        })
        .collect();
    json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": components})
        .to_string()
}

/// `rampart release add` of an image called `target` (its target path) at `version` for
/// `hardware`, with `sbom` attached, published.
pub fn add_release(site: &Prepare, target: &str, version: &str, hardware: &str, sbom: &Path) {
    let image = site.dir.join(target);
    std::fs::write(&image, format!("firmware {target} {version}").repeat(100)).unwrap();
    let mut add = cli::release_add(site.repo, &image, hardware, version);
    add.args(["--sbom", s(sbom), "--name", target]);
    cli::ok(add);
}

/// Every record file of the real PyPI feed, sorted.
pub fn real_advisory_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(PYPI_ADVISORIES)
        .unwrap_or_else(|e| panic!("{PYPI_ADVISORIES}: {e} (the shared vectors are needed)"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() > 2000, "{}", paths.len());
    paths
}

/// The real records naming PyPI package `package` (any case) among their affected packages.
pub fn real_advisories_of(package: &str) -> Vec<PathBuf> {
    let found: Vec<PathBuf> = real_advisory_paths()
        .into_iter()
        .filter(|p| {
            let record: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            record["affected"].as_array().is_some_and(|affected| {
                affected.iter().any(|a| {
                    a["package"]["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(package))
                })
            })
        })
        .collect();
    assert!(!found.is_empty(), "no real advisory names {package}");
    found
}

/// A zip of `(entry name, bytes)`, deflated, as osv.dev publishes its exports.
pub fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// Runs `check` about once a second until it returns `Some`, for at most 120 s (a state, however
/// long a busy machine takes); panics naming `what` otherwise.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 120 s for {what}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
