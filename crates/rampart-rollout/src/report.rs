//! Campaign reports: per wave and in total, success rate, failure reasons, rollbacks, and the
//! time to remediate (from the campaign's start until a share of its targets runs the release).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decide::Tally;
use crate::plan::Plan;
use crate::spec::UpdateType;

/// Where one device of a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its wave has not started.
    Waiting,
    /// Its wave started, but the policy's conditions or its maintenance window hold it back.
    Held,
    /// Given the release; no report yet.
    Assigned,
    /// Reported progress (downloading, rebooting …).
    InProgress,
    Succeeded,
    Failed,
    RolledBack,
    VerificationFailed,
    /// Its assignment was withdrawn (abort, fleet rollback) before it finished.
    Cancelled,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Waiting,
        Outcome::Held,
        Outcome::Assigned,
        Outcome::InProgress,
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::RolledBack,
        Outcome::VerificationFailed,
        Outcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Waiting => "waiting",
            Outcome::Held => "held",
            Outcome::Assigned => "assigned",
            Outcome::InProgress => "in_progress",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::VerificationFailed => "verification_failed",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// A final result (counted by the gate).
    pub fn is_result(self) -> bool {
        matches!(
            self,
            Outcome::Succeeded
                | Outcome::Failed
                | Outcome::RolledBack
                | Outcome::VerificationFailed
        )
    }

    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Failed | Outcome::RolledBack | Outcome::VerificationFailed
        )
    }

    /// The outcome a device report implies, or `None` for a status that changes nothing.
    pub fn from_report(status: &str, update_type: UpdateType) -> Option<Outcome> {
        Some(match status {
            s if s == update_type.success_status() => Outcome::Succeeded,
            "failed" => Outcome::Failed,
            "rolled_back" => Outcome::RolledBack,
            "verification_failed" => Outcome::VerificationFailed,
            "cancelled" => Outcome::Cancelled,
            "downloading" | "downloaded" | "installing" | "rebooting" => Outcome::InProgress,
            // `installed` in a download-only campaign: the device went further than asked.
            "installed" => Outcome::Succeeded,
            _ => return None,
        })
    }

    /// Whether a report may replace this outcome: a final result is not undone by a late
    /// progress report (reports can arrive out of order when a device retries).
    pub fn accepts(self, next: Outcome) -> bool {
        !self.is_result() || next.is_result()
    }
}

/// One device of a campaign, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub wave: usize,
    pub outcome: Outcome,
    /// The reason code of its last report, if any.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub result_at: Option<i64>,
}

/// The figures of one wave (or of all of them).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WaveFigures {
    pub name: String,
    pub devices: u64,
    /// Devices per outcome.
    pub outcomes: BTreeMap<String, u64>,
    pub succeeded: u64,
    pub failed: u64,
    pub rolled_back: u64,
    pub verification_failed: u64,
    /// Successes among results, in percent (none before the first result).
    pub success_rate: Option<f64>,
    /// Failures by reason code.
    pub failure_reasons: BTreeMap<String, u64>,
}

impl WaveFigures {
    fn add(&mut self, r: &DeviceRecord) {
        self.devices += 1;
        *self.outcomes.entry(r.outcome.as_str().into()).or_default() += 1;
        match r.outcome {
            Outcome::Succeeded => self.succeeded += 1,
            Outcome::RolledBack => self.rolled_back += 1,
            Outcome::VerificationFailed => self.verification_failed += 1,
            _ => {}
        }
        if r.outcome.is_failure() {
            self.failed += 1;
            let reason = r
                .reason
                .clone()
                .unwrap_or_else(|| r.outcome.as_str().into());
            *self.failure_reasons.entry(reason).or_default() += 1;
        }
    }

    fn finish(&mut self) {
        let results = self.succeeded + self.failed;
        self.success_rate = (results > 0).then(|| self.succeeded as f64 * 100.0 / results as f64);
    }

    pub fn tally(&self) -> Tally {
        Tally {
            devices: self.devices,
            succeeded: self.succeeded,
            failed: self.failed,
            rolled_back: self.rolled_back,
            verification_failed: self.verification_failed,
        }
    }
}

/// Seconds from the start until a share of the targets succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeToShare {
    pub percent: u32,
    /// `None`: not reached (yet).
    pub seconds: Option<i64>,
}

/// Per wave, in total, and the time to remediate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub waves: Vec<WaveFigures>,
    pub total: WaveFigures,
    pub time_to: Vec<TimeToShare>,
}

/// Shares of the targets whose time is reported.
pub const SHARES: [u32; 4] = [50, 90, 99, 100];

/// How many of `targeted` devices make `percent`% of them (at least one): the success whose
/// time is the time to that share.
pub fn successes_needed(targeted: u64, percent: u32) -> u64 {
    (targeted * u64::from(percent)).div_ceil(100).max(1)
}

/// Builds the figures from every device record. `started` is when the campaign started.
pub fn figures(plan: &Plan, records: &[DeviceRecord], started: Option<i64>) -> Figures {
    let mut waves: Vec<WaveFigures> = (0..plan.waves())
        .map(|w| WaveFigures {
            name: Plan::wave_name(w),
            ..WaveFigures::default()
        })
        .collect();
    let mut total = WaveFigures {
        name: "total".into(),
        ..WaveFigures::default()
    };
    let mut success_times = Vec::new();
    for r in records {
        if let Some(w) = waves.get_mut(r.wave) {
            w.add(r);
        }
        total.add(r);
        if r.outcome == Outcome::Succeeded
            && let Some(t) = r.result_at
        {
            success_times.push(t);
        }
    }
    for w in &mut waves {
        w.finish();
    }
    total.finish();
    success_times.sort_unstable();
    let targeted = records.len() as u64;
    let time_to = SHARES
        .iter()
        .map(|&percent| {
            let needed = successes_needed(targeted, percent) as usize;
            let seconds = match (started, success_times.get(needed - 1)) {
                (Some(s), Some(t)) if targeted > 0 => Some((t - s).max(0)),
                _ => None,
            };
            TimeToShare { percent, seconds }
        })
        .collect();
    Figures {
        waves,
        total,
        time_to,
    }
}

/// The figures as CSV: one row per wave and a total row.
pub fn to_csv(figures: &Figures) -> String {
    let mut out = String::from(
        "wave,devices,succeeded,failed,rolled_back,verification_failed,in_progress,assigned,held,waiting,cancelled,success_rate,failure_reasons\n",
    );
    for w in figures.waves.iter().chain(std::iter::once(&figures.total)) {
        let n = |o: Outcome| w.outcomes.get(o.as_str()).copied().unwrap_or(0);
        let reasons: Vec<String> = w
            .failure_reasons
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&w.name),
            w.devices,
            w.succeeded,
            w.failed,
            w.rolled_back,
            w.verification_failed,
            n(Outcome::InProgress),
            n(Outcome::Assigned),
            n(Outcome::Held),
            n(Outcome::Waiting),
            n(Outcome::Cancelled),
            w.success_rate
                .map(|r| format!("{r:.2}"))
                .unwrap_or_default(),
            csv_field(&reasons.join(";")),
        ));
    }
    out
}

/// Quotes a CSV field when needed, and defuses spreadsheet formulas (a reason code is device
/// input).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
