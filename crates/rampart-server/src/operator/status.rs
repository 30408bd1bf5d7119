//! `GET /api/v1/status`: the server's own health for operators (`rampart status`): its version
//! and uptime, the database backend, every engine's last heartbeat against its bound (the
//! watchdog's own rule, `DetectorConfig::engine_health`), and when each role of the hosted
//! image repository (and the director's root) expires, judged by the metadata watch's own
//! warning policy (`engines::renewal`): online roles once due for renewal, offline roles within
//! `warn_days` (by default the server's `--expiry-warning-days`).
//!
//! Read-only and for any reading role: it names engines and expiry times, nothing secret.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_incident::detect::{Beat, DetectorConfig};
use rampart_repo::expiry::{PublishedExpiries, RoleExpiry};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engines::heartbeat::Heartbeats;
use crate::engines::renewal::WarningPolicy;
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, db_error, json_response};

use super::{ManagementApi, Permission};

/// The largest warning distance a request may ask for (ten years).
const MAX_WARN_DAYS: u32 = 3650;
const DAY: i64 = 86_400;

/// What the status reads besides the database: the engines' registry and the rule they are
/// judged by, when the server started, and the metadata watch's warning policy with the
/// director's root expiry (read once at start, as the server keeps that root for its whole
/// run); `None` without a repository or director.
#[derive(Clone)]
pub(crate) struct StatusSources {
    pub(crate) heartbeats: Heartbeats,
    pub(crate) detectors: DetectorConfig,
    pub(crate) started_at: i64,
    pub(crate) expiry: Option<(WarningPolicy, Option<RoleExpiry>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusQuery {
    /// Warn about offline metadata expiring within this many days.
    warn_days: Option<u32>,
}

pub(super) async fn status(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(q) = query.map_err(|_| {
        ApiError::invalid(format!(
            "the only query parameter is warn_days, a whole number of days from 0 to {MAX_WARN_DAYS}"
        ))
    })?;
    if let Some(days) = q.warn_days
        && days > MAX_WARN_DAYS
    {
        return Err(ApiError::invalid(format!(
            "warn_days must be at most {MAX_WARN_DAYS}, not {days}"
        )));
    }
    let sources = &api.status;
    let stored = api
        .db
        .engine_heartbeats()
        .await
        .map_err(|e| db_error("reading engine heartbeats", e))?;
    // As the watchdog sees them.
    let beats = sources.heartbeats.stored_beats(&stored, sources.started_at);
    let (roles, metadata_error) = match api.image_repo.clone() {
        Some(repo) => {
            let read =
                tokio::task::spawn_blocking(move || PublishedExpiries::default().read(repo.dir()))
                    .await
                    .map_err(|_| ApiError::internal())?;
            match read {
                Ok(roles) => (roles, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            }
        }
        None => (Vec::new(), None),
    };
    let mut roles = roles;
    let policy = sources.expiry.as_ref().map(|(policy, director_root)| {
        roles.extend(director_root.clone());
        match q.warn_days {
            Some(days) => policy.with_offline_warning_secs(i64::from(days) * DAY),
            None => *policy,
        }
    });
    let body = status_body(&StatusInput {
        now: unix_now(),
        started_at: sources.started_at,
        backend: match api.db.backend() {
            rampart_db::Backend::Sqlite => "sqlite",
            rampart_db::Backend::Postgres => "postgresql",
        },
        detectors: &sources.detectors,
        beats: &beats,
        repository: api
            .image_repo
            .as_ref()
            .map(|r| r.dir().display().to_string()),
        roles: &roles,
        policy,
        metadata_error: metadata_error.as_deref(),
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// Everything the status document is made of.
pub(crate) struct StatusInput<'a> {
    pub(crate) now: i64,
    pub(crate) started_at: i64,
    pub(crate) backend: &'a str,
    pub(crate) detectors: &'a DetectorConfig,
    pub(crate) beats: &'a [Beat],
    /// The hosted repository's directory, if any (named in the advice).
    pub(crate) repository: Option<String>,
    pub(crate) roles: &'a [RoleExpiry],
    /// `None`: no metadata is watched (no repository, no director).
    pub(crate) policy: Option<WarningPolicy>,
    pub(crate) metadata_error: Option<&'a str>,
}

/// The status document (no I/O): each engine and role judged, and one warning per problem.
pub(crate) fn status_body(input: &StatusInput) -> Value {
    let mut warnings = Vec::new();
    let engines: Vec<Value> = input
        .beats
        .iter()
        .map(|beat| {
            let health = input
                .detectors
                .engine_health(beat, input.started_at, input.now);
            let state = if health.stalled {
                warnings.push(format!(
                    "engine {} has not completed a round for {} s (its bound is {} s): see the server's log",
                    beat.engine, health.age_secs, health.bound_secs
                ));
                "stalled"
            } else if beat.beat_at.is_none() {
                "starting"
            } else {
                "ok"
            };
            json!({"engine": beat.engine, "state": state, "last_beat": beat.beat_at,
                   "age_secs": health.age_secs, "bound_secs": health.bound_secs})
        })
        .collect();
    let dir = input.repository.as_deref().unwrap_or("DIR");
    let roles: Vec<Value> = input
        .roles
        .iter()
        .map(|r| {
            let left = r.expires_unix.saturating_sub(input.now);
            let advice = input
                .policy
                .and_then(|policy| policy.advice(r, input.now, dir));
            let state = match advice {
                _ if left <= 0 => "expired",
                Some(_) => "expiring",
                None => "valid",
            };
            if let Some(fix) = advice {
                warnings.push(if left <= 0 {
                    format!(
                        "{} metadata version {} has expired: devices refuse it; {fix}",
                        r.role, r.version
                    )
                } else {
                    format!(
                        "{} metadata version {} expires in {}; {fix}",
                        r.role,
                        r.version,
                        duration_words(left)
                    )
                });
            }
            json!({"role": r.role, "version": r.version,
                   "expires": rampart_core::metadata::format_expires(r.expires_unix),
                   "expires_unix": r.expires_unix, "seconds_left": left, "state": state})
        })
        .collect();
    if let Some(error) = input.metadata_error {
        warnings.push(format!(
            "the hosted repository's metadata cannot be read ({error}): check it with `rampart repo verify DIR`"
        ));
    }
    json!({
        "server": {"version": env!("CARGO_PKG_VERSION"), "started_at": input.started_at,
                   "uptime_secs": input.now.saturating_sub(input.started_at)},
        "database": {"backend": input.backend},
        "engines": engines,
        "metadata": {"repository": input.repository.is_some(),
                     "warn_days": input.policy.map(|p| p.offline_warning_secs / DAY),
                     "roles": roles, "error": input.metadata_error},
        "healthy": warnings.is_empty(),
        "warnings": warnings,
    })
}

/// A duration for people: days and hours, or hours and minutes under a day.
fn duration_words(secs: i64) -> String {
    let (d, h, m) = (secs / DAY, secs % DAY / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else {
        format!("{h} h {m} min")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(role: &str, expires_unix: i64) -> RoleExpiry {
        RoleExpiry {
            role: role.into(),
            version: 3,
            expires_unix,
        }
    }

    /// The defaults: a one-day timestamp renewed at half-life by the server, offline roles
    /// warned 21 days ahead.
    fn policy() -> WarningPolicy {
        WarningPolicy {
            expiry_days: rampart_repo::ExpiryDays::default(),
            renew_when_remaining: 0.5,
            offline_warning_secs: 21 * DAY,
            renews_timestamp: true,
            renews_snapshot: false,
        }
    }

    fn input<'a>(
        detectors: &'a DetectorConfig,
        beats: &'a [Beat],
        roles: &'a [RoleExpiry],
        now: i64,
    ) -> StatusInput<'a> {
        StatusInput {
            now,
            started_at: now - 5,
            backend: "sqlite",
            detectors,
            beats,
            repository: Some("/srv/repo".into()),
            roles,
            policy: Some(policy()),
            metadata_error: None,
        }
    }

    #[test]
    fn stalled_engines_and_close_expiries_are_warnings() {
        let detectors = DetectorConfig::default();
        let bound = i64::try_from(detectors.heartbeat_bound("campaigns")).unwrap();
        let now = 1_000_000;
        let beats = [
            Beat {
                engine: "campaigns".into(),
                beat_at: Some(now - 1),
            },
            Beat {
                engine: "webhooks".into(),
                beat_at: Some(now - bound - 1),
            },
            Beat {
                engine: "renewal".into(),
                beat_at: None,
            },
        ];
        let roles = [
            role("root", now + 300 * DAY),
            // A fresh one-day timestamp is fine; a third of a day left is past its renewal.
            role("timestamp", now + 20 * 3600),
            role("snapshot", now + 8 * 3600),
            role("targets", now + 10 * DAY),
            role("director_root", now - 1),
        ];
        let body = status_body(&input(&detectors, &beats, &roles, now));
        let states = |list: &Value| -> Vec<String> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|e| e["state"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(states(&body["engines"]), ["ok", "stalled", "starting"]);
        assert_eq!(
            states(&body["metadata"]["roles"]),
            ["valid", "valid", "expiring", "expiring", "expired"]
        );
        assert_eq!(body["healthy"], false);
        assert_eq!(body["metadata"]["warn_days"], 21);
        let warnings: Vec<&str> = body["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(
            warnings[0].starts_with("engine webhooks has not completed"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("snapshot metadata version 3 expires in 8 h 0 min; run `rampart repo publish /srv/repo`"),
            "{warnings:?}"
        );
        assert!(
            warnings[2].starts_with("targets metadata version 3 expires in 10 d 0 h"),
            "{warnings:?}"
        );
        assert!(
            warnings[3].starts_with("director_root metadata version 3 has expired"),
            "{warnings:?}"
        );
        assert_eq!(body["server"]["uptime_secs"], 5);

        // A shorter warning distance for offline roles: the targets role is fine then.
        let mut shorter = input(&detectors, &beats[..1], &roles[3..4], now);
        shorter.policy = Some(policy().with_offline_warning_secs(7 * DAY));
        let body = status_body(&shorter);
        assert_eq!(body["healthy"], true, "{body}");
        assert_eq!(body["metadata"]["warn_days"], 7);

        // Nothing watched: no roles, no policy.
        let mut bare = input(&detectors, &[], &[], now);
        bare.policy = None;
        bare.repository = None;
        let body = status_body(&bare);
        assert_eq!(body["healthy"], true, "{body}");
        assert_eq!(body["metadata"]["repository"], false);
        assert_eq!(body["metadata"]["warn_days"], Value::Null);
    }
}
