//! Game days: compromises injected into chosen devices of a running fleet, and what happened to
//! each of them next (issue 16's game days, docs/benchmarks.md "Game days").
//!
//! A compromise is an attacker's change to the device, not to the agent's code: the agent goes
//! on doing what it does, so what the server sees is what it would see from a real compromised
//! device.
//!
//! * `tampered-slot`: the running slot's bytes are changed after boot (an attacker with root
//!   writes the partition) and the device reboots into them. A measuring bootloader measures
//!   what it boots, so the quote's log names an image no release has: `attestation_failed`.
//!   (Needs an attesting fleet, [`crate::FleetSpec::attest`].)
//! * `failing-attestation`: something extends the agent's PCR with a measurement the boot's
//!   log does not show (an unlogged, extra boot component), at once and again at every boot
//!   while the compromise lasts: every quote fails its replay, `attestation_failed`.
//!   (Needs an attesting fleet.)
//! * `forged-report`: the device tells the server it runs a firmware version no release has
//!   (its reports are forged; its slots are untouched): `unknown_firmware`.
//! * `stolen-key`: the device runs a release signed with the vendor's stolen key that the
//!   server's registry never received ([`crate::FleetSpec::stolen`]): it boots, reports its
//!   version, and (attesting fleets) measures its image: `unknown_firmware`, and
//!   `attestation_failed` where attestation runs.
//!
//! A compromise lives in the firmware it infected: a re-image that writes both slots (the
//! agent's Mirroring phase, reported `installed` with both slots) removes it. The device is then
//! **recovered**. **Contained** is the first poll answer carrying the server's signed quarantine
//! statement (`quarantined`); healthy devices that ever get one are counted as wrongly
//! quarantined. Detection is the server's to say (its incidents name the device): the game-day
//! harness reads it from the incidents API.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::SimError;
use crate::rng::Rng;

/// Longest delay before a compromise, seconds (a week: a typo, not a plan, beyond it).
const MAX_AT_SECS: f64 = 7.0 * 86_400.0;

/// What an attacker did to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompromiseKind {
    TamperedSlot,
    FailingAttestation,
    ForgedReport,
    StolenKey,
}

impl CompromiseKind {
    pub const ALL: [CompromiseKind; 4] = [
        CompromiseKind::TamperedSlot,
        CompromiseKind::FailingAttestation,
        CompromiseKind::ForgedReport,
        CompromiseKind::StolenKey,
    ];

    /// The name on the command line (`--compromise tampered-slot=5`).
    pub fn as_str(self) -> &'static str {
        match self {
            CompromiseKind::TamperedSlot => "tampered-slot",
            CompromiseKind::FailingAttestation => "failing-attestation",
            CompromiseKind::ForgedReport => "forged-report",
            CompromiseKind::StolenKey => "stolen-key",
        }
    }

    /// Whether it shows only through attestation (the fleet must attest).
    pub fn needs_attestation(self) -> bool {
        matches!(
            self,
            CompromiseKind::TamperedSlot | CompromiseKind::FailingAttestation
        )
    }
}

impl fmt::Display for CompromiseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompromiseKind {
    type Err = String;

    fn from_str(s: &str) -> Result<CompromiseKind, String> {
        CompromiseKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a compromise: give one of {}",
                    CompromiseKind::ALL.map(CompromiseKind::as_str).join(", ")
                )
            })
    }
}

/// `count` devices compromised `at` after the fleet starts: `KIND=COUNT[@SECS]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Compromise {
    pub kind: CompromiseKind,
    pub count: usize,
    pub at: Duration,
}

impl FromStr for Compromise {
    type Err = SimError;

    /// `tampered-slot=5@60`: 5 devices get a tampered slot 60 s into the run (no `@`: 0 s).
    fn from_str(s: &str) -> Result<Compromise, SimError> {
        let bad = |reason: String| SimError::Parse {
            what: "compromise",
            input: s.to_owned(),
            reason,
        };
        let Some((kind, rest)) = s.split_once('=') else {
            return Err(bad(
                "expected KIND=COUNT[@SECS], e.g. tampered-slot=5@60".into()
            ));
        };
        let kind: CompromiseKind = kind.trim().parse().map_err(bad)?;
        let (count, at) = match rest.split_once('@') {
            Some((c, a)) => (c, Some(a)),
            None => (rest, None),
        };
        let count: usize = count
            .trim()
            .parse()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| bad(format!("{count:?} is not a device count of at least 1")))?;
        let at = match at {
            None => Duration::ZERO,
            Some(a) => a
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|a| (0.0..=MAX_AT_SECS).contains(a))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    bad(format!(
                        "{a:?} is not a time in seconds from 0 to {MAX_AT_SECS}"
                    ))
                })?,
        };
        Ok(Compromise { kind, count, at })
    }
}

/// Which devices each compromise hits: distinct devices, chosen for the seed (the same fleet
/// and seed make the same game day). Returns (device index, kind, at) sorted by index.
pub(crate) fn victims(
    compromises: &[Compromise],
    devices: usize,
    seed: u64,
) -> Result<Vec<(usize, CompromiseKind, Duration)>, SimError> {
    let wanted: usize = compromises.iter().map(|c| c.count).sum();
    if wanted > devices {
        return Err(SimError::Spec(format!(
            "{wanted} devices to compromise among {devices}: compromise at most every device"
        )));
    }
    // A partial Fisher-Yates shuffle of the device indices: the first `wanted` are the victims.
    let mut order: Vec<usize> = (0..devices).collect();
    let mut rng = Rng::new(seed, 0, "compromise", 0);
    for i in 0..wanted {
        let j = i + rng.below((devices - i) as u64) as usize;
        order.swap(i, j);
    }
    let mut out = Vec::with_capacity(wanted);
    let mut next = order.into_iter();
    for c in compromises {
        for index in next.by_ref().take(c.count) {
            out.push((index, c.kind, c.at));
        }
    }
    out.sort_by_key(|(index, _, _)| *index);
    Ok(out)
}

/// The firmware a `stolen-key` device runs: signed with the vendor's key but never given to
/// the server's registry. The game-day harness signs a real one; by default a made-up one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StolenRelease {
    pub target: String,
    pub version: String,
    /// Lowercase hex.
    pub sha256: String,
    pub length: u64,
}

impl StolenRelease {
    /// A release no server knows (its hash is of a fixed text).
    pub fn made_up(length: u64) -> StolenRelease {
        let digest =
            ring::digest::digest(&ring::digest::SHA256, b"rampart-sim stolen-key firmware");
        StolenRelease {
            target: "stolen-9.9.9/fw.img".into(),
            version: "9.9.9-stolen".into(),
            sha256: hex::encode(digest.as_ref()),
            length,
        }
    }
}

/// The version a `forged-report` device claims.
pub const FORGED_VERSION: &str = "0.0.0-forged";

/// One compromised device's game day, times since the fleet started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompromiseRecord {
    pub device: String,
    pub kind: CompromiseKind,
    /// When the compromise was planned (`None` below: not yet).
    pub planned: Duration,
    pub compromised: Option<Duration>,
    /// The first poll answer carrying a signed `quarantined` statement, after the compromise.
    pub contained: Option<Duration>,
    /// A re-image completed on both slots after the compromise.
    pub recovered: Option<Duration>,
}

/// The game day of a fleet so far ([`crate::FleetHandle::game_day`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GameDay {
    /// Every compromised (or planned) device, in device order.
    pub compromised: Vec<CompromiseRecord>,
    /// Healthy devices that got a signed `quarantined` statement, and when (first).
    pub healthy_quarantined: Vec<(String, Duration)>,
}

impl GameDay {
    /// Compromises applied so far.
    pub fn applied(&self) -> usize {
        self.compromised
            .iter()
            .filter(|r| r.compromised.is_some())
            .count()
    }

    pub fn contained(&self) -> usize {
        self.compromised
            .iter()
            .filter(|r| r.contained.is_some())
            .count()
    }

    pub fn recovered(&self) -> usize {
        self.compromised
            .iter()
            .filter(|r| r.recovered.is_some())
            .count()
    }

    /// Times from compromise to containment, of the contained devices.
    pub fn times_to_contain(&self) -> Vec<Duration> {
        self.since_compromise(|r| r.contained)
    }

    /// Times from compromise to recovery, of the recovered devices.
    pub fn times_to_recover(&self) -> Vec<Duration> {
        self.since_compromise(|r| r.recovered)
    }

    fn since_compromise(
        &self,
        at: impl Fn(&CompromiseRecord) -> Option<Duration>,
    ) -> Vec<Duration> {
        self.compromised
            .iter()
            .filter_map(|r| Some(at(r)?.saturating_sub(r.compromised?)))
            .collect()
    }
}

/// The `p`th percentile (0 to 100) of `values`, nearest rank; `None` when empty.
pub fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// A compromise on one device: when, and what it did.
#[derive(Debug, Clone)]
pub(crate) struct Infection {
    pub(crate) kind: CompromiseKind,
    /// ms since the fleet started.
    pub(crate) at: u64,
    pub(crate) compromised: Option<u64>,
    /// The re-image assignment done before the compromise (a later one recovers it).
    pub(crate) reimaged_before: Option<String>,
    /// The slot the compromise lives in, and that slot's content then: it acts only when that
    /// slot boots with that content (a re-image boots the other slot, then overwrites it).
    pub(crate) infected: Option<(rampart_boot::ab::Slot, Option<String>)>,
    pub(crate) contained: Option<u64>,
    pub(crate) recovered: Option<u64>,
}

impl Infection {
    pub(crate) fn new(kind: CompromiseKind, at: Duration) -> Infection {
        Infection {
            kind,
            at: u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
            compromised: None,
            reimaged_before: None,
            infected: None,
            contained: None,
            recovered: None,
        }
    }

    /// Applied and not yet removed by a re-image.
    pub(crate) fn active(&self) -> bool {
        self.compromised.is_some() && self.recovered.is_none()
    }

    pub(crate) fn is(&self, kind: CompromiseKind) -> bool {
        self.kind == kind && self.active()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compromises_parse_with_clear_errors() {
        let c: Compromise = "tampered-slot=5@60".parse().unwrap();
        assert_eq!(c.kind, CompromiseKind::TamperedSlot);
        assert_eq!(c.count, 5);
        assert_eq!(c.at, Duration::from_secs(60));
        let c: Compromise = "forged-report=2".parse().unwrap();
        assert_eq!(c.at, Duration::ZERO);
        for (bad, want) in [
            ("tampered-slot", "KIND=COUNT"),
            ("bogus=1", "not a compromise"),
            ("stolen-key=0", "at least 1"),
            ("stolen-key=x", "device count"),
            ("stolen-key=1@-3", "time in seconds"),
            ("stolen-key=1@1e9", "time in seconds"),
        ] {
            let e = bad.parse::<Compromise>().unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn victims_are_distinct_deterministic_and_bounded() {
        let plan: Vec<Compromise> = ["tampered-slot=3", "forged-report=4@10"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let v = victims(&plan, 50, 7).unwrap();
        assert_eq!(v.len(), 7);
        let mut indices: Vec<usize> = v.iter().map(|(i, _, _)| *i).collect();
        indices.dedup();
        assert_eq!(indices.len(), 7, "{v:?}");
        assert_eq!(
            v.iter()
                .filter(|(_, k, _)| *k == CompromiseKind::ForgedReport)
                .count(),
            4
        );
        assert_eq!(v, victims(&plan, 50, 7).unwrap());
        assert_ne!(v, victims(&plan, 50, 8).unwrap());
        let e = victims(&plan, 6, 1).unwrap_err().to_string();
        assert!(e.contains("7 devices to compromise among 6"), "{e}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = |n: u64| Duration::from_secs(n);
        let v: Vec<Duration> = (1..=20).map(s).collect();
        assert_eq!(percentile(&v, 50.0), Some(s(10)));
        assert_eq!(percentile(&v, 95.0), Some(s(19)));
        assert_eq!(percentile(&v, 100.0), Some(s(20)));
        assert_eq!(percentile(&[s(3)], 95.0), Some(s(3)));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
