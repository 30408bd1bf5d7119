//! PCR extends and quotes: TPM2_PCR_Extend on the SHA-256 bank, TPM2_Quote with the attestation
//! key, and the PCR values read right after it, as the three files `tpm2_quote -m -s -o` writes.

use rampart_attest::device::{QuoteBytes, TpmError};
use tss_esapi::Context;
use tss_esapi::handles::{KeyHandle, PcrHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, Digest, DigestValues, PcrSelectionList, PcrSlot, SignatureScheme,
};
use tss_esapi::traits::Marshall as _;

use crate::{error, tss_error};

/// PCRs a TPM 2.0 PC-client platform has (0 to 23).
const PCR_COUNT: u8 = 24;
/// The largest qualifying data a quote takes (TPM2B_DATA: the size of a TPMT_HA).
pub const MAX_NONCE: usize = 64;

fn pcr_slot(operation: &'static str, pcr: u8) -> Result<PcrSlot, TpmError> {
    if pcr >= PCR_COUNT {
        return Err(error(
            operation,
            format!(
                "PCR {pcr} does not exist; a TPM has PCRs 0 to {}",
                PCR_COUNT - 1
            ),
        ));
    }
    PcrSlot::try_from(1u32 << pcr).map_err(|e| tss_error(operation, e))
}

fn sha256_selection(
    operation: &'static str,
    slots: &[PcrSlot],
) -> Result<PcrSelectionList, TpmError> {
    PcrSelectionList::builder()
        .with_selection(HashingAlgorithm::Sha256, slots)
        .build()
        .map_err(|e| tss_error(operation, e))
}

/// Extends SHA-256 PCR `pcr` with `digest` (PCR authorisation is the empty password).
pub(crate) fn extend(ctx: &mut Context, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
    const OP: &str = "PCR extend";
    pcr_slot(OP, pcr)?;
    let handle = PcrHandle::try_from(u32::from(pcr)).map_err(|e| tss_error(OP, e))?;
    let mut values = DigestValues::new();
    values.set(
        HashingAlgorithm::Sha256,
        Digest::try_from(digest.to_vec()).map_err(|e| tss_error(OP, e))?,
    );
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.pcr_extend(handle, values)
    })
    .map_err(|e| {
        error(
            OP,
            format!("{e}: extending PCR {pcr} failed (is the TPM's SHA-256 PCR bank active?)"),
        )
    })
}

/// TPM2_Quote over SHA-256 PCRs `pcrs` with `nonce` as qualifying data, and the quoted PCRs'
/// values.
pub(crate) fn quote(
    ctx: &mut Context,
    ak: KeyHandle,
    nonce: &[u8],
    pcrs: &[u8],
) -> Result<QuoteBytes, TpmError> {
    const OP: &str = "quote";
    if nonce.len() > MAX_NONCE {
        return Err(error(
            OP,
            format!(
                "the nonce is {} bytes; a quote's qualifying data holds at most {MAX_NONCE}",
                nonce.len()
            ),
        ));
    }
    let mut indices = pcrs.to_vec();
    indices.sort_unstable();
    indices.dedup();
    if indices.is_empty() {
        return Err(error(
            OP,
            "no PCRs selected; a quote covers at least one PCR",
        ));
    }
    let slots = indices
        .iter()
        .map(|&p| pcr_slot(OP, p))
        .collect::<Result<Vec<_>, _>>()?;
    let selection = sha256_selection(OP, &slots)?;
    let qualifying = Data::try_from(nonce.to_vec()).map_err(|e| tss_error(OP, e))?;
    let (attest, signature) = ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.quote(ak, qualifying, SignatureScheme::Null, selection)
        })
        .map_err(|e| tss_error(OP, e))?;
    let mut values = Vec::with_capacity(slots.len());
    for (&pcr, &slot) in indices.iter().zip(&slots) {
        let one = sha256_selection(OP, &[slot])?;
        let (_, _, digests) = ctx
            .execute_without_session(|c| c.pcr_read(one))
            .map_err(|e| tss_error(OP, e))?;
        let value = digests.value().first().ok_or_else(|| {
            error(
                OP,
                format!("the TPM returned no SHA-256 value for PCR {pcr}; is that bank active?"),
            )
        })?;
        values.push(value.as_slice().to_vec());
    }
    Ok(QuoteBytes {
        message: attest.marshall().map_err(|e| tss_error(OP, e))?,
        signature: signature.marshall().map_err(|e| tss_error(OP, e))?,
        pcrs: pcr_file(&indices, &values),
    })
}

/// The PCR values in tpm2-tools' PCR file format (`tpm2_quote -o`, `tpm2_checkquote -f`): the C
/// structures as the tools write them on a little-endian machine. A TPML_PCR_SELECTION (count,
/// then 16 TPMS_PCR_SELECTION slots of hash, sizeofSelect, a 4-byte bitmap and a padding byte),
/// the number of TPML_DIGEST that follow, then each TPML_DIGEST (count, then 8 TPM2B_DIGEST
/// slots of size and a 64-byte buffer), up to 8 values each, in PCR order.
fn pcr_file(indices: &[u8], values: &[Vec<u8>]) -> Vec<u8> {
    const SELECTION_SLOTS: usize = 16;
    const DIGEST_SLOTS: usize = 8;
    const DIGEST_BUFFER: usize = 64;
    let mut out = Vec::new();
    out.extend_from_slice(&1u32.to_le_bytes());
    let bitmap = indices
        .iter()
        .fold(0u32, |m, &p| m | (1u32 << p))
        .to_le_bytes();
    out.extend_from_slice(&0x000bu16.to_le_bytes());
    out.push(3);
    out.extend_from_slice(&bitmap);
    out.push(0);
    out.resize(4 + SELECTION_SLOTS * 8, 0);
    let chunks: Vec<&[Vec<u8>]> = values.chunks(DIGEST_SLOTS).collect();
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for chunk in chunks {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        for slot in 0..DIGEST_SLOTS {
            let value = chunk.get(slot).map_or(&[][..], Vec::as_slice);
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            let start = out.len();
            out.extend_from_slice(value);
            out.resize(start + DIGEST_BUFFER, 0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `tpm2_quote -l sha256:0,13,16 -o` wrote (tpm2-tools 5.4) for three zero PCRs.
    #[test]
    fn pcr_file_matches_tpm2_tools_layout() {
        let file = pcr_file(&[0, 13, 16], &vec![vec![0u8; 32]; 3]);
        assert_eq!(file.len(), 668);
        assert_eq!(&file[..11], &[1, 0, 0, 0, 0x0b, 0, 3, 0x01, 0x20, 0x01, 0]);
        assert_eq!(&file[0x84..0x8e], &[1, 0, 0, 0, 3, 0, 0, 0, 0x20, 0]);
        assert_eq!(&file[0xce..0xd0], &[0x20, 0]);
        assert_eq!(&file[0x110..0x112], &[0x20, 0]);
        assert_eq!(
            &file[0x152..0x154],
            &[0, 0],
            "unused digest slots are empty"
        );
    }
}
