//! The device agent's TPM 2.0 shell: [`HardwareTpm`] reaches a real TPM (a `/dev/tpmrm0` on a
//! device, swtpm in tests) through tss-esapi over the system's libtss2, and implements
//! [`rampart_attest::device::TpmDevice`] plus the device's mutual-TLS key:
//!
//! - the endorsement key (EK) from the TCG standard template (RSA-2048 by default, ECC P-256 on
//!   request) with its certificate from NV when the manufacturer stored one;
//! - the attestation key (AK): a restricted ECDSA P-256 signing key created under the EK and made
//!   persistent, so it is the same AK across restarts ([`keys`]);
//! - TPM2_ActivateCredential (the EK authorised by a policy session with
//!   PolicySecret(endorsement)), SHA-256 PCR extends and TPM2_Quote with the AK, returned as the
//!   bytes `tpm2_quote` writes ([`quote`]);
//! - the hardware anti-rollback floor: an owner-authorised NV counter ([`counter`]);
//! - the TLS client key: an unrestricted ECDSA P-256 signing key generated in the TPM and made
//!   persistent, its CSR and a rustls signing key that signs handshakes with TPM2_Sign
//!   ([`tls`]).
//!
//! One TPM context serves all of them, behind one mutex: a TPM (and swtpm's TCP server) runs one
//! command at a time, and TLS handshakes, quotes and counter updates come from different threads.

#![forbid(unsafe_code)]

pub mod counter;
pub mod keys;
pub mod quote;
pub mod tls;

use std::str::FromStr as _;
use std::sync::{Arc, Mutex, MutexGuard};

use rampart_attest::device::{Endorsement, QuoteBytes, TpmDevice, TpmError};
use tss_esapi::Context;
use tss_esapi::handles::KeyHandle;
use tss_esapi::tcti_ldr::TctiNameConf;

pub use keys::EkAlgorithm;
pub use tls::TpmTlsKey;

/// Where [`HardwareTpm`] keeps its objects in the TPM; the defaults suit a TPM that runs nothing
/// else of Rampart's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmOptions {
    /// The endorsement key's algorithm (its standard template and certificate index).
    pub ek_algorithm: EkAlgorithm,
    /// The persistent handle of the attestation key (owner range, `0x81000000..=0x817FFFFF`).
    pub ak_handle: u32,
    /// The persistent handle of the TLS client key (owner range).
    pub tls_key_handle: u32,
    /// The NV index of the anti-rollback counter (owner range, `0x01000000..=0x013FFFFF`).
    pub counter_index: u32,
}

/// Default persistent handle of the attestation key (endorsement-key range of the owner's
/// persistent handles, TCG "Registry of Reserved TPM 2.0 Handles").
pub const DEFAULT_AK_HANDLE: u32 = 0x8101_0052;
/// Default persistent handle of the TLS client key (owner storage range).
pub const DEFAULT_TLS_KEY_HANDLE: u32 = 0x8100_0052;
/// Default NV index of the anti-rollback counter (the range reserved for the TPM owner).
pub const DEFAULT_COUNTER_INDEX: u32 = 0x0100_5250;

impl Default for TpmOptions {
    fn default() -> Self {
        TpmOptions {
            ek_algorithm: EkAlgorithm::Rsa2048,
            ak_handle: DEFAULT_AK_HANDLE,
            tls_key_handle: DEFAULT_TLS_KEY_HANDLE,
            counter_index: DEFAULT_COUNTER_INDEX,
        }
    }
}

/// The TPM context and the transient objects this process loaded into it.
pub(crate) struct Session {
    pub(crate) ctx: Context,
    /// The EK, created from its template on first use and flushed on drop (a TPM without a
    /// resource manager keeps transient objects until it restarts, and has only a few slots).
    pub(crate) ek: Option<KeyHandle>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(ek) = self.ek.take() {
            // Nothing to report to: the object goes away at the next TPM restart anyway.
            let _ = self.ctx.flush_context(ek.into());
        }
    }
}

/// A real TPM 2.0 (see the crate documentation).
#[derive(Clone)]
pub struct HardwareTpm {
    shared: Arc<Mutex<Session>>,
    options: TpmOptions,
    /// The attestation key's persistent object, resolved (and created if missing) by
    /// [`HardwareTpm::open`].
    ak: KeyHandle,
}

impl std::fmt::Debug for HardwareTpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HardwareTpm")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A [`TpmError`] for `operation` from a TSS error, with what to check.
pub(crate) fn tss_error(operation: &'static str, e: tss_esapi::Error) -> TpmError {
    TpmError {
        operation,
        message: format!("{e} (is the TPM reachable and is this process allowed to use it?)"),
    }
}

pub(crate) fn error(operation: &'static str, message: impl Into<String>) -> TpmError {
    TpmError {
        operation,
        message: message.into(),
    }
}

impl HardwareTpm {
    /// Connects to the TPM named by `tcti` (libtss2's TCTI configuration, e.g.
    /// `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`) and makes sure the attestation
    /// key exists at `options.ak_handle` (creating it under the EK and persisting it the first
    /// time).
    pub fn open(tcti: &str, options: TpmOptions) -> Result<HardwareTpm, TpmError> {
        keys::check_persistent_handle("attestation key", options.ak_handle)?;
        keys::check_persistent_handle("TLS key", options.tls_key_handle)?;
        counter::check_index(options.counter_index)?;
        let conf = TctiNameConf::from_str(tcti).map_err(|e| {
            error(
                "open",
                format!(
                    "`{tcti}` is not a TCTI configuration ({e}); use e.g. device:/dev/tpmrm0 or \
                     swtpm:host=127.0.0.1,port=2321"
                ),
            )
        })?;
        let ctx = Context::new(conf).map_err(|e| {
            error(
                "open",
                format!(
                    "cannot reach the TPM through `{tcti}` ({e}); check that the device exists \
                     and this user may open it (group tss), or that the simulator listens"
                ),
            )
        })?;
        let mut session = Session { ctx, ek: None };
        let ak = keys::attestation_key(&mut session, &options)?;
        Ok(HardwareTpm {
            shared: Arc::new(Mutex::new(session)),
            options,
            ak,
        })
    }

    /// The options this TPM was opened with.
    pub fn options(&self) -> &TpmOptions {
        &self.options
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic while holding the lock leaves no half-done TPM state that matters here: each
        // TPM command is atomic, so the context stays usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device's TLS client key (created in the TPM and made persistent at
    /// `options.tls_key_handle` the first time), sharing this TPM's context.
    pub fn tls_key(&self) -> Result<TpmTlsKey, TpmError> {
        let handle = keys::tls_key(&mut self.lock(), self.options.tls_key_handle)?;
        tls::TpmTlsKey::new(Arc::clone(&self.shared), handle.0, &handle.1)
    }
}

impl TpmDevice for HardwareTpm {
    fn endorsement(&mut self) -> Result<Endorsement, TpmError> {
        keys::endorsement(&mut self.lock(), self.options.ek_algorithm)
    }

    fn attestation_key(&mut self) -> Result<Vec<u8>, TpmError> {
        keys::public_area(&mut self.lock(), self.ak, "attestation key")
    }

    fn activate_credential(
        &mut self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        keys::activate_credential(
            &mut self.lock(),
            self.options.ek_algorithm,
            self.ak,
            credential_blob,
            encrypted_secret,
        )
    }

    fn extend(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        quote::extend(&mut self.lock().ctx, pcr, digest)
    }

    fn quote(&mut self, nonce: &[u8], pcrs: &[u8]) -> Result<QuoteBytes, TpmError> {
        quote::quote(&mut self.lock().ctx, self.ak, nonce, pcrs)
    }

    fn security_floor(&mut self) -> Result<u64, TpmError> {
        counter::read(&mut self.lock().ctx, self.options.counter_index)
    }

    fn raise_security_floor(&mut self, to: u64) -> Result<(), TpmError> {
        counter::raise(&mut self.lock().ctx, self.options.counter_index, to)
    }
}
