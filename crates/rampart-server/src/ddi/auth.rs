//! Who is calling: the tenant's credentials (`TargetToken`, `GatewayToken`, client
//! certificate), the identity rule between certificate and token enrolment, and joining a
//! device to its tenant.

use axum::http::{HeaderMap, StatusCode, header};
use rampart_db::DomainError;
use rampart_db::{DbError, DdiDeviceState, DdiTenant, EnrolledBy, Enrolment};
use rampart_ddi::{Credential, parse_authorization};
use serde::Deserialize;
use serde_json::json;

use crate::helpers::unix_now;
use crate::listen::auth_failures::FailureKind;
use crate::listen::https::DdiPeer;
use crate::observe::metrics::Metrics;

use super::DdiApi;
use super::checks::*;
use super::errors::*;

/// How the request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthBy {
    TargetToken,
    GatewayToken,
    Certificate,
}

impl AuthBy {
    pub(super) fn as_str(self) -> &'static str {
        self.enrolment().as_str()
    }

    /// The enrolment a row gets when this credential brings it in.
    pub(super) fn enrolment(self) -> EnrolledBy {
        match self {
            AuthBy::TargetToken => EnrolledBy::TargetToken,
            AuthBy::GatewayToken => EnrolledBy::GatewayToken,
            AuthBy::Certificate => EnrolledBy::Certificate,
        }
    }

    pub(super) fn failure(self) -> FailureKind {
        match self {
            AuthBy::TargetToken => FailureKind::DdiTargetToken,
            AuthBy::GatewayToken => FailureKind::DdiGatewayToken,
            AuthBy::Certificate => FailureKind::DdiCertificate,
        }
    }

    /// Whether this credential may act for a row enrolled as `enrolment` (decision 0021): a
    /// certificate only for a certificate's row, a gateway token only for a token's row. A
    /// TargetToken matched the digest only an operator sets, naming the device.
    pub(super) fn may_act_for(self, enrolment: &Enrolment) -> bool {
        match self {
            AuthBy::Certificate => enrolment.by == EnrolledBy::Certificate,
            AuthBy::GatewayToken => enrolment.by != EnrolledBy::Certificate,
            AuthBy::TargetToken => true,
        }
    }
}

/// The refusal of a credential for a row another identity enrolled: what happened and what the
/// operator does about it.
pub(super) fn enrolment_refusal(controller: &str, by: AuthBy, enrolment: &Enrolment) -> DdiError {
    let tenant = if enrolment.tenant.is_empty() {
        String::new()
    } else {
        format!(" of tenant {}", enrolment.tenant)
    };
    match enrolment.by {
        EnrolledBy::Certificate => DdiError::unauthorized(
            by.failure(),
            format!(
                "{controller} was enrolled with its device certificate: only that certificate acts for it, never a token (the tenant must accept certificates: mtls)"
            ),
        ),
        other => DdiError {
            failure: Some(by.failure()),
            ..DdiError::new(
                StatusCode::CONFLICT,
                "rampart.enrolled_by_token",
                format!(
                    "{controller} was enrolled by a {}{tenant}, so a certificate never takes it over; if this certificate is the real {controller}, an operator deletes that row (DELETE /api/v1/ddi/devices/{controller}, audited) and the device enrols afresh with its certificate",
                    other.as_str().replace('_', " ")
                ),
            )
        },
    }
}

/// An authenticated device.
pub(super) struct Caller {
    pub(super) id: String,
    pub(super) tenant: DdiTenant,
    pub(super) state: DdiDeviceState,
}

#[derive(Deserialize, Default)]
pub(super) struct HistoryQuery {
    #[serde(rename = "actionHistory", default)]
    pub(super) action_history: Option<i64>,
    /// The cache buster; must be a number if present (hawkBit: 400 otherwise).
    #[serde(default)]
    pub(super) c: Option<String>,
}

impl DdiApi {
    /// Checks the tenant, the credential and the device. `register`: a gateway token or a
    /// certificate may bring an unknown controller into the inventory (the poll does).
    pub(super) async fn authenticate(
        &self,
        tenant: &str,
        controller: &str,
        headers: &HeaderMap,
        peer: &DdiPeer,
        register: bool,
    ) -> Result<Caller, DdiError> {
        check_controller(controller)?;
        // One read serves the tenant, the credential check and the request (the device is
        // read again only after joining it to the tenant).
        let (tenant_row, mut state) = self
            .db
            .ddi_request_view(tenant, controller)
            .await
            .map_err(|e| DdiError::db("reading a DDI tenant and device", e))?
            .ok_or_else(|| {
                DdiError::unauthorized(
                    FailureKind::DdiOther,
                    format!(
                        "unknown tenant {:?}; the operator creates tenants with `rampart ddi tenant create`",
                        tenant.chars().take(64).collect::<String>()
                    ),
                )
            })?;
        let header = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let by = match header.map(parse_authorization) {
            Some(Some(Credential::Target(token))) => {
                if !tenant_row.target_token {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiTargetToken,
                        format!(
                            "TargetToken authentication is disabled for tenant {}",
                            tenant_row.name
                        ),
                    ));
                }
                let member = state.as_ref().is_some_and(|s| {
                    s.tenant.as_deref() == Some(tenant_row.name.as_str())
                        && same_digest(&s.token_hash, &crate::helpers::token_digest(token))
                });
                if !member {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiTargetToken,
                        format!(
                            "the TargetToken is not {controller}'s in tenant {} (or {controller} has none; the operator issues one with `rampart ddi token`)",
                            tenant_row.name
                        ),
                    ));
                }
                AuthBy::TargetToken
            }
            Some(Some(Credential::Gateway(token))) => {
                if !tenant_row.gateway_token
                    || !same_digest(
                        &tenant_row.gateway_token_hash,
                        &crate::helpers::token_digest(token),
                    )
                {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiGatewayToken,
                        format!(
                            "the GatewayToken is not tenant {}'s (or gateway tokens are disabled for it)",
                            tenant_row.name
                        ),
                    ));
                }
                AuthBy::GatewayToken
            }
            Some(None) => {
                return Err(DdiError::unauthorized(
                    FailureKind::DdiOther,
                    "unsupported Authorization header; send `TargetToken <token>` or `GatewayToken <token>`",
                ));
            }
            None => match &peer.certificate_device {
                Some(cert) if !tenant_row.mtls => {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiCertificate,
                        format!(
                            "client certificates ({cert}) are not accepted for tenant {}; send a TargetToken or GatewayToken",
                            tenant_row.name
                        ),
                    ));
                }
                Some(cert) if cert != controller => {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiCertificate,
                        format!("the client certificate is device {cert}'s, not {controller}'s"),
                    ));
                }
                Some(_) => AuthBy::Certificate,
                None => {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiOther,
                        "no credentials: send `Authorization: TargetToken <token>` or `GatewayToken <token>`, or a device certificate",
                    ));
                }
            },
        };
        let known_member = state
            .as_ref()
            .is_some_and(|s| s.tenant.as_deref() == Some(tenant_row.name.as_str()));
        if let Some(other) = state.as_ref().and_then(|s| s.tenant.clone())
            && other != tenant_row.name
        {
            return Err(DdiError::unauthorized(
                by.failure(),
                format!("{controller} belongs to another tenant"),
            ));
        }
        // One identity rule: the credential must be of the kind that enrolled the row.
        if let Some(s) = &state
            && !by.may_act_for(&s.enrolment)
        {
            return Err(enrolment_refusal(controller, by, &s.enrolment));
        }
        let revoked = || {
            DdiError::new(
                StatusCode::FORBIDDEN,
                "rampart.device_revoked",
                format!("device {controller} has been revoked by the fleet operator"),
            )
        };
        // Refused before anything is written (but the revoked credential's use is noted).
        if state.as_ref().is_some_and(|s| s.revoked) {
            self.note_revoked(controller).await;
            return Err(revoked());
        }
        if !known_member {
            if !register {
                return Err(DdiError::not_found(format!(
                    "Target with given identifier {controller} does not exist."
                )));
            }
            // A gateway token may bring in controllers the inventory does not know; a device
            // that exists (e.g. enrolled natively with its certificate) joins a tenant only by
            // its own certificate or by the operator issuing it a token, never by a token
            // shared by a whole tenant.
            if state.is_some() && by == AuthBy::GatewayToken {
                return Err(DdiError::unauthorized(
                    by.failure(),
                    format!(
                        "{controller} is in the inventory but not a device of tenant {}; the operator adds it with `rampart ddi token --tenant {} {controller}`",
                        tenant_row.name, tenant_row.name
                    ),
                ));
            }
            self.join(controller, &tenant_row.name, by, peer).await?;
            state = self
                .db
                .ddi_request_view(&tenant_row.name, controller)
                .await
                .map_err(|e| DdiError::db("reading a DDI device", e))?
                .and_then(|(_, state)| state);
            // Another tenant may have won the race to register it.
            if state.as_ref().and_then(|s| s.tenant.as_deref()) != Some(tenant_row.name.as_str()) {
                return Err(DdiError::unauthorized(
                    by.failure(),
                    format!("{controller} belongs to another tenant"),
                ));
            }
        }
        let Some(state) = state else {
            return Err(DdiError::not_found(format!(
                "Target with given identifier {controller} does not exist."
            )));
        };
        if state.revoked {
            self.note_revoked(controller).await;
            return Err(revoked());
        }
        self.last_seen.record(controller, unix_now());
        Ok(Caller {
            id: controller.to_owned(),
            tenant: tenant_row,
            state,
        })
    }

    /// Registers a controller a gateway token or certificate vouched for (audited when new
    /// to the inventory).
    pub(super) async fn join(
        &self,
        controller: &str,
        tenant: &str,
        by: AuthBy,
        peer: &DdiPeer,
    ) -> Result<(), DdiError> {
        let now = unix_now();
        let details = json!({"tenant": tenant, "authenticated_by": by.as_str(),
            "remote_address": peer.remote_addr.ip().to_string()});
        let (db, id, t) = (self.db.clone(), controller.to_owned(), tenant.to_owned());
        let new = self
            .audit
            .write(
                now,
                &format!("device:{controller}"),
                "ddi.device_joined",
                controller,
                details,
                |line| {
                    let (db, id, t) = (db.clone(), id.clone(), t.clone());
                    async move {
                        db.join_ddi_tenant(&id, &t, by.enrolment(), now, &line)
                            .await
                    }
                },
            )
            .await
            .map_err(|e| match e {
                // Another identity enrolled the row between this request's read and its join.
                crate::observe::audit::AuditWriteError::Db(DbError::Domain(
                    DomainError::Conflict(m),
                )) => DdiError {
                    failure: Some(by.failure()),
                    ..DdiError::new(StatusCode::CONFLICT, "rampart.enrolment_conflict", m)
                },
                other => DdiError::unavailable("registering a DDI device", other),
            })?;
        if new {
            Metrics::inc(&self.metrics.devices_registered);
        }
        Ok(())
    }
}

impl DdiApi {
    /// Notes that revoked `controller` presented its credential (a detector's signal).
    async fn note_revoked(&self, controller: &str) {
        self.revoked_use
            .note(
                &format!("device:{controller}"),
                Some(controller),
                "ddi",
                unix_now(),
            )
            .await;
    }
}
