-- Incident playbooks stored through the management API (PUT /api/v1/playbooks): one row,
-- `name` = 'playbooks', the JSON of rampart_incident::playbook::Playbooks. While a row exists
-- it is in force instead of the server's --incident-config playbooks.
CREATE TABLE incident_playbooks (
    name TEXT PRIMARY KEY NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
