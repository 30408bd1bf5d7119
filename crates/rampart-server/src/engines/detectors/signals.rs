//! Reading the detectors' signals from stored state, each source restart-safe: the audit log
//! by sequence number (attestation failures, hardware-id changes, revoked credentials, the log
//! monitor's alerts: each is written with its audit record, and the audit log commits in
//! sequence order), result reports by (time, device, id), and the rest recomputed from what is
//! stored (passes gone stale, the inventory, the registry's releases).

use std::sync::Arc;

use rampart_db::{Db, ReportCursor};
use rampart_incident::detect::{KnownReleases, Signal};
use serde_json::Value;

use crate::delivery::image_repo::HostedRepo;

/// Audit records read per round.
const AUDIT_BATCH: i64 = 2_000;
/// Reports read per round.
const REPORT_BATCH: i64 = 5_000;
/// Reports are read once they are this old: a report's time is taken before its transaction
/// commits, so a younger one may still be on its way in.
pub(crate) const REPORT_SETTLE_SECS: i64 = 2;
/// Devices the inventory sweep reads at most.
const INVENTORY_MAX: usize = 1_000_000;
/// Stale passes read per round.
const STALE_BATCH: i64 = 5_000;

/// The report statuses the detectors judge.
pub(crate) const REPORT_STATUSES: [&str; 2] = ["verification_failed", "rolled_back"];

/// The audit actions that are signals (written where the change happens, with the change).
pub(crate) mod actions {
    pub(crate) const ATTESTATION_FAILED: &str = "device.attestation_failed";
    pub(crate) const ENROLMENT_REFUSED: &str = "device.attestation_enrolment_refused";
    pub(crate) const HARDWARE_ID_CHANGED: &str = "device.hardware_id_changed";
    pub(crate) const REVOKED_CREDENTIAL_USED: &str = "credential.revoked_use";
    pub(crate) const MONITOR_UNKNOWN_RELEASE: &str = "monitor.unknown_release";
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Signals in the audit log from `from` on, and the sequence number to read next.
pub(crate) async fn audit_signals(db: &Db, from: u64) -> Result<(Vec<Signal>, u64), String> {
    let lines = db
        .audit_lines(from, AUDIT_BATCH)
        .await
        .map_err(|e| format!("reading the audit log: {e}"))?;
    let mut next = from;
    let mut signals = Vec::new();
    for line in lines {
        next = line.seq + 1;
        let record = rampart_audit::parse_jsonl(line.line.as_bytes())
            .map_err(|e| format!("audit record {} does not parse: {e}", line.seq))?
            .pop()
            .ok_or_else(|| format!("audit record {} is empty", line.seq))?;
        let d = &record.details;
        let signal = match record.action.as_str() {
            actions::ATTESTATION_FAILED | actions::ENROLMENT_REFUSED => {
                let enrolment = record.action == actions::ENROLMENT_REFUSED;
                // The release the device claims to run names the cause (a quote of a known
                // device); an enrolment refusal is grouped by its check.
                let release = if enrolment {
                    String::new()
                } else {
                    db.device(&record.subject)
                        .await
                        .map_err(|e| format!("reading device {}: {e}", record.subject))?
                        .map(|dev| dev.facts.firmware_version)
                        .unwrap_or_default()
                };
                let check = text(d, "check");
                Signal::AttestationFailed {
                    device_id: record.subject.clone(),
                    release,
                    check: if enrolment {
                        format!("enrolment_refused:{check}")
                    } else {
                        check
                    },
                    reason: text(d, "reason"),
                    at: record.time,
                }
            }
            actions::HARDWARE_ID_CHANGED => Signal::HardwareIdChange {
                device_id: record.subject.clone(),
                from: text(d, "from"),
                to: text(d, "to"),
                at: record.time,
            },
            actions::REVOKED_CREDENTIAL_USED => Signal::RevokedCredentialUse {
                credential: text(d, "credential"),
                device_id: Some(text(d, "device_id")).filter(|s| !s.is_empty()),
                at: record.time,
                detail: d.clone(),
            },
            actions::MONITOR_UNKNOWN_RELEASE => Signal::UnknownSignedRelease {
                target: text(d, "target"),
                sha256: text(d, "sha256"),
                at: record.time,
                detail: d.clone(),
            },
            _ => continue,
        };
        signals.push(signal);
    }
    Ok((signals, next))
}

/// Result reports after `after` that are at least [`REPORT_SETTLE_SECS`] old at `now`, and
/// the cursor after them.
pub(crate) async fn report_signals(
    db: &Db,
    after: &ReportCursor,
    now: i64,
) -> Result<(Vec<Signal>, ReportCursor), String> {
    let reports = db
        .signal_reports(
            &REPORT_STATUSES,
            after,
            now.saturating_sub(REPORT_SETTLE_SECS),
            REPORT_BATCH,
        )
        .await
        .map_err(|e| format!("reading reports: {e}"))?;
    let mut cursor = after.clone();
    let mut signals = Vec::with_capacity(reports.len());
    for r in reports {
        cursor = ReportCursor {
            created: r.created,
            device_id: r.device_id.clone(),
            id: r.id.clone(),
        };
        signals.push(if r.status == "rolled_back" {
            Signal::RolledBack {
                device_id: r.device_id,
                hardware_id: r.hardware_id,
                release: r.release,
                at: r.created,
            }
        } else {
            Signal::VerificationFailed {
                device_id: r.device_id,
                release: r.release,
                reason: r.reason,
                at: r.created,
            }
        });
    }
    Ok((signals, cursor))
}

/// Devices whose passing quote went stale (at `verified_at + freshness`) and crossed the grace
/// within the window before `now`.
pub(crate) async fn stale_signals(
    db: &Db,
    freshness: i64,
    grace: i64,
    window: i64,
    now: i64,
) -> Result<Vec<Signal>, String> {
    let newest = now.saturating_sub(freshness).saturating_sub(grace);
    let oldest = newest.saturating_sub(window);
    let stale = db
        .stale_attestations_between(oldest, newest, STALE_BATCH)
        .await
        .map_err(|e| format!("reading stale attestations: {e}"))?;
    Ok(stale
        .into_iter()
        .map(|s| Signal::AttestationStale {
            device_id: s.device_id,
            hardware_id: s.hardware_id,
            stale_since: s.verified_at.saturating_add(freshness),
        })
        .collect())
}

/// The slot hashes a device reports: slots given as objects with a `sha256`.
fn slot_hashes(slots: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    slots
        .iter()
        .filter_map(|(slot, v)| {
            let hash = v.get("sha256")?.as_str()?;
            Some((slot.clone(), hash.to_owned()))
        })
        .collect()
}

/// Every device's version and slot hashes, at `now`.
pub(crate) async fn inventory_signals(db: &Db, now: i64) -> Result<Vec<Signal>, String> {
    let mut signals = Vec::new();
    let mut after = String::new();
    while signals.len() < INVENTORY_MAX {
        let page = db
            .inventory_page(&after, rampart_db::MAX_SIGNAL_READ)
            .await
            .map_err(|e| format!("reading the inventory: {e}"))?;
        let Some(last) = page.last() else { break };
        after = last.device_id.clone();
        for row in page {
            signals.push(Signal::Inventory {
                slot_sha256: slot_hashes(&row.slots),
                device_id: row.device_id,
                version: row.firmware_version,
                at: now,
            });
        }
    }
    Ok(signals)
}

/// How far back every read of firmware changes looks again, seconds: a poll's transaction
/// stamps its change with the time the request started and may commit a little later, so the
/// last seconds are read again (the rules do not repeat a finding).
pub(crate) const FIRMWARE_CHANGES_REREAD_SECS: i64 = 5;

/// The devices whose reported firmware changed at or after `from` (Unix seconds), as inventory
/// signals, and where the next read starts (never before `from`): one past the last change
/// read, but no later than [`FIRMWARE_CHANGES_REREAD_SECS`] ago; when the page was full, the
/// last change's second (one past it if the whole page shares `from`'s second: the inventory
/// sweep covers what that skips).
pub(crate) async fn firmware_change_signals(
    db: &Db,
    from: i64,
    now: i64,
) -> Result<(Vec<Signal>, i64), String> {
    let page = db
        .firmware_changed_since(from, rampart_db::MAX_SIGNAL_READ)
        .await
        .map_err(|e| format!("reading the devices whose firmware changed: {e}"))?;
    let full = page.len() as i64 >= rampart_db::MAX_SIGNAL_READ;
    let last = page.last().map_or(from, |(_, at)| *at);
    let next = match (full, last == from) {
        (true, true) => last + 1,
        (true, false) => last,
        (false, _) => (last + 1).min(now - FIRMWARE_CHANGES_REREAD_SECS),
    }
    .max(from);
    let signals = page
        .into_iter()
        .map(|(row, _)| Signal::Inventory {
            slot_sha256: slot_hashes(&row.slots),
            device_id: row.device_id,
            version: row.firmware_version,
            at: now,
        })
        .collect();
    Ok((signals, next))
}

/// The firmware releases the hosted repository lists (`None` without a repository, or when
/// it lists no firmware: then nothing can be judged unknown).
pub(crate) async fn known_releases(
    repo: Option<&Arc<HostedRepo>>,
    now: i64,
) -> Result<Option<KnownReleases>, String> {
    let Some(repo) = repo else { return Ok(None) };
    let repo = repo.clone();
    let catalog = tokio::task::spawn_blocking(move || repo.catalog(now))
        .await
        .map_err(|e| format!("reading the image repository: {e}"))?
        .map_err(|e| format!("reading the image repository: {e}"))?;
    let mut known = KnownReleases::default();
    for release in catalog.releases {
        if let Some(info) = release.release {
            known.versions.insert(info.version);
            known.sha256.insert(release.sha256.to_ascii_lowercase());
        }
    }
    Ok((!known.versions.is_empty()).then_some(known))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slots_that_carry_a_hash_are_judged() {
        let slots = serde_json::json!({"a": "active", "b": {"state": "good", "sha256": "ab"}});
        assert_eq!(
            slot_hashes(slots.as_object().unwrap()),
            [("b".to_owned(), "ab".to_owned())]
        );
    }
}
