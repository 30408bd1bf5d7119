//! The checks of values and combinations, on resolved settings and without touching a file.

use std::net::SocketAddr;

use super::layers::{Resolved, redact_url};
use super::{CAP_LISTENERS, DEFAULT_DB_URL, Problem, Settings};

/// `LISTENER=MAX[/PER_SOURCE]` of `connections.caps`.
pub fn parse_connection_cap(
    text: &str,
) -> Result<(String, rampart_server::connections::ListenerCaps), String> {
    let usage = "expected LISTENER=MAX[/PER_SOURCE], e.g. device=8192/512";
    let (listener, caps) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: {usage}"))?;
    if !CAP_LISTENERS.contains(&listener) {
        return Err(format!(
            "unknown listener {listener:?}: one of device, ddi, management, metrics"
        ));
    }
    let number = |n: &str| {
        n.parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{n:?} is not a positive number; {usage}"))
    };
    let defaults = rampart_server::connections::ConnectionConfig::default();
    let default_per_source = match listener {
        "device" => defaults.device.max_per_source,
        "ddi" => defaults.ddi.max_per_source,
        "management" => defaults.management.max_per_source,
        _ => defaults.metrics.max_per_source,
    };
    let (max, per_source) = match caps.split_once('/') {
        Some((max, per_source)) => (number(max)?, number(per_source)?),
        None => {
            let max = number(caps)?;
            (max, default_per_source.min(max))
        }
    };
    Ok((
        listener.to_owned(),
        rampart_server::connections::ListenerCaps {
            max_connections: max,
            max_per_source: per_source,
        },
    ))
}

/// Whether `url` names a PostgreSQL database (as opposed to SQLite).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The evidence settings (`None` without `evidence.dir`), with the local store; the caller
/// puts an object store and the transparency log in.
pub fn evidence_config(s: &Settings) -> Option<rampart_server::evidence::EvidenceConfig> {
    let e = &s.evidence;
    let dir = e.dir.as_ref()?;
    let mut config = rampart_server::evidence::EvidenceConfig::in_directory(dir);
    let d = &config.quota;
    config.quota = rampart_db::EvidenceQuota {
        device_bytes: e.device_bytes.unwrap_or(d.device_bytes),
        device_bundles: e.device_bundles.unwrap_or(d.device_bundles),
        incident_bytes: e.incident_bytes.unwrap_or(d.incident_bytes),
        incident_bundles: e.incident_bundles.unwrap_or(d.incident_bundles),
    };
    config.max_bundle_bytes = e.max_bundle_bytes.unwrap_or(config.max_bundle_bytes);
    config.chunk_bytes = e.chunk_bytes.unwrap_or(config.chunk_bytes);
    Some(config)
}

/// The attestation settings (`None` when attestation is off), without the EK roots, which the
/// caller reads from their file.
pub fn attestation_config(s: &Settings) -> Option<rampart_server::attestation::AttestationConfig> {
    let a = &s.attestation;
    if a.enabled != Some(true) {
        return None;
    }
    let defaults = rampart_server::attestation::AttestationConfig::default();
    let agent_pcr = a.agent_pcr.unwrap_or(defaults.agent_pcr);
    Some(rampart_server::attestation::AttestationConfig {
        freshness: std::time::Duration::from_secs(
            a.freshness_secs.unwrap_or(defaults.freshness.as_secs()),
        ),
        required_pcrs: a.pcrs.clone().unwrap_or_else(|| vec![agent_pcr]),
        agent_pcr,
        require: a.require == Some(true),
        ..defaults
    })
}

/// Checks values and combinations of the resolved settings, without touching any file: every
/// problem found, each saying what to change.
pub fn validate(r: &Resolved) -> Vec<Problem> {
    let s = &r.effective;
    let mut problems = r.file_problems.clone();
    let mut problem = |key: &str, message: String| problems.push(r.problem(key, message));

    // Required: the TLS material every listener is served with.
    for (key, given) in [
        ("tls.cert", s.tls.cert.is_some()),
        ("tls.key", s.tls.key.is_some()),
        ("tls.client_ca", s.tls.client_ca.is_some()),
        (
            "tls.crls",
            s.tls.crls.as_ref().is_some_and(|c| !c.is_empty()),
        ),
    ] {
        if !given {
            problem(
                key,
                format!("required but not set: {}", Resolved::how_to_set(key)),
            );
        }
    }

    let db = s.database.url.as_deref().unwrap_or(DEFAULT_DB_URL);
    if !(db.starts_with("sqlite:") || is_postgres(db)) {
        problem(
            "database.url",
            format!(
                "{:?} is not a database URL: give sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
                redact_url(db)
            ),
        );
    }
    if is_postgres(db) && s.database.secrets_key.is_none() {
        problem(
            "database.secrets_key",
            "with a PostgreSQL database, give the webhook secrets key (`secrets_key` under [database] or --secrets-key FILE): webhook secrets are sealed in the database with the key in FILE (32 random bytes, created with mode 0600 if missing), which must live outside the database, e.g. /etc/rampart/secrets.key".into(),
        );
    }

    // Every number that counts time or things must be at least 1.
    for (key, value) in [
        (
            "device_api.poll_interval_secs",
            s.device_api.poll_interval_secs,
        ),
        (
            "device_api.last_seen_flush_ms",
            s.device_api.last_seen_flush_ms,
        ),
        (
            "connections.header_timeout_secs",
            s.connections.header_timeout_secs,
        ),
        (
            "repository.metadata_check_secs",
            s.repository.metadata_check_secs,
        ),
        (
            "director.expiry_days",
            s.director.expiry_days.map(u64::from),
        ),
        (
            "alerts.failing_after_attempts",
            s.alerts.failing_after_attempts.map(u64::from),
        ),
        ("alerts.failing_after_secs", s.alerts.failing_after_secs),
        ("audit.anchor_interval_secs", s.audit.anchor_interval_secs),
        ("risk.watch_interval_secs", s.risk.watch_interval_secs),
    ] {
        if value == Some(0) {
            problem(key, "must be at least 1".into());
        }
    }
    if let Some(fraction) = s.repository.renew_when_remaining
        && !(fraction > 0.0 && fraction < 1.0)
    {
        problem(
            "repository.renew_when_remaining",
            format!(
                "{fraction} is not a fraction between 0 and 1 (exclusive), e.g. 0.5: renew once half the validity is left"
            ),
        );
    }

    // Listeners: each on its own address.
    let mut listeners: Vec<(&str, SocketAddr)> = Vec::new();
    for (key, addr) in [
        ("device_api.listen", s.device_api.listen),
        ("management_api.listen", s.management_api.listen),
        ("ddi_api.listen", s.ddi_api.listen),
        ("metrics.listen", s.metrics.listen),
    ] {
        let Some(addr) = addr else { continue };
        if addr.port() != 0
            && let Some((other, _)) = listeners.iter().find(|(_, a)| *a == addr)
        {
            problem(
                key,
                format!("{addr} is also {other}: give each listener its own address or port"),
            );
        }
        listeners.push((key, addr));
    }
    for cap in s.connections.caps.iter().flatten() {
        if let Err(e) = parse_connection_cap(cap) {
            problem("connections.caps", e);
        }
    }

    // The repository and what depends on it.
    let repo = s.repository.dir.is_some();
    if let Some(url) = &s.repository.artifacts {
        if !repo {
            problem(
                "repository.artifacts",
                "needs the repository directory (`dir` under [repository] or --repo DIR): the artifacts' metadata comes from it".into(),
            );
        }
        if !url.starts_with("s3://") || url.len() <= "s3://".len() {
            problem(
                "repository.artifacts",
                format!(
                    "{url:?} is not an object store: give s3://BUCKET or s3://BUCKET/PREFIX (or leave it out to serve the repository's targets/ directory)"
                ),
            );
        }
    }
    let timestamp_keys = s
        .repository
        .timestamp_keys
        .as_ref()
        .is_some_and(|k| !k.is_empty());
    if timestamp_keys && !repo {
        problem(
            "repository.timestamp_keys",
            "renewing needs the repository directory (`dir` under [repository] or --repo DIR)"
                .into(),
        );
    }
    if s.repository
        .snapshot_keys
        .as_ref()
        .is_some_and(|k| !k.is_empty())
        && !timestamp_keys
    {
        problem(
            "repository.snapshot_keys",
            "a renewed snapshot needs a renewed timestamp: give the timestamp key too (`timestamp_keys` under [repository] or --timestamp-key)".into(),
        );
    }
    match (&s.director.root, &s.director.key) {
        (Some(_), None) => problem(
            "director.key",
            "the director root is set but not its online key: set `key` under [director] or give --director-key KEY".into(),
        ),
        (None, Some(_)) => problem(
            "director.root",
            "the director key is set but not its root: set `root` under [director] or give --director-root FILE (`rampart director init` writes DIR/root.json)".into(),
        ),
        _ => {}
    }
    if (s.director.root.is_some() || s.director.key.is_some()) && !repo {
        problem(
            "director.root",
            "the director needs the image repository it points devices to: set `dir` under [repository] or give --repo DIR".into(),
        );
    }

    for network in s.webhooks.allow.iter().flatten() {
        if let Err(e) = network.parse::<rampart_server::webhooks::IpNetwork>() {
            problem("webhooks.allow", e.to_string());
        }
    }

    if let Some(target) = &s.alerts.syslog
        && let Err(e) = target.parse::<rampart_server::alerts::SyslogTarget>()
    {
        problem("alerts.syslog", e);
    }
    if let Some(facility) = &s.alerts.syslog_facility
        && rampart_server::alerts::facility_code(facility).is_none()
    {
        problem(
            "alerts.syslog_facility",
            format!(
                "unknown syslog facility {facility:?}; use one of {}",
                rampart_server::alerts::FACILITIES.join(", ")
            ),
        );
    }

    match (&s.audit.log_url, &s.audit.log_policy) {
        (Some(_), None) => problem(
            "audit.log_policy",
            "the audit log URL needs the log's witness policy: set `log_policy` under [audit] or give --audit-log-policy FILE".into(),
        ),
        (None, Some(_)) => problem(
            "audit.log_url",
            "the witness policy is set but not the log: set `log_url` under [audit] or give --audit-log-url URL".into(),
        ),
        _ => {}
    }
    if s.audit.log_url.is_some()
        && s.audit.key.is_none()
        && crate::shared::audit_key::default_audit_key(db).is_none()
    {
        problem(
            "audit.key",
            "the audit log URL needs an audit key to sign the heads: set `key` under [audit] or give --audit-key FILE".into(),
        );
    }

    let chosen = &r.chosen.attestation;
    if chosen.enabled == Some(false)
        && (chosen.require == Some(true) || chosen.ek_roots.is_some() || chosen.pcrs.is_some())
    {
        problem(
            "attestation.enabled",
            "attestation is turned off but other attestation settings are given: remove them or set `enabled = true`".into(),
        );
    }
    if let Some(config) = attestation_config(s)
        && let Err(e) = config.validate()
    {
        problem("attestation", e);
    }

    if s.evidence.store.is_some() && s.evidence.dir.is_none() {
        problem(
            "evidence.store",
            "the evidence store needs the evidence directory for uploads in progress: set `dir` under [evidence] or give --evidence-dir DIR".into(),
        );
    }
    if let Some(store) = &s.evidence.store
        && (!store.starts_with("s3://") || store.len() <= "s3://".len())
    {
        problem(
            "evidence.store",
            format!("{store:?} is not an object store: give s3://BUCKET or s3://BUCKET/PREFIX"),
        );
    }
    if let Some(config) = evidence_config(s)
        && let Err(e) = config.validate()
    {
        problem("evidence", e);
    }

    let signers = s.risk.vex_signers.as_ref().map_or(0, Vec::len);
    if signers > rampart_vuln::signed_vex::MAX_TRUSTED_VEX_KEYS {
        problem(
            "risk.vex_signers",
            format!(
                "{signers} vendor keys given, over the limit of {}",
                rampart_vuln::signed_vex::MAX_TRUSTED_VEX_KEYS
            ),
        );
    }
    problems
}
