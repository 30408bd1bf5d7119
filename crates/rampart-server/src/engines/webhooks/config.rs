//! What the webhook machinery is told: the events operators can subscribe to, and the
//! delivery settings (timeouts, retries, concurrency, the rollback-spike detector, the address
//! policy, the secrets key) with their checks.

use std::path::PathBuf;
use std::time::Duration;

use rampart_db::DbError;
use rampart_notify::{MAX_SPIKE_THRESHOLD, RollbackSpikeConfig};

use super::address::IpNetwork;
use super::secrets::SecretsKeyError;

/// Default hard limit on one attempt: connecting, sending and receiving the answer's head.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default attempts before a delivery is given up as `failed`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Default delay before the first retry; it doubles with every further one.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Default longest delay between two attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(600);
/// Default deliveries in flight at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// Default interval at which the dispatcher looks for due retries (new events wake it at once).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default time delivered and failed deliveries are kept for operators to inspect.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// A campaign's health gate was breached (`campaign.gate_breach`).
    GateBreach,
    /// A campaign was halted (`campaign.halted`).
    CampaignHalted,
    /// A campaign finished (`campaign.completed`).
    CampaignCompleted,
    /// Many devices rolled back within a short window (`fleet.rollback_spike`).
    RollbackSpike,
    /// A device refused an update whose verification failed (`device.verification_failed`).
    VerificationFailed,
    /// A high-priority incident alert (`incident.alert`; see `engines::alerts`).
    IncidentAlert,
    /// A new advisory affects devices of the fleet (`risk.advisory`; see `engines::risk_watch`).
    RiskAdvisory,
    /// A test delivery requested by an operator (`webhook.test`); sent to one webhook whatever
    /// it subscribes to, and not subscribable.
    Test,
}

impl WebhookEvent {
    /// The events a webhook may subscribe to ([`WebhookEvent::Test`] is not one).
    pub const ALL: [WebhookEvent; 7] = [
        WebhookEvent::GateBreach,
        WebhookEvent::CampaignHalted,
        WebhookEvent::CampaignCompleted,
        WebhookEvent::RollbackSpike,
        WebhookEvent::VerificationFailed,
        WebhookEvent::IncidentAlert,
        WebhookEvent::RiskAdvisory,
    ];

    /// The wire name (the `event` field and the `X-Rampart-Event` header).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::GateBreach => "campaign.gate_breach",
            WebhookEvent::CampaignHalted => "campaign.halted",
            WebhookEvent::CampaignCompleted => "campaign.completed",
            WebhookEvent::RollbackSpike => "fleet.rollback_spike",
            WebhookEvent::VerificationFailed => "device.verification_failed",
            WebhookEvent::IncidentAlert => rampart_db::INCIDENT_ALERT_EVENT,
            WebhookEvent::RiskAdvisory => rampart_db::RISK_ADVISORY_EVENT,
            WebhookEvent::Test => "webhook.test",
        }
    }

    /// The event with this wire name, [`WebhookEvent::Test`] included.
    pub fn parse(name: &str) -> Option<WebhookEvent> {
        Self::ALL
            .into_iter()
            .chain([WebhookEvent::Test])
            .find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Webhook delivery settings. [`Default`] gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Hard limit on one attempt (connect, send, answer); an endpoint that accepts the
    /// connection and never answers costs at most this.
    pub attempt_timeout: Duration,
    /// Attempts before a delivery is `failed` (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one, with ±20% jitter.
    pub backoff_base: Duration,
    /// Longest delay between two attempts.
    pub backoff_max: Duration,
    /// Deliveries in flight at once (1 to 100).
    pub max_in_flight: usize,
    /// How often the dispatcher looks for due retries; new events wake it at once.
    pub poll_interval: Duration,
    /// Delivered and failed deliveries older than this are deleted.
    pub retention: Duration,
    pub rollback_spike: RollbackSpikeConfig,
    /// Internal networks deliveries may reach after all (`--webhook-allow CIDR`); by default
    /// none: loopback, private, link-local and other special-purpose addresses are refused.
    pub allow_networks: Vec<IpNetwork>,
    /// The file holding the key webhook secrets are sealed with (32 random bytes; created, mode
    /// 0600, if missing). `None`: next to a SQLite database file (`NAME.secrets.key`); with
    /// PostgreSQL there is then no key, and webhooks cannot be created.
    pub secrets_key: Option<PathBuf>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            retention: DEFAULT_RETENTION,
            rollback_spike: RollbackSpikeConfig::default(),
            allow_networks: Vec::new(),
            secrets_key: None,
        }
    }
}

impl WebhookConfig {
    /// Checks every setting; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), WebhookError> {
        let problem = if self.attempt_timeout.is_zero() {
            Some("webhooks.attempt_timeout must not be zero")
        } else if self.max_attempts == 0 {
            Some("webhooks.max_attempts must be at least 1")
        } else if self.backoff_base.is_zero() {
            Some("webhooks.backoff_base must not be zero")
        } else if self.backoff_max < self.backoff_base {
            Some("webhooks.backoff_max must be at least webhooks.backoff_base")
        } else if !(1..=rampart_db::MAX_DELIVERY_CLAIM as usize).contains(&self.max_in_flight) {
            Some("webhooks.max_in_flight must be 1 to 100")
        } else if self.poll_interval.is_zero() {
            Some("webhooks.poll_interval must not be zero")
        } else if self.retention.is_zero() {
            Some("webhooks.retention must not be zero")
        } else if !(1..=MAX_SPIKE_THRESHOLD).contains(&self.rollback_spike.threshold) {
            Some("webhooks.rollback_spike.threshold must be 1 to 100000")
        } else if self.rollback_spike.window.as_secs() == 0 {
            Some("webhooks.rollback_spike.window must be at least one second")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(WebhookError::Config(problem.into())),
            None => Ok(()),
        }
    }

    /// How long a claimed delivery stays reserved: the attempt plus ample time to record it. A
    /// server that dies mid-attempt releases it when this runs out.
    pub(super) fn lease(&self) -> Duration {
        self.attempt_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(30))
    }
}

/// Why the webhook machinery could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid webhook configuration: {0}")]
    Config(String),
    #[error(transparent)]
    SecretsKey(#[from] SecretsKeyError),
    /// A stored secret does not open with the key given (or there is no key).
    #[error("{0}")]
    Secrets(String),
    #[error("reading or sealing the stored webhook secrets: {0}")]
    Db(#[from] DbError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_match_the_storage_list() {
        let names: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names, rampart_db::WEBHOOK_EVENTS);
        for e in WebhookEvent::ALL.into_iter().chain([WebhookEvent::Test]) {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(WebhookEvent::parse("campaign.nope"), None);
    }

    #[test]
    fn config_problems_are_named() {
        assert!(WebhookConfig::default().validate().is_ok());
        let problem = |c: WebhookConfig| c.validate().unwrap_err().to_string();
        let c = WebhookConfig {
            max_in_flight: 0,
            ..WebhookConfig::default()
        };
        assert!(problem(c).contains("max_in_flight"));
        let c = WebhookConfig {
            rollback_spike: RollbackSpikeConfig {
                threshold: 10,
                window: Duration::from_millis(10),
            },
            ..WebhookConfig::default()
        };
        assert!(problem(c).contains("window"));
        let c = WebhookConfig {
            backoff_max: Duration::from_secs(1),
            ..WebhookConfig::default()
        };
        assert!(problem(c).contains("backoff_max"));
    }
}
