-- Webhooks: operators' HTTPS endpoints that receive signed JSON alerts. The secret is kept in
-- clear because the server must sign with it (an HMAC key cannot be stored as a hash); it is
-- never returned by the API. `events` is a JSON list of event names; `enabled` is 1 or 0.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL DEFAULT '[]',
    description TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1
);

-- The outbox: one row per (event, webhook), written in the transaction that queues the event,
-- so a restart loses nothing. `next_attempt` is in Unix MILLISECONDS (retries back off in
-- sub-second steps in tests); `created` and `delivered` are Unix seconds. While an attempt is in
-- flight `next_attempt` holds the end of its lease, so a crashed server's claim expires.
-- `last_status_code` and `delivered` are 0 when there is none (no NULL binds across backends).
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT NOT NULL DEFAULT '',
    last_status_code BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    delivered BIGINT NOT NULL DEFAULT 0
);
-- The dispatcher's query: due pending deliveries, oldest due first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt);
-- A webhook's deliveries, newest first.
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created);
