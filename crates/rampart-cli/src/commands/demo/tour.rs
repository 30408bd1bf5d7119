//! `rampart demo --security-tour`: builds everything in local files, then plays a device
//! updating over loopback HTTP, including the attacks the design defends against.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use rampart_core::Scheme;
use rampart_core::metadata::RoleType;
use rampart_core::release::ReleaseInfo;
use rampart_keys::Signer;
use rampart_keys::file::FileSigner;
use rampart_repo::{ExpiryDays, InitOptions, ReleaseRequest, Repository, RoleSigners, RootChange};
use rampart_tuf_client::{ClientError, HttpFetcher, Limits, Updater, UpdaterConfig};

use rampart_agent::server_client::{DeviceTls, ServerClient};
use rampart_agent::server_update::UpdateOutcome;
use serde_json::{Value, json};

use super::server::{DemoServer, rampart, run_ok, start_server};
use super::setup::{LOG_WAIT, PASSPHRASE, Transparency, key, keys_note, prepare_dir, step};

struct Device {
    state: tempfile::TempDir,
    hardware_id: String,
    installed_security_version: u64,
}

impl Device {
    fn updater(&self, base: &str) -> anyhow::Result<Updater<HttpFetcher>> {
        let config = UpdaterConfig {
            metadata_url: format!("{base}/metadata"),
            metadata_dir: self.state.path().join("metadata"),
            target_base_url: Some(format!("{base}/targets")),
            limits: Limits::default(),
        };
        Ok(Updater::new(
            config,
            HttpFetcher::default(),
            crate::shared::now_unix(),
        )?)
    }

    /// Refresh, find the release, verify it and "install" it (write it to the inactive slot file).
    fn update(&mut self, base: &str, target: &str) -> anyhow::Result<ReleaseInfo> {
        let mut up = self.updater(base)?;
        up.refresh()?;
        let info = up
            .get_targetinfo(target)?
            .with_context(|| format!("{target} not in trusted metadata"))?;
        let release = ReleaseInfo::from_custom(info.custom.as_ref())?;
        release.check_installable(&self.hardware_id, self.installed_security_version)?;
        // The same offline transparency check rampart-agent makes.
        if let Some(proven) =
            rampart_agent::check_logged(self.state.path(), &mut up, target, &info, &release)?
        {
            println!("    {proven}");
        }
        up.download_target_to(target, &info, &self.state.path().join("slot-b.img"))?;
        self.installed_security_version = release.security_version;
        println!(
            "    device verified {target}: {} bytes, version {}, security version {}, root v{}",
            info.length,
            release.version,
            release.security_version,
            up.trusted().root().version()
        );
        Ok(release)
    }
}

/// The security tour: key schemes, rotation, delegation, attacks, the transparency log.
pub fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = prepare_dir(dir)?;
    println!("Rampart demo in {}", dir.display());
    println!("  {}", keys_note(&dir));
    let open = |r: &str| -> Result<Box<dyn Signer>, rampart_keys::SignError> {
        Ok(Box::new(FileSigner::open(Path::new(r), PASSPHRASE)?))
    };
    let now = crate::shared::now_unix();

    step(
        1,
        "Generating encrypted signing keys (Argon2id + XChaCha20-Poly1305), three schemes",
    );
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let root_a = key(&keys, "root-a", Scheme::Ed25519)?;
    let root_pq = key(&keys, "root-pq", Scheme::MlDsa65)?;
    let targets = key(&keys, "targets", Scheme::EcdsaP256Sha256)?;
    let snapshot = key(&keys, "snapshot", Scheme::Ed25519)?;
    let timestamp = key(&keys, "timestamp", Scheme::Ed25519)?;
    let board_a = key(&keys, "board-a", Scheme::Ed25519)?;
    let timestamp2 = key(&keys, "timestamp2", Scheme::Ed25519)?;

    step(
        2,
        "Creating the image repository: root needs 2 of 2 (Ed25519 + post-quantum ML-DSA-65)",
    );
    let repo_dir = dir.join("repo");
    let mut repo = Repository::init(
        &repo_dir,
        InitOptions {
            root: RoleSigners {
                keys: vec![root_a, root_pq],
                threshold: 2,
            },
            targets: RoleSigners {
                keys: vec![targets],
                threshold: 1,
            },
            snapshot: RoleSigners {
                keys: vec![snapshot],
                threshold: 1,
            },
            timestamp: RoleSigners {
                keys: vec![timestamp.clone()],
                threshold: 1,
            },
            expiry_days: ExpiryDays::default(),
        },
        &open,
        now,
    )?;
    repo.delegate(
        "board-a",
        vec!["board-a/*/*".into()],
        RoleSigners {
            keys: vec![board_a],
            threshold: 1,
        },
        true,
        &open,
        now,
    )?;
    println!(
        "    {} with delegated role board-a for 'board-a/*/*'",
        repo_dir.display()
    );

    step(
        3,
        "Starting a transparency log with three witnesses (quorum 2)",
    );
    let tlog = Transparency::start(&dir.join("tlog"), 3, 2)?;
    println!(
        "    log {} at {}",
        tlog.client.policy().origin,
        tlog.log_url
    );

    step(
        4,
        "Releasing firmware 1.0.0 for board-a with a CycloneDX SBOM",
    );
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    let release = |repo: &Repository,
                   name: &str,
                   version: &str,
                   security: u64|
     -> anyhow::Result<String> {
        let img = images.join(name);
        let mut data = vec![0u8; 4 << 20];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8) ^ (security as u8);
        }
        std::fs::write(&img, &data)?;
        let sbom = images.join(format!("{name}.cdx.json"));
        std::fs::write(
            &sbom,
            format!(
                r#"{{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[{{"type":"firmware","name":"board-a-fw","version":"{version}"}}]}}"#
            ),
        )?;
        let target = format!("board-a/{version}/{name}");
        let logger = |st: &rampart_log::statement::ReleaseStatement| {
            tlog.client
                .log_release(st, &tlog.release_key, LOG_WAIT)
                .map_err(|e| e.to_string())
        };
        let added = repo.add_releases_logged(
            &[ReleaseRequest {
                image: img,
                target_name: Some(target.clone()),
                hardware_ids: vec!["board-a".into()],
                version: version.into(),
                security_version: security,
                sbom: Some(sbom),
                provenance: None,
                role: Some("board-a".into()),
            }],
            &open,
            now,
            &crate::shared::output::BarProgress::default(),
            Some(&logger),
        )?;
        repo.publish(&open, now)?;
        println!(
            "    released {} (sha256 {}...), recorded in the transparency log with its tlog-proof",
            added[0].target_name,
            &added[0].sha256[..16]
        );
        Ok(target)
    };
    let v1 = release(&repo, "fw.img", "1.0.0", 1)?;

    step(
        5,
        "Serving the repository over loopback HTTP (any static server would do)",
    );
    let server = crate::shared::static_server::StaticServer::start(&repo_dir, "127.0.0.1:0")?;
    let base = format!("http://{}", server.addr());
    println!("    {base}/metadata, {base}/targets");

    step(6, "A board-a device, trusting only root v1, updates");
    let state = tempfile::tempdir()?;
    std::fs::create_dir_all(state.path().join("metadata"))?;
    std::fs::copy(
        repo_dir.join("metadata/1.root.json"),
        state.path().join("metadata/root.json"),
    )?;
    // Provisioned with the log policy: every release must be proven to be in the log.
    std::fs::write(
        state.path().join(rampart_agent::LOG_POLICY),
        tlog.client.policy().to_text(),
    )?;
    std::fs::write(
        state.path().join(rampart_agent::RELEASE_KEY),
        format!("{}\n", tlog.release_key.verifier_key_string()),
    )?;
    let mut device = Device {
        state,
        hardware_id: "board-a".into(),
        installed_security_version: 0,
    };
    device.update(&base, &v1)?;

    step(
        7,
        "Rotating root: the timestamp key is replaced and the old one revoked (root v2, signed by v1 and v2 keys)",
    );
    let old_ts_id = rampart_keys::file::read_public(Path::new(&timestamp))?.key_id();
    repo.rotate_root(
        &[RootChange {
            role: RoleType::Timestamp,
            add_keys: vec![timestamp2],
            remove_key_ids: vec![old_ts_id],
            threshold: None,
        }],
        &open,
        now,
    )?;
    let v2 = release(&repo, "fw.img", "1.1.0", 2)?;
    device.update(&base, &v2)?;

    step(
        8,
        "Attack: the mirror swaps the firmware bytes (arbitrary installation)",
    );
    let info = repo.targets_role("board-a")?.targets[&v2].clone();
    let sha = info.hashes["sha256"].clone();
    let served = repo_dir.join(format!("targets/board-a/1.1.0/{sha}.fw.img"));
    let original = std::fs::read(&served)?;
    let mut evil = original.clone();
    evil[0] ^= 0xff;
    std::fs::write(&served, &evil)?;
    let mut up = device.updater(&base)?;
    up.refresh()?;
    let outcome = up.fetch_target(&v2, &info);
    ensure!(
        matches!(
            outcome,
            Err(ClientError::Tuf(
                rampart_core::TufError::HashMismatch { .. }
            ))
        ),
        "tampered image was not refused"
    );
    println!(
        "    refused: {}",
        outcome.err().map(|e| e.to_string()).unwrap_or_default()
    );
    std::fs::write(&served, &original)?;

    step(
        9,
        "Attack: the mirror replays an older timestamp (rollback / freeze)",
    );
    let ts = repo_dir.join("metadata/timestamp.json");
    let current = std::fs::read(&ts)?;
    repo.publish(&open, now)?;
    let newer = std::fs::read(&ts)?;
    device.updater(&base)?.refresh()?;
    std::fs::write(&ts, &current)?;
    let outcome = device.updater(&base)?.refresh();
    ensure!(
        matches!(
            outcome,
            Err(ClientError::Tuf(rampart_core::TufError::Rollback { .. }))
        ),
        "old timestamp was not refused"
    );
    println!(
        "    refused: {}",
        outcome.err().map(|e| e.to_string()).unwrap_or_default()
    );
    std::fs::write(&ts, &newer)?;

    step(
        10,
        "Attack: an image for other hardware, and a downgrade below the device's security version",
    );
    let err = ReleaseInfo::from_custom(info.custom.as_ref())?
        .check_installable("board-b", 0)
        .unwrap_err();
    println!("    refused: {err}");
    let old = ReleaseInfo::from_custom(repo.targets_role("board-a")?.targets[&v1].custom.as_ref())?;
    let err = old
        .check_installable("board-a", device.installed_security_version)
        .unwrap_err();
    println!("    refused: {err}");

    step(11, "Verifying the whole repository as a client would");
    let report = repo.verify(None, now, &crate::shared::output::BarProgress::default())?;
    println!(
        "    ok: root v{}, timestamp v{}, snapshot v{}, {} targets roles, {} targets verified",
        report.root_version,
        report.timestamp_version,
        report.snapshot_version,
        report.targets_roles,
        report.targets_checked
    );

    step(
        12,
        "Monitoring the log; then someone with the stolen release key logs a release the vendor never made",
    );
    let registry: std::collections::BTreeSet<(String, String)> =
        std::iter::once("targets".to_string())
            .chain(repo.config().delegations.keys().cloned())
            .map(|role| repo.targets_role(&role))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flat_map(|t| {
                t.targets
                    .into_iter()
                    .filter_map(|(n, f)| f.hashes.get("sha256").map(|h| (n, h.clone())))
            })
            .collect();
    let known = |st: &rampart_log::statement::ReleaseStatement| {
        registry.contains(&(st.target.clone(), hex::encode(st.sha256)))
    };
    let source = rampart_tlog::tiles::HttpSource::new(&tlog.log_url);
    let mut seen = rampart_tlog::monitor::MonitorState::default();
    let key = tlog.release_key.verifier();
    let alerts = rampart_tlog::monitor::monitor_once(
        &source,
        tlog.client.policy(),
        &key,
        &mut seen,
        &known,
    )?;
    ensure!(alerts.is_empty(), "unexpected alerts: {alerts:?}");
    println!(
        "    monitor: log consistent at {} entries, every release entry is in the repository",
        seen.size
    );
    let evil = rampart_log::statement::ReleaseStatement {
        target: "board-a/9.9.9/fw.img".into(),
        version: "9.9.9".into(),
        security_version: 99,
        hardware_ids: vec!["board-a".into()],
        sha256: [0x66; 32],
        sbom_sha256: None,
    };
    tlog.client
        .log_release(&evil, &tlog.release_key, LOG_WAIT)?;
    let alerts = rampart_tlog::monitor::monitor_once(
        &source,
        tlog.client.policy(),
        &key,
        &mut seen,
        &known,
    )?;
    ensure!(alerts.len() == 1, "the monitor missed the rogue release");
    println!("    ALERT: {}", alerts[0]);

    server.stop();
    server_chapter(&dir, &repo_dir, &v2, PASSPHRASE, 13)?;
    println!(
        "\nDemo complete. Everything is in {}; {}",
        dir.display(),
        keys_note(&dir)
    );
    Ok(())
}

/// Runs the chapter, numbering steps from `first`. `target` is a board-a release in `repo`.
fn server_chapter(
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
    let outcome = rampart_agent::server_update::update(
        &state,
        &client,
        "board-a",
        &slot,
        crate::shared::now_unix(),
    )?;
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
    let operator = crate::shared::api_client::ApiClient::new(
        &server.management_url,
        &token,
        ca.cert_der().as_ref(),
    );
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
    let outcome = rampart_agent::server_update::update(
        &state,
        &client,
        "board-a",
        &slot,
        crate::shared::now_unix(),
    )?;
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
    match rampart_agent::server_update::update(
        &state,
        &client,
        "board-a",
        &slot,
        crate::shared::now_unix(),
    ) {
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
