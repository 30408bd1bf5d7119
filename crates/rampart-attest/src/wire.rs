//! TPM 2.0 structures as the TPM marshals them (TPM 2.0 Library, Part 2): bounded parsing that
//! refuses truncation, unknown selectors and trailing bytes, and encoding back to the same bytes.
//!
//! Every parser here keeps every field it reads, so `parse(bytes)?.to_bytes() == bytes`: a name
//! or a signature computed over the encoding is computed over what the TPM produced. Sizes are
//! checked against the TPM's own maxima before anything is copied.

use std::fmt;

use crate::spki::SpkiKey;

/// `TPM_GENERATED_VALUE`: the first four bytes of every structure the TPM signs about itself.
/// A restricted signing key refuses to sign outside data that starts with it.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`: the attestation type of a TPM2_Quote.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ECC_NIST_P256`.
pub const TPM_ECC_NIST_P256: u16 = 0x0003;

/// TPM algorithm identifiers (`TPM_ALG_ID`) this crate names.
pub mod alg {
    pub const RSA: u16 = 0x0001;
    pub const SHA1: u16 = 0x0004;
    pub const AES: u16 = 0x0006;
    pub const MGF1: u16 = 0x0007;
    pub const SHA256: u16 = 0x000B;
    pub const SHA384: u16 = 0x000C;
    pub const SHA512: u16 = 0x000D;
    pub const NULL: u16 = 0x0010;
    pub const SM3_256: u16 = 0x0012;
    pub const SM4: u16 = 0x0013;
    pub const RSASSA: u16 = 0x0014;
    pub const RSAES: u16 = 0x0015;
    pub const RSAPSS: u16 = 0x0016;
    pub const OAEP: u16 = 0x0017;
    pub const ECDSA: u16 = 0x0018;
    pub const ECDH: u16 = 0x0019;
    pub const ECDAA: u16 = 0x001A;
    pub const SM2: u16 = 0x001B;
    pub const ECSCHNORR: u16 = 0x001C;
    pub const KDF1_SP800_56A: u16 = 0x0020;
    pub const KDF2: u16 = 0x0021;
    pub const KDF1_SP800_108: u16 = 0x0022;
    pub const ECC: u16 = 0x0023;
    pub const CAMELLIA: u16 = 0x0026;
    pub const CFB: u16 = 0x0043;
}

/// `TPMA_OBJECT` bits this crate checks.
pub mod object_attributes {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN_ENCRYPT: u32 = 1 << 18;
}

/// Largest TPMS_ATTEST accepted (the TPM's own is well under this: names and nonces are at
/// most 66 bytes, a selection at most 100).
pub const MAX_ATTEST_SIZE: usize = 1024;
/// Largest TPMT_SIGNATURE accepted (an RSA-4096 signature and its header).
pub const MAX_SIGNATURE_SIZE: usize = 4 + 2 + 512;
/// Largest TPMT_PUBLIC accepted (an RSA-4096 key with a SHA-512 policy).
pub const MAX_PUBLIC_SIZE: usize = 1024;
/// Most entries in a TPML_PCR_SELECTION (`TPM2_NUM_PCR_BANKS`).
pub const MAX_PCR_BANKS: usize = 16;
/// Most bytes in a PCR bitmap (`TPM2_PCR_SELECT_MAX`: 32 PCRs).
pub const MAX_PCR_SELECT: usize = 4;
/// Largest TPM2B_DIGEST, TPM2B_DATA and TPM2B_NAME content (`sizeof(TPMT_HA)`).
pub const MAX_DIGEST_SIZE: usize = 66;
/// Largest TPM2B_ECC_PARAMETER content (`MAX_ECC_KEY_BYTES` of any TPM, with room).
const MAX_ECC_PARAMETER: usize = 128;
/// Largest RSA modulus or signature (RSA-4096).
const MAX_RSA_BYTES: usize = 512;

/// A TPM structure could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(
        "{structure} is truncated: {field} needs {needed} more bytes at offset {offset}, only {available} left"
    )]
    Truncated {
        structure: &'static str,
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("{structure} has {count} trailing bytes after its end at offset {offset}")]
    TrailingBytes {
        structure: &'static str,
        offset: usize,
        count: usize,
    },
    #[error("{structure} is {size} bytes, more than the {max} any TPM produces")]
    TooLarge {
        structure: &'static str,
        size: usize,
        max: usize,
    },
    #[error("{structure}: {field} is {value:#06x}, which Rampart does not support ({supported})")]
    Unsupported {
        structure: &'static str,
        field: &'static str,
        value: u32,
        supported: &'static str,
    },
    #[error("{structure}: {field} is invalid: {reason}")]
    Invalid {
        structure: &'static str,
        field: &'static str,
        reason: String,
    },
}

/// A bounded big-endian reader over one TPM structure: every read names the field it reads, so
/// a truncation says where; [`Reader::finish`] refuses trailing bytes.
pub struct Reader<'a> {
    structure: &'static str,
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader for `structure` (named in errors) over `bytes`, refused when longer than `max`.
    pub fn new(structure: &'static str, bytes: &'a [u8], max: usize) -> Result<Self, WireError> {
        if bytes.len() > max {
            return Err(WireError::TooLarge {
                structure,
                size: bytes.len(),
                max,
            });
        }
        Ok(Reader {
            structure,
            bytes,
            offset: 0,
        })
    }

    /// The structure this reader reads (for errors raised by callers).
    pub fn structure(&self) -> &'static str {
        self.structure
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    /// The next `n` bytes.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated {
                structure: self.structure,
                field,
                offset: self.offset,
                needed: n,
                available: self.remaining(),
            });
        }
        let taken = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A TPM2B: a big-endian u16 size, then that many bytes, at most `max`.
    pub fn sized(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let size = usize::from(self.u16(field)?);
        if size > max {
            return Err(self.invalid(field, format!("size {size} exceeds the maximum {max}")));
        }
        self.take(field, size)
    }

    /// An error about `field` of this structure.
    pub fn invalid(&self, field: &'static str, reason: String) -> WireError {
        WireError::Invalid {
            structure: self.structure,
            field,
            reason,
        }
    }

    fn unsupported(&self, field: &'static str, value: u16, supported: &'static str) -> WireError {
        WireError::Unsupported {
            structure: self.structure,
            field,
            value: u32::from(value),
            supported,
        }
    }

    /// Ends the structure: trailing bytes are an error.
    pub fn finish(self) -> Result<(), WireError> {
        if self.remaining() != 0 {
            return Err(WireError::TrailingBytes {
                structure: self.structure,
                offset: self.offset,
                count: self.remaining(),
            });
        }
        Ok(())
    }
}

/// A big-endian writer for TPM structures.
#[derive(Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// A TPM2B. Callers hold contents parsed with a bound far below `u16::MAX`; a longer one
    /// is a programming error and is cut to its size field rather than written inconsistently.
    pub fn sized(&mut self, v: &[u8]) -> &mut Self {
        let size = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(size);
        self.bytes(&v[..usize::from(size)])
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A hash algorithm the TPM names: its identifier and digest size, and a `ring` digest for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub const ALL: [HashAlg; 4] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    /// The algorithm for a `TPM_ALG_ID`, if it is one of these hashes.
    pub fn from_id(id: u16) -> Option<HashAlg> {
        HashAlg::ALL.into_iter().find(|h| h.id() == id)
    }

    /// Its name as tpm2-tools spells it (`sha256`).
    pub fn from_name(name: &str) -> Option<HashAlg> {
        HashAlg::ALL.into_iter().find(|h| h.name() == name)
    }

    pub fn id(self) -> u16 {
        match self {
            HashAlg::Sha1 => alg::SHA1,
            HashAlg::Sha256 => alg::SHA256,
            HashAlg::Sha384 => alg::SHA384,
            HashAlg::Sha512 => alg::SHA512,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    pub fn digest_size(self) -> usize {
        self.ring().output_len()
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            HashAlg::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &ring::digest::SHA256,
            HashAlg::Sha384 => &ring::digest::SHA384,
            HashAlg::Sha512 => &ring::digest::SHA512,
        }
    }

    /// The digest of the concatenation of `parts`.
    pub fn digest<'p>(self, parts: impl IntoIterator<Item = &'p [u8]>) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(self.ring());
        for p in parts {
            ctx.update(p);
        }
        ctx.finish().as_ref().to_vec()
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// TPMS_PCR_SELECTION: one bank's bitmap, as marshalled (bit `i % 8` of byte `i / 8` selects
/// PCR `i`). The semantic form is [`crate::pcr::PcrSelection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrBankSelect {
    /// The bank's `TPMI_ALG_HASH`, kept as read (an unknown one is refused on parsing).
    pub hash: u16,
    /// `pcrSelect[sizeofSelect]`, 1 to 4 bytes.
    pub bitmap: Vec<u8>,
}

/// TPML_PCR_SELECTION, as marshalled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrSelectionList(pub Vec<PcrBankSelect>);

impl PcrSelectionList {
    pub fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let count = r.u32("pcrSelections.count")?;
        if count as usize > MAX_PCR_BANKS {
            return Err(r.invalid(
                "pcrSelections.count",
                format!("{count} banks, more than the {MAX_PCR_BANKS} a TPM has"),
            ));
        }
        let mut banks = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let hash = r.u16("pcrSelections.hash")?;
            if HashAlg::from_id(hash).is_none() {
                return Err(r.unsupported(
                    "pcrSelections.hash",
                    hash,
                    "sha1, sha256, sha384, sha512",
                ));
            }
            let size = usize::from(r.u8("pcrSelections.sizeofSelect")?);
            if size == 0 || size > MAX_PCR_SELECT {
                return Err(r.invalid(
                    "pcrSelections.sizeofSelect",
                    format!("{size} bytes; a PCR bitmap is 1 to {MAX_PCR_SELECT} bytes"),
                ));
            }
            let bitmap = r.take("pcrSelections.pcrSelect", size)?.to_vec();
            banks.push(PcrBankSelect { hash, bitmap });
        }
        Ok(PcrSelectionList(banks))
    }

    pub fn write(&self, w: &mut Writer) {
        w.u32(self.0.len() as u32);
        for bank in &self.0 {
            w.u16(bank.hash)
                .u8(bank.bitmap.len() as u8)
                .bytes(&bank.bitmap);
        }
    }
}

/// TPMS_CLOCK_INFO: the TPM's clock and its reset and restart counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since it was made (or cleared); never goes back
    /// while `safe`.
    pub clock: u64,
    /// TPM Resets (reboots) since the TPM was cleared.
    pub reset_count: u32,
    /// TPM Restarts and Resumes (e.g. from suspend) since the last reset.
    pub restart_count: u32,
    /// No value of `clock` greater than this one has been reported before.
    pub safe: bool,
}

impl ClockInfo {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let clock = r.u64("clockInfo.clock")?;
        let reset_count = r.u32("clockInfo.resetCount")?;
        let restart_count = r.u32("clockInfo.restartCount")?;
        let safe = match r.u8("clockInfo.safe")? {
            0 => false,
            1 => true,
            other => {
                return Err(r.invalid("clockInfo.safe", format!("{other}; TPMI_YES_NO is 0 or 1")));
            }
        };
        Ok(ClockInfo {
            clock,
            reset_count,
            restart_count,
            safe,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.u64(self.clock)
            .u32(self.reset_count)
            .u32(self.restart_count)
            .u8(u8::from(self.safe));
    }
}

/// TPMS_QUOTE_INFO: the PCRs quoted and the digest of their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    pub pcr_select: PcrSelectionList,
    pub pcr_digest: Vec<u8>,
}

/// TPMU_ATTEST: a quote's body, or the body of another attestation type kept as bytes (a
/// verifier of quotes refuses it by its type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested {
    Quote(QuoteInfo),
    Other(Vec<u8>),
}

/// TPMS_ATTEST: what the TPM signs in a quote (the content of `tpm2_quote -m`).
///
/// `magic` is kept as read, not checked here: whether a structure claims to come from the
/// TPM is the verifier's question ([`crate::quote`]), and a forged one must still parse so
/// that tests and tools can show why it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    pub magic: u32,
    /// `TPMI_ST_ATTEST`; [`TPM_ST_ATTEST_QUOTE`] for a quote.
    pub attest_type: u16,
    /// The signing key's qualified name.
    pub qualified_signer: Vec<u8>,
    /// The caller's qualifying data: the verifier's nonce.
    pub extra_data: Vec<u8>,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    pub attested: Attested,
}

impl Attest {
    /// Parses a whole TPMS_ATTEST; trailing bytes are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("TPMS_ATTEST", bytes, MAX_ATTEST_SIZE)?;
        let magic = r.u32("magic")?;
        let attest_type = r.u16("type")?;
        let qualified_signer = r.sized("qualifiedSigner", MAX_DIGEST_SIZE)?.to_vec();
        let extra_data = r.sized("extraData", MAX_DIGEST_SIZE)?.to_vec();
        let clock_info = ClockInfo::read(&mut r)?;
        let firmware_version = r.u64("firmwareVersion")?;
        let attested = if attest_type == TPM_ST_ATTEST_QUOTE {
            let pcr_select = PcrSelectionList::read(&mut r)?;
            let pcr_digest = r.sized("quote.pcrDigest", MAX_DIGEST_SIZE)?.to_vec();
            Attested::Quote(QuoteInfo {
                pcr_select,
                pcr_digest,
            })
        } else {
            let rest = r.remaining();
            Attested::Other(r.take("attested", rest)?.to_vec())
        };
        r.finish()?;
        Ok(Attest {
            magic,
            attest_type,
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            attested,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.magic)
            .u16(self.attest_type)
            .sized(&self.qualified_signer)
            .sized(&self.extra_data);
        self.clock_info.write(&mut w);
        w.u64(self.firmware_version);
        match &self.attested {
            Attested::Quote(q) => {
                q.pcr_select.write(&mut w);
                w.sized(&q.pcr_digest);
            }
            Attested::Other(body) => {
                w.bytes(body);
            }
        }
        w.into_bytes()
    }
}

/// TPMT_SIGNATURE (the content of `tpm2_quote -s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// `TPM_ALG_ECDSA`: `r` and `s` as big-endian integers.
    Ecdsa { hash: u16, r: Vec<u8>, s: Vec<u8> },
    /// `TPM_ALG_RSASSA` (PKCS #1 v1.5).
    RsaSsa { hash: u16, sig: Vec<u8> },
    /// `TPM_ALG_RSAPSS`.
    RsaPss { hash: u16, sig: Vec<u8> },
}

impl Signature {
    /// Parses a whole TPMT_SIGNATURE; trailing bytes are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("TPMT_SIGNATURE", bytes, MAX_SIGNATURE_SIZE)?;
        let sig_alg = r.u16("sigAlg")?;
        let hash = r.u16("hash")?;
        if HashAlg::from_id(hash).is_none() {
            return Err(r.unsupported("hash", hash, "sha1, sha256, sha384, sha512"));
        }
        let signature = match sig_alg {
            alg::ECDSA => Signature::Ecdsa {
                hash,
                r: r.sized("signatureR", MAX_ECC_PARAMETER)?.to_vec(),
                s: r.sized("signatureS", MAX_ECC_PARAMETER)?.to_vec(),
            },
            alg::RSASSA => Signature::RsaSsa {
                hash,
                sig: r.sized("sig", MAX_RSA_BYTES)?.to_vec(),
            },
            alg::RSAPSS => Signature::RsaPss {
                hash,
                sig: r.sized("sig", MAX_RSA_BYTES)?.to_vec(),
            },
            other => return Err(r.unsupported("sigAlg", other, "ecdsa, rsassa, rsapss")),
        };
        r.finish()?;
        Ok(signature)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Signature::Ecdsa { hash, r, s } => {
                w.u16(alg::ECDSA).u16(*hash).sized(r).sized(s);
            }
            Signature::RsaSsa { hash, sig } => {
                w.u16(alg::RSASSA).u16(*hash).sized(sig);
            }
            Signature::RsaPss { hash, sig } => {
                w.u16(alg::RSAPSS).u16(*hash).sized(sig);
            }
        }
        w.into_bytes()
    }

    /// The hash the signature was made with.
    pub fn hash(&self) -> u16 {
        match self {
            Signature::Ecdsa { hash, .. }
            | Signature::RsaSsa { hash, .. }
            | Signature::RsaPss { hash, .. } => *hash,
        }
    }
}

/// A scheme selector with its hash detail (TPMT_RSA_SCHEME, TPMT_ECC_SCHEME, TPMT_KDF_SCHEME):
/// `hash` is `None` exactly when the scheme carries no detail (NULL, RSAES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    pub scheme: u16,
    pub hash: Option<u16>,
}

impl Scheme {
    pub const NULL: Scheme = Scheme {
        scheme: alg::NULL,
        hash: None,
    };

    fn read(
        r: &mut Reader<'_>,
        field: &'static str,
        with_hash: &[u16],
        without_hash: &[u16],
        supported: &'static str,
    ) -> Result<Self, WireError> {
        let scheme = r.u16(field)?;
        if without_hash.contains(&scheme) {
            return Ok(Scheme { scheme, hash: None });
        }
        if !with_hash.contains(&scheme) {
            return Err(r.unsupported(field, scheme, supported));
        }
        let hash = r.u16(field)?;
        if HashAlg::from_id(hash).is_none() && hash != alg::SM3_256 {
            return Err(r.unsupported(field, hash, "sha1, sha256, sha384, sha512, sm3_256"));
        }
        Ok(Scheme {
            scheme,
            hash: Some(hash),
        })
    }

    fn write(&self, w: &mut Writer) {
        w.u16(self.scheme);
        if let Some(hash) = self.hash {
            w.u16(hash);
        }
    }
}

/// TPMT_SYM_DEF_OBJECT: a storage key's symmetric algorithm; `key_bits_mode` is `None` for
/// NULL (signing keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    pub algorithm: u16,
    pub key_bits_mode: Option<(u16, u16)>,
}

impl SymDef {
    pub const NULL: SymDef = SymDef {
        algorithm: alg::NULL,
        key_bits_mode: None,
    };

    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let algorithm = r.u16("symmetric.algorithm")?;
        match algorithm {
            alg::NULL => Ok(SymDef::NULL),
            alg::AES | alg::SM4 | alg::CAMELLIA => {
                let bits = r.u16("symmetric.keyBits")?;
                let mode = r.u16("symmetric.mode")?;
                Ok(SymDef {
                    algorithm,
                    key_bits_mode: Some((bits, mode)),
                })
            }
            other => Err(r.unsupported("symmetric.algorithm", other, "null, aes, sm4, camellia")),
        }
    }

    fn write(&self, w: &mut Writer) {
        w.u16(self.algorithm);
        if let Some((bits, mode)) = self.key_bits_mode {
            w.u16(bits).u16(mode);
        }
    }
}

/// The type-specific part of a TPMT_PUBLIC: parameters and unique (the public key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// `TPM_ALG_ECC` on NIST P-256: `x` and `y` are 32 bytes each.
    Ecc {
        symmetric: SymDef,
        scheme: Scheme,
        curve: u16,
        kdf: Scheme,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// `TPM_ALG_RSA`, 2048 to 4096 bits; `exponent` 0 means 65537.
    Rsa {
        symmetric: SymDef,
        scheme: Scheme,
        key_bits: u16,
        exponent: u32,
        modulus: Vec<u8>,
    },
}

/// TPMT_PUBLIC: a TPM key's public area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    pub name_alg: u16,
    pub object_attributes: u32,
    pub auth_policy: Vec<u8>,
    pub key: PublicKey,
}

const SIGN_SCHEMES_WITH_HASH: [u16; 7] = [
    alg::RSASSA,
    alg::RSAPSS,
    alg::OAEP,
    alg::ECDSA,
    alg::SM2,
    alg::ECSCHNORR,
    alg::ECDH,
];

impl Public {
    /// Parses a whole TPMT_PUBLIC; trailing bytes are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("TPMT_PUBLIC", bytes, MAX_PUBLIC_SIZE)?;
        let public = Self::read(&mut r)?;
        r.finish()?;
        Ok(public)
    }

    /// Parses a TPM2B_PUBLIC (`tpm2_createak -u` in its default format): a u16 size, then a
    /// TPMT_PUBLIC of exactly that size.
    pub fn parse_sized(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("TPM2B_PUBLIC", bytes, MAX_PUBLIC_SIZE + 2)?;
        let inner = r.sized("size", MAX_PUBLIC_SIZE)?;
        r.finish()?;
        Self::parse(inner)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let key_type = r.u16("type")?;
        let name_alg = r.u16("nameAlg")?;
        if HashAlg::from_id(name_alg).is_none() {
            return Err(r.unsupported("nameAlg", name_alg, "sha1, sha256, sha384, sha512"));
        }
        let object_attributes = r.u32("objectAttributes")?;
        let auth_policy = r.sized("authPolicy", MAX_DIGEST_SIZE)?.to_vec();
        let key = match key_type {
            alg::ECC => {
                let symmetric = SymDef::read(r)?;
                let scheme = Scheme::read(
                    r,
                    "scheme",
                    &SIGN_SCHEMES_WITH_HASH,
                    &[alg::NULL],
                    "null, ecdsa, ecdh, sm2, ecschnorr",
                )?;
                let curve = r.u16("curveID")?;
                if curve != TPM_ECC_NIST_P256 {
                    return Err(r.unsupported("curveID", curve, "NIST P-256"));
                }
                let kdf = Scheme::read(
                    r,
                    "kdf",
                    &[
                        alg::MGF1,
                        alg::KDF1_SP800_56A,
                        alg::KDF2,
                        alg::KDF1_SP800_108,
                    ],
                    &[alg::NULL],
                    "null, mgf1, kdf1_sp800_56a, kdf2, kdf1_sp800_108",
                )?;
                let x = r.sized("unique.x", MAX_ECC_PARAMETER)?.to_vec();
                let y = r.sized("unique.y", MAX_ECC_PARAMETER)?.to_vec();
                if x.len() != 32 || y.len() != 32 {
                    return Err(r.invalid(
                        "unique",
                        format!(
                            "a P-256 point has 32-byte coordinates, this one {} and {}",
                            x.len(),
                            y.len()
                        ),
                    ));
                }
                PublicKey::Ecc {
                    symmetric,
                    scheme,
                    curve,
                    kdf,
                    x,
                    y,
                }
            }
            alg::RSA => {
                let symmetric = SymDef::read(r)?;
                let scheme = Scheme::read(
                    r,
                    "scheme",
                    &SIGN_SCHEMES_WITH_HASH,
                    &[alg::NULL, alg::RSAES],
                    "null, rsassa, rsapss, rsaes, oaep",
                )?;
                let key_bits = r.u16("keyBits")?;
                if !(2048..=4096).contains(&key_bits) || key_bits % 8 != 0 {
                    return Err(r.invalid(
                        "keyBits",
                        format!("{key_bits}; Rampart accepts RSA keys of 2048 to 4096 bits"),
                    ));
                }
                let exponent = r.u32("exponent")?;
                let modulus = r.sized("unique", MAX_RSA_BYTES)?.to_vec();
                if modulus.len() != usize::from(key_bits / 8) {
                    return Err(r.invalid(
                        "unique",
                        format!(
                            "a {key_bits}-bit modulus is {} bytes, this one {}",
                            key_bits / 8,
                            modulus.len()
                        ),
                    ));
                }
                PublicKey::Rsa {
                    symmetric,
                    scheme,
                    key_bits,
                    exponent,
                    modulus,
                }
            }
            other => return Err(r.unsupported("type", other, "ecc, rsa")),
        };
        Ok(Public {
            name_alg,
            object_attributes,
            auth_policy,
            key,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let key_type = match self.key {
            PublicKey::Ecc { .. } => alg::ECC,
            PublicKey::Rsa { .. } => alg::RSA,
        };
        w.u16(key_type)
            .u16(self.name_alg)
            .u32(self.object_attributes)
            .sized(&self.auth_policy);
        match &self.key {
            PublicKey::Ecc {
                symmetric,
                scheme,
                curve,
                kdf,
                x,
                y,
            } => {
                symmetric.write(&mut w);
                scheme.write(&mut w);
                w.u16(*curve);
                kdf.write(&mut w);
                w.sized(x).sized(y);
            }
            PublicKey::Rsa {
                symmetric,
                scheme,
                key_bits,
                exponent,
                modulus,
            } => {
                symmetric.write(&mut w);
                scheme.write(&mut w);
                w.u16(*key_bits).u32(*exponent).sized(modulus);
            }
        }
        w.into_bytes()
    }

    /// The TPM2B_PUBLIC form (what `tpm2_createak -u` writes by default).
    pub fn to_sized_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.sized(&self.to_bytes());
        w.into_bytes()
    }

    /// The public key, as a SubjectPublicKeyInfo holds it.
    pub fn spki_key(&self) -> SpkiKey {
        match &self.key {
            PublicKey::Ecc { x, y, .. } => {
                let mut point = vec![0x04];
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                SpkiKey::EcdsaP256 { point }
            }
            PublicKey::Rsa {
                exponent, modulus, ..
            } => {
                // TPM convention: an exponent of 0 is the default, 65537.
                let e = if *exponent == 0 { 65537 } else { *exponent };
                let e = e.to_be_bytes();
                let first = e.iter().position(|b| *b != 0).unwrap_or(3);
                SpkiKey::Rsa {
                    modulus: modulus.clone(),
                    exponent: e[first..].to_vec(),
                }
            }
        }
    }

    /// The public key as a DER SubjectPublicKeyInfo (what `tpm2_readpublic -f der` writes).
    pub fn to_spki_der(&self) -> Vec<u8> {
        self.spki_key().to_der()
    }

    /// The key's name: nameAlg (big-endian) || H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Vec<u8> {
        let hash = HashAlg::from_id(self.name_alg)
            .expect("nameAlg is checked to be a known hash when parsed or built");
        let mut name = self.name_alg.to_be_bytes().to_vec();
        name.extend(hash.digest([self.to_bytes().as_slice()]));
        name
    }

    /// Whether the key can only sign what the TPM itself produced (restricted, signing, not
    /// decrypting, created in and bound to this TPM): what an attestation key must be for its
    /// quotes to mean anything. `Err` says which attribute is wrong.
    pub fn check_attestation_key(&self) -> Result<(), WireError> {
        use object_attributes as a;
        let attrs = self.object_attributes;
        let required = [
            (a::RESTRICTED, "restricted"),
            (a::SIGN_ENCRYPT, "sign"),
            (a::FIXED_TPM, "fixedTPM"),
            (a::FIXED_PARENT, "fixedParent"),
            (a::SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
        ];
        for (bit, name) in required {
            if attrs & bit == 0 {
                return Err(WireError::Invalid {
                    structure: "TPMT_PUBLIC",
                    field: "objectAttributes",
                    reason: format!(
                        "{attrs:#010x} lacks {name}: an attestation key must be a restricted signing key made in the TPM"
                    ),
                });
            }
        }
        if attrs & a::DECRYPT != 0 {
            return Err(WireError::Invalid {
                structure: "TPMT_PUBLIC",
                field: "objectAttributes",
                reason: format!(
                    "{attrs:#010x} has decrypt: an attestation key must be a signing key only"
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testdata::*;

    #[test]
    fn swtpm_quote_parses_and_encodes_to_the_same_bytes() {
        let bytes = SWTPM_QUOTE.to_vec();
        let attest = Attest::parse(&bytes).unwrap();
        assert_eq!(attest.magic, TPM_GENERATED_VALUE);
        assert_eq!(attest.attest_type, TPM_ST_ATTEST_QUOTE);
        assert_eq!(attest.extra_data, [0x0b, 0xad, 0xc0, 0xde]);
        assert_eq!(attest.clock_info.reset_count, 2);
        assert!(attest.clock_info.safe);
        let Attested::Quote(q) = &attest.attested else {
            panic!("not a quote")
        };
        assert_eq!(q.pcr_select.0[0].bitmap, [0x03, 0x00, 0x01]);
        assert_eq!(attest.to_bytes(), bytes);
    }

    #[test]
    fn swtpm_signature_and_ak_round_trip_and_the_name_matches_tpm2_tools() {
        let sig = SWTPM_SIGNATURE;
        assert_eq!(Signature::parse(sig).unwrap().to_bytes(), sig);
        let ak = SWTPM_AK;
        let public = Public::parse_sized(ak).unwrap();
        assert_eq!(public.to_sized_bytes(), ak);
        assert_eq!(public.name(), SWTPM_AK_NAME);
        public.check_attestation_key().unwrap();
    }

    #[test]
    fn the_swtpm_rsa_endorsement_key_parses_and_round_trips() {
        let ek = Public::parse_sized(SWTPM_EK).unwrap();
        assert_eq!(ek.to_sized_bytes(), SWTPM_EK);
        let PublicKey::Rsa {
            symmetric,
            key_bits,
            modulus,
            ..
        } = &ek.key
        else {
            panic!("not RSA: {ek:?}")
        };
        assert_eq!(*key_bits, 2048);
        assert_eq!(modulus.len(), 256);
        assert_eq!(symmetric.key_bits_mode, Some((128, alg::CFB)));
        // An EK decrypts: it is no attestation key.
        assert!(ek.check_attestation_key().is_err());
    }

    #[test]
    fn truncated_structures_are_refused_at_every_length() {
        for (bytes, parse) in [
            (
                SWTPM_QUOTE,
                (|b| Attest::parse(b).map(drop)) as fn(&[u8]) -> Result<(), WireError>,
            ),
            (SWTPM_SIGNATURE, |b| Signature::parse(b).map(drop)),
            (SWTPM_AK, |b| Public::parse_sized(b).map(drop)),
        ] {
            for len in 0..bytes.len() {
                assert!(
                    parse(&bytes[..len]).is_err(),
                    "{len} of {} bytes parsed",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = SWTPM_QUOTE.to_vec();
        bytes.push(0);
        assert!(matches!(
            Attest::parse(&bytes),
            Err(WireError::TrailingBytes { count: 1, .. })
        ));
        let mut sig = SWTPM_SIGNATURE.to_vec();
        sig.push(0);
        assert!(matches!(
            Signature::parse(&sig),
            Err(WireError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn oversized_fields_are_refused_before_reading() {
        // qualifiedSigner claiming 0xffff bytes.
        let mut bytes = SWTPM_QUOTE.to_vec();
        bytes[6] = 0xff;
        bytes[7] = 0xff;
        let err = Attest::parse(&bytes).unwrap_err();
        assert!(err.to_string().contains("exceeds the maximum"), "{err}");
        assert!(matches!(
            Attest::parse(&vec![0u8; MAX_ATTEST_SIZE + 1]),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_non_boolean_safe_flag_is_refused() {
        let mut bytes = SWTPM_QUOTE.to_vec();
        // magic 4, type 2, signer 2+34, extra 2+4, clock 8, reset 4, restart 4: safe at 64.
        assert_eq!(bytes[64], 1);
        bytes[64] = 2;
        assert!(Attest::parse(&bytes).is_err());
    }

    #[test]
    fn a_decrypting_or_unrestricted_key_is_not_an_attestation_key() {
        let ak = Public::parse_sized(SWTPM_AK).unwrap();
        let mut unrestricted = ak.clone();
        unrestricted.object_attributes &= !object_attributes::RESTRICTED;
        assert!(unrestricted.check_attestation_key().is_err());
        let mut decrypting = ak;
        decrypting.object_attributes |= object_attributes::DECRYPT;
        assert!(decrypting.check_attestation_key().is_err());
    }
}
