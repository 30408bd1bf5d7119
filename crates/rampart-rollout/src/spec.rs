//! What an operator asks for: a campaign's release, targets, policy, phase plan, gate and
//! breach handling, as the management API receives it (JSON), with its validation.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::SpecError;

/// Longest campaign name, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Most devices an explicit target list may name.
pub const MAX_LISTED_DEVICES: usize = 1_000_000;
/// Most entries in any policy list, waves list or condition list.
pub const MAX_LIST_LEN: usize = 256;
/// Most waves a plan may produce (canary included).
pub const MAX_WAVES: usize = 1_000;

/// A campaign as requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// A human name for lists and reports.
    pub name: String,
    /// The release: its target path in the image repository.
    pub release: String,
    /// What a fleet rollback assigns to devices that took this release. `None`: each device's
    /// previous assignment (the release it was told to run before this campaign).
    #[serde(default)]
    pub rollback_release: Option<String>,
    /// Which devices the campaign is for.
    pub targets: Selection,
    /// Which of them may receive the release, and under which reported conditions.
    #[serde(default)]
    pub policy: Policy,
    /// How the campaign widens.
    #[serde(default)]
    pub phases: PhasePlan,
    /// What a wave must show before the next one starts.
    #[serde(default)]
    pub gate: Gate,
    /// What happens automatically when a gate is breached.
    #[serde(default)]
    pub on_breach: BreachAction,
    /// On a breach, also assign the previous release to the devices that installed this one.
    #[serde(default)]
    pub rollback_on_breach: bool,
    #[serde(default)]
    pub update_type: UpdateType,
    /// For `timeforced`: seconds after a device is assigned the release from which the update
    /// is forced (soft until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_after_secs: Option<u64>,
    /// Only devices with a fresh passing remote attestation receive the release; the others
    /// are held (not counted as failures) until they attest. Needs a server running with
    /// attestation enabled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_attestation: bool,
}

/// Shortest and longest `force_after_secs`.
pub const FORCE_AFTER_RANGE: std::ops::RangeInclusive<u64> = 60..=30 * 86_400;

/// Checks the pairing of an update type and its force delay: `timeforced` needs one in
/// [`FORCE_AFTER_RANGE`], every other type none. `Err` says what to fix.
pub fn check_force_after(update_type: &str, force_after_secs: Option<u64>) -> Result<(), String> {
    match (update_type, force_after_secs) {
        ("timeforced", Some(secs)) if FORCE_AFTER_RANGE.contains(&secs) => Ok(()),
        ("timeforced", _) => Err(format!(
            "update type timeforced needs force_after_secs between {} and {} (seconds after assignment until the update is forced)",
            FORCE_AFTER_RANGE.start(),
            FORCE_AFTER_RANGE.end()
        )),
        (_, Some(_)) => Err("force_after_secs applies to update type timeforced only".into()),
        (_, None) => Ok(()),
    }
}

/// Which devices a campaign targets: exactly one of a static group, a filter over inventory
/// attributes, or an explicit list. The selection is resolved once, when the campaign starts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TargetFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

/// A filter over the inventory: every given field must match.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    /// Attribute values that must be equal (JSON equality).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

/// What the campaign logic needs to know about one device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceView<'a> {
    pub id: &'a str,
    pub hardware_id: &'a str,
    pub region: &'a str,
    pub firmware_version: &'a str,
    pub tags: &'a [String],
    pub attributes: &'a Map<String, Value>,
}

impl DeviceView<'_> {
    /// The release channel a device follows: its `channel` attribute.
    pub fn channel(&self) -> Option<&str> {
        self.attributes.get("channel").and_then(Value::as_str)
    }
}

impl TargetFilter {
    pub fn matches(&self, d: &DeviceView<'_>) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.hardware_id, d.hardware_id)
            && eq(&self.region, d.region)
            && eq(&self.firmware_version, d.firmware_version)
            && self
                .tag
                .as_deref()
                .is_none_or(|t| d.tags.iter().any(|x| x == t))
            && self
                .attributes
                .iter()
                .all(|(k, v)| d.attributes.get(k) == Some(v))
    }

    fn is_empty(&self) -> bool {
        self.hardware_id.is_none()
            && self.region.is_none()
            && self.tag.is_none()
            && self.firmware_version.is_none()
            && self.attributes.is_empty()
    }
}

/// Which devices may receive the release (empty lists allow all), and the conditions a
/// device's reported attributes must meet before it is given the release.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hardware_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// A device needs at least one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A device's `channel` attribute must be one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Every condition must hold when the device's wave comes; a device that does not meet
    /// them is held (not given the release) and checked again later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Why a device is not eligible for a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    HardwareId,
    Region,
    Tag,
    Channel,
}

impl Ineligible {
    pub fn as_str(self) -> &'static str {
        match self {
            Ineligible::HardwareId => "hardware_id",
            Ineligible::Region => "region",
            Ineligible::Tag => "tag",
            Ineligible::Channel => "channel",
        }
    }
}

impl Policy {
    /// Whether the policy lets this device receive the release at all (the conditions are
    /// checked separately, at assignment time).
    pub fn eligible(&self, d: &DeviceView<'_>) -> Result<(), Ineligible> {
        let allows = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        if !allows(&self.hardware_ids, d.hardware_id) {
            return Err(Ineligible::HardwareId);
        }
        if !allows(&self.regions, d.region) {
            return Err(Ineligible::Region);
        }
        if !self.tags.is_empty() && !d.tags.iter().any(|t| self.tags.contains(t)) {
            return Err(Ineligible::Tag);
        }
        if !self.channels.is_empty()
            && !d
                .channel()
                .is_some_and(|c| self.channels.iter().any(|x| x == c))
        {
            return Err(Ineligible::Channel);
        }
        Ok(())
    }

    /// Whether the device's reported attributes meet every condition now.
    pub fn conditions_met(&self, attributes: &Map<String, Value>) -> bool {
        self.conditions.iter().all(|c| c.holds(attributes))
    }
}

/// A condition on a reported attribute, or a choice of several (`{"any": [...]}`), e.g.
/// "battery at least 30 % or on mains".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Condition {
    Any { any: Vec<Comparison> },
    Compare(Comparison),
}

/// `attribute op value`. Ordering operators compare numbers; `eq`/`ne` compare any JSON value.
/// A missing attribute fails every comparison (a device that does not say it is charged is
/// not assumed to be).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub attribute: String,
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    pub fn holds(&self, attributes: &Map<String, Value>) -> bool {
        let Some(have) = attributes.get(&self.attribute) else {
            return false;
        };
        match self.op {
            Op::Eq => have == &self.value,
            Op::Ne => have != &self.value,
            op => match (have.as_f64(), self.value.as_f64()) {
                (Some(h), Some(w)) => match op {
                    Op::Gt => h > w,
                    Op::Gte => h >= w,
                    Op::Lt => h < w,
                    _ => h <= w,
                },
                _ => false,
            },
        }
    }
}

impl Condition {
    pub fn holds(&self, attributes: &Map<String, Value>) -> bool {
        match self {
            Condition::Compare(c) => c.holds(attributes),
            Condition::Any { any } => any.iter().any(|c| c.holds(attributes)),
        }
    }

    fn comparisons(&self) -> &[Comparison] {
        match self {
            Condition::Compare(c) => std::slice::from_ref(c),
            Condition::Any { any } => any,
        }
    }
}

/// A number of devices, absolute or as a percentage of the campaign's targets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    Devices(u64),
    Percent(f64),
}

impl Size {
    /// The number of devices out of `total` (a percentage rounds up, and is at least one).
    pub fn of(self, total: u64) -> u64 {
        match self {
            Size::Devices(n) => n.min(total),
            Size::Percent(p) => {
                let n = ((total as f64) * p / 100.0).ceil() as u64;
                n.clamp(1, total.max(1)).min(total)
            }
        }
    }

    fn check(self, what: &str) -> Result<(), SpecError> {
        match self {
            Size::Devices(0) => Err(SpecError::new(format!("{what} must be at least 1 device"))),
            Size::Percent(p) if !(p > 0.0 && p <= 100.0) => Err(SpecError::new(format!(
                "{what} must be a percentage above 0 and at most 100, not {p}"
            ))),
            _ => Ok(()),
        }
    }
}

/// How a campaign widens: a canary, then either listed waves (cumulative sizes) or waves
/// that grow by a factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhasePlan {
    pub canary: Size,
    /// Cumulative sizes after the canary, e.g. 10 %, 50 %, 100 %. A final 100 % wave is
    /// added when the last one does not reach every target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential: Option<Exponential>,
}

/// Waves after the canary of `base`, `base × factor`, `base × factor²` … devices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exponential {
    pub base: u64,
    pub factor: f64,
}

impl Default for PhasePlan {
    fn default() -> Self {
        PhasePlan {
            canary: Size::Percent(1.0),
            waves: vec![
                Size::Percent(10.0),
                Size::Percent(50.0),
                Size::Percent(100.0),
            ],
            exponential: None,
        }
    }
}

/// What a wave must show before the next starts. Results are the devices' final reports:
/// success is `installed` (sent only after the new slot booted and passed its health checks)
/// or, for download-only campaigns, `downloaded`; failure is `failed`, `rolled_back` or
/// `verification_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gate {
    /// Successes among results, in percent, needed to pass.
    pub min_success_pct: f64,
    /// Failures above this percentage (of the wave, or of its results once there are
    /// `min_results`) breach the gate.
    pub max_failure_pct: f64,
    /// Results needed before the gate can pass (capped at the wave's size).
    pub min_results: u64,
    /// Seconds a wave runs before the gate can pass.
    pub min_observation_secs: u64,
    /// An operator approves each passed gate before the next wave starts.
    pub require_approval: bool,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            min_success_pct: 95.0,
            max_failure_pct: 5.0,
            min_results: 1,
            min_observation_secs: 0,
            require_approval: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachAction {
    #[default]
    Pause,
    Abort,
}

/// How the device treats the update (the hawkBit action types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateType {
    /// Install and reboot as soon as it is verified.
    #[default]
    Forced,
    /// The device may defer the install under its own conditions (battery, user activity).
    Soft,
    /// Download and verify into the inactive slot; do not activate.
    DownloadOnly,
    /// Soft until `force_after_secs` after the device was assigned it, then forced (hawkBit's
    /// time-forced action).
    #[serde(rename = "timeforced")]
    TimeForced,
}

impl UpdateType {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateType::Forced => "forced",
            UpdateType::Soft => "soft",
            UpdateType::DownloadOnly => "download_only",
            UpdateType::TimeForced => "timeforced",
        }
    }

    /// The type a device is told at `now` for an assignment forced from `forced_at`:
    /// time-forced is soft before that and forced from then on; the others are themselves.
    pub fn effective(update_type: &str, forced_at: i64, now: i64) -> &str {
        match update_type {
            "timeforced" if now >= forced_at => "forced",
            "timeforced" => "soft",
            other => other,
        }
    }

    /// The report status that counts as success.
    pub fn success_status(self) -> &'static str {
        match self {
            UpdateType::DownloadOnly => "downloaded",
            _ => "installed",
        }
    }
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), SpecError> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(SpecError::new(format!(
            "{what} must be 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_list(what: &str, list: &[String]) -> Result<(), SpecError> {
    if list.len() > MAX_LIST_LEN {
        return Err(SpecError::new(format!(
            "{what} may list at most {MAX_LIST_LEN} entries"
        )));
    }
    for item in list {
        check_text(what, item, 256)?;
    }
    Ok(())
}

impl CampaignSpec {
    /// Checks everything that does not depend on the inventory. What does (the targets
    /// resolving to devices, hardware compatibility, gates the canary cannot satisfy) is
    /// checked by [`crate::plan::Plan::new`] and the server when the campaign starts.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_text("the campaign name", &self.name, MAX_NAME_LEN)?;
        check_text("the release (a target path)", &self.release, 1024)?;
        if let Some(r) = &self.rollback_release {
            check_text("rollback_release", r, 1024)?;
            if r == &self.release {
                return Err(SpecError::new(
                    "rollback_release is the campaign's own release; name the release devices should go back to",
                ));
            }
        }
        let t = &self.targets;
        let given = [t.group.is_some(), t.filter.is_some(), t.devices.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given != 1 {
            return Err(SpecError::new(
                "targets must name exactly one of: \"group\" (a device group), \"filter\" (inventory attributes) or \"devices\" (a list of device ids)",
            ));
        }
        if let Some(g) = &t.group {
            check_text("targets.group", g, 200)?;
        }
        if let Some(f) = &t.filter
            && f.is_empty()
        {
            return Err(SpecError::new(
                "targets.filter is empty and would select the whole fleet; give at least one of hardware_id, region, tag, firmware_version, attributes",
            ));
        }
        if let Some(list) = &t.devices {
            if list.is_empty() {
                return Err(SpecError::new("targets.devices is empty"));
            }
            if list.len() > MAX_LISTED_DEVICES {
                return Err(SpecError::new(format!(
                    "targets.devices may list at most {MAX_LISTED_DEVICES} devices; use a group or a filter"
                )));
            }
        }
        let p = &self.policy;
        check_list("policy.hardware_ids", &p.hardware_ids)?;
        check_list("policy.regions", &p.regions)?;
        check_list("policy.tags", &p.tags)?;
        check_list("policy.channels", &p.channels)?;
        if p.conditions.len() > MAX_LIST_LEN {
            return Err(SpecError::new(format!(
                "policy.conditions may list at most {MAX_LIST_LEN} conditions"
            )));
        }
        for c in &p.conditions {
            if c.comparisons().is_empty() || c.comparisons().len() > MAX_LIST_LEN {
                return Err(SpecError::new(
                    "an \"any\" condition needs 1 to 256 comparisons",
                ));
            }
            for cmp in c.comparisons() {
                check_text("a condition's attribute", &cmp.attribute, 128)?;
                let ordered = !matches!(cmp.op, Op::Eq | Op::Ne);
                if ordered && !cmp.value.is_number() {
                    return Err(SpecError::new(format!(
                        "condition on {:?}: {:?} compares numbers, but the value is {}",
                        cmp.attribute, cmp.op, cmp.value
                    )));
                }
            }
        }
        check_force_after(self.update_type.as_str(), self.force_after_secs)
            .map_err(SpecError::new)?;
        self.phases.validate()?;
        self.gate.validate()
    }
}

impl PhasePlan {
    fn validate(&self) -> Result<(), SpecError> {
        self.canary.check("the canary")?;
        if self.waves.len() > MAX_LIST_LEN {
            return Err(SpecError::new(format!(
                "phases.waves may list at most {MAX_LIST_LEN} waves"
            )));
        }
        for (i, w) in self.waves.iter().enumerate() {
            w.check(&format!("wave {}", i + 1))?;
        }
        if let Some(e) = &self.exponential {
            if !self.waves.is_empty() {
                return Err(SpecError::new(
                    "phases: give either \"waves\" or \"exponential\", not both",
                ));
            }
            if e.base == 0 {
                return Err(SpecError::new(
                    "phases.exponential.base must be at least 1 device",
                ));
            }
            if !(1.1..=5.0).contains(&e.factor) {
                return Err(SpecError::new(format!(
                    "phases.exponential.factor must be between 1.1 and 5, not {}",
                    e.factor
                )));
            }
        }
        Ok(())
    }
}

impl Gate {
    fn validate(&self) -> Result<(), SpecError> {
        let pct = |what: &str, v: f64| {
            if (0.0..=100.0).contains(&v) {
                Ok(())
            } else {
                Err(SpecError::new(format!(
                    "gate.{what} must be between 0 and 100, not {v}"
                )))
            }
        };
        pct("min_success_pct", self.min_success_pct)?;
        pct("max_failure_pct", self.max_failure_pct)?;
        if self.min_results == 0 {
            return Err(SpecError::new(
                "gate.min_results must be at least 1: a gate with no results to judge would pass a release nobody installed",
            ));
        }
        if self.min_observation_secs > 30 * 86_400 {
            return Err(SpecError::new(
                "gate.min_observation_secs may be at most 30 days",
            ));
        }
        Ok(())
    }
}
