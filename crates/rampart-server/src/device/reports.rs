//! Reports and attributes on the native device API: storing a report (idempotent by id, at a
//! bounded rate per device), auditing failed verifications at most once per interval, and the
//! device's attribute updates.

use rampart_db::DomainError;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_db::{DbError, Report};
use rampart_protocol::{
    AttributesAnswer, AttributesMode, AttributesUpdate, ReportAnswer, ReportRequest,
};
use serde_json::{Map, Value};

use crate::helpers::unix_now;
use crate::listen::http::{ApiError, json_response, parse_json, read_body};
use crate::listen::mtls::PeerIdentity;
use crate::observe::metrics::Metrics;

use super::api::*;

/// Longest reason copied from a report into its audit record.
pub(crate) const MAX_AUDITED_REASON_CHARS: usize = 512;

impl DeviceApi {
    /// For a `verification_failed` report: the audit record's actor and details, unless this
    /// device already had one audited within [`VERIFICATION_AUDIT_INTERVAL`] (the report is still
    /// stored, and the next record counts the ones in between), so one device cannot flood the
    /// audit log. The details point to the stored report and carry at most a short reason.
    pub(super) fn verification_failure_record(
        &self,
        report: &Report,
        status: ReportStatus,
        now: i64,
    ) -> Option<(String, Value)> {
        if status != ReportStatus::VerificationFailed {
            return None;
        }
        let mut seen = self
            .verification_audits
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_TRACKED_VERIFICATION_AUDITS {
            seen.clear();
        }
        let entry = seen
            .entry(report.device_id.clone())
            .or_insert((i64::MIN, 0));
        if now.saturating_sub(entry.0) < VERIFICATION_AUDIT_INTERVAL {
            entry.1 += 1;
            return None;
        }
        let not_audited_before = std::mem::take(&mut entry.1);
        entry.0 = now;
        let reason: String = ["error", "reason"]
            .iter()
            .find_map(|k| report.details.get(*k).and_then(Value::as_str))
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_AUDITED_REASON_CHARS)
            .collect();
        let details = serde_json::json!({
            "report": report.id,
            "assignment": report.assignment,
            "reason": reason,
            "not_audited_before": not_audited_before,
        });
        Some((format!("device:{}", report.device_id), details))
    }
    pub(super) async fn report(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        let bytes = read_body(headers, body, self.body_limits).await?;
        let now = unix_now();
        let device = self.identify(peer, now).await?;
        self.last_seen.record(&device.id, now);
        if let Err(wait) = self.report_rate.take(&device.id, std::time::Instant::now()) {
            return Ok(too_many_reports(wait));
        }
        let request: ReportRequest = parse_json(
            &bytes,
            r#"a report {"id": "<unique id>", "status": "<status>", "assignment": "...", "progress": 0-100, "details": {...}}"#,
        )?;
        validate_report_id(&request.id)?;
        let progress = request.progress.unwrap_or(0);
        if progress > 100 {
            return Err(ApiError::invalid(format!(
                "progress must be between 0 and 100, not {progress}"
            )));
        }
        let details = match request.details {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(details @ Value::Object(_)) => details,
            Some(_) => return Err(ApiError::invalid("details must be a JSON object")),
        };
        let report = Report {
            id: request.id,
            device_id: device.id,
            assignment: request.assignment.unwrap_or_default(),
            status: request.status.as_str().to_owned(),
            progress,
            details,
            created: now,
        };
        // A retried verification failure is answered from the stored report, not re-audited.
        if request.status == ReportStatus::VerificationFailed
            && let Ok(Some(stored)) = self.db.report(&report.device_id, &report.id).await
        {
            return self.answer_stored(&report, &stored);
        }
        let audited = self.verification_failure_record(&report, request.status, now);
        let alert = audited.as_ref().map(|(_, details)| details.clone());
        let inserted = match audited {
            None => self.db.insert_report(&report).await,
            Some((actor, details)) => {
                // The report and its audit record are one transaction: a failed verification is
                // never acknowledged without being recorded.
                let result = self
                    .audit
                    .write(
                        now,
                        &actor,
                        "device.verification_failed",
                        &report.device_id,
                        details,
                        |line| {
                            let (db, report) = (self.db.clone(), report.clone());
                            async move { db.insert_report_audited(&report, Some(&line)).await }
                        },
                    )
                    .await;
                match result {
                    Ok(()) => Ok(()),
                    Err(crate::observe::audit::AuditWriteError::Db(e)) => Err(e),
                    Err(e) => {
                        crate::observe::log::error(
                            "recording a failed verification in the audit log",
                            serde_json::json!({"error": e.to_string()}),
                        );
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "storage_unavailable",
                            "the server could not record this report; retry later",
                        ));
                    }
                }
            }
        };
        match inserted {
            Ok(()) => {
                Metrics::inc(&self.metrics.reports[request.status as usize]);
                self.sinks.deliver(&report, now).await;
                if let Some(mut data) = alert {
                    // Alerted as often as audited (at most once a minute per device).
                    data["device"] = Value::String(report.device_id.clone());
                    let hooks = self.sinks.hooks.clone();
                    tokio::spawn(async move {
                        let _ = hooks
                            .emit(
                                crate::engines::webhooks::WebhookEvent::VerificationFailed,
                                data,
                            )
                            .await;
                    });
                }
                Ok(report_answer(StatusCode::CREATED, &report.id, now, false))
            }
            Err(DbError::Domain(DomainError::Invalid(message))) => Err(ApiError::invalid(message)),
            Err(insert_error) => self.repeated_report(&report, insert_error).await,
        }
    }
    /// The insert failed: if the id is already stored, this is either an
    /// idempotent retry (200) or a conflicting reuse of the id (409).
    pub(super) async fn repeated_report(
        &self,
        report: &Report,
        insert_error: DbError,
    ) -> Result<Response, ApiError> {
        match self.db.report(&report.device_id, &report.id).await {
            Ok(Some(stored)) => self.answer_stored(report, &stored),
            _ => Err(ApiError::from_db("storing a report", insert_error)),
        }
    }
    /// A report whose id this device already used: an idempotent retry (200) if it is the same
    /// report, else a conflict (409).
    pub(super) fn answer_stored(
        &self,
        report: &Report,
        stored: &Report,
    ) -> Result<Response, ApiError> {
        if same_report(stored, report) {
            Metrics::inc(&self.metrics.reports_duplicate);
            return Ok(report_answer(
                StatusCode::OK,
                &stored.id,
                stored.created,
                true,
            ));
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "report_id_conflict",
            format!(
                "report id {:?} was already used by this device for a different report; send a new report under a new id",
                report.id
            ),
        ))
    }
    pub(super) async fn attributes(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        let bytes = read_body(headers, body, self.body_limits).await?;
        let now = unix_now();
        let device = self.identify(peer, now).await?;
        self.last_seen.record(&device.id, now);
        // Campaign selection and policies read attributes: a quarantined device's claims do
        // not change its inventory record.
        self.require_not_quarantined(&device.id).await?;
        let request: AttributesUpdate = parse_json(
            &bytes,
            r#"{"mode": "merge" or "replace", "data": {<attributes>}}"#,
        )?;

        let _guard = self.lock_device(&device.id).await;
        let stored = self.stored_device(&device.id).await?.facts;
        let mut facts = stored.clone();
        match request.mode {
            AttributesMode::Merge => {
                for (key, value) in request.data {
                    if value.is_null() {
                        facts.attributes.shift_remove(&key);
                    } else {
                        facts.attributes.insert(key, value);
                    }
                }
            }
            AttributesMode::Replace => {
                facts.attributes = request
                    .data
                    .into_iter()
                    .filter(|(_, value)| !value.is_null())
                    .collect();
            }
        }
        if facts.attributes != stored.attributes {
            facts
                .validate()
                .map_err(|e| ApiError::from_db("device attributes", e))?;
            self.db
                .upsert_device(&device.id, &facts, now)
                .await
                .map_err(|e| ApiError::from_db("storing device attributes", e))?;
            Metrics::inc(&self.metrics.attribute_updates);
        }
        Ok(json_response(
            StatusCode::OK,
            &AttributesAnswer {
                device_id: device.id,
                attributes: facts.attributes,
            },
        ))
    }
}

/// 429 for a device over its report rate, with when to send again.
pub(super) fn too_many_reports(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_reports",
        format!(
            "this device sends reports faster than {} a second (bursts of {}); send again in {seconds} s",
            super::report_rate::REPORTS_PER_SECOND,
            super::report_rate::REPORT_BURST
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

pub(super) async fn report(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    api.report(&peer, &headers, body).await
}

pub(super) async fn attributes(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    api.attributes(&peer, &headers, body).await
}

pub(super) fn same_report(a: &Report, b: &Report) -> bool {
    a.device_id == b.device_id
        && a.assignment == b.assignment
        && a.status == b.status
        && a.progress == b.progress
        && a.details == b.details
}

pub(super) fn report_answer(
    status: StatusCode,
    id: &str,
    created: i64,
    duplicate: bool,
) -> Response {
    json_response(
        status,
        &ReportAnswer {
            id: id.to_owned(),
            created,
            duplicate,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_ids() {
        assert!(validate_report_id("0b7c6f1e-2f7a-4c55-9d0e-8a1f3c2b4d5e").is_ok());
        assert!(validate_report_id("").is_err());
        assert!(validate_report_id("a b").is_err());
        assert!(validate_report_id(&"x".repeat(MAX_REPORT_ID_LEN + 1)).is_err());
    }
}
