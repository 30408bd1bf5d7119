-- Supply-chain risk (issue 17, decision 0043).
--
-- Imported OSV advisories, one row per id: `record` is the OSV JSON as imported (re-parsed by
-- rampart_vuln::osv when the server matches), `modified` decides whether a re-import replaces
-- it, `withdrawn` ('' when not withdrawn) keeps a withdrawn advisory visible but out of matching.
CREATE TABLE advisories (
    id TEXT PRIMARY KEY NOT NULL,
    modified TEXT NOT NULL,
    withdrawn TEXT NOT NULL DEFAULT '',
    aliases TEXT NOT NULL DEFAULT '[]',
    record TEXT NOT NULL,
    imported_at BIGINT NOT NULL
);
CREATE INDEX advisories_withdrawn ON advisories (withdrawn, id);

-- The feed's version: raised by every import that changes a stored advisory, in the same
-- transaction, so a server's cached advisory index is rebuilt exactly when the feed changed
-- (by any server on the database) and never served stale.
CREATE TABLE advisory_feed (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO advisory_feed (id, version) VALUES (1, 0);

-- Each alias (CVE, GHSA, ...) of a stored advisory, so one can be looked up by any of its names.
CREATE TABLE advisory_aliases (
    alias TEXT NOT NULL,
    advisory_id TEXT NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
    PRIMARY KEY (alias, advisory_id)
);
CREATE INDEX advisory_aliases_advisory ON advisory_aliases (advisory_id);

-- The components of a release's SBOM, parsed once (per target and SBOM digest) so matching
-- never re-parses SBOMs.
CREATE TABLE release_sboms (
    target TEXT PRIMARY KEY NOT NULL,
    sbom_sha256 TEXT NOT NULL,
    components BIGINT NOT NULL,
    indexed_at BIGINT NOT NULL
);
CREATE TABLE release_components (
    target TEXT NOT NULL REFERENCES release_sboms (target) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    reference TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    purl TEXT NOT NULL DEFAULT '',
    cpe TEXT NOT NULL DEFAULT '',
    component_group TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (target, position)
);
CREATE INDEX release_components_name ON release_components (name);
