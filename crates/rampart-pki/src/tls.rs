//! rustls configurations for the mutual-TLS device API.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::der::{self, CertFields};
use crate::{ALPN_HTTP_1_1, Error, Result};

/// The one crypto provider this crate uses, passed explicitly to every
/// builder (no reliance on a process-wide default).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server configuration of the device API: TLS 1.3/1.2, ALPN
/// `http/1.1`, and a mandatory client certificate.
///
/// * `server_cert_pem`: the server certificate, optionally followed by its
///   intermediates; `server_key_pem` its private key.
/// * `client_ca_pem`: one or more manufacturer CA certificates; a client must
///   present a certificate chaining to one of them, currently valid, with
///   the clientAuth extended key usage.
/// * `crls`: PEM CRLs (each string may hold several). When any is given,
///   every client CA must have one (an empty CRL is fine) — a device whose
///   revocation status is unknown is refused, so a missing CRL would lock out
///   a whole CA's fleet; that is reported here as [`Error::MissingCrl`]
///   instead. A CRL whose issuer is not a client CA is [`Error::InvalidCrl`].
///   Only the device certificate's revocation is checked (the CA is the
///   trust anchor). A CRL past its nextUpdate is still honoured.
///
/// Devices without a certificate, with one from another CA, expired, not yet
/// valid, for the wrong purpose, or revoked are refused during the
/// handshake. Changes to the CRLs take effect for configurations built
/// afterwards: rebuild and swap the `Arc` to apply a new CRL.
pub fn server_config(
    server_cert_pem: &str,
    server_key_pem: &str,
    client_ca_pem: &str,
    crls: &[String],
) -> Result<Arc<ServerConfig>> {
    client_auth_config(server_cert_pem, server_key_pem, client_ca_pem, crls, false)
}

/// Like [`server_config`], but a client may also connect without a certificate (the hawkBit
/// DDI listener, where devices may authenticate with tokens instead); a certificate that is
/// presented must still chain to a client CA and not be revoked.
pub fn server_config_optional_client_auth(
    server_cert_pem: &str,
    server_key_pem: &str,
    client_ca_pem: &str,
    crls: &[String],
) -> Result<Arc<ServerConfig>> {
    client_auth_config(server_cert_pem, server_key_pem, client_ca_pem, crls, true)
}

fn client_auth_config(
    server_cert_pem: &str,
    server_key_pem: &str,
    client_ca_pem: &str,
    crls: &[String],
    optional: bool,
) -> Result<Arc<ServerConfig>> {
    let chain = certificates(server_cert_pem, "server certificate")?;
    let key = private_key(server_key_pem, "server private key")?;
    let client_cas = certificates(client_ca_pem, "client CA certificate")?;

    let mut ca_subjects = Vec::with_capacity(client_cas.len());
    let mut roots = RootCertStore::empty();
    for ca in &client_cas {
        let fields =
            CertFields::parse(ca).ok_or(Error::MalformedCertificate("client CA certificate"))?;
        ca_subjects.push(fields.subject.to_vec());
        roots.add(ca.clone())?;
    }

    let mut crl_ders = Vec::new();
    for (index, crl_pem) in crls.iter().enumerate() {
        let parsed = CertificateRevocationListDer::pem_slice_iter(crl_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidCrl {
                index,
                reason: format!("malformed PEM: {e}"),
            })?;
        if parsed.is_empty() {
            return Err(Error::InvalidCrl {
                index,
                reason: "no X509 CRL in the PEM input".into(),
            });
        }
        for crl in parsed {
            let issuer = der::crl_issuer(&crl).ok_or_else(|| Error::InvalidCrl {
                index,
                reason: "malformed CRL".into(),
            })?;
            if !ca_subjects.iter().any(|subject| subject == issuer) {
                return Err(Error::InvalidCrl {
                    index,
                    reason: "issued by none of the client CAs".into(),
                });
            }
            crl_ders.push(crl);
        }
    }
    if !crl_ders.is_empty() {
        for (index, subject) in ca_subjects.iter().enumerate() {
            let covered = crl_ders
                .iter()
                .any(|crl| der::crl_issuer(crl) == Some(subject.as_slice()));
            if !covered {
                return Err(Error::MissingCrl { index });
            }
        }
    }

    let provider = provider();
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crl_ders)
        .only_check_end_entity_revocation();
    let verifier = if optional {
        builder.allow_unauthenticated().build()?
    } else {
        builder.build()?
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// Builds the operator (management API) server configuration: TLS with the
/// server certificate, no client certificate (operators authenticate with
/// bearer tokens). ALPN `http/1.1`.
pub fn server_config_without_client_auth(
    server_cert_pem: &str,
    server_key_pem: &str,
) -> Result<Arc<ServerConfig>> {
    let chain = certificates(server_cert_pem, "server certificate")?;
    let key = private_key(server_key_pem, "server private key")?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// Builds a device client configuration: trusts servers whose certificate
/// chains to `server_ca_pem` (one or more CA certificates) and authenticates
/// with `client_cert_pem` (optionally followed by intermediates) and its key.
/// ALPN `http/1.1`.
pub fn client_config(
    server_ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<Arc<ClientConfig>> {
    let roots = root_store(server_ca_pem)?;
    let chain = certificates(client_cert_pem, "client certificate")?;
    let key = private_key(client_key_pem, "client private key")?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration that verifies the server but presents no client
/// certificate (the device API refuses it; useful for tests and for
/// endpoints that do not require a device identity).
pub fn client_config_without_identity(server_ca_pem: &str) -> Result<Arc<ClientConfig>> {
    let roots = root_store(server_ca_pem)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

fn root_store(ca_pem: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(ca_pem, "server CA certificate")? {
        roots.add(ca)?;
    }
    Ok(roots)
}

fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem { what, source })?;
    if certs.is_empty() {
        return Err(Error::PemMissing(what));
    }
    Ok(certs)
}

fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => Error::PemMissing(what),
        source => Error::Pem { what, source },
    })
}
