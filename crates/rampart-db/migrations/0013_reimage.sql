-- Forced re-imaging (issue 16): an assignment may be a re-image, which its devices install
-- even over the release they run, then write into their other slot too, and which bypasses
-- soft-update checks and maintenance windows. 1 for a re-image, 0 otherwise (existing
-- assignments were not).
ALTER TABLE assignments ADD COLUMN reimage BIGINT NOT NULL DEFAULT 0;
ALTER TABLE device_assignments ADD COLUMN reimage BIGINT NOT NULL DEFAULT 0;
