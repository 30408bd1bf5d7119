-- Each advisory's exposure window and its alerts (issue 17, decision 0046).
--
-- One row per advisory that ever affected a device, kept by the server's risk watch (one
-- transaction per pass): `published` is the OSV record's (NULL when absent or unparseable),
-- `first_affected_at` the pass that first saw it affect a device, `remediated_at` the pass that
-- saw the count fall to 0 (NULL while devices run an affected release), `withdrawn_at` the pass
-- that saw it withdrawn (it then counts no devices). `alerted_modified` is the `modified` of the
-- record version last alerted ('' never), `alerted_releases` the release targets alerts named
-- (JSON array): an alert goes out once per version, in the same transaction as this row.
CREATE TABLE risk_exposure (
    advisory_id TEXT PRIMARY KEY NOT NULL,
    published BIGINT,
    first_affected_at BIGINT,
    affected_now BIGINT NOT NULL,
    peak_affected BIGINT NOT NULL,
    remediated_at BIGINT,
    withdrawn_at BIGINT,
    alerted_modified TEXT NOT NULL DEFAULT '',
    alerted_releases TEXT NOT NULL DEFAULT '[]',
    updated_at BIGINT NOT NULL
);
-- The exposure list: open ones oldest first, remediated ones by remediation time.
CREATE INDEX risk_exposure_open ON risk_exposure (remediated_at, withdrawn_at, first_affected_at);
