//! The software TPM model: its quotes pass the same verification as a real TPM's, its
//! credentials activate only for its own EK and AK, its PCRs reset on reboot, its NV counter
//! only counts up, and its keys have the real templates (compared with swtpm's).

use std::collections::BTreeMap;

use rampart_attest::credential::{CredentialError, make_credential};
use rampart_attest::device::TpmDevice;
use rampart_attest::measure::{GoldenMeasurements, boot_log, check_measurements, quoted_sha256};
use rampart_attest::pcr::PcrSelection;
use rampart_attest::quote::{AttestationKey, QuoteError, verify_quote_bytes};
use rampart_attest::soft::SoftTpm;
use rampart_attest::wire::{HashAlg, Public};
use rampart_testkit::swtpm::SwTpm;

const IMAGE: [u8; 32] = [0x42; 32];
const TARGET: &str = "firmware/sim-1.0.bin";

fn ak_of(tpm: &mut SoftTpm) -> AttestationKey {
    let public = Public::parse(&tpm.attestation_key().unwrap()).unwrap();
    public.check_attestation_key().unwrap();
    AttestationKey::from_public(&public)
}

fn sha256_13() -> PcrSelection {
    PcrSelection::bank(HashAlg::Sha256, [13]).unwrap()
}

#[test]
fn soft_tpm_quotes_verify_with_verify_quote_and_the_log_replays() {
    let mut tpm = SoftTpm::new([1; 32]);
    let log = boot_log(13, IMAGE, TARGET);
    for event in &log.events {
        tpm.extend(13, &event.sha256().unwrap()).unwrap();
    }
    let ak = ak_of(&mut tpm);
    let nonce = [0xa5; 32];
    let quote = tpm.quote(&nonce, &[13]).unwrap();
    let verified = verify_quote_bytes(&quote, &ak, &nonce, &sha256_13()).unwrap();

    let quoted = quoted_sha256(&verified.pcrs);
    let golden = GoldenMeasurements {
        target_path: TARGET.into(),
        image_sha256: IMAGE,
        firmware_pcrs: BTreeMap::new(),
    };
    check_measurements(&log, &quoted, &golden, 13).unwrap();

    // Fail closed on the model's quotes as on a real TPM's.
    let err = verify_quote_bytes(&quote, &ak, &[0x5a; 32], &sha256_13()).unwrap_err();
    assert!(matches!(err, QuoteError::NonceMismatch { .. }), "{err}");
    let other_ak = ak_of(&mut SoftTpm::new([2; 32]));
    verify_quote_bytes(&quote, &other_ak, &nonce, &sha256_13()).unwrap_err();
    let mut tampered = quote.clone();
    let last = tampered.message.len() - 1;
    tampered.message[last] ^= 1;
    verify_quote_bytes(&tampered, &ak, &nonce, &sha256_13()).unwrap_err();
}

#[test]
fn soft_tpm_is_deterministic_from_its_seed() {
    let mut a = SoftTpm::new([7; 32]);
    let mut b = SoftTpm::new([7; 32]);
    assert_eq!(a.endorsement().unwrap(), b.endorsement().unwrap());
    assert_eq!(a.attestation_key().unwrap(), b.attestation_key().unwrap());
    assert_eq!(
        a.quote(b"n", &[0, 13]).unwrap(),
        b.quote(b"n", &[0, 13]).unwrap()
    );
    let mut c = SoftTpm::new([8; 32]);
    assert_ne!(a.endorsement().unwrap(), c.endorsement().unwrap());
    assert_eq!(a.endorsement().unwrap().certificate, None);
}

#[test]
fn soft_tpm_reboot_resets_pcrs_and_counts_the_reset() {
    let mut tpm = SoftTpm::new([3; 32]);
    let ak = ak_of(&mut tpm);
    tpm.extend(13, &[9; 32]).unwrap();
    let before =
        verify_quote_bytes(&tpm.quote(b"1", &[13]).unwrap(), &ak, b"1", &sha256_13()).unwrap();
    assert_ne!(tpm.pcr(13).unwrap(), [0; 32]);
    tpm.reboot();
    assert_eq!(tpm.pcr(13).unwrap(), [0; 32]);
    let after =
        verify_quote_bytes(&tpm.quote(b"2", &[13]).unwrap(), &ak, b"2", &sha256_13()).unwrap();
    assert_eq!(
        after.clock_info.reset_count,
        before.clock_info.reset_count + 1
    );
    after.check_after(&before.clock_info).unwrap();
    // Counters that went backwards are refused: the earlier quote after the later one.
    before.check_after(&after.clock_info).unwrap_err();
    // A PCR the TPM does not have.
    tpm.extend(24, &[0; 32]).unwrap_err();
    tpm.quote(b"3", &[24]).unwrap_err();
}

#[test]
fn soft_tpm_activates_only_credentials_for_its_own_ek_and_ak() {
    let mut tpm = SoftTpm::new([4; 32]);
    let ek = tpm.endorsement().unwrap().public;
    let name = tpm.attestation_key_name();
    let made = make_credential(&ek, &name, b"challenge", &[1; 32]).unwrap();
    assert_eq!(
        tpm.activate_credential(&made.credential_blob, &made.encrypted_secret)
            .unwrap(),
        b"challenge"
    );

    // Another AK's name.
    let other_name = SoftTpm::new([5; 32]).attestation_key_name();
    let made_other = make_credential(&ek, &other_name, b"challenge", &[2; 32]).unwrap();
    let err = tpm
        .activate_credential(&made_other.credential_blob, &made_other.encrypted_secret)
        .unwrap_err();
    assert!(
        err.message
            .contains(&CredentialError::Integrity.to_string()),
        "{err}"
    );

    // Another TPM's EK.
    let other_ek = SoftTpm::new([5; 32]).endorsement().unwrap().public;
    let made_other = make_credential(&other_ek, &name, b"challenge", &[3; 32]).unwrap();
    tpm.activate_credential(&made_other.credential_blob, &made_other.encrypted_secret)
        .unwrap_err();

    // A tampered blob, and garbage.
    let mut blob = made.credential_blob.clone();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    tpm.activate_credential(&blob, &made.encrypted_secret)
        .unwrap_err();
    tpm.activate_credential(&[], &[]).unwrap_err();
    tpm.activate_credential(&made.credential_blob, &made.encrypted_secret[..10])
        .unwrap_err();
}

#[test]
fn soft_tpm_nv_counter_only_counts_up_and_survives_reboot() {
    let mut tpm = SoftTpm::new([6; 32]);
    assert_eq!(tpm.security_floor().unwrap(), 0);
    tpm.raise_security_floor(3).unwrap();
    tpm.raise_security_floor(2).unwrap();
    assert_eq!(tpm.security_floor().unwrap(), 3);
    tpm.reboot();
    assert_eq!(tpm.security_floor().unwrap(), 3);
}

/// The TPMT_PUBLIC without its unique field (the last 68 bytes of a P-256 key: two TPM2B
/// coordinates): the template.
fn template(public: &[u8]) -> &[u8] {
    &public[..public.len() - 68]
}

#[test]
fn soft_tpm_keys_have_the_templates_swtpm_makes() {
    let swtpm = SwTpm::start();
    let dir = tempfile::tempdir().unwrap();
    swtpm.tpm2_ok(
        dir.path(),
        "tpm2_createek",
        &["-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub"],
    );
    swtpm.tpm2_ok(
        dir.path(),
        "tpm2_createak",
        &[
            "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u",
            "ak.pub",
        ],
    );
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap()[2..].to_vec();
    let mut soft = SoftTpm::new([9; 32]);
    assert_eq!(
        template(&soft.endorsement().unwrap().public),
        template(&read("ek.pub"))
    );
    assert_eq!(
        template(&soft.attestation_key().unwrap()),
        template(&read("ak.pub"))
    );
}

#[test]
fn soft_tpm_refuses_a_nonce_longer_than_a_tpm_takes() {
    let mut tpm = SoftTpm::new([10; 32]);
    let max = rampart_attest::soft::MAX_NONCE;
    tpm.quote(&vec![1; max], &[13]).unwrap();
    let err = tpm.quote(&vec![1; max + 1], &[13]).unwrap_err();
    assert!(err.message.contains("nonce"), "{err}");
}

/// The AK as the PEM `tpm2_checkquote -u` reads.
fn ak_pem(public: &[u8]) -> String {
    use base64::Engine as _;
    let der = Public::parse(public).unwrap().to_spki_der();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

#[test]
fn soft_tpm_quotes_and_event_logs_pass_tpm2_checkquote() {
    let mut tpm = SoftTpm::new([11; 32]);
    let log = boot_log(13, IMAGE, TARGET);
    for event in &log.events {
        tpm.extend(13, &event.sha256().unwrap()).unwrap();
    }
    let nonce = [0x3c; 20];
    let quote = tpm.quote(&nonce, &[0, 13]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    write("ak.pem", ak_pem(&tpm.attestation_key().unwrap()).as_bytes());
    write("quote.msg", &quote.message);
    write("quote.sig", &quote.signature);
    write("quote.pcrs", &quote.pcrs);
    write("log.bin", &log.encode());
    let check = |qualification: &[u8]| {
        std::process::Command::new("tpm2_checkquote")
            .current_dir(dir.path())
            .args(["-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig", "-f", "quote.pcrs", "-g", "sha256", "-e", "log.bin"])
            .arg("-q")
            .arg(hex::encode(qualification))
            .output()
            .expect("tpm2_checkquote (Debian package tpm2-tools) must be installed; scripts/test.sh installs it")
    };
    let out = check(&nonce);
    assert!(
        out.status.success(),
        "tpm2_checkquote refused the model's quote:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The positive result means something: another nonce is refused, and so is a log that
    // does not replay to the quoted PCRs.
    assert!(!check(&[0x3d; 20]).status.success());
    write("log.bin", &boot_log(13, [0x43; 32], TARGET).encode());
    assert!(!check(&nonce).status.success());
}

#[test]
fn soft_tpm_activates_a_credential_made_by_tpm2_makecredential() {
    // tpm2-tools' own MakeCredential (software, `-T none`) for the model's EK and AK: the
    // model's ActivateCredential is the TPM's, not only the inverse of Rampart's MakeCredential.
    let mut tpm = SoftTpm::new([12; 32]);
    let ek = tpm.endorsement().unwrap().public;
    let dir = tempfile::tempdir().unwrap();
    let mut ek_file = (ek.len() as u16).to_be_bytes().to_vec();
    ek_file.extend_from_slice(&ek);
    std::fs::write(dir.path().join("ek.pub"), ek_file).unwrap();
    std::fs::write(dir.path().join("secret"), b"tpm2-tools secret").unwrap();
    let out = std::process::Command::new("tpm2_makecredential")
        .current_dir(dir.path())
        .args(["-T", "none", "-u", "ek.pub", "-s", "secret", "-o", "cred.out", "-n"])
        // tpm2-tools 5.4 takes the name in hex, not a file.
        .arg(hex::encode(tpm.attestation_key_name()))
        .output()
        .expect("tpm2_makecredential (Debian package tpm2-tools) must be installed; scripts/test.sh installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // tpm2-tools' file: magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
    let file = std::fs::read(dir.path().join("cred.out")).unwrap();
    assert_eq!(file[..8], [0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
    let blob_len = usize::from(u16::from_be_bytes([file[8], file[9]]));
    let blob = &file[10..10 + blob_len];
    let secret_len = usize::from(u16::from_be_bytes([
        file[10 + blob_len],
        file[11 + blob_len],
    ]));
    let secret = &file[12 + blob_len..];
    assert_eq!(secret.len(), secret_len);
    assert_eq!(
        tpm.activate_credential(blob, secret).unwrap(),
        b"tpm2-tools secret"
    );
}
