//! What an incident is: its states and their order, severities, the detectors that open
//! incidents, the cause that deduplicates them, and the actions a playbook runs.

use serde::{Deserialize, Serialize};

/// An incident's state. The order is the response's progress: detected -> contained ->
/// eradicated -> recovered -> closed. An incident may skip states forward (a false positive is
/// closed straight from detected), never go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// Opened; nothing done yet.
    Detected,
    /// Every device in it is quarantined (or the cause is otherwise stopped).
    Contained,
    /// The cause is removed (e.g. suspect images re-imaged away, a key revoked).
    Eradicated,
    /// The devices run a known-good release again and are released.
    Recovered,
    /// Finished; the cause may open a new incident from now on.
    Closed,
}

impl IncidentState {
    pub const ALL: [IncidentState; 5] = [
        IncidentState::Detected,
        IncidentState::Contained,
        IncidentState::Eradicated,
        IncidentState::Recovered,
        IncidentState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Detected => "detected",
            IncidentState::Contained => "contained",
            IncidentState::Eradicated => "eradicated",
            IncidentState::Recovered => "recovered",
            IncidentState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentState> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether an incident may move from `self` to `to`: forward only, never to itself.
    pub fn may_move_to(self, to: IncidentState) -> bool {
        to > self
    }
}

/// How bad an incident is; alerts and playbooks are chosen by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What opened an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// A quote failed verification.
    AttestationFailed,
    /// No passing quote within the freshness window.
    AttestationStale,
    /// A device reported `verification_failed`: someone served it bad firmware.
    VerificationFailed,
    /// The transparency-log monitor saw a release signed with our key that the registry does
    /// not know.
    UnknownSignedRelease,
    /// A device reports a version or image hash no release has.
    UnknownFirmware,
    /// Rollbacks of one release on one hardware id above the threshold.
    RollbackSpike,
    /// A revoked certificate or token was used.
    RevokedCredentialUse,
    /// A device's hardware id changed (impossible for real hardware).
    HardwareIdChange,
    /// A detector could not evaluate (fail closed: that is an incident of its own).
    DetectorFailure,
    /// An engine missed its heartbeat.
    EngineStalled,
    /// Alert delivery keeps failing.
    AlertDeliveryFailing,
    /// A new advisory affects components that devices of the fleet run (issue 17): a known
    /// vulnerability, not a compromise.
    VulnerableComponent,
    /// Opened by an operator.
    Operator,
}

impl Detector {
    pub const ALL: [Detector; 13] = [
        Detector::AttestationFailed,
        Detector::AttestationStale,
        Detector::VerificationFailed,
        Detector::UnknownSignedRelease,
        Detector::UnknownFirmware,
        Detector::RollbackSpike,
        Detector::RevokedCredentialUse,
        Detector::HardwareIdChange,
        Detector::DetectorFailure,
        Detector::EngineStalled,
        Detector::AlertDeliveryFailing,
        Detector::VulnerableComponent,
        Detector::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::AttestationFailed => "attestation_failed",
            Detector::AttestationStale => "attestation_stale",
            Detector::VerificationFailed => "verification_failed",
            Detector::UnknownSignedRelease => "unknown_signed_release",
            Detector::UnknownFirmware => "unknown_firmware",
            Detector::RollbackSpike => "rollback_spike",
            Detector::RevokedCredentialUse => "revoked_credential_use",
            Detector::HardwareIdChange => "hardware_id_change",
            Detector::DetectorFailure => "detector_failure",
            Detector::EngineStalled => "engine_stalled",
            Detector::AlertDeliveryFailing => "alert_delivery_failing",
            Detector::VulnerableComponent => "vulnerable_component",
            Detector::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Detector> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Why an incident exists: its detector and a key naming the cause (a release, a hardware id,
/// a key id, an engine). One open incident per cause; further devices join it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cause {
    pub detector: Detector,
    pub key: String,
}

impl Cause {
    /// The stored dedupe key, `detector:key`.
    pub fn dedupe_key(&self) -> String {
        format!("{}:{}", self.detector.as_str(), self.key)
    }
}

/// What a playbook can do about an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Quarantine the incident's devices (server side; cooperative devices also get the
    /// signed instruction).
    Quarantine,
    /// Revoke the devices' certificates.
    RevokeCertificate,
    /// Request a forensic evidence bundle from each device.
    CollectEvidence,
    /// Re-image each device onto a known-good release, both slots.
    Reimage,
    /// Send the incident's high-priority alert.
    Alert,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Quarantine,
        Action::RevokeCertificate,
        Action::CollectEvidence,
        Action::Reimage,
        Action::Alert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Quarantine => "quarantine",
            Action::RevokeCertificate => "revoke_certificate",
            Action::CollectEvidence => "collect_evidence",
            Action::Reimage => "reimage",
            Action::Alert => "alert",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// The management API's roles, as playbooks name who may approve an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        use IncidentState::*;
        assert!(Detected.may_move_to(Contained));
        assert!(Detected.may_move_to(Closed));
        assert!(!Contained.may_move_to(Detected));
        assert!(!Closed.may_move_to(Recovered));
        assert!(!Contained.may_move_to(Contained));
    }

    #[test]
    fn wire_names_round_trip() {
        for s in IncidentState::ALL {
            assert_eq!(IncidentState::parse(s.as_str()), Some(s));
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        for d in Detector::ALL {
            assert_eq!(Detector::parse(d.as_str()), Some(d));
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
        }
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
    }
}
