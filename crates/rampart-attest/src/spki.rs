//! SubjectPublicKeyInfo (DER, RFC 5280) for the two key types a TPM attestation key can be:
//! ECDSA P-256 (RFC 5480) and RSA (RFC 8017), the form `tpm2_createak -f pem` writes and
//! `tpm2_checkquote -u` reads.

/// The DER of an ECDSA P-256 SPKI up to its point: SEQUENCE { SEQUENCE { ecPublicKey,
/// prime256v1 }, BIT STRING (65 bytes follow: 0x04 || x || y) }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// AlgorithmIdentifier { rsaEncryption, NULL }.
const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// Largest SPKI accepted (RSA-4096 is 550 bytes).
pub const MAX_SPKI_SIZE: usize = 1024;

/// A public key read from an SPKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpkiKey {
    /// The uncompressed point, 0x04 || x || y.
    EcdsaP256 { point: Vec<u8> },
    /// Big-endian modulus and exponent, without leading zeros.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
}

impl SpkiKey {
    /// The DER SubjectPublicKeyInfo.
    pub fn to_der(&self) -> Vec<u8> {
        match self {
            SpkiKey::EcdsaP256 { point } => p256_to_der(point),
            SpkiKey::Rsa { modulus, exponent } => rsa_to_der(modulus, exponent),
        }
    }
}

/// The SPKI is not a P-256 or RSA public key Rampart reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "public key (SubjectPublicKeyInfo): {0}; expected an ECDSA P-256 or RSA public key as `tpm2_createak -f pem` writes it"
)]
pub struct SpkiError(String);

/// The DER SPKI of a P-256 point (0x04 || x || y).
pub fn p256_to_der(point: &[u8]) -> Vec<u8> {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    der
}

/// The DER SPKI of an RSA key.
pub fn rsa_to_der(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut key = der_integer(modulus);
    key.extend(der_integer(exponent));
    let mut bits = vec![0u8];
    bits.extend(tlv(0x30, &key));
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}

/// Reads an SPKI.
pub fn from_der(der: &[u8]) -> Result<SpkiKey, SpkiError> {
    if der.len() > MAX_SPKI_SIZE {
        return Err(SpkiError(format!("{} bytes, larger than any", der.len())));
    }
    if let Some(point) = der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        if point.len() != 65 || point[0] != 0x04 {
            return Err(SpkiError(
                "the P-256 point is not 65 bytes in uncompressed form".into(),
            ));
        }
        return Ok(SpkiKey::EcdsaP256 {
            point: point.to_vec(),
        });
    }
    let outer = expect(der, 0x30, "SubjectPublicKeyInfo")?;
    let rest = outer
        .strip_prefix(&RSA_ALGORITHM[..])
        .ok_or_else(|| SpkiError("neither ECDSA P-256 nor rsaEncryption".into()))?;
    let bits = expect(rest, 0x03, "subjectPublicKey")?;
    let key = bits
        .strip_prefix(&[0u8][..])
        .ok_or_else(|| SpkiError("the key's BIT STRING has unused bits".into()))?;
    let seq = expect(key, 0x30, "RSAPublicKey")?;
    let (modulus, after) = read(seq, 0x02, "modulus")?;
    let (exponent, after) = read(after, 0x02, "publicExponent")?;
    if !after.is_empty() {
        return Err(SpkiError("RSAPublicKey has trailing bytes".into()));
    }
    Ok(SpkiKey::Rsa {
        modulus: strip_zeros(modulus).to_vec(),
        exponent: strip_zeros(exponent).to_vec(),
    })
}

fn strip_zeros(mut v: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = v {
        v = rest;
    }
    v
}

fn der_integer(value: &[u8]) -> Vec<u8> {
    let value = strip_zeros(value);
    let mut content = Vec::with_capacity(value.len() + 1);
    if value.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(value);
    tlv(0x02, &content)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// One TLV with tag `tag` that must fill `der` exactly.
fn expect<'a>(der: &'a [u8], tag: u8, what: &str) -> Result<&'a [u8], SpkiError> {
    let (content, rest) = read(der, tag, what)?;
    if !rest.is_empty() {
        return Err(SpkiError(format!("{what} has trailing bytes")));
    }
    Ok(content)
}

/// One TLV with tag `tag`: its content and what follows it.
fn read<'a>(der: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), SpkiError> {
    let bad = || SpkiError(format!("{what} is not valid DER"));
    let [t, first, rest @ ..] = der else {
        return Err(bad());
    };
    if *t != tag {
        return Err(bad());
    }
    let (len, rest) = match *first {
        l if l < 0x80 => (usize::from(l), rest),
        0x81 => match rest {
            [l, r @ ..] => (usize::from(*l), r),
            _ => return Err(bad()),
        },
        0x82 => match rest {
            [a, b, r @ ..] => (usize::from(*a) << 8 | usize::from(*b), r),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    if len > rest.len() {
        return Err(bad());
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_spki_round_trips() {
        let modulus = [0xc5u8; 256];
        let der = rsa_to_der(&modulus, &[0x01, 0x00, 0x01]);
        assert_eq!(
            from_der(&der).unwrap(),
            SpkiKey::Rsa {
                modulus: modulus.to_vec(),
                exponent: vec![1, 0, 1]
            }
        );
    }

    #[test]
    fn other_keys_and_garbage_are_refused() {
        assert!(from_der(&[]).is_err());
        assert!(from_der(&[0x30, 0x82, 0xff]).is_err());
        let mut compressed = p256_to_der(&[0x02; 65]);
        assert!(from_der(&compressed).is_err());
        compressed.push(0);
        assert!(from_der(&compressed).is_err());
        let mut trailing = rsa_to_der(&[0xc5; 256], &[3]);
        trailing.push(0);
        assert!(from_der(&trailing).is_err());
    }
}
