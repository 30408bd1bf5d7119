//! The read path of a poll: one database query per poll.
//!
//! A poll needs the device's revocation flag, its current assignment and its quarantine.
//! [`rampart_db::Db::poll_state`] reads them in one primary-key query, so a
//! poll by a registered device costs exactly one database round trip, and
//! both are read fresh from the database on every poll (nothing is cached:
//! a revocation by any server sharing the database takes effect on the
//! device's next request). A device that is unknown (first contact) or
//! revoked takes the general path, [`DeviceApi::identify`], which registers
//! it (and audits the enrolment) or refuses it with 403.
//!
//! Database work per poll, besides this read: none when the body is `{}`;
//! the last-seen time is written in batches (`engines::last_seen`); facts in
//! the body cost one more read, and a write when they changed.

use rampart_db::{DeviceAssignment, QuarantineMark};

use super::api::DeviceApi;
use crate::listen::http::ApiError;
use crate::listen::mtls::PeerIdentity;

/// The polling device and its assignment row (if it ever had one).
pub(crate) struct PollingDevice {
    pub(crate) id: String,
    pub(crate) assignment: Option<DeviceAssignment>,
    /// Quarantined, or released with the `released` statement not yet acknowledged.
    pub(crate) quarantine: Option<QuarantineMark>,
}

impl DeviceApi {
    /// The polling device, registered if this is its first contact; 403 if
    /// it is revoked in the inventory.
    pub(crate) async fn polling_device(
        &self,
        peer: &PeerIdentity,
        now: i64,
    ) -> Result<PollingDevice, ApiError> {
        let id = peer.device_id.as_str();
        let state = self
            .db
            .poll_state(id)
            .await
            .map_err(|e| ApiError::from_db("reading a device", e))?;
        if let Some(state) = state
            && !state.revoked
            && state.enrolment.by == rampart_db::EnrolledBy::Certificate
        {
            return Ok(PollingDevice {
                id: id.to_owned(),
                assignment: state.assignment,
                quarantine: state.quarantine,
            });
        }
        // First contact, revoked (identify answers 403, re-reading the flag), or a row a token
        // enrolled (identify refuses the certificate, 409).
        // A device may have been quarantined before its first contact (by an incident's
        // executor), so the quarantine is read here too.
        let device = self.identify(peer, now).await?;
        let state = self
            .db
            .poll_state(&device.id)
            .await
            .map_err(|e| ApiError::from_db("reading a device assignment", e))?;
        Ok(PollingDevice {
            id: device.id,
            assignment: state.as_ref().and_then(|s| s.assignment.clone()),
            quarantine: state.and_then(|s| s.quarantine),
        })
    }
}
