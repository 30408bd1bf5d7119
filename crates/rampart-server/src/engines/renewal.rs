//! Keeping the hosted image repository's online metadata fresh, and warning before any
//! metadata devices check expires.
//!
//! A timestamp is valid for a day by default: without a fresh one every device refuses the
//! repository and updates stop. With the online keys ([`MetadataConfig::timestamp_keys`],
//! [`MetadataConfig::snapshot_keys`]) the server re-signs them once less than
//! [`MetadataConfig::renew_when_remaining`] of their validity is left, through
//! [`rampart_repo::Repository::renew_published`] (the repository's own code, under its write
//! lock, so an operator's `rampart repo publish` never interleaves), audits the renewal and
//! makes the hosted view pick it up at once.
//!
//! Whatever the keys, every role's expiry (root, targets, delegated roles, snapshot,
//! timestamp, the director's root) is published as `rampart_metadata_expiry_seconds{role}` and
//! logged as a warning well ahead: offline roles [`MetadataConfig::offline_warning`] before
//! (a person must sign them), online roles once they are due and the server could not renew
//! them. Director targets metadata needs no watch: the director signs it on demand and re-signs
//! a cached copy once half its validity is gone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_core::metadata::{Metadata, RoleType, Root};
use rampart_keys::Signer;
use rampart_repo::expiry::{PublishedExpiries, RoleExpiry, renewal_due};
use rampart_repo::{ExpiryDays, Repository};
use tokio::sync::watch;

use crate::delivery::image_repo::HostedRepo;
use crate::observe::audit::AuditWriter;
use crate::observe::metrics::Metrics;
use crate::{ServerConfig, ServerError};

/// How often expiries are looked at by default.
pub const DEFAULT_METADATA_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Online metadata is renewed by default once less than half its validity is left.
pub const DEFAULT_RENEW_WHEN_REMAINING: f64 = 0.5;
/// Offline roles are warned about this long before they expire by default (three weeks: a
/// person with the offline keys must sign a new version).
pub const DEFAULT_OFFLINE_WARNING: Duration = Duration::from_secs(21 * 86_400);
/// A role still close to expiry is warned about again after this long.
const WARNING_REPEAT: Duration = Duration::from_secs(3600);
const DAY: i64 = 86_400;

/// Renewal of the hosted repository's online metadata and expiry warnings.
#[derive(Clone)]
pub struct MetadataConfig {
    /// Keys of the repository's timestamp role (at least its threshold); none: the server does
    /// not renew, it only warns.
    pub timestamp_keys: Vec<Arc<dyn Signer>>,
    /// Keys of the snapshot role; with them the snapshot is renewed too. Needs `timestamp_keys`.
    pub snapshot_keys: Vec<Arc<dyn Signer>>,
    /// Online metadata is re-signed once less than this fraction of its validity is left
    /// (above 0, below 1).
    pub renew_when_remaining: f64,
    /// How often expiries are looked at (the renewal's reaction time).
    pub check_interval: Duration,
    /// Offline roles (root, targets, delegated roles, the director's root) are warned about
    /// this long before they expire.
    pub offline_warning: Duration,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            timestamp_keys: Vec::new(),
            snapshot_keys: Vec::new(),
            renew_when_remaining: DEFAULT_RENEW_WHEN_REMAINING,
            check_interval: DEFAULT_METADATA_CHECK_INTERVAL,
            offline_warning: DEFAULT_OFFLINE_WARNING,
        }
    }
}

impl std::fmt::Debug for MetadataConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |keys: &[Arc<dyn Signer>]| keys.iter().map(|k| k.key_id()).collect::<Vec<_>>();
        f.debug_struct("MetadataConfig")
            .field("timestamp_keys", &ids(&self.timestamp_keys))
            .field("snapshot_keys", &ids(&self.snapshot_keys))
            .field("renew_when_remaining", &self.renew_when_remaining)
            .field("check_interval", &self.check_interval)
            .field("offline_warning", &self.offline_warning)
            .finish()
    }
}

fn borrowed(keys: &[Arc<dyn Signer>]) -> Vec<&dyn Signer> {
    keys.iter().map(|k| k.as_ref()).collect()
}

fn config_error(problem: impl Into<String>) -> ServerError {
    ServerError::Config(problem.into())
}

/// The background watch over the hosted repository's and the director's metadata.
pub(crate) struct MetadataWatch {
    repo_dir: Option<PathBuf>,
    /// The repository to renew, when the server holds its online keys.
    renewer: Option<Renewer>,
    hosted: Option<Arc<HostedRepo>>,
    /// Validity the online roles are signed with (the repository's, else the defaults).
    expiry_days: ExpiryDays,
    director_root: Option<RoleExpiry>,
    config: MetadataConfig,
    metrics: Arc<Metrics>,
    audit: AuditWriter,
    published: PublishedExpiries,
    last_warned: HashMap<String, Instant>,
}

struct Renewer {
    repo: Arc<Repository>,
    timestamp_keys: Vec<Arc<dyn Signer>>,
    snapshot_keys: Vec<Arc<dyn Signer>>,
}

/// What a look at the expiries decided about the online roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RenewalPlan {
    pub(crate) timestamp: bool,
    pub(crate) snapshot: bool,
}

/// Which online roles to re-sign at `now`: those due ([`renewal_due`]) that the server holds
/// keys for; a renewed snapshot always comes with a renewed timestamp (devices only see a new
/// snapshot through one).
pub(crate) fn plan_renewal(
    now: i64,
    expiries: &[RoleExpiry],
    days: ExpiryDays,
    renew_when_remaining: f64,
    have_snapshot_keys: bool,
) -> RenewalPlan {
    let due = |role: &str, validity_days: u32| {
        expiries.iter().any(|e| {
            e.role == role
                && renewal_due(
                    now,
                    e.expires_unix,
                    i64::from(validity_days) * DAY,
                    renew_when_remaining,
                )
        })
    };
    let snapshot = have_snapshot_keys && due("snapshot", days.snapshot);
    RenewalPlan {
        timestamp: snapshot || due("timestamp", days.timestamp),
        snapshot,
    }
}

impl MetadataWatch {
    /// The watch for `config` (`None` with neither an image repository nor a director), after
    /// checking that the online keys are the repository's.
    pub(crate) fn new(
        config: &ServerConfig,
        hosted: Option<Arc<HostedRepo>>,
        metrics: Arc<Metrics>,
        audit: AuditWriter,
    ) -> Result<Option<MetadataWatch>, ServerError> {
        let m = &config.metadata;
        if !(m.renew_when_remaining > 0.0 && m.renew_when_remaining < 1.0) {
            return Err(config_error(format!(
                "renew_when_remaining must be above 0 and below 1 (a fraction of the validity left), not {}",
                m.renew_when_remaining
            )));
        }
        if m.check_interval.is_zero() {
            return Err(config_error("the metadata check interval must not be zero"));
        }
        if !m.snapshot_keys.is_empty() && m.timestamp_keys.is_empty() {
            return Err(config_error(
                "a snapshot key needs a timestamp key too (`--timestamp-key`): devices only see a renewed snapshot through a new timestamp",
            ));
        }
        if !m.timestamp_keys.is_empty() && config.image_repo.is_none() {
            return Err(config_error(
                "the timestamp key renews the hosted image repository: give it with --repo DIR",
            ));
        }
        let repository = match &config.image_repo {
            Some(dir) => match Repository::open(dir) {
                Ok(repo) => Some(repo),
                Err(e) if !m.timestamp_keys.is_empty() => {
                    return Err(config_error(format!(
                        "renewing the image repository's timestamp needs the repository itself ({e})"
                    )));
                }
                // A hosted copy without its configuration: watched, not renewed.
                Err(_) => None,
            },
            None => None,
        };
        let expiry_days = repository
            .as_ref()
            .map(|r| r.config().expiry_days)
            .unwrap_or_default();
        let renewer = match repository {
            Some(repo) if !m.timestamp_keys.is_empty() => {
                for (role, keys, flag) in [
                    (RoleType::Timestamp, &m.timestamp_keys, "--timestamp-key"),
                    (RoleType::Snapshot, &m.snapshot_keys, "--snapshot-key"),
                ] {
                    if keys.is_empty() {
                        continue;
                    }
                    repo.check_online_signers(role, &borrowed(keys))
                        .map_err(|e| {
                            config_error(format!(
                                "{flag} cannot renew {}: {e}",
                                repo.dir().display()
                            ))
                        })?;
                }
                Some(Renewer {
                    repo: Arc::new(repo),
                    timestamp_keys: m.timestamp_keys.clone(),
                    snapshot_keys: m.snapshot_keys.clone(),
                })
            }
            _ => None,
        };
        let director_root = config.director.as_ref().and_then(|d| {
            let bytes = std::fs::read(&d.root_path).ok()?;
            let root = Metadata::<Root>::from_bytes("director root", &bytes).ok()?;
            Some(RoleExpiry {
                role: "director_root".into(),
                version: root.version(),
                expires_unix: root.expires_unix(),
            })
        });
        if config.image_repo.is_none() && director_root.is_none() {
            return Ok(None);
        }
        if let Some(d) = &config.director {
            // Served copies are re-signed once half their validity is gone: this is the least
            // time a device's copy has left.
            let least_left = i64::try_from(d.targets_expiry.as_secs() / 2).unwrap_or(i64::MAX);
            metrics.set_metadata_least_left("director_targets", least_left);
        }
        Ok(Some(MetadataWatch {
            repo_dir: config.image_repo.clone(),
            renewer,
            hosted,
            expiry_days,
            director_root,
            config: m.clone(),
            metrics,
            audit,
            published: PublishedExpiries::default(),
            last_warned: HashMap::new(),
        }))
    }

    /// Checks now, then every check interval, until `stop` says stop.
    pub(crate) async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        heart: super::heartbeat::Heart,
    ) {
        loop {
            self.check(crate::helpers::unix_now()).await;
            heart.beat(crate::helpers::unix_now());
            tokio::select! {
                () = tokio::time::sleep(self.config.check_interval) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }

    /// One look: renew what is due, then publish every expiry and warn about close ones. An
    /// unreadable repository is logged and skipped (the director's root is still watched).
    pub(crate) async fn check(&mut self, now: i64) {
        let mut expiries = self.read_published().await.unwrap_or_default();
        if let Some(renewer) = self.renewer.as_ref().filter(|_| !expiries.is_empty()) {
            let plan = plan_renewal(
                now,
                &expiries,
                self.expiry_days,
                self.config.renew_when_remaining,
                !renewer.snapshot_keys.is_empty(),
            );
            if plan.timestamp {
                self.renew(plan, now).await;
                expiries = self.read_published().await.unwrap_or_default();
            }
        }
        expiries.extend(self.director_root.clone());
        for e in &expiries {
            self.metrics
                .set_metadata_expires_at(&e.role, e.expires_unix);
            self.warn_if_close(e, now);
        }
    }

    /// The published expiries; `None` without a repository or when it cannot be read (logged).
    async fn read_published(&mut self) -> Option<Vec<RoleExpiry>> {
        let dir = self.repo_dir.clone()?;
        let mut published = std::mem::take(&mut self.published);
        let shown = dir.display().to_string();
        let (published, read) = tokio::task::spawn_blocking(move || {
            let read = published.read(&dir);
            (published, read)
        })
        .await
        .ok()?;
        self.published = published;
        match read {
            Ok(expiries) => Some(expiries),
            Err(e) => {
                crate::observe::log::error(
                    "cannot read the image repository's metadata expiries",
                    serde_json::json!({
                        "error": e.to_string(),
                        "fix": format!("check the repository with `rampart repo verify {shown}`"),
                    }),
                );
                None
            }
        }
    }

    async fn renew(&self, plan: RenewalPlan, now: i64) {
        let Some(renewer) = &self.renewer else { return };
        let repo = renewer.repo.clone();
        let timestamp_keys = renewer.timestamp_keys.clone();
        let snapshot_keys = plan.snapshot.then(|| renewer.snapshot_keys.clone());
        let renewed = tokio::task::spawn_blocking(move || {
            let snapshot_keys = snapshot_keys.as_deref().map(borrowed);
            repo.renew_published(snapshot_keys.as_deref(), &borrowed(&timestamp_keys), now)
        })
        .await;
        let dir = renewer.repo.dir().display().to_string();
        match renewed {
            Ok(Ok(Some(r))) => {
                Metrics::inc(&self.metrics.metadata_renewals);
                if let Some(hosted) = &self.hosted {
                    hosted.reload();
                }
                let details = serde_json::json!({
                    "repository": dir,
                    "timestamp_version": r.timestamp_version,
                    "timestamp_expires": rampart_core::metadata::format_expires(r.timestamp_expires_unix),
                    "snapshot_version": r.snapshot_version,
                    "snapshot_expires": r.snapshot_expires_unix.map(rampart_core::metadata::format_expires),
                });
                crate::observe::log::info(
                    "renewed the image repository's online metadata",
                    details.clone(),
                );
                let subject = if r.snapshot_version.is_some() {
                    "snapshot,timestamp"
                } else {
                    "timestamp"
                };
                if let Err(e) = self
                    .audit
                    .record(now, "system", "repository.renewed", subject, details)
                    .await
                {
                    crate::observe::log::error(
                        "recording a metadata renewal in the audit log",
                        serde_json::json!({"error": e.to_string()}),
                    );
                }
            }
            Ok(Ok(None)) => crate::observe::log::info(
                "another writer holds the image repository's lock; the renewal is retried at the next check",
                serde_json::json!({"repository": dir}),
            ),
            Ok(Err(e)) => {
                Metrics::inc(&self.metrics.metadata_renewal_failures);
                crate::observe::log::error(
                    "renewing the image repository's online metadata failed; it is retried at the next check",
                    serde_json::json!({
                        "repository": dir,
                        "error": e.to_string(),
                        "fix": "until it succeeds, run `rampart repo publish DIR` before the timestamp expires",
                    }),
                );
            }
            Err(e) => {
                Metrics::inc(&self.metrics.metadata_renewal_failures);
                crate::observe::log::error(
                    "the metadata renewal task failed",
                    serde_json::json!({"error": e.to_string()}),
                );
            }
        }
    }

    /// Logs a warning if `e` expires within its warning distance (at most once per
    /// [`WARNING_REPEAT`] per role).
    /// When this watch warns about a coming expiry (the status route judges by it too).
    pub(crate) fn warning_policy(&self) -> WarningPolicy {
        WarningPolicy {
            expiry_days: self.expiry_days,
            renew_when_remaining: self.config.renew_when_remaining,
            offline_warning_secs: i64::try_from(self.config.offline_warning.as_secs())
                .unwrap_or(i64::MAX),
            renews_timestamp: self.renewer.is_some(),
            renews_snapshot: self
                .renewer
                .as_ref()
                .is_some_and(|r| !r.snapshot_keys.is_empty()),
        }
    }

    /// The director's root this server runs with, and its expiry (read once at start).
    pub(crate) fn director_root(&self) -> Option<RoleExpiry> {
        self.director_root.clone()
    }

    fn warn_if_close(&mut self, e: &RoleExpiry, now: i64) {
        let dir = self
            .repo_dir
            .as_ref()
            .map_or_else(|| "DIR".to_owned(), |d| d.display().to_string());
        let policy = self.warning_policy();
        let Some(fix) = policy.advice(e, now, &dir) else {
            return;
        };
        let left = e.expires_unix.saturating_sub(now);
        if self
            .last_warned
            .get(&e.role)
            .is_some_and(|at| at.elapsed() < WARNING_REPEAT)
        {
            return;
        }
        self.last_warned.insert(e.role.clone(), Instant::now());
        let what = if left <= 0 {
            format!(
                "{} metadata version {} has expired: devices refuse it",
                e.role, e.version
            )
        } else {
            format!(
                "{} metadata version {} expires in {} hours",
                e.role,
                e.version,
                left / 3600
            )
        };
        crate::observe::log::warn(
            &what,
            serde_json::json!({
                "role": e.role,
                "version": e.version,
                "expires": rampart_core::metadata::format_expires(e.expires_unix),
                "seconds_left": left,
                "fix": fix,
            }),
        );
    }
}

/// When a role's coming expiry is worth a warning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WarningPolicy {
    pub(crate) expiry_days: ExpiryDays,
    pub(crate) renew_when_remaining: f64,
    pub(crate) offline_warning_secs: i64,
    /// Whether the server holds the timestamp (snapshot) keys and renews them.
    pub(crate) renews_timestamp: bool,
    pub(crate) renews_snapshot: bool,
}

impl WarningPolicy {
    /// The same policy with another warning distance for offline roles.
    pub(crate) fn with_offline_warning_secs(self, secs: i64) -> WarningPolicy {
        WarningPolicy {
            offline_warning_secs: secs,
            ..self
        }
    }

    /// What the operator should do about `e` at `now`, if it is close enough to expiry to warn:
    /// offline roles within the warning distance, online roles once due for renewal (when the
    /// server holds their keys it renews them before that, so a warning means it failed).
    /// `None` for metadata far from expiry and for the director's targets (signed on demand).
    pub(crate) fn advice(&self, e: &RoleExpiry, now: i64, dir: &str) -> Option<String> {
        let left = e.expires_unix.saturating_sub(now);
        let online_due = |days: u32| {
            renewal_due(
                now,
                e.expires_unix,
                i64::from(days) * DAY,
                self.renew_when_remaining,
            )
        };
        let offline_close = left < self.offline_warning_secs;
        let failing = "the automatic renewal has not succeeded (see the errors logged before)";
        Some(match e.role.as_str() {
            "timestamp" if online_due(self.expiry_days.timestamp) => {
                if self.renews_timestamp {
                    format!("{failing}; run `rampart repo publish {dir}`")
                } else {
                    format!(
                        "run `rampart repo publish {dir}`, or start the server with --timestamp-key to renew it automatically"
                    )
                }
            }
            "snapshot" if online_due(self.expiry_days.snapshot) => {
                if self.renews_snapshot {
                    format!("{failing}; run `rampart repo publish {dir}`")
                } else {
                    format!(
                        "run `rampart repo publish {dir}`, or start the server with --snapshot-key to renew it automatically"
                    )
                }
            }
            "timestamp" | "snapshot" | "director_targets" => return None,
            "root" if offline_close => format!(
                "sign a new root version with the offline root keys (`rampart repo rotate-root {dir}`)"
            ),
            "director_root" if offline_close => "sign a new director root with its offline keys (`rampart director rotate-root`) and restart the server with it".to_owned(),
            "root" | "director_root" => return None,
            // The targets role and delegated roles (by name).
            _ if offline_close => format!(
                "re-sign it with its offline keys (`rampart repo publish --renew-targets {dir}`)"
            ),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiry(role: &str, expires_unix: i64) -> RoleExpiry {
        RoleExpiry {
            role: role.into(),
            version: 1,
            expires_unix,
        }
    }

    #[test]
    fn renewal_plan_renews_due_online_roles_it_has_keys_for() {
        let now = 1_800_000_000;
        let days = ExpiryDays::default(); // timestamp 1 day, snapshot 7
        let fresh = [
            expiry("timestamp", now + DAY),
            expiry("snapshot", now + 7 * DAY),
            expiry("targets", now + DAY),
        ];
        let nothing = RenewalPlan {
            timestamp: false,
            snapshot: false,
        };
        assert_eq!(plan_renewal(now, &fresh, days, 0.5, true), nothing);
        // A day on, the timestamp has expired (without renewal, updates stop here).
        let day_2 = now + DAY + 60;
        let timestamp_only = RenewalPlan {
            timestamp: true,
            snapshot: false,
        };
        assert_eq!(plan_renewal(day_2, &fresh, days, 0.5, true), timestamp_only);
        // Past the snapshot's half-life: both, or only the timestamp without snapshot keys.
        let day_4 = now + 4 * DAY;
        let both = RenewalPlan {
            timestamp: true,
            snapshot: true,
        };
        assert_eq!(plan_renewal(day_4, &fresh, days, 0.5, true), both);
        assert_eq!(
            plan_renewal(day_4, &fresh, days, 0.5, false),
            timestamp_only
        );
        // An offline role close to expiry is never "renewed" here (it is warned about).
        let only_targets = [
            expiry("timestamp", now + DAY),
            expiry("snapshot", now + 7 * DAY),
            expiry("targets", now + 60),
        ];
        assert_eq!(plan_renewal(now, &only_targets, days, 0.5, true), nothing);
    }

    #[test]
    fn offline_roles_are_warned_about_weeks_ahead_online_ones_when_not_renewed() {
        let now = 1_800_000_000;
        let policy = WarningPolicy {
            expiry_days: ExpiryDays::default(),
            renew_when_remaining: 0.5,
            offline_warning_secs: 21 * DAY,
            renews_timestamp: false,
            renews_snapshot: false,
        };
        let advice = |policy: &WarningPolicy, role: &str, left: i64| {
            policy.advice(&expiry(role, now + left), now, "/srv/repo")
        };
        // Offline roles: three weeks ahead, not before.
        for (role, fix) in [
            ("root", "rotate-root /srv/repo"),
            ("targets", "--renew-targets /srv/repo"),
            ("releases-a", "--renew-targets /srv/repo"),
            ("director_root", "rampart director rotate-root"),
        ] {
            assert_eq!(advice(&policy, role, 22 * DAY), None, "{role}");
            let warned = advice(&policy, role, 20 * DAY).unwrap_or_default();
            assert!(warned.contains(fix), "{role}: {warned}");
            assert!(advice(&policy, role, -60).is_some(), "{role} expired");
        }
        // Online roles: at their renewal point, telling how to renew.
        assert_eq!(advice(&policy, "timestamp", 13 * 3600), None);
        let warned = advice(&policy, "timestamp", 11 * 3600).unwrap_or_default();
        assert!(warned.contains("--timestamp-key"), "{warned}");
        assert_eq!(advice(&policy, "snapshot", 4 * DAY), None);
        let warned = advice(&policy, "snapshot", 3 * DAY).unwrap_or_default();
        assert!(warned.contains("--snapshot-key"), "{warned}");
        // A server that renews only warns when the renewal did not happen.
        let renewing = WarningPolicy {
            renews_timestamp: true,
            renews_snapshot: true,
            ..policy
        };
        let warned = advice(&renewing, "timestamp", -60).unwrap_or_default();
        assert!(warned.contains("has not succeeded"), "{warned}");
        // Director targets are signed on demand: never warned about.
        assert_eq!(advice(&policy, "director_targets", 60), None);
    }
}
