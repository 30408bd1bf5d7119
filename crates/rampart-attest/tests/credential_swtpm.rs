//! MakeCredential from `credential.rs`, activated by a real (software) TPM with
//! `tpm2_activatecredential`, for an RSA and an ECC endorsement key; a credential made for
//! another AK name or another EK must not activate.

use std::path::Path;

use rampart_attest::credential::{MadeCredential, make_credential};
use rampart_testkit::swtpm::SwTpm;

/// The EK's TPMT_PUBLIC, the AK's name, in a TPM with the EK at `ek.ctx` and an ECDSA P-256
/// AK at `ak.ctx` (as the agent makes them).
fn ek_and_ak(tpm: &SwTpm, dir: &Path, ek_alg: &str) -> (Vec<u8>, Vec<u8>) {
    tpm.tpm2_ok(
        dir,
        "tpm2_createek",
        &["-c", "ek.ctx", "-G", ek_alg, "-u", "ek.pub"],
    );
    tpm.tpm2_ok(
        dir,
        "tpm2_createak",
        &[
            "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u",
            "ak.pub", "-n", "ak.name",
        ],
    );
    // No resource manager between tpm2-tools and swtpm: unload what the tools left loaded.
    tpm.tpm2_ok(dir, "tpm2_flushcontext", &["-t"]);
    (
        tpm2b_contents(&std::fs::read(dir.join("ek.pub")).unwrap()),
        std::fs::read(dir.join("ak.name")).unwrap(),
    )
}

/// The contents of a TPM2B (u16 size first), as tpm2-tools writes public areas.
fn tpm2b_contents(bytes: &[u8]) -> Vec<u8> {
    let size = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    assert_eq!(size + 2, bytes.len(), "a TPM2B file");
    bytes[2..].to_vec()
}

/// tpm2-tools' credential file: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT,
/// TPM2B_ENCRYPTED_SECRET (big-endian).
fn tpm2_tools_credential_file(made: &MadeCredential) -> Vec<u8> {
    let mut out = 0xBADC_C0DEu32.to_be_bytes().to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    for part in [&made.credential_blob, &made.encrypted_secret] {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// `tpm2_activatecredential` with the AK and EK of `dir`: the secret, or tpm2-tools' error.
fn activate(tpm: &SwTpm, dir: &Path, made: &MadeCredential) -> Result<Vec<u8>, String> {
    std::fs::write(dir.join("cred.in"), tpm2_tools_credential_file(made)).unwrap();
    let _ = std::fs::remove_file(dir.join("secret.out"));
    tpm.tpm2_ok(
        dir,
        "tpm2_startauthsession",
        &["--policy-session", "-S", "session.ctx"],
    );
    tpm.tpm2_ok(dir, "tpm2_policysecret", &["-S", "session.ctx", "-c", "e"]);
    let out = tpm.tpm2(
        dir,
        "tpm2_activatecredential",
        &[
            "-c",
            "ak.ctx",
            "-C",
            "ek.ctx",
            "-i",
            "cred.in",
            "-o",
            "secret.out",
            "-P",
            "session:session.ctx",
        ],
    );
    tpm.tpm2_ok(dir, "tpm2_flushcontext", &["session.ctx"]);
    tpm.tpm2_ok(dir, "tpm2_flushcontext", &["-t"]);
    if out.status.success() {
        Ok(std::fs::read(dir.join("secret.out")).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn credential_round_trip(ek_alg: &str) {
    let tpm = SwTpm::start();
    let dir = tempfile::tempdir().unwrap();
    let (ek, ak_name) = ek_and_ak(&tpm, dir.path(), ek_alg);
    let secret = b"enrolment challenge 0123456789ab";

    let made = make_credential(&ek, &ak_name, secret, &[7; 32]).unwrap();
    assert_eq!(activate(&tpm, dir.path(), &made).unwrap(), secret);

    // Sealed to another AK name: the TPM's integrity check fails.
    let mut other_name = ak_name.clone();
    other_name[33] ^= 1;
    let made = make_credential(&ek, &other_name, secret, &[8; 32]).unwrap();
    let err = activate(&tpm, dir.path(), &made).unwrap_err();
    assert!(err.contains("integrity check failed"), "{err}");

    // Sealed to another EK of the same kind (a primary under the endorsement hierarchy from
    // another template): the TPM cannot recover the seed.
    let template = if ek_alg == "rsa" {
        "rsa2048:aes128cfb"
    } else {
        "ecc256:aes128cfb"
    };
    tpm.tpm2_ok(
        dir.path(),
        "tpm2_createprimary",
        &[
            "-C",
            "e",
            "-G",
            template,
            "-g",
            "sha256",
            "-c",
            "other.ctx",
            "-a",
            "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth",
        ],
    );
    tpm.tpm2_ok(
        dir.path(),
        "tpm2_readpublic",
        &["-c", "other.ctx", "-o", "other.pub"],
    );
    tpm.tpm2_ok(dir.path(), "tpm2_flushcontext", &["-t"]);
    let other_ek = tpm2b_contents(&std::fs::read(dir.path().join("other.pub")).unwrap());
    assert_ne!(other_ek, ek);
    let made = make_credential(&other_ek, &ak_name, secret, &[9; 32]).unwrap();
    let err = activate(&tpm, dir.path(), &made).unwrap_err();
    // ECC: another seed, so the integrity check fails; RSA: OAEP decryption fails (swtpm
    // answers TPM_RC_FAILURE).
    assert!(err.contains("Esys_ActivateCredential("), "{err}");
}

#[test]
fn make_credential_activates_on_swtpm_with_an_rsa_ek() {
    credential_round_trip("rsa");
}

#[test]
fn make_credential_activates_on_swtpm_with_an_ecc_ek() {
    credential_round_trip("ecc");
}
