-- When a device's reported firmware (its version or its slots) last changed, Unix seconds
-- (issue 16). The unknown-firmware detector reads the devices changed since its last round
-- every round, so a device reporting firmware no release has is caught at the poll that
-- reports it, not at the next full inventory sweep. 0: unchanged since before this column.
ALTER TABLE devices ADD COLUMN firmware_changed_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_firmware_changed ON devices (firmware_changed_at, id);
