//! A minimal, bounds-checked DER reader for the few certificate and CRL
//! fields this crate needs (serial, names, SPKI, a handful of extensions).
//!
//! It never panics on malformed input: every accessor returns `None` instead.
//! It is not a validator — chain, signature and validity checks are done by
//! webpki (through rustls); this only *reads* fields of certificates that
//! were either just generated here or already verified by the TLS stack.

pub(crate) const TAG_BOOLEAN: u8 = 0x01;
pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_UTF8_STRING: u8 = 0x0c;
pub(crate) const TAG_PRINTABLE_STRING: u8 = 0x13;
pub(crate) const TAG_IA5_STRING: u8 = 0x16;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
pub(crate) const TAG_SET: u8 = 0x31;
/// `[0] EXPLICIT` (certificate version).
const TAG_CTX0_CONSTRUCTED: u8 = 0xa0;
/// `[3] EXPLICIT` (certificate extensions).
const TAG_CTX3_CONSTRUCTED: u8 = 0xa3;
/// GeneralName `uniformResourceIdentifier [6] IMPLICIT IA5String`.
pub(crate) const TAG_GENERAL_NAME_URI: u8 = 0x86;

/// DER content of OID 2.5.4.3 (id-at-commonName).
pub(crate) const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// DER content of OID 2.5.29.14 (id-ce-subjectKeyIdentifier).
pub(crate) const OID_SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
/// DER content of OID 2.5.29.15 (id-ce-keyUsage).
pub(crate) const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// DER content of OID 2.5.29.17 (id-ce-subjectAltName).
pub(crate) const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// DER content of OID 2.5.29.19 (id-ce-basicConstraints).
pub(crate) const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];

/// A device key's raw public key, from its SubjectPublicKeyInfo.
pub(crate) enum DeviceKey<'a> {
    /// The uncompressed P-256 point (65 bytes).
    P256(&'a [u8]),
    /// The Ed25519 key (32 bytes).
    Ed25519(&'a [u8]),
}

/// The key of a P-256 (id-ecPublicKey on prime256v1, uncompressed point) or Ed25519
/// SubjectPublicKeyInfo, the keys device certificates are issued for; `None` for anything else.
/// DER is canonical, so each accepted algorithm has exactly one header.
pub(crate) fn device_key(spki: &[u8]) -> Option<DeviceKey<'_>> {
    const P256_SPKI_HEADER: &[u8] = &[
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    const ED25519_SPKI_HEADER: &[u8] = &[
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    if let Some(point) = spki.strip_prefix(P256_SPKI_HEADER)
        && point.len() == 65
        && point[0] == 0x04
    {
        Some(DeviceKey::P256(point))
    } else if let Some(raw) = spki.strip_prefix(ED25519_SPKI_HEADER)
        && raw.len() == 32
    {
        Some(DeviceKey::Ed25519(raw))
    } else {
        None
    }
}

/// One tag-length-value element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    /// The value bytes (without tag and length).
    pub content: &'a [u8],
    /// The whole element, tag and length included.
    pub raw: &'a [u8],
}

/// Reads one DER element from the front of `input`; returns it and the rest.
///
/// Only low-tag-number forms and definite lengths (up to 4 length octets,
/// minimally encoded) are accepted, which covers every X.509 structure.
pub(crate) fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high-tag-number form: never used in X.509
    }
    let (&first_len, mut rest) = rest.split_first()?;
    let len = if first_len < 0x80 {
        usize::from(first_len)
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None; // indefinite length (BER) or absurdly long
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        if len_bytes[0] == 0 {
            return None; // not minimal
        }
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return None; // not minimal
        }
        len
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    let header_len = input.len() - rest.len();
    let raw = &input[..header_len + len];
    Some((Tlv { tag, content, raw }, after))
}

/// Reads one element that must carry `tag`.
pub(crate) fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    let (tlv, rest) = read_tlv(input)?;
    (tlv.tag == tag).then_some((tlv, rest))
}

/// Iterates the elements of a constructed value's content.
pub(crate) fn elements(mut content: &[u8]) -> impl Iterator<Item = Option<Tlv<'_>>> {
    std::iter::from_fn(move || {
        if content.is_empty() {
            return None;
        }
        match read_tlv(content) {
            Some((tlv, rest)) => {
                content = rest;
                Some(Some(tlv))
            }
            None => {
                content = &[];
                Some(None)
            }
        }
    })
}

/// One X.509v3 extension.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Extension<'a> {
    /// OID content bytes.
    pub oid: &'a [u8],
    /// The `extnValue` OCTET STRING content (the DER of the extension value).
    pub value: &'a [u8],
}

/// The fields of a certificate this crate reads.
#[derive(Clone, Debug)]
pub(crate) struct CertFields<'a> {
    /// INTEGER content bytes of the serial number (two's complement, DER).
    pub serial: &'a [u8],
    /// Whole `issuer` Name element.
    pub issuer: &'a [u8],
    /// Whole `subject` Name element.
    pub subject: &'a [u8],
    /// Whole `subjectPublicKeyInfo` element.
    pub spki: &'a [u8],
    pub extensions: Vec<Extension<'a>>,
}

impl<'a> CertFields<'a> {
    /// Parses the TBSCertificate of a DER certificate.
    pub(crate) fn parse(der: &'a [u8]) -> Option<Self> {
        let (cert, trailing) = expect(der, TAG_SEQUENCE)?;
        if !trailing.is_empty() {
            return None;
        }
        let (tbs, _) = expect(cert.content, TAG_SEQUENCE)?;
        let mut rest = tbs.content;
        // version [0] EXPLICIT INTEGER DEFAULT v1
        if rest.first() == Some(&TAG_CTX0_CONSTRUCTED) {
            rest = read_tlv(rest)?.1;
        }
        let (serial, rest) = expect(rest, TAG_INTEGER)?;
        let (_sig_alg, rest) = expect(rest, TAG_SEQUENCE)?;
        let (issuer, rest) = expect(rest, TAG_SEQUENCE)?;
        let (_validity, rest) = expect(rest, TAG_SEQUENCE)?;
        let (subject, rest) = expect(rest, TAG_SEQUENCE)?;
        let (spki, mut rest) = expect(rest, TAG_SEQUENCE)?;
        let mut extensions = Vec::new();
        while !rest.is_empty() {
            let (tlv, after) = read_tlv(rest)?;
            rest = after;
            if tlv.tag != TAG_CTX3_CONSTRUCTED {
                continue; // issuerUniqueID / subjectUniqueID
            }
            let (seq, _) = expect(tlv.content, TAG_SEQUENCE)?;
            for ext in elements(seq.content) {
                let ext = ext?;
                if ext.tag != TAG_SEQUENCE {
                    return None;
                }
                let (oid, mut ext_rest) = expect(ext.content, TAG_OID)?;
                if ext_rest.first() == Some(&TAG_BOOLEAN) {
                    ext_rest = read_tlv(ext_rest)?.1;
                }
                let (value, _) = expect(ext_rest, TAG_OCTET_STRING)?;
                extensions.push(Extension {
                    oid: oid.content,
                    value: value.content,
                });
            }
        }
        Some(Self {
            serial: serial.content,
            issuer: issuer.raw,
            subject: subject.raw,
            spki: spki.raw,
            extensions,
        })
    }

    pub(crate) fn extension(&self, oid: &[u8]) -> Option<&'a [u8]> {
        self.extensions
            .iter()
            .find(|e| e.oid == oid)
            .map(|e| e.value)
    }

    /// The serial number as lower-case hex of its magnitude (sign octet dropped).
    pub(crate) fn serial_hex(&self) -> String {
        serial_hex_from_integer(self.serial)
    }

    /// URIs in the subjectAltName extension (entries that are not valid
    /// UTF-8 are skipped).
    pub(crate) fn san_uris(&self) -> Vec<&'a str> {
        let Some(value) = self.extension(OID_SUBJECT_ALT_NAME) else {
            return Vec::new();
        };
        let Some((seq, _)) = expect(value, TAG_SEQUENCE) else {
            return Vec::new();
        };
        elements(seq.content)
            .map_while(|e| e)
            .filter(|e| e.tag == TAG_GENERAL_NAME_URI)
            .filter_map(|e| std::str::from_utf8(e.content).ok())
            .collect()
    }

    /// Whether basicConstraints says `cA: TRUE`.
    pub(crate) fn is_ca(&self) -> bool {
        let Some(value) = self.extension(OID_BASIC_CONSTRAINTS) else {
            return false;
        };
        let Some((seq, _)) = expect(value, TAG_SEQUENCE) else {
            return false;
        };
        matches!(expect(seq.content, TAG_BOOLEAN), Some((b, _)) if b.content == [0xff])
    }

    /// The subjectKeyIdentifier, if present.
    pub(crate) fn subject_key_id(&self) -> Option<&'a [u8]> {
        let value = self.extension(OID_SUBJECT_KEY_ID)?;
        Some(expect(value, TAG_OCTET_STRING)?.0.content)
    }

    /// keyUsage bits as a 9-bit mask, bit `i` being RFC 5280's bit `i`
    /// (0 = digitalSignature … 5 = keyCertSign, 6 = cRLSign, 8 = decipherOnly).
    pub(crate) fn key_usage_bits(&self) -> Option<u16> {
        let value = self.extension(OID_KEY_USAGE)?;
        let (bits, _) = expect(value, TAG_BIT_STRING)?;
        let (_unused, bytes) = bits.content.split_first()?;
        let mut mask = 0u16;
        for i in 0..9usize {
            let byte = bytes.get(i / 8).copied().unwrap_or(0);
            if byte & (0x80 >> (i % 8)) != 0 {
                mask |= 1 << i;
            }
        }
        Some(mask)
    }
}

/// Formats an INTEGER's content bytes as lower-case hex without the leading
/// sign octet, i.e. the form [`crate::CertificateAuthority::crl`] accepts.
pub(crate) fn serial_hex_from_integer(content: &[u8]) -> String {
    let trimmed = match content {
        [0, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    hex::encode(trimmed)
}

/// One attribute of a distinguished name.
#[derive(Clone, Debug)]
pub(crate) struct NameAttribute<'a> {
    /// OID content bytes.
    pub oid: &'a [u8],
    /// ASN.1 string tag of the value.
    pub value_tag: u8,
    pub value: &'a [u8],
}

/// Parses a whole `Name` element into its attributes, one per RDN.
///
/// Returns `None` for multi-valued RDNs, which this crate never produces and
/// cannot re-encode faithfully.
pub(crate) fn name_attributes(name: &[u8]) -> Option<Vec<NameAttribute<'_>>> {
    let (seq, _) = expect(name, TAG_SEQUENCE)?;
    let mut out = Vec::new();
    for rdn in elements(seq.content) {
        let rdn = rdn?;
        if rdn.tag != TAG_SET {
            return None;
        }
        let (atv, rest) = expect(rdn.content, TAG_SEQUENCE)?;
        if !rest.is_empty() {
            return None;
        }
        let (oid, rest) = expect(atv.content, TAG_OID)?;
        let (value, _) = read_tlv(rest)?;
        out.push(NameAttribute {
            oid: oid.content,
            value_tag: value.tag,
            value: value.content,
        });
    }
    Some(out)
}

/// The last commonName of a `Name` as a string (UTF8String, PrintableString
/// or IA5String).
pub(crate) fn common_name(name: &[u8]) -> Option<&str> {
    name_attributes(name)?
        .into_iter()
        .rev()
        .find(|a| a.oid == OID_COMMON_NAME)
        .filter(|a| {
            matches!(
                a.value_tag,
                TAG_UTF8_STRING | TAG_PRINTABLE_STRING | TAG_IA5_STRING
            )
        })
        .and_then(|a| std::str::from_utf8(a.value).ok())
}

/// Decodes OID content bytes into arcs.
pub(crate) fn oid_arcs(content: &[u8]) -> Option<Vec<u64>> {
    let mut arcs = Vec::new();
    let mut acc: u64 = 0;
    let mut in_progress = false;
    for &b in content {
        if !in_progress && b == 0x80 {
            return None; // non-minimal sub-identifier
        }
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        in_progress = b & 0x80 != 0;
        if !in_progress {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    (!in_progress && !arcs.is_empty()).then_some(arcs)
}

/// The issuer `Name` element of a DER CRL (`CertificateList`).
pub(crate) fn crl_issuer(der: &[u8]) -> Option<&[u8]> {
    let (list, _) = expect(der, TAG_SEQUENCE)?;
    let (tbs, _) = expect(list.content, TAG_SEQUENCE)?;
    let mut rest = tbs.content;
    // version INTEGER OPTIONAL
    if rest.first() == Some(&TAG_INTEGER) {
        rest = read_tlv(rest)?.1;
    }
    let (_sig_alg, rest) = expect(rest, TAG_SEQUENCE)?;
    let (issuer, _) = expect(rest, TAG_SEQUENCE)?;
    Some(issuer.raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_bounds_checked() {
        assert!(read_tlv(&[]).is_none());
        assert!(read_tlv(&[0x30]).is_none());
        assert!(read_tlv(&[0x30, 0x05, 0x00]).is_none());
        assert!(read_tlv(&[0x30, 0x80, 0x00, 0x00]).is_none()); // indefinite
        assert!(read_tlv(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]).is_none()); // non-minimal
        assert!(read_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(read_tlv(&[0x1f, 0x01, 0x00]).is_none());
        let (tlv, rest) = read_tlv(&[0x04, 0x02, 0xaa, 0xbb, 0xcc]).unwrap();
        assert_eq!(tlv.content, &[0xaa, 0xbb]);
        assert_eq!(tlv.raw, &[0x04, 0x02, 0xaa, 0xbb]);
        assert_eq!(rest, &[0xcc]);
    }

    #[test]
    fn oids_decode() {
        assert_eq!(oid_arcs(OID_COMMON_NAME).unwrap(), vec![2, 5, 4, 3]);
        // 1.2.840.113549
        assert_eq!(
            oid_arcs(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).unwrap(),
            vec![1, 2, 840, 113_549]
        );
        assert!(oid_arcs(&[0x2a, 0x86]).is_none());
        assert!(oid_arcs(&[]).is_none());
    }

    #[test]
    fn serial_hex_drops_sign_octet() {
        assert_eq!(serial_hex_from_integer(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex_from_integer(&[0x7f]), "7f");
        assert_eq!(serial_hex_from_integer(&[0x00]), "00");
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed.to_le_bytes()[0]
                })
                .collect();
            let _ = CertFields::parse(&bytes);
            let _ = crl_issuer(&bytes);
            let _ = common_name(&bytes);
            let _ = oid_arcs(&bytes);
        }
    }
}
