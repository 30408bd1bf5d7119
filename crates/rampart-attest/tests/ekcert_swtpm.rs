//! swtpm's EK certificates (with the TPM-specific extensions of the TCG EK Credential Profile)
//! verify against its local CA, and fail against another root, after a tampered byte, with
//! a mismatching EK public key and outside their validity.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rampart_attest::ekcert::{
    CertifiedKey, EkCertError, certificates_from_pem, verify_ek_certificate, verify_ek_chain,
};
use rampart_testkit::swtpm::SwTpm;

struct Ek {
    certificate: Vec<u8>,
    intermediates: Vec<Vec<u8>>,
    roots: Vec<Vec<u8>>,
    /// TPMT_PUBLIC of the RSA EK made from the standard template.
    public: Vec<u8>,
}

fn rsa_ek(tpm: &SwTpm, dir: &Path) -> Ek {
    tpm.tpm2_ok(
        dir,
        "tpm2_createek",
        &["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"],
    );
    tpm.tpm2_ok(dir, "tpm2_flushcontext", &["-t"]);
    let public = std::fs::read(dir.join("ek.pub")).unwrap()[2..].to_vec();
    Ek {
        certificate: std::fs::read(tpm.ek_certificate_file("ek-rsa2048.crt")).unwrap(),
        intermediates: certificates_from_pem(&std::fs::read(tpm.ek_issuer()).unwrap()).unwrap(),
        roots: certificates_from_pem(&std::fs::read(tpm.ek_root()).unwrap()).unwrap(),
        public,
    }
}

#[test]
fn swtpm_ek_certificate_verifies_against_its_local_ca_and_nothing_else() {
    let tpm = SwTpm::start();
    let dir = tempfile::tempdir().unwrap();
    let ek = rsa_ek(&tpm, dir.path());
    let now = SystemTime::now();
    verify_ek_certificate(
        &ek.certificate,
        &ek.intermediates,
        &ek.roots,
        now,
        &ek.public,
    )
    .unwrap();

    // The ECC (P-384) certificate's chain verifies too.
    let ecc = std::fs::read(tpm.ek_certificate_file("ek-secp384r1.crt")).unwrap();
    let key = verify_ek_chain(&ecc, &ek.intermediates, &ek.roots, now).unwrap();
    assert!(
        matches!(key, CertifiedKey::Ec { ref curve, .. } if curve == "1.3.132.0.34"),
        "{key:?}"
    );

    // Without the intermediate there is no path to the root.
    let err = verify_ek_certificate(&ek.certificate, &[], &ek.roots, now, &ek.public).unwrap_err();
    assert!(matches!(err, EkCertError::UnknownIssuer { .. }), "{err}");

    // Another TPM manufacturer's root (another swtpm's CA) does not vouch for this TPM; and
    // this certificate does not vouch for the other TPM's EK.
    let other_tpm = SwTpm::start();
    let other_dir = tempfile::tempdir().unwrap();
    let other = rsa_ek(&other_tpm, other_dir.path());
    let err = verify_ek_certificate(
        &ek.certificate,
        &other.intermediates,
        &other.roots,
        now,
        &ek.public,
    )
    .unwrap_err();
    assert!(matches!(err, EkCertError::UnknownIssuer { .. }), "{err}");
    let err = verify_ek_certificate(
        &ek.certificate,
        &ek.intermediates,
        &ek.roots,
        now,
        &other.public,
    )
    .unwrap_err();
    assert_eq!(err, EkCertError::KeyMismatch);

    // Outside the validity period (swtpm issued it just now).
    let err = verify_ek_certificate(
        &ek.certificate,
        &ek.intermediates,
        &ek.roots,
        now - Duration::from_secs(2 * 86_400),
        &ek.public,
    )
    .unwrap_err();
    assert!(matches!(err, EkCertError::Expired { .. }), "{err}");
}

#[test]
fn swtpm_ek_certificate_with_a_tampered_byte_is_refused() {
    let tpm = SwTpm::start();
    let dir = tempfile::tempdir().unwrap();
    let ek = rsa_ek(&tpm, dir.path());
    let now = SystemTime::now();
    // Flip one bit at a time over the whole certificate: none of the results verifies for
    // this EK (most no longer parse, the rest fail the signature or the key comparison).
    let mut verified = Vec::new();
    for i in (0..ek.certificate.len()).step_by(7) {
        let mut tampered = ek.certificate.clone();
        tampered[i] ^= 0x01;
        if verify_ek_certificate(&tampered, &ek.intermediates, &ek.roots, now, &ek.public).is_ok() {
            verified.push(i);
        }
    }
    assert!(
        verified.is_empty(),
        "tampered at byte(s) {verified:?} and still verified"
    );
}
