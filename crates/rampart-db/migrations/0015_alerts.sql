-- High-priority alerts (issue 16): the alert outbox every sink is fed from, and each dedupe
-- key's window. Times ending in `_ms` and `next_attempt` are Unix MILLISECONDS (retries back
-- off in sub-second steps in tests); `created` and `settled` are Unix seconds.

-- One row per (alert, sink): `syslog` (sent by the server's syslog sink) or `webhooks` (handed to
-- the signed-webhook outbox, `webhook_deliveries`, as the `incident.alert` event). Written in the
-- transaction that queues the alert, so a restart loses none. States: pending, delivered, failed
-- (given up). While an attempt is in flight `next_attempt` holds the end of its lease.
CREATE TABLE alert_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    alert_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    severity TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL,
    settled BIGINT NOT NULL DEFAULT 0
);
-- The sink's query: its due pending alerts, oldest due first.
CREATE INDEX alert_deliveries_due ON alert_deliveries (sink, status, next_attempt);
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);

-- Each dedupe key's window: when its last alert went out, and the newest alert held back until
-- the window ends (`held_alert` '' when none), with how many it stands for and the sinks they
-- were for. A held alert goes out as one update when `due_ms` passes: repeats are an update,
-- not a flood.
CREATE TABLE alert_keys (
    dedupe_key TEXT PRIMARY KEY NOT NULL,
    last_sent_ms BIGINT NOT NULL,
    held_id TEXT NOT NULL DEFAULT '',
    held_alert TEXT NOT NULL DEFAULT '',
    held_repeats BIGINT NOT NULL DEFAULT 0,
    held_sinks TEXT NOT NULL DEFAULT '[]',
    due_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX alert_keys_due ON alert_keys (held_id, due_ms);
