//! Vendor VEX routes (issue 17, decision 0047):
//!
//! * `POST /api/v1/risk/vex` (operate) — body: a DSSE envelope (`rampart risk vex sign`)
//!   holding a CycloneDX VEX or OpenVEX document, at most [`MAX_VEX_BODY`] bytes. Verified
//!   against the vendor keys the server trusts (`rampart server --vex-signer`; none configured:
//!   409 saying how to configure) before the document is read; refused with 422 when unsigned,
//!   signed by another key, changed after signing, or not VEX. Stored by the document's
//!   SHA-256 (201 new, 200 already stored), audited; the next assessment applies it.
//! * `GET /api/v1/risk/vex?limit&offset` (read): the stored documents, oldest first, paged.
//! * `DELETE /api/v1/risk/vex/{id}` (operate): removes one, audited (404 if unknown).
//!
//! And what the posture and advisory routes add: each row's and advisory's `suppressed`
//! matches with the deciding statement's status, justification, impact statement and source.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_db::VexImport;
use rampart_vuln::posture::{DeviceRun, GroupBy, PostureRow};
use rampart_vuln::signed_vex::{SignedVexError, verify_signed_vex};
use rampart_vuln::suppression::SuppressedMatch;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engines::risk_vex;
use crate::helpers::{sha256_hex, unix_now};
use crate::listen::http::{ApiError, BodyLimits, db_error, json_response, read_body, write_error};

use super::{MAX_PAGE, ManagementApi, Permission, page_limit};

/// Largest VEX import body (vendor VEX documents are a few KiB; a CycloneDX VEX of thousands of
/// statements fits).
pub(crate) const MAX_VEX_BODY: usize = 512 * 1024;
/// Most suppressed matches listed per posture row or advisory (the total is given beside).
const MAX_SUPPRESSED_LISTED: usize = MAX_PAGE as usize;

fn refused(e: SignedVexError) -> ApiError {
    let code = match e {
        SignedVexError::Unsigned => "unsigned_vex",
        SignedVexError::UntrustedSigner { .. } => "untrusted_vex_signer",
        SignedVexError::WrongSignature { .. } => "wrong_vex_signature",
        _ => "invalid_vex",
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
}

pub(super) async fn import_vex(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let limits = BodyLimits {
        max_bytes: MAX_VEX_BODY,
        ..api.body_limits
    };
    let bytes = read_body(&headers, body, limits).await?;
    if api.vex_signers.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_vex_signers",
            "this server trusts no VEX vendor key, so it imports no VEX: start it with --vex-signer VENDOR_PUBLIC_KEY (the JSON `rampart key export-public` prints), once per vendor key",
        ));
    }
    let signers = api.vex_signers.clone();
    let document = tokio::task::spawn_blocking(move || verify_signed_vex(&bytes, &signers))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(refused)?;
    let statements =
        serde_json::to_string(&document.statements).map_err(|_| ApiError::internal())?;
    let import = VexImport {
        id: sha256_hex(&document.payload),
        signer_key_id: document.signer_key_id.clone().unwrap_or_default(),
        format: format!("{:?}", document.format),
        statement_count: document.statements.len() as i64,
        statements,
    };
    let now = unix_now();
    let created = api
        .audit
        .write(
            now,
            &caller.actor(),
            "risk.vex_imported",
            &import.id,
            json!({
                "signer_key_id": import.signer_key_id,
                "format": import.format,
                "statements": import.statement_count,
            }),
            |line| {
                let (db, import) = (api.db.clone(), import.clone());
                async move { db.import_vex_document(&import, now, &line).await }
            },
        )
        .await
        .map_err(write_error("importing a VEX document"))?;
    if created {
        // The watch re-assesses now: a suppression changes exposure and alerts too.
        api.risk_watch.wake();
    }
    Ok(json_response(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &json!({
            "id": import.id,
            "created": created,
            "signer_key_id": import.signer_key_id,
            "format": import.format,
            "statements": import.statement_count,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) async fn list_vex(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(query) = query.map_err(|e| {
        ApiError::invalid(format!(
            "query: {}; this route takes limit and offset",
            e.body_text()
        ))
    })?;
    let limit = page_limit(query.limit)?;
    let offset = match query.offset {
        None => 0,
        Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "offset must be between 0 and {}, not {n}",
                u32::MAX
            )));
        }
    };
    let (documents, total) = api
        .db
        .vex_documents(limit, offset)
        .await
        .map_err(|e| db_error("listing VEX documents", e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"documents": documents, "total": total, "trusted_signers": api.vex_signers.len()}),
    ))
}

pub(super) async fn delete_vex(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "a VEX document id is 64 hex digits (the document's SHA-256, as GET /api/v1/risk/vex lists it)",
        ));
    }
    let id = id.to_ascii_lowercase();
    let now = unix_now();
    let removed = api
        .audit
        .write(
            now,
            &caller.actor(),
            "risk.vex_removed",
            &id,
            json!({}),
            |line| {
                let (db, id) = (api.db.clone(), id.clone());
                async move { db.delete_vex_document(&id, &line).await }
            },
        )
        .await
        .map_err(write_error("removing a VEX document"))?;
    if removed {
        api.risk_watch.wake();
    }
    if !removed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_vex",
            format!("no VEX document {id} is stored; list them with `rampart risk vex list`"),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "removed": true}),
    ))
}

/// One suppressed match as the posture and advisory routes show it.
fn suppressed_json(release: &str, s: &SuppressedMatch) -> Value {
    json!({
        "release": release,
        "advisory": s.matched.advisory,
        "aliases": s.matched.aliases,
        "purl": s.matched.purl,
        "name": s.matched.name,
        "version": s.matched.version,
        "vex": s.vex,
    })
}

/// The posture rows with each row's `suppressed` matches (those of the releases its devices
/// run, at most [`MAX_SUPPRESSED_LISTED`]) and `suppressed_total`.
pub(super) fn rows_with_suppressed(
    by: GroupBy,
    devices: &[DeviceRun],
    suppressed: &BTreeMap<String, Vec<SuppressedMatch>>,
    rows: Vec<PostureRow>,
) -> Vec<Value> {
    let groups = risk_vex::by_group(by, devices, suppressed, MAX_SUPPRESSED_LISTED);
    rows.into_iter()
        .map(|row| {
            let (listed, total) = groups
                .get(row.key.as_str())
                .map(|(listed, total)| (listed.as_slice(), *total))
                .unwrap_or((&[], 0));
            let mut value = serde_json::to_value(&row).unwrap_or_default();
            value["suppressed"] = listed
                .iter()
                .map(|(release, s)| suppressed_json(release, s))
                .collect();
            value["suppressed_total"] = json!(total);
            value
        })
        .collect()
}

/// One advisory's suppressed matches, for the advisory route.
pub(super) fn advisory_suppressed(
    suppressed: &BTreeMap<String, Vec<SuppressedMatch>>,
    advisory_id: &str,
) -> Value {
    risk_vex::of_advisory(suppressed, advisory_id)
        .into_iter()
        .take(MAX_SUPPRESSED_LISTED)
        .map(|(release, s)| suppressed_json(release, s))
        .collect()
}
