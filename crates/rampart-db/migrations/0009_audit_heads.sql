-- Signed audit heads (rampart-audit's AuditHead as a signed note): each vouches, under the
-- server's audit key, that the audit log had `tree_size` records ending in a given hash. A copy
-- here is a convenience (the newest one for `rampart audit head`); the anchors that count are
-- the ones kept outside this database (off-box copies, the transparency log), since whoever can
-- rewrite audit_log can delete rows here too, but cannot sign new heads.
CREATE TABLE audit_heads (
    tree_size BIGINT PRIMARY KEY,
    signed_at BIGINT NOT NULL,
    note TEXT NOT NULL,
    -- Index of the head's entry in the transparency log, once it was appended there.
    log_index BIGINT
);
