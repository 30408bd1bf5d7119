//! MakeCredential's and ActivateCredential's input checks: what a device sends at enrolment
//! (its EK public area, its AK name) and what the model is asked to activate.

use rampart_attest::credential::{
    CredentialError, EkPublic, activate_credential_p256, make_credential,
};
use rampart_attest::device::TpmDevice;
use rampart_attest::soft::SoftTpm;
use rampart_attest::wire::{Public, PublicKey, SymDef, alg, object_attributes};

fn soft_ek() -> (Vec<u8>, Vec<u8>) {
    let mut tpm = SoftTpm::new([1; 32]);
    (
        tpm.endorsement().unwrap().public,
        tpm.attestation_key_name(),
    )
}

fn changed(public: &[u8], change: impl FnOnce(&mut Public)) -> Vec<u8> {
    let mut p = Public::parse(public).unwrap();
    change(&mut p);
    p.to_bytes()
}

#[test]
fn endorsement_keys_other_than_the_standard_templates_are_refused() {
    let (ek, name) = soft_ek();
    EkPublic::parse(&ek).unwrap();
    let make = |ek: &[u8]| make_credential(ek, &name, b"secret", &[0; 32]).unwrap_err();

    // A signing key (the AK itself) is not an EK.
    let ak = SoftTpm::new([1; 32]).attestation_key().unwrap();
    assert!(matches!(
        make(&ak),
        CredentialError::BadPublic(_) | CredentialError::Unsupported(_)
    ));
    // Not restricted: a plain decryption key anyone could have made outside a TPM's EK rules.
    let unrestricted = changed(&ek, |p| {
        p.object_attributes &= !object_attributes::RESTRICTED
    });
    assert!(matches!(make(&unrestricted), CredentialError::BadPublic(_)));
    // Another symmetric algorithm or key size.
    let aes256 = changed(&ek, |p| {
        if let PublicKey::Ecc { symmetric, .. } = &mut p.key {
            *symmetric = SymDef {
                algorithm: alg::AES,
                key_bits_mode: Some((256, alg::CFB)),
            };
        }
    });
    assert!(matches!(make(&aes256), CredentialError::Unsupported(_)));
    // Another name algorithm.
    let sha384 = changed(&ek, |p| p.name_alg = alg::SHA384);
    assert!(matches!(make(&sha384), CredentialError::Unsupported(_)));
    // A point off the curve.
    let off_curve = changed(&ek, |p| {
        if let PublicKey::Ecc { y, .. } = &mut p.key {
            y[31] ^= 1;
        }
    });
    assert!(matches!(make(&off_curve), CredentialError::BadPublic(_)));
    // Truncated, trailing bytes, oversized, empty.
    assert!(matches!(
        make(&ek[..ek.len() - 1]),
        CredentialError::BadPublic(_)
    ));
    let mut trailing = ek.clone();
    trailing.push(0);
    assert!(matches!(make(&trailing), CredentialError::BadPublic(_)));
    assert!(matches!(make(&[0u8; 5000]), CredentialError::BadPublic(_)));
    assert!(matches!(make(&[]), CredentialError::BadPublic(_)));
}

#[test]
fn names_and_credentials_of_the_wrong_size_are_refused() {
    let (ek, name) = soft_ek();
    assert_eq!(
        make_credential(&ek, &name[..33], b"s", &[0; 32]),
        Err(CredentialError::BadName(33))
    );
    let mut sha1_name = name.clone();
    sha1_name[1] = 0x04;
    assert_eq!(
        make_credential(&ek, &sha1_name, b"s", &[0; 32]),
        Err(CredentialError::BadName(34))
    );
    assert_eq!(
        make_credential(&ek, &name, b"", &[0; 32]),
        Err(CredentialError::BadCredential(0))
    );
    assert_eq!(
        make_credential(&ek, &name, &[1; 33], &[0; 32]),
        Err(CredentialError::BadCredential(33))
    );
    make_credential(&ek, &name, &[1; 32], &[0; 32]).unwrap();
}

#[test]
fn malformed_credential_blobs_and_secrets_are_refused() {
    let (ek, name) = soft_ek();
    let made = make_credential(&ek, &name, b"secret", &[5; 32]).unwrap();
    let key = [0x22; 32];
    // Every truncation of the blob and of the secret fails, none panics.
    for n in 0..made.credential_blob.len() {
        activate_credential_p256(
            &key,
            &name,
            &made.credential_blob[..n],
            &made.encrypted_secret,
        )
        .unwrap_err();
    }
    for n in 0..made.encrypted_secret.len() {
        activate_credential_p256(
            &key,
            &name,
            &made.credential_blob,
            &made.encrypted_secret[..n],
        )
        .unwrap_err();
    }
    // A point off the curve in the secret.
    let mut secret = made.encrypted_secret.clone();
    secret[67] ^= 1;
    assert!(matches!(
        activate_credential_p256(&key, &name, &made.credential_blob, &secret),
        Err(CredentialError::Malformed(_))
    ));
    // Oversized inputs.
    assert!(matches!(
        activate_credential_p256(&key, &name, &[0; 4096], &made.encrypted_secret),
        Err(CredentialError::Malformed(_))
    ));
}

#[test]
fn a_credential_is_different_each_time_its_entropy_is() {
    let (ek, name) = soft_ek();
    let a = make_credential(&ek, &name, b"secret", &[1; 32]).unwrap();
    let b = make_credential(&ek, &name, b"secret", &[2; 32]).unwrap();
    assert_ne!(a.encrypted_secret, b.encrypted_secret);
    assert_ne!(a.credential_blob, b.credential_blob);
}
