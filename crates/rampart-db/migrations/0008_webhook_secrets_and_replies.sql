-- Webhook secrets at rest are sealed by the server with its secrets key (ChaCha20-Poly1305; see
-- docs/decisions/0019-webhook-address-policy-and-sealed-secrets.md). `secret_key_id` names the
-- key that sealed `secret`; '' marks a secret stored in clear by an older server, which the
-- server seals when it next starts.
ALTER TABLE webhooks ADD COLUMN secret_key_id TEXT NOT NULL DEFAULT '';

-- Deliveries keep the length of the endpoint's answer, never its body: a receiver's answer
-- (an internal service's error page, say) must not be readable through the management API.
-- -1 when there was no answer.
ALTER TABLE webhook_deliveries ADD COLUMN last_reply_bytes BIGINT NOT NULL DEFAULT -1;

-- Older servers quoted up to 200 characters of an error answer in `last_error`: drop them,
-- keeping the status.
UPDATE webhook_deliveries
SET last_error = 'the endpoint answered HTTP ' || CAST(last_status_code AS TEXT) || ' (its reply is not stored)'
WHERE last_status_code <> 0 AND last_error <> '';
