-- Devices: created on first authenticated contact, updated by their reports.
CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    hardware_id TEXT NOT NULL DEFAULT '',
    firmware_version TEXT NOT NULL DEFAULT '',
    security_version BIGINT NOT NULL DEFAULT 0,
    region TEXT NOT NULL DEFAULT '',
    slots TEXT NOT NULL DEFAULT '{}',
    attributes TEXT NOT NULL DEFAULT '{}',
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_hardware ON devices (hardware_id);
CREATE INDEX devices_version ON devices (firmware_version);
CREATE INDEX devices_region ON devices (region);

CREATE TABLE device_tags (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_tag ON device_tags (tag);

-- Status, progress and result reports, each stored before the device gets its 2xx.
-- Report ids are chosen by devices, so they are unique per device only.
CREATE TABLE reports (
    id TEXT NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices (id),
    assignment TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    details TEXT NOT NULL DEFAULT '{}',
    created BIGINT NOT NULL,
    PRIMARY KEY (device_id, id)
);
CREATE INDEX reports_device ON reports (device_id, created);
CREATE INDEX reports_assignment ON reports (assignment, status);
