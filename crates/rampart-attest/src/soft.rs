//! A software TPM model: [`SoftTpm`] implements [`TpmDevice`] in memory for the fleet
//! simulator and tests. It produces the same structures a real TPM does (TPMT_PUBLIC,
//! TPMS_ATTEST, TPMT_SIGNATURE, tpm2-tools' PCR file, MakeCredential blobs it activates), so
//! the server verifies simulated devices with exactly the code that verifies real ones.
//!
//! It is deterministic from a 32-byte seed: the EK and AK private keys are derived from it,
//! ECDSA signatures are RFC 6979 (no randomness), and the clock counts quotes. Creating one
//! costs a few hashes; the keys' public points are computed on first use, because the
//! simulator runs 10,000 of them.
//!
//! Its endorsement key is ECC P-256 from the standard EK template (TCG EK Credential Profile,
//! template L-2) with no certificate: the server approves EK public keys for such devices.
//! The attestation key is what `tpm2_createak -G ecc -g sha256 -s ecdsa` makes: a restricted
//! ECDSA P-256 signing key. Nothing of it is secret from the process that holds it: it models
//! a TPM's behaviour, not its protection.

use p256::ecdsa::signature::hazmat::PrehashSigner as _;

use crate::credential::{activate_credential_p256, xy};
use crate::device::{Endorsement, QuoteBytes, TpmDevice, TpmError};
use crate::eventlog::{extend_sha256, sha256};
use crate::pcr::{PCR_COUNT, PcrSelection, PcrValues};
use crate::wire::{
    Attest, Attested, ClockInfo, HashAlg, Public, PublicKey, QuoteInfo, Scheme, Signature, SymDef,
    TPM_ECC_NIST_P256, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE, alg, object_attributes as attr,
};

/// The EK template's authPolicy: PolicySecret(TPM_RH_ENDORSEMENT), from the TCG EK Credential
/// Profile (the same digest every standard SHA-256 EK carries).
const EK_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];
/// TPM_RH_ENDORSEMENT: the EK's hierarchy, whose qualified name is its handle.
const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;
/// The firmware version the model reports in its quotes.
pub const SOFT_FIRMWARE_VERSION: u64 = 0x2026_0001;
/// The longest nonce a quote takes (TPM2B_DATA: sizeof(TPMT_HA)).
pub const MAX_NONCE: usize = crate::wire::MAX_DIGEST_SIZE;

/// The software TPM model (see the module documentation). A clone is the same TPM in the same
/// state (for a simulator that snapshots devices).
#[derive(Clone)]
pub struct SoftTpm {
    seed: [u8; 32],
    keys: Option<Keys>,
    pcrs: [[u8; 32]; PCR_COUNT as usize],
    reset_count: u32,
    clock: u64,
    /// The NV counter: `None` until first raised (a real index is defined on first use).
    counter: Option<u64>,
}

/// The derived keys, made on first use.
#[derive(Clone)]
struct Keys {
    ek_private: [u8; 32],
    ek_public: Vec<u8>,
    ak: p256::ecdsa::SigningKey,
    ak_public: Vec<u8>,
    ak_name: Vec<u8>,
    ak_qualified_name: Vec<u8>,
}

impl SoftTpm {
    /// A TPM whose keys derive from `seed`: two models with the same seed are the same TPM.
    pub fn new(seed: [u8; 32]) -> SoftTpm {
        SoftTpm {
            seed,
            keys: None,
            pcrs: [[0; 32]; PCR_COUNT as usize],
            reset_count: 0,
            clock: 0,
            counter: None,
        }
    }

    /// A power cycle (TPM Reset): PCRs back to zeros, the reset counter up; keys and the NV
    /// counter stay.
    pub fn reboot(&mut self) {
        self.pcrs = [[0; 32]; PCR_COUNT as usize];
        self.reset_count += 1;
    }

    /// The SHA-256 value of PCR `pcr` (for tests), `None` past PCR 23.
    pub fn pcr(&self, pcr: u8) -> Option<[u8; 32]> {
        self.pcrs.get(usize::from(pcr)).copied()
    }

    /// The attestation key's name (0x000B || SHA-256 of its TPMT_PUBLIC).
    pub fn attestation_key_name(&mut self) -> Vec<u8> {
        self.keys().ak_name.clone()
    }

    fn keys(&mut self) -> &Keys {
        let seed = self.seed;
        self.keys.get_or_insert_with(|| Keys::derive(&seed))
    }
}

impl Keys {
    fn derive(seed: &[u8; 32]) -> Keys {
        let ek = derive_scalar(seed, b"rampart soft TPM endorsement key");
        let ak = derive_scalar(seed, b"rampart soft TPM attestation key");
        let ek_public = ecc_public(
            attr::FIXED_TPM
                | attr::FIXED_PARENT
                | attr::SENSITIVE_DATA_ORIGIN
                | ADMIN_WITH_POLICY
                | attr::RESTRICTED
                | attr::DECRYPT,
            EK_POLICY.to_vec(),
            SymDef {
                algorithm: alg::AES,
                key_bits_mode: Some((128, alg::CFB)),
            },
            Scheme::NULL,
            &ek,
        );
        let ak_public = ecc_public(
            attr::FIXED_TPM
                | attr::FIXED_PARENT
                | attr::SENSITIVE_DATA_ORIGIN
                | attr::USER_WITH_AUTH
                | attr::RESTRICTED
                | attr::SIGN_ENCRYPT,
            Vec::new(),
            SymDef::NULL,
            Scheme {
                scheme: alg::ECDSA,
                hash: Some(alg::SHA256),
            },
            &ak,
        );
        // Qualified names: a hierarchy's is its handle; a child's is H(parent QN || name).
        let ek_qn = qualified(&TPM_RH_ENDORSEMENT.to_be_bytes(), &ek_public.name());
        let ak_name = ak_public.name();
        let ak_qualified_name = qualified(&ek_qn, &ak_name);
        Keys {
            ek_private: ek.to_bytes().into(),
            ek_public: ek_public.to_bytes(),
            ak: p256::ecdsa::SigningKey::from(ak),
            ak_public: ak_public.to_bytes(),
            ak_name,
            ak_qualified_name,
        }
    }
}

/// TPMA_OBJECT adminWithPolicy (the EK template sets it).
const ADMIN_WITH_POLICY: u32 = 1 << 7;

/// nameAlg || SHA-256(parent qualified name || name).
fn qualified(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut input = parent.to_vec();
    input.extend_from_slice(name);
    let mut out = alg::SHA256.to_be_bytes().to_vec();
    out.extend_from_slice(&sha256(&input));
    out
}

/// A P-256 private key from the seed and a label (a counter on the rare out-of-range value).
fn derive_scalar(seed: &[u8; 32], label: &[u8]) -> p256::SecretKey {
    (0u32..)
        .find_map(|counter| {
            let mut input = seed.to_vec();
            input.extend_from_slice(label);
            input.extend_from_slice(&counter.to_be_bytes());
            p256::SecretKey::from_bytes(&sha256(&input).into()).ok()
        })
        .expect("a SHA-256 output is a valid P-256 scalar within a few tries")
}

/// A SHA-256-named ECC P-256 TPMT_PUBLIC for `key`.
fn ecc_public(
    object_attributes: u32,
    auth_policy: Vec<u8>,
    symmetric: SymDef,
    scheme: Scheme,
    key: &p256::SecretKey,
) -> Public {
    let (x, y) = xy(&key.public_key());
    Public {
        name_alg: alg::SHA256,
        object_attributes,
        auth_policy,
        key: PublicKey::Ecc {
            symmetric,
            scheme,
            curve: TPM_ECC_NIST_P256,
            kdf: Scheme::NULL,
            x: x.to_vec(),
            y: y.to_vec(),
        },
    }
}

fn error(operation: &'static str, message: impl Into<String>) -> TpmError {
    TpmError {
        operation,
        message: message.into(),
    }
}

impl TpmDevice for SoftTpm {
    fn endorsement(&mut self) -> Result<Endorsement, TpmError> {
        Ok(Endorsement {
            public: self.keys().ek_public.clone(),
            certificate: None,
        })
    }

    fn attestation_key(&mut self) -> Result<Vec<u8>, TpmError> {
        Ok(self.keys().ak_public.clone())
    }

    fn activate_credential(
        &mut self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let keys = self.keys();
        activate_credential_p256(
            &keys.ek_private,
            &keys.ak_name,
            credential_blob,
            encrypted_secret,
        )
        .map_err(|e| error("activate credential", e.to_string()))
    }

    fn extend(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        let value = self
            .pcrs
            .get_mut(usize::from(pcr))
            .ok_or_else(|| error("PCR extend", format!("PCR {pcr} does not exist (0 to 23)")))?;
        *value = extend_sha256(value, digest);
        Ok(())
    }

    fn quote(&mut self, nonce: &[u8], pcrs: &[u8]) -> Result<QuoteBytes, TpmError> {
        if nonce.len() > MAX_NONCE {
            return Err(error(
                "quote",
                format!("nonce is {} bytes, at most {MAX_NONCE}", nonce.len()),
            ));
        }
        let selection = PcrSelection::bank(HashAlg::Sha256, pcrs.iter().copied())
            .map_err(|e| error("quote", e.to_string()))?;
        let values: Vec<Vec<u8>> = selection
            .iter()
            .map(|(_, pcr)| self.pcrs[usize::from(pcr)].to_vec())
            .collect();
        let values =
            PcrValues::new(selection.clone(), values).map_err(|e| error("quote", e.to_string()))?;
        let pcr_digest = values
            .digest_for(&selection, HashAlg::Sha256)
            .ok_or_else(|| error("quote", "the PCR values do not match the selection"))?;
        self.clock += 1;
        let clock_info = ClockInfo {
            clock: self.clock,
            reset_count: self.reset_count,
            restart_count: 0,
            safe: true,
        };
        let keys = self.keys();
        let message = Attest {
            magic: TPM_GENERATED_VALUE,
            attest_type: TPM_ST_ATTEST_QUOTE,
            qualified_signer: keys.ak_qualified_name.clone(),
            extra_data: nonce.to_vec(),
            clock_info,
            firmware_version: SOFT_FIRMWARE_VERSION,
            attested: Attested::Quote(QuoteInfo {
                pcr_select: selection.to_wire(),
                pcr_digest,
            }),
        }
        .to_bytes();
        let signature: p256::ecdsa::Signature = keys
            .ak
            .sign_prehash(&sha256(&message))
            .map_err(|e| error("quote", format!("ECDSA signing: {e}")))?;
        let (r, s) = signature.split_bytes();
        let signature = Signature::Ecdsa {
            hash: alg::SHA256,
            r: r.to_vec(),
            s: s.to_vec(),
        }
        .to_bytes();
        Ok(QuoteBytes {
            message,
            signature,
            pcrs: values.to_file(),
        })
    }

    fn security_floor(&mut self) -> Result<u64, TpmError> {
        Ok(self.counter.unwrap_or(0))
    }

    fn raise_security_floor(&mut self, to: u64) -> Result<(), TpmError> {
        // The counter only counts up: increments to `to`, never down.
        let value = self.counter.get_or_insert(0);
        *value = (*value).max(to);
        Ok(())
    }
}
