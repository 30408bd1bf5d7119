//! The device's mutual-TLS identity towards the update server: the server CA as the only trust
//! root, the device certificate, and its private key, which is either a PEM key or a key that
//! never leaves a PKCS#11 token (an HSM, a TPM-backed token, a secure element; SoftHSM2 in
//! tests).
//!
//! ureq's [`ureq::tls::TlsConfig`] only takes a private key as bytes, so the agent makes its TLS
//! connections itself, through a ureq connector chain (ureq's `unversioned` transport API):
//! ureq's `ConnectProxyConnector` (HTTP CONNECT proxies, as in ureq's default chain), ureq's
//! `TcpConnector`, then this module's TLS connector, which runs a rustls client handshake (ring
//! provider; TLS 1.3 and 1.2) whose client certificate is resolved to a
//! [`rustls::sign::CertifiedKey`]. For a token key, its [`rustls::sign::SigningKey`] signs the
//! handshake through [`Pkcs11Signer`]: ECDSA P-256 (`ecdsa_secp256r1_sha256`: SHA-256 computed
//! here, `CKM_ECDSA` on the token, the signature DER-encoded, as TLS wants it) or Ed25519
//! (`CKM_EDDSA`, the raw 64-byte signature). A PEM key is loaded by rustls' ring key provider
//! and goes through the same connector, so both kinds of key get the same TLS settings.
//!
//! Everything that can be checked locally is checked by [`device_agent`] before any connection
//! is made: the PEM inputs parse, the certificate names a device, the token is reachable with
//! the PIN and holds the key, and the certificate's public key is the key's public key.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart_core::Scheme;
use rampart_keys::SignError;
use rampart_keys::Signer as _;
use rampart_keys::pkcs11::{ModuleConfig, Pkcs11Signer};
use rampart_tuf_client::HttpFetcher;
use rustls::client::ClientConnection;
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{
    ClientConfig, InconsistentKeys, RootCertStore, SignatureAlgorithm, SignatureScheme, StreamOwned,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer};
use ureq::unversioned::transport::time::{Duration as UreqDuration, Instant as UreqInstant};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    TcpConnector, Transport, TransportAdapter,
};

pub use rampart_keys::pkcs11::TokenKeyRef;

/// Where the device's TLS client key is.
#[derive(Clone)]
pub enum ClientKey {
    /// A private key in PEM (PKCS#8, SEC1 or PKCS#1).
    Pem(Vec<u8>),
    /// A key pair on a PKCS#11 token: the module (shared library) to load, the token's user
    /// PIN, and the token and key labels. The private key never leaves the token.
    Pkcs11 {
        module: PathBuf,
        pin: String,
        key: TokenKeyRef,
    },
    /// A key that signs where it lives (the TPM's TLS key, [`crate::tpm`]); `name` says
    /// which, in messages.
    Signer {
        key: Arc<dyn SigningKey>,
        name: String,
    },
}

impl ClientKey {
    /// A token key named by a PKCS#11 URI, `pkcs11:token=LABEL;object=LABEL` (RFC 7512 path
    /// attributes; the `pkcs11:` prefix is optional, values may be percent-encoded).
    pub fn pkcs11_from_uri(
        module: impl Into<PathBuf>,
        pin: impl Into<String>,
        uri: &str,
    ) -> Result<ClientKey, TlsError> {
        let key = TokenKeyRef::parse(uri).map_err(|e| TlsError::KeyReference(e.to_string()))?;
        Ok(ClientKey::Pkcs11 {
            module: module.into(),
            pin: pin.into(),
            key,
        })
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::Pem(_) => f.write_str("Pem(<redacted>)"),
            ClientKey::Pkcs11 { module, key, .. } => f
                .debug_struct("Pkcs11")
                .field("module", module)
                .field("pin", &"<redacted>")
                .field("key", &key.to_string())
                .finish(),
            ClientKey::Signer { name, .. } => f.debug_struct("Signer").field("name", name).finish(),
        }
    }
}

/// Why the device's TLS identity cannot be used. Each message says what is wrong and what to
/// do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error(
        "server CA certificate: {0}; give the PEM certificate(s) of the CA that issued the update \
         server's certificate"
    )]
    ServerCa(String),
    #[error(
        "device certificate: {0}; give the device's PEM certificate first, optionally followed by \
         intermediate CA certificates"
    )]
    Certificate(String),
    #[error(
        "the device certificate carries no valid device id (one urn:rampart:device:ID URI, or a \
         common name of 1-128 characters A-Z a-z 0-9 . _ : -); re-issue it from the manufacturer CA"
    )]
    NoDeviceId,
    #[error("device key: {0}; give the device's private key in PEM (PKCS#8, SEC1 or PKCS#1)")]
    PemKey(String),
    #[error(
        "the device certificate is not for {key}: the certificate's public key differs from the \
         key's. Re-issue the device certificate for this key, or configure the key the \
         certificate was issued for"
    )]
    KeyMismatch { key: String },
    #[error("PKCS#11 key reference: {0}")]
    KeyReference(String),
    #[error("cannot use PKCS#11 module {}: {detail}", module.display())]
    Module { module: PathBuf, detail: String },
    #[error(
        "wrong PIN for PKCS#11 token {token:?}: the token refused the user PIN; fix the PIN in the \
         agent's configuration (repeated failures may lock the token)"
    )]
    WrongPin { token: String },
    #[error(
        "the user PIN of PKCS#11 token {token:?} is locked after too many failed logins; unlock \
         it with the security officer PIN (e.g. pkcs11-tool --init-pin --login --login-type so), \
         then fix the PIN in the agent's configuration"
    )]
    PinLocked { token: String },
    #[error("PKCS#11 token {token:?} not found: {detail}")]
    TokenNotFound { token: String, detail: String },
    #[error("the device key {key} is not on the token: {detail}")]
    KeyNotFound { key: String, detail: String },
    #[error("PKCS#11 key {key}: {detail}")]
    Token { key: String, detail: String },
    #[error("TLS client configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
}

/// Builds the device's HTTPS fetcher for the update server, and reads the device id from the
/// device certificate (with [`rampart_pki::device_id_from_cert`]).
///
/// * `server_ca_pem`: the CA certificate(s) the server's certificate must chain to, the only
///   trust roots.
/// * `cert_pem`: the device certificate, optionally followed by intermediates.
/// * `key`: the certificate's private key, in PEM or on a PKCS#11 token.
///
/// The fetcher has [`HttpFetcher`]'s usual timeouts and minimum transfer rate; its
/// [`HttpFetcher::agent`] serves the other requests (poll, reports, ranged downloads). For a
/// token key the PIN is checked and the key looked up here, and every TLS handshake signs on
/// the token (one short session per signature).
pub fn device_agent(
    server_ca_pem: &[u8],
    cert_pem: &[u8],
    key: &ClientKey,
) -> Result<(HttpFetcher, String), TlsError> {
    let (config, device_id) = client_config(server_ca_pem, cert_pem, key)?;
    let connector =
        ().chain(ConnectProxyConnector::default())
            .chain(TcpConnector::default())
            .chain(ClientTlsConnector { config });
    Ok((HttpFetcher::with_connector(connector), device_id))
}

/// The rustls client configuration of the device, and its device id.
fn client_config(
    server_ca_pem: &[u8],
    cert_pem: &[u8],
    key: &ClientKey,
) -> Result<(Arc<ClientConfig>, String), TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(server_ca_pem).map_err(TlsError::ServerCa)? {
        roots
            .add(ca)
            .map_err(|e| TlsError::ServerCa(format!("unusable as a trust root: {e}")))?;
    }
    let chain = certificates(cert_pem).map_err(TlsError::Certificate)?;
    let device_id = rampart_pki::device_id_from_cert(&chain[0]).ok_or(TlsError::NoDeviceId)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (signing_key, what) = load_signing_key(&provider, key)?;

    let certified = certified_key(chain, signing_key, what)?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![rampart_pki::ALPN_HTTP_1_1.to_vec()];
    Ok((Arc::new(config), device_id))
}

/// The device's TLS key as a signer of other things than handshakes (evidence bundles and the
/// agent log's anchors, [`crate::evidence`]), with the device certificate (DER) it belongs to.
/// The key is checked against the certificate as for TLS.
pub fn device_signing_key(
    cert_pem: &[u8],
    key: &ClientKey,
) -> Result<(Arc<dyn SigningKey>, CertificateDer<'static>), TlsError> {
    let chain = certificates(cert_pem).map_err(TlsError::Certificate)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (signing_key, what) = load_signing_key(&provider, key)?;
    let certificate = chain[0].clone();
    certified_key(chain, Arc::clone(&signing_key), what)?;
    Ok((signing_key, certificate))
}

/// The certificate chain with its key, once the certificate is known to be for that key.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn SigningKey>,
    what: String,
) -> Result<CertifiedKey, TlsError> {
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        // A PEM key rustls cannot derive a public key from is left to the handshake.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch { key: what })
        }
        Err(other) => Err(TlsError::Certificate(format!("unusable: {other}"))),
    }
}

/// The configured key as a rustls signing key, and how to name it in messages.
fn load_signing_key(
    provider: &rustls::crypto::CryptoProvider,
    key: &ClientKey,
) -> Result<(Arc<dyn SigningKey>, String), TlsError> {
    Ok(match key {
        ClientKey::Pem(pem) => {
            let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    TlsError::PemKey("no PEM private key found".into())
                }
                other => TlsError::PemKey(format!("malformed PEM: {other}")),
            })?;
            let loaded = provider
                .key_provider
                .load_private_key(der)
                .map_err(|e| TlsError::PemKey(format!("unusable: {e}")))?;
            (loaded, "the PEM private key".to_string())
        }
        ClientKey::Pkcs11 { module, pin, key } => {
            (Arc::new(token_key(module, pin, key)?), key.to_string())
        }
        ClientKey::Signer { key, name } => (Arc::clone(key), name.clone()),
    })
}

/// The DER certificates of a PEM input (at least one).
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

// ---------------------------------------------------------------------------------------------
// The token key as a rustls signing key
// ---------------------------------------------------------------------------------------------

/// A key pair on a PKCS#11 token, as rustls sees it.
struct TokenKey {
    signer: Arc<Pkcs11Signer>,
    scheme: SignatureScheme,
    algorithm: SignatureAlgorithm,
    spki: SubjectPublicKeyInfoDer<'static>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("key", &self.signer.reference().to_string())
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// Opens the token key, turning the backend's errors into [`TlsError`]s.
fn token_key(module: &Path, pin: &str, key: &TokenKeyRef) -> Result<TokenKey, TlsError> {
    if !module.is_file() {
        return Err(TlsError::Module {
            module: module.to_path_buf(),
            detail: "no such file; point the agent at your token's PKCS#11 library (for \
                     SoftHSM2: /usr/lib/softhsm/libsofthsm2.so, Debian package softhsm2)"
                .into(),
        });
    }
    let cfg = ModuleConfig {
        module_path: module.to_path_buf(),
        pin: pin.to_string(),
    };
    let signer = Pkcs11Signer::open(&cfg, key).map_err(|e| open_error(module, key, e))?;
    let (scheme, algorithm, alg_id) = match signer.scheme() {
        Scheme::EcdsaP256Sha256 => (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureAlgorithm::ECDSA,
            rustls_pki_types::alg_id::ECDSA_P256,
        ),
        Scheme::Ed25519 => (
            SignatureScheme::ED25519,
            SignatureAlgorithm::ED25519,
            rustls_pki_types::alg_id::ED25519,
        ),
        other => {
            return Err(TlsError::Token {
                key: key.to_string(),
                detail: format!(
                    "{} keys cannot sign TLS handshakes here; use an ECDSA P-256 or Ed25519 key",
                    other.as_str()
                ),
            });
        }
    };
    let material = signer
        .public_key()
        .material()
        .map_err(|e| TlsError::Token {
            key: key.to_string(),
            detail: format!("its public key is unusable: {e}"),
        })?;
    let spki = rustls::sign::public_key_to_spki(&alg_id, material);
    Ok(TokenKey {
        signer: Arc::new(signer),
        scheme,
        algorithm,
        spki,
    })
}

/// Classifies an error of the PKCS#11 backend (whose errors are messages) by what the user
/// has to fix. The backend's own message is kept wherever it lists what the token holds.
fn open_error(module: &Path, key: &TokenKeyRef, e: SignError) -> TlsError {
    let SignError::Pkcs11(msg) = e else {
        return TlsError::Token {
            key: key.to_string(),
            detail: e.to_string(),
        };
    };
    if msg.starts_with("wrong PIN for token") {
        TlsError::WrongPin {
            token: key.token.clone(),
        }
    } else if msg.contains("is locked after too many failures") {
        TlsError::PinLocked {
            token: key.token.clone(),
        }
    } else if msg.starts_with("no token labelled") {
        TlsError::TokenNotFound {
            token: key.token.clone(),
            detail: msg,
        }
    } else if msg.starts_with("no private key labelled") {
        TlsError::KeyNotFound {
            key: key.to_string(),
            detail: msg,
        }
    } else if msg.starts_with("cannot load PKCS#11 module")
        || msg.starts_with("cannot initialise PKCS#11 module")
    {
        TlsError::Module {
            module: module.to_path_buf(),
            detail: msg,
        }
    } else {
        TlsError::Token {
            key: key.to_string(),
            detail: msg,
        }
    }
}

impl SigningKey for TokenKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered.contains(&self.scheme).then(|| {
            Box::new(TokenSigner {
                signer: Arc::clone(&self.signer),
                scheme: self.scheme,
            }) as Box<dyn rustls::sign::Signer>
        })
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(self.spki.clone())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }
}

/// Signs one handshake on the token.
struct TokenSigner {
    signer: Arc<Pkcs11Signer>,
    scheme: SignatureScheme,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("key", &self.signer.reference().to_string())
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl rustls::sign::Signer for TokenSigner {
    /// The backend's encodings are the TLS ones: ECDSA signatures DER-encoded over SHA-256 of
    /// the message, Ed25519 signatures raw (64 bytes) over the message itself.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.signer.sign(message).map_err(|e| {
            rustls::Error::General(format!(
                "signing the TLS handshake with {} failed: {e}",
                self.signer.reference()
            ))
        })
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

// ---------------------------------------------------------------------------------------------
// The ureq connector
// ---------------------------------------------------------------------------------------------

/// Wraps the chained transport in TLS for `https://` URLs, with the device's rustls
/// configuration (ureq's own `RustlsConnector` builds its configuration from a `TlsConfig`,
/// which cannot carry a custom signing key).
#[derive(Debug)]
struct ClientTlsConnector {
    config: Arc<ClientConfig>,
}

impl<In: Transport> Connector<In> for ClientTlsConnector {
    type Out = Either<In, ClientTlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().ok_or(ureq::Error::Tls(
            "the URL has no host name to check the server certificate against",
        ))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_string()).map_err(|_| {
            ureq::Error::Tls("the URL's host is neither a valid DNS name nor an IP address")
        })?;
        let mut conn = ClientConnection::new(Arc::clone(&self.config), name)?;
        let boxed: Box<dyn Transport> = Box::new(transport);
        let mut sock = TransportAdapter::new(boxed, details.current_time.clone());
        sock.set_timeout(handshake_timeout(details));
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(ClientTlsTransport {
            buffers,
            stream: StreamOwned::new(conn, sock),
        })))
    }
}

/// What is left of the connect timeout after the TCP connection (ureq's own TLS connector
/// measures it from the start of the connection in the same way).
fn handshake_timeout(details: &ConnectionDetails) -> NextTimeout {
    let mut timeout = details.timeout;
    if let (UreqDuration::Exact(budget), UreqInstant::Exact(start), UreqInstant::Exact(now)) =
        (timeout.after, details.now, (details.current_time)())
    {
        timeout.after =
            UreqDuration::Exact(budget.saturating_sub(now.saturating_duration_since(start)));
    }
    timeout
}

/// A TLS connection to the server, as a ureq transport.
struct ClientTlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for ClientTlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsTransport")
            .field("chained", &self.stream.sock.inner())
            .finish()
    }
}

impl Transport for ClientTlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki() -> (rampart_pki::CertificateAuthority, rampart_pki::IssuedCert) {
        let ca = rampart_pki::CertificateAuthority::generate("Rampart Test CA", 30).unwrap();
        let dev = ca.issue_device("dev-pem-1", 30).unwrap();
        (ca, dev)
    }

    #[test]
    fn pem_identity_is_checked_before_connecting() {
        let (ca, dev) = pki();
        let ca_pem = ca.cert_pem().as_bytes();
        let key = ClientKey::Pem(dev.key_pem.as_bytes().to_vec());
        let (_, id) = device_agent(ca_pem, dev.cert_pem.as_bytes(), &key).unwrap();
        assert_eq!(id, "dev-pem-1");

        let other = ca.issue_device("dev-pem-2", 30).unwrap();
        let err = device_agent(ca_pem, other.cert_pem.as_bytes(), &key).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("Re-issue"), "{err}");

        for (ca_pem, cert, key, want) in [
            (&b""[..], dev.cert_pem.as_bytes(), key.clone(), "server CA"),
            (ca_pem, &b"junk"[..], key.clone(), "device certificate"),
            (
                ca_pem,
                dev.cert_pem.as_bytes(),
                ClientKey::Pem(b"junk".to_vec()),
                "device key",
            ),
        ] {
            let err = device_agent(ca_pem, cert, &key).unwrap_err().to_string();
            assert!(err.starts_with(want), "{want}: {err}");
        }
    }

    #[test]
    fn token_errors_are_classified() {
        let key = TokenKeyRef::parse("token=t;object=k").unwrap();
        let module = Path::new("/m.so");
        let classify = |msg: &str| open_error(module, &key, SignError::Pkcs11(msg.into()));
        assert!(matches!(
            classify("wrong PIN for token \"t\": the token refused the user PIN"),
            TlsError::WrongPin { .. }
        ));
        assert!(matches!(
            classify("the user PIN of token \"t\" is locked after too many failures; unlock"),
            TlsError::PinLocked { .. }
        ));
        assert!(matches!(
            classify("no token labelled \"t\" in PKCS#11 module /m.so; tokens present: a"),
            TlsError::TokenNotFound { .. }
        ));
        assert!(matches!(
            classify("no private key labelled \"k\" on token \"t\"; private keys present: none"),
            TlsError::KeyNotFound { .. }
        ));
        assert!(matches!(
            classify("cannot load PKCS#11 module /m.so: dlopen failed"),
            TlsError::Module { .. }
        ));
        assert!(matches!(classify("something else"), TlsError::Token { .. }));

        let err = device_agent(
            b"",
            b"",
            &ClientKey::pkcs11_from_uri("/m.so", "1234", "pkcs11:token=t;object=k").unwrap(),
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::ServerCa(_)), "{err}");
        assert!(matches!(
            ClientKey::pkcs11_from_uri("/m.so", "1234", "token=t"),
            Err(TlsError::KeyReference(_))
        ));
        let shown = format!(
            "{:?}",
            ClientKey::pkcs11_from_uri("/m.so", "s3cret", "token=t;object=k").unwrap()
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
