-- Released quarantines (issue 16): an operator's release deletes the device_quarantine row and
-- leaves one here, so the device's next polls carry a signed `released` statement (its release
-- hook runs) until the device acknowledges it. Only the latest release per device is kept.
-- `issued` is the statement's time (after the quarantine's `since`, so a device that acted on
-- the quarantine statement sees a newer one).
CREATE TABLE device_quarantine_releases (
    device_id TEXT PRIMARY KEY NOT NULL,
    incident_id TEXT NOT NULL DEFAULT '',
    since BIGINT NOT NULL,
    issued BIGINT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    ack_hook TEXT,
    ack_detail TEXT,
    ack_at BIGINT
);
