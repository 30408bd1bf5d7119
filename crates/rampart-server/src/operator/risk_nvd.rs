//! `POST /api/v1/risk/nvd` (operate; issue 17, decision 0048): NVD CVE records for CPE and
//! firmware-name matching. The body is an NVD CVE API 2.0 document (`{"vulnerabilities":
//! [{"cve":{...}}, ...]}`; an API page's other fields are ignored), at most
//! [`MAX_NVD_IMPORT_RECORDS`] records and [`MAX_NVD_IMPORT_BODY`] bytes, nested at most
//! `rampart_vuln::nvd::MAX_JSON_DEPTH` deep (checked before it is parsed). Each record is
//! parsed with `rampart_vuln::nvd`'s limits; one that does not parse refuses the batch (422,
//! naming it) and nothing is stored. Stored by CVE id, `lastModified` and `vulnStatus`; a
//! `Rejected` record leaves matching. Audited as `risk.nvd_imported`. `rampart risk import
//! --nvd` sends files and directories of API pages in batches.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use rampart_db::NvdImport;
use rampart_vuln::nvd::{MAX_JSON_DEPTH, parse_nvd_item};
use serde::Deserialize;

use crate::listen::http::{ApiError, BodyLimits, parse_json, read_body};

use super::{ManagementApi, Permission};

/// Largest body: the listener's 1 MiB ceiling, as for OSV imports (NVD records are rarely
/// over 100 KiB; the CLI refuses a larger one by name).
pub(crate) const MAX_NVD_IMPORT_BODY: usize = 1024 * 1024;
/// The most records in one body (an NVD API page holds at most 2,000).
pub(crate) const MAX_NVD_IMPORT_RECORDS: usize = 2_000;

#[derive(Deserialize)]
struct NvdImportRequest {
    vulnerabilities: Vec<Box<serde_json::value::RawValue>>,
}

pub(super) async fn import_nvd(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let limits = BodyLimits {
        max_bytes: MAX_NVD_IMPORT_BODY,
        ..api.body_limits
    };
    let bytes = read_body(&headers, body, limits).await?;
    // Depth before any parsing: NVD's structure is 8 deep, a deeper body is not NVD's.
    rampart_vuln::json_limits::check_depth(&bytes, MAX_JSON_DEPTH).map_err(|_| {
        ApiError::invalid(format!(
            "the body nests JSON arrays and objects more than {MAX_JSON_DEPTH} deep: this is not an NVD CVE API 2.0 document"
        ))
    })?;
    let request: NvdImportRequest = parse_json(
        &bytes,
        r#"an NVD CVE API 2.0 document {"vulnerabilities": [{"cve": {...}}, ...]}"#,
    )?;
    if request.vulnerabilities.is_empty() || request.vulnerabilities.len() > MAX_NVD_IMPORT_RECORDS
    {
        return Err(ApiError::invalid(format!(
            "vulnerabilities must hold 1 to {MAX_NVD_IMPORT_RECORDS} NVD records, not {}; send the API's pages in batches (`rampart risk import --nvd` does)",
            request.vulnerabilities.len()
        )));
    }
    let mut batch = Vec::with_capacity(request.vulnerabilities.len());
    let mut seen = std::collections::HashSet::new();
    for (position, raw) in request.vulnerabilities.iter().enumerate() {
        let record = parse_nvd_item(raw.get().as_bytes()).map_err(|e| {
            ApiError::invalid(format!(
                "vulnerabilities[{position}] is not a valid NVD CVE record: {e}; fix or leave it out"
            ))
        })?;
        if !seen.insert(record.id.clone()) {
            return Err(ApiError::invalid(format!(
                "vulnerabilities[{position}]: {:?} is given twice in this batch; send each CVE once",
                record.id
            )));
        }
        batch.push(NvdImport {
            id: record.id,
            last_modified: record.last_modified.unwrap_or_default(),
            status: record.status.unwrap_or_default(),
            record: raw.get().to_owned(),
        });
    }
    let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
    super::risk::store_feed_batch(
        &api,
        &caller.actor(),
        "risk.nvd_imported",
        "importing NVD records",
        &ids,
        |line, now| {
            let (db, batch) = (api.db.clone(), batch.clone());
            async move { db.import_nvd_advisories(&batch, now, &line).await }
        },
    )
    .await
}
