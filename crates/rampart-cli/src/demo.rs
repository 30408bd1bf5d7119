//! `rampart demo`: the main job. Builds everything in local files, then plays a device updating
//! over loopback HTTP, including the attacks the design defends against.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use rampart_core::Scheme;
use rampart_core::metadata::RoleType;
use rampart_core::release::ReleaseInfo;
use rampart_keys::Signer;
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_repo::{ExpiryDays, InitOptions, ReleaseRequest, Repository, RoleSigners, RootChange};
use rampart_tuf_client::{ClientError, HttpFetcher, Limits, Updater, UpdaterConfig};

pub(crate) const PASSPHRASE: &str = "demo-passphrase-not-for-production";
/// The longest the demo waits for the transparency log to include a release and the witnesses
/// to cosign it: a bound for a stuck log, not a schedule (a busy machine only makes it slower).
pub(crate) const LOG_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

/// Where the demo's key files are and how to open them: said wherever the demo describes its
/// directory, so its keys can be used afterwards (`rampart repo ...` reads the passphrase from
/// RAMPART_KEY_PASSPHRASE).
pub(crate) fn keys_note(dir: &Path) -> String {
    format!(
        "signing keys in {} (mode 0600), encrypted with the passphrase {PASSPHRASE:?}: export RAMPART_KEY_PASSPHRASE={PASSPHRASE} to use them",
        dir.join("keys").display()
    )
}

pub(crate) fn key(dir: &Path, name: &str, scheme: Scheme) -> anyhow::Result<String> {
    let (signer, bytes) = FileSigner::generate(scheme, PASSPHRASE, KdfParams::default())?;
    let path = dir.join(format!("{name}.key"));
    rampart_keys::file::write_key_file(&path, &bytes)?;
    println!(
        "    {name:<10} {:<20} {}",
        scheme.as_str(),
        &signer.key_id()[..16]
    );
    Ok(path.display().to_string())
}

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
            crate::now_unix(),
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

/// `dir` if it is new or empty, else a fresh temporary directory that is kept afterwards.
pub(crate) fn prepare_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            if std::fs::read_dir(&d)?.next().is_some() {
                bail!(
                    "{} is not empty; give an empty or new directory",
                    d.display()
                );
            }
            d
        }
        None => tempfile::Builder::new()
            .prefix("rampart-demo-")
            .tempdir()?
            .keep(),
    })
}

/// The security tour: key schemes, rotation, delegation, attacks, the transparency log.
pub fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = prepare_dir(dir)?;
    println!("Rampart demo in {}", dir.display());
    println!("  {}", keys_note(&dir));
    let open = |r: &str| -> Result<Box<dyn Signer>, rampart_keys::SignError> {
        Ok(Box::new(FileSigner::open(Path::new(r), PASSPHRASE)?))
    };
    let now = crate::now_unix();

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
            &crate::BarProgress::default(),
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
    let server = crate::serve::StaticServer::start(&repo_dir, "127.0.0.1:0")?;
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
    let report = repo.verify(None, now, &crate::BarProgress::default())?;
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
    crate::demo_server::run(&dir, &repo_dir, &v2, PASSPHRASE, 13)?;
    println!(
        "\nDemo complete. Everything is in {}; {}",
        dir.display(),
        keys_note(&dir)
    );
    Ok(())
}

/// A log and its witnesses running in this process, on loopback.
pub(crate) struct Transparency {
    _runtime: tokio::runtime::Runtime,
    pub log_url: String,
    pub client: rampart_tlog::client::LogClient,
    pub release_key: rampart_log::note::NoteSigner,
}

impl Transparency {
    /// Starts the log (tiles and checkpoint under `dir/log`) and `witnesses` witnesses (state
    /// under `dir/witnessN`), requiring `quorum` cosignatures; writes the witness policy (with
    /// every public key) to `dir/policy.txt` and the release key to `dir/release-key.pub`.
    pub(crate) fn start(
        dir: &Path,
        witnesses: usize,
        quorum: usize,
    ) -> anyhow::Result<Transparency> {
        use rampart_log::note::NoteSigner;
        use ring::rand::SecureRandom;
        use std::sync::Arc;
        let seed = || -> anyhow::Result<[u8; 32]> {
            let mut s = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut s)
                .map_err(|_| anyhow::anyhow!("no randomness"))?;
            Ok(s)
        };
        let runtime = tokio::runtime::Runtime::new()?;
        let log_key = NoteSigner::from_seed("demo.rampart.dev/firmware-log", seed()?)?;
        let (log_verifier, origin) = (log_key.verifier(), log_key.name().to_string());
        let mut config = rampart_tlog::service::LogConfig::new(dir.join("log"), log_key);
        config.publish_interval = std::time::Duration::from_millis(100);
        config.quorum = quorum;
        let count = witnesses;
        let mut witnesses = Vec::new();
        for i in 1..=count {
            let signer =
                NoteSigner::cosigner_from_seed(&format!("witness{i}.demo.rampart.dev"), seed()?)?;
            let witness = Arc::new(rampart_tlog::witness::Witness::new(
                rampart_tlog::witness::WitnessConfig {
                    signer,
                    state_dir: dir.join(format!("witness{i}")),
                    logs: vec![log_verifier.clone()],
                },
            )?);
            witnesses.push(witness.verifier());
            let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
            let url = format!("http://{}", listener.local_addr()?);
            config
                .witnesses
                .push(rampart_tlog::service::WitnessEndpoint {
                    url,
                    verifier: witness.verifier(),
                });
            runtime.spawn(rampart_tlog::witness::serve(witness, listener));
        }
        let (handle, _thread) = rampart_tlog::service::start(config)?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let log_url = format!("http://{}", listener.local_addr()?);
        runtime.spawn(rampart_listen::serve_small_service(
            listener,
            rampart_tlog::service::router(handle),
            std::future::pending(),
        ));
        let policy =
            rampart_log::policy::WitnessPolicy::new(log_verifier, origin, witnesses, quorum)?;
        let release_key = NoteSigner::from_seed("demo.rampart.dev/releases", seed()?)?;
        std::fs::write(dir.join("policy.txt"), policy.to_text())?;
        std::fs::write(
            dir.join("release-key.pub"),
            format!("{}\n", release_key.verifier_key_string()),
        )?;
        Ok(Transparency {
            _runtime: runtime,
            client: rampart_tlog::client::LogClient::new(&log_url, policy),
            log_url,
            release_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn demo_key_files_are_0600_and_their_passphrase_is_told() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let path = key(&keys, "root", Scheme::Ed25519).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path}: {mode:o}");
        FileSigner::open(Path::new(&path), PASSPHRASE).unwrap();
        let note = keys_note(dir.path());
        assert!(
            note.contains(PASSPHRASE) && note.contains(&keys.display().to_string()),
            "{note}"
        );
    }
}
