import json
import os
# The native device API's schemas (DeviceFacts, PollAnswer, ReportRequest, ..., Error) are
# generated from the wire types of crates/rampart-protocol (decision 0025); everything else is
# described here.
ROOT=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
with open(os.path.join(ROOT, "crates/rampart-protocol/device-api-schemas.json")) as f:
    device_schemas=json.load(f)
def ref(name): return {"$ref": "#/components/schemas/" + name}
def err(desc): return {"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
def ok(desc, schema=None, ctype="application/json"):
    r={"description": desc}
    if schema is not None: r["content"]={ctype: {"schema": schema}}
    return r
obj={"type":"object"}
def body(schema): return {"required": True, "content": {"application/json": {"schema": schema}}}
common_mgmt={"401": err("Missing, unknown or revoked bearer token"), "403": err("The token's role lacks the permission")}
def mgmt(summary, perm, responses, params=None, request=None, tag="management"):
    op={"summary": summary, "tags":[tag], "security":[{"bearer":[]}], "x-rampart-permission": perm,
        "responses": {**responses, **common_mgmt}}
    if params: op["parameters"]=params
    if request: op["requestBody"]=request
    return op
def q(name, desc, typ="string", required=False, enum=None):
    schema={"type": typ}
    if enum: schema["enum"]=enum
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": schema}
def p(name, desc): return {"name": name, "in": "path", "required": True, "description": desc, "schema": {"type": "string"}}
dev_common={"400": err("Malformed JSON"), "403": err("Device revoked in the inventory"), "408": err("Body too slow"), "413": err("Body over the limit"), "415": err("Not JSON"), "422": err("Well-formed but invalid"), "503": err("Storage unavailable; retry")}
paths={
 "/device/v1/poll": {"post": {"summary": "Poll for an assignment; registers the device on first contact and records its facts", "tags":["device"], "security":[{"mtls":[]}],
    "parameters":[{"name":"If-None-Match","in":"header","required":False,"schema":{"type":"string"}}],
    "requestBody": {"required": False, "content": {"application/json": {"schema": {"oneOf": [{"type":"object","maxProperties":0,"description":"No facts (as no body)"}, {"$ref":"#/components/schemas/DeviceFacts"}]}}}},
    "responses": {"200": ok("The poll answer, with an ETag", {"$ref":"#/components/schemas/PollAnswer"}), "304": ok("Unchanged since If-None-Match"), **dev_common}}},
 "/device/v1/reports": {"post": {"summary": "Store a status, progress or result report (durable before the 201; idempotent by id)", "tags":["device"], "security":[{"mtls":[]}],
    "requestBody": body({"$ref":"#/components/schemas/ReportRequest"}),
    "responses": {"201": ok("Stored", ref("ReportAnswer")), "200": ok("An identical report with this id was already stored", ref("ReportAnswer")), "409": err("The id was used for a different report"), "429": err("The device sends reports faster than its rate (Retry-After says when to send again), or holds its quota of stored reports"), **dev_common}}},
 "/device/v1/attributes": {"put": {"summary": "Merge or replace the device's free key/values", "tags":["device"], "security":[{"mtls":[]}],
    "requestBody": body(ref("AttributesUpdate")),
    "responses": {"200": ok("The stored attributes", ref("AttributesAnswer")), **dev_common}}},
 "/device/v1/attestation/enrol": {"post": {"summary": "Remote attestation, enrolment step 1: the TPM's EK (approved by an operator, or certified by the EK roots) and an attestation key made under it; answers a secret sealed to both (TPM2_MakeCredential). Only with attestation enabled", "tags":["device"], "security":[{"mtls":[]}],
    "requestBody": body(ref("EnrolRequest")),
    "responses": {"200": ok("The challenge (valid 5 minutes)", ref("EnrolChallenge")), **dev_common, "403": err("Device revoked; or enrolment_refused: the EK is neither certified nor approved, or the AK is not a restricted signing key (recorded as a security event)"), "404": err("attestation_disabled: the server does not attest devices"), "429": err("too_many_attestation_requests: over the device's rate (bursts of 20, then one call per 5 s)")}}},
 "/device/v1/attestation/activate": {"post": {"summary": "Remote attestation, enrolment step 2: the secret TPM2_ActivateCredential recovered; the AK is the device's from now on (audited)", "tags":["device"], "security":[{"mtls":[]}],
    "requestBody": body(ref("EnrolProof")),
    "responses": {"200": ok("Enrolled", ref("EnrolAnswer")), **dev_common, "403": err("Device revoked; or activation_failed: a wrong secret, or an unknown, used or expired challenge (recorded; enrol again)"), "404": err("attestation_disabled"), "429": err("too_many_attestation_requests: over the device's rate (bursts of 20, then one call per 5 s)")}}},
 "/device/v1/attestation/quote": {"post": {"summary": "Remote attestation: a TPM2_Quote over the PCRs the poll answer's attestation request names, qualified by its nonce (single use), with the event log; verified against the AK, the counters of the last quote and the signed release the inventory says the device runs", "tags":["device"], "security":[{"mtls":[]}],
    "requestBody": body(ref("QuoteSubmission")),
    "responses": {"200": ok("attested, or failed with the reason (recorded: audit, security event, metrics; the device is not attested until a quote passes)", ref("AttestationAnswer")), **dev_common, "404": err("attestation_disabled"), "409": err("not_enrolled: no attestation key yet"), "429": err("too_many_attestation_requests: over the device's rate (bursts of 20, then one call per 5 s)")}}},
 "/device/v1/quarantine/ack": {"post": {"summary": "What the device's containment (or release) hook did about the signed quarantine statement of its poll answer (audited; the incident's timeline). Changes no quarantine: only an operator releases a device", "tags":["device"], "security":[{"mtls":[]}],
    "requestBody": body(ref("QuarantineAck")),
    "responses": {"200": ok("Stored", obj), "409": err("The device holds no statement of that state issued at that time"), **dev_common}}},
 "/device/v1/director/{file}": {"get": {"summary": "Director metadata: root.json, N.root.json (rotations) or targets.json (this device's targets, signed by the director's online key; ETag/304)", "tags":["device"], "security":[{"mtls":[]}],
    "parameters":[p("file","root.json, N.root.json or targets.json"), {"name":"If-None-Match","in":"header","required":False,"schema":{"type":"string"}}],
    "responses": {"200": ok("Signed TUF metadata", obj), "304": ok("Unchanged"), "403": err("Device revoked, attestation_required (targets.json, under --require-attestation), or quarantined (targets.json; the root files stay readable)"), "404": err("No such file, or no assignment"), "409": err("The assigned target is not in the image repository"), "503": err("Image repository or signing unavailable")}}},
 "/device/v1/repo/metadata/{file}": {"get": {"summary": "The hosted image repository's TUF metadata", "tags":["device"], "security":[{"mtls":[]}],
    "parameters":[p("file","e.g. 2.root.json, timestamp.json, 3.snapshot.json, 3.targets.json")],
    "responses": {"200": ok("The file as signed", obj), "400": err("Not a metadata file name"), "403": err("Device revoked, or quarantined"), "404": err("No such file")}}},
 "/device/v1/repo/targets/{path}": {"get": {"summary": "An artifact of the device's assignment (the target and the SBOM, provenance and tlog-proof its release references); Range, If-Range, ETag/If-None-Match", "tags":["device"], "security":[{"mtls":[]}],
    "parameters":[p("path","[dir/]<sha256>.<name> (consistent snapshot)"), {"name":"Range","in":"header","required":False,"schema":{"type":"string"}}, {"name":"If-Range","in":"header","required":False,"schema":{"type":"string"}}, {"name":"If-None-Match","in":"header","required":False,"schema":{"type":"string"}}],
    "responses": {"200": ok("The whole artifact", {"type":"string","format":"binary"}, "application/octet-stream"), "206": ok("The requested range", {"type":"string","format":"binary"}, "application/octet-stream"), "304": ok("Unchanged"), "400": err("Bad path"), "403": err("Not assigned to this device, device revoked, or attestation_required: the server requires a fresh passing attestation (--require-attestation)"), "404": err("No such artifact"), "416": err("Range not satisfiable"), "503": err("Image repository unavailable")}}},
 "/api/v1/openapi.json": {"get": mgmt("This document", "read", {"200": ok("OpenAPI 3.1", obj)})},
 "/api/v1/devices": {"get": mgmt("List devices, filtered", "read", {"200": ok("Devices", {"type":"object","properties":{"devices":{"type":"array","items":{"$ref":"#/components/schemas/Device"}}}}), "422": err("Bad query")},
    [q("hardware_id","Exact hardware id"), q("firmware_version","Exact firmware version"), q("region","Exact region"), q("tag","Has this tag"), q("group","Member of this group"), q("min_security_version","At least this security version","integer"), q("attribute","key=value: attribute key equals value"), q("slot","name=state: slot name reports state (e.g. b=bad)"), q("limit","Page size, 1-1000 (default 100)","integer"), q("offset","Skip this many","integer")])},
 "/api/v1/devices/{id}": {"get": mgmt("One device with its assignment, update status and recent reports", "read", {"200": ok("The device", obj), "404": err("Unknown device")}, [p("id","Device id")])},
 "/api/v1/devices/{id}/revoke": {"post": mgmt("Revoke a device: it is refused by the device API from now on (audited)", "operate", {"200": ok("Revoked", obj), "404": err("Unknown device")}, [p("id","Device id")],
    {"required": False, "content": {"application/json": {"schema": {"type":"object","properties":{"reason":{"type":"string"}}}}}})},
 "/api/v1/devices/{id}/quarantine": {"post": mgmt("Quarantine a device: no assignments or campaign waves, only the quarantine routes answer it, its polls carry a signed instruction; with revoke, its certificate is revoked too, after the quarantine is written (audited; the incident's timeline)", "operate", {"201": ok("Quarantined", obj), "200": ok("Already quarantined (unchanged)", obj), "404": err("Unknown device"), "422": err("Bad reason or incident")}, [p("id","Device id")],
    {"required": False, "content": {"application/json": {"schema": {"type":"object","properties":{"reason":{"type":"string"},"incident":{"type":"string"},"revoke":{"type":"boolean"}}}}}}),
    "get": mgmt("A device's quarantine and its last release", "read", {"200": ok("Quarantine", obj)}, [p("id","Device id")])},
 "/api/v1/devices/{id}/release": {"post": mgmt("Release a quarantined device, the only way a quarantine ends; its next polls carry a signed released statement (audited; the incident's timeline)", "operate", {"200": ok("Released", obj), "409": err("Not quarantined")}, [p("id","Device id")],
    {"required": False, "content": {"application/json": {"schema": {"type":"object","properties":{"reason":{"type":"string"}}}}}})},
 "/api/v1/quarantine": {"get": mgmt("Quarantined devices, oldest first", "read", {"200": ok("Devices", obj), "422": err("Bad query")}, [q("limit","Page size, 1-1000 (default 100)","integer")])},
 "/api/v1/devices/{id}/reimage": {"post": mgmt("Force a re-image of the device (incident response, audited): the release named, or else the device's last attested-good release, written to both A/B slots; forced, no soft check or maintenance window defers it", "operate", {"201": ok("The re-image assignment and where its release came from (requested or last_attested)", obj), "404": err("Unknown device"), "409": err("no_image_repository"), "422": err("reimage_refused: the device is revoked, never attested and no release was named, the release is unknown, built for other hardware or below the device's anti-rollback floor; or an invalid body")}, [p("id","Device id")],
    {"required": False, "content": {"application/json": {"schema": {"type":"object","additionalProperties": False,"properties":{"release":{"type":"string","description":"Target path of the release; absent: the device's last attested-good release"}}}}}})},
 "/api/v1/devices/{id}/reinstate": {"post": mgmt("Reinstate a revoked device (audited)", "admin", {"200": ok("Reinstated", obj), "404": err("Unknown device")}, [p("id","Device id")])},
 "/api/v1/fleet/versions": {"get": mgmt("Fleet-wide device counts per firmware version", "read", {"200": ok("Counts", obj)})},
 "/api/v1/groups": {"get": mgmt("List groups", "read", {"200": ok("Groups", obj)}),
    "post": mgmt("Create a group (audited)", "operate", {"201": ok("Created", obj), "409": err("Exists"), "422": err("Bad name")}, None, body({"type":"object","required":["name"],"properties":{"name":{"type":"string"},"description":{"type":"string"}}}))},
 "/api/v1/groups/{name}": {"get": mgmt("A group and its member device ids", "read", {"200": ok("Group", obj), "404": err("Unknown group")}, [p("name","Group name")]),
    "delete": mgmt("Delete a group (not its devices; audited)", "operate", {"204": ok("Deleted"), "404": err("Unknown group")}, [p("name","Group name")])},
 "/api/v1/groups/{name}/members": {"post": mgmt("Add and remove members (all or nothing; audited)", "operate", {"200": ok("The group", obj), "404": err("Unknown group or device")}, [p("name","Group name")],
    body({"type":"object","properties":{"add":{"type":"array","items":{"type":"string"}},"remove":{"type":"array","items":{"type":"string"}}}}))},
 "/api/v1/releases": {"get": mgmt("Releases in the hosted image repository (verified as a device would)", "read", {"200": ok("Releases", obj), "409": err("No image repository configured"), "503": err("The image repository does not verify")})},
 "/api/v1/assignments": {"get": mgmt("Assignments, newest first", "read", {"200": ok("Assignments", obj)}),
    "post": mgmt("Assign a release to devices chosen by ids, group, tag, hardware id and/or region (audited)", "operate", {"201": ok("The assignment", {"$ref":"#/components/schemas/Assignment"}), "404": err("Unknown device or group"), "422": err("Unknown release, no matching device, or incompatible hardware")}, None,
      body({"type":"object","required":["target"],"properties":{"target":{"type":"string"},"type":{"type":"string","enum":["forced","soft","download_only","timeforced"],"default":"forced"},"force_after_secs":{"type":"integer","minimum":60,"maximum":2592000,"description":"timeforced only: seconds until it is forced"},"devices":{"type":"array","items":{"type":"string"}},"group":{"type":"string"},"tag":{"type":"string"},"hardware_id":{"type":"string"},"region":{"type":"string"}}}))},
 "/api/v1/assignments/{id}": {"get": mgmt("An assignment with device counts by last reported status", "read", {"200": ok("Assignment", obj), "404": err("Unknown assignment")}, [p("id","Assignment id")])},
 "/api/v1/assignments/{id}/cancel": {"post": mgmt("Cancel: devices still pointed at it are told to install nothing (audited)", "operate", {"200": ok("Cancelled", obj), "404": err("Unknown assignment")}, [p("id","Assignment id")])},
 "/api/v1/reports": {"get": mgmt("A device's reports", "read", {"200": ok("Reports", obj), "404": err("Unknown device"), "422": err("Missing device")}, [q("device","Device id", required=True)])},
 "/api/v1/audit": {"get": mgmt("Export the audit log", "audit", {"200": {"description":"Records","content":{"application/jsonl":{"schema":{"type":"string"}},"application/json":{"schema":{"type":"array"}},"text/csv":{"schema":{"type":"string"}}}}, "422": err("Bad format")},
    [q("format","jsonl (default), json or csv", enum=["jsonl","json","csv"]), q("from","First sequence number","integer"), q("limit","At most this many records (default 100000)","integer")])},
 "/api/v1/audit/head": {"get": mgmt("The newest signed audit head: record count, hash of the last record, time, the signed note (keep copies off the server for `rampart audit verify --head`) and its transparency-log index", "audit", {"200": ok("The head", {"type":"object","properties":{"size":{"type":"integer"},"hash":{"type":"string"},"time":{"type":"integer"},"note":{"type":"string","description":"A signed note (rampart.dev/audit-head/v1) under the server's audit key"},"log_index":{"type":["integer","null"]},"public_key":{"type":["string","null"],"description":"The audit key's verifier key, for --anchor-key"}}}), "404": err("No head has been signed yet"), "409": err("The newest stored head does not parse (the database was tampered with)")})},
 "/api/v1/attestation/approved-eks": {"post": mgmt("Approve a TPM's endorsement key (a TPM without an EK certificate) so its device may enrol an attestation key (audited)", "admin", {"201": ok("Approved now", {"type":"object","properties":{"ek_digest":{"type":"string"},"newly_approved":{"type":"boolean"}}}), "200": ok("Already approved", obj), "404": err("attestation_disabled"), "422": err("Not a base64 TPMT_PUBLIC")}, None,
    body({"type":"object","required":["ek_public"],"additionalProperties":False,"properties":{"ek_public":{"type":"string","description":"The EK's TPMT_PUBLIC, base64 (`tpm2_createek -f tpmt`)"},"note":{"type":"string","maxLength":256}}}))},
 "/api/v1/attestation/status": {"get": mgmt("Devices attested, failed and stale now (a device that never attested is stale), and the server's attestation settings", "read", {"200": ok("Counts", obj), "404": err("attestation_disabled")})},
 "/api/v1/attestation/devices/{id}": {"get": mgmt("A device's attestation, computed at the time of the request: attested, failed (with the reason) or stale", "read", {"200": ok("The attestation", {"type":"object","properties":{"device_id":{"type":"string"},"attestation":ref("AttestationView")}}), "404": err("Unknown device, or attestation_disabled")}, [p("id","Device id")])},
 "/api/v1/attestation/events": {"get": mgmt("Security events (failed and stale attestations, refused enrolments), oldest first, for incident response", "read", {"200": ok("Events", {"type":"object","properties":{"events":{"type":"array","items":ref("SecurityEvent")}}}), "404": err("attestation_disabled"), "422": err("Bad query")},
    [q("since","Unix seconds (default 0)","integer"), q("device","Only this device's"), q("limit","1-1000 (default 100)","integer")])},
 "/api/v1/audit/anchor": {"post": mgmt("Sign a head over the audit log now (the request is audited and covered by the head)", "audit", {"200": ok("The head", {"type":"object","properties":{"size":{"type":"integer"},"hash":{"type":"string"},"time":{"type":"integer"},"note":{"type":"string"},"log_index":{"type":["integer","null"]},"public_key":{"type":["string","null"]}}}), "409": err("The server has no audit key (--audit-key), or the stored log no longer extends the last signed head (rewritten or truncated)")})},
 "/api/v1/incidents": {"get": mgmt("Incidents, newest first, filtered, with their timings (seconds to detect, acknowledge, contain, eradicate, recover, close)", "read", {"200": ok("Incidents", {"type":"object","properties":{"incidents":{"type":"array","items":ref("Incident")}}}), "422": err("Unknown state, severity or detector, bad device id, limit or offset")},
    [q("state","Only incidents in this state", enum=["detected","contained","eradicated","recovered","closed"]), q("severity","Only this severity", enum=["low","medium","high","critical"]), q("detector","Only incidents this detector opened (e.g. attestation_failed, operator)"), q("device","Only incidents this device is in"), q("limit","1-500 (default 100)","integer"), q("offset","Skip this many (default 0)","integer")], tag="incidents"),
    "post": mgmt("Open an incident (its own cause); the operator playbook's actions are requested for its devices (audited, on its timeline)", "operate", {"201": ok("The incident with its devices, timeline and actions", ref("IncidentView")), "422": err("Bad severity, title, devices (at most 1000) or detail")}, None,
      body({"type":"object","required":["severity","title"],"additionalProperties":False,"properties":{"severity":{"type":"string","enum":["low","medium","high","critical"]},"title":{"type":"string","maxLength":256},"devices":{"type":"array","items":{"type":"string"},"maxItems":1000},"release":{"type":"string"},"detail":{"type":"object"}}}), tag="incidents")},
 "/api/v1/incidents/{id}": {"get": mgmt("An incident with its devices, timeline (each entry an audit record), actions and timings", "read", {"200": ok("The incident", ref("IncidentView")), "404": err("unknown_incident")}, [p("id","Incident id (inc-…)")], tag="incidents")},
 "/api/v1/incidents/{id}/ack": {"post": mgmt("Acknowledge an incident (the first acknowledgement is kept; audited)", "operate", {"200": ok("Whether this call acknowledged it", {"type":"object","properties":{"id":{"type":"string"},"newly_acknowledged":{"type":"boolean"}}}), "404": err("unknown_incident"), "422": err("The incident is closed")}, [p("id","Incident id")], tag="incidents")},
 "/api/v1/incidents/{id}/state": {"post": mgmt("Move an incident forward (detected, contained, eradicated, recovered, closed; states may be skipped, never gone back to; audited)", "operate", {"200": ok("The incident", ref("Incident")), "404": err("unknown_incident"), "409": err("It kept changing meanwhile"), "422": err("Unknown state, or a move backwards or from closed")}, [p("id","Incident id")],
      body({"type":"object","required":["state"],"additionalProperties":False,"properties":{"state":{"type":"string","enum":["contained","eradicated","recovered","closed"]},"note":{"type":"string","maxLength":256}}}), tag="incidents")},
 "/api/v1/incidents/{id}/close": {"post": mgmt("Close an incident: its cause may open a new one from now on (audited)", "operate", {"200": ok("The incident", ref("Incident")), "404": err("unknown_incident"), "422": err("Already closed")}, [p("id","Incident id")],
      {"required": False, "content": {"application/json": {"schema": {"type":"object","additionalProperties":False,"properties":{"note":{"type":"string","maxLength":256}}}}}}, tag="incidents")},
 **{f"/api/v1/incidents/{{id}}/{a}": {"post": mgmt(s, "operate", {"202": ok("The actions requested (a device with one pending, approved or running gets no second)", {"type":"object","properties":{"id":{"type":"string"},"action":{"type":"string"},"requested":{"type":"array","items":{"type":"string"}}}}), "404": err("unknown_incident"), "422": err("The incident is closed or has no devices" + (", or the release is unknown" if a == "reimage" else ""))}, [p("id","Incident id")],
      ({"required": False, "content": {"application/json": {"schema": {"type":"object","additionalProperties":False,"properties":{"release":{"type":"string","description":"A firmware target of the hosted image repository; none: each device's last attested-good release"}}}}}} if a == "reimage" else None), tag="incidents")}
    for a, s in [("contain","Quarantine every device of the incident (quarantine actions, approved; audited)"),
                 ("reimage","Re-image every device of the incident onto a known-good release, both slots (reimage actions, approved; audited)"),
                 ("collect","Collect a forensic evidence bundle from every device of the incident (collect_evidence actions, approved; audited)")]},
 **{f"/api/v1/incident-actions/{{id}}/{a}": {"post": mgmt(s, "operate", {"200": ok("The action", ref("IncidentAction")), "403": err("The action is held for approval by a role the token does not have (an admin may approve any)"), "404": err("unknown_incident_action"), "409": err("The action is not pending approval")}, [p("id","Action id (act-…)")], tag="incidents")}
    for a, s in [("approve","Approve an action a playbook held for approval: its executor runs it (audited)"),
                 ("reject","Reject an action a playbook held for approval (audited)")]},
 "/api/v1/playbooks": {"get": mgmt("The playbooks in force: per detector, a default and per-severity plans of actions run at once (`now`) and held for a role's approval (`approve`)", "read", {"200": ok("Playbooks", ref("Playbooks"))}, tag="incidents"),
    "put": mgmt("Store playbooks (detectors not named keep the built-in ones); in force at once and after restarts, over --incident-config (audited)", "admin", {"200": ok("The playbooks in force", ref("Playbooks")), "422": err("Unknown detector, severity, action or role, a missing default, an action named twice, or a device action for a server fault")}, None, body(ref("Playbooks")), tag="incidents")},
 "/api/v1/monitor/alerts": {"post": mgmt("Report the transparency-log monitor's alert: a release signed with the release key that the registry does not know (`rampart log monitor --server`); stored as a security event with its audit record, it opens an unknown_signed_release incident (audited)", "monitor", {"202": ok("Recorded", {"type":"object","properties":{"recorded":{"type":"boolean"},"target":{"type":"string"},"sha256":{"type":"string"}}}), "422": err("Bad target, version, log or sha256")}, None,
    body({"type":"object","required":["target","sha256","index"],"additionalProperties":False,"properties":{"target":{"type":"string","minLength":1,"maxLength":256},"version":{"type":"string","maxLength":128},"sha256":{"type":"string","pattern":"^[0-9a-fA-F]{64}$"},"index":{"type":"integer","minimum":0,"description":"The log entry's index"},"log":{"type":"string","maxLength":256,"description":"The log's origin"}}}))},
 "/api/v1/tokens": {"get": mgmt("List tokens (never their secrets)", "admin", {"200": ok("Tokens", obj)}),
    "post": mgmt("Create a token; the secret is returned once (audited)", "admin", {"201": ok("The token and its secret", obj), "422": err("Unknown role")}, None,
      body({"type":"object","required":["role"],"properties":{"role":{"type":"string","enum":["admin","operator","viewer","auditor","monitor"]},"name":{"type":"string"}}}))},
 "/api/v1/tokens/{id}": {"delete": mgmt("Revoke a token (audited)", "admin", {"204": ok("Revoked"), "404": err("Unknown token")}, [p("id","Token id")])},
 "/api/v1/campaigns": {"get": mgmt("List campaigns (at most 1000, newest first)", "read", {"200": ok("Campaigns", {"type":"object","properties":{"campaigns":{"type":"array","items":{"$ref":"#/components/schemas/CampaignSummary"}}}})}, tag="campaigns"),
    "post": mgmt("Create a campaign as a draft, and start it if asked (audited)", "operate", {"201": ok("The campaign: id, status, state, plan, and what starting it did", {"$ref":"#/components/schemas/CampaignCreated"}), "409": err("No image repository configured, or (when starting) devices in another active campaign"), "422": err("Invalid spec, unknown release, a target that is not a release; when starting: unknown listed devices, incompatible hardware, an empty selection or a gate the canary can never pass"), "503": err("The image repository does not verify")}, None,
      body({"type":"object","required":["spec"],"additionalProperties":False,"properties":{"spec":{"$ref":"#/components/schemas/CampaignSpec"},"start":{"type":"boolean","default":False}}}), tag="campaigns")},
 "/api/v1/campaigns/{id}": {"get": mgmt("A campaign: spec, state, plan, current wave and per-wave figures", "read", {"200": ok("The campaign", {"$ref":"#/components/schemas/CampaignReport"}), "404": err("Unknown campaign")}, [p("id","Campaign id (c-…)")], tag="campaigns")},
 **{f"/api/v1/campaigns/{{id}}/{a}": {"post": mgmt(s, "operate", {"200": ok("The new status and state", {"$ref":"#/components/schemas/CampaignActionResult"}), "404": err("Unknown campaign"), "409": err("The campaign's status does not allow this action" + (", or devices are in another active campaign" if a=="start" else "")), **({"422": err("Unknown listed devices, incompatible hardware, an empty selection or a gate the canary can never pass")} if a=="start" else {})}, [p("id","Campaign id")], tag="campaigns")}
    for a, s in [("start","Start a draft: resolve the targets, check policy and hardware, plan the waves, assign the canary (audited)"),
                 ("pause","Pause a running campaign or one awaiting approval (audited)"),
                 ("resume","Resume a paused campaign; after a gate breach the wave's failures so far are accepted (audited)"),
                 ("abort","Abort: terminal; unfinished assignments are withdrawn (audited)"),
                 ("approve","Approve the current gate and start the next wave (or complete); also overrides a breach of a paused campaign (audited)")]},
 "/api/v1/campaigns/{id}/report": {"get": mgmt("A campaign's report", "read", {"200": {"description":"The report","content":{"application/json":{"schema":{"$ref":"#/components/schemas/CampaignReport"}},"text/csv":{"schema":{"type":"string","description":"One row per wave and a total row: wave,devices,succeeded,failed,rolled_back,verification_failed,in_progress,assigned,held,waiting,cancelled,success_rate,failure_reasons"}}}}, "404": err("Unknown campaign"), "422": err("Unsupported format")},
    [p("id","Campaign id"), q("format","json (default) or csv", enum=["json","csv"])], tag="campaigns")},
 "/api/v1/groups/{name}/maintenance-window": {"put": mgmt("Set the group's maintenance window (audited)", "operate", {"200": ok("The window, whether it is open now and when it next opens", {"type":"object","properties":{"group":{"type":"string"},"maintenance_window":{"$ref":"#/components/schemas/MaintenanceWindow"},"open_now":{"type":"boolean"},"next_open":{"type":["integer","null"]}}}), "404": err("Unknown group"), "422": err("Invalid pattern, duration or time zone")}, [p("name","Group name")], body({"$ref":"#/components/schemas/MaintenanceWindow"}), tag="campaigns"),
    "delete": mgmt("Remove the group's maintenance window (audited)", "operate", {"204": ok("Removed"), "404": err("Unknown group")}, [p("name","Group name")], tag="campaigns")},
 "/api/v1/webhooks": {"get": mgmt("List webhooks (never their secrets)", "read", {"200": ok("Webhooks", {"type":"object","properties":{"webhooks":{"type":"array","items":{"$ref":"#/components/schemas/Webhook"}}}})}, tag="webhooks"),
    "post": mgmt("Register a webhook (audited, without the secret)", "admin", {"201": ok("The webhook", {"$ref":"#/components/schemas/Webhook"}), "422": err("Bad URL, secret, events or description, or a URL leading to an address webhooks may not reach (loopback, private, link-local, ...; see --webhook-allow)"), "503": err("The server has no webhook secrets key (--secrets-key)")}, None,
      body({"type":"object","required":["url","secret","events"],"additionalProperties":False,"properties":{"url":{"type":"string","description":"http(s) URL with a host and no credentials, at most 2048 bytes, leading to a public address or one in the server's --webhook-allow networks"},"secret":{"type":"string","minLength":16,"maxLength":256,"description":"HMAC-SHA256 key of the X-Rampart-Signature"},"events":{"type":"array","items":{"$ref":"#/components/schemas/WebhookEvent"}},"description":{"type":"string","maxLength":256}}}), tag="webhooks")},
 "/api/v1/webhooks/{id}": {"get": mgmt("One webhook", "read", {"200": ok("The webhook", {"$ref":"#/components/schemas/Webhook"}), "404": err("Unknown webhook")}, [p("id","Webhook id (whk-…)")], tag="webhooks"),
    "delete": mgmt("Delete a webhook (audited)", "admin", {"204": ok("Deleted"), "404": err("Unknown webhook")}, [p("id","Webhook id")], tag="webhooks")},
 "/api/v1/webhooks/{id}/deliveries": {"get": mgmt("A webhook's deliveries, newest first (the answers' status and length, never their bodies)", "audit", {"200": ok("Deliveries", {"type":"object","properties":{"webhook":{"type":"string"},"deliveries":{"type":"array","items":{"$ref":"#/components/schemas/WebhookDelivery"}}}}), "404": err("Unknown webhook"), "422": err("Bad query")}, [p("id","Webhook id"), q("limit","At most this many, 1-1000 (default 100)","integer")], tag="webhooks")},
 "/api/v1/webhooks/{id}/test": {"post": mgmt("Queue a webhook.test delivery", "admin", {"202": ok("Queued", {"type":"object","properties":{"webhook":{"type":"string"},"delivery":{"type":"string"},"event":{"type":"string","const":"webhook.test"}}}), "404": err("Unknown webhook")}, [p("id","Webhook id")], tag="webhooks")},
 "/api/v1/ddi/tenants": {"get": mgmt("DDI tenants and the authentication each accepts (never token digests)", "read", {"200": ok("Tenants", {"type":"object","properties":{"tenants":{"type":"array","items":{"$ref":"#/components/schemas/DdiTenant"}}}})}, tag="ddi"),
    "post": mgmt("Create a DDI tenant; with gateway_token its GatewayToken is returned once (audited)", "admin", {"201": ok("The tenant, and its gateway token if one was issued", {"$ref":"#/components/schemas/DdiTenantAnswer"}), "409": err("The tenant exists"), "422": err("Bad name or settings")}, None,
      body({"$ref":"#/components/schemas/DdiTenantRequest"}), tag="ddi")},
 "/api/v1/ddi/tenants/{name}": {"put": mgmt("Change a tenant's authentication; rotate_gateway_token returns a new token once (audited)", "admin", {"200": ok("The tenant, and its gateway token if one was issued", {"$ref":"#/components/schemas/DdiTenantAnswer"}), "404": err("Unknown tenant"), "422": err("Bad settings")}, [p("name","Tenant name (case-insensitive)")],
      body({"$ref":"#/components/schemas/DdiTenantRequest"}), tag="ddi")},
 "/api/v1/ddi/tenants/{name}/devices/{id}/token": {"post": mgmt("Issue a device's TargetToken, returned once; registers the device if new (audited)", "admin", {"201": ok("The token", {"type":"object","properties":{"device":{"type":"string"},"tenant":{"type":"string"},"target_token":{"type":"string"}}}), "404": err("Unknown tenant"), "409": err("The device belongs to another tenant"), "422": err("Bad device id or hardware id")}, [p("name","Tenant name"), p("id","Controller (device) id")],
      {"required": False, "content": {"application/json": {"schema": {"type":"object","additionalProperties":False,"properties":{"hardware_id":{"type":"string","description":"The device's hardware id (DDI clients do not report one)"},"bind_certificate_device":{"type":"boolean","default":False,"description":"For a device its certificate enrolled: the token also speaks for it (refused with 409 otherwise; decision 0021)"}}}}}}, tag="ddi")},
 "/api/v1/ddi/devices/{id}/actions": {"get": mgmt("A device's DDI actions, newest first", "read", {"200": ok("Actions", {"type":"object","properties":{"device":{"type":"string"},"actions":{"type":"array","items":{"$ref":"#/components/schemas/DdiAction"}}}})}, [p("id","Device id")], tag="ddi")},
 "/api/v1/ddi/devices/{id}": {"delete": mgmt("Delete a device and everything stored of it (reports, DDI actions, assignment, memberships; audited): how an operator resolves a row the wrong identity enrolled; the device enrols afresh at its next contact", "admin", {"200": ok("Deleted", obj), "404": err("Unknown device")}, [p("id","Device id")], tag="ddi")},
}
def ddi(summary, responses, params=(), request=None, method_note=None):
    op={"summary": summary, "tags":["ddi"], "security":[{"targetToken":[]},{"gatewayToken":[]},{"mtls":[]}],
        "parameters":[p("tenant","Tenant (case-insensitive)"), p("controllerId","The device id"), *params],
        "responses": {**responses, "401": ok("Unknown tenant, missing, wrong or disabled credential", {"$ref":"#/components/schemas/DdiError"}), "403": ok("Device revoked", {"$ref":"#/components/schemas/DdiError"})}}
    if request: op["requestBody"]=request
    return op
ddi_base="/{tenant}/controller/v1/{controllerId}"
action_p=p("actionId","Action id (a positive number)")
module_p=p("moduleId","Software module id")
fb_body=body({"$ref":"#/components/schemas/DdiFeedback"})
def dok(desc, schema=None): return ok(desc, schema, "application/hal+json")
derr=lambda d: ok(d, {"$ref":"#/components/schemas/DdiError"})
paths.update({
 ddi_base: {"get": ddi("Poll: registers a controller a gateway token or certificate vouches for; config.polling.sleep and links (deploymentBase or cancelAction, installedBase, configData)", {"200": dok("Poll answer", {"$ref":"#/components/schemas/DdiPoll"}), "400": derr("Bad controller id")})},
 ddi_base+"/deploymentBase/{actionId}": {"get": ddi("The deployment of an action: download/update modes, maintenance window, chunks with artifacts, hashes (sha1, md5, sha256) and links", {"200": dok("Deployment", {"$ref":"#/components/schemas/DdiDeployment"}), "400": derr("Bad action id or c"), "404": ok("Unknown action, another device's, or being cancelled (no body)")}, [action_p, q("c","Cache buster (a number; ignored)","integer"), q("actionHistory","Messages of the action to include (negative: up to 100)","integer")])},
 ddi_base+"/deploymentBase/{actionId}/feedback": {"post": ddi("Progress and result; closed+success/failure closes the action, downloaded closes a download-only one; stored as the native report it counts as (campaign gates)", {"200": ok("Stored (empty body)"), "400": derr("Malformed feedback"), "404": derr("Unknown action or another device's"), "405": ok("A cancellation's feedback (execution canceled/rejected) for an action that is not being cancelled (no body)"), "409": derr("The action changed concurrently; send the feedback again"), "410": ok("The action is closed (no body)"), "413": derr("Body over the limit"), "429": derr("More than 50 messages, or 1000 feedback entries for the action")}, [action_p], fb_body)},
 ddi_base+"/cancelAction/{actionId}": {"get": ddi("A withdrawn action: {id, cancelAction: {stopId}}", {"200": dok("Cancellation", {"type":"object","properties":{"id":{"type":"string"},"cancelAction":{"type":"object","properties":{"stopId":{"type":"string"}}}}}), "404": ok("Not being cancelled (no body)")}, [action_p])},
 ddi_base+"/cancelAction/{actionId}/feedback": {"post": ddi("Confirm (closed+success) or refuse (closed+failure, rejected) a cancellation", {"200": ok("Stored (empty body)"), "400": derr("Malformed feedback"), "404": derr("Unknown action or another device's"), "405": derr("The action is not being cancelled"), "409": derr("The action changed concurrently; send the feedback again"), "429": derr("More than 50 messages, or 1000 feedback entries for the action")}, [action_p], fb_body)},
 ddi_base+"/configData": {"put": ddi("Device attributes into the inventory: merge (default), replace or remove; an attribute hardware_id sets the device's hardware id", {"200": ok("Stored (empty body)"), "400": derr("Empty data, bad key or value, bad mode"), "429": derr("More than 100 attributes")}, (), body({"type":"object","required":["data"],"properties":{"mode":{"type":"string","enum":["merge","replace","remove"]},"data":{"type":"object","additionalProperties":{"type":["string","null"],"maxLength":128}}}}))},
 ddi_base+"/installedBase/{actionId}": {"get": ddi("The deployment of a closed (installed or failed) action", {"200": dok("Deployment", {"$ref":"#/components/schemas/DdiDeployment"}), "404": ok("Active or cancelled action (no body)")}, [action_p, q("actionHistory","Messages to include","integer")])},
 ddi_base+"/softwaremodules/{moduleId}/artifacts": {"get": ddi("The artifacts of a module of the device's open or installed action", {"200": dok("Artifacts", {"type":"array","items":{"$ref":"#/components/schemas/DdiArtifact"}}), "404": derr("Not assigned to this device")}, [module_p])},
 ddi_base+"/softwaremodules/{moduleId}/artifacts/{fileName}": {"get": ddi("Download an artifact (HEAD too; single Range, If-Range), or {fileName}.MD5SUM: `<md5>  <name>` without a final newline", {"200": {"description": "The bytes, or the .MD5SUM line", "content": {"application/octet-stream": {"schema": {"type":"string","format":"binary"}}, "text/plain": {"schema": {"type":"string"}}}}, "206": ok("The range", {"type":"string","format":"binary"}, "application/octet-stream"), "404": ok("Not assigned, or no such file"), "416": derr("Range not satisfiable")}, [module_p, p("fileName","The artifact's file name, or it with .MD5SUM")])},
})

# Answers the shared machinery gives on every route of a listener (authentication, the body
# reader and JSON parser of src/http.rs, query and path parsing, storage and the audit writer),
# added to each operation here so no route can miss one. A bounded schemathesis run
# (crates/rampart-system-tests/tests/schemathesis.rs) checks that the server gives no status, and no
# content type, that a route does not list.
def shared_answers(path, method, op):
    has_body = "requestBody" in op
    has_query = any(x["in"] == "query" for x in op.get("parameters", []))
    has_path_param = "{" in path
    writes = method != "get"
    reasons = {}
    def add(code, reason): reasons.setdefault(code, []).append(reason)
    if path.startswith("/api/"):
        add("401", "Missing, unknown or revoked bearer token")
        add("403", "The token's role lacks the permission")
        add("429", "Too many failed authentications from this address: slowed down, retry after Retry-After")
        add("503", "The database is unavailable; retry later (Retry-After)")
        if writes:
            add("503", "the stored audit log does not verify: no change is accepted until an auditor runs `rampart audit verify`")
        if has_body:
            add("400", "The body is not JSON (malformed, empty, or duplicate keys) or could not be read")
            add("408", "The body did not arrive in time")
            add("413", "The body is over the limit")
            add("415", "Content-Type is not application/json")
            add("422", "Well-formed JSON of the wrong shape (missing or unknown field, wrong type) or an unacceptable value")
        if has_query:
            add("422", "A malformed query string, an unknown or repeated parameter, or a value of the wrong type or out of range")
        if "/devices/{id}" in path or any(x["name"] == "device" for x in op.get("parameters", [])):
            add("400", "A device id outside the id grammar (1 to 128 of A-Z a-z 0-9 . _ : -, not . or ..)")
        if has_path_param:
            if writes:
                add("422", "A name or id in the path that the audit log cannot record (control characters, too long)")
        return {code: err("; ".join(r)) for code, r in reasons.items()}
    if path.startswith("/device/"):
        add("403", "Device revoked in the inventory")
        add("409", "The certificate's device id names a device row a DDI token enrolled (error enrolled_by_token; an operator resolves it)")
        add("503", "Storage unavailable; retry later (Retry-After)")
        if has_body:
            add("400", "The body is not JSON (malformed or duplicate keys) or could not be read")
            add("408", "The body did not arrive in time")
            add("413", "The body is over the limit")
            add("415", "Content-Type is not application/json")
            add("422", "Well-formed JSON of the wrong shape or an unacceptable value")
        return {code: err("; ".join(r)) for code, r in reasons.items()}
    # DDI: hawkBit's error document.
    add("400", "A controller, action or module id outside its grammar" + (", or a bad query value" if has_query else ""))
    add("401", "Unknown tenant; missing, wrong or disabled credential; a device of another tenant")
    add("403", "Device revoked")
    add("409", "A client certificate for a device row a token enrolled, or another identity enrolled the controller concurrently")
    add("429", "Too many failed authentications from this address: slowed down, retry after Retry-After")
    add("503", "Storage or the image repository unavailable; retry later")
    if path != ddi_base:
        add("404", "The controller is not registered (only a poll registers one)")
    if has_body:
        add("400", "Malformed body")
        add("408", "The body did not arrive in time")
        add("413", "The body is over the limit")
        add("415", "Content-Type is not application/json")
    return {code: derr("; ".join(r)) for code, r in reasons.items()}

def merged(own, shared):
    """A route's own answer for a status, and the shared one: both reasons; no documented
    content when either sends no body (an empty answer has no Content-Type)."""
    out = {"description": own["description"] + "; " + shared["description"][0].lower() + shared["description"][1:]}
    if "content" in own and "content" in shared:
        out["content"] = {**shared["content"], **own["content"]}
    return out

for path, item in paths.items():
    for method, op in item.items():
        own = op["responses"]
        shared = shared_answers(path, method, op)
        op["responses"] = {code: merged(own[code], shared[code]) if code in own and code in shared else own.get(code) or shared[code]
                           for code in sorted(set(own) | set(shared))}
doc={"openapi":"3.1.0","info":{"title":"Rampart update server","version":"1","description":"Device API (mutual TLS, identity = client certificate), management API (HTTPS, bearer tokens with roles admin, operator, viewer, auditor) and the hawkBit DDI API (HTTPS, TargetToken, GatewayToken or device certificate; its own listener). Errors are {\"error\": code, \"detail\": explanation}; DDI errors are hawkBit's {\"exceptionClass\", \"errorCode\", \"message\"}."},
 "paths": paths,
 "components": {"securitySchemes": {"mtls": {"type":"mutualTLS","description":"A device certificate issued by the manufacturer CA; its common name is the device id"}, "bearer": {"type":"http","scheme":"bearer","description":"A token from `rampart token create`"},
   "targetToken": {"type":"apiKey","in":"header","name":"Authorization","description":"`TargetToken <token>` from `rampart ddi token` (hawkBit DDI)"},
   "gatewayToken": {"type":"apiKey","in":"header","name":"Authorization","description":"`GatewayToken <token>` of the tenant (hawkBit DDI)"}},
  "schemas": {
   "DdiError": {"type":"object","description":"hawkBit's error document","properties":{"exceptionClass":{"type":"string"},"errorCode":{"type":"string"},"message":{"type":"string"}}},
   "DdiTenant": {"type":"object","properties":{"name":{"type":"string"},"target_token":{"type":"boolean"},"gateway_token":{"type":"boolean"},"has_gateway_token":{"type":"boolean"},"mtls":{"type":"boolean"},"created":{"type":"integer"}}},
   "DdiTenantRequest": {"type":"object","additionalProperties":False,"properties":{"name":{"type":"string","pattern":"^[A-Za-z0-9_-]{1,64}$"},"target_token":{"type":"boolean","default":True},"gateway_token":{"type":"boolean","default":False},"mtls":{"type":"boolean","default":False},"rotate_gateway_token":{"type":"boolean","default":False}}},
   "DdiTenantAnswer": {"type":"object","properties":{"tenant":{"$ref":"#/components/schemas/DdiTenant"},"gateway_token":{"type":"string","description":"Only when one was issued; shown once"}}},
   "DdiAction": {"type":"object","properties":{"id":{"type":"integer"},"device_id":{"type":"string"},"assignment_id":{"type":"string"},"assignment_version":{"type":"integer"},"target":{"type":"string"},"module_id":{"type":"integer"},"update_type":{"type":"string"},"forced_at":{"type":"integer"},"state":{"type":"string","enum":["open","canceling","finished","error","canceled","downloaded"]},"statuses":{"type":"integer"},"created":{"type":"integer"},"closed":{"type":"integer"}}},
   "DdiLinks": {"type":"object","additionalProperties":{"type":"object","properties":{"href":{"type":"string"}}}},
   "DdiPoll": {"type":"object","required":["config"],"properties":{"config":{"type":"object","properties":{"polling":{"type":"object","properties":{"sleep":{"type":"string","pattern":"^[0-9]{2}:[0-9]{2}:[0-9]{2}$"}}}}},"_links":{"$ref":"#/components/schemas/DdiLinks"}}},
   "DdiArtifact": {"type":"object","properties":{"filename":{"type":"string"},"size":{"type":"integer"},"hashes":{"type":"object","properties":{"sha1":{"type":"string"},"md5":{"type":"string"},"sha256":{"type":"string"}}},"_links":{"$ref":"#/components/schemas/DdiLinks"}}},
   "DdiDeployment": {"type":"object","properties":{"id":{"type":"string"},"deployment":{"type":"object","properties":{"download":{"type":"string","enum":["skip","attempt","forced"]},"update":{"type":"string","enum":["skip","attempt","forced"]},"maintenanceWindow":{"type":"string","enum":["available","unavailable"]},"chunks":{"type":"array","items":{"type":"object","properties":{"part":{"type":"string"},"version":{"type":"string"},"name":{"type":"string"},"artifacts":{"type":"array","items":{"$ref":"#/components/schemas/DdiArtifact"}}}}}}},"actionHistory":{"type":"object","properties":{"status":{"type":"string"},"messages":{"type":"array","items":{"type":"string"}}}}}},
   "DdiFeedback": {"type":"object","required":["status"],"properties":{"status":{"type":"object","required":["execution","result"],"properties":{"execution":{"type":"string","enum":["closed","proceeding","canceled","scheduled","rejected","resumed","downloaded","download"]},"result":{"type":"object","required":["finished"],"properties":{"finished":{"type":"string","enum":["success","failure","none"]},"progress":{"type":"object"}}},"code":{"type":"integer"},"details":{"type":"array","items":{"type":"string"}}}},"timestamp":{"type":"integer"}}},
   "Device": {"type":"object","properties":{"id":{"type":"string"},"hardware_id":{"type":"string"},"firmware_version":{"type":"string"},"security_version":{"type":"integer"},"region":{"type":"string"},"slots":obj,"tags":{"type":"array","items":{"type":"string"}},"attributes":obj,"first_seen":{"type":"integer"},"last_seen":{"type":"integer"},"revoked":{"type":"boolean"}}},
   "Assignment": {"type":"object","properties":{"id":{"type":"string"},"target":{"type":"string"},"selector":obj,"created":{"type":"integer"},"created_by":{"type":"string"},"device_count":{"type":"integer"},"update_type":{"type":"string","enum":["forced","soft","download_only","timeforced"]},"forced_at":{"type":"integer"}}},
   "Size": {"description":"A number of devices, or a percentage of the campaign's targets (rounded up, at least one)","oneOf":[{"type":"object","required":["devices"],"additionalProperties":False,"properties":{"devices":{"type":"integer","minimum":1}}},{"type":"object","required":["percent"],"additionalProperties":False,"properties":{"percent":{"type":"number","exclusiveMinimum":0,"maximum":100}}}]},
   "Comparison": {"type":"object","required":["attribute","op","value"],"additionalProperties":False,"properties":{"attribute":{"type":"string"},"op":{"type":"string","enum":["eq","ne","gt","gte","lt","lte"]},"value":{"description":"Any JSON value for eq/ne; a number for the ordering operators"}}},
   "Condition": {"oneOf":[{"$ref":"#/components/schemas/Comparison"},{"type":"object","required":["any"],"properties":{"any":{"type":"array","minItems":1,"maxItems":256,"items":{"$ref":"#/components/schemas/Comparison"}}}}]},
   "CampaignSpec": {"type":"object","required":["name","release","targets"],"additionalProperties":False,"properties":{
      "name":{"type":"string","maxLength":200},
      "release":{"type":"string","description":"Target path of the release in the image repository"},
      "rollback_release":{"type":["string","null"],"description":"What a fleet rollback assigns; default: each device's previous assignment"},
      "targets":{"type":"object","additionalProperties":False,"description":"Exactly one of group, filter, devices","properties":{"group":{"type":"string"},"filter":{"type":"object","additionalProperties":False,"properties":{"hardware_id":{"type":"string"},"region":{"type":"string"},"tag":{"type":"string"},"firmware_version":{"type":"string"},"attributes":obj}},"devices":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":1000000}}},
      "policy":{"type":"object","additionalProperties":False,"properties":{"hardware_ids":{"type":"array","items":{"type":"string"}},"regions":{"type":"array","items":{"type":"string"}},"tags":{"type":"array","items":{"type":"string"}},"channels":{"type":"array","items":{"type":"string"}},"conditions":{"type":"array","items":{"$ref":"#/components/schemas/Condition"}}}},
      "phases":{"type":"object","required":["canary"],"additionalProperties":False,"description":"Default: canary 1%, waves 10%, 50%, 100%","properties":{"canary":{"$ref":"#/components/schemas/Size"},"waves":{"type":"array","items":{"$ref":"#/components/schemas/Size"},"description":"Cumulative sizes; a final 100% wave is added"},"exponential":{"type":"object","required":["base","factor"],"additionalProperties":False,"properties":{"base":{"type":"integer","minimum":1},"factor":{"type":"number","minimum":1.1,"maximum":5}}}}},
      "gate":{"type":"object","additionalProperties":False,"properties":{"min_success_pct":{"type":"number","default":95},"max_failure_pct":{"type":"number","default":5},"min_results":{"type":"integer","minimum":1,"default":1},"min_observation_secs":{"type":"integer","maximum":2592000,"default":0},"require_approval":{"type":"boolean","default":False}}},
      "on_breach":{"type":"string","enum":["pause","abort"],"default":"pause"},
      "rollback_on_breach":{"type":"boolean","default":False},
      "update_type":{"type":"string","enum":["forced","soft","download_only","timeforced"],"default":"forced"},"force_after_secs":{"type":"integer","minimum":60,"maximum":2592000,"description":"timeforced only: seconds after a device is assigned until the update is forced"},
      "require_attestation":{"type":"boolean","default":False,"description":"Only devices with a fresh passing remote attestation receive the release; the others are held (not failed) until they attest. Needs a server with attestation enabled"}}},
   "CampaignState": {"type":"object","properties":{"status":{"$ref":"#/components/schemas/CampaignStatus"},"wave":{"type":"integer"},"wave_started":{"type":"integer"},"started":{"type":["integer","null"]},"finished":{"type":["integer","null"]},"halt":{"type":["object","null"],"properties":{"at":{"type":"integer"},"by":{"type":"string","enum":["gate","operator"]},"reason":{"type":"string"},"breach":obj}},"accepted_failures":{"type":"integer"},"rolled_back_at":{"type":["integer","null"]}}},
   "CampaignStatus": {"type":"string","enum":["draft","running","awaiting_approval","paused","aborted","completed"]},
   "CampaignSummary": {"type":"object","properties":{"id":{"type":"string"},"name":{"type":"string"},"release":{"type":"string"},"status":{"$ref":"#/components/schemas/CampaignStatus"},"created":{"type":"integer"},"created_by":{"type":"string"},"waves":{"type":"integer"},"targets":{"type":"integer"}}},
   "CampaignCreated": {"type":"object","properties":{"id":{"type":"string"},"status":{"$ref":"#/components/schemas/CampaignStatus"},"state":{"$ref":"#/components/schemas/CampaignState"},"plan":{"type":"array","items":{"type":"integer"},"description":"Cumulative device counts per wave (empty for a draft)"},"started":{"type":["object","null"],"properties":{"selected":{"type":"integer"},"targets":{"type":"integer"},"excluded":obj,"plan":{"type":"array","items":{"type":"integer"}}}}}},
   "CampaignActionResult": {"type":"object","properties":{"id":{"type":"string"},"status":{"$ref":"#/components/schemas/CampaignStatus"},"state":{"$ref":"#/components/schemas/CampaignState"},"result":obj}},
   "WaveFigures": {"type":"object","properties":{"name":{"type":"string"},"devices":{"type":"integer"},"outcomes":{"type":"object","additionalProperties":{"type":"integer"},"description":"Devices per outcome: waiting, held, assigned, in_progress, succeeded, failed, rolled_back, verification_failed, cancelled"},"succeeded":{"type":"integer"},"failed":{"type":"integer"},"rolled_back":{"type":"integer"},"verification_failed":{"type":"integer"},"success_rate":{"type":["number","null"]},"failure_reasons":{"type":"object","additionalProperties":{"type":"integer"}}}},
   "CampaignReport": {"type":"object","properties":{"id":{"type":"string"},"name":{"type":"string"},"release":{"type":"string"},"status":{"$ref":"#/components/schemas/CampaignStatus"},"created":{"type":"integer"},"created_by":{"type":"string"},"spec":{"$ref":"#/components/schemas/CampaignSpec"},"state":{"$ref":"#/components/schemas/CampaignState"},"plan":{"type":"array","items":{"type":"integer"}},"wave":{"type":"integer"},"wave_name":{"type":"string"},
      "figures":{"type":["object","null"],"properties":{"waves":{"type":"array","items":{"$ref":"#/components/schemas/WaveFigures"}},"total":{"$ref":"#/components/schemas/WaveFigures"},"time_to":{"type":"array","items":{"type":"object","properties":{"percent":{"type":"integer","enum":[50,90,99,100]},"seconds":{"type":["integer","null"]}}}}}},
      "fleet_rollback":{"type":["object","null"],"properties":{"devices":{"type":"integer"},"by_status":{"type":"object","additionalProperties":{"type":"integer"}}}}}},
   "AttestationView": {"type":"object","properties":{"outcome":{"type":"string","enum":["attested","failed","stale"]},"reason":{"type":"string","description":"Why it is not attested ('' when attested)"},"enrolled":{"type":"boolean"},"verified_at":{"type":["integer","null"]},"fresh_until":{"type":["integer","null"]},"release":{"type":"string","description":"The release the last passing quote proved"}}},
   "Incident": {"type":"object","properties":{"id":{"type":"string"},"open_cause":{"type":["string","null"],"description":"The dedupe key while open (detector:key); null once closed"},"cause":{"type":"string"},"detector":{"type":"string"},"severity":{"type":"string","enum":["low","medium","high","critical"]},"state":{"type":"string","enum":["detected","contained","eradicated","recovered","closed"]},"title":{"type":"string"},"detail":{"type":"object"},"release":{"type":"string"},"opened_by":{"type":"string"},"first_signal_at":{"type":"integer"},"detected_at":{"type":"integer"},"acknowledged_at":{"type":["integer","null"]},"acknowledged_by":{"type":["string","null"]},"contained_at":{"type":["integer","null"]},"eradicated_at":{"type":["integer","null"]},"recovered_at":{"type":["integer","null"]},"closed_at":{"type":["integer","null"]},"updated_at":{"type":"integer"},"timings":{"$ref":"#/components/schemas/IncidentTimings"}}},
   "IncidentTimings": {"type":"object","description":"Seconds; null until the state is reached","properties":{"to_detect":{"type":"integer"},"to_acknowledge":{"type":["integer","null"]},"to_contain":{"type":["integer","null"]},"to_eradicate":{"type":["integer","null"]},"to_recover":{"type":["integer","null"]},"to_close":{"type":["integer","null"]}}},
   "IncidentAction": {"type":"object","properties":{"id":{"type":"string"},"incident_id":{"type":"string"},"action":{"type":"string","enum":["quarantine","revoke_certificate","collect_evidence","reimage","alert"]},"device_id":{"type":"string","description":"Empty for incident-wide actions"},"state":{"type":"string","enum":["pending_approval","approved","running","done","failed","rejected"]},"required_role":{"type":"string"},"requested_at":{"type":"integer"},"decided_at":{"type":["integer","null"]},"decided_by":{"type":["string","null"]},"detail":{"type":"object"}}},
   "IncidentView": {"allOf":[{"$ref":"#/components/schemas/Incident"},{"type":"object","properties":{"devices":{"type":"array","items":{"type":"object","properties":{"device_id":{"type":"string"},"joined_at":{"type":"integer"},"first_signal_at":{"type":"integer"},"reason":{"type":"string"}}}},"timeline":{"type":"array","items":{"type":"object","properties":{"audit_seq":{"type":"integer"},"incident_id":{"type":"string"},"at":{"type":"integer"},"kind":{"type":"string"},"actor":{"type":"string"},"device_id":{"type":"string"},"detail":{"type":"object"}}}},"actions":{"type":"array","items":{"$ref":"#/components/schemas/IncidentAction"}}}}]},
   "Playbooks": {"type":"object","description":"detector -> (default | low | medium | high | critical) -> plan","additionalProperties":{"type":"object","additionalProperties":{"type":"object","additionalProperties":False,"properties":{"now":{"type":"array","items":{"type":"string","enum":["quarantine","revoke_certificate","collect_evidence","reimage","alert"]}},"approve":{"type":"array","items":{"type":"object","required":["action","role"],"additionalProperties":False,"properties":{"action":{"type":"string"},"role":{"type":"string","enum":["operator","admin"]}}}}}}}},
   "SecurityEvent": {"type":"object","properties":{"id":{"type":"string"},"kind":{"type":"string","enum":["attestation.failed","attestation.stale","attestation.enrolment_refused"]},"device_id":{"type":"string"},"detail":obj,"created":{"type":"integer"}}},
   "MaintenanceWindow": {"type":"object","required":["cron","duration_secs","timezone"],"additionalProperties":False,"properties":{"cron":{"type":"string","maxLength":256,"description":"Five fields: minute hour day-of-month month day-of-week, e.g. 0 2 * * 6"},"duration_secs":{"type":"integer","minimum":60,"maximum":604800},"timezone":{"type":"string","description":"IANA time zone, e.g. Europe/Berlin"}}},
   "WebhookEvent": {"type":"string","enum":["campaign.gate_breach","campaign.halted","campaign.completed","fleet.rollback_spike","device.verification_failed","incident.alert"]},
   "Webhook": {"type":"object","properties":{"id":{"type":"string"},"url":{"type":"string"},"events":{"type":"array","items":{"$ref":"#/components/schemas/WebhookEvent"}},"description":{"type":"string"},"created":{"type":"integer"},"enabled":{"type":"boolean"}}},
   "WebhookDelivery": {"type":"object","properties":{"id":{"type":"string"},"webhook_id":{"type":"string"},"event":{"type":"string"},"attempts":{"type":"integer"},"next_attempt_ms":{"type":"integer"},"status":{"type":"string","enum":["pending","delivered","failed"]},"last_error":{"type":"string"},"last_status_code":{"type":["integer","null"]},"last_reply_bytes":{"type":["integer","null"],"description":"Length of the last answer's body (declared, or counted up to 64 KiB); the body is never stored"},"created":{"type":"integer"},"delivered":{"type":["integer","null"]}}},
  }}}
by_hand=doc["components"]["schemas"]
if set(by_hand) & set(device_schemas):
    raise SystemExit(f"described both here and by the Rust types: {sorted(set(by_hand) & set(device_schemas))}")
doc["components"]["schemas"]={**device_schemas, **by_hand}
print(json.dumps(doc, indent=1))
