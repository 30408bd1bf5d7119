-- Campaigns: a release rolled out in waves with health gates (rules in rampart-rollout).
-- `spec` is the operator's request, `state` the rollout state machine's state, both JSON;
-- `status` repeats the state's status for queries.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    release_target TEXT NOT NULL,
    spec TEXT NOT NULL,
    plan TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL,
    status TEXT NOT NULL,
    created BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX campaigns_status ON campaigns (status);

-- Each device of a campaign: its place in the order, its wave, and where it stands.
-- `previous_*` is what the device was told to run before, for aborts and fleet rollbacks.
CREATE TABLE campaign_devices (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    wave BIGINT NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'waiting',
    reason TEXT NOT NULL DEFAULT '',
    previous_assignment TEXT NOT NULL DEFAULT '',
    previous_target TEXT NOT NULL DEFAULT '',
    assigned_at BIGINT,
    result_at BIGINT,
    rollback_outcome TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (campaign_id, device_id)
);
CREATE INDEX campaign_devices_device ON campaign_devices (device_id);
CREATE INDEX campaign_devices_wave ON campaign_devices (campaign_id, wave, outcome);

-- How the device treats its assignment: forced, soft or download_only.
ALTER TABLE device_assignments ADD COLUMN update_type TEXT NOT NULL DEFAULT 'forced';

-- A group's maintenance window (rampart-rollout MaintenanceWindow as JSON; empty: none).
ALTER TABLE device_groups ADD COLUMN maintenance_window TEXT NOT NULL DEFAULT '';
