//! What a high-priority alert says: its severity, its dedupe key (the incident's cause) and the
//! incident's data (devices, release, evidence hashes, the tail of the timeline), each list
//! bounded with its full count beside it, so an incident of 10,000 devices is one alert of a
//! few kilobytes. Repeats of one key within the dedupe window become one update, not a flood.
//!
//! How alerts travel (webhook signatures, syslog frames, retries) is `rampart_notify`'s; the
//! server's alert engine is the shell.

use serde::{Deserialize, Serialize};

use crate::model::{Detector, IncidentState, Severity};

/// Devices named in an alert (the count is always exact).
pub const MAX_ALERT_DEVICES: usize = 50;
/// Evidence hashes named in an alert.
pub const MAX_ALERT_EVIDENCE: usize = 20;
/// Timeline entries in an alert (the newest).
pub const MAX_ALERT_TIMELINE: usize = 20;
/// Longest free text (title, release, ids, kinds) in an alert, bytes.
pub const MAX_ALERT_TEXT: usize = 256;

/// One alert, as webhooks receive it (`data` of the `incident.alert` event) and as the syslog
/// sink summarises it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique per alert; the same on every retry, so receivers deduplicate on it.
    pub id: String,
    /// The incident's cause (`detector:key`): alerts of one key are one alert and its updates.
    pub dedupe_key: String,
    pub severity: Severity,
    /// True when an alert with this key was sent within the dedupe window before.
    pub update: bool,
    /// Alerts of this key folded into this one while the window held them back.
    pub repeats: u32,
    /// Unix seconds.
    pub created: i64,
    pub incident: AlertIncident,
}

/// The incident an alert is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertIncident {
    pub id: String,
    pub title: String,
    pub detector: Detector,
    pub state: IncidentState,
    /// The release involved ("" when none).
    pub release: String,
    /// Unix seconds.
    pub detected_at: i64,
    /// Up to [`MAX_ALERT_DEVICES`] device ids, earliest joined first.
    pub devices: Vec<String>,
    /// How many devices the incident has in all.
    pub device_count: u64,
    /// Up to [`MAX_ALERT_EVIDENCE`] stored evidence bundles, newest first.
    pub evidence: Vec<EvidenceHash>,
    pub evidence_count: u64,
    /// Up to [`MAX_ALERT_TIMELINE`] entries, the newest, in timeline order.
    pub timeline: Vec<AlertTimelineEntry>,
    pub timeline_count: u64,
}

/// A stored evidence bundle: whose, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceHash {
    pub device_id: String,
    pub sha256: String,
}

/// A timeline entry as an alert carries it (its audit sequence number ties it to the audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertTimelineEntry {
    pub audit_seq: u64,
    /// Unix seconds.
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub device_id: String,
}

/// The longest prefix of `s` within [`MAX_ALERT_TEXT`] bytes, cut at a character boundary.
fn bounded_text(s: &mut String) {
    if s.len() > MAX_ALERT_TEXT {
        let mut end = MAX_ALERT_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl Alert {
    /// The alert with every list within its bound (the counts are kept, and raised to at least
    /// the list's length) and every text within [`MAX_ALERT_TEXT`]: devices and evidence keep
    /// their first entries, the timeline its newest.
    pub fn bounded(mut self) -> Alert {
        let i = &mut self.incident;
        i.device_count = i.device_count.max(i.devices.len() as u64);
        i.devices.truncate(MAX_ALERT_DEVICES);
        i.evidence_count = i.evidence_count.max(i.evidence.len() as u64);
        i.evidence.truncate(MAX_ALERT_EVIDENCE);
        i.timeline_count = i.timeline_count.max(i.timeline.len() as u64);
        let excess = i.timeline.len().saturating_sub(MAX_ALERT_TIMELINE);
        i.timeline.drain(..excess);
        for text in [
            &mut self.id,
            &mut self.dedupe_key,
            &mut i.id,
            &mut i.title,
            &mut i.release,
        ] {
            bounded_text(text);
        }
        for device in &mut i.devices {
            bounded_text(device);
        }
        for e in &mut i.evidence {
            bounded_text(&mut e.device_id);
            bounded_text(&mut e.sha256);
        }
        for t in &mut i.timeline {
            bounded_text(&mut t.kind);
            bounded_text(&mut t.actor);
            bounded_text(&mut t.device_id);
        }
        self
    }

    /// One line for people: severity, incident, detector, title, devices and state.
    pub fn summary(&self) -> String {
        let i = &self.incident;
        let mut line = format!(
            "{}{} incident {} ({}): {}; {} device{}",
            if self.update { "update: " } else { "" },
            self.severity.as_str().to_uppercase(),
            i.id,
            i.detector.as_str(),
            i.title,
            i.device_count,
            if i.device_count == 1 { "" } else { "s" },
        );
        if !i.release.is_empty() {
            line.push_str(&format!(", release {}", i.release));
        }
        line.push_str(&format!(", state {}", i.state.as_str()));
        if self.repeats > 0 {
            line.push_str(&format!(", {} repeats folded in", self.repeats));
        }
        line
    }
}

/// What to do with an alert whose key last went out at `last_sent_ms` (Unix milliseconds,
/// `None`: never, or the window passed), given the dedupe window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedupe {
    /// Send it now (as an update if `update`).
    SendNow { update: bool },
    /// Hold it until this time (Unix milliseconds); newer alerts of the key replace it meanwhile
    /// and are counted as repeats, and it then goes out as one update.
    HoldUntil(i64),
}

/// Decides whether an alert goes out now or waits for the end of its key's dedupe window.
pub fn dedupe(last_sent_ms: Option<i64>, now_ms: i64, window_ms: i64) -> Dedupe {
    match last_sent_ms {
        None => Dedupe::SendNow { update: false },
        Some(last) => {
            let due = last.saturating_add(window_ms.max(0));
            if now_ms >= due {
                Dedupe::SendNow { update: true }
            } else {
                Dedupe::HoldUntil(due)
            }
        }
    }
}

impl Severity {
    /// The syslog severity code of an alert (RFC 5424 table 2): critical is `alert` (1, act at
    /// once), high is `crit` (2), medium is `warning` (4), low is `notice` (5).
    pub fn syslog_code(self) -> u8 {
        match self {
            Severity::Critical => 1,
            Severity::High => 2,
            Severity::Medium => 4,
            Severity::Low => 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(devices: usize, timeline: usize) -> Alert {
        Alert {
            id: "alert-1".into(),
            dedupe_key: "attestation_failed:hw-a".into(),
            severity: Severity::Critical,
            update: false,
            repeats: 0,
            created: 1_700_000_000,
            incident: AlertIncident {
                id: "inc-1".into(),
                title: "t".repeat(1000),
                detector: Detector::AttestationFailed,
                state: IncidentState::Detected,
                release: "fw-1.2.0".into(),
                detected_at: 1_700_000_000,
                devices: (0..devices).map(|n| format!("dev-{n}")).collect(),
                device_count: 0,
                evidence: vec![],
                evidence_count: 0,
                timeline: (0..timeline)
                    .map(|n| AlertTimelineEntry {
                        audit_seq: n as u64,
                        at: 1_700_000_000,
                        kind: "device_joined".into(),
                        actor: "detector:attestation_failed".into(),
                        device_id: format!("dev-{n}"),
                    })
                    .collect(),
                timeline_count: 0,
            },
        }
    }

    #[test]
    fn an_alert_of_a_huge_incident_is_bounded_with_exact_counts() {
        let a = alert(10_000, 500).bounded();
        assert_eq!(a.incident.devices.len(), MAX_ALERT_DEVICES);
        assert_eq!(a.incident.device_count, 10_000);
        assert_eq!(a.incident.devices[0], "dev-0");
        assert_eq!(a.incident.timeline.len(), MAX_ALERT_TIMELINE);
        assert_eq!(a.incident.timeline_count, 500);
        // The newest entries are kept.
        assert_eq!(a.incident.timeline.last().unwrap().audit_seq, 499);
        assert_eq!(a.incident.title.len(), MAX_ALERT_TEXT);
        assert!(serde_json::to_vec(&a).unwrap().len() < 8 * 1024);
    }

    #[test]
    fn the_summary_names_severity_incident_and_devices() {
        let mut a = alert(3, 1);
        a.incident.title = "quotes fail".into();
        let a = a.bounded();
        assert_eq!(
            a.summary(),
            "CRITICAL incident inc-1 (attestation_failed): quotes fail; 3 devices, release fw-1.2.0, state detected"
        );
    }

    #[test]
    fn repeats_within_the_window_are_held_and_later_ones_are_updates() {
        assert_eq!(dedupe(None, 1000, 300), Dedupe::SendNow { update: false });
        assert_eq!(dedupe(Some(900), 1000, 300), Dedupe::HoldUntil(1200));
        assert_eq!(
            dedupe(Some(600), 1000, 300),
            Dedupe::SendNow { update: true }
        );
    }

    #[test]
    fn severities_map_to_syslog_codes() {
        assert_eq!(Severity::Critical.syslog_code(), 1);
        assert_eq!(Severity::High.syslog_code(), 2);
        assert_eq!(Severity::Medium.syslog_code(), 4);
        assert_eq!(Severity::Low.syslog_code(), 5);
    }
}
