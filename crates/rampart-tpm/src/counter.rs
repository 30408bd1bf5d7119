//! The hardware anti-rollback floor: an NV counter (TPM_NT_COUNTER) the owner defines and
//! increments. A counter only counts up (the TPM refuses writes and decrements), and its value
//! lives in the TPM, so wiping or replacing the agent's state directory cannot lower the floor.
//!
//! A counter reads 0 until its first increment. That first increment sets it to at least the
//! highest value any counter in this TPM ever had (TPM 2.0 Part 1, 37.7.3), so a counter that was
//! deleted and defined again comes back at or above its old value: the floor can jump up, never
//! down.

use rampart_attest::device::TpmError;
use tss_esapi::Context;
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::NvIndexType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::NvPublicBuilder;

use crate::keys::{handle_present, resolve};
use crate::{error, tss_error};

/// NV indices the owner may define (TCG "Registry of Reserved TPM 2.0 Handles").
const OWNER_NV: std::ops::RangeInclusive<u32> = 0x0100_0000..=0x013F_FFFF;

/// The most increments one raise may make. Security versions grow by small steps; a jump of
/// millions would be a mistake (or an attack on the NV memory's write endurance), and would
/// keep the TPM busy for hours.
pub const MAX_RAISE_STEPS: u64 = 1024;

pub(crate) fn check_index(index: u32) -> Result<(), TpmError> {
    if OWNER_NV.contains(&index) {
        Ok(())
    } else {
        Err(error(
            "open",
            format!(
                "the counter NV index {index:#010x} is not in the owner's range; choose one in \
                 0x01000000..=0x013fffff"
            ),
        ))
    }
}

/// The counter's NV handle, or `None` when it was never defined.
fn counter_handle(ctx: &mut Context, index: u32) -> Result<Option<NvIndexHandle>, TpmError> {
    const OP: &str = "read the anti-rollback counter";
    if !handle_present(ctx, index).map_err(|e| tss_error(OP, e))? {
        return Ok(None);
    }
    let handle = NvIndexHandle::from(resolve(ctx, index).map_err(|e| tss_error(OP, e))?);
    let (public, _) = ctx
        .execute_without_session(|c| c.nv_read_public(handle))
        .map_err(|e| tss_error(OP, e))?;
    let attributes = public.attributes();
    if attributes.index_type().ok() != Some(NvIndexType::Counter)
        || !attributes.owner_read()
        || !attributes.owner_write()
    {
        return Err(error(
            OP,
            format!(
                "NV index {index:#010x} exists but is not an owner-authorised counter \
                 (TPM_NT_COUNTER); configure another index, or remove it with \
                 `tpm2_nvundefine {index:#010x}` if nothing else uses it"
            ),
        ));
    }
    Ok(Some(handle))
}

/// The counter's value: 0 when it is not defined or was never incremented.
pub(crate) fn read(ctx: &mut Context, index: u32) -> Result<u64, TpmError> {
    const OP: &str = "read the anti-rollback counter";
    let Some(handle) = counter_handle(ctx, index)? else {
        return Ok(0);
    };
    value(ctx, handle, OP)
}

fn value(ctx: &mut Context, handle: NvIndexHandle, op: &'static str) -> Result<u64, TpmError> {
    let (public, _) = ctx
        .execute_without_session(|c| c.nv_read_public(handle))
        .map_err(|e| tss_error(op, e))?;
    if !public.attributes().written() {
        return Ok(0);
    }
    let data = ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.nv_read(NvAuth::Owner, handle, 8, 0)
        })
        .map_err(|e| tss_error(op, e))?;
    let bytes: [u8; 8] = data.as_slice().try_into().map_err(|_| {
        error(
            op,
            format!("the counter returned {} bytes instead of 8", data.len()),
        )
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Defines the counter (owner-authorised reads and increments).
fn define(ctx: &mut Context, index: u32) -> Result<NvIndexHandle, TpmError> {
    const OP: &str = "define the anti-rollback counter";
    let public = (|| {
        let attributes = NvIndexAttributesBuilder::new()
            .with_nv_index_type(NvIndexType::Counter)
            .with_owner_write(true)
            .with_owner_read(true)
            .build()?;
        NvPublicBuilder::new()
            .with_nv_index(NvIndexTpmHandle::new(index)?)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes)
            .with_data_area_size(8)
            .build()
    })()
    .map_err(|e| tss_error(OP, e))?;
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.nv_define_space(Provision::Owner, None, public)
    })
    .map_err(|e| {
        error(
            OP,
            format!(
                "{e}: defining NV index {index:#010x} needs the owner hierarchy with an empty \
                 password and free NV space"
            ),
        )
    })
}

/// Raises the counter to at least `to`, by increments (defining it first if needed).
pub(crate) fn raise(ctx: &mut Context, index: u32, to: u64) -> Result<(), TpmError> {
    const OP: &str = "raise the anti-rollback counter";
    let handle = match counter_handle(ctx, index)? {
        Some(handle) => handle,
        None if to == 0 => return Ok(()),
        None => define(ctx, index)?,
    };
    let mut current = value(ctx, handle, OP)?;
    if current >= to {
        return Ok(());
    }
    if to - current > MAX_RAISE_STEPS {
        return Err(error(
            OP,
            format!(
                "raising the floor from {current} to {to} would take {} increments, more than \
                 the {MAX_RAISE_STEPS} one raise may make; security versions must grow by small \
                 steps (check the release's security version)",
                to - current
            ),
        ));
    }
    for _ in 0..=MAX_RAISE_STEPS {
        ctx.execute_with_session(Some(AuthSession::Password), |c| {
            c.nv_increment(NvAuth::Owner, handle)
        })
        .map_err(|e| tss_error(OP, e))?;
        current = value(ctx, handle, OP)?;
        if current >= to {
            return Ok(());
        }
    }
    Err(error(
        OP,
        format!("the counter is at {current} after {MAX_RAISE_STEPS} increments, not {to}"),
    ))
}
