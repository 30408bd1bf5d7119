//! The device model on a virtual clock against an in-memory server: no threads, no sleeps, no
//! TLS. What the real server and the agent's verification add is covered by `tests/` (the real
//! `rampart-server` in-process); this covers the state machine, the faults and the reports.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_agent::source::{Refusal, Verified};
use rampart_boot::ab::Slot;
use rampart_boot::flow::{Reason, Release};
use rampart_core::metadata::TargetFile;
use rampart_protocol::ReportStatus;
use rampart_tuf_client::fetch::MinRate;
use serde_json::Value;

use crate::device::CrashPoint;
use crate::link::{Assignment, Connect, Identity, PollAnswer, Session, VerifyError};
use crate::{Fleet, FleetSpec, InitialFirmware, UpdateKind};

const V1: &str = "1.0.0/fw.img";
const V2: &str = "2.0.0/fw.img";
const V3: &str = "3.0.0/fw.img";

fn image(version: &str, len: usize) -> Vec<u8> {
    let mut v = format!("RAMPART-IMAGE {version}\n").into_bytes();
    let mut i = 0u32;
    while v.len() < len {
        v.extend_from_slice(format!("{version} block {i:08}\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

fn sha(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

// ---- the in-memory server ----------------------------------------------------------------

struct FakeRelease {
    version: String,
    security_version: u64,
    hardware: Vec<String>,
    /// What the signed metadata describes.
    signed: Arc<Vec<u8>>,
    /// What the server sends (a tampered artifact differs).
    served: Arc<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Stored {
    device: String,
    status: String,
    progress: Option<u8>,
    details: Value,
}

#[derive(Default)]
struct FakeState {
    releases: HashMap<String, FakeRelease>,
    /// (assignment id, target, type) for every device.
    assignment: Option<(String, String, UpdateKind)>,
    reports: Vec<Stored>,
    ids: HashSet<(String, String)>,
    refuse_reports: bool,
    /// Each device's first download drops its connection after this many bytes.
    drop_after: Option<u64>,
    dropped: HashSet<String>,
    /// Artifact requests: (device, offset asked).
    opens: Vec<(String, u64)>,
    facts: HashMap<String, Value>,
    /// Devices the server quarantined (their polls carry the statement).
    quarantined: HashSet<String>,
    /// Re-image assignments (id, target) by device, over the fleet's assignment.
    reimage: HashMap<String, (String, String)>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }

    fn release(&self, target: &str, version: &str, sv: u64, hardware: &[&str], bytes: Vec<u8>) {
        let bytes = Arc::new(bytes);
        self.state().releases.insert(
            target.into(),
            FakeRelease {
                version: version.into(),
                security_version: sv,
                hardware: hardware.iter().map(|h| h.to_string()).collect(),
                signed: bytes.clone(),
                served: bytes,
            },
        );
    }

    fn tamper(&self, target: &str) {
        let mut st = self.state();
        let r = st.releases.get_mut(target).unwrap();
        let mut bad = r.signed.as_ref().clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x5a;
        r.served = Arc::new(bad);
    }

    fn assign(&self, id: &str, target: &str, kind: UpdateKind) {
        self.state().assignment = Some((id.into(), target.into(), kind));
    }

    fn reports(&self, status: &str) -> Vec<Stored> {
        self.state()
            .reports
            .iter()
            .filter(|r| r.status == status)
            .cloned()
            .collect()
    }

    /// Distinct devices that sent a report with this status.
    fn devices_reporting(&self, status: &str) -> HashSet<String> {
        self.reports(status).into_iter().map(|r| r.device).collect()
    }
}

impl Connect for Fake {
    fn connect(&self, device: &Identity) -> Result<Box<dyn Session>, String> {
        Ok(Box::new(FakeSession {
            fake: self.clone(),
            device: device.id.clone(),
        }))
    }
}

struct FakeSession {
    fake: Fake,
    device: String,
}

struct FakeReader {
    data: Arc<Vec<u8>>,
    pos: usize,
    drop_at: Option<usize>,
}

impl Read for FakeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.drop_at.is_some_and(|d| self.pos >= d) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ));
        }
        // At most 4 kB at a time, as from a socket.
        let end = self
            .data
            .len()
            .min(self.pos + buf.len().min(4096))
            .min(self.drop_at.unwrap_or(usize::MAX));
        let n = end - self.pos;
        buf[..n].copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(n)
    }
}

impl Session for FakeSession {
    fn poll(&mut self, facts: &rampart_protocol::DeviceFacts) -> Result<PollAnswer, String> {
        let mut st = self.fake.state();
        let facts = serde_json::to_value(facts).map_err(|e| e.to_string())?;
        st.facts.insert(self.device.clone(), facts);
        let reimage = st.reimage.get(&self.device).map(|(id, target)| Assignment {
            id: id.clone(),
            target: target.clone(),
            director_version: 1,
            kind: UpdateKind::Forced,
            reimage: true,
        });
        Ok(PollAnswer {
            interval_secs: Some(60),
            attestation: None,
            quarantine: st
                .quarantined
                .contains(&self.device)
                .then(|| game_day::quarantine_statement(&self.device)),
            evidence: None,
            assignment: reimage.or_else(|| {
                st.assignment.as_ref().map(|(id, target, kind)| Assignment {
                    id: id.clone(),
                    target: target.clone(),
                    director_version: 1,
                    kind: *kind,
                    reimage: false,
                })
            }),
        })
    }

    fn verify(
        &mut self,
        store: &dyn rampart_tuf_client::store::MetadataStore,
        state_dir: &Path,
        hardware_id: &str,
        assignment: &Assignment,
        _now: i64,
    ) -> Result<Option<Verified>, VerifyError> {
        let st = self.fake.state();
        let refuse = |reason: Reason, message: String| VerifyError {
            reason,
            verification: true,
            message,
        };
        let r = st.releases.get(&assignment.target).ok_or_else(|| {
            refuse(
                Reason::MetadataInvalid,
                format!("{} is not in the repository", assignment.target),
            )
        })?;
        if !r.hardware.iter().any(|h| h == hardware_id) {
            return Err(refuse(
                Reason::HardwareIncompatible,
                format!("not built for {hardware_id}"),
            ));
        }
        let installed = rampart_agent::director::installed_security_version(state_dir)
            .map_err(|e| refuse(Reason::MetadataInvalid, e.to_string()))?;
        if r.security_version < installed {
            return Err(refuse(
                Reason::SecurityVersionRollback,
                "anti-rollback".into(),
            ));
        }
        // As `verify_assigned`: what was accepted is stored (director targets, then version).
        for (file, bytes) in [
            ("fake-director-targets.json", "{}"),
            ("fake-director-version", "1\n"),
        ] {
            store
                .replace(&state_dir.join(file), bytes.as_bytes())
                .map_err(|e| refuse(Reason::MetadataInvalid, e.to_string()))?;
        }
        let sha256 = sha(&r.signed);
        Ok(Some(Verified {
            release: Release {
                target: assignment.target.clone(),
                version: r.version.clone(),
                security_version: r.security_version,
                length: r.signed.len() as u64,
                hashes: BTreeMap::from([("sha256".to_owned(), sha256.clone())]),
                assignment: Some(assignment.id.clone()),
                reimage: assignment.reimage,
            },
            info: TargetFile {
                length: r.signed.len() as u64,
                hashes: indexmap::IndexMap::from([("sha256".to_owned(), sha256)]),
                custom: None,
            },
            url: format!("fake:{}", assignment.target),
        }))
    }

    fn open(&mut self, v: &Verified, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Refusal> {
        let mut guard = self.fake.state();
        let st = &mut *guard;
        st.opens.push((self.device.clone(), offset));
        let drop_at = match st.drop_after {
            Some(n) if st.dropped.insert(self.device.clone()) => Some(n as usize),
            _ => None,
        };
        let data = st.releases[&v.release.target].served.clone();
        Ok((
            Box::new(FakeReader {
                data,
                pos: offset as usize,
                drop_at,
            }),
            offset,
        ))
    }

    fn min_rate(&self) -> MinRate {
        MinRate::default()
    }

    fn report(
        &mut self,
        id: &str,
        status: ReportStatus,
        _assignment: Option<&str>,
        progress: Option<u8>,
        details: Value,
    ) -> Result<(), String> {
        let mut st = self.fake.state();
        if st.refuse_reports {
            return Err("HTTP 503: storage unavailable".into());
        }
        if st.ids.insert((self.device.clone(), id.to_owned())) {
            st.reports.push(Stored {
                device: self.device.clone(),
                status: status.as_str().to_owned(),
                progress,
                details,
            });
        }
        Ok(())
    }

    /// The in-memory server does not attest (the attested fleet runs against the real one).
    fn attestation(&self) -> Option<&dyn rampart_agent::attest::AttestationServer> {
        None
    }

    fn quarantine(
        &mut self,
        _: &dyn rampart_tuf_client::store::MetadataStore,
        _: &Path,
        _: &rampart_protocol::SignedQuarantine,
        _: i64,
    ) -> Result<bool, String> {
        Err("the in-memory server never quarantines".into())
    }
}

// ---- a fleet on a virtual clock ----------------------------------------------------------

struct Bench {
    fleet: Fleet,
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    now: u64,
    fake: Fake,
    v1: Vec<u8>,
}

const LEN: usize = 40_000;

fn spec(devices: usize, v1: &[u8]) -> FleetSpec {
    let mut s = FleetSpec::new(
        "https://fake.invalid",
        vec![],
        vec![],
        vec![],
        InitialFirmware {
            target: V1.into(),
            version: "1.0.0".into(),
            security_version: 1,
            sha256: sha(v1),
            length: v1.len() as u64,
        },
    );
    s.devices = devices;
    s.timing.poll_interval = Some(Duration::from_secs(10));
    s.timing.boot_spread = Duration::from_secs(5);
    s.timing.reboot_delay = Duration::from_secs(1);
    s.timing.max_backoff = Duration::from_secs(60);
    s.seed = 42;
    s
}

impl Bench {
    fn new(spec: FleetSpec, fake: Fake) -> Bench {
        let v1 = image("1.0.0", spec.initial.length as usize);
        let identities = (0..spec.devices)
            .map(|i| Identity {
                id: spec.device_id(i),
                cert_pem: String::new(),
                key_pem: rampart_pki::Zeroizing::new(String::new()),
            })
            .collect();
        let mut fleet = Fleet::assemble(spec, identities, Box::new(fake.clone()), false).unwrap();
        for (device, at) in fleet.devices.iter_mut().zip(&fleet.boot_at) {
            device.due = *at;
        }
        let queue = fleet
            .boot_at
            .iter()
            .enumerate()
            .map(|(i, at)| Reverse((*at, i)))
            .collect();
        Bench {
            fleet,
            queue,
            now: 0,
            fake,
            v1,
        }
    }

    /// Serves events in time order for `secs` of virtual time.
    fn run_for(&mut self, secs: u64) {
        let until = self.now + secs * 1000;
        while let Some(Reverse((at, i))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            if self.fleet.devices[i].due != at {
                // Replaced, as in the fleet's queue (a compromise rebooted the device).
                continue;
            }
            if let Some(next) = self.fleet.devices[i].step(&self.fleet.shared, at) {
                assert!(next >= at, "events never go back in time");
                self.fleet.devices[i].due = next;
                self.queue.push(Reverse((next, i)));
            }
        }
        self.now = until;
    }

    fn counter(&self, f: impl Fn(&crate::stats::Counters) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.fleet.shared.counters).load(std::sync::atomic::Ordering::Relaxed)
    }

    fn statuses(&self) -> Vec<crate::DeviceStatus> {
        self.fleet
            .devices
            .iter()
            .map(|d| d.snapshot(self.now))
            .collect()
    }

    fn assert_all_settled(&self) {
        for s in self.statuses() {
            assert_eq!(s.settled, Ok(()), "{} is not settled: {s:#?}", s.id);
        }
    }

    fn versions(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in self.statuses() {
            *out.entry(s.version).or_default() += 1;
        }
        out
    }
}

fn fleet(devices: usize, tweak: impl FnOnce(&mut FleetSpec)) -> Bench {
    let v1 = image("1.0.0", LEN);
    let mut s = spec(devices, &v1);
    tweak(&mut s);
    let fake = Fake::default();
    fake.release(V2, "2.0.0", 2, &["board-a", "board-b"], image("2.0.0", LEN));
    fake.release(V3, "3.0.0", 3, &["board-a", "board-b"], image("3.0.0", LEN));
    Bench::new(s, fake)
}

// ---- tests -------------------------------------------------------------------------------

mod game_day;
mod slot_versions;

#[test]
fn an_assigned_release_is_installed_committed_and_reported() {
    let mut b = fleet(40, |_| {});
    b.run_for(20);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("1.0.0".to_owned(), 40)]));
    let facts = b.fake.state().facts["sim-00000"].clone();
    assert_eq!(facts["firmware_version"], "1.0.0", "{facts}");
    assert_eq!(facts["hardware_id"], "board-a", "{facts}");
    assert_eq!(
        facts["slots"],
        serde_json::json!({"a": "active", "b": "good"})
    );
    assert!(facts["attributes"]["battery_pct"].is_u64(), "{facts}");

    b.fake.assign("asg-1", V2, UpdateKind::Forced);
    b.run_for(60);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("2.0.0".to_owned(), 40)]));
    assert_eq!(b.counter(|c| &c.installs), 40);
    for s in b.statuses() {
        assert_eq!(s.committed, Some(Slot::B), "{s:?}");
        assert_eq!(s.security_version, 2, "{s:?}");
        assert_eq!(s.last_result.unwrap().reason, Reason::Ok);
    }
    // The agent's reports: downloading (start and progress), rebooting, installed.
    for status in ["downloading", "rebooting", "installed"] {
        assert_eq!(b.fake.devices_reporting(status).len(), 40, "{status}");
    }
    let installed = b.fake.reports("installed");
    assert_eq!(installed.len(), 40, "one installed report per device");
    let r = &installed[0];
    assert_eq!(r.details["reason"], "ok");
    assert_eq!(r.details["version"], "2.0.0");
    assert_eq!(r.details["target"], V2);
    assert_eq!(r.details["slot"], "B");
    assert_eq!(r.details["slots"]["B"]["committed"], true);
    assert!(
        b.fake
            .reports("downloading")
            .iter()
            .any(|r| r.progress == Some(100)),
        "a final progress report"
    );
    let facts = b.fake.state().facts["sim-00000"].clone();
    assert_eq!(facts["firmware_version"], "2.0.0");
    assert_eq!(facts["security_version"], 2);
    assert_eq!(
        facts["slots"],
        serde_json::json!({"a": "good", "b": "active"})
    );

    // Up to date: no more downloads.
    let downloads = b.counter(|c| &c.downloads);
    b.run_for(60);
    assert_eq!(b.counter(|c| &c.downloads), downloads);
}

#[test]
fn health_failures_roll_back_only_the_hit_model_and_are_not_reinstalled() {
    let mut b = fleet(60, |s| {
        s.models = "board-a=50,board-b=50".parse().unwrap();
        s.faults.health.push("3.0.0:board-a=1".parse().unwrap());
    });
    b.fake.assign("asg-3", V3, UpdateKind::Forced);
    b.run_for(90);
    b.assert_all_settled();
    let statuses = b.statuses();
    let (a, other): (Vec<_>, Vec<_>) = statuses.iter().partition(|s| s.hardware_id == "board-a");
    assert!(!a.is_empty() && !other.is_empty());
    for s in &a {
        assert_eq!(s.version, "1.0.0", "{s:?}");
        assert_eq!(s.committed, Some(Slot::A), "{s:?}");
        assert_eq!(
            s.security_version, 1,
            "not raised by a rolled-back release: {s:?}"
        );
        let last = s.last_result.as_ref().unwrap();
        assert_eq!(last.reason, Reason::HealthCheckFailed, "{s:?}");
    }
    for s in &other {
        assert_eq!(s.version, "3.0.0", "{s:?}");
    }
    let rolled = b.fake.reports("rolled_back");
    assert_eq!(rolled.len(), a.len());
    let r = &rolled[0];
    assert_eq!(r.details["reason"], "health_check_failed");
    assert_eq!(r.details["version"], "3.0.0");
    assert_eq!(r.details["bad_slot"], "B");
    assert_eq!(r.details["running_slot"], "A");
    assert!(
        r.details["detail"]
            .as_str()
            .unwrap()
            .contains("exited with status 1")
    );
    assert_eq!(b.counter(|c| &c.rollbacks), a.len() as u64);

    // Still assigned: refused before any download, nothing new reported.
    let downloads = b.counter(|c| &c.downloads);
    let reports = b.fake.state().reports.len();
    b.run_for(120);
    assert_eq!(b.counter(|c| &c.downloads), downloads);
    assert_eq!(b.fake.state().reports.len(), reports);
    assert!(b.counter(|c| &c.refused_rolled_back) >= a.len() as u64);
}

#[test]
fn an_image_that_never_comes_up_falls_back_in_the_bootloader() {
    let mut b = fleet(10, |s| {
        s.faults.no_boot.push("3.0.0=1".parse().unwrap());
    });
    b.fake.assign("asg-3", V3, UpdateKind::Forced);
    b.run_for(90);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("1.0.0".to_owned(), 10)]));
    let rolled = b.fake.reports("rolled_back");
    assert_eq!(rolled.len(), 10);
    assert!(
        rolled
            .iter()
            .all(|r| r.details["reason"] == "bootloader_fallback")
    );
    // The bootloader tried the new slot until its counter ran out.
    assert_eq!(b.counter(|c| &c.failed_boots), 10 * 3);
    assert_eq!(b.counter(|c| &c.fallbacks), 10);
}

#[test]
fn a_tampered_artifact_is_refused_and_nothing_is_activated() {
    let mut b = fleet(10, |_| {});
    b.fake.tamper(V2);
    b.fake.assign("asg-2", V2, UpdateKind::Forced);
    b.run_for(30);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("1.0.0".to_owned(), 10)]));
    let failed = b.fake.reports("failed");
    assert!(failed.len() >= 10);
    assert!(
        failed
            .iter()
            .all(|r| r.details["reason"] == "hash_mismatch")
    );
    assert!(
        failed[0].details["detail"]
            .as_str()
            .unwrap()
            .contains("never booted")
    );
    assert!(b.fake.reports("rebooting").is_empty());
    assert_eq!(b.counter(|c| &c.installs), 0);
    for s in b.statuses() {
        assert_eq!(s.primary, Slot::A, "{s:?}");
        assert_eq!(s.boots, 1, "never rebooted: {s:?}");
    }
}

/// Every power-cut point, for a release that passes its health check and one that fails it:
/// the device converges on the new release or cleanly on the old one, and reports its result
/// once.
#[test]
fn power_cuts_at_every_write_step_converge() {
    let points = [
        CrashPoint::InstallingSaved,
        CrashPoint::SlotMarkedBad,
        CrashPoint::MidStream(1),
        CrashPoint::MidStream(LEN as u64 / 2),
        CrashPoint::MidStream(LEN as u64),
        CrashPoint::StreamVerified,
        CrashPoint::ActivatedSaved,
        CrashPoint::PrimarySet,
        CrashPoint::HealthCheck,
        CrashPoint::MarkedGood,
        CrashPoint::RollingBackSaved,
        CrashPoint::RollbackMarkedBad,
    ];
    let rollback_only = |p: CrashPoint| {
        matches!(
            p,
            CrashPoint::RollingBackSaved | CrashPoint::RollbackMarkedBad
        )
    };
    for healthy in [true, false] {
        for point in points {
            let mut b = fleet(1, |s| {
                // Small checkpoints, so a cut mid-stream resumes from one (with a Range request).
                s.timing.checkpoint_bytes = 8_000;
                s.timing.checkpoint_every = Duration::ZERO;
                if !healthy {
                    s.faults.health.push("2.0.0=1".parse().unwrap());
                }
            });
            b.fleet.devices[0].force_crash(V2, point);
            b.fake.assign("asg-2", V2, UpdateKind::Forced);
            b.run_for(120);
            let what = format!("power cut at {point:?}, healthy={healthy}");
            b.assert_all_settled();
            let s = &b.statuses()[0];
            let crashes = b.counter(|c| &c.crashes);
            // Rollback steps are only reached when the health check fails, the commit only
            // when it passes.
            let expect_crash = if healthy {
                !rollback_only(point)
            } else {
                point != CrashPoint::MarkedGood
            };
            assert_eq!(crashes, u64::from(expect_crash), "{what}");
            // One power-on more for the cut, unless it struck right before a reboot anyway.
            let replaces_a_reboot = matches!(
                point,
                CrashPoint::PrimarySet | CrashPoint::RollbackMarkedBad
            );
            let base = if healthy { 2 } else { 3 };
            assert_eq!(
                s.boots,
                base + u64::from(expect_crash && !replaces_a_reboot),
                "{what}: {s:#?}"
            );
            if healthy {
                assert_eq!(s.version, "2.0.0", "{what}");
                assert_eq!(b.fake.reports("installed").len(), 1, "{what}");
                assert!(b.fake.reports("rolled_back").is_empty(), "{what}");
            } else {
                assert_eq!(s.version, "1.0.0", "{what}");
                assert_eq!(s.security_version, 1, "{what}");
                assert_eq!(b.fake.reports("rolled_back").len(), 1, "{what}");
                assert!(b.fake.reports("installed").is_empty(), "{what}");
            }
            if point == CrashPoint::MidStream(LEN as u64 / 2) {
                let opens = b.fake.state().opens.clone();
                assert!(
                    opens.iter().any(|(_, offset)| *offset > 0),
                    "{what}: resumed from the checkpoint: {opens:?}"
                );
            }
        }
    }
}

/// A power cut before or after each trusted-metadata write of the verification (what
/// `verify_assigned` stores through the agent's write layer): the device powers on again,
/// verifies again and converges on the new release, reporting it once.
#[test]
fn power_cuts_while_storing_trusted_metadata_converge() {
    for write in 1..=2 {
        for after in [false, true] {
            let mut b = fleet(1, |_| {});
            b.fleet.devices[0].force_metadata_cut(V2, write, after);
            b.fake.assign("asg-2", V2, UpdateKind::Forced);
            b.run_for(120);
            let what = format!("power cut at metadata write {write}, after={after}");
            b.assert_all_settled();
            assert_eq!(b.counter(|c| &c.crashes), 1, "{what}");
            assert_eq!(b.statuses()[0].version, "2.0.0", "{what}");
            assert_eq!(b.fake.reports("installed").len(), 1, "{what}");
        }
    }
}

#[test]
fn random_power_cuts_across_a_fleet_converge() {
    let mut b = fleet(300, |s| {
        s.models = "board-a=50,board-b=50".parse().unwrap();
        s.faults.crash_rate = 1.0;
        s.faults.health.push("2.0.0:board-a=0.5".parse().unwrap());
        s.timing.checkpoint_bytes = 8_000;
        s.timing.checkpoint_every = Duration::ZERO;
    });
    b.fake.assign("asg-2", V2, UpdateKind::Forced);
    b.run_for(300);
    b.assert_all_settled();
    let crashes = b.counter(|c| &c.crashes);
    assert!(crashes >= 200, "{crashes} power cuts");
    let installed = b.fake.devices_reporting("installed");
    let rolled = b.fake.devices_reporting("rolled_back");
    assert_eq!(
        b.fake.reports("installed").len(),
        installed.len(),
        "once each"
    );
    assert_eq!(
        b.fake.reports("rolled_back").len(),
        rolled.len(),
        "once each"
    );
    assert_eq!(installed.len() + rolled.len(), 300);
    assert!(installed.is_disjoint(&rolled));
    for s in b.statuses() {
        let want = if installed.contains(&s.id) {
            "2.0.0"
        } else {
            "1.0.0"
        };
        assert_eq!(s.version, want, "{s:?}");
        if s.hardware_id == "board-b" {
            assert_eq!(s.version, "2.0.0", "{s:?}");
        }
    }
    assert_eq!(b.counter(|c| &c.failed_boots), 0);
}

#[test]
fn download_only_stages_the_release_and_a_later_install_activates_it() {
    let mut b = fleet(12, |_| {});
    b.fake.assign("asg-dl", V2, UpdateKind::DownloadOnly);
    b.run_for(60);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("1.0.0".to_owned(), 12)]));
    let downloaded = b.fake.reports("downloaded");
    assert_eq!(downloaded.len(), 12, "once each");
    assert_eq!(downloaded[0].details["reason"], "ok");
    assert_eq!(downloaded[0].details["slot"], "B");
    assert_eq!(downloaded[0].details["version"], "2.0.0");
    assert!(b.fake.reports("rebooting").is_empty(), "not activated");
    for s in b.statuses() {
        assert_eq!((s.primary, s.running), (Slot::A, Some(Slot::A)), "{s:?}");
        assert_eq!(s.boots, 1, "{s:?}");
    }
    assert_eq!(
        b.fake.state().facts["sim-00003"]["slots"],
        serde_json::json!({"a": "active", "b": "bad"}),
        "the staged slot stays marked bad"
    );
    let downloads = b.counter(|c| &c.downloads);
    assert_eq!(downloads, 12);
    b.run_for(60);
    assert_eq!(b.counter(|c| &c.downloads), 12, "not downloaded again");

    b.fake.assign("asg-go", V2, UpdateKind::Forced);
    b.run_for(60);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("2.0.0".to_owned(), 12)]));
    assert_eq!(b.counter(|c| &c.downloads), 12, "activated from the slot");
    assert_eq!(b.fake.reports("installed").len(), 12);
}

#[test]
fn soft_updates_wait_for_power() {
    let mut b = fleet(40, |s| {
        s.faults.low_battery_rate = 0.5;
        s.faults.recharge_after = Some(Duration::from_secs(200));
    });
    let low: HashSet<String> = b
        .fleet
        .devices()
        .into_iter()
        .filter(|d| d.low_battery)
        .map(|d| d.id)
        .collect();
    assert!(!low.is_empty() && low.len() < 40, "{}", low.len());
    b.fake.assign("asg-soft", V2, UpdateKind::Soft);
    b.run_for(100);
    for s in b.statuses() {
        let want = if low.contains(&s.id) {
            "1.0.0"
        } else {
            "2.0.0"
        };
        assert_eq!(s.version, want, "{s:?}");
    }
    assert!(b.counter(|c| &c.deferred) >= low.len() as u64);
    let facts = b.fake.state().facts.clone();
    let some_low = low.iter().next().unwrap();
    assert_eq!(facts[some_low]["attributes"]["on_mains"], false);
    assert_eq!(facts[some_low]["attributes"]["battery_pct"], 10);
    // Plugged in: they install too.
    b.run_for(200);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("2.0.0".to_owned(), 40)]));

    // Forced updates do not wait.
    let mut b = fleet(10, |s| s.faults.low_battery_rate = 1.0);
    b.fake.assign("asg-forced", V2, UpdateKind::Forced);
    b.run_for(60);
    assert_eq!(b.versions(), BTreeMap::from([("2.0.0".to_owned(), 10)]));
}

#[test]
fn results_are_resent_until_the_server_stores_them() {
    let mut b = fleet(8, |_| {});
    b.fake.assign("asg-2", V2, UpdateKind::Forced);
    b.fake.state().refuse_reports = true;
    b.run_for(60);
    assert_eq!(b.versions(), BTreeMap::from([("2.0.0".to_owned(), 8)]));
    assert!(b.statuses().iter().all(|s| s.unsent_reports == 1));
    assert!(b.fake.reports("installed").is_empty());
    b.fake.state().refuse_reports = false;
    b.run_for(120);
    b.assert_all_settled();
    assert_eq!(b.fake.reports("installed").len(), 8);
}

#[test]
fn interrupted_downloads_resume_from_the_last_checkpoint() {
    let mut b = fleet(3, |s| {
        s.timing.checkpoint_bytes = 10_000;
        s.timing.checkpoint_every = Duration::ZERO;
    });
    b.fake.state().drop_after = Some(25_000);
    b.fake.assign("asg-2", V2, UpdateKind::Forced);
    b.run_for(120);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("2.0.0".to_owned(), 3)]));
    let opens = b.fake.state().opens.clone();
    for d in ["sim-00000", "sim-00001", "sim-00002"] {
        let offsets: Vec<u64> = opens
            .iter()
            .filter(|(dev, _)| dev == d)
            .map(|(_, o)| *o)
            .collect();
        // Checkpoints every 10,000 bytes or more (after whole reads): the last one before the
        // connection dropped at 25,000.
        assert_eq!(offsets.len(), 2, "{d}: {offsets:?}");
        assert_eq!(offsets[0], 0, "{d}: {offsets:?}");
        assert!(
            (20_000..25_000).contains(&offsets[1]),
            "{d}: resumed at the last checkpoint: {offsets:?}"
        );
    }
    assert_eq!(b.counter(|c| &c.download_errors), 3);
}

/// An install interrupted mid-download whose assignment then becomes the release the device
/// already runs (a fleet rollback replacing a halted campaign's release) is abandoned at the
/// next poll: the device settles, instead of staying "installing" a release nobody wants.
#[test]
fn an_interrupted_install_is_abandoned_when_the_running_release_is_assigned() {
    let mut b = fleet(3, |s| {
        s.timing.checkpoint_bytes = 10_000;
        s.timing.checkpoint_every = Duration::ZERO;
    });
    b.fake.state().drop_after = Some(25_000);
    b.fake.assign("asg-2", V2, UpdateKind::Forced);
    for _ in 0..600 {
        if b.counter(|c| &c.download_errors) == 3 {
            break;
        }
        b.run_for(1);
    }
    assert_eq!(
        b.counter(|c| &c.download_errors),
        3,
        "every download dropped"
    );
    assert!(
        b.statuses().iter().all(|s| s.phase == "installing"),
        "{:#?}",
        b.statuses()
    );
    // The fleet rollback: the release they run is assigned instead.
    b.fake.assign("asg-2:rollback", V1, UpdateKind::Forced);
    b.run_for(120);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("1.0.0".to_owned(), 3)]));
    assert_eq!(b.counter(|c| &c.installs), 0);
}

#[test]
fn slow_links_download_in_slices_and_offline_devices_catch_up() {
    let mut b = fleet(20, |s| {
        s.faults.slow_rate = 0.5;
        s.faults.slow_bytes_per_sec = 4_000;
        s.faults.offline_rate = 0.3;
        s.faults.offline_for = Duration::from_secs(100);
    });
    let info = b.fleet.devices();
    assert!(info.iter().any(|d| d.slow_link) && info.iter().any(|d| !d.slow_link));
    assert!(info.iter().any(|d| d.goes_offline));
    b.fake.assign("asg-2", V2, UpdateKind::Forced);
    b.run_for(8);
    let fast_done = b
        .statuses()
        .iter()
        .zip(&info)
        .filter(|(s, i)| !i.slow_link && !i.goes_offline && s.version == "2.0.0")
        .count();
    assert!(fast_done > 0, "fast links are done within seconds");
    assert!(
        b.statuses()
            .iter()
            .zip(&info)
            .all(|(s, i)| !i.slow_link || s.version == "1.0.0"),
        "40 kB at 4 kB/s takes 10 s"
    );
    b.run_for(300);
    b.assert_all_settled();
    assert_eq!(b.versions(), BTreeMap::from([("2.0.0".to_owned(), 20)]));
}

#[test]
fn verification_refusals_are_reported_and_nothing_is_written() {
    let mut b = fleet(4, |_| {});
    b.fake.release(
        "other/fw.img",
        "9.0.0",
        9,
        &["board-z"],
        image("9.0.0", LEN),
    );
    b.fake.assign("asg-z", "other/fw.img", UpdateKind::Forced);
    b.run_for(30);
    b.assert_all_settled();
    let refused = b.fake.reports("verification_failed");
    assert!(refused.len() >= 4);
    assert_eq!(refused[0].details["reason"], "hardware_incompatible");
    assert_eq!(b.counter(|c| &c.downloads), 0);
    assert_eq!(b.versions(), BTreeMap::from([("1.0.0".to_owned(), 4)]));
}

#[test]
fn fleets_are_deterministic_for_a_seed() {
    let make = |seed| {
        fleet(200, |s| {
            s.seed = seed;
            s.models = "board-a=70,board-b=30".parse().unwrap();
            s.regions = "eu=50,us=50".parse().unwrap();
            s.tags = crate::parse_tags("canary=10").unwrap();
            s.faults.slow_rate = 0.05;
        })
        .fleet
        .devices()
        .into_iter()
        .map(|d| (d.hardware_id, d.region, d.tags, d.slow_link))
        .collect::<Vec<_>>()
    };
    let a = make(7);
    assert_eq!(a, make(7));
    assert_ne!(a, make(8));
    let board_a = a.iter().filter(|d| d.0 == "board-a").count();
    assert!((110..170).contains(&board_a), "{board_a}");
    assert!(a.iter().any(|d| d.2 == vec!["canary".to_owned()]));
    let _ = Bench::new;
    let _ = |b: &Bench| b.v1.len();
}
