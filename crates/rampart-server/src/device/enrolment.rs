//! The native device API's half of the identity rule (decision 0021): a device certificate acts
//! only for a row a certificate enrolled.

use axum::http::StatusCode;

use crate::listen::http::ApiError;
use crate::listen::mtls::PeerIdentity;
use crate::observe::labels::FailureKind;
use crate::observe::metrics::Metrics;

impl super::api::DeviceApi {
    /// The native device API's half of the identity rule (decision 0021): a device certificate
    /// acts only for a row a certificate enrolled. A row a DDI token enrolled under the same id
    /// (a gateway claiming an id before its device first connected) is refused with 409, counted
    /// as a failed authentication, and audited (`device.identity_refused`, at most once per
    /// device and minute, with the repeats in between), for an operator to resolve.
    pub(crate) async fn check_certificate_enrolment(
        &self,
        peer: &PeerIdentity,
        now: i64,
    ) -> Result<(), ApiError> {
        let id = peer.device_id.as_str();
        let enrolment = self
            .db
            .device_enrolment(id)
            .await
            .map_err(|e| ApiError::from_db("reading a device's enrolment", e))?;
        let Some(enrolment) = enrolment.filter(|e| e.by != rampart_db::EnrolledBy::Certificate)
        else {
            return Ok(());
        };
        Metrics::inc(&self.metrics.auth_failures[FailureKind::CertificateEnrolment as usize]);
        if let Some(not_audited_before) = self.identity_refusals.due(id, now) {
            let details = serde_json::json!({
                "serial": peer.serial,
                "remote_address": peer.remote_addr.ip().to_string(),
                "enrolled_by": enrolment.by.as_str(),
                "enrolled_tenant": enrolment.tenant,
                "not_audited_before": not_audited_before,
            });
            if let Err(e) = self
                .audit
                .record(
                    now,
                    &format!("device:{id}"),
                    "device.identity_refused",
                    id,
                    details,
                )
                .await
            {
                crate::observe::log::error(
                    "recording a refused device certificate in the audit log",
                    serde_json::json!({"device": id, "error": e.to_string()}),
                );
            }
        }
        let tenant = if enrolment.tenant.is_empty() {
            String::new()
        } else {
            format!(" of DDI tenant {}", enrolment.tenant)
        };
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "enrolled_by_token",
            format!(
                "device {id:?} is in the inventory, enrolled by a {}{tenant}, not by this certificate, so the certificate is refused; an operator checks which one is genuine and, if it is this device, deletes that row (DELETE /api/v1/ddi/devices/{id}, audited); the device then enrols with its certificate at its next poll",
                enrolment.by.as_str().replace('_', " ")
            ),
        ))
    }
}
