//! The manufacturer certificate authority: generation, loading, issuance of
//! device and server certificates, and CRLs.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData as _, RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::der::{self, CertFields};
use crate::{DEVICE_URI_PREFIX, Error, MAX_DEVICE_ID_LEN, Result};

/// How far `not_before` is set back from "now" for certificates issued with
/// a validity in days, to tolerate clocks that run a little behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Longest validity accepted by the `*_days` constructors (about 100 years:
/// device identities often live as long as the hardware).
const MAX_VALIDITY_DAYS: u32 = 36_525;
/// RFC 5280 `ub-common-name`.
const MAX_COMMON_NAME_LEN: usize = 64;
/// Serial numbers are 20 random bytes (the RFC 5280 maximum), positive.
const SERIAL_LEN: usize = 20;

/// A certificate and its freshly generated private key.
pub struct IssuedCert {
    /// The certificate, PEM (`CERTIFICATE`).
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8 `PRIVATE KEY`). Persist it with mode
    /// 0600, e.g. with [`crate::write_private_key_pem`].
    pub key_pem: Zeroizing<String>,
    /// The certificate serial number, lower-case hex (what
    /// [`CertificateAuthority::crl`] takes to revoke it).
    pub serial: String,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial", &self.serial)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// A certificate authority (ECDSA P-256) that issues device client
/// certificates, TLS server certificates and CRLs.
///
/// The CA key is held in memory; [`CertificateAuthority::key_pem`] exports
/// it, and whoever writes it to disk must restrict the file to its owner
/// (mode 0600 — see [`crate::write_private_key_pem`]).
pub struct CertificateAuthority {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_id_method: KeyIdMethod,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"[elided]")
            .finish()
    }
}

impl CertificateAuthority {
    /// Generates a new self-signed CA with a fresh P-256 key, valid from a
    /// few minutes ago for `validity_days` days. It may only issue end-entity
    /// certificates (path length 0).
    pub fn generate(common_name: &str, validity_days: u32) -> Result<Self> {
        let (not_before, not_after) = validity_from_now(validity_days)?;
        Self::generate_with_validity(common_name, not_before, not_after)
    }

    /// [`CertificateAuthority::generate`] with an explicit validity period.
    pub fn generate_with_validity(
        common_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Self> {
        validate_common_name(common_name)?;
        let (not_before, not_after) = validity(not_before, not_after)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name_cn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_id_method: params.key_identifier_method.clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and PKCS#8 private key, both PEM.
    ///
    /// Checks that the certificate is a CA (basicConstraints `cA`, and
    /// `keyCertSign` if keyUsage is present), that the key is the
    /// certificate's key, and that certificates issued from the loaded CA
    /// name it byte-for-byte as it names itself (so they chain).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| pem_error(e, "CA certificate"))?;
        let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| pem_error(e, "CA private key"))?;
        let key = KeyPair::try_from(&key_der)?;

        let fields =
            CertFields::parse(&cert_der).ok_or(Error::MalformedCertificate("CA certificate"))?;
        if !fields.is_ca() {
            return Err(Error::NotACa("basicConstraints does not say cA".into()));
        }
        let key_usages = match fields.key_usage_bits() {
            None => Vec::new(),
            Some(bits) => {
                let usages = key_usages_from_bits(bits);
                if !usages.contains(&KeyUsagePurpose::KeyCertSign) {
                    return Err(Error::NotACa("keyUsage lacks keyCertSign".into()));
                }
                usages
            }
        };
        if key.subject_public_key_info() != fields.spki {
            return Err(Error::CaKeyMismatch);
        }
        let key_id_method = match fields.subject_key_id() {
            Some(ski) => KeyIdMethod::PreSpecified(ski.to_vec()),
            None => KeyIdMethod::Sha256,
        };

        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name_from_der(fields.subject)?;
        params.key_usages = key_usages;
        params.key_identifier_method = key_id_method.clone();
        let issuer = Issuer::new(params, key);

        // Self-check: rcgen re-encodes the issuer name from parsed parts; make
        // sure what it writes is exactly the CA's subject, or nothing chains.
        let mut probe = CertificateParams::default();
        probe.distinguished_name = distinguished_name_cn("rampart-pki load probe");
        probe.serial_number = Some(SerialNumber::from_slice(&[1]));
        let probe = probe.signed_by(issuer.key(), &issuer)?;
        let probe_fields = CertFields::parse(probe.der())
            .ok_or(Error::MalformedCertificate("probe certificate"))?;
        if probe_fields.issuer != fields.subject {
            return Err(Error::NotACa(
                "its subject name cannot be reproduced exactly (unusual string types or multi-valued RDNs)"
                    .into(),
            ));
        }

        Ok(Self {
            cert_pem: cert_der_to_pem(&cert_der),
            cert_der,
            issuer,
            key_id_method,
        })
    }

    /// The CA certificate, PEM. This is what servers configure as the client
    /// CA and devices as the server CA.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key, PEM (PKCS#8). Secret: write it with mode 0600
    /// (see [`crate::write_private_key_pem`]) and nowhere else.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// The CA certificate serial number, lower-case hex.
    pub fn serial(&self) -> String {
        crate::serial_hex_from_cert(&self.cert_der).unwrap_or_default()
    }

    /// Issues a device client certificate with a fresh P-256 key, valid from
    /// a few minutes ago for `validity_days` days.
    ///
    /// The device id is the subject commonName and the URI subjectAltName
    /// `urn:rampart:device:<id>`; the certificate is for TLS client
    /// authentication only. See [`validate_device_id`] for the id syntax.
    pub fn issue_device(&self, device_id: &str, validity_days: u32) -> Result<IssuedCert> {
        let (not_before, not_after) = validity_from_now(validity_days)?;
        self.issue_device_with_validity(device_id, not_before, not_after)
    }

    /// [`CertificateAuthority::issue_device`] with an explicit validity
    /// period (which may lie in the past, e.g. to test expiry).
    pub fn issue_device_with_validity(
        &self,
        device_id: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert> {
        validate_device_id(device_id)?;
        let uri = Ia5String::try_from(format!("{DEVICE_URI_PREFIX}{device_id}"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name_cn(device_id);
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue_leaf(params, not_before, not_after)
    }

    /// Issues a device client certificate, valid from a few minutes ago for
    /// `validity_days` days, for a public key the CA did not generate:
    /// typically one generated inside a device's PKCS#11 token or secure
    /// element, whose private half never leaves it.
    ///
    /// `public_key_spki_der` is the key's DER SubjectPublicKeyInfo; ECDSA
    /// P-256 (id-ecPublicKey on prime256v1, uncompressed point) and Ed25519
    /// keys are accepted, anything else is refused with
    /// [`rcgen::Error::UnsupportedSignatureAlgorithm`] (wrapped in
    /// [`Error::Generate`]). The certificate is otherwise exactly what
    /// [`CertificateAuthority::issue_device`] issues (device id as commonName
    /// and `urn:rampart:device:` URI, clientAuth only). Returns it as PEM;
    /// [`crate::serial_hex_from_cert`] gives its serial.
    pub fn issue_device_for_public_key(
        &self,
        device_id: &str,
        public_key_spki_der: &[u8],
        validity_days: u32,
    ) -> Result<String> {
        /// A public key given by its algorithm and raw key bits.
        struct GivenKey {
            alg: &'static rcgen::SignatureAlgorithm,
            bits: Vec<u8>,
        }
        impl rcgen::PublicKeyData for GivenKey {
            fn der_bytes(&self) -> &[u8] {
                &self.bits
            }
            fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
                self.alg
            }
        }
        let key = match der::device_key(public_key_spki_der) {
            Some(der::DeviceKey::P256(point)) => GivenKey {
                alg: &PKCS_ECDSA_P256_SHA256,
                bits: point.to_vec(),
            },
            Some(der::DeviceKey::Ed25519(raw)) => GivenKey {
                alg: &rcgen::PKCS_ED25519,
                bits: raw.to_vec(),
            },
            None => return Err(Error::Generate(rcgen::Error::UnsupportedSignatureAlgorithm)),
        };

        let (not_before, not_after) = validity_from_now(validity_days)?;
        validate_device_id(device_id)?;
        let uri = Ia5String::try_from(format!("{DEVICE_URI_PREFIX}{device_id}"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name_cn(device_id);
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (not_before, not_after) = validity(not_before, not_after)?;
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        Ok(params.signed_by(&key, &self.issuer)?.pem())
    }

    /// Issues a TLS server certificate with a fresh P-256 key for the given
    /// DNS names and/or IP addresses (e.g. `["localhost", "127.0.0.1"]`),
    /// valid from a few minutes ago for `validity_days` days. It is for TLS
    /// server authentication only, so it can never act as a device.
    pub fn issue_server<S: AsRef<str>>(
        &self,
        names: &[S],
        validity_days: u32,
    ) -> Result<IssuedCert> {
        let (not_before, not_after) = validity_from_now(validity_days)?;
        self.issue_server_with_validity(names, not_before, not_after)
    }

    /// [`CertificateAuthority::issue_server`] with an explicit validity period.
    pub fn issue_server_with_validity<S: AsRef<str>>(
        &self,
        names: &[S],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert> {
        if names.is_empty() {
            return Err(Error::NoServerNames);
        }
        let mut sans = Vec::with_capacity(names.len());
        for name in names {
            sans.push(server_san(name.as_ref())?);
        }
        let first = names[0].as_ref().trim();
        let mut params = CertificateParams::default();
        if first.len() <= MAX_COMMON_NAME_LEN {
            params.distinguished_name = distinguished_name_cn(first);
        }
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue_leaf(params, not_before, not_after)
    }

    fn issue_leaf(
        &self,
        mut params: CertificateParams,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert> {
        let (not_before, not_after) = validity(not_before, not_after)?;
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let serial = crate::serial_hex_from_cert(cert.der())
            .ok_or(Error::MalformedCertificate("issued certificate"))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
            serial,
            cert_der: cert.der().clone(),
        })
    }

    /// Signs a CRL (PEM, `X509 CRL`) revoking the given certificates, each
    /// given as its serial in hex (as in [`IssuedCert::serial`]; upper case,
    /// a `0x` prefix and `:` separators are accepted) with its revocation
    /// time.
    ///
    /// `crl_number` must increase with every CRL this CA issues. An empty
    /// list is a valid CRL ("nothing revoked") and should still be published
    /// when the server is configured with CRLs.
    pub fn crl<S: AsRef<str>>(
        &self,
        revoked: &[(S, SystemTime)],
        this_update: SystemTime,
        next_update: SystemTime,
        crl_number: u64,
    ) -> Result<String> {
        let this_update = to_datetime(this_update)?;
        let next_update = to_datetime(next_update)?;
        if next_update <= this_update {
            return Err(Error::InvalidValidity(
                "CRL nextUpdate must be after thisUpdate".into(),
            ));
        }
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for (serial, when) in revoked {
            revoked_certs.push(RevokedCertParams {
                serial_number: parse_serial_hex(serial.as_ref())?,
                revocation_time: to_datetime(*when)?,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.key_id_method.clone(),
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// Checks a device id: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`, and
/// not `.` or `..` (ids may end up as file names).
pub fn validate_device_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_DEVICE_ID_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidDeviceId(id.to_owned()))
    }
}

fn validate_common_name(cn: &str) -> Result<()> {
    if cn.trim().is_empty()
        || cn.chars().count() > MAX_COMMON_NAME_LEN
        || cn.chars().any(char::is_control)
    {
        return Err(Error::InvalidCommonName(cn.to_owned()));
    }
    Ok(())
}

fn distinguished_name_cn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, DnValue::Utf8String(cn.to_owned()));
    dn
}

/// Rebuilds an rcgen name from a DER `Name` (one attribute per RDN).
fn distinguished_name_from_der(name: &[u8]) -> Result<DistinguishedName> {
    let unusable = |why: &str| Error::NotACa(format!("subject name: {why}"));
    let attributes =
        der::name_attributes(name).ok_or_else(|| unusable("malformed or multi-valued RDN"))?;
    let mut dn = DistinguishedName::new();
    for attribute in attributes {
        let arcs = der::oid_arcs(attribute.oid).ok_or_else(|| unusable("malformed OID"))?;
        let ty = DnType::from_oid(&arcs);
        if dn.get(&ty).is_some() {
            return Err(unusable("repeated attribute type"));
        }
        let text = std::str::from_utf8(attribute.value)
            .map_err(|_| unusable("attribute value is not text"))?
            .to_owned();
        let value = match attribute.value_tag {
            der::TAG_UTF8_STRING => DnValue::Utf8String(text),
            der::TAG_PRINTABLE_STRING => DnValue::PrintableString(
                PrintableString::try_from(text).map_err(|_| unusable("bad PrintableString"))?,
            ),
            der::TAG_IA5_STRING => DnValue::Ia5String(
                Ia5String::try_from(text).map_err(|_| unusable("bad IA5String"))?,
            ),
            _ => return Err(unusable("unsupported string type")),
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

fn key_usages_from_bits(bits: u16) -> Vec<KeyUsagePurpose> {
    const ORDER: [KeyUsagePurpose; 9] = [
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DataEncipherment,
        KeyUsagePurpose::KeyAgreement,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::EncipherOnly,
        KeyUsagePurpose::DecipherOnly,
    ];
    ORDER
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, usage)| usage)
        .collect()
}

fn server_san(name: &str) -> Result<SanType> {
    let name = name.trim();
    let unbracketed = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = || Error::InvalidServerName(name.to_owned());
    rustls_pki_types::DnsName::try_from(name).map_err(|_| invalid())?;
    Ok(SanType::DnsName(
        Ia5String::try_from(name).map_err(|_| invalid())?,
    ))
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; SERIAL_LEN];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Rng)?;
    // Positive, and no leading zero octet so the hex is exactly 40 digits.
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

/// Parses a hex serial; upper/lower case, `0x` prefix and `:` separators ok.
fn parse_serial_hex(input: &str) -> Result<SerialNumber> {
    let invalid = || Error::InvalidSerial(input.to_owned());
    let trimmed = input.trim();
    let trimmed = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let mut digits: String = trimmed.chars().filter(|&c| c != ':').collect();
    if digits.is_empty() {
        return Err(invalid());
    }
    if digits.len() % 2 == 1 {
        digits.insert(0, '0');
    }
    let bytes = hex::decode(&digits).map_err(|_| invalid())?;
    let first_nonzero = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let magnitude = &bytes[first_nonzero..];
    if magnitude.len() > SERIAL_LEN {
        return Err(invalid());
    }
    Ok(SerialNumber::from_slice(magnitude))
}

fn validity_from_now(days: u32) -> Result<(SystemTime, SystemTime)> {
    if days == 0 || days > MAX_VALIDITY_DAYS {
        return Err(Error::InvalidValidity(format!(
            "validity must be 1-{MAX_VALIDITY_DAYS} days, not {days}"
        )));
    }
    let now = SystemTime::now();
    let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
    let not_after = now
        .checked_add(Duration::from_secs(u64::from(days) * 86_400))
        .ok_or_else(|| Error::InvalidValidity("validity overflows the clock".into()))?;
    Ok((not_before, not_after))
}

fn validity(
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let not_before = to_datetime(not_before)?;
    let not_after = to_datetime(not_after)?;
    if not_after <= not_before {
        return Err(Error::InvalidValidity(
            "not_after must be after not_before".into(),
        ));
    }
    Ok((not_before, not_after))
}

/// Converts to whole seconds, within what X.509 times can express here
/// (1950-01-01 to 9999-12-31).
fn to_datetime(t: SystemTime) -> Result<OffsetDateTime> {
    const MIN: i64 = -631_152_000; // 1950-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let out_of_range = || Error::InvalidValidity("time outside 1950-9999".into());
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).map_err(|_| out_of_range())?,
        Err(e) => i64::try_from(e.duration().as_secs())
            .map(|s| -s)
            .map_err(|_| out_of_range())?,
    };
    if !(MIN..=MAX).contains(&secs) {
        return Err(out_of_range());
    }
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| out_of_range())
}

fn pem_error(e: rustls_pki_types::pem::Error, what: &'static str) -> Error {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => Error::PemMissing(what),
        source => Error::Pem { what, source },
    }
}

fn cert_der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_device_certificates_for_given_public_keys() {
        let ca = CertificateAuthority::generate("Rampart Test Manufacturer CA", 30).unwrap();
        for alg in [&PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
            let key = KeyPair::generate_for(alg).unwrap();
            let spki = key.subject_public_key_info();
            let pem = ca
                .issue_device_for_public_key("dev-token-1", &spki, 30)
                .unwrap();
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            let fields = CertFields::parse(&der).unwrap();
            assert_eq!(
                fields.spki,
                &spki[..],
                "{alg:?}: the certificate carries the key"
            );
            assert_eq!(
                crate::device_id_from_cert(&der).as_deref(),
                Some("dev-token-1")
            );
            assert!(crate::serial_hex_from_cert(&der).is_some());
            // It chains to the CA: webpki accepts it as a client certificate.
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert_der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                std::sync::Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .unwrap();
            verifier
                .verify_client_cert(&der, &[], rustls_pki_types::UnixTime::now())
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }

        // Not a supported SubjectPublicKeyInfo.
        let p256 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut spki = p256.subject_public_key_info();
        for bad in [&b""[..], &spki[..40], &[0x30, 0x03, 0x02, 0x01, 0x00][..]] {
            assert!(matches!(
                ca.issue_device_for_public_key("dev-token-1", bad, 30),
                Err(Error::Generate(rcgen::Error::UnsupportedSignatureAlgorithm))
            ));
        }
        spki.push(0);
        assert!(
            ca.issue_device_for_public_key("dev-token-1", &spki, 30)
                .is_err()
        );
        spki.pop();
        assert!(matches!(
            ca.issue_device_for_public_key("bad/id", &spki, 30),
            Err(Error::InvalidDeviceId(_))
        ));
    }
}
