//! Structures a real TPM made, for the unit tests: swtpm 0.7.1 driven by tpm2-tools 5.4
//! (`tpm2_createek -G rsa`, `tpm2_createak -G ecc -g sha256 -s ecdsa`, `tpm2_quote`).

/// `tpm2_quote -l sha256:0,1,16 -q 0badc0de -m`: a TPMS_ATTEST.
pub const SWTPM_QUOTE: &[u8] = include_bytes!("../testdata/swtpm-quote.msg");
/// Its `-s`: a TPMT_SIGNATURE.
pub const SWTPM_SIGNATURE: &[u8] = include_bytes!("../testdata/swtpm-quote.sig");
/// Its `-o`: the PCR file (all three PCRs zero).
pub const SWTPM_PCRS: &[u8] = include_bytes!("../testdata/swtpm-quote.pcrs");
/// The nonce of that quote.
pub const SWTPM_NONCE: &[u8] = &[0x0b, 0xad, 0xc0, 0xde];
/// `tpm2_quote -l sha1:0,3,5+sha256:0,1,2,3,4,5,6,7,8,23 -q 00` after extending PCR 3 (swtpm has
/// no SHA-1 bank, so the quoted SHA-1 bitmap is empty): ten PCRs, two TPML_DIGESTs in the file.
pub const SWTPM_QUOTE_10: &[u8] = include_bytes!("../testdata/swtpm-quote-10pcrs.msg");
pub const SWTPM_SIGNATURE_10: &[u8] = include_bytes!("../testdata/swtpm-quote-10pcrs.sig");
pub const SWTPM_PCRS_10: &[u8] = include_bytes!("../testdata/swtpm-quote-10pcrs.pcrs");
/// The attestation key: TPM2B_PUBLIC (`tpm2_readpublic -f tss`) and PEM SPKI (`-f pem`).
pub const SWTPM_AK: &[u8] = include_bytes!("../testdata/swtpm-ak.tpm2b_public");
pub const SWTPM_AK_PEM: &str = include_str!("../testdata/swtpm-ak.pem");
/// The AK's name as `tpm2_createak -n` wrote it.
pub const SWTPM_AK_NAME: &[u8] = &[
    0x00, 0x0b, 0x57, 0x63, 0x87, 0x40, 0xb3, 0x4f, 0xe4, 0xf4, 0xc2, 0xeb, 0xd4, 0x3a, 0x76, 0x4e,
    0x6b, 0xb2, 0x37, 0xf0, 0xe0, 0xc1, 0x43, 0x36, 0xd0, 0x01, 0xf8, 0xe5, 0x8e, 0xb3, 0xd9, 0x31,
    0x48, 0x29,
];
/// The RSA-2048 endorsement key (TPM2B_PUBLIC, `tpm2_createek -G rsa -u`).
pub const SWTPM_EK: &[u8] = include_bytes!("../testdata/swtpm-ek.tpm2b_public");
/// An RSA-2048 RSASSA attestation key (`tpm2_createak -G rsa -s rsassa`) and its quote over
/// the same PCRs with the same nonce as [`SWTPM_QUOTE`] (so [`SWTPM_PCRS`] holds its values).
pub const SWTPM_RSA_AK: &[u8] = include_bytes!("../testdata/swtpm-ak-rsassa.tpm2b_public");
pub const SWTPM_RSA_QUOTE: &[u8] = include_bytes!("../testdata/swtpm-quote-rsassa.msg");
pub const SWTPM_RSA_SIGNATURE: &[u8] = include_bytes!("../testdata/swtpm-quote-rsassa.sig");
