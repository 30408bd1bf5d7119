//! The keys: the endorsement key (from its TCG template, re-created as needed), the attestation
//! key and the TLS key (created once, then persistent), and credential activation.
//!
//! Persistent objects are looked up through the TPM's handle list before being resolved: a
//! missing handle is the normal first start, not an error, and libtss2 logs loudly on a failed
//! lookup. Handles are resolved with no session set (libtss2-esys 3.2.1 crashes resolving a
//! public handle while a password session is set).

use rampart_attest::device::{Endorsement, TpmError};
use tss_esapi::Context;
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, DefaultKey, ak, ek};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::{CapabilityType, SessionType};
use tss_esapi::handles::{
    AuthHandle, KeyHandle, ObjectHandle, PersistentTpmHandle, SessionHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::{
    HashingAlgorithm, PublicAlgorithm, SignatureSchemeAlgorithm,
};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    CapabilityData, EccPoint, EccScheme, EncryptedSecret, HashScheme, IdObject,
    KeyDerivationFunctionScheme, Public, PublicBuilder, PublicEccParametersBuilder,
    SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::Marshall as _;

use crate::{Session, error, tss_error};

/// The endorsement key's standard template (TCG EK Credential Profile, low range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EkAlgorithm {
    /// RSA-2048 (template L-1; certificate at NV 0x01c00002): what most TPMs certify.
    #[default]
    Rsa2048,
    /// ECC NIST P-256 (template L-2; certificate at NV 0x01c0000a).
    EccP256,
}

impl EkAlgorithm {
    fn selection(self) -> AsymmetricAlgorithmSelection {
        match self {
            EkAlgorithm::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            EkAlgorithm::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        }
    }

    /// The NV index of this EK's certificate (TCG EK Credential Profile, section 2.2.1.4).
    pub fn certificate_index(self) -> u32 {
        match self {
            EkAlgorithm::Rsa2048 => 0x01c0_0002,
            EkAlgorithm::EccP256 => 0x01c0_000a,
        }
    }
}

impl std::str::FromStr for EkAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rsa2048" | "rsa" => Ok(EkAlgorithm::Rsa2048),
            "ecc256" | "ecc" | "p256" => Ok(EkAlgorithm::EccP256),
            other => Err(format!(
                "unknown endorsement key algorithm `{other}`; use rsa2048 or ecc256"
            )),
        }
    }
}

/// Persistent handles an owner may create (TPM 2.0 Part 1, 29.7: `0x81000000..=0x817FFFFF`).
const OWNER_PERSISTENT: std::ops::RangeInclusive<u32> = 0x8100_0000..=0x817F_FFFF;

pub(crate) fn check_persistent_handle(what: &str, handle: u32) -> Result<(), TpmError> {
    if OWNER_PERSISTENT.contains(&handle) {
        Ok(())
    } else {
        Err(error(
            "open",
            format!(
                "the {what} handle {handle:#010x} is not an owner persistent handle; choose one \
                 in 0x81000000..=0x817fffff"
            ),
        ))
    }
}

/// Whether the TPM lists `handle` (a persistent object or an NV index) as present.
pub(crate) fn handle_present(ctx: &mut Context, handle: u32) -> Result<bool, tss_esapi::Error> {
    let (data, _) =
        ctx.execute_without_session(|c| c.get_capability(CapabilityType::Handles, handle, 1))?;
    Ok(match data {
        CapabilityData::Handles(list) => list
            .into_inner()
            .first()
            .is_some_and(|h| u32::from(*h) == handle),
        _ => false,
    })
}

/// The ESAPI object of a present persistent handle or NV index.
pub(crate) fn resolve(ctx: &mut Context, handle: u32) -> Result<ObjectHandle, tss_esapi::Error> {
    let tpm_handle = TpmHandle::try_from(handle)?;
    ctx.execute_without_session(|c| c.tr_from_tpm_public(tpm_handle))
}

/// Which public areas a persistent key of ours may have.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// Restricted signing (the AK).
    Attestation,
    /// Unrestricted signing (the TLS key).
    Tls,
}

/// The TLS key's template: an unrestricted ECDSA P-256 signing key (it signs any digest: the
/// TLS handshake, the CSR), fixed to this TPM, generated inside it, usable with an empty
/// password.
fn tls_template() -> Result<Public, tss_esapi::Error> {
    let restricted = false;
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .with_restricted(restricted)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new()
                .with_symmetric(SymmetricDefinitionObject::Null)
                .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
                .with_curve(EccCurve::NistP256)
                .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                .with_is_signing_key(true)
                .with_is_decryption_key(false)
                .with_restricted(restricted)
                .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// Whether `public` is a key of `kind` as this crate creates it: an ECDSA-SHA256 P-256 signing
/// key bound to this TPM. Anything else at our handle is someone else's object.
fn is_kind(public: &Public, kind: KeyKind) -> bool {
    let Public::Ecc {
        object_attributes: a,
        name_hashing_algorithm,
        parameters,
        ..
    } = public
    else {
        return false;
    };
    *name_hashing_algorithm == HashingAlgorithm::Sha256
        && a.fixed_tpm()
        && a.sign_encrypt()
        && !a.decrypt()
        && a.restricted() == (kind == KeyKind::Attestation)
        && parameters.ecc_curve() == EccCurve::NistP256
        && parameters.ecc_scheme() == EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256))
}

/// The persistent key at `handle` if present, after checking it is a key of `kind`.
fn existing_key(
    ctx: &mut Context,
    handle: u32,
    kind: KeyKind,
    what: &str,
) -> Result<Option<(KeyHandle, Public)>, TpmError> {
    if !handle_present(ctx, handle).map_err(|e| tss_error("open", e))? {
        return Ok(None);
    }
    let key = KeyHandle::from(resolve(ctx, handle).map_err(|e| tss_error("open", e))?);
    let (public, _, _) = ctx
        .execute_without_session(|c| c.read_public(key))
        .map_err(|e| tss_error("open", e))?;
    if !is_kind(&public, kind) {
        return Err(error(
            "open",
            format!(
                "persistent handle {handle:#010x} holds an object that is not Rampart's {what} \
                 (an ECDSA P-256 {} signing key); configure another handle, or remove it with \
                 `tpm2_evictcontrol -C o -c {handle:#010x}` if nothing else uses it",
                if kind == KeyKind::Attestation {
                    "restricted"
                } else {
                    "unrestricted"
                }
            ),
        ));
    }
    Ok(Some((key, public)))
}

/// Makes the loaded transient `key` persistent at `handle` and flushes the transient copy.
fn persist(ctx: &mut Context, key: KeyHandle, handle: u32) -> Result<KeyHandle, TpmError> {
    let persistent =
        PersistentTpmHandle::new(handle).map_err(|e| tss_error("make a key persistent", e))?;
    let result = ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.evict_control(
            Provision::Owner,
            key.into(),
            Persistent::Persistent(persistent),
        )
    });
    let _ = ctx.flush_context(key.into());
    let object = result.map_err(|e| {
        error(
            "make a key persistent",
            format!(
                "{e}: persisting at {handle:#010x} needs the owner hierarchy with an empty \
                 password and a free persistent slot"
            ),
        )
    })?;
    Ok(KeyHandle::from(object))
}

/// The attestation key: the persistent one at `options.ak_handle`, or a new one created under
/// the EK and made persistent there.
pub(crate) fn attestation_key(
    session: &mut Session,
    options: &crate::TpmOptions,
) -> Result<KeyHandle, TpmError> {
    if let Some((key, _)) = existing_key(
        &mut session.ctx,
        options.ak_handle,
        KeyKind::Attestation,
        "attestation key",
    )? {
        return Ok(key);
    }
    let ek = ensure_ek(session, options.ek_algorithm)?;
    let ctx = &mut session.ctx;
    // The EK's policy (PolicySecret(endorsement)) authorises creating and loading under it;
    // tss-esapi's AK helpers run that policy session, and want no session set around them.
    // Their template is tss-esapi's AK template: a restricted ECDSA P-256 (SHA-256) signing key
    // fixed to this TPM, what `is_kind` checks on every start.
    let created = ctx
        .execute_without_session(|c| {
            ak::create_ak_2(
                c,
                ek,
                HashingAlgorithm::Sha256,
                AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                SignatureSchemeAlgorithm::EcDsa,
                None,
                DefaultKey,
            )
        })
        .map_err(|e| tss_error("create the attestation key", e))?;
    let loaded = ctx
        .execute_without_session(|c| {
            ak::load_ak(c, ek, None, created.out_private, created.out_public)
        })
        .map_err(|e| tss_error("load the attestation key", e))?;
    persist(ctx, loaded, options.ak_handle)
}

/// The TLS key: the persistent one at `handle`, or a new one generated in the owner hierarchy
/// and made persistent there. Returns the key and its public area.
pub(crate) fn tls_key(session: &mut Session, handle: u32) -> Result<(KeyHandle, Public), TpmError> {
    let ctx = &mut session.ctx;
    if let Some(found) = existing_key(ctx, handle, KeyKind::Tls, "TLS key")? {
        return Ok(found);
    }
    let template = tls_template().map_err(|e| tss_error("create the TLS key", e))?;
    let created = ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(|e| tss_error("create the TLS key", e))?;
    let key = persist(ctx, created.key_handle, handle)?;
    Ok((key, created.out_public))
}

/// The EK, created from its template the first time this session needs it.
fn ensure_ek(session: &mut Session, algorithm: EkAlgorithm) -> Result<KeyHandle, TpmError> {
    if let Some(ek) = session.ek {
        return Ok(ek);
    }
    let ek = session
        .ctx
        .execute_without_session(|c| ek::create_ek_object_2(c, algorithm.selection(), None))
        .map_err(|e| tss_error("create the endorsement key", e))?;
    session.ek = Some(ek);
    Ok(ek)
}

/// TPMT_PUBLIC of a loaded key.
pub(crate) fn public_area(
    session: &mut Session,
    key: KeyHandle,
    what: &'static str,
) -> Result<Vec<u8>, TpmError> {
    let (public, _, _) = session
        .ctx
        .execute_without_session(|c| c.read_public(key))
        .map_err(|e| tss_error(what, e))?;
    public.marshall().map_err(|e| tss_error(what, e))
}

/// The EK's public area and, when the manufacturer stored one, its certificate.
pub(crate) fn endorsement(
    session: &mut Session,
    algorithm: EkAlgorithm,
) -> Result<Endorsement, TpmError> {
    let ek = ensure_ek(session, algorithm)?;
    let public = public_area(session, ek, "endorsement key")?;
    let ctx = &mut session.ctx;
    let certificate = if handle_present(ctx, algorithm.certificate_index())
        .map_err(|e| tss_error("endorsement key certificate", e))?
    {
        let raw = ctx
            .execute_without_session(|c| ek::retrieve_ek_pubcert(c, algorithm.selection()))
            .map_err(|e| tss_error("endorsement key certificate", e))?;
        Some(trim_der(raw))
    } else {
        None
    };
    Ok(Endorsement {
        public,
        certificate,
    })
}

/// A certificate read from NV without the padding some manufacturers leave after it (the NV
/// index is sized for the largest certificate): the outer DER element only, when it parses.
fn trim_der(mut raw: Vec<u8>) -> Vec<u8> {
    let len = match raw.get(..4) {
        Some([0x30, 0x82, hi, lo]) => Some(4 + usize::from(u16::from_be_bytes([*hi, *lo]))),
        Some([0x30, 0x81, n, _]) => Some(3 + usize::from(*n)),
        _ => None,
    };
    if let Some(len) = len
        && len <= raw.len()
    {
        raw.truncate(len);
    }
    raw
}

/// TPM2_ActivateCredential: the AK authorised by its (empty) password, the EK by a policy
/// session satisfying its policy, PolicySecret(TPM_RH_ENDORSEMENT).
pub(crate) fn activate_credential(
    session: &mut Session,
    algorithm: EkAlgorithm,
    ak: KeyHandle,
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Vec<u8>, TpmError> {
    const OP: &str = "activate credential";
    let blob = IdObject::try_from(credential_blob.to_vec()).map_err(|_| {
        error(
            OP,
            format!(
                "the credential blob is {} bytes, more than a TPM2B_ID_OBJECT holds; it was \
                 not made by TPM2_MakeCredential",
                credential_blob.len()
            ),
        )
    })?;
    let secret = EncryptedSecret::try_from(encrypted_secret.to_vec()).map_err(|_| {
        error(
            OP,
            format!(
                "the encrypted secret is {} bytes, more than a TPM2B_ENCRYPTED_SECRET holds; it \
                 was not made by TPM2_MakeCredential",
                encrypted_secret.len()
            ),
        )
    })?;
    let ek = ensure_ek(session, algorithm)?;
    let ctx = &mut session.ctx;
    let policy = ctx
        .execute_without_session(|c| {
            c.start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
        })
        .map_err(|e| tss_error(OP, e))?
        .ok_or_else(|| error(OP, "the TPM returned no policy session"))?;
    let result = (|| {
        let policy_session = PolicySession::try_from(policy)?;
        ctx.execute_with_session(Some(AuthSession::Password), |c| {
            c.policy_secret(
                policy_session,
                AuthHandle::Endorsement,
                Default::default(),
                Default::default(),
                Default::default(),
                None,
            )
        })?;
        ctx.execute_with_sessions((Some(AuthSession::Password), Some(policy), None), |c| {
            c.activate_credential(ak, ek, blob, secret)
        })
    })();
    let _ = ctx.flush_context(SessionHandle::from(policy).into());
    let digest = result.map_err(|e| {
        error(
            OP,
            format!(
                "{e}: the TPM refused the credential (it was made for another attestation key \
                 or endorsement key, or was altered)"
            ),
        )
    })?;
    Ok(digest.as_slice().to_vec())
}
