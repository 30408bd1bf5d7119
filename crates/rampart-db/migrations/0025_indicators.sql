-- Indicators from stored events (issue 18): the server counts update results per hour or day
-- and reads the campaigns' success times with SQL aggregates, so a window over a fleet of
-- 100,000 devices walks an index rather than every report or campaign device.
-- Result reports by time (success rate and rollback frequency per bucket).
CREATE INDEX reports_created ON reports (created, status);
-- A campaign's k-th success (time to X% of its targets).
CREATE INDEX campaign_devices_results ON campaign_devices (campaign_id, outcome, result_at);
-- Incidents remediated in a window (detected_at is already indexed with state).
CREATE INDEX incidents_detected ON incidents (detected_at);
CREATE INDEX incidents_recovered ON incidents (recovered_at);
-- Advisories the fleet became known affected by, or was remediated of, in a window.
CREATE INDEX risk_exposure_first_affected ON risk_exposure (first_affected_at);
CREATE INDEX risk_exposure_remediated ON risk_exposure (remediated_at);
