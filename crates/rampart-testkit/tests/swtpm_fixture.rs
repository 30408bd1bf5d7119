//! The software-TPM fixture itself: a PCR extend is visible, a power cycle resets PCRs and keeps
//! NV indices, and the EK certificate chains to the fixture's CA.

use rampart_testkit::swtpm::SwTpm;

fn pcr13(tpm: &SwTpm, dir: &std::path::Path) -> String {
    let out = tpm.tpm2_ok(dir, "tpm2_pcrread", &["sha256:13"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn swtpm_power_cycle_resets_pcrs_and_keeps_nv() {
    let mut tpm = SwTpm::start();
    let dir = tpm.home();
    let fresh = pcr13(&tpm, &dir);
    tpm.tpm2_ok(
        &dir,
        "tpm2_pcrextend",
        &[&format!("13:sha256={}", "ab".repeat(32))],
    );
    assert_ne!(pcr13(&tpm, &dir), fresh, "an extend changes PCR 13");
    tpm.tpm2_ok(
        &dir,
        "tpm2_nvdefine",
        &[
            "0x01500020",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|ownerwrite|nt=counter",
        ],
    );
    tpm.tpm2_ok(&dir, "tpm2_nvincrement", &["0x01500020", "-C", "o"]);
    tpm.restart();
    assert_eq!(pcr13(&tpm, &dir), fresh, "a power cycle resets PCR 13");
    let read = tpm.tpm2_ok(&dir, "tpm2_nvread", &["0x01500020", "-C", "o", "-s", "8"]);
    assert_eq!(read.stdout.len(), 8, "the counter survives the power cycle");
}

#[test]
fn swtpm_ek_certificate_chains_to_the_fixture_ca() {
    let tpm = SwTpm::start();
    let dir = tpm.home();
    let pem = dir.join("ek.pem");
    let conv = std::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(tpm.ek_certificate_file("ek-rsa2048.crt"))
        .arg("-out")
        .arg(&pem)
        .status()
        .expect("openssl runs");
    assert!(conv.success(), "swtpm_setup wrote a DER EK certificate");
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(tpm.ek_root())
        .arg("-untrusted")
        .arg(tpm.ek_issuer())
        .arg(&pem)
        .output()
        .expect("openssl runs");
    assert!(
        verify.status.success(),
        "swtpm's EK certificate chains to the fixture's CA: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
