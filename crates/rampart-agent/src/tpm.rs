//! The device's TPM as the agent binary opens it (`[tpm]` in the configuration): one
//! connection serves the device logic ([`TpmDevice`]: measured boot, attestation, the
//! anti-rollback floor) and the mutual-TLS key kept in the TPM (`server.key = "tpm:"`),
//! because a TPM, and swtpm, serves one client at a time.
//!
//! The real TPM is `rampart-tpm` (tss-esapi over the system's libtss2), behind the agent's
//! cargo feature `tpm`; an agent built without it refuses a configured TPM with a message
//! saying how to build one with it, never ignoring it (its anti-rollback floor would go).

use std::sync::Arc;

use rampart_attest::device::{TpmDevice, TpmError};
use rustls::sign::SigningKey;

use crate::config::TpmConfig;

/// An open TPM (see the module documentation).
pub trait OpenTpm {
    /// A handle for the device logic, sharing this connection.
    fn device(&self) -> Box<dyn TpmDevice>;
    /// The TLS client key kept in the TPM, created (and made persistent) on first use.
    fn tls_key(&self) -> Result<Arc<dyn SigningKey>, TpmError>;
    /// A PKCS#10 certificate signing request (PEM) for the TLS key, its subject the device
    /// id, signed in the TPM.
    fn certificate_request_pem(&self, device_id: &str) -> Result<String, TpmError>;
}

/// Opens the configured TPM.
#[cfg(feature = "tpm")]
pub fn open(config: &TpmConfig) -> Result<Box<dyn OpenTpm>, TpmError> {
    let ek_algorithm = config.ek_algorithm.parse().map_err(|e: String| TpmError {
        operation: "open",
        message: format!("tpm.ek_algorithm: {e}"),
    })?;
    let options = rampart_tpm::TpmOptions {
        ek_algorithm,
        ak_handle: config.ak_handle,
        tls_key_handle: config.tls_key_handle,
        counter_index: config.nv_counter_index,
    };
    Ok(Box::new(rampart_tpm::HardwareTpm::open(
        &config.tcti,
        options,
    )?))
}

/// Without the `tpm` feature there is no TPM stack (see the module documentation).
#[cfg(not(feature = "tpm"))]
pub fn open(_: &TpmConfig) -> Result<Box<dyn OpenTpm>, TpmError> {
    Err(TpmError {
        operation: "open",
        message: "the configuration has a [tpm] section, but this rampart-agent was built without TPM support: build it with `cargo build -p rampart-agent --features tpm` (needs libtss2-dev and pkg-config), or remove [tpm] from the configuration".into(),
    })
}

#[cfg(feature = "tpm")]
impl OpenTpm for rampart_tpm::HardwareTpm {
    fn device(&self) -> Box<dyn TpmDevice> {
        Box::new(self.clone())
    }

    fn tls_key(&self) -> Result<Arc<dyn SigningKey>, TpmError> {
        Ok(Arc::new(rampart_tpm::HardwareTpm::tls_key(self)?))
    }

    fn certificate_request_pem(&self, device_id: &str) -> Result<String, TpmError> {
        rampart_tpm::HardwareTpm::tls_key(self)?.certificate_request_pem(device_id)
    }
}
