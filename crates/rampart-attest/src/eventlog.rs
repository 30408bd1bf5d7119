//! The TCG PC Client crypto-agile event log (TCG PC Client Platform Firmware Profile, "Event
//! Logging"): the Spec ID header event (a SHA-1-format TCG_PCR_EVENT whose data is the
//! "Spec ID Event03" structure listing the digest sizes) followed by TCG_PCR_EVENT2 records.
//! All integers are little-endian, as the firmware profile writes them (unlike TPM structures).
//!
//! Parsing is bounded before anything is allocated: the log's size, the number of events, the
//! number of algorithms and digests per event, and every length field is checked against the
//! bytes that remain. [`EventLog::replay_sha256`] recomputes the SHA-256 PCR bank the log
//! describes, which a verifier compares with the quoted PCR values.

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};

/// The largest log accepted: firmware logs on real machines are tens of kilobytes.
pub const MAX_LOG_BYTES: usize = 1 << 20;
/// The most events accepted in one log.
pub const MAX_EVENTS: usize = 10_000;
/// The most hash algorithms a Spec ID header may list (and digests one event may carry).
pub const MAX_ALGORITHMS: usize = 8;
/// The largest digest size a Spec ID header may declare (SHA-512 is 64).
const MAX_DIGEST_SIZE: u16 = 64;
/// PCR indexes in a PC Client TPM run from 0 to 23.
pub const PCR_COUNT: u32 = 24;

/// TPM_ALG_SHA1.
pub const ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000B;

/// EV_NO_ACTION: informational, never extended into a PCR.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// EV_IPL: an event of the initial program load (boot loader, kernel, what it booted).
pub const EV_IPL: u32 = 0x0000_000D;

/// The Spec ID header event's signature ("Spec ID Event03" and its terminating zero).
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// The StartupLocality EV_NO_ACTION event's signature: it sets PCR 0's initial value.
const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";

/// A digest size the Spec ID header declares for an algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmSize {
    /// TPM_ALG_ID of the hash.
    pub algorithm: u16,
    /// Its digest size in bytes.
    pub digest_size: u16,
}

/// One digest of an event (TPMT_HA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDigest {
    /// TPM_ALG_ID of the hash.
    pub algorithm: u16,
    /// The digest bytes.
    pub value: Vec<u8>,
}

/// One TCG_PCR_EVENT2 record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The PCR the event was extended into.
    pub pcr: u32,
    /// The event type (EV_*).
    pub event_type: u32,
    /// One digest per bank, as extended.
    pub digests: Vec<EventDigest>,
    /// The event data (what was measured, for a person or a verifier).
    pub data: Vec<u8>,
}

impl Event {
    /// The event's SHA-256 digest, when it carries one.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        self.digests
            .iter()
            .find(|d| d.algorithm == ALG_SHA256)
            .and_then(|d| d.value.as_slice().try_into().ok())
    }
}

/// A parsed crypto-agile event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// The Spec ID header's platform class (0 for a client platform).
    pub platform_class: u32,
    /// The digest sizes from the Spec ID header.
    pub algorithms: Vec<AlgorithmSize>,
    /// The TCG_PCR_EVENT2 records, in log order.
    pub events: Vec<Event>,
}

/// The SHA-256 PCR values a log replays to, for the PCRs it extends (or, with a
/// StartupLocality event, initialises); any other PCR keeps its reset value of zeros.
pub type ReplayedPcrs = BTreeMap<u32, [u8; 32]>;

/// An event log could not be read or replayed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventLogError {
    /// The log is larger than [`MAX_LOG_BYTES`].
    #[error(
        "event log is {size} bytes, more than the {MAX_LOG_BYTES}-byte limit: send the log of the current boot only"
    )]
    TooLarge {
        /// The log's size.
        size: usize,
    },
    /// The log ends inside a structure.
    #[error(
        "event log is truncated: {what} at byte {offset} needs {needed} bytes, {left} are left; send the whole binary log"
    )]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Its size.
        needed: usize,
        /// The bytes left.
        left: usize,
    },
    /// The first event is not a Spec ID Event03 header.
    #[error(
        "event log does not start with a crypto-agile Spec ID Event03 header ({0}); only the TCG crypto-agile (TPM 2.0) format is accepted"
    )]
    NotCryptoAgile(&'static str),
    /// A limit of the parser was exceeded.
    #[error("event log has too many {what} ({count}, limit {limit})")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// How many there are.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("event log event {event}: {problem}")]
    Invalid {
        /// The event's index (0 for the header, records from 1).
        event: usize,
        /// What is wrong.
        problem: String,
    },
}

impl EventLog {
    /// An empty log whose header declares the SHA-256 bank only (what the agent writes).
    pub fn new_sha256() -> Self {
        EventLog {
            platform_class: 0,
            algorithms: vec![AlgorithmSize {
                algorithm: ALG_SHA256,
                digest_size: 32,
            }],
            events: Vec::new(),
        }
    }

    /// Appends an event with only a SHA-256 digest.
    pub fn push_sha256(&mut self, pcr: u32, event_type: u32, digest: [u8; 32], data: Vec<u8>) {
        self.events.push(Event {
            pcr,
            event_type,
            digests: vec![EventDigest {
                algorithm: ALG_SHA256,
                value: digest.to_vec(),
            }],
            data,
        });
    }

    /// Parses a binary log (`/sys/kernel/security/tpm0/binary_bios_measurements` format).
    pub fn parse(bytes: &[u8]) -> Result<EventLog, EventLogError> {
        if bytes.len() > MAX_LOG_BYTES {
            return Err(EventLogError::TooLarge { size: bytes.len() });
        }
        let mut r = Reader { bytes, offset: 0 };
        let (platform_class, algorithms) = parse_header(&mut r)?;
        let mut events = Vec::new();
        while r.remaining() > 0 {
            if events.len() == MAX_EVENTS {
                return Err(EventLogError::TooMany {
                    what: "events",
                    count: events.len() + 1,
                    limit: MAX_EVENTS,
                });
            }
            events.push(parse_event2(&mut r, &algorithms, events.len() + 1)?);
        }
        Ok(EventLog {
            platform_class,
            algorithms,
            events,
        })
    }

    /// Encodes the log in the binary format [`EventLog::parse`] reads. Every event must carry
    /// a digest of each header algorithm's size (as [`EventLog::push_sha256`] makes them for a
    /// [`EventLog::new_sha256`] log).
    pub fn encode(&self) -> Vec<u8> {
        let mut spec_id = Vec::new();
        spec_id.extend_from_slice(SPEC_ID_SIGNATURE);
        spec_id.extend_from_slice(&self.platform_class.to_le_bytes());
        // specVersionMinor 0, specVersionMajor 2, specErrata 0, uintnSize 2 (UINT64).
        spec_id.extend_from_slice(&[0, 2, 0, 2]);
        spec_id.extend_from_slice(&(self.algorithms.len() as u32).to_le_bytes());
        for a in &self.algorithms {
            spec_id.extend_from_slice(&a.algorithm.to_le_bytes());
            spec_id.extend_from_slice(&a.digest_size.to_le_bytes());
        }
        spec_id.push(0); // vendorInfoSize

        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes()); // pcrIndex
        out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        out.extend_from_slice(&[0u8; 20]); // SHA-1 digest field, zero for the header
        out.extend_from_slice(&(spec_id.len() as u32).to_le_bytes());
        out.extend_from_slice(&spec_id);
        for e in &self.events {
            out.extend_from_slice(&e.pcr.to_le_bytes());
            out.extend_from_slice(&e.event_type.to_le_bytes());
            out.extend_from_slice(&(e.digests.len() as u32).to_le_bytes());
            for d in &e.digests {
                out.extend_from_slice(&d.algorithm.to_le_bytes());
                out.extend_from_slice(&d.value);
            }
            out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&e.data);
        }
        out
    }

    /// Replays the log into the SHA-256 bank: each event's SHA-256 digest extended into its
    /// PCR, in order; EV_NO_ACTION events are not extended (a StartupLocality one sets PCR 0's
    /// starting value, as the firmware profile says). Fails when an extended event has no
    /// SHA-256 digest, since the SHA-256 values could then not be known.
    pub fn replay_sha256(&self) -> Result<ReplayedPcrs, EventLogError> {
        let mut pcrs = ReplayedPcrs::new();
        for (i, e) in self.events.iter().enumerate() {
            if e.event_type == EV_NO_ACTION {
                if let Some(locality) = startup_locality(&e.data) {
                    let mut start = [0u8; 32];
                    start[31] = locality;
                    pcrs.insert(0, start);
                }
                continue;
            }
            let Some(d) = e.sha256() else {
                return Err(EventLogError::Invalid {
                    event: i + 1,
                    problem: format!(
                        "PCR {} event has no SHA-256 digest, so the SHA-256 bank cannot be replayed",
                        e.pcr
                    ),
                });
            };
            let value = pcrs.entry(e.pcr).or_insert([0u8; 32]);
            *value = extend_sha256(value, &d);
        }
        Ok(pcrs)
    }
}

/// TPM2_PCR_Extend on a SHA-256 PCR: new = SHA-256(old || digest).
pub fn extend_sha256(old: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut input = [0u8; 64];
    input[..32].copy_from_slice(old);
    input[32..].copy_from_slice(digest);
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&SHA256, &input).as_ref());
    out
}

/// The locality of a StartupLocality event's data, if it is one.
fn startup_locality(data: &[u8]) -> Option<u8> {
    match data {
        [sig @ .., locality] if sig == STARTUP_LOCALITY_SIGNATURE => Some(*locality),
        _ => None,
    }
}

/// The Spec ID header: platform class and digest sizes.
fn parse_header(r: &mut Reader<'_>) -> Result<(u32, Vec<AlgorithmSize>), EventLogError> {
    let pcr = r.u32("header pcrIndex")?;
    let event_type = r.u32("header eventType")?;
    if pcr != 0 || event_type != EV_NO_ACTION {
        return Err(EventLogError::NotCryptoAgile(
            "the first event is not an EV_NO_ACTION event in PCR 0",
        ));
    }
    let sha1 = r.take(20, "header digest")?;
    let size = r.u32("header eventSize")? as usize;
    let data = r.take(size, "header event data")?;
    if sha1.iter().any(|b| *b != 0) {
        return Err(EventLogError::NotCryptoAgile(
            "the header's digest is not zero",
        ));
    }
    let mut h = Reader {
        bytes: data,
        offset: 0,
    };
    if h.take(16, "Spec ID signature")? != SPEC_ID_SIGNATURE {
        return Err(EventLogError::NotCryptoAgile(
            "the header's signature is not \"Spec ID Event03\"",
        ));
    }
    let platform_class = h.u32("platformClass")?;
    let _version_minor = h.u8("specVersionMinor")?;
    let version_major = h.u8("specVersionMajor")?;
    let _errata = h.u8("specErrata")?;
    let _uintn_size = h.u8("uintnSize")?;
    if version_major != 2 {
        return Err(EventLogError::NotCryptoAgile(
            "the header's specVersionMajor is not 2",
        ));
    }
    let count = h.u32("numberOfAlgorithms")? as usize;
    if count == 0 || count > MAX_ALGORITHMS {
        return Err(EventLogError::TooMany {
            what: "algorithms in the Spec ID header (or none)",
            count,
            limit: MAX_ALGORITHMS,
        });
    }
    let mut algorithms: Vec<AlgorithmSize> = Vec::with_capacity(count);
    for _ in 0..count {
        let algorithm = h.u16("algorithmId")?;
        let digest_size = h.u16("digestSize")?;
        if digest_size == 0 || digest_size > MAX_DIGEST_SIZE {
            return Err(EventLogError::Invalid {
                event: 0,
                problem: format!(
                    "algorithm {algorithm:#06x} has digest size {digest_size} (1 to {MAX_DIGEST_SIZE} allowed)"
                ),
            });
        }
        if algorithms.iter().any(|a| a.algorithm == algorithm) {
            return Err(EventLogError::Invalid {
                event: 0,
                problem: format!("algorithm {algorithm:#06x} is listed twice"),
            });
        }
        if algorithm == ALG_SHA256 && digest_size != 32 {
            return Err(EventLogError::Invalid {
                event: 0,
                problem: format!("SHA-256 is declared with digest size {digest_size}, not 32"),
            });
        }
        algorithms.push(AlgorithmSize {
            algorithm,
            digest_size,
        });
    }
    let vendor_size = h.u8("vendorInfoSize")? as usize;
    h.take(vendor_size, "vendorInfo")?;
    if h.remaining() != 0 {
        return Err(EventLogError::Invalid {
            event: 0,
            problem: format!(
                "{} bytes follow the Spec ID structure inside its event",
                h.remaining()
            ),
        });
    }
    Ok((platform_class, algorithms))
}

/// One TCG_PCR_EVENT2 record.
fn parse_event2(
    r: &mut Reader<'_>,
    algorithms: &[AlgorithmSize],
    index: usize,
) -> Result<Event, EventLogError> {
    let pcr = r.u32("pcrIndex")?;
    if pcr >= PCR_COUNT {
        return Err(EventLogError::Invalid {
            event: index,
            problem: format!("PCR index {pcr} is out of range (0 to {})", PCR_COUNT - 1),
        });
    }
    let event_type = r.u32("eventType")?;
    let count = r.u32("digest count")? as usize;
    if count > algorithms.len() {
        return Err(EventLogError::TooMany {
            what: "digests in one event (more than the header's algorithms)",
            count,
            limit: algorithms.len(),
        });
    }
    let mut digests: Vec<EventDigest> = Vec::with_capacity(count);
    for _ in 0..count {
        let algorithm = r.u16("digest algorithm")?;
        let Some(size) = algorithms.iter().find(|a| a.algorithm == algorithm) else {
            return Err(EventLogError::Invalid {
                event: index,
                problem: format!(
                    "digest algorithm {algorithm:#06x} is not declared in the Spec ID header"
                ),
            });
        };
        if digests.iter().any(|d| d.algorithm == algorithm) {
            return Err(EventLogError::Invalid {
                event: index,
                problem: format!("digest algorithm {algorithm:#06x} appears twice"),
            });
        }
        let value = r.take(size.digest_size as usize, "digest")?.to_vec();
        digests.push(EventDigest { algorithm, value });
    }
    let size = r.u32("eventSize")? as usize;
    let data = r.take(size, "event data")?.to_vec();
    Ok(Event {
        pcr,
        event_type,
        digests,
        data,
    })
}

/// A little-endian cursor that never reads past its bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EventLogError> {
        if n > self.remaining() {
            return Err(EventLogError::Truncated {
                what,
                offset: self.offset,
                needed: n,
                left: self.remaining(),
            });
        }
        let out = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, EventLogError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, EventLogError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, EventLogError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EventLog {
        let mut log = EventLog::new_sha256();
        log.push_sha256(13, EV_IPL, [7u8; 32], b"one".to_vec());
        log.push_sha256(13, EV_IPL, sha256(b"two"), b"two".to_vec());
        log
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let log = sample();
        assert_eq!(EventLog::parse(&log.encode()).unwrap(), log);
    }

    #[test]
    fn replay_extends_in_order() {
        let replayed = sample().replay_sha256().unwrap();
        let first = extend_sha256(&[0; 32], &[7; 32]);
        assert_eq!(replayed[&13], extend_sha256(&first, &sha256(b"two")));
        assert_eq!(replayed.len(), 1);
    }

    #[test]
    fn truncation_inside_a_structure_is_refused() {
        let log = sample();
        let bytes = log.encode();
        // Prefixes ending between records are shorter logs; any other prefix is truncated.
        let boundaries: Vec<usize> = (0..=log.events.len())
            .map(|n| {
                let mut shorter = log.clone();
                shorter.events.truncate(n);
                shorter.encode().len()
            })
            .collect();
        for n in 0..bytes.len() {
            let parsed = EventLog::parse(&bytes[..n]);
            assert_eq!(
                parsed.is_ok(),
                boundaries.contains(&n),
                "prefix of {n} bytes"
            );
        }
    }

    #[test]
    fn startup_locality_sets_pcr0_start() {
        let mut log = EventLog::new_sha256();
        let mut data = STARTUP_LOCALITY_SIGNATURE.to_vec();
        data.push(3);
        log.push_sha256(0, EV_NO_ACTION, [0; 32], data);
        log.push_sha256(0, EV_IPL, [1; 32], Vec::new());
        let mut start = [0u8; 32];
        start[31] = 3;
        assert_eq!(
            log.replay_sha256().unwrap()[&0],
            extend_sha256(&start, &[1; 32])
        );
    }
}
