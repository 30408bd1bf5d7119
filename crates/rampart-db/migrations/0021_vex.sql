-- Vendor-signed VEX documents (issue 17, decision 0047), imported through the management API
-- once their DSSE signature verified against a vendor key the server trusts.
--
-- `id` is the hex SHA-256 of the VEX document (the envelope's payload), so importing the same
-- document twice stores it once; `statements` is the JSON of the statements as
-- rampart_vuln::vex read them (re-read when the server applies them). Statements of every
-- stored document take part together in vex.rs's conflict rule. Every import and removal raises
-- advisory_feed.version in the same transaction, so cached assessments are rebuilt.
CREATE TABLE vex_documents (
    id TEXT PRIMARY KEY NOT NULL,
    signer_key_id TEXT NOT NULL,
    format TEXT NOT NULL,
    statements TEXT NOT NULL,
    statement_count BIGINT NOT NULL,
    imported_at BIGINT NOT NULL
);
CREATE INDEX vex_documents_imported ON vex_documents (imported_at, id);
