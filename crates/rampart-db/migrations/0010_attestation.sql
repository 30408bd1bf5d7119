-- Remote attestation (issue 15, docs/decisions/0027). Binary TPM structures are stored as hex.

-- A device's attestation key (AK), bound to it by enrolment: the server sealed a secret to the
-- AK's name and the device's endorsement key (TPM2_MakeCredential), and the device's TPM gave
-- it back (TPM2_ActivateCredential). `ek_basis` says why the EK was trusted: 'certificate' (its
-- chain verified against the operator's EK roots) or 'approved' (an operator approved its
-- public key).
CREATE TABLE attestation_keys (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    ak_public TEXT NOT NULL,
    ak_name TEXT NOT NULL,
    ek_digest TEXT NOT NULL,
    ek_basis TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL
);

-- Enrolments waiting for the device's answer. Only the secret's SHA-256 is kept, compared in
-- constant time; a challenge is single use and expires.
CREATE TABLE attestation_challenges (
    challenge_id TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    ak_public TEXT NOT NULL,
    ak_name TEXT NOT NULL,
    ek_digest TEXT NOT NULL,
    ek_basis TEXT NOT NULL,
    secret_digest TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX attestation_challenges_device ON attestation_challenges (device_id);

-- Nonces the server issued for quotes: single use (`used_at` set when a quote names it, before
-- it is verified), and they expire.
CREATE TABLE attestation_nonces (
    nonce TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX attestation_nonces_device ON attestation_nonces (device_id, expires_at);

-- Each device's last attestation: the outcome of its last quote ('passed' or 'failed', with a
-- reason a person can act on), and of its last passing quote the time, the release it proved
-- and the TPM's counters (the next quote's may not go backwards). "Attested" is never stored:
-- it is computed when read, as passed AND verified_at + freshness > now, so a verifier that
-- stops can only make devices stale. `stale_noted_at` is when the staleness engine audited the
-- passing outcome going stale (NULL until then, cleared by the next quote).
CREATE TABLE attestation_states (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    checked_at BIGINT NOT NULL,
    verified_at BIGINT,
    release TEXT NOT NULL,
    reset_count BIGINT,
    restart_count BIGINT,
    clock BIGINT,
    stale_noted_at BIGINT
);
CREATE INDEX attestation_states_verified ON attestation_states (outcome, verified_at);

-- Endorsement keys an operator approved (TPMs without an EK certificate), by the SHA-256 of
-- their TPMT_PUBLIC.
CREATE TABLE approved_eks (
    ek_digest TEXT PRIMARY KEY NOT NULL,
    ek_public TEXT NOT NULL,
    approved_at BIGINT NOT NULL,
    approved_by TEXT NOT NULL,
    note TEXT NOT NULL
);

-- Security events for incident response: failed and stale attestations, refused enrolments.
-- Kept when a device is deleted (they are its history).
CREATE TABLE security_events (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    device_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX security_events_created ON security_events (created);
CREATE INDEX security_events_device ON security_events (device_id, created);
