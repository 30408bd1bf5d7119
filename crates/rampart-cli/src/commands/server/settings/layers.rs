//! The layers: flag or environment over the file over the defaults, where each value came
//! from, and the effective settings shown with secrets hidden.

use std::collections::{BTreeMap, BTreeSet};

use clap::Args as _;

use super::file::FileLayer;
use super::{Problem, Settings, SettingsError};

/// The settings in force and where each came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Flags and environment over the file over the defaults.
    pub effective: Settings,
    /// Flags and environment over the file, without the defaults: what someone chose.
    pub chosen: Settings,
    file: Option<(String, BTreeMap<String, usize>)>,
    flags: BTreeSet<String>,
    /// The file's unknown keys and values of the wrong type.
    pub(super) file_problems: Vec<Problem>,
}

/// Layers the settings: a flag or environment variable beats the file, which beats the
/// default. Any attestation setting turns attestation on unless `attestation.enabled` is
/// chosen.
pub fn resolve(file: Option<FileLayer>, flags: &Settings) -> Result<Resolved, SettingsError> {
    let flags_table = flags.to_table()?;
    let mut flag_keys = BTreeSet::new();
    dotted_keys(&flags_table, "", &mut flag_keys);
    let (file_table, file_lines, file_problems) = match file {
        Some(layer) => (
            layer.settings.to_table()?,
            Some((layer.name, layer.lines)),
            layer.problems,
        ),
        None => (toml::Table::new(), None, Vec::new()),
    };
    let mut chosen = Settings::from_table(overlay(file_table, flags_table))?;
    let a = &chosen.attestation;
    if a.enabled.is_none()
        && (a.require.is_some()
            || a.freshness_secs.is_some()
            || a.pcrs.is_some()
            || a.agent_pcr.is_some()
            || a.ek_roots.is_some())
    {
        chosen.attestation.enabled = Some(true);
    }
    let effective = Settings::from_table(overlay(
        Settings::defaults().to_table()?,
        chosen.to_table()?,
    ))?;
    Ok(Resolved {
        effective,
        chosen,
        file: file_lines,
        flags: flag_keys,
        file_problems,
    })
}

/// `higher`'s values over `lower`'s, table by table.
fn overlay(mut lower: toml::Table, higher: toml::Table) -> toml::Table {
    for (key, value) in higher {
        match (lower.get_mut(&key), value) {
            (Some(toml::Value::Table(low)), toml::Value::Table(high)) => {
                let merged = overlay(std::mem::take(low), high);
                *low = merged;
            }
            (_, value) => {
                lower.insert(key, value);
            }
        }
    }
    lower
}

fn dotted_keys(table: &toml::Table, prefix: &str, keys: &mut BTreeSet<String>) {
    for (key, value) in table {
        let dotted = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) => dotted_keys(inner, &format!("{dotted}."), keys),
            _ => {
                keys.insert(dotted);
            }
        }
    }
}

/// The environment variable of a flag: `RAMPART_SERVER_` and the flag's name (`--poll-interval`
/// is `RAMPART_SERVER_POLL_INTERVAL`); `--db` keeps its older `RAMPART_DB`.
pub fn env_var(long: &str) -> String {
    if long == "db" {
        return "RAMPART_DB".to_owned();
    }
    format!(
        "RAMPART_SERVER_{}",
        long.to_ascii_uppercase().replace('-', "_")
    )
}

/// The flag of a dotted key (`tls.cert` is `--cert`).
pub fn flag_of(key: &str) -> Option<String> {
    let command = Settings::augment_args(clap::Command::new("server"));
    command
        .get_arguments()
        .find(|a| a.get_id().as_str() == key)
        .and_then(|a| a.get_long())
        .map(|long| format!("--{long}"))
}

impl Resolved {
    /// Where `key`'s value came from: a flag (or its variable), the file's line, or the default.
    pub fn origin(&self, key: &str) -> Option<String> {
        if self.flags.contains(key) {
            return flag_of(key).map(|flag| {
                let env = env_var(flag.trim_start_matches('-'));
                format!("{flag} or {env}")
            });
        }
        let (name, lines) = self.file.as_ref()?;
        lines.get(key).map(|line| format!("{name} line {line}"))
    }

    /// A problem with `key`, placed where its value came from.
    pub fn problem(&self, key: &str, message: impl Into<String>) -> Problem {
        Problem {
            key: key.to_owned(),
            origin: self.origin(key),
            message: message.into(),
        }
    }

    /// How to set `key`, for messages about a missing setting: `cert = ... under [tls] or --cert`.
    pub(super) fn how_to_set(key: &str) -> String {
        let (section, name) = key.split_once('.').unwrap_or(("", key));
        match flag_of(key) {
            Some(flag) => format!("set `{name}` under [{section}] or give {flag}"),
            None => format!("set `{name}` under [{section}]"),
        }
    }

    /// The effective settings as a configuration file, the database password hidden.
    pub fn render_redacted(&self) -> Result<String, SettingsError> {
        let mut shown = self.effective.clone();
        if let Some(url) = shown.database.url.as_mut() {
            *url = redact_url(url);
        }
        if let Some(url) = shown.audit.log_url.as_mut() {
            *url = redact_url(url);
        }
        toml::to_string(&shown).map_err(|e| SettingsError::Internal(e.to_string()))
    }
}

/// Hides the password of a URL's user information (`postgres://user:***@host/db`) and a
/// `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let mut shown = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rsplit_once('@') {
                Some((userinfo, _)) if userinfo.contains(':') => {
                    let user = userinfo.split(':').next().unwrap_or_default();
                    let host_and_rest = &rest[userinfo.len() + 1..];
                    format!("{scheme}://{user}:***@{host_and_rest}")
                }
                _ => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    if let Some((base, query)) = shown.clone().split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                    format!("{name}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{base}?{}", query.join("&"));
    }
    shown
}
