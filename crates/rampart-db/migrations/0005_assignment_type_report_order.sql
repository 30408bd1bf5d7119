-- How the devices of a plain assignment treat it (`forced`, `soft`, `download_only`), as
-- campaigns already record in their spec; existing assignments were all forced.
ALTER TABLE assignments ADD COLUMN update_type TEXT NOT NULL DEFAULT 'forced';

-- The order a device's reports arrived in: `created` is whole seconds, and reports sent within
-- one second must still list newest first and give each device one last status. Per device,
-- 1, 2, 3... (0 for reports stored before this column existed).
ALTER TABLE reports ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
