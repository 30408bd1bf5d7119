-- hawkBit DDI (docs/ddi.md). A tenant is the path prefix `/{tenant}/controller/v1/...` and the
-- authentication policy of the devices under it. Names are stored upper-case (hawkBit treats
-- `default` and `DEFAULT` as one tenant). Tokens are stored as SHA-256 hex digests only: they
-- are long random secrets, so a plain hash is enough and the server never holds them in clear.
CREATE TABLE ddi_tenants (
    name TEXT PRIMARY KEY NOT NULL,
    target_token BIGINT NOT NULL DEFAULT 1,
    gateway_token BIGINT NOT NULL DEFAULT 0,
    gateway_token_hash TEXT NOT NULL DEFAULT '',
    mtls BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL
);

-- A device's DDI membership: its tenant, its TargetToken digest ('' for none) and whether the
-- server wants its attributes (the poll's configData link).
CREATE TABLE ddi_devices (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id),
    tenant TEXT NOT NULL REFERENCES ddi_tenants (name),
    token_hash TEXT NOT NULL DEFAULT '',
    request_attributes BIGINT NOT NULL DEFAULT 1,
    created BIGINT NOT NULL
);
CREATE INDEX ddi_devices_token ON ddi_devices (token_hash);

-- DDI clients need numeric action and software-module ids; both backends hand them out from
-- one counter row each (the UPDATE locks the row, so concurrent writers never share an id).
CREATE TABLE ddi_counters (
    name TEXT PRIMARY KEY NOT NULL,
    next BIGINT NOT NULL
);
INSERT INTO ddi_counters (name, next) VALUES ('action', 1);
INSERT INTO ddi_counters (name, next) VALUES ('module', 1);

-- A release as a DDI software module: its artifact's name and the digests DDI clients check
-- (sha1 and md5 are computed from the stored bytes once, after their SHA-256 matched the
-- signed metadata).
CREATE TABLE ddi_modules (
    id BIGINT PRIMARY KEY NOT NULL,
    target TEXT NOT NULL UNIQUE,
    filename TEXT NOT NULL,
    version TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha1 TEXT NOT NULL,
    md5 TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created BIGINT NOT NULL
);

-- One assignment of one release to one device, as a DDI action. `assignment_version` is the
-- device assignment's version when the action was made: a re-pointed device gets a new action.
-- `state`: open, canceling, finished, error, canceled, downloaded. `statuses` counts the
-- feedback stored for it (bounded per action).
CREATE TABLE ddi_actions (
    id BIGINT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices (id),
    assignment_id TEXT NOT NULL,
    assignment_version BIGINT NOT NULL,
    target TEXT NOT NULL,
    module_id BIGINT NOT NULL REFERENCES ddi_modules (id),
    update_type TEXT NOT NULL,
    forced_at BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    statuses BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    closed BIGINT NOT NULL DEFAULT 0,
    -- 1 once the device refused a cancellation: the action runs on to its end, not cancelled again.
    cancel_rejected BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX ddi_actions_device ON ddi_actions (device_id, id);
-- At most one active action per device, whatever races between concurrent polls.
CREATE UNIQUE INDEX ddi_actions_one_active ON ddi_actions (device_id) WHERE state IN ('open', 'canceling');

-- The messages of each feedback, for `actionHistory`.
CREATE TABLE ddi_action_messages (
    action_id BIGINT NOT NULL REFERENCES ddi_actions (id),
    seq BIGINT NOT NULL,
    execution TEXT NOT NULL,
    finished TEXT NOT NULL,
    messages TEXT NOT NULL DEFAULT '[]',
    created BIGINT NOT NULL,
    PRIMARY KEY (action_id, seq)
);

-- Time-forced assignments: soft until this Unix time, forced from then on (0: not time-forced).
ALTER TABLE device_assignments ADD COLUMN forced_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assignments ADD COLUMN forced_at BIGINT NOT NULL DEFAULT 0;

-- Each device's report counter (reports.seq): taken with a row-locking UPDATE in the report's
-- transaction, so concurrent reports of one device never share a number (on PostgreSQL too).
ALTER TABLE devices ADD COLUMN report_seq BIGINT NOT NULL DEFAULT 0;
UPDATE devices SET report_seq = (SELECT COALESCE(MAX(r.seq), 0) FROM reports r WHERE r.device_id = devices.id);
