-- Web console sessions (issue 18, decision 0050): a browser that logged in with an API token
-- holds a random session id in an HttpOnly cookie; only its SHA-256 is stored. A session acts
-- with its token's role and dies with the token (revocation ends it at the next request), at
-- `expires` (absolute) or when unused for the server's idle limit (`last_used`).
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY NOT NULL,
    token_id TEXT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created BIGINT NOT NULL,
    last_used BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
-- The per-token cap keeps the newest sessions of a token.
CREATE INDEX console_sessions_token ON console_sessions (token_id, created);
CREATE INDEX console_sessions_expires ON console_sessions (expires);
