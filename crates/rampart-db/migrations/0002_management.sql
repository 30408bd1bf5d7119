-- Management API bearer tokens. Only a SHA-256 of the secret is stored; the secret is shown once.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0
);

-- Operator-managed groups of devices (tags are what devices say about themselves).
CREATE TABLE device_groups (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES device_groups (name) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    PRIMARY KEY (group_name, device_id)
);
CREATE INDEX group_members_device ON group_members (device_id);

-- An operator's decision to install one release (an image-repository target) on a set of devices.
CREATE TABLE assignments (
    id TEXT PRIMARY KEY NOT NULL,
    target TEXT NOT NULL,
    selector TEXT NOT NULL DEFAULT '{}',
    created BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    device_count BIGINT NOT NULL DEFAULT 0
);

-- What each device is currently told to install. `version` only grows: it is the version of the
-- device's director targets metadata, so a device refuses an older (replayed) one.
CREATE TABLE device_assignments (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    assignment_id TEXT NOT NULL DEFAULT '',
    target TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX device_assignments_assignment ON device_assignments (assignment_id);

-- The hash-chained audit log (rampart-audit records, one JSON line each).
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY NOT NULL,
    record TEXT NOT NULL
);
