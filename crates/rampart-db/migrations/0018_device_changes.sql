-- What changed on a device, so incident response reacts at the poll that shows it (issue 16).
--
-- When a device's reported firmware (its version or its slots) last changed, Unix seconds.
-- The unknown-firmware detector reads the devices changed since its last round every round,
-- so a device reporting firmware no release has is caught at the poll that reports it, not at
-- the next full inventory sweep. 0: unchanged since before this column.
ALTER TABLE devices ADD COLUMN firmware_changed_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_firmware_changed ON devices (firmware_changed_at, id);

-- The boot the device last reported in its poll facts ('' when it does not say), and the boot
-- its last checked quote came from: a device that rebooted since is asked for a quote at once,
-- whatever the freshness window, so an image changed behind the agent's back is measured at
-- the first poll after the reboot into it. (A hint for timeliness, not a proof: a device that
-- hides its reboots is still re-quoted when the freshness window asks.)
ALTER TABLE devices ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';
ALTER TABLE attestation_states ADD COLUMN quoted_boot_id TEXT NOT NULL DEFAULT '';
