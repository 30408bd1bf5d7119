-- Incident response (issue 16): incidents, the devices in them, their timelines, the actions a
-- playbook runs or holds for approval, and the engines' heartbeats.

-- One incident per cause while it is open: `open_cause` is the detector's dedupe key (e.g.
-- 'attestation_failed:hw-a:release-3') and is set to NULL when the incident closes, so the same
-- cause later opens a new incident. States: detected, contained, eradicated, recovered, closed.
-- Times are Unix seconds; `first_signal_at` is when the earliest evidence happened (a report's
-- or event's own time), so time to detect = detected_at - first_signal_at.
CREATE TABLE incidents (
    id TEXT PRIMARY KEY NOT NULL,
    open_cause TEXT UNIQUE,
    cause TEXT NOT NULL,
    detector TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    title TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    release TEXT NOT NULL DEFAULT '',
    opened_by TEXT NOT NULL,
    first_signal_at BIGINT NOT NULL,
    detected_at BIGINT NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    contained_at BIGINT,
    eradicated_at BIGINT,
    recovered_at BIGINT,
    closed_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX incidents_state ON incidents (state, detected_at);

-- The devices an incident involves. No foreign key to devices: an incident keeps its history
-- when a device is deleted.
CREATE TABLE incident_devices (
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    first_signal_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (incident_id, device_id)
);
CREATE INDEX incident_devices_device ON incident_devices (device_id);

-- Every change and action of an incident; each entry is also an audit record, whose sequence
-- number orders the timeline (`audit_seq` is unique across the whole audit log).
CREATE TABLE incident_timeline (
    audit_seq BIGINT PRIMARY KEY NOT NULL,
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    device_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, audit_seq);

-- Actions of an incident's playbook: run at once, or held until a token of `required_role`
-- approves. States: pending_approval, approved, running, done, failed, rejected.
CREATE TABLE incident_actions (
    id TEXT PRIMARY KEY NOT NULL,
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    device_id TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    required_role TEXT NOT NULL DEFAULT '',
    requested_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_actions_state ON incident_actions (state, requested_at);
CREATE INDEX incident_actions_incident ON incident_actions (incident_id);

-- Each engine's last heartbeat: a stalled engine (no beat within its bound) is an incident.
CREATE TABLE engine_heartbeats (
    engine TEXT PRIMARY KEY NOT NULL,
    beat_at BIGINT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);

-- Quarantined devices (server side, whether the device cooperates or not): no assignments, no
-- campaign waves, only the quarantine routes answer. A row exists while the device is
-- quarantined; only an operator's release deletes it. `ack_*` is the device's last
-- acknowledgement of the signed instruction (its containment hook's outcome).
CREATE TABLE device_quarantine (
    device_id TEXT PRIMARY KEY NOT NULL,
    incident_id TEXT NOT NULL DEFAULT '',
    since BIGINT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    ack_issued BIGINT,
    ack_hook TEXT,
    ack_detail TEXT,
    ack_at BIGINT
);
CREATE INDEX device_quarantine_incident ON device_quarantine (incident_id);
