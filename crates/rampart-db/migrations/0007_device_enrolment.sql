-- How and in which DDI tenant each device row was enrolled (docs/decisions/0021): by its
-- device certificate ('certificate': native mutual TLS, or a DDI tenant accepting
-- certificates), by an operator issuing it a TargetToken ('target_token'), or by a tenant's
-- GatewayToken ('gateway_token'). A certificate never adopts a row a token enrolled, and a
-- token never acts for a row a certificate enrolled. `enrolled_tenant` is '' for rows enrolled
-- natively. Every existing way of inserting a device other than the DDI front is a certificate,
-- hence the default.
ALTER TABLE devices ADD COLUMN enrolled_by TEXT NOT NULL DEFAULT 'certificate';
ALTER TABLE devices ADD COLUMN enrolled_tenant TEXT NOT NULL DEFAULT '';

-- Backfill: a DDI membership created with the device row (not after it) means the DDI front
-- created the row. With a TargetToken the operator issued it; without one it joined by a
-- gateway token or by its certificate, which only a tenant accepting certificates and no
-- gateway token tells apart. The doubtful case counts as a token (the safe side): a
-- certificate then has to be re-bound by an operator rather than adopt a row it may not own.
UPDATE devices SET
    enrolled_tenant = (SELECT m.tenant FROM ddi_devices m WHERE m.device_id = devices.id),
    enrolled_by = CASE
        WHEN (SELECT m.token_hash FROM ddi_devices m WHERE m.device_id = devices.id) <> '' THEN 'target_token'
        WHEN (SELECT t.mtls = 1 AND t.gateway_token = 0 FROM ddi_devices m JOIN ddi_tenants t ON t.name = m.tenant
              WHERE m.device_id = devices.id) THEN 'certificate'
        ELSE 'gateway_token'
    END
WHERE EXISTS (SELECT 1 FROM ddi_devices m WHERE m.device_id = devices.id AND m.created <= devices.first_seen);
