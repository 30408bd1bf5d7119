//! The EK certificate chain's defenses that swtpm's well-formed certificates do not reach:
//! an unknown critical extension, an issuer that is not a CA, a certificate that is not an EK
//! certificate, an EK public key of the wrong kind.

use std::time::SystemTime;

use rampart_attest::ekcert::{EkCertError, verify_ek_certificate, verify_ek_chain};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// tcg-kp-EKCertificate.
const TCG_KP_EK: [u64; 5] = [2, 23, 133, 8, 1];

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = name(cn);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    }
    params
}

/// An EK-like leaf: tcg-kp-EKCertificate and a critical subjectAltName as TPM vendors write.
fn leaf_params() -> CertificateParams {
    let mut params = CertificateParams::new(vec!["tpm.invalid".to_string()]).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(TCG_KP_EK.to_vec())];
    params
}

struct Chain {
    leaf: Vec<u8>,
    intermediate: Vec<u8>,
    root: Vec<u8>,
}

/// root -> intermediate (a CA or not) -> leaf (from `leaf`).
fn chain(intermediate_is_ca: bool, leaf: CertificateParams) -> Chain {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("test TPM root", true);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let mid_key = KeyPair::generate().unwrap();
    let mid_params = ca_params("test TPM issuer", intermediate_is_ca);
    let intermediate = mid_params.signed_by(&mid_key, &root_issuer).unwrap();
    let mid_issuer = Issuer::new(mid_params, mid_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf.signed_by(&leaf_key, &mid_issuer).unwrap();
    Chain {
        leaf: leaf.der().to_vec(),
        intermediate: intermediate.der().to_vec(),
        root: root.der().to_vec(),
    }
}

fn verify(c: &Chain) -> Result<(), EkCertError> {
    verify_ek_chain(
        &c.leaf,
        std::slice::from_ref(&c.intermediate),
        std::slice::from_ref(&c.root),
        SystemTime::now(),
    )
    .map(|_| ())
}

#[test]
fn a_well_formed_chain_verifies() {
    verify(&chain(true, leaf_params())).unwrap();
}

#[test]
fn a_critical_extension_the_verifier_does_not_understand_is_refused() {
    let mut params = leaf_params();
    let mut ext =
        CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0x05, 0x00]);
    ext.set_criticality(true);
    params.custom_extensions.push(ext);
    let err = verify(&chain(true, params)).unwrap_err();
    assert!(
        matches!(&err, EkCertError::UnknownCriticalExtension { oid, .. } if oid == "1.3.6.1.4.1.99999.1"),
        "{err}"
    );
}

#[test]
fn an_issuer_that_is_not_a_ca_is_refused() {
    let err = verify(&chain(false, leaf_params())).unwrap_err();
    assert!(matches!(err, EkCertError::NotACa { .. }), "{err}");
}

#[test]
fn a_certificate_for_another_purpose_is_not_an_ek_certificate() {
    let mut params = leaf_params();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let err = verify(&chain(true, params)).unwrap_err();
    assert_eq!(err, EkCertError::NotAnEkCertificate);
}

#[test]
fn an_ek_public_of_another_kind_than_the_certified_key_is_refused() {
    // A P-256 certified key against an RSA EK public area: a key mismatch, not a pass.
    let c = chain(true, leaf_params());
    let mut rsa_ek = Vec::new();
    rsa_ek.extend_from_slice(&0x0001u16.to_be_bytes()); // TPM_ALG_RSA
    rsa_ek.extend_from_slice(&0x000Bu16.to_be_bytes()); // SHA-256
    rsa_ek.extend_from_slice(&0x0003_00B2u32.to_be_bytes()); // the EK template's attributes
    rsa_ek.extend_from_slice(&0u16.to_be_bytes()); // no policy
    rsa_ek.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43]); // AES-128-CFB
    rsa_ek.extend_from_slice(&0x0010u16.to_be_bytes()); // no scheme
    rsa_ek.extend_from_slice(&2048u16.to_be_bytes());
    rsa_ek.extend_from_slice(&0u32.to_be_bytes());
    rsa_ek.extend_from_slice(&256u16.to_be_bytes());
    rsa_ek.extend_from_slice(&[0xc5; 256]);
    let err = verify_ek_certificate(
        &c.leaf,
        &[c.intermediate],
        &[c.root],
        SystemTime::now(),
        &rsa_ek,
    )
    .unwrap_err();
    assert_eq!(err, EkCertError::KeyMismatch);
}
