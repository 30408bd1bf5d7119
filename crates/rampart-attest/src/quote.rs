//! Verification of a TPM2_Quote: the attestation key's signature over the exact bytes, then
//! every field a verifier must check (TPM 2.0 Library Part 1, 18.4; the checks other verifiers
//! missed are named in docs/threat-model.md): the TPM_GENERATED magic, the quote type, the
//! nonce, the PCR selection against the required one and against the PCR values given, the
//! PCR digest, and, across quotes, the reset and restart counters and the clock.
//!
//! Every failure is an error naming the check ([`QuoteError::check`]); nothing here logs and
//! carries on.

use std::fmt;

use crate::device::QuoteBytes;
use crate::pcr::{PcrError, PcrSelection, PcrValues};
use crate::spki::{self, SpkiError, SpkiKey};
use crate::wire::{
    Attest, Attested, ClockInfo, HashAlg, Public, Signature, TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE, WireError, alg,
};

/// The public part of an attestation key, as a verifier holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationKey(SpkiKey);

impl AttestationKey {
    /// From the AK's TPMT_PUBLIC (what the device sends at enrolment). Its attributes are
    /// checked at enrolment ([`Public::check_attestation_key`]); here only its key is used.
    pub fn from_public(public: &Public) -> Self {
        AttestationKey(public.spki_key())
    }

    /// From a DER SubjectPublicKeyInfo (`tpm2_createak -f der`, or PEM's content).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, SpkiError> {
        spki::from_der(der).map(AttestationKey)
    }

    /// As a DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        self.0.to_der()
    }

    fn kind(&self) -> &'static str {
        match self.0 {
            SpkiKey::EcdsaP256 { .. } => "ECDSA P-256",
            SpkiKey::Rsa { .. } => "RSA",
        }
    }

    /// Checks `signature` over `message` (the exact bytes the TPM signed).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), QuoteError> {
        use ring::signature as rs;
        let hash = signature.hash();
        let unsupported = || QuoteError::UnsupportedSignature {
            signature: signature_kind(signature),
            hash,
            key: self.kind(),
        };
        let verified = match (&self.0, signature) {
            (SpkiKey::EcdsaP256 { point }, Signature::Ecdsa { hash, r, s }) => {
                if *hash != alg::SHA256 {
                    return Err(unsupported());
                }
                let mut fixed = Vec::with_capacity(64);
                for half in [r, s] {
                    let half = half.as_slice();
                    let start = half.iter().position(|b| *b != 0).unwrap_or(half.len());
                    let half = &half[start..];
                    if half.len() > 32 {
                        return Err(QuoteError::BadSignature);
                    }
                    fixed.extend(std::iter::repeat_n(0, 32 - half.len()));
                    fixed.extend_from_slice(half);
                }
                rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &fixed)
            }
            (SpkiKey::Rsa { modulus, exponent }, Signature::RsaSsa { hash, sig })
            | (SpkiKey::Rsa { modulus, exponent }, Signature::RsaPss { hash, sig }) => {
                let pss = matches!(signature, Signature::RsaPss { .. });
                let params: &rs::RsaParameters = match (*hash, pss) {
                    (alg::SHA256, false) => &rs::RSA_PKCS1_2048_8192_SHA256,
                    (alg::SHA384, false) => &rs::RSA_PKCS1_2048_8192_SHA384,
                    (alg::SHA512, false) => &rs::RSA_PKCS1_2048_8192_SHA512,
                    (alg::SHA256, true) => &rs::RSA_PSS_2048_8192_SHA256,
                    (alg::SHA384, true) => &rs::RSA_PSS_2048_8192_SHA384,
                    (alg::SHA512, true) => &rs::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(unsupported()),
                };
                rs::RsaPublicKeyComponents {
                    n: modulus,
                    e: exponent,
                }
                .verify(params, message, sig)
            }
            _ => return Err(unsupported()),
        };
        verified.map_err(|_| QuoteError::BadSignature)
    }
}

fn signature_kind(signature: &Signature) -> &'static str {
    match signature {
        Signature::Ecdsa { .. } => "ECDSA",
        Signature::RsaSsa { .. } => "RSASSA",
        Signature::RsaPss { .. } => "RSA-PSS",
    }
}

/// Why a quote is not accepted. [`QuoteError::check`] names the check for metrics and reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("quote signature is malformed: {0}")]
    MalformedSignature(WireError),
    #[error(
        "quote signature is {signature} with hash {hash:#06x}, which this {key} attestation key cannot have made (Rampart verifies ECDSA P-256 with SHA-256, and RSASSA/RSA-PSS with SHA-256/384/512)"
    )]
    UnsupportedSignature {
        signature: &'static str,
        hash: u16,
        key: &'static str,
    },
    #[error(
        "quote signature does not verify with the attestation key: the quote was altered, or another key (another device's AK) signed it"
    )]
    BadSignature,
    #[error("quote message (TPMS_ATTEST) is malformed: {0}")]
    MalformedAttest(WireError),
    #[error(
        "quote message starts with {found:#010x}, not TPM_GENERATED_VALUE 0xff544347: the TPM did not produce it (a signature over a forged structure, e.g. TPM2_Sign with an unrestricted key or a hash ticket)"
    )]
    NotTpmGenerated { found: u32 },
    #[error(
        "quote message is attestation type {found:#06x}, not a quote (TPM_ST_ATTEST_QUOTE 0x8018)"
    )]
    WrongType { found: u16 },
    #[error(
        "quote nonce is {found}, not {expected} as asked for: a replayed or stale quote; ask the device for a fresh one"
    )]
    NonceMismatch { expected: String, found: String },
    #[error("quote covers PCRs {quoted}, but {required} are required")]
    SelectionNotRequired { quoted: String, required: String },
    #[error(
        "PCR values given are for {given}, but the quote covers {quoted}: values cannot be checked against PCRs the quote does not cover"
    )]
    PcrValuesSelection { given: String, quoted: String },
    #[error(
        "PCR values do not match the quoted PCR digest: quoted {quoted}, computed {computed} from the values given"
    )]
    PcrDigestMismatch { quoted: String, computed: String },
    #[error("{0}")]
    PcrValues(PcrError),
    #[error(
        "TPM reset count went backwards from {previous} to {current}: the TPM was cleared or this quote is older than the last one; re-enrol the device if it was cleared"
    )]
    ResetCountWentBackwards { previous: u32, current: u32 },
    #[error(
        "TPM restart count went backwards from {previous} to {current} without a reset: an old quote, or a TPM that is not keeping its counters"
    )]
    RestartCountWentBackwards { previous: u32, current: u32 },
    #[error(
        "TPM clock went backwards from {previous} to {current} ms: an old quote, or a TPM that is not keeping its clock"
    )]
    ClockWentBackwards { previous: u64, current: u64 },
}

impl QuoteError {
    /// A short stable name of the check that failed (for metrics, audit and reason codes).
    pub fn check(&self) -> &'static str {
        match self {
            QuoteError::MalformedSignature(_) => "signature-format",
            QuoteError::UnsupportedSignature { .. } => "signature-scheme",
            QuoteError::BadSignature => "signature",
            QuoteError::MalformedAttest(_) => "attest-format",
            QuoteError::NotTpmGenerated { .. } => "magic",
            QuoteError::WrongType { .. } => "attest-type",
            QuoteError::NonceMismatch { .. } => "nonce",
            QuoteError::SelectionNotRequired { .. } => "pcr-selection",
            QuoteError::PcrValuesSelection { .. } => "pcr-values-selection",
            QuoteError::PcrDigestMismatch { .. } => "pcr-digest",
            QuoteError::PcrValues(_) => "pcr-values-format",
            QuoteError::ResetCountWentBackwards { .. } => "reset-count",
            QuoteError::RestartCountWentBackwards { .. } => "restart-count",
            QuoteError::ClockWentBackwards { .. } => "clock",
        }
    }
}

/// A quote that passed every check: what the TPM attested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    /// The AK's qualified name, as the TPM put it in the quote.
    pub qualified_signer: Vec<u8>,
    /// The nonce (extraData), equal to the one expected.
    pub nonce: Vec<u8>,
    /// The quoted selection, as the TPM listed it.
    pub selection: PcrSelection,
    /// The PCR values, checked against the quoted digest.
    pub pcrs: PcrValues,
}

impl VerifiedQuote {
    /// Checks this quote's counters against the previous verified quote of the same AK.
    pub fn check_after(&self, previous: &ClockInfo) -> Result<BootChange, QuoteError> {
        check_counters(previous, &self.clock_info)
    }
}

/// Verifies a quote: `message` (TPMS_ATTEST) and `signature` (TPMT_SIGNATURE) as the TPM
/// produced them, `pcrs` the PCR values claimed, against the attestation key `ak`, the nonce
/// the verifier issued and the selection it requires (the quote must cover exactly it).
pub fn verify_quote(
    message: &[u8],
    signature: &[u8],
    pcrs: &PcrValues,
    ak: &AttestationKey,
    expected_nonce: &[u8],
    required: &PcrSelection,
) -> Result<VerifiedQuote, QuoteError> {
    // The signature first, over the exact bytes: nothing unauthenticated is interpreted.
    let signature = Signature::parse(signature).map_err(QuoteError::MalformedSignature)?;
    ak.verify(message, &signature)?;
    let attest = Attest::parse(message).map_err(QuoteError::MalformedAttest)?;
    // A restricted key signs outside data only if it does not start with this magic, so it
    // is what tells a TPM-made structure from one the signer made up (CVE-2024-29038).
    if attest.magic != TPM_GENERATED_VALUE {
        return Err(QuoteError::NotTpmGenerated {
            found: attest.magic,
        });
    }
    let Attested::Quote(info) = attest.attested else {
        return Err(QuoteError::WrongType {
            found: attest.attest_type,
        });
    };
    debug_assert_eq!(attest.attest_type, TPM_ST_ATTEST_QUOTE);
    if attest.extra_data != expected_nonce {
        return Err(QuoteError::NonceMismatch {
            expected: hex::encode(expected_nonce),
            found: hex::encode(&attest.extra_data),
        });
    }
    let selection = PcrSelection::from_wire(&info.pcr_select).map_err(|e| {
        QuoteError::MalformedAttest(WireError::Invalid {
            structure: "TPMS_ATTEST",
            field: "quote.pcrSelect",
            reason: e.to_string(),
        })
    })?;
    if !selection.same_pcrs(required) {
        return Err(QuoteError::SelectionNotRequired {
            quoted: selection.to_string(),
            required: required.to_string(),
        });
    }
    // The values must be labelled with exactly the quoted PCRs: a digest over relabelled
    // values would otherwise vouch for PCRs the TPM never quoted (CVE-2024-29039).
    let values_selection_error = || QuoteError::PcrValuesSelection {
        given: pcrs.selection().to_string(),
        quoted: selection.to_string(),
    };
    if !pcrs.selection().same_pcrs(&selection) {
        return Err(values_selection_error());
    }
    let hash =
        HashAlg::from_id(signature.hash()).expect("Signature::parse accepts only known hashes");
    let computed = pcrs
        .digest_for(&selection, hash)
        .ok_or_else(values_selection_error)?;
    if computed != info.pcr_digest {
        return Err(QuoteError::PcrDigestMismatch {
            quoted: hex::encode(&info.pcr_digest),
            computed: hex::encode(&computed),
        });
    }
    Ok(VerifiedQuote {
        clock_info: attest.clock_info,
        firmware_version: attest.firmware_version,
        qualified_signer: attest.qualified_signer,
        nonce: attest.extra_data,
        selection,
        pcrs: pcrs.clone(),
    })
}

/// [`verify_quote`] with the PCR values as the PCR file in `quote.pcrs`.
pub fn verify_quote_bytes(
    quote: &QuoteBytes,
    ak: &AttestationKey,
    expected_nonce: &[u8],
    required: &PcrSelection,
) -> Result<VerifiedQuote, QuoteError> {
    let pcrs = PcrValues::parse_file(&quote.pcrs).map_err(QuoteError::PcrValues)?;
    verify_quote(
        &quote.message,
        &quote.signature,
        &pcrs,
        ak,
        expected_nonce,
        required,
    )
}

/// What happened to the TPM between two quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootChange {
    /// Same boot, no restart: the PCRs can only have been extended.
    SameBoot,
    /// A TPM Restart or Resume (e.g. from suspend) without a reset.
    Restarted,
    /// A TPM Reset (reboot): the PCRs started over.
    Rebooted,
}

impl fmt::Display for BootChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootChange::SameBoot => "same boot",
            BootChange::Restarted => "restarted",
            BootChange::Rebooted => "rebooted",
        })
    }
}

/// Checks `current` against `previous` (the last verified quote of the same AK): the reset
/// count never decreases; within one reset the restart count never decreases; within one
/// restart the clock never decreases, nor across them while the TPM says its clock is `safe`.
pub fn check_counters(previous: &ClockInfo, current: &ClockInfo) -> Result<BootChange, QuoteError> {
    if current.reset_count < previous.reset_count {
        return Err(QuoteError::ResetCountWentBackwards {
            previous: previous.reset_count,
            current: current.reset_count,
        });
    }
    let change = if current.reset_count > previous.reset_count {
        BootChange::Rebooted
    } else if current.restart_count < previous.restart_count {
        return Err(QuoteError::RestartCountWentBackwards {
            previous: previous.restart_count,
            current: current.restart_count,
        });
    } else if current.restart_count > previous.restart_count {
        BootChange::Restarted
    } else {
        BootChange::SameBoot
    };
    // Within one boot and restart the clock only advances; across them it may lag after an
    // unorderly shutdown, which the TPM reports by clearing `safe`.
    if current.clock < previous.clock && (change == BootChange::SameBoot || current.safe) {
        return Err(QuoteError::ClockWentBackwards {
            previous: previous.clock,
            current: current.clock,
        });
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::*;
    use crate::wire::{QuoteInfo, TPM_ST_ATTEST_QUOTE};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    /// An ECDSA P-256 key in software standing in for a TPM's AK: it signs anything, so the
    /// tests can sign forged structures and isolate each check.
    struct TestAk(EcdsaKeyPair);

    impl TestAk {
        fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            TestAk(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap(),
            )
        }

        fn key(&self) -> AttestationKey {
            AttestationKey::from_spki_der(&spki::p256_to_der(self.0.public_key().as_ref())).unwrap()
        }

        /// TPMT_SIGNATURE over `message`.
        fn sign(&self, message: &[u8]) -> Vec<u8> {
            let sig = self.0.sign(&SystemRandom::new(), message).unwrap();
            let (r, s) = sig.as_ref().split_at(32);
            Signature::Ecdsa {
                hash: alg::SHA256,
                r: r.to_vec(),
                s: s.to_vec(),
            }
            .to_bytes()
        }
    }

    const NONCE: &[u8] = b"fresh nonce 0001";

    fn sha256_pcrs(pcrs: &[(u8, u8)]) -> PcrValues {
        let selection = PcrSelection::bank(HashAlg::Sha256, pcrs.iter().map(|(p, _)| *p)).unwrap();
        // Values in digest order (rising PCR numbers).
        let mut sorted = pcrs.to_vec();
        sorted.sort();
        PcrValues::new(
            selection,
            sorted.iter().map(|(_, v)| vec![*v; 32]).collect(),
        )
        .unwrap()
    }

    /// A well-formed quote over `pcrs`, as a TPM would make it.
    fn quote_of(pcrs: &PcrValues) -> Attest {
        Attest {
            magic: TPM_GENERATED_VALUE,
            attest_type: TPM_ST_ATTEST_QUOTE,
            qualified_signer: vec![0x00, 0x0b, 1, 2, 3],
            extra_data: NONCE.to_vec(),
            clock_info: ClockInfo {
                clock: 1000,
                reset_count: 3,
                restart_count: 1,
                safe: true,
            },
            firmware_version: 7,
            attested: Attested::Quote(QuoteInfo {
                pcr_select: pcrs.selection().to_wire(),
                pcr_digest: pcrs.digest_for(pcrs.selection(), HashAlg::Sha256).unwrap(),
            }),
        }
    }

    /// Signs `message` with `ak` and verifies it against `ak`, NONCE and `required`.
    fn verify_signed_requiring(
        ak: &TestAk,
        message: &[u8],
        pcrs: &PcrValues,
        required: &PcrSelection,
    ) -> Result<VerifiedQuote, QuoteError> {
        verify_quote(message, &ak.sign(message), pcrs, &ak.key(), NONCE, required)
    }

    /// Signs `message` with `ak` and verifies it against `ak`, NONCE and the values' selection.
    fn verify_signed(
        ak: &TestAk,
        message: &[u8],
        pcrs: &PcrValues,
    ) -> Result<VerifiedQuote, QuoteError> {
        verify_signed_requiring(ak, message, pcrs, pcrs.selection())
    }

    /// Verifies the real swtpm quote with `signature`, `values` and `nonce` against its AK.
    fn verify_swtpm(
        signature: &[u8],
        values: &PcrValues,
        nonce: &[u8],
    ) -> Result<VerifiedQuote, QuoteError> {
        let real = AttestationKey::from_public(&Public::parse_sized(SWTPM_AK).unwrap());
        verify_quote(SWTPM_QUOTE, signature, values, &real, nonce, &required())
    }

    fn required() -> PcrSelection {
        PcrSelection::parse("sha256:0,1,16").unwrap()
    }

    #[test]
    fn a_real_swtpm_quote_verifies_with_its_ak() {
        let ak = AttestationKey::from_public(&Public::parse_sized(SWTPM_AK).unwrap());
        let pcrs = PcrValues::parse_file(SWTPM_PCRS).unwrap();
        let verified = verify_quote(
            SWTPM_QUOTE,
            SWTPM_SIGNATURE,
            &pcrs,
            &ak,
            SWTPM_NONCE,
            &required(),
        )
        .unwrap();
        assert_eq!(verified.clock_info.reset_count, 2);
        assert_eq!(verified.selection.to_string(), "sha256:0,1,16");

        // Ten PCRs over two digest lists; the quote also lists an empty SHA-1 bank.
        let quote = QuoteBytes {
            message: SWTPM_QUOTE_10.to_vec(),
            signature: SWTPM_SIGNATURE_10.to_vec(),
            pcrs: SWTPM_PCRS_10.to_vec(),
        };
        let ten = PcrSelection::parse("sha256:0,1,2,3,4,5,6,7,8,23").unwrap();
        verify_quote_bytes(&quote, &ak, &[0], &ten).unwrap();

        // An RSA-2048 AK signing with RSASSA.
        let rsa = AttestationKey::from_public(&Public::parse_sized(SWTPM_RSA_AK).unwrap());
        verify_quote(
            SWTPM_RSA_QUOTE,
            SWTPM_RSA_SIGNATURE,
            &pcrs,
            &rsa,
            SWTPM_NONCE,
            &required(),
        )
        .unwrap();
        let mut bad = SWTPM_RSA_SIGNATURE.to_vec();
        bad[100] ^= 1;
        let err =
            verify_quote(SWTPM_RSA_QUOTE, &bad, &pcrs, &rsa, SWTPM_NONCE, &required()).unwrap_err();
        assert_eq!(err, QuoteError::BadSignature);
        // Its SPKI round-trips.
        assert_eq!(
            AttestationKey::from_spki_der(&rsa.to_spki_der()).unwrap(),
            rsa
        );
    }

    #[test]
    fn the_ak_from_its_spki_is_the_ak_from_its_tpm_public() {
        let public = Public::parse_sized(SWTPM_AK).unwrap();
        let from_public = AttestationKey::from_public(&public);
        let der = from_public.to_spki_der();
        assert_eq!(AttestationKey::from_spki_der(&der).unwrap(), from_public);
        // The PEM tpm2-tools wrote is the same DER.
        use base64::Engine;
        let b64: String = SWTPM_AK_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            der
        );
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let ak = AttestationKey::from_public(&Public::parse_sized(SWTPM_AK).unwrap());
        let pcrs = PcrValues::parse_file(SWTPM_PCRS).unwrap();
        let mut signature = SWTPM_SIGNATURE.to_vec();
        signature[10] ^= 1;
        let err = verify_quote(
            SWTPM_QUOTE,
            &signature,
            &pcrs,
            &ak,
            SWTPM_NONCE,
            &required(),
        )
        .unwrap_err();
        assert_eq!(err, QuoteError::BadSignature);
        // And a message altered after signing.
        let mut message = SWTPM_QUOTE.to_vec();
        let last = message.len() - 1;
        message[last] ^= 1;
        let err = verify_quote(
            &message,
            SWTPM_SIGNATURE,
            &pcrs,
            &ak,
            SWTPM_NONCE,
            &required(),
        )
        .unwrap_err();
        assert_eq!(err, QuoteError::BadSignature);
    }

    #[test]
    fn a_malformed_or_mismatched_signature_is_refused() {
        let ak = AttestationKey::from_public(&Public::parse_sized(SWTPM_AK).unwrap());
        let pcrs = PcrValues::parse_file(SWTPM_PCRS).unwrap();
        let err = verify_quote(
            SWTPM_QUOTE,
            &SWTPM_SIGNATURE[..40],
            &pcrs,
            &ak,
            SWTPM_NONCE,
            &required(),
        )
        .unwrap_err();
        assert_eq!(err.check(), "signature-format");
        let rsa = Signature::RsaSsa {
            hash: alg::SHA256,
            sig: vec![1; 256],
        }
        .to_bytes();
        let err =
            verify_quote(SWTPM_QUOTE, &rsa, &pcrs, &ak, SWTPM_NONCE, &required()).unwrap_err();
        assert_eq!(err.check(), "signature-scheme");
    }

    #[test]
    fn another_devices_ak_is_refused() {
        let this_device = TestAk::new();
        let other_device = TestAk::new();
        let pcrs = sha256_pcrs(&[(0, 1), (1, 2), (16, 3)]);
        let message = quote_of(&pcrs).to_bytes();
        let signature = other_device.sign(&message);
        let err = verify_quote(
            &message,
            &signature,
            &pcrs,
            &this_device.key(),
            NONCE,
            pcrs.selection(),
        )
        .unwrap_err();
        assert_eq!(err, QuoteError::BadSignature);
        // The same quote passes with the key that made it.
        verify_quote(
            &message,
            &signature,
            &pcrs,
            &other_device.key(),
            NONCE,
            pcrs.selection(),
        )
        .unwrap();
    }

    #[test]
    fn a_replayed_quote_with_an_old_nonce_is_refused() {
        let ak = TestAk::new();
        let pcrs = sha256_pcrs(&[(0, 1)]);
        let mut old = quote_of(&pcrs);
        old.extra_data = b"old nonce".to_vec();
        let err = verify_signed(&ak, &old.to_bytes(), &pcrs).unwrap_err();
        assert!(matches!(err, QuoteError::NonceMismatch { .. }), "{err}");
        // The real swtpm quote, asked for with another nonce.
        let values = PcrValues::parse_file(SWTPM_PCRS).unwrap();
        let err = verify_swtpm(SWTPM_SIGNATURE, &values, b"new").unwrap_err();
        assert_eq!(err.check(), "nonce");
    }

    #[test]
    fn a_selection_other_than_required_is_refused() {
        let ak = TestAk::new();
        // The device quotes PCRs 0 and 1 only; 16 is required too.
        let pcrs = sha256_pcrs(&[(0, 1), (1, 2)]);
        let message = quote_of(&pcrs).to_bytes();
        let err = verify_signed_requiring(&ak, &message, &pcrs, &required()).unwrap_err();
        assert!(
            matches!(err, QuoteError::SelectionNotRequired { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("sha256:0,1, but sha256:0,1,16"),
            "{err}"
        );
        // A superset is refused as well: the verifier asked for what it checks.
        let more = sha256_pcrs(&[(0, 1), (1, 2), (16, 3), (17, 4)]);
        let message = quote_of(&more).to_bytes();
        let err = verify_signed_requiring(&ak, &message, &more, &required()).unwrap_err();
        assert_eq!(err.check(), "pcr-selection");
    }

    #[test]
    fn pcr_values_for_other_pcrs_than_quoted_are_refused() {
        // CVE-2024-29039: the quote covers PCR 0; the values claim the same bytes are PCR 16.
        let ak = TestAk::new();
        let quoted = sha256_pcrs(&[(0, 0xaa)]);
        let relabelled = sha256_pcrs(&[(16, 0xaa)]);
        let message = quote_of(&quoted).to_bytes();
        let err =
            verify_signed_requiring(&ak, &message, &relabelled, quoted.selection()).unwrap_err();
        assert!(
            matches!(err, QuoteError::PcrValuesSelection { .. }),
            "{err}"
        );
        // Values for more PCRs than quoted: the quoted ones match the digest, the extra one
        // would be reported as attested without the TPM ever vouching for it.
        let more = sha256_pcrs(&[(0, 0xaa), (16, 0xbb)]);
        let err = verify_signed_requiring(&ak, &message, &more, quoted.selection()).unwrap_err();
        assert!(
            matches!(err, QuoteError::PcrValuesSelection { .. }),
            "{err}"
        );
    }

    #[test]
    fn pcr_values_not_matching_the_quoted_digest_are_refused() {
        let ak = TestAk::new();
        let quoted = sha256_pcrs(&[(0, 1), (1, 2), (16, 3)]);
        let message = quote_of(&quoted).to_bytes();
        let claimed = sha256_pcrs(&[(0, 1), (1, 2), (16, 4)]);
        let err = verify_signed_requiring(&ak, &message, &claimed, &required()).unwrap_err();
        assert!(matches!(err, QuoteError::PcrDigestMismatch { .. }), "{err}");
        // A real one: the swtpm PCR file with PCR 16 changed.
        let mut file = SWTPM_PCRS.to_vec();
        let last = file.len() - 1 - 5 * 66 - 64 + 1;
        file[last] = 0x55;
        let values = PcrValues::parse_file(&file).unwrap();
        assert_ne!(values, PcrValues::parse_file(SWTPM_PCRS).unwrap());
        let err = verify_swtpm(SWTPM_SIGNATURE, &values, SWTPM_NONCE).unwrap_err();
        assert_eq!(err.check(), "pcr-digest");
    }

    #[test]
    fn a_truncated_attest_is_refused_even_when_signed() {
        let ak = TestAk::new();
        let pcrs = sha256_pcrs(&[(0, 1)]);
        let whole = quote_of(&pcrs).to_bytes();
        for len in [0, 3, 10, whole.len() - 1] {
            let err = verify_signed(&ak, &whole[..len], &pcrs).unwrap_err();
            assert!(
                matches!(err, QuoteError::MalformedAttest(_)),
                "{len}: {err}"
            );
        }
        let mut trailing = whole;
        trailing.push(0);
        let err = verify_signed(&ak, &trailing, &pcrs).unwrap_err();
        assert!(
            matches!(
                err,
                QuoteError::MalformedAttest(WireError::TrailingBytes { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn a_garbage_attest_is_refused_even_when_signed() {
        let ak = TestAk::new();
        let pcrs = sha256_pcrs(&[(0, 1)]);
        let mut garbage = quote_of(&pcrs).to_bytes();
        // An absurd selection count after the magic and type.
        let at = garbage.len() - 2 - 32 - (1 + 3) - 2 - 4;
        garbage[at..at + 4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let err = verify_signed(&ak, &garbage, &pcrs).unwrap_err();
        assert!(matches!(err, QuoteError::MalformedAttest(_)), "{err}");
        let noise: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        let err = verify_signed(&ak, &noise, &pcrs).unwrap_err();
        assert_eq!(err.check(), "attest-format");
    }

    #[test]
    fn a_signature_over_a_forged_structure_without_the_tpm_generated_magic_is_refused() {
        // What TPM2_Sign with a hash ticket yields: the AK's valid signature over a structure
        // the TPM did not make, which therefore cannot carry the magic.
        let ak = TestAk::new();
        let pcrs = sha256_pcrs(&[(0, 1), (1, 2), (16, 3)]);
        let mut forged = quote_of(&pcrs);
        forged.magic = 0x0054_4347;
        let err = verify_signed(&ak, &forged.to_bytes(), &pcrs).unwrap_err();
        assert_eq!(err, QuoteError::NotTpmGenerated { found: 0x0054_4347 });
    }

    #[test]
    fn a_wrong_attestation_type_is_refused() {
        let ak = TestAk::new();
        let pcrs = sha256_pcrs(&[(0, 1)]);
        let mut quote = quote_of(&pcrs);
        // TPM_ST_ATTEST_CERTIFY with a quote's body.
        quote.attest_type = 0x8017;
        let body = Attest::parse(&quote_of(&pcrs).to_bytes()).unwrap();
        let Attested::Quote(info) = body.attested else {
            unreachable!()
        };
        let mut w = crate::wire::Writer::new();
        info.pcr_select.write(&mut w);
        w.sized(&info.pcr_digest);
        quote.attested = Attested::Other(w.into_bytes());
        let err = verify_signed(&ak, &quote.to_bytes(), &pcrs).unwrap_err();
        assert_eq!(err, QuoteError::WrongType { found: 0x8017 });
    }

    fn clock(clock: u64, reset_count: u32, restart_count: u32, safe: bool) -> ClockInfo {
        ClockInfo {
            clock,
            reset_count,
            restart_count,
            safe,
        }
    }

    #[test]
    fn counters_that_went_backwards_are_refused() {
        let previous = clock(5000, 4, 2, true);
        assert_eq!(
            check_counters(&previous, &clock(9000, 3, 2, true))
                .unwrap_err()
                .check(),
            "reset-count"
        );
        assert_eq!(
            check_counters(&previous, &clock(9000, 4, 1, true))
                .unwrap_err()
                .check(),
            "restart-count"
        );
        assert_eq!(
            check_counters(&previous, &clock(4000, 4, 2, true))
                .unwrap_err()
                .check(),
            "clock"
        );
        // Across a reboot a safe clock still only advances.
        assert_eq!(
            check_counters(&previous, &clock(4000, 5, 0, true))
                .unwrap_err()
                .check(),
            "clock"
        );
    }

    #[test]
    fn counters_moving_forward_say_what_changed() {
        let previous = clock(5000, 4, 2, true);
        assert_eq!(
            check_counters(&previous, &clock(5000, 4, 2, true)),
            Ok(BootChange::SameBoot)
        );
        assert_eq!(
            check_counters(&previous, &clock(6000, 4, 3, true)),
            Ok(BootChange::Restarted)
        );
        assert_eq!(
            check_counters(&previous, &clock(6000, 5, 0, true)),
            Ok(BootChange::Rebooted)
        );
        // After an unorderly shutdown the TPM may report an older clock, marked not safe.
        assert_eq!(
            check_counters(&previous, &clock(4000, 5, 0, false)),
            Ok(BootChange::Rebooted)
        );
        let pcrs = sha256_pcrs(&[(0, 1)]);
        let ak = TestAk::new();
        let verified = verify_signed(&ak, &quote_of(&pcrs).to_bytes(), &pcrs).unwrap();
        assert_eq!(
            verified.check_after(&clock(1, 3, 1, true)),
            Ok(BootChange::SameBoot)
        );
    }
}
