//! Quarantine on the native device API (issue 16, decision 0031), enforced whether or not the
//! device cooperates:
//!
//! * `POST /device/v1/poll` answers no assignment to a quarantined device and carries the
//!   signed instruction (`quarantine`: a `quarantined` statement, or a `released` one after an
//!   operator's release until the device acknowledges it).
//! * `POST /device/v1/quarantine/ack` — body a [`QuarantineAck`]: what the device's containment
//!   (or release) hook did about the statement issued at `issued`. Stored with its audit record
//!   (and the incident's timeline entry); it changes no quarantine: a device never releases
//!   itself. 409 when the device holds no such statement.
//! * Director targets metadata, the image repository and its artifacts, and attribute updates
//!   answer 403 `quarantined` (naming the incident and `rampart device release`). The director
//!   root files stay readable (the agent needs them to check the instruction), as do reports
//!   (kept as evidence; campaign gates do not count a quarantined device) and attestation.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_db::{QuarantineAckRecord, QuarantineMark};
use rampart_protocol::{HookOutcome, QuarantineAck, QuarantineState, SignedQuarantine};
use serde_json::json;

use super::api::DeviceApi;
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, json_response, parse_json, read_body};
use crate::listen::mtls::PeerIdentity;

impl DeviceApi {
    /// 403 `quarantined` for a quarantined device (one primary-key read).
    pub(crate) async fn require_not_quarantined(&self, device_id: &str) -> Result<(), ApiError> {
        let quarantine = self
            .db
            .quarantine(device_id)
            .await
            .map_err(|e| ApiError::from_db("reading a device's quarantine", e))?;
        match quarantine {
            None => Ok(()),
            Some(q) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "quarantined",
                crate::engines::quarantine::refusal(device_id, &q),
            )),
        }
    }

    /// As [`Self::require_not_quarantined`], but a quarantined device whose assignment is a
    /// forced re-image may fetch what that install needs (director targets, image repository
    /// metadata, the artifact): quarantine limits a device to the quarantine routes, and the
    /// re-image is one of them.
    pub(crate) async fn require_not_quarantined_unless_reimaging(
        &self,
        device_id: &str,
    ) -> Result<(), ApiError> {
        match self.require_not_quarantined(device_id).await {
            Ok(()) => Ok(()),
            Err(refusal) => {
                let assignment = self
                    .db
                    .device_assignment(device_id)
                    .await
                    .map_err(|e| ApiError::from_db("reading a device's assignment", e))?;
                if assignment.is_some_and(|a| a.reimage && !a.target.is_empty()) {
                    Ok(())
                } else {
                    Err(refusal)
                }
            }
        }
    }

    /// The signed statement a poll answer carries (none without a director, or when signing
    /// fails: the quarantine is enforced here either way, so the device is not freed).
    pub(super) fn instruction(
        &self,
        device_id: &str,
        mark: Option<&QuarantineMark>,
        now: i64,
    ) -> Option<SignedQuarantine> {
        let signer = self.instructions.as_ref()?;
        let (incident, state, issued) = match mark? {
            QuarantineMark::Quarantined { incident_id, since } => {
                (incident_id, QuarantineState::Quarantined, *since)
            }
            QuarantineMark::ReleasePending {
                incident_id,
                issued,
            } => (incident_id, QuarantineState::Released, *issued),
        };
        match signer.statement(device_id, incident, state, issued, now) {
            Ok(signed) => Some(signed),
            Err(e) => {
                crate::observe::log::error(
                    "signing a quarantine instruction failed; the device stays quarantined without one",
                    json!({"device": device_id, "error": e}),
                );
                None
            }
        }
    }

    async fn quarantine_ack(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        let bytes = read_body(headers, body, self.body_limits).await?;
        let now = unix_now();
        let device = self.identify(peer, now).await?;
        self.last_seen.record(&device.id, now);
        let ack: QuarantineAck = parse_json(
            &bytes,
            r#"{"incident": "...", "state": "quarantined"|"released", "issued": N, "hook": "succeeded"|"failed"|"not_configured", "detail": "..."}"#,
        )?;
        if ack.detail.len() > rampart_db::MAX_ACK_DETAIL {
            return Err(ApiError::invalid(format!(
                "detail must be at most {} bytes; send the end of the hook's output",
                rampart_db::MAX_ACK_DETAIL
            )));
        }
        let hook = match ack.hook {
            HookOutcome::Succeeded => "succeeded",
            HookOutcome::Failed => "failed",
            HookOutcome::NotConfigured => "not_configured",
        };
        let released = ack.state == QuarantineState::Released;
        let record = QuarantineAckRecord {
            released,
            issued: ack.issued,
            hook: hook.into(),
            // Stored and audited as text without control characters.
            detail: ack
                .detail
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
            at: now,
        };
        let id = device.id.clone();
        self.audit
            .write(
                now,
                &format!("device:{id}"),
                if released {
                    "device.release_acknowledged"
                } else {
                    "device.quarantine_acknowledged"
                },
                &id,
                json!({"incident": ack.incident, "issued": ack.issued, "hook": hook}),
                |line| {
                    let (db, id, record) = (self.db.clone(), id.clone(), record.clone());
                    async move { db.record_quarantine_ack(&id, &record, &line).await }
                },
            )
            .await
            .map_err(crate::listen::http::write_error(
                "storing a quarantine acknowledgement",
            ))?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"device_id": id, "state": ack.state, "issued": ack.issued, "hook": hook}),
        ))
    }
}

pub(super) async fn ack(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    api.quarantine_ack(&peer, &headers, body).await
}
