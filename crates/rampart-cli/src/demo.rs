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

const PASSPHRASE: &str = "demo-passphrase-not-for-production";

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

fn key(dir: &Path, name: &str, scheme: Scheme) -> anyhow::Result<String> {
    let (signer, bytes) = FileSigner::generate(scheme, PASSPHRASE, KdfParams::default())?;
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, bytes)?;
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

pub fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = match dir {
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
    };
    println!("Rampart demo in {}", dir.display());
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
        let added = repo.add_releases(
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
        )?;
        repo.publish(&open, now)?;
        println!(
            "    released {} (sha256 {}...)",
            added[0].target_name,
            &added[0].sha256[..16]
        );
        Ok(target)
    };
    let v1 = release(&repo, "fw.img", "1.0.0", 1)?;

    step(
        4,
        "Serving the repository over loopback HTTP (any static server would do)",
    );
    let server = crate::serve::StaticServer::start(&repo_dir, "127.0.0.1:0")?;
    let base = format!("http://{}", server.addr());
    println!("    {base}/metadata, {base}/targets");

    step(5, "A board-a device, trusting only root v1, updates");
    let state = tempfile::tempdir()?;
    std::fs::create_dir_all(state.path().join("metadata"))?;
    std::fs::copy(
        repo_dir.join("metadata/1.root.json"),
        state.path().join("metadata/root.json"),
    )?;
    let mut device = Device {
        state,
        hardware_id: "board-a".into(),
        installed_security_version: 0,
    };
    device.update(&base, &v1)?;

    step(
        6,
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
        7,
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
        8,
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
        9,
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

    step(10, "Verifying the whole repository as a client would");
    let report = repo.verify(None, now, &crate::BarProgress::default())?;
    println!(
        "    ok: root v{}, timestamp v{}, snapshot v{}, {} targets roles, {} targets verified",
        report.root_version,
        report.timestamp_version,
        report.snapshot_version,
        report.targets_roles,
        report.targets_checked
    );
    server.stop();
    println!("\nDemo complete. Everything is in {}", dir.display());
    Ok(())
}
