//! A compromise applied to a virtual device (see [`crate::compromise`]), and what the device
//! observes of the response: the signed quarantine statement, the re-image of both slots.

use rampart_boot::ab::Slot;
use rampart_boot::flow::{Phase, SlotContent};
use rampart_protocol::{QuarantineState, SignedQuarantine};

use super::{Image, Pending, Shared, VirtualDevice};
use crate::compromise::{CompromiseKind, CompromiseRecord, Infection};
use crate::hw::MemSlot;

/// What an unlogged boot component extends the agent's PCR with.
const ROGUE_MEASUREMENT: &[u8] = b"rampart-sim: a boot component the measurement log does not show";

fn since_start(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms)
}

impl VirtualDevice {
    /// Applies the planned compromise at `now` (ms since the fleet started), once. A device
    /// without one, or whose compromise is not due, is left alone. `Some(at)`: the attacker
    /// rebooted the device, which powers on at `at` (its queued event is replaced by one then:
    /// the reboot does not wait for the agent's next poll).
    pub(crate) fn compromise(&mut self, sh: &Shared, now: u64) -> Option<u64> {
        let infection = self.infection.as_mut()?;
        if infection.compromised.is_some() || now < infection.at {
            return None;
        }
        infection.compromised = Some(now);
        infection.reimaged_before = self.agent.platform.persisted.reimaged_for.clone();
        let kind = infection.kind;
        let committed = self.agent.platform.persisted.committed.unwrap_or(Slot::A);
        let infected_content = self.agent.platform.medium(committed).sha256();
        if let Some(i) = self.infection.as_mut() {
            i.infected = Some((committed, infected_content));
        }
        match kind {
            // Lies in its facts from the next poll on: nothing on the device changes.
            CompromiseKind::ForgedReport => None,
            CompromiseKind::FailingAttestation if self.run.is_some() => {
                self.rogue_measurement();
                None
            }
            CompromiseKind::FailingAttestation => None,
            CompromiseKind::TamperedSlot => {
                let medium = self.agent.platform.medium(committed);
                let original = medium.sha256().unwrap_or_default();
                let length = medium.len();
                let mut material = original.into_bytes();
                material.extend_from_slice(b" tampered by ");
                material.extend_from_slice(self.profile.identity.id.as_bytes());
                let tampered = hex::encode(ring::digest::digest(&ring::digest::SHA256, &material));
                // The attacker's image boots (it is the good one with a backdoor).
                let content = self.agent.platform.persisted.slots.get(&committed).cloned();
                if let Some(c) = content {
                    sh.know(&tampered, &c.target, &c.version, length);
                }
                self.agent.platform.slots[crate::platform::slot_index(committed)] =
                    MemSlot::flashed(length, &tampered);
                Some(self.reboot_now(sh, now))
            }
            CompromiseKind::StolenKey => {
                let stolen = &sh.stolen;
                sh.know(
                    &stolen.sha256,
                    &stolen.target,
                    &stolen.version,
                    stolen.length,
                );
                let security_version = self.agent.platform.security_version;
                self.agent.platform.slots[crate::platform::slot_index(committed)] =
                    MemSlot::flashed(stolen.length, &stolen.sha256);
                // Installed by the attacker with a valid signature: the state file says so.
                self.agent.platform.persisted.slots.insert(
                    committed,
                    SlotContent {
                        target: stolen.target.clone(),
                        version: stolen.version.clone(),
                        security_version,
                        sha256: stolen.sha256.clone(),
                        length: stolen.length,
                    },
                );
                Some(self.reboot_now(sh, now))
            }
        }
    }

    /// Applies the planned compromise at once, whatever its planned time (see
    /// [`VirtualDevice::compromise`] for the answer).
    pub(crate) fn compromise_now(&mut self, sh: &Shared, now: u64) -> Option<u64> {
        if let Some(i) = self.infection.as_mut()
            && i.compromised.is_none()
        {
            i.at = i.at.min(now);
        }
        self.compromise(sh, now)
    }

    /// The attacker reboots the device into what it changed: its running state is gone, and
    /// it powers on after the fleet's reboot delay; when that is (ms since the start).
    fn reboot_now(&mut self, sh: &Shared, now: u64) -> u64 {
        self.run = None;
        self.pending = Pending::Boot;
        self.due = now + super::ms(sh.timing.reboot_delay);
        self.due
    }

    /// A `failing-attestation` compromise extends the agent's PCR with a measurement the log
    /// does not show: when it strikes, and at every boot of the infected slot while that slot
    /// still holds the infected content.
    pub(super) fn rogue_measurement(&mut self) {
        let booted = self.agent.platform.booted;
        let content = self.agent.platform.medium(booted).sha256();
        let infects = self.infection.as_ref().is_some_and(|i| {
            i.is(CompromiseKind::FailingAttestation)
                && i.infected.as_ref() == Some(&(booted, content))
        });
        if !infects {
            return;
        }
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, ROGUE_MEASUREMENT)
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        if let Some(tpm) = self.agent.platform.tpm.as_mut() {
            use rampart_attest::device::TpmDevice as _;
            if let Err(e) = tpm.extend(rampart_attest::measure::DEFAULT_AGENT_PCR, &digest) {
                self.last_error = Some(format!("the injected rogue measurement failed: {e}"));
            }
        }
    }

    /// Whether the forged facts apply now.
    pub(super) fn forges_reports(&self) -> bool {
        self.infection
            .as_ref()
            .is_some_and(|i| i.is(CompromiseKind::ForgedReport))
    }

    /// A poll answer carried `statement`: the first `quarantined` one for this device is when
    /// the device learnt it is contained.
    pub(super) fn note_quarantine(&mut self, statement: Option<&SignedQuarantine>, now: u64) {
        let Some(q) = statement else { return };
        if q.signed.state != QuarantineState::Quarantined
            || q.signed.device_id != self.profile.identity.id
        {
            return;
        }
        self.quarantined.get_or_insert(now);
        if let Some(i) = self.infection.as_mut().filter(|i| i.active()) {
            i.contained.get_or_insert(now);
        }
    }

    /// A compromised device is recovered once a re-image after the compromise finished: both
    /// slots hold the committed release, nothing in progress. The compromise is then gone.
    pub(super) fn note_recovery(&mut self, now: u64) {
        let Some(infection) = self.infection.as_ref().filter(|i| i.active()) else {
            return;
        };
        let state = &self.agent.platform.persisted;
        if state.phase != Phase::Idle
            || state.reimaged_for.is_none()
            || state.reimaged_for == infection.reimaged_before
        {
            return;
        }
        let Some(content) = state.committed.and_then(|c| state.slots.get(&c)) else {
            return;
        };
        let both = Slot::BOTH.iter().all(|s| {
            let medium = self.agent.platform.medium(*s);
            medium.sha256().as_deref() == Some(content.sha256.as_str())
        });
        if both && let Some(i) = self.infection.as_mut() {
            i.recovered = Some(now);
        }
    }

    /// This device's game day, if it was (or will be) compromised.
    fn compromise_record(&self) -> Option<CompromiseRecord> {
        let i: &Infection = self.infection.as_ref()?;
        Some(CompromiseRecord {
            device: self.profile.identity.id.clone(),
            kind: i.kind,
            planned: since_start(i.at),
            compromised: i.compromised.map(since_start),
            contained: i.contained.map(since_start),
            recovered: i.recovered.map(since_start),
        })
    }

    /// When a device got a `quarantined` statement while not compromised (never, or not yet).
    fn wrongly_quarantined(&self) -> Option<std::time::Duration> {
        let quarantined = self.quarantined?;
        match &self.infection {
            Some(i) if i.compromised.is_some_and(|c| c <= quarantined) => None,
            _ => Some(since_start(quarantined)),
        }
    }
}

impl crate::GameDay {
    /// Adds what `device` saw of the game day.
    pub(crate) fn add(&mut self, device: &VirtualDevice) {
        if let Some(record) = device.compromise_record() {
            self.compromised.push(record);
        }
        if let Some(at) = device.wrongly_quarantined() {
            self.healthy_quarantined
                .push((device.profile.identity.id.clone(), at));
        }
    }
}

impl Shared {
    /// An image that boots: the slot holding exactly it comes up.
    fn know(&self, sha256: &str, target: &str, version: &str, length: u64) {
        let mut images = self.images.write().unwrap_or_else(|e| e.into_inner());
        images.entry(sha256.to_owned()).or_insert_with(|| Image {
            target: target.to_owned(),
            version: version.to_owned(),
            length,
        });
    }
}

#[cfg(test)]
impl VirtualDevice {
    /// The SHA-256 of what `slot` holds (tests).
    pub(crate) fn slot_sha256(&self, slot: Slot) -> Option<String> {
        self.agent.platform.medium(slot).sha256()
    }
}
