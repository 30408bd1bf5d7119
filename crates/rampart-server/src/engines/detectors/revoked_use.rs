//! Revoked credentials presented to the server: where a front door refuses a revoked device
//! (certificate or DDI token) or a revoked management token, it notes the use here. Each
//! use is a security event with its audit record, which the revoked-credential detector reads;
//! at most one per credential per [`NOTE_INTERVAL_SECS`], so a device retrying with its
//! revoked credential cannot flood the audit log.

use std::collections::HashMap;
use std::sync::Mutex;

use rampart_db::Db;
use serde_json::json;

use super::actions;
use crate::engines::attestation::security_event;
use crate::observe::audit::AuditWriter;

/// One note per credential within this many seconds.
pub const NOTE_INTERVAL_SECS: i64 = 60;
/// Credentials remembered for the rate limit; past this many the memory is cleared (at worst
/// one extra note per credential).
const MAX_TRACKED: usize = 10_000;

/// Notes revoked credentials' use (shared by the front doors).
pub(crate) struct RevokedUse {
    db: Db,
    audit: AuditWriter,
    /// credential -> when it was last noted.
    noted: Mutex<HashMap<String, i64>>,
}

impl RevokedUse {
    pub(crate) fn new(db: Db, audit: AuditWriter) -> Self {
        Self {
            db,
            audit,
            noted: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `credential` is due a note at `now` (and marks it noted).
    fn due(&self, credential: &str, now: i64) -> bool {
        let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        if noted
            .get(credential)
            .is_some_and(|&at| now.saturating_sub(at) < NOTE_INTERVAL_SECS)
        {
            return false;
        }
        if noted.len() >= MAX_TRACKED {
            noted.clear();
        }
        noted.insert(credential.to_owned(), now);
        true
    }

    /// Notes that `credential` (`device:<id>` or `token:<id>`) was presented to `api` and
    /// refused as revoked. A failure to write is logged: the refusal itself stands.
    pub(crate) async fn note(
        &self,
        credential: &str,
        device_id: Option<&str>,
        api: &str,
        now: i64,
    ) {
        if !self.due(credential, now) {
            return;
        }
        let details =
            json!({"credential": credential, "device_id": device_id.unwrap_or(""), "api": api});
        let written = async {
            let event = security_event(
                "credential.revoked_use",
                device_id.unwrap_or(""),
                details.clone(),
                now,
            )?;
            self.audit
                .write(
                    now,
                    "system",
                    actions::REVOKED_CREDENTIAL_USED,
                    credential,
                    details.clone(),
                    |line| {
                        let (db, event) = (self.db.clone(), event.clone());
                        async move { db.insert_security_event(&event, &line).await }
                    },
                )
                .await
        }
        .await;
        if let Err(e) = written {
            // Let the next attempt note it.
            self.noted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(credential);
            crate::observe::log::error(
                "recording the use of a revoked credential",
                json!({"credential": credential, "error": e.to_string()}),
            );
        }
    }
}
