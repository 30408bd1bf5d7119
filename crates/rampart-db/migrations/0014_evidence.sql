-- Forensic evidence (issue 16, decision 0034): the server's requests for an evidence bundle,
-- their chunked uploads, the bundles stored, and their transparency-log anchors.

-- One request per `collect_evidence` action: a device uploads to it once (single use). States:
-- open (uploading; `received` bytes are held in the server's spool file), stored (verified and
-- stored content-addressed; `received` is the bundle's length), refused (failed a check;
-- `reason` says which; its bytes were discarded and no longer count against any quota).
-- Quotas are sums over this table (bytes of open and stored requests, bundles stored) per
-- device and per incident, read in the transaction that accepts a chunk.
CREATE TABLE evidence_requests (
    id TEXT PRIMARY KEY NOT NULL,
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    action_id TEXT NOT NULL DEFAULT '',
    nonce TEXT NOT NULL,
    max_bytes BIGINT NOT NULL,
    chunk_bytes BIGINT NOT NULL,
    state TEXT NOT NULL,
    received BIGINT NOT NULL DEFAULT 0,
    requested_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT,
    sha256 TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX evidence_requests_device ON evidence_requests (device_id, state);
CREATE INDEX evidence_requests_incident ON evidence_requests (incident_id, state);

-- A verified bundle: its content address (SHA-256) in the evidence store, the device
-- certificate presented on the upload's connection (DER, hex: what the signature was checked
-- against), the audit record that recorded it, and its transparency-log entry once appended
-- (`log_index`) and proven (`log_proof`, a C2SP tlog-proof with the checkpoint).
CREATE TABLE evidence_bundles (
    request_id TEXT PRIMARY KEY NOT NULL REFERENCES evidence_requests (id) ON DELETE CASCADE,
    incident_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    length BIGINT NOT NULL,
    certificate TEXT NOT NULL,
    quote_checked BIGINT NOT NULL DEFAULT 0,
    stored_at BIGINT NOT NULL,
    audit_seq BIGINT NOT NULL,
    log_entry TEXT NOT NULL,
    log_index BIGINT,
    log_proof TEXT
);
CREATE INDEX evidence_bundles_incident ON evidence_bundles (incident_id, stored_at);
