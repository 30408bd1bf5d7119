//! The agent's boot measurements and the verifier's check against golden measurements.
//!
//! Where no boot loader measures (simple devices, these test machines), the agent extends one
//! SHA-256 PCR (13 by default, [`DEFAULT_AGENT_PCR`]) at each boot with two EV_IPL events:
//! 1. the booted slot image: digest = the image's SHA-256, which is the signed TUF target's
//!    sha256 hash (the golden measurement), data = [`IMAGE_EVENT_DATA`];
//! 2. the release claim: data = [`RELEASE_CLAIM_PREFIX`] followed by the target path the
//!    device claims to run, digest = SHA-256(data).
//!
//! The verifier ([`check_measurements`]) replays the log to the quoted PCR values, then checks
//! that the agent PCR holds exactly those two events naming the release the inventory says
//! the device runs, and that any firmware PCR the release's signed metadata pins has its
//! golden value. Every failure names the PCR or event, and what was expected and found.

use std::collections::BTreeMap;

use crate::eventlog::{EV_IPL, Event, EventLog, EventLogError, sha256};
use crate::pcr::PcrValues;
use crate::wire::HashAlg;

/// The PCR the agent measures into unless configured otherwise (see decision 0028: not used
/// by firmware or common boot loaders, and not resettable from software like 16 and 23).
pub const DEFAULT_AGENT_PCR: u8 = 13;
/// The data of the booted-image event.
pub const IMAGE_EVENT_DATA: &[u8] = b"rampart booted image\0";
/// The release claim's data: this prefix, then the target path.
pub const RELEASE_CLAIM_PREFIX: &[u8] = b"rampart release ";

/// The agent's two boot events for `image_sha256` (the booted slot's image) claiming the
/// release `target_path`, in PCR `agent_pcr`, as a log with the SHA-256 bank. The agent
/// extends each event's SHA-256 digest into the TPM in order and keeps the log.
pub fn boot_log(agent_pcr: u8, image_sha256: [u8; 32], target_path: &str) -> EventLog {
    let mut log = EventLog::new_sha256();
    append_boot_events(&mut log, agent_pcr, image_sha256, target_path);
    log
}

/// Appends the agent's two boot events to `log` (see [`boot_log`]).
pub fn append_boot_events(
    log: &mut EventLog,
    agent_pcr: u8,
    image_sha256: [u8; 32],
    target_path: &str,
) {
    let pcr = u32::from(agent_pcr);
    log.push_sha256(pcr, EV_IPL, image_sha256, IMAGE_EVENT_DATA.to_vec());
    let claim = release_claim_data(target_path);
    log.push_sha256(pcr, EV_IPL, sha256(&claim), claim);
}

/// The release claim event's data for `target_path`.
pub fn release_claim_data(target_path: &str) -> Vec<u8> {
    let mut data = RELEASE_CLAIM_PREFIX.to_vec();
    data.extend_from_slice(target_path.as_bytes());
    data
}

/// What good looks like for one device: from the signed targets metadata of the release the
/// inventory says it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenMeasurements {
    /// The release's target path.
    pub target_path: String,
    /// The target's signed sha256 hash (the booted image's SHA-256).
    pub image_sha256: [u8; 32],
    /// Firmware PCR values pinned in the target's `custom` metadata (SHA-256 bank), if any.
    pub firmware_pcrs: BTreeMap<u8, [u8; 32]>,
}

/// Where a target's `custom` object pins firmware PCR values: `custom.attestation.firmware_pcrs`,
/// an object from PCR number (as a string) to the SHA-256 PCR value in hex, e.g.
/// `{"0": "3d45...", "7": "65ca..."}` (beside `custom.rampart`, which older agents read
/// strictly).
pub const FIRMWARE_PCRS_FIELD: [&str; 2] = ["attestation", "firmware_pcrs"];

/// The golden measurements of a signed target could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoldenError {
    /// The target's sha256 hash is not 64 hex digits.
    #[error("the signed target's sha256 hash {0:?} is not 64 hex digits")]
    BadImageHash(String),
    /// The firmware PCR values are malformed.
    #[error(
        "custom.attestation.firmware_pcrs in the signed target is malformed: {0}; it must map PCR numbers 0 to 23 to SHA-256 values in hex"
    )]
    BadFirmwarePcrs(String),
}

impl GoldenMeasurements {
    /// The golden measurements of the signed target `target_path` with sha256 hash
    /// `sha256_hex` and `custom` object (firmware PCR values from
    /// `custom.attestation.firmware_pcrs` ([`FIRMWARE_PCRS_FIELD`]), when present).
    pub fn from_target(
        target_path: &str,
        sha256_hex: &str,
        custom: Option<&serde_json::Value>,
    ) -> Result<GoldenMeasurements, GoldenError> {
        let image_sha256 =
            hex32(sha256_hex).ok_or_else(|| GoldenError::BadImageHash(sha256_hex.to_string()))?;
        let mut firmware_pcrs = BTreeMap::new();
        let field = custom
            .and_then(|c| c.get(FIRMWARE_PCRS_FIELD[0]))
            .and_then(|a| a.get(FIRMWARE_PCRS_FIELD[1]));
        if let Some(field) = field {
            let map = field
                .as_object()
                .ok_or_else(|| GoldenError::BadFirmwarePcrs("not an object".into()))?;
            for (pcr, value) in map {
                let number = pcr
                    .parse::<u8>()
                    .ok()
                    .filter(|n| *n < 24 && n.to_string() == *pcr)
                    .ok_or_else(|| GoldenError::BadFirmwarePcrs(format!("PCR {pcr:?}")))?;
                let digest = value.as_str().and_then(hex32).ok_or_else(|| {
                    GoldenError::BadFirmwarePcrs(format!(
                        "the value of PCR {pcr} is not 64 hex digits"
                    ))
                })?;
                firmware_pcrs.insert(number, digest);
            }
        }
        Ok(GoldenMeasurements {
            target_path: target_path.to_string(),
            image_sha256,
            firmware_pcrs,
        })
    }
}

/// The `custom.attestation.firmware_pcrs` value for `pcrs` (for release writers).
pub fn firmware_pcrs_json(pcrs: &BTreeMap<u8, [u8; 32]>) -> serde_json::Value {
    pcrs.iter()
        .map(|(pcr, value)| {
            (
                pcr.to_string(),
                serde_json::Value::String(hex::encode(value)),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The SHA-256 PCR values of a verified quote, as [`check_measurements`] takes them.
pub fn quoted_sha256(pcrs: &PcrValues) -> BTreeMap<u8, [u8; 32]> {
    pcrs.iter()
        .filter(|(bank, _, _)| *bank == HashAlg::Sha256)
        .filter_map(|(_, pcr, value)| Some((pcr, value.try_into().ok()?)))
        .collect()
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// A measurement does not match what the release's signed metadata says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MeasurementError {
    /// The log could not be replayed.
    #[error("the event log cannot be replayed: {0}")]
    Log(#[from] EventLogError),
    /// Replaying the log does not give the quoted PCR value.
    #[error(
        "the log does not replay to the quoted PCR value: PCR {pcr} replays to {replayed} but the quote says {quoted}; the log is not the one the TPM measured"
    )]
    LogDoesNotReplay {
        /// The PCR.
        pcr: u8,
        /// The value the log replays to (hex).
        replayed: String,
        /// The value in the quote (hex).
        quoted: String,
    },
    /// A PCR the check needs is not in the quote.
    #[error("PCR {pcr} ({role}) is not in the quote; quote the selection the server asked for")]
    PcrNotQuoted {
        /// The PCR.
        pcr: u8,
        /// What it holds.
        role: &'static str,
    },
    /// An event in the agent PCR is not one of the agent's two boot events.
    #[error(
        "PCR {pcr} event {index} is not the agent's {expected} event (type {event_type:#x}, data {data:?}); something else measured into the agent PCR"
    )]
    ForeignEvent {
        /// The agent PCR.
        pcr: u8,
        /// The event's position among the agent PCR's events, from 1.
        index: usize,
        /// The event the agent writes at that position.
        expected: &'static str,
        /// The event's type.
        event_type: u32,
        /// The event's data, lossily as text.
        data: String,
    },
    /// The agent PCR does not hold exactly the two boot events.
    #[error(
        "PCR {pcr} holds {found} events, the agent writes exactly 2 (booted image, release claim) per boot"
    )]
    EventCount {
        /// The agent PCR.
        pcr: u8,
        /// How many events it holds.
        found: usize,
    },
    /// The booted image is not the release's.
    #[error(
        "PCR {pcr} event 1 (booted image): expected sha256 {expected} (release {target_path}), found {found}; the device booted an image that is not the release it should run"
    )]
    ImageMismatch {
        /// The agent PCR.
        pcr: u8,
        /// The release's target path.
        target_path: String,
        /// The signed target's sha256 (hex).
        expected: String,
        /// The measured digest (hex).
        found: String,
    },
    /// The release claim names another target.
    #[error(
        "PCR {pcr} event 2 (release claim): expected target {expected:?}, found {found:?}; the device claims a release other than the one the inventory records"
    )]
    ReleaseClaimMismatch {
        /// The agent PCR.
        pcr: u8,
        /// The inventory's target path.
        expected: String,
        /// The claimed target path (lossily as text).
        found: String,
    },
    /// The release claim's digest is not the SHA-256 of its data.
    #[error(
        "PCR {pcr} event 2 (release claim): digest {found} is not SHA-256 of its data ({expected}); the claim's text is not what was measured"
    )]
    ClaimDigestMismatch {
        /// The agent PCR.
        pcr: u8,
        /// SHA-256 of the data (hex).
        expected: String,
        /// The event's digest (hex).
        found: String,
    },
    /// A firmware PCR differs from its golden value.
    #[error(
        "firmware PCR {pcr}: expected {expected} (from the release's signed metadata), found {found}; the device's firmware or boot chain is not the approved one"
    )]
    FirmwarePcrMismatch {
        /// The PCR.
        pcr: u8,
        /// The golden value (hex).
        expected: String,
        /// The quoted value (hex).
        found: String,
    },
}

/// Checks a device's event log against its quoted SHA-256 PCR values and the golden
/// measurements of the release it should run (see the module documentation).
///
/// `quoted` holds the SHA-256 PCR values a verified quote covers. Every quoted PCR must be
/// what the log replays to (zeros for a PCR the log does not touch).
pub fn check_measurements(
    log: &EventLog,
    quoted: &BTreeMap<u8, [u8; 32]>,
    golden: &GoldenMeasurements,
    agent_pcr: u8,
) -> Result<(), MeasurementError> {
    let replayed = log.replay_sha256()?;
    for (&pcr, quoted_value) in quoted {
        let value = replayed.get(&u32::from(pcr)).unwrap_or(&[0u8; 32]);
        if value != quoted_value {
            return Err(MeasurementError::LogDoesNotReplay {
                pcr,
                replayed: hex::encode(value),
                quoted: hex::encode(quoted_value),
            });
        }
    }
    // Events in PCRs outside the quote are not backed by the TPM and nothing below reads
    // them: a device may send its whole firmware log while the server quotes the agent PCR.
    if !quoted.contains_key(&agent_pcr) {
        return Err(MeasurementError::PcrNotQuoted {
            pcr: agent_pcr,
            role: "the agent's boot measurements",
        });
    }
    check_agent_events(log, golden, agent_pcr)?;
    for (&pcr, expected) in &golden.firmware_pcrs {
        let Some(found) = quoted.get(&pcr) else {
            return Err(MeasurementError::PcrNotQuoted {
                pcr,
                role: "a firmware PCR the release pins",
            });
        };
        if found != expected {
            return Err(MeasurementError::FirmwarePcrMismatch {
                pcr,
                expected: hex::encode(expected),
                found: hex::encode(found),
            });
        }
    }
    Ok(())
}

/// The agent PCR holds exactly the image event then the release claim, naming the release.
fn check_agent_events(
    log: &EventLog,
    golden: &GoldenMeasurements,
    agent_pcr: u8,
) -> Result<(), MeasurementError> {
    let pcr = u32::from(agent_pcr);
    let events: Vec<&Event> = log.events.iter().filter(|e| e.pcr == pcr).collect();
    let foreign =
        |index: usize, expected: &'static str, e: &Event| MeasurementError::ForeignEvent {
            pcr: agent_pcr,
            index,
            expected,
            event_type: e.event_type,
            data: String::from_utf8_lossy(&e.data).into_owned(),
        };
    let [image, claim] = events.as_slice() else {
        // Name a foreign event when there is one: it says more than a count.
        if let Some((i, e)) = events
            .iter()
            .enumerate()
            .find(|(_, e)| e.event_type != EV_IPL || !is_agent_event_data(&e.data))
        {
            return Err(foreign(i + 1, "booted image or release claim", e));
        }
        return Err(MeasurementError::EventCount {
            pcr: agent_pcr,
            found: events.len(),
        });
    };
    if image.event_type != EV_IPL || image.data != IMAGE_EVENT_DATA {
        return Err(foreign(1, "booted image", image));
    }
    let Some(claimed) = claim
        .data
        .strip_prefix(RELEASE_CLAIM_PREFIX)
        .filter(|_| claim.event_type == EV_IPL)
    else {
        return Err(foreign(2, "release claim", claim));
    };
    // Both digests were replayed, so they exist.
    let image_digest = image.sha256().unwrap_or_default();
    if image_digest != golden.image_sha256 {
        return Err(MeasurementError::ImageMismatch {
            pcr: agent_pcr,
            target_path: golden.target_path.clone(),
            expected: hex::encode(golden.image_sha256),
            found: hex::encode(image_digest),
        });
    }
    let claim_digest = claim.sha256().unwrap_or_default();
    let data_digest = sha256(&claim.data);
    if claim_digest != data_digest {
        return Err(MeasurementError::ClaimDigestMismatch {
            pcr: agent_pcr,
            expected: hex::encode(data_digest),
            found: hex::encode(claim_digest),
        });
    }
    if claimed != golden.target_path.as_bytes() {
        return Err(MeasurementError::ReleaseClaimMismatch {
            pcr: agent_pcr,
            expected: golden.target_path.clone(),
            found: String::from_utf8_lossy(claimed).into_owned(),
        });
    }
    Ok(())
}

fn is_agent_event_data(data: &[u8]) -> bool {
    data == IMAGE_EVENT_DATA || data.starts_with(RELEASE_CLAIM_PREFIX)
}
