use std::collections::BTreeMap;

use rampart_attest::device::QuoteBytes;
use rampart_attest::device::TpmDevice;
use rampart_attest::pcr::PcrSelection;
use rampart_attest::quote::{AttestationKey, verify_quote_bytes};
use rampart_attest::soft::SoftTpm;
use rampart_attest::wire::{HashAlg, Public};
use rampart_incident::agent_log::{
    ChainStart, RecordKind, parse_lines, verify_anchors, verify_chain,
};
use rampart_incident::evidence::{ExpectedRequest, certificate_spki};

use super::*;
use crate::bootenv::{EnvStore as _, GrubEnvFile};
use crate::config::Config;

pub(crate) const DEVICE: &str = "device-7";

mod upload;

/// A test CA and the device's certificate from it.
pub(crate) fn pki() -> (rampart_pki::CertificateAuthority, rampart_pki::IssuedCert) {
    let ca = rampart_pki::CertificateAuthority::generate("Evidence Test CA", 30).unwrap();
    let issued = ca.issue_device(DEVICE, 30).unwrap();
    (ca, issued)
}

/// A device key: a device certificate from a test CA and its PEM key.
pub(crate) fn test_key() -> DeviceKey {
    let (_, issued) = pki();
    DeviceKey::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap()
}

pub(crate) fn spki(key: &DeviceKey) -> Vec<u8> {
    certificate_spki(key.certificate()).unwrap()
}

/// A device on files in `dir`: two slots, a GRUB environment, a state directory.
pub(crate) struct TestDevice {
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl TestDevice {
    pub fn new(extra: &str) -> TestDevice {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(p("slot-a"), vec![0xa5u8; 70_000]).unwrap();
        std::fs::write(p("slot-b"), b"suspect image").unwrap();
        std::fs::write(p("boot_id"), "6f1c0e7e-boot\n").unwrap();
        std::fs::create_dir_all(p("state/metadata")).unwrap();
        std::fs::write(p("state/metadata/root.json"), b"{\"signed\":{}}").unwrap();
        let mut env = GrubEnvFile::new(p("grubenv"));
        let vars = BTreeMap::from([("bootargs".to_owned(), "console=ttyS0 init=/evil".to_owned())]);
        env.store(&Disk::new(), &vars).unwrap();
        let text = format!(
            r#"
state_dir = "{state}"
hardware_id = "board"
[slots]
A = "{a}"
B = "{b}"
[bootloader]
kind = "grub"
grub_env = "{env}"
[boot]
booted_slot = "A"
boot_id = "{boot_id}"
[evidence]
journal_lines = 5
{extra}
"#,
            state = p("state"),
            a = p("slot-a"),
            b = p("slot-b"),
            env = p("grubenv"),
            boot_id = p("boot_id"),
        );
        let config = Config::parse(&text).unwrap();
        TestDevice { dir, config }
    }

    pub fn device(&self) -> Device {
        Device::open(self.config.clone(), Disk::new()).unwrap()
    }

    pub fn log(&self) -> AgentLog {
        AgentLog::open(&self.config.state_dir, &self.config.evidence).unwrap()
    }
}

pub(crate) fn request(id: &str, max_bytes: u64) -> EvidenceRequest {
    EvidenceRequest {
        id: id.into(),
        incident: "inc-1".into(),
        nonce: "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
        max_bytes,
        chunk_bytes: 4096,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(rampart_incident::device_signature::sha256(bytes))
}

fn expected(req: &EvidenceRequest) -> ExpectedRequest<'_> {
    ExpectedRequest {
        device_id: DEVICE,
        request_id: &req.id,
        incident: &req.incident,
        nonce: &req.nonce,
    }
}

#[test]
fn a_bundle_holds_fresh_slot_hashes_the_environment_state_log_and_command_output() {
    let t = TestDevice::new(
        r#"commands = [["/bin/sh", "-c", "echo listening on 4444; echo oops >&2"]]"#,
    );
    let key = test_key();
    let mut device = t.device();
    let mut log = t.log();
    log.append(Level::Info, "started").unwrap();
    // The slot changes after the state file was written: the bundle tells what it holds now.
    std::fs::write(t.dir.path().join("slot-b"), b"tampered after install").unwrap();
    let req = request("ev-1", 1 << 20);
    let bytes = collect(&mut device, &mut log, &key, DEVICE, &req, 1_767_000_000).unwrap();

    let bundle = Bundle::parse(&bytes, req.max_bytes).unwrap();
    bundle.check_request(&expected(&req)).unwrap();
    bundle.verify_signature(&spki(&key)).unwrap();
    assert_eq!(bundle.quote, None, "no TPM, no quote");

    let slots: serde_json::Value =
        serde_json::from_slice(bundle.item("slots/hashes.json").unwrap()).unwrap();
    assert_eq!(slots["B"]["sha256"], sha256_hex(b"tampered after install"));
    assert_eq!(slots["A"]["length"], 70_000);
    let env =
        String::from_utf8_lossy(bundle.item("bootloader/environment.txt").unwrap()).into_owned();
    assert!(env.contains("bootargs=console=ttyS0 init=/evil"), "{env}");
    assert!(bundle.item("state/agent-state.json").is_some());
    assert_eq!(bundle.item("state/security-version"), Some(&b"0\n"[..]));
    assert_eq!(
        bundle.item("state/metadata/root.json"),
        Some(&b"{\"signed\":{}}"[..])
    );
    let command = String::from_utf8_lossy(bundle.item("commands/00-sh.txt").unwrap()).into_owned();
    assert!(
        command.contains("listening on 4444") && command.contains("oops"),
        "{command}"
    );
    assert!(
        bundle.item("journal/journalctl.txt").is_some()
            || bundle.item("journal/unavailable.txt").is_some()
    );

    // The log in the bundle chains, ends at the manifest's head with an anchor made for this
    // bundle, and the anchor verifies with the device key.
    let records = parse_lines(bundle.item("agent-log/agent.log").unwrap()).unwrap();
    let summary = verify_chain(&records, &ChainStart::Genesis).unwrap();
    assert_eq!(summary.head, bundle.manifest.agent_log_head);
    assert_eq!(records.last().unwrap().kind, RecordKind::Anchor);
    verify_anchors(&summary.anchors, DEVICE, &spki(&key)).unwrap();
}

fn ak_of(tpm: &mut SoftTpm) -> AttestationKey {
    AttestationKey::from_public(&Public::parse(&tpm.attestation_key().unwrap()).unwrap())
}

#[test]
fn with_a_tpm_the_quote_binds_the_signed_manifest_and_the_request_nonce() {
    let t = TestDevice::new("");
    let key = test_key();
    let mut tpm = SoftTpm::new([3; 32]);
    let ak = ak_of(&mut tpm);
    let mut device = Device::open_with_tpm(t.config.clone(), Disk::new(), Box::new(tpm)).unwrap();
    let mut log = t.log();
    let req = request("ev-q", 1 << 20);
    let bytes = collect(&mut device, &mut log, &key, DEVICE, &req, 1_767_000_000).unwrap();
    let bundle = Bundle::parse(&bytes, req.max_bytes).unwrap();
    let quote = bundle.quote.clone().expect("a TPM quotes the bundle");
    let quote = QuoteBytes {
        message: quote.message,
        signature: quote.signature,
        pcrs: quote.pcrs,
    };
    let mut pcrs: Vec<u8> = (0..8).collect();
    pcrs.push(13);
    let selection = PcrSelection::bank(HashAlg::Sha256, pcrs).unwrap();
    let bound = bundle.manifest.quote_qualifying_data().unwrap();
    verify_quote_bytes(&quote, &ak, &bound, &selection).unwrap();

    // The same quote does not vouch for another manifest (a changed item list) or another
    // request's nonce.
    let mut other = bundle.manifest.clone();
    other.items.pop();
    assert!(
        verify_quote_bytes(
            &quote,
            &ak,
            &other.quote_qualifying_data().unwrap(),
            &selection
        )
        .is_err()
    );
    let mut replayed = bundle.manifest.clone();
    replayed.nonce = "00".repeat(16);
    assert!(
        verify_quote_bytes(
            &quote,
            &ak,
            &replayed.quote_qualifying_data().unwrap(),
            &selection
        )
        .is_err()
    );
}

#[test]
fn output_beyond_the_request_size_is_cut_or_left_out_and_named() {
    let t = TestDevice::new(
        r#"commands = [["/bin/sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x"]]
command_max_bytes = 400000"#,
    );
    let key = test_key();
    let mut device = t.device();
    let mut log = t.log();
    // Several rotated log files, some of which cannot fit.
    for i in 0..150 {
        log.append(
            Level::Info,
            &format!("filler record {i} {}", "y".repeat(2000)),
        )
        .unwrap();
    }
    let req = request("ev-small", 96 * 1024);
    let bytes = collect(&mut device, &mut log, &key, DEVICE, &req, 1).unwrap();
    assert!(bytes.len() as u64 <= req.max_bytes, "{} bytes", bytes.len());
    let bundle = Bundle::parse(&bytes, req.max_bytes).unwrap();
    bundle.verify_signature(&spki(&key)).unwrap();
    let omitted = String::from_utf8_lossy(bundle.item("omitted.txt").unwrap()).into_owned();
    assert!(
        omitted.contains("agent-log/") || omitted.contains("commands/"),
        "{omitted}"
    );
    // The most important items are always there; the current log keeps its last records,
    // which still chain up to the manifest's head.
    assert!(bundle.item("slots/hashes.json").is_some());
    let records = parse_lines(bundle.item("agent-log/agent.log").unwrap()).unwrap();
    let summary = verify_chain(&records, &ChainStart::Anywhere).unwrap();
    assert_eq!(summary.head, bundle.manifest.agent_log_head);
    assert!(summary.first_seq > 0);
}

#[test]
fn a_command_that_hangs_is_killed_at_its_time_limit() {
    let t = TestDevice::new(
        r#"commands = [["/bin/sh", "-c", "echo started; sleep 30"]]
command_timeout_secs = 1"#,
    );
    let text = command_output(0, &t.config.evidence.commands[0], &t.config.evidence);
    let text = String::from_utf8_lossy(&text.bytes).into_owned();
    assert!(text.contains("killed at the time limit"), "{text}");
    assert!(text.contains("started"), "{text}");
}

#[test]
fn malformed_requests_are_refused_before_anything_is_collected() {
    let good = request("ev-1", 1 << 20);
    check_request(&good).unwrap();
    let cases = [
        EvidenceRequest {
            id: "../../etc/x".into(),
            ..good.clone()
        },
        EvidenceRequest {
            id: ".hidden".into(),
            ..good.clone()
        },
        EvidenceRequest {
            id: String::new(),
            ..good.clone()
        },
        EvidenceRequest {
            nonce: "not hex".into(),
            ..good.clone()
        },
        EvidenceRequest {
            nonce: "ab".repeat(65),
            ..good.clone()
        },
        EvidenceRequest {
            max_bytes: 100,
            ..good.clone()
        },
        EvidenceRequest {
            chunk_bytes: 0,
            ..good.clone()
        },
    ];
    let t = TestDevice::new("");
    let key = test_key();
    let mut device = t.device();
    let mut log = t.log();
    for case in cases {
        assert!(
            matches!(check_request(&case), Err(EvidenceError::Request(_))),
            "{case:?}"
        );
        assert!(collect(&mut device, &mut log, &key, DEVICE, &case, 1).is_err());
    }
    assert_eq!(log.head(), None, "nothing was logged for a refused request");
}

#[test]
fn a_collected_bundle_is_kept_in_the_state_directory_until_uploaded() {
    let t = TestDevice::new("");
    let disk = Disk::new();
    let pending = Pending {
        request: request("ev-keep", 1 << 20),
        bundle: b"bundle bytes".to_vec(),
    };
    let mut store = StateDirStore::new(&t.config.state_dir, &disk);
    assert_eq!(store.pending().unwrap(), vec![]);
    store.keep(&pending).unwrap();
    // A restarted agent finds it.
    let reopened = StateDirStore::new(&t.config.state_dir, &disk);
    assert_eq!(reopened.pending().unwrap(), vec![pending.clone()]);
    store.drop_uploaded("ev-keep").unwrap();
    assert_eq!(store.pending().unwrap(), vec![]);
    // A bundle whose request file never got written (power cut between them) is not pending.
    disk.replace_file(
        &t.config.state_dir.join(EVIDENCE_DIR).join("ev-torn.bundle"),
        b"half",
    )
    .unwrap();
    assert_eq!(store.pending().unwrap(), vec![]);
}
