//! Device identity for Rampart: a manufacturer certificate authority, device
//! and server certificates, certificate revocation lists, and the rustls
//! configurations for the mutual-TLS device API.
//!
//! * [`CertificateAuthority`] generates (or loads) a CA and issues device
//!   client certificates ([`CertificateAuthority::issue_device`]), TLS server
//!   certificates ([`CertificateAuthority::issue_server`]) and CRLs
//!   ([`CertificateAuthority::crl`]). Keys are ECDSA P-256.
//! * [`server_config`] builds a rustls server that refuses, at the handshake,
//!   any client without a certificate chaining to the manufacturer CA, or
//!   whose certificate is expired, not yet valid, not for client
//!   authentication, or revoked by a configured CRL.
//! * [`client_config`] / [`client_config_without_identity`] build device (and
//!   test) clients.
//! * [`device_id_from_cert`] names the caller from the verified peer
//!   certificate.
//!
//! Only the `ring` crypto provider is used, and it is passed explicitly to
//! every rustls builder, so nothing here depends on a process-wide default
//! provider being installed.
//!
//! Private keys are returned as PEM (PKCS#8) strings in [`Zeroizing`]
//! buffers. Whoever persists them must make the file readable by its owner
//! only (mode 0600); [`write_private_key_pem`] does exactly that.

#![forbid(unsafe_code)]

mod ca;
pub mod csr;
mod der;
mod tls;

use std::io::Write as _;
use std::path::Path;

pub use ca::{CertificateAuthority, IssuedCert, validate_device_id};
pub use tls::{
    client_config, client_config_without_identity, server_config,
    server_config_optional_client_auth, server_config_without_client_auth,
};
pub use zeroize::Zeroizing;

/// URI prefix of the subjectAltName that carries a device id.
pub const DEVICE_URI_PREFIX: &str = "urn:rampart:device:";

/// Maximum length of a device id, in characters (all ASCII).
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// The ALPN protocol the device API speaks.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A device id is empty, too long, or uses a character outside
    /// `[A-Za-z0-9._:-]` (or is `.` / `..`).
    #[error(
        "invalid device id {0:?}: expected 1-128 characters of A-Z a-z 0-9 . _ : - (and not \".\" or \"..\")"
    )]
    InvalidDeviceId(String),
    /// A CA common name is empty, longer than 64 characters, or has control characters.
    #[error("invalid CA common name {0:?}: expected 1-64 characters, no control characters")]
    InvalidCommonName(String),
    /// A validity period is empty, inverted, or outside what X.509 can express.
    #[error("invalid validity period: {0}")]
    InvalidValidity(String),
    /// [`CertificateAuthority::issue_server`] was given no names.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    /// A server name is neither an IP address nor a plausible DNS name.
    #[error("invalid server name {0:?}: expected a DNS name or an IP address")]
    InvalidServerName(String),
    /// A serial number given for revocation is not hex (or is too long).
    #[error("invalid certificate serial {0:?}: expected 1-20 bytes of hex")]
    InvalidSerial(String),
    /// A PEM input holds none of the expected objects.
    #[error("no {0} found in the PEM input")]
    PemMissing(&'static str),
    /// A PEM input could not be decoded.
    #[error("malformed PEM ({what}): {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate signing request was refused.
    #[error("certificate signing request refused: {0}")]
    InvalidRequest(String),
    /// A certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(&'static str),
    /// The certificate given as a CA is not one, or cannot be used to issue.
    #[error("not a usable CA certificate: {0}")]
    NotACa(String),
    /// The CA private key is not the key of the CA certificate.
    #[error("the CA private key does not belong to the CA certificate")]
    CaKeyMismatch,
    /// A CRL is malformed or issued by none of the configured CAs.
    #[error("CRL #{index} is unusable: {reason}")]
    InvalidCrl { index: usize, reason: String },
    /// CRLs were configured, but not for this CA: its devices would all be
    /// refused (their revocation status would be unknown).
    #[error(
        "CRLs are configured but none is issued by client CA #{index}; give one CRL per client CA (an empty CRL is fine)"
    )]
    MissingCrl { index: usize },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Rng,
    /// Certificate or CRL generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration (e.g. a key that does not match its certificate).
    #[error("TLS configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The device id carried by a certificate: the `urn:rampart:device:<id>`
/// URI subjectAltName if there is one, else the subject commonName.
///
/// Intended for the *verified* peer certificate of a mutual-TLS connection
/// (`ServerConnection::peer_certificates()[0]`); it does not verify anything
/// itself. Returns `None` if the certificate cannot be parsed or carries no
/// valid device id (a present but invalid URI SAN is not overridden by the
/// commonName).
pub fn device_id_from_cert(der: &[u8]) -> Option<String> {
    let cert = der::CertFields::parse(der)?;
    let uris = cert.san_uris();
    let mut device_uris = uris
        .iter()
        .filter_map(|uri| uri.strip_prefix(DEVICE_URI_PREFIX));
    let id = match (device_uris.next(), device_uris.next()) {
        (Some(id), None) => id,
        (Some(_), Some(_)) => return None, // ambiguous: two device identities
        (None, _) => der::common_name(cert.subject)?,
    };
    validate_device_id(id).ok()?;
    Some(id.to_owned())
}

/// The serial number of a DER certificate as lower-case hex (the form
/// [`IssuedCert::serial`] uses and [`CertificateAuthority::crl`] accepts).
pub fn serial_hex_from_cert(der: &[u8]) -> Option<String> {
    Some(der::CertFields::parse(der)?.serial_hex())
}

/// Writes a private-key PEM to a *new* file readable by its owner only
/// (mode 0600 on Unix), and syncs it to disk.
///
/// Refuses to overwrite an existing file (`ErrorKind::AlreadyExists`): a CA
/// key must never be clobbered by accident.
pub fn write_private_key_pem(path: &Path, pem: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()
}
