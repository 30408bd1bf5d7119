//! What both parts of the demo (and `rampart-bench campaign`) set up the same way: the demo's
//! directory, its encrypted keys, and a transparency log with witnesses in this process.

use std::path::{Path, PathBuf};

use anyhow::bail;
use rampart_core::Scheme;
use rampart_keys::Signer;
use rampart_keys::file::{FileSigner, KdfParams};

pub const PASSPHRASE: &str = "demo-passphrase-not-for-production";
/// The longest the demo waits for the transparency log to include a release and the witnesses
/// to cosign it: a bound for a stuck log, not a schedule (a busy machine only makes it slower).
pub const LOG_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

pub fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

/// Where the demo's key files are and how to open them: said wherever the demo describes its
/// directory, so its keys can be used afterwards (`rampart repo ...` reads the passphrase from
/// RAMPART_KEY_PASSPHRASE).
pub fn keys_note(dir: &Path) -> String {
    format!(
        "signing keys in {} (mode 0600), encrypted with the passphrase {PASSPHRASE:?}: export RAMPART_KEY_PASSPHRASE={PASSPHRASE} to use them",
        dir.join("keys").display()
    )
}

pub fn key(dir: &Path, name: &str, scheme: Scheme) -> anyhow::Result<String> {
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

/// `dir` if it is new or empty, else a fresh temporary directory that is kept afterwards.
pub fn prepare_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
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

/// A log and its witnesses running in this process, on loopback.
pub struct Transparency {
    _runtime: tokio::runtime::Runtime,
    pub log_url: String,
    pub client: rampart_tlog::client::LogClient,
    pub release_key: rampart_log::note::NoteSigner,
}

impl Transparency {
    /// Starts the log (tiles and checkpoint under `dir/log`) and `witnesses` witnesses (state
    /// under `dir/witnessN`), requiring `quorum` cosignatures; writes the witness policy (with
    /// every public key) to `dir/policy.txt` and the release key to `dir/release-key.pub`.
    pub fn start(dir: &Path, witnesses: usize, quorum: usize) -> anyhow::Result<Transparency> {
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
