-- Incident detectors (issue 16): how far each signal source has been read, so a restarted
-- server resumes where it stopped (no signal read twice into a closed incident, none skipped).
-- `position` is the source's own cursor (an audit sequence number; a report's time, device
-- and id), as text.
CREATE TABLE detector_cursors (
    source TEXT PRIMARY KEY NOT NULL,
    position TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The reports detector reads result reports (rolled_back, verification_failed) in arrival
-- order; without this index every read would scan every device's reports.
CREATE INDEX reports_status_created ON reports (status, created, device_id, id);
