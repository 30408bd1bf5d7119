//! Playbooks: per detector and severity, which actions run at once and which wait for an
//! approval by which role. Read from the server's incident configuration (TOML) and the
//! management API (JSON), both in this shape:
//!
//! ```toml
//! [playbooks.attestation_failed.default]
//! now = ["quarantine", "collect_evidence", "alert"]
//! approve = [{ action = "reimage", role = "operator" }]
//!
//! [playbooks.attestation_failed.low]
//! now = ["collect_evidence", "alert"]
//! ```
//!
//! A detector's `default` answers every severity it does not name; a detector the
//! configuration does not name keeps its built-in playbook ([`Playbooks::default`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Action, Detector, Role, Severity};

impl Role {
    pub const ALL: [Role; 2] = [Role::Admin, Role::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether a token of this role may approve an action held for `required`: its own
    /// role's actions, and an admin any.
    pub fn may_approve(self, required: Role) -> bool {
        self == Role::Admin || self == required
    }
}

/// What a playbook does about one incident: actions run at once, and actions held until a
/// token of the named role approves them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub now: Vec<Action>,
    pub approve: Vec<(Action, Role)>,
}

impl Plan {
    /// The plan's actions, each with the role that must approve it (`None`: runs at once).
    pub fn actions(&self) -> impl Iterator<Item = (Action, Option<Role>)> + '_ {
        self.now
            .iter()
            .map(|a| (*a, None))
            .chain(self.approve.iter().map(|(a, r)| (*a, Some(*r))))
    }
}

/// Why a playbook configuration was refused; every message names the bad key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaybookError {
    #[error(
        "playbooks.{0}: unknown detector; use one of attestation_failed, attestation_stale, verification_failed, unknown_signed_release, unknown_firmware, rollback_spike, revoked_credential_use, hardware_id_change, detector_failure, engine_stalled, alert_delivery_failing, vulnerable_component, operator"
    )]
    UnknownDetector(String),
    #[error("playbooks.{0}.{1}: unknown severity; use default, low, medium, high or critical")]
    UnknownSeverity(String, String),
    #[error(
        "playbooks.{0}: no `default` playbook; add [playbooks.{0}.default] for the severities it does not name"
    )]
    MissingDefault(String),
    #[error(
        "{0}: unknown action {1:?}; use quarantine, revoke_certificate, collect_evidence, reimage or alert"
    )]
    UnknownAction(String, String),
    #[error("{0}: unknown role {1:?}; use operator or admin")]
    UnknownRole(String, String),
    #[error("{0}: action {1} is named twice; name each action once, in `now` or in `approve`")]
    DuplicateAction(String, &'static str),
    #[error(
        "{0}: {1} acts on devices, but this detector reports the server's own faults; give it only `alert` (a server fault never quarantines devices)"
    )]
    DeviceActionForServerFault(String, &'static str),
}

/// The actions of one step as written in the configuration (wire names, validated on load).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    now: Vec<String>,
    #[serde(default)]
    approve: Vec<RawApproval>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    action: String,
    role: String,
}

/// `detector -> ("default" | severity) -> step`, as written.
type RawPlaybooks = BTreeMap<String, BTreeMap<String, RawStep>>;

/// One detector's playbook: a default plan and per-severity plans that replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorPlaybook {
    pub default: Plan,
    pub by_severity: BTreeMap<Severity, Plan>,
}

impl DetectorPlaybook {
    fn plan(&self, severity: Severity) -> &Plan {
        self.by_severity.get(&severity).unwrap_or(&self.default)
    }
}

/// Every detector's playbook. Serializes to and from the configuration's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPlaybooks", into = "RawPlaybooks")]
pub struct Playbooks {
    detectors: BTreeMap<Detector, DetectorPlaybook>,
}

/// Detectors that report the server's own faults: their incidents involve no devices, and
/// their playbooks may only alert.
pub const SERVER_FAULT_DETECTORS: [Detector; 3] = [
    Detector::DetectorFailure,
    Detector::EngineStalled,
    Detector::AlertDeliveryFailing,
];

/// Actions that change a device.
fn acts_on_devices(action: Action) -> bool {
    !matches!(action, Action::Alert)
}

fn alert_only() -> DetectorPlaybook {
    DetectorPlaybook {
        default: Plan {
            now: vec![Action::Alert],
            approve: vec![],
        },
        by_severity: BTreeMap::new(),
    }
}

/// A device showing signs of compromise: at high and critical severity, quarantine it,
/// collect its evidence and alert at once; re-imaging waits for an operator. Below that,
/// collect evidence and alert, and let an operator decide.
fn compromise() -> DetectorPlaybook {
    let contain = Plan {
        now: vec![Action::Quarantine, Action::CollectEvidence, Action::Alert],
        approve: vec![(Action::Reimage, Role::Operator)],
    };
    let observe = Plan {
        now: vec![Action::CollectEvidence, Action::Alert],
        approve: vec![
            (Action::Quarantine, Role::Operator),
            (Action::Reimage, Role::Operator),
        ],
    };
    DetectorPlaybook {
        default: contain,
        by_severity: BTreeMap::from([
            (Severity::Low, observe.clone()),
            (Severity::Medium, observe),
        ]),
    }
}

impl Default for Playbooks {
    /// The built-in playbooks: compromise signals (failed attestation, bad firmware served,
    /// an unknown signed release, unknown firmware, a revoked credential used, a hardware id
    /// changed) contain at high severity and up; rollback spikes, stale attestations and the
    /// server's own faults only alert; operator-opened incidents alert and leave the rest to
    /// the operator's explicit actions.
    fn default() -> Self {
        let detectors = Detector::ALL
            .into_iter()
            .map(|d| {
                let playbook = match d {
                    Detector::AttestationFailed
                    | Detector::VerificationFailed
                    | Detector::UnknownSignedRelease
                    | Detector::UnknownFirmware
                    | Detector::RevokedCredentialUse
                    | Detector::HardwareIdChange => compromise(),
                    Detector::AttestationStale
                    | Detector::RollbackSpike
                    | Detector::DetectorFailure
                    | Detector::EngineStalled
                    | Detector::AlertDeliveryFailing
                    | Detector::Operator => alert_only(),
                    // A known vulnerability in what devices run is not a compromise: alert at
                    // once; quarantining would take healthy devices off the air for a flaw
                    // they share with every device of the release.
                    Detector::VulnerableComponent => alert_only(),
                };
                (d, playbook)
            })
            .collect();
        Playbooks { detectors }
    }
}

impl Playbooks {
    /// What to do about an incident of `detector` at `severity`.
    pub fn plan(&self, detector: Detector, severity: Severity) -> Plan {
        match self.detectors.get(&detector) {
            Some(p) => p.plan(severity).clone(),
            None => Playbooks::default()
                .detectors
                .get(&detector)
                .map(|p| p.plan(severity).clone())
                .unwrap_or_default(),
        }
    }

    /// Reads a `[playbooks]` table's content (TOML or JSON, already parsed by serde) over the
    /// built-in playbooks: named detectors replace theirs, others keep the built-in ones.
    fn from_raw(raw: RawPlaybooks) -> Result<Self, PlaybookError> {
        let mut playbooks = Playbooks::default();
        for (detector_name, steps) in raw {
            let detector = Detector::parse(&detector_name)
                .ok_or_else(|| PlaybookError::UnknownDetector(detector_name.clone()))?;
            let mut default = None;
            let mut by_severity = BTreeMap::new();
            for (level, step) in steps {
                let key = format!("playbooks.{detector_name}.{level}");
                let plan = parse_step(&key, detector, &step)?;
                if level == "default" {
                    default = Some(plan);
                } else {
                    let severity = Severity::parse(&level).ok_or_else(|| {
                        PlaybookError::UnknownSeverity(detector_name.clone(), level.clone())
                    })?;
                    by_severity.insert(severity, plan);
                }
            }
            let default = default.ok_or(PlaybookError::MissingDefault(detector_name))?;
            playbooks.detectors.insert(
                detector,
                DetectorPlaybook {
                    default,
                    by_severity,
                },
            );
        }
        Ok(playbooks)
    }
}

fn parse_step(key: &str, detector: Detector, step: &RawStep) -> Result<Plan, PlaybookError> {
    let action = |name: &str| {
        Action::parse(name).ok_or_else(|| PlaybookError::UnknownAction(key.into(), name.into()))
    };
    let mut plan = Plan::default();
    for name in &step.now {
        plan.now.push(action(name)?);
    }
    for approval in &step.approve {
        let role = Role::parse(&approval.role)
            .ok_or_else(|| PlaybookError::UnknownRole(key.into(), approval.role.clone()))?;
        plan.approve.push((action(&approval.action)?, role));
    }
    let mut seen = Vec::new();
    for (a, _) in plan.actions() {
        if seen.contains(&a) {
            return Err(PlaybookError::DuplicateAction(key.into(), a.as_str()));
        }
        seen.push(a);
        if SERVER_FAULT_DETECTORS.contains(&detector) && acts_on_devices(a) {
            return Err(PlaybookError::DeviceActionForServerFault(
                key.into(),
                a.as_str(),
            ));
        }
    }
    Ok(plan)
}

fn raw_step(plan: &Plan) -> RawStep {
    RawStep {
        now: plan.now.iter().map(|a| a.as_str().to_string()).collect(),
        approve: plan
            .approve
            .iter()
            .map(|(a, r)| RawApproval {
                action: a.as_str().into(),
                role: r.as_str().into(),
            })
            .collect(),
    }
}

impl TryFrom<RawPlaybooks> for Playbooks {
    type Error = PlaybookError;
    fn try_from(raw: RawPlaybooks) -> Result<Self, PlaybookError> {
        Playbooks::from_raw(raw)
    }
}

impl From<Playbooks> for RawPlaybooks {
    fn from(p: Playbooks) -> RawPlaybooks {
        p.detectors
            .iter()
            .map(|(d, playbook)| {
                let mut steps =
                    BTreeMap::from([("default".to_string(), raw_step(&playbook.default))]);
                for (s, plan) in &playbook.by_severity {
                    steps.insert(s.as_str().to_string(), raw_step(plan));
                }
                (d.as_str().to_string(), steps)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<Playbooks, String> {
        #[derive(Deserialize)]
        struct File {
            playbooks: Playbooks,
        }
        toml::from_str::<File>(text)
            .map(|f| f.playbooks)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn built_in_playbooks_contain_compromise_at_high_severity_and_hold_reimage_for_an_operator() {
        let p = Playbooks::default();
        for d in [
            Detector::AttestationFailed,
            Detector::VerificationFailed,
            Detector::UnknownSignedRelease,
            Detector::UnknownFirmware,
        ] {
            for s in [Severity::High, Severity::Critical] {
                let plan = p.plan(d, s);
                assert_eq!(
                    plan.now,
                    vec![Action::Quarantine, Action::CollectEvidence, Action::Alert],
                    "{d:?} {s:?}"
                );
                assert_eq!(plan.approve, vec![(Action::Reimage, Role::Operator)]);
            }
            assert!(!p.plan(d, Severity::Low).now.contains(&Action::Quarantine));
        }
        assert_eq!(
            p.plan(Detector::RollbackSpike, Severity::Critical).now,
            vec![Action::Alert]
        );
    }

    #[test]
    fn a_vulnerable_component_alerts_at_once_and_never_quarantines() {
        let p = Playbooks::default();
        for s in Severity::ALL {
            let plan = p.plan(Detector::VulnerableComponent, s);
            assert_eq!(plan.now, vec![Action::Alert], "{s:?}");
            assert!(plan.approve.is_empty(), "{s:?}: {plan:?}");
        }
        assert_eq!(
            Detector::parse("vulnerable_component"),
            Some(Detector::VulnerableComponent)
        );
    }

    #[test]
    fn built_in_playbooks_never_act_on_devices_for_the_servers_own_faults() {
        let p = Playbooks::default();
        for d in SERVER_FAULT_DETECTORS {
            for s in Severity::ALL {
                let plan = p.plan(d, s);
                assert!(
                    plan.actions().all(|(a, _)| !acts_on_devices(a)),
                    "{d:?} {s:?}: {plan:?}"
                );
                assert_eq!(plan.now, vec![Action::Alert]);
            }
        }
    }

    #[test]
    fn a_configured_detector_replaces_its_playbook_and_severities_fall_back_to_its_default() {
        let p = from_toml(
            r#"
            [playbooks.rollback_spike.default]
            now = ["alert"]
            [playbooks.rollback_spike.critical]
            now = ["alert", "collect_evidence"]
            approve = [{ action = "quarantine", role = "admin" }]
            "#,
        )
        .unwrap();
        let critical = p.plan(Detector::RollbackSpike, Severity::Critical);
        assert_eq!(critical.now, vec![Action::Alert, Action::CollectEvidence]);
        assert_eq!(critical.approve, vec![(Action::Quarantine, Role::Admin)]);
        assert_eq!(
            p.plan(Detector::RollbackSpike, Severity::High).now,
            vec![Action::Alert]
        );
        // Detectors the file does not name keep the built-in playbook.
        assert_eq!(
            p.plan(Detector::AttestationFailed, Severity::High),
            Playbooks::default().plan(Detector::AttestationFailed, Severity::High)
        );
    }

    #[test]
    fn playbooks_round_trip_through_json() {
        let p = Playbooks::default();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["attestation_failed"]["default"]["approve"][0]["role"],
            "operator"
        );
        let back: Playbooks = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn bad_playbooks_are_refused_naming_the_bad_key() {
        let cases = [
            (
                "[playbooks.attestation_faild.default]\nnow = [\"alert\"]",
                "playbooks.attestation_faild: unknown detector",
            ),
            (
                "[playbooks.rollback_spike.default]\nnow = [\"alert\"]\n[playbooks.rollback_spike.urgent]\nnow = []",
                "playbooks.rollback_spike.urgent: unknown severity",
            ),
            (
                "[playbooks.rollback_spike.high]\nnow = [\"alert\"]",
                "playbooks.rollback_spike: no `default` playbook",
            ),
            (
                "[playbooks.rollback_spike.default]\nnow = [\"reboot\"]",
                "playbooks.rollback_spike.default: unknown action \"reboot\"",
            ),
            (
                "[playbooks.rollback_spike.default]\napprove = [{action = \"reimage\", role = \"viewer\"}]",
                "playbooks.rollback_spike.default: unknown role \"viewer\"",
            ),
            (
                "[playbooks.rollback_spike.default]\nnow = [\"reimage\"]\napprove = [{action = \"reimage\", role = \"admin\"}]",
                "playbooks.rollback_spike.default: action reimage is named twice",
            ),
            (
                "[playbooks.rollback_spike.default]\nnow = [\"alert\"]\nlater = [\"reimage\"]",
                "unknown field `later`",
            ),
        ];
        for (text, want) in cases {
            let err = from_toml(text).unwrap_err();
            assert!(err.contains(want), "{text}\n-> {err}\nwant {want}");
        }
    }

    #[test]
    fn an_operator_may_not_approve_what_is_held_for_an_admin() {
        assert!(Role::Operator.may_approve(Role::Operator));
        assert!(!Role::Operator.may_approve(Role::Admin));
        assert!(Role::Admin.may_approve(Role::Operator));
        assert!(Role::Admin.may_approve(Role::Admin));
    }

    #[test]
    fn a_playbook_that_quarantines_devices_for_a_server_fault_is_refused() {
        let err =
            from_toml("[playbooks.engine_stalled.default]\nnow = [\"alert\", \"quarantine\"]")
                .unwrap_err();
        assert!(
            err.contains("playbooks.engine_stalled.default: quarantine acts on devices"),
            "{err}"
        );
    }
}
