-- NVD CVE records for CPE and firmware-name matching (issue 17, decision 0048).
--
-- Kept apart from OSV's `advisories`: an NVD record is identified by its CVE id, which an OSV
-- record may also use as its own id (osv.dev publishes CVE-... records), and it is matched by
-- CPE, not by package. `record` is the NVD API's vulnerability item (`{"cve":{...}}`) as
-- imported, re-parsed by rampart_vuln::nvd when the server matches; `last_modified` and
-- `status` decide whether a re-import replaces it; a `Rejected` record stays stored, out of
-- matching. Every import that changes a record raises `advisory_feed.version` (0019).
CREATE TABLE nvd_advisories (
    id TEXT PRIMARY KEY NOT NULL,
    last_modified TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT '',
    record TEXT NOT NULL,
    imported_at BIGINT NOT NULL
);
CREATE INDEX nvd_advisories_status ON nvd_advisories (status, id);
