//! From resolved settings to a [`ServerConfig`]: reads (within limits) and checks every file
//! the settings name, collecting every problem rather than stopping at the first. `check-config`
//! runs it in [`Mode::Check`], which creates nothing and decrypts no key; `rampart server` in
//! [`Mode::Start`], which opens the signing keys and creates the audit key on first use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rampart_server::ServerConfig;

use super::settings::{self, Problem, Resolved, Settings, SettingsError};

/// Largest PEM file (certificate, key, CRL, CA bundle, EK roots) or policy read.
const MAX_PEM_BYTES: u64 = 4 << 20;
/// Largest incident configuration read.
const MAX_INCIDENT_CONFIG_BYTES: u64 = settings::MAX_CONFIG_BYTES;

/// What building may do besides reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read and check only: create no file, decrypt no key (no passphrase needed).
    Check,
    /// Open the signing keys and create the audit key if it is missing.
    Start,
}

/// A checked configuration.
pub struct Built {
    /// The server's configuration. In [`Mode::Check`] it lacks the signers (director,
    /// renewal), which only [`Mode::Start`] opens.
    pub config: ServerConfig,
    /// What was left for the server to find out when it starts.
    pub not_checked: Vec<String>,
}

/// Reads the configuration file (at most [`settings::MAX_CONFIG_BYTES`]), makes its relative
/// paths relative to its directory, and layers it under `flags`.
pub fn load(file: Option<&Path>, flags: &Settings) -> Result<Resolved, SettingsError> {
    let layer = match file {
        None => None,
        Some(path) => {
            let name = path.display().to_string();
            let text = read_bounded(path, settings::MAX_CONFIG_BYTES).map_err(|reason| {
                SettingsError::Problems(vec![Problem {
                    key: String::new(),
                    origin: Some(name.clone()),
                    message: format!(
                        "cannot read the configuration file: {reason}; give an existing file with --config (an example is examples/server/single-node-sqlite.toml)"
                    ),
                }])
            })?;
            let mut layer = settings::parse_file(&name, &text)?;
            // Absolute, so the effective settings show where each file really is.
            let dir = std::path::absolute(path)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from("."));
            layer.settings.resolve_paths_against(&dir);
            Some(layer)
        }
    };
    settings::resolve(layer, flags)
}

/// Reads a file of at most `limit` bytes as text; the reason it cannot be read otherwise.
fn read_bounded(path: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
        _ => format!("{}: {e}", path.display()),
    })?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{} is larger than {limit} bytes, the limit for this file",
            path.display()
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// Collects problems against the resolved settings' origins.
struct Problems<'a> {
    resolved: &'a Resolved,
    found: Vec<Problem>,
}

impl Problems<'_> {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.found.push(self.resolved.problem(key, message));
    }

    /// The text of the file `key` names, or `None` (a problem recorded).
    fn read(&mut self, key: &str, path: &Path, limit: u64) -> Option<String> {
        match read_bounded(path, limit) {
            Ok(text) => Some(text),
            Err(reason) => {
                self.add(key, reason);
                None
            }
        }
    }
}

/// Checks every file the settings name and builds the server's configuration; every problem
/// found (the settings' own and the files') is returned at once. A configuration with
/// problems creates nothing and opens no key, even in [`Mode::Start`].
pub fn build(resolved: &Resolved, mode: Mode) -> Result<Built, SettingsError> {
    if mode == Mode::Start {
        build_in(resolved, Mode::Check)?;
    }
    build_in(resolved, mode)
}

fn build_in(resolved: &Resolved, mode: Mode) -> Result<Built, SettingsError> {
    let s = &resolved.effective;
    let mut p = Problems {
        resolved,
        found: settings::validate(resolved),
    };
    let mut not_checked =
        vec!["the database connection (the server opens and migrates it at start)".to_owned()];

    // TLS material: every listener is served with it.
    let cert = s
        .tls
        .cert
        .as_ref()
        .and_then(|f| p.read("tls.cert", f, MAX_PEM_BYTES));
    let key = s
        .tls
        .key
        .as_ref()
        .and_then(|f| p.read("tls.key", f, MAX_PEM_BYTES));
    let client_ca = s
        .tls
        .client_ca
        .as_ref()
        .and_then(|f| p.read("tls.client_ca", f, MAX_PEM_BYTES));
    let crls: Option<Vec<String>> = s.tls.crls.as_ref().and_then(|files| {
        let read: Vec<Option<String>> = files
            .iter()
            .map(|f| p.read("tls.crls", f, MAX_PEM_BYTES))
            .collect();
        read.into_iter().collect()
    });
    let mut tls = None;
    let mut management_tls = None;
    let mut ddi_tls = None;
    if let (Some(cert), Some(key), Some(client_ca), Some(crls)) = (&cert, &key, &client_ca, &crls) {
        match rampart_pki::server_config(cert, key, client_ca, crls) {
            Ok(config) => tls = Some(config),
            Err(e) => p.add(
                "tls",
                format!("the certificate, key, client CA and CRLs do not make a mutual-TLS configuration: {e}"),
            ),
        }
        if s.management_api.listen.is_some() {
            management_tls = rampart_pki::server_config_without_client_auth(cert, key).ok();
        }
        if s.ddi_api.listen.is_some() {
            ddi_tls =
                rampart_pki::server_config_optional_client_auth(cert, key, client_ca, crls).ok();
        }
    }

    // The repository and its artifacts.
    if let Some(repo) = &s.repository.dir
        && !repo.join("metadata/1.root.json").is_file()
    {
        p.add(
            "repository.dir",
            format!(
                "{} is not an image repository (no metadata/1.root.json); create one with `rampart repo init`",
                repo.display()
            ),
        );
    }
    let artifact_store = match &s.repository.artifacts {
        Some(url) if url.starts_with("s3://") => {
            not_checked.push(format!(
                "that the object store {url} can be read (the server lists the bucket at start)"
            ));
            match rampart_server::ArtifactStore::from_url(url) {
                Ok(store) => Some(store),
                Err(e) => {
                    p.add("repository.artifacts", e.to_string());
                    None
                }
            }
        }
        _ => None,
    };

    // Signing keys: opened at start; only their files checked here.
    let signer = |p: &mut Problems, key: &str, reference: &str| {
        open_key(reference, mode).map_err(|e| p.add(key, e)).ok()
    };
    let mut director = None;
    if let Some(root) = &s.director.root {
        if !root.is_file() {
            p.add(
                "director.root",
                format!(
                    "{} does not exist: `rampart director init --dir DIR` writes DIR/root.json",
                    root.display()
                ),
            );
        }
        if let Some(reference) = &s.director.key
            && let Some(Some(signer)) = signer(&mut p, "director.key", reference)
        {
            let mut config = rampart_server::DirectorConfig::new(root.clone(), signer);
            config.targets_expiry =
                Duration::from_secs(u64::from(s.director.expiry_days.unwrap_or(7).max(1)) * 86_400);
            director = Some(config);
        }
    }
    let open_all = |p: &mut Problems, key: &str, refs: &Option<Vec<String>>| {
        refs.iter()
            .flatten()
            .filter_map(|r| signer(p, key, r).flatten())
            .collect::<Vec<_>>()
    };
    let timestamp_keys = open_all(
        &mut p,
        "repository.timestamp_keys",
        &s.repository.timestamp_keys,
    );
    let snapshot_keys = open_all(
        &mut p,
        "repository.snapshot_keys",
        &s.repository.snapshot_keys,
    );
    if mode == Mode::Check && (s.director.key.is_some() || s.repository.timestamp_keys.is_some()) {
        not_checked.push(
            "the signing keys' passphrases or PINs (the server opens the keys at start)".into(),
        );
    }

    // The audit key, the webhook secrets key and the audit log's policy.
    let db = s
        .database
        .url
        .clone()
        .unwrap_or_else(|| settings::DEFAULT_DB_URL.to_owned());
    let audit_anchor = audit_anchor(&mut p, s, &db, mode);
    let secrets_key = s.database.secrets_key.clone();
    let secrets_file = secrets_key
        .clone()
        .or_else(|| rampart_server::webhooks::secrets::default_key_path(&db));
    if let Some(path) = &secrets_file {
        check_secrets_key(&mut p, path);
    }

    // Attestation, evidence, incidents, VEX signers.
    let mut attestation = settings::attestation_config(s);
    if let (Some(config), Some(path)) = (attestation.as_mut(), &s.attestation.ek_roots)
        && let Some(pem) = p.read("attestation.ek_roots", path, MAX_PEM_BYTES)
    {
        match rampart_attest::ekcert::certificates_from_pem(pem.as_bytes()) {
            Ok(roots) => config.ek_roots = roots,
            Err(e) => p.add("attestation.ek_roots", format!("{}: {e}", path.display())),
        }
    }
    let mut evidence = settings::evidence_config(s);
    if let Some(config) = evidence.as_mut() {
        if let Some(url) = &s.evidence.store {
            not_checked.push(format!("that the evidence store {url} can be used"));
            match rampart_server::evidence_store::EvidenceStore::from_url(url) {
                Ok(store) => config.store = store,
                Err(e) => p.add("evidence.store", e.to_string()),
            }
        }
        config.log = audit_anchor.as_ref().and_then(|a| a.log.clone());
        if let Some(dir) = &s.evidence.dir {
            check_parent_exists(&mut p, "evidence.dir", dir);
        }
    }
    let mut incidents = rampart_server::incidents::IncidentConfig::default();
    if let Some(path) = &s.incidents.config
        && let Some(text) = p.read("incidents.config", path, MAX_INCIDENT_CONFIG_BYTES)
    {
        match rampart_server::incidents::IncidentConfig::from_toml(&text) {
            Ok(config) => incidents = config,
            Err(e) => p.add("incidents.config", format!("{}: {e}", path.display())),
        }
    }
    let vex_signers = match crate::commands::risk_vex::read_signers(
        s.risk.vex_signers.as_deref().unwrap_or_default(),
    ) {
        Ok(keys) => keys,
        Err(e) => {
            p.add("risk.vex_signers", format!("{e:#}"));
            Vec::new()
        }
    };

    let Some(tls) = tls.filter(|_| p.found.is_empty()) else {
        return Err(SettingsError::Problems(p.found));
    };
    let mut config = ServerConfig::new(
        db,
        tls,
        s.device_api
            .listen
            .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 8443))),
    );
    apply_numbers(&mut config, s);
    config.management_listen = s.management_api.listen;
    config.management_tls = management_tls;
    config.ddi_listen = s.ddi_api.listen;
    config.ddi_tls = ddi_tls;
    config.metrics_listen = s.metrics.listen;
    config.image_repo = s.repository.dir.clone();
    config.artifact_store = artifact_store;
    config.director = director;
    config.metadata.timestamp_keys = timestamp_keys;
    config.metadata.snapshot_keys = snapshot_keys;
    config.audit_anchor = audit_anchor;
    config.webhooks.secrets_key = secrets_key;
    config.attestation = attestation;
    config.evidence = evidence;
    config.incidents = incidents;
    config.vex_signers = vex_signers;
    // What the server itself refuses before it opens anything (its own rules, the detectors).
    if let Err(e) = config.check() {
        return Err(SettingsError::Problems(vec![Problem {
            key: String::new(),
            origin: None,
            message: e.to_string(),
        }]));
    }
    Ok(Built {
        config,
        not_checked,
    })
}

/// The numbers, lists and names the settings hold, already validated.
fn apply_numbers(config: &mut ServerConfig, s: &Settings) {
    if let Some(secs) = s.device_api.poll_interval_secs {
        config.poll_interval_secs = secs;
    }
    if let Some(ms) = s.device_api.last_seen_flush_ms {
        config.last_seen_flush_interval = Duration::from_millis(ms);
    }
    if let Some(secs) = s.risk.watch_interval_secs {
        config.risk_watch.interval = Duration::from_secs(secs);
    }
    config.webhooks.allow_networks = s
        .webhooks
        .allow
        .iter()
        .flatten()
        .filter_map(|n| n.parse().ok())
        .collect();
    let a = &s.alerts;
    config.alerts.syslog = a.syslog.as_ref().and_then(|t| t.parse().ok());
    if let Some(code) = a
        .syslog_facility
        .as_deref()
        .and_then(rampart_server::alerts::facility_code)
    {
        config.alerts.facility = code;
    }
    if let Some(secs) = a.dedupe_window_secs {
        config.alerts.dedupe_window = Duration::from_secs(secs);
    }
    if let Some(n) = a.failing_after_attempts {
        config.alerts.health.max_failures = n;
    }
    if let Some(secs) = a.failing_after_secs {
        config.alerts.health.max_age = Duration::from_secs(secs);
    }
    if let Some(secs) = s.connections.header_timeout_secs {
        config.connections.header_timeout = Duration::from_secs(secs);
    }
    for (listener, caps) in s
        .connections
        .caps
        .iter()
        .flatten()
        .filter_map(|c| settings::parse_connection_cap(c).ok())
    {
        // Caps an operator chose are never lowered behind their back.
        config.connections.scale_to_file_limit = false;
        match listener.as_str() {
            "device" => config.connections.device = caps,
            "ddi" => config.connections.ddi = caps,
            "management" => config.connections.management = caps,
            _ => config.connections.metrics = caps,
        }
    }
    let r = &s.repository;
    if let Some(fraction) = r.renew_when_remaining {
        config.metadata.renew_when_remaining = fraction;
    }
    if let Some(secs) = r.metadata_check_secs {
        config.metadata.check_interval = Duration::from_secs(secs);
    }
    if let Some(days) = r.expiry_warning_days {
        config.metadata.offline_warning = Duration::from_secs(days.saturating_mul(86_400));
    }
}

/// A signing key: opened in [`Mode::Start`]; in [`Mode::Check`] only its file read (its public
/// part needs no passphrase) or its PKCS#11 reference parsed.
fn open_key(reference: &str, mode: Mode) -> Result<Option<Arc<dyn rampart_keys::Signer>>, String> {
    match mode {
        Mode::Start => rampart_keys::open_signer(reference)
            .map(|s| Some(Arc::from(s)))
            .map_err(|e| format!("opening the key {reference}: {e}")),
        Mode::Check => {
            if let Some(rest) = reference.strip_prefix("pkcs11:") {
                rampart_keys::pkcs11::TokenKeyRef::parse(rest)
                    .map_err(|e| format!("{reference}: {e}"))?;
            } else {
                let path = Path::new(reference.strip_prefix("file:").unwrap_or(reference));
                rampart_keys::file::read_public(path).map_err(|e| e.to_string())?;
            }
            Ok(None)
        }
    }
}

/// The audit anchoring: the key (given, or next to a SQLite database), loaded or, at start,
/// created; the witness policy of the transparency log heads go to.
fn audit_anchor(
    p: &mut Problems,
    s: &Settings,
    db: &str,
    mode: Mode,
) -> Option<rampart_server::audit_anchor::AuditAnchorConfig> {
    let policy = match (&s.audit.log_url, &s.audit.log_policy) {
        (Some(url), Some(path)) => {
            let text = p.read("audit.log_policy", path, MAX_PEM_BYTES)?;
            match rampart_log::policy::WitnessPolicy::parse(&text) {
                Ok(policy) => Some(rampart_server::audit_anchor::AuditLogTarget {
                    url: url.clone(),
                    policy,
                }),
                Err(e) => {
                    p.add(
                        "audit.log_policy",
                        format!("{} is not a witness policy: {e}", path.display()),
                    );
                    return None;
                }
            }
        }
        _ => None,
    };
    let path = s
        .audit
        .key
        .clone()
        .or_else(|| crate::shared::audit_key::default_audit_key(db))?;
    let key = if mode == Mode::Check && !path.exists() {
        // Created at start: it only has to have somewhere to go.
        check_parent_exists(p, "audit.key", &path);
        crate::shared::audit_key::ephemeral_audit_key()
    } else {
        crate::shared::audit_key::load_or_create_audit_key(&path)
    };
    match key {
        Ok(key) => Some(rampart_server::audit_anchor::AuditAnchorConfig {
            key: Arc::new(key),
            interval: Duration::from_secs(s.audit.anchor_interval_secs.unwrap_or(300).max(1)),
            log: policy,
        }),
        Err(e) => {
            p.add("audit.key", format!("{e:#}"));
            None
        }
    }
}

/// An existing webhook secrets key must be exactly its length; a missing one is created at
/// start, so its directory must exist.
fn check_secrets_key(p: &mut Problems, path: &Path) {
    use rampart_server::webhooks::secrets::SECRETS_KEY_LEN;
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() != SECRETS_KEY_LEN as u64 => p.add(
            "database.secrets_key",
            format!(
                "the webhook secrets key {} is {} bytes; it must be exactly {SECRETS_KEY_LEN} random bytes (give a path that does not exist to have one created)",
                path.display(),
                meta.len()
            ),
        ),
        Ok(_) => {}
        Err(_) => check_parent_exists(p, "database.secrets_key", path),
    }
}

/// A file or directory the server creates needs its parent directory.
fn check_parent_exists(p: &mut Problems, key: &str, path: &Path) {
    let parent = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        p.add(
            key,
            format!(
                "{} is created at start, but its directory {} does not exist: create it (owned by the server's user)",
                path.display(),
                parent.display()
            ),
        );
    }
}
