//! What a simulated fleet is: the server it talks to and the trust it is provisioned with, how
//! many devices of which hardware in which regions, the firmware they leave the factory with,
//! the faults injected, and the timing. Also the parsers for the command line's compact forms
//! (`board-a=70,board-b=30`, `fw-3.0.0:board-a=0.9`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::SimError;
use crate::compromise::{Compromise, StolenRelease};
use crate::rng::Rng;

/// Weighted names, e.g. hardware models `board-a=70,board-b=30` (weights are relative).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Weights(pub Vec<(String, u32)>);

impl Weights {
    /// One name for every device.
    pub fn single(name: &str) -> Weights {
        Weights(vec![(name.to_owned(), 1)])
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    /// A weighted pick ("" when there are no names).
    pub(crate) fn pick(&self, rng: &mut Rng) -> &str {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut x = rng.below(total);
        for (name, w) in &self.0 {
            if x < u64::from(*w) {
                return name;
            }
            x -= u64::from(*w);
        }
        ""
    }

    fn validate(&self, what: &str) -> Result<(), SimError> {
        for (name, _) in &self.0 {
            check_name(what, name)?;
        }
        if !self.0.is_empty() && self.0.iter().all(|(_, w)| *w == 0) {
            return Err(SimError::Spec(format!("{what}: every weight is 0")));
        }
        Ok(())
    }
}

impl FromStr for Weights {
    type Err = SimError;

    /// `name=weight,name=weight` (a bare `name` weighs 1).
    fn from_str(s: &str) -> Result<Weights, SimError> {
        let bad = |reason: String| SimError::Parse {
            what: "weights",
            input: s.to_owned(),
            reason,
        };
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, weight) = match item.rsplit_once('=') {
                Some((n, w)) => (
                    n.trim(),
                    w.trim().parse::<u32>().map_err(|_| {
                        bad(format!(
                            "{w:?} is not a whole-number weight (e.g. board-a=70)"
                        ))
                    })?,
                ),
                None => (item, 1),
            };
            if name.is_empty() {
                return Err(bad(format!("{item:?} has no name before '='")));
            }
            if out.iter().any(|(n, _): &(String, u32)| n == name) {
                return Err(bad(format!("{name:?} is given twice")));
            }
            out.push((name.to_owned(), weight));
        }
        if out.is_empty() {
            return Err(bad("no names given (e.g. board-a=70,board-b=30)".into()));
        }
        let w = Weights(out);
        w.validate("weights").map_err(|e| bad(e.to_string()))?;
        Ok(w)
    }
}

/// Tags given to a share of the fleet each, from `canary=5,beta=20` (percent of devices).
pub fn parse_tags(s: &str) -> Result<Vec<(String, f64)>, SimError> {
    let bad = |reason: String| SimError::Parse {
        what: "tags",
        input: s.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((name, pct)) = item.rsplit_once('=') else {
            return Err(bad(format!(
                "{item:?} has no share: write tag=PERCENT (e.g. canary=5)"
            )));
        };
        let pct: f64 = pct
            .trim()
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..=100.0).contains(p))
            .ok_or_else(|| bad(format!("{pct:?} is not a percentage from 0 to 100")))?;
        check_name("tag", name.trim()).map_err(|e| bad(e.to_string()))?;
        out.push((name.trim().to_owned(), pct / 100.0));
    }
    Ok(out)
}

fn check_name(what: &str, name: &str) -> Result<(), SimError> {
    if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control() || c == ',') {
        return Err(SimError::Spec(format!(
            "{what} {name:?} must be 1 to 128 characters without control characters or commas"
        )));
    }
    Ok(())
}

/// A fault that hits devices running (or installing) a release, on some hardware, with some
/// probability: `fw-3.0.0:board-a=0.9` hits 90 % of board-a devices on any release whose target
/// or version contains `fw-3.0.0`; `3.0.0=0.5` hits half of every model.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Matched against the release's target path and version (substring).
    pub release: String,
    /// Only this hardware id (`None`: every model).
    pub hardware_id: Option<String>,
    /// Share of matching devices hit, 0 to 1.
    pub probability: f64,
}

impl FaultRule {
    pub(crate) fn matches(&self, target: &str, version: &str, hardware_id: &str) -> bool {
        (target.contains(&self.release) || version.contains(&self.release))
            && self.hardware_id.as_deref().is_none_or(|h| h == hardware_id)
    }

    /// The probability of the first rule matching, if any.
    pub(crate) fn first(
        rules: &[FaultRule],
        target: &str,
        version: &str,
        hardware_id: &str,
    ) -> Option<f64> {
        rules
            .iter()
            .find(|r| r.matches(target, version, hardware_id))
            .map(|r| r.probability)
    }
}

impl FromStr for FaultRule {
    type Err = SimError;

    /// `RELEASE[:HARDWARE]=PROBABILITY`.
    fn from_str(s: &str) -> Result<FaultRule, SimError> {
        let bad = |reason: String| SimError::Parse {
            what: "fault rule",
            input: s.to_owned(),
            reason,
        };
        let Some((left, p)) = s.rsplit_once('=') else {
            return Err(bad(
                "expected RELEASE[:HARDWARE]=PROBABILITY, e.g. fw-3.0.0:board-a=0.9".into(),
            ));
        };
        let probability = parse_probability(p.trim()).map_err(bad)?;
        let (release, hardware_id) = match left.rsplit_once(':') {
            Some((r, h)) if !h.trim().is_empty() && h.trim() != "*" => {
                (r.trim(), Some(h.trim().to_owned()))
            }
            Some((r, _)) => (r.trim(), None),
            None => (left.trim(), None),
        };
        if release.is_empty() {
            return Err(bad(
                "no release given before the model (e.g. fw-3.0.0:board-a=0.9)".into(),
            ));
        }
        Ok(FaultRule {
            release: release.to_owned(),
            hardware_id,
            probability,
        })
    }
}

/// A probability: `0.9` or `90%`.
pub fn parse_probability(s: &str) -> Result<f64, String> {
    let value = match s.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.parse::<f64>(),
    };
    value
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("{s:?} is not a probability from 0 to 1 (or 0% to 100%)"))
}

/// The firmware every device leaves the factory with: committed in slot A (slot B empty), so
/// the first update goes to slot B. It need not be in the image repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialFirmware {
    pub target: String,
    pub version: String,
    pub security_version: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub length: u64,
}

/// A transparency-log policy devices are provisioned with: releases must then carry a
/// tlog-proof with the witness quorum (`rampart_agent::check_logged`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTrust {
    /// The witness policy text (`rampart log policy` format).
    pub policy: String,
    /// The vendor's release key, as a signed-note verifier key.
    pub release_key: String,
}

/// Faults injected into the fleet. Every choice is deterministic for a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// The new release boots but fails its health check (→ rollback, `health_check_failed`).
    pub health: Vec<FaultRule>,
    /// The new release never comes up (→ the bootloader's counter runs out,
    /// `bootloader_fallback`).
    pub no_boot: Vec<FaultRule>,
    /// Probability that a device loses power once during the install and boot flow of a
    /// release, at a random write step (mid-download, between state and bootloader writes,
    /// during the health check, during a rollback).
    pub crash_rate: f64,
    /// Share of devices on a slow link.
    pub slow_rate: f64,
    /// Download rate of slow-link devices, bytes per second.
    pub slow_bytes_per_sec: u64,
    /// Share of devices that go offline (no network) once, for `offline_for`, starting at a
    /// random time within the first `offline_for` of the run.
    pub offline_rate: f64,
    pub offline_for: Duration,
    /// Share of devices that start on a low battery (10 %) and off mains: they defer `soft`
    /// updates. The others report 40-100 % battery, half of them on mains.
    pub low_battery_rate: f64,
    /// Low-battery devices are plugged in (on mains) after this long; `None`: never.
    pub recharge_after: Option<Duration>,
    /// Share of devices that ignore a signed quarantine instruction (no containment hook, no
    /// acknowledgement): the server's enforcement must hold without them.
    pub uncooperative_rate: f64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            health: Vec::new(),
            no_boot: Vec::new(),
            crash_rate: 0.0,
            slow_rate: 0.0,
            slow_bytes_per_sec: 64 * 1024,
            offline_rate: 0.0,
            offline_for: Duration::from_secs(60),
            low_battery_rate: 0.0,
            recharge_after: None,
            uncooperative_rate: 0.0,
        }
    }
}

/// Timing of the simulated devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Poll at this interval instead of the server's `poll_interval_secs` (tests, demos).
    pub poll_interval: Option<Duration>,
    /// Devices first power on at random times within this span (no thundering herd at start).
    pub boot_spread: Duration,
    /// How long a reboot (or the power-off after a crash) takes.
    pub reboot_delay: Duration,
    /// Longest wait after consecutive failures (the agent's `max_backoff_secs`).
    pub max_backoff: Duration,
    /// Resume checkpoints, as the agent's `[install]` (bytes and time since the last one).
    pub checkpoint_bytes: u64,
    pub checkpoint_every: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            poll_interval: None,
            boot_spread: Duration::from_secs(10),
            reboot_delay: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            checkpoint_bytes: 4 << 20,
            checkpoint_every: Duration::from_secs(5),
        }
    }
}

/// Everything needed to build a fleet (see [`crate::Fleet::build`]).
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// The device API, `https://host:port`.
    pub server_url: String,
    /// The CA certificate(s) the server's certificate must chain to (PEM).
    pub server_ca_pem: Vec<u8>,
    /// The image repository's root devices pin (`metadata/1.root.json` or later).
    pub image_root: Vec<u8>,
    /// The director root devices pin (`rampart director init` writes `1.root.json`).
    pub director_root: Vec<u8>,
    /// Provision the devices with a transparency-log policy.
    pub log: Option<LogTrust>,
    /// Number of devices.
    pub devices: usize,
    /// Device ids are `<prefix>-<n>` (zero-padded).
    pub id_prefix: String,
    /// Hardware ids and their shares.
    pub models: Weights,
    /// Regions and their shares (empty: no region).
    pub regions: Weights,
    /// Tags, each given to a share (0 to 1) of the devices.
    pub tags: Vec<(String, f64)>,
    pub initial: InitialFirmware,
    pub faults: Faults,
    pub timing: Timing,
    /// Threads serving device events (each makes blocking HTTPS calls).
    pub workers: usize,
    pub seed: u64,
    /// Where the devices' state directories go (must be empty or absent); `None`: a temporary
    /// directory removed with the fleet.
    pub state_root: Option<PathBuf>,
    /// Capacity of each in-memory slot, bytes.
    pub slot_capacity: u64,
    /// Boot attempts a new slot gets (the agent's `bootloader.tries`).
    pub tries: u8,
    /// Validity of the issued device certificates, days.
    pub cert_validity_days: u32,
    /// Each device has a software TPM (`rampart_attest::soft::SoftTpm`, its keys derived from
    /// the seed and the device's index): the agent measures every boot into it and answers
    /// the server's attestation requests (enrolment, quotes) with it, as on real hardware.
    pub attest: bool,
    /// Game days: devices compromised during the run ([`crate::compromise`]).
    pub compromises: Vec<Compromise>,
    /// What `stolen-key` devices run (`None`: [`StolenRelease::made_up`]).
    pub stolen: Option<StolenRelease>,
}

impl FleetSpec {
    /// A spec with defaults: 100 `board-a` devices without region or tags, no faults, 32
    /// workers, seed 1, a temporary state root.
    pub fn new(
        server_url: &str,
        server_ca_pem: Vec<u8>,
        image_root: Vec<u8>,
        director_root: Vec<u8>,
        initial: InitialFirmware,
    ) -> FleetSpec {
        FleetSpec {
            server_url: server_url.trim_end_matches('/').to_owned(),
            server_ca_pem,
            image_root,
            director_root,
            log: None,
            devices: 100,
            id_prefix: "sim".into(),
            models: Weights::single("board-a"),
            regions: Weights::default(),
            tags: Vec::new(),
            initial,
            faults: Faults::default(),
            timing: Timing::default(),
            workers: 32,
            seed: 1,
            state_root: None,
            slot_capacity: 1 << 30,
            tries: rampart_boot::ab::DEFAULT_TRIES,
            cert_validity_days: 30,
            attest: false,
            compromises: Vec::new(),
            stolen: None,
        }
    }

    /// The id of device `index`.
    pub fn device_id(&self, index: usize) -> String {
        let width = self
            .devices
            .saturating_sub(1)
            .max(1)
            .to_string()
            .len()
            .max(5);
        format!("{}-{index:0width$}", self.id_prefix)
    }

    /// Checks what does not need the network.
    pub fn validate(&self) -> Result<(), SimError> {
        let spec = |m: String| Err(SimError::Spec(m));
        if !(self.server_url.starts_with("https://") && self.server_url.len() > 8) {
            return spec(format!(
                "server URL {:?} must be https://host:port (the device API is mutual TLS)",
                self.server_url
            ));
        }
        if self.devices == 0 || self.devices > 1_000_000 {
            return spec(format!("{} devices: give 1 to 1,000,000", self.devices));
        }
        if self.workers == 0 || self.workers > 1024 {
            return spec(format!("{} workers: give 1 to 1024", self.workers));
        }
        if self.tries == 0 || self.tries > rampart_boot::ab::MAX_TRIES {
            return spec(format!(
                "tries = {}: give 1 to {}",
                self.tries,
                rampart_boot::ab::MAX_TRIES
            ));
        }
        if self.cert_validity_days == 0 {
            return spec("the device certificates need a validity of at least 1 day".into());
        }
        rampart_pki::validate_device_id(&self.device_id(self.devices - 1)).map_err(|_| {
            SimError::Spec(format!(
                "device id prefix {:?} makes invalid device ids: use A-Z a-z 0-9 . _ : -",
                self.id_prefix
            ))
        })?;
        if self.models.0.is_empty() {
            return spec("give at least one hardware model".into());
        }
        self.models.validate("hardware model")?;
        self.regions.validate("region")?;
        for (tag, share) in &self.tags {
            check_name("tag", tag)?;
            check_share(&format!("share of tag {tag:?}"), *share)?;
        }
        let f = &self.faults;
        for rule in f.health.iter().chain(&f.no_boot) {
            check_share(
                &format!("fault probability for {:?}", rule.release),
                rule.probability,
            )?;
        }
        check_share("crash rate", f.crash_rate)?;
        check_share("slow-link share", f.slow_rate)?;
        check_share("offline share", f.offline_rate)?;
        check_share("low-battery share", f.low_battery_rate)?;
        if f.slow_rate > 0.0 && f.slow_bytes_per_sec == 0 {
            return spec("slow links need a rate of at least 1 byte per second".into());
        }
        if f.offline_rate > 0.0 && f.offline_for.is_zero() {
            return spec("offline devices need an offline time above 0".into());
        }
        let t = &self.timing;
        if t.poll_interval.is_some_and(|p| p.is_zero()) {
            return spec("the poll interval must be above 0".into());
        }
        if t.max_backoff.is_zero() {
            return spec("the maximum backoff must be above 0".into());
        }
        if t.checkpoint_bytes == 0 {
            return spec("checkpoint bytes must be above 0".into());
        }
        if let Some(c) = self
            .compromises
            .iter()
            .find(|c| c.kind.needs_attestation() && !self.attest)
        {
            return spec(format!(
                "a {} compromise shows only through attestation: give the fleet TPMs (attest)",
                c.kind
            ));
        }
        crate::compromise::victims(&self.compromises, self.devices, self.seed)?;
        if let Some(s) = &self.stolen
            && (s.target.is_empty()
                || s.version.is_empty()
                || s.sha256.len() != 64
                || !s.sha256.bytes().all(|b| b.is_ascii_hexdigit())
                || s.length == 0
                || s.length > self.slot_capacity)
        {
            return spec(format!(
                "the stolen-key release {:?} needs a target, a version, a 64-hex-digit sha256 and a length from 1 to the slot capacity",
                s.target
            ));
        }
        let i = &self.initial;
        if i.target.is_empty() || i.version.is_empty() {
            return spec("the initial firmware needs a target and a version".into());
        }
        if i.sha256.len() != 64 || !i.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return spec(format!(
                "the initial firmware's sha256 {:?} is not 64 hex digits",
                i.sha256
            ));
        }
        if i.length > self.slot_capacity {
            return spec(format!(
                "the initial firmware ({} bytes) does not fit a slot of {} bytes",
                i.length, self.slot_capacity
            ));
        }
        Ok(())
    }
}

fn check_share(what: &str, p: f64) -> Result<(), SimError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(SimError::Spec(format!("{what} {p} is not between 0 and 1")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_and_pick_in_proportion() {
        let w: Weights = "board-a=70, board-b=30".parse().unwrap();
        assert_eq!(
            w.0,
            vec![("board-a".to_owned(), 70), ("board-b".to_owned(), 30)]
        );
        let mut rng = Rng::new(1, 0, "t", 0);
        let a = (0..10_000)
            .filter(|_| w.pick(&mut rng) == "board-a")
            .count();
        assert!((6_700..7_300).contains(&a), "{a}");
        assert_eq!("eu,us".parse::<Weights>().unwrap().0.len(), 2);
        for bad in ["", "a=x", "=3", "a=1,a=2", "a=0", "a=-1"] {
            let e = bad.parse::<Weights>().unwrap_err().to_string();
            assert!(e.contains("weights"), "{bad}: {e}");
        }
        assert_eq!(Weights::default().pick(&mut rng), "");
    }

    #[test]
    fn fault_rules_parse_and_match() {
        let r: FaultRule = "fw-3.0.0:board-a=0.9".parse().unwrap();
        assert_eq!(r.release, "fw-3.0.0");
        assert_eq!(r.hardware_id.as_deref(), Some("board-a"));
        assert_eq!(r.probability, 0.9);
        assert!(r.matches("fw-3.0.0/fw.img", "3.0.0", "board-a"));
        assert!(!r.matches("fw-3.0.0/fw.img", "3.0.0", "board-b"));
        let any: FaultRule = "3.0.0=50%".parse().unwrap();
        assert_eq!(any.hardware_id, None);
        assert_eq!(any.probability, 0.5);
        assert!(any.matches("x/fw.img", "3.0.0", "board-z"));
        assert_eq!("2.0:*=1".parse::<FaultRule>().unwrap().hardware_id, None);
        for bad in ["fw", "fw=2", "fw=-0.1", ":board-a=0.5", "fw=abc"] {
            assert!(bad.parse::<FaultRule>().is_err(), "{bad}");
        }
        assert_eq!(
            FaultRule::first(&[r.clone(), any.clone()], "3.0.0/x", "3.0.0", "board-b"),
            Some(0.5)
        );
    }

    #[test]
    fn tags_are_percentages() {
        assert_eq!(
            parse_tags("canary=5, beta=20").unwrap(),
            vec![("canary".to_owned(), 0.05), ("beta".to_owned(), 0.2)]
        );
        assert!(parse_tags("canary").is_err());
        assert!(parse_tags("canary=120").is_err());
    }

    fn spec() -> FleetSpec {
        FleetSpec::new(
            "https://127.0.0.1:1",
            vec![],
            vec![],
            vec![],
            InitialFirmware {
                target: "1.0.0/fw.img".into(),
                version: "1.0.0".into(),
                security_version: 1,
                sha256: "ab".repeat(32),
                length: 10,
            },
        )
    }

    #[test]
    fn specs_are_validated_with_clear_messages() {
        spec().validate().unwrap();
        assert_eq!(spec().device_id(7), "sim-00007");
        let check = |f: &dyn Fn(&mut FleetSpec), want: &str| {
            let mut s = spec();
            f(&mut s);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        };
        check(&|s| s.server_url = "http://x".into(), "https://");
        check(&|s| s.devices = 0, "devices");
        check(&|s| s.workers = 0, "workers");
        check(&|s| s.id_prefix = "a b".into(), "prefix");
        check(&|s| s.faults.crash_rate = 1.5, "crash rate");
        check(&|s| s.initial.sha256 = "x".into(), "sha256");
        check(&|s| s.models = Weights::default(), "hardware model");
        check(
            &|s| {
                s.faults.slow_rate = 0.5;
                s.faults.slow_bytes_per_sec = 0;
            },
            "slow links",
        );
    }
}
