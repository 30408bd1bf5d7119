import json
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
def q(name, desc, typ="string", required=False): return {"name": name, "in": "query", "required": required, "description": desc, "schema": {"type": typ}}
def p(name, desc): return {"name": name, "in": "path", "required": True, "description": desc, "schema": {"type": "string"}}
dev_common={"400": err("Malformed JSON"), "403": err("Device revoked in the inventory"), "408": err("Body too slow"), "413": err("Body over the limit"), "415": err("Not JSON"), "422": err("Well-formed but invalid"), "503": err("Storage unavailable; retry")}
paths={
 "/device/v1/poll": {"post": {"summary": "Poll for an assignment; registers the device on first contact and records its facts", "tags":["device"], "security":[{"mtls":[]}],
    "parameters":[{"name":"If-None-Match","in":"header","required":False,"schema":{"type":"string"}}],
    "requestBody": {"required": False, "content": {"application/json": {"schema": {"$ref":"#/components/schemas/DeviceFacts"}}}},
    "responses": {"200": ok("The poll answer, with an ETag", {"$ref":"#/components/schemas/PollAnswer"}), "304": ok("Unchanged since If-None-Match"), **dev_common}}},
 "/device/v1/reports": {"post": {"summary": "Store a status, progress or result report (durable before the 201; idempotent by id)", "tags":["device"], "security":[{"mtls":[]}],
    "requestBody": body({"$ref":"#/components/schemas/ReportRequest"}),
    "responses": {"201": ok("Stored", obj), "200": ok("An identical report with this id was already stored", obj), "409": err("The id was used for a different report"), **dev_common}}},
 "/device/v1/attributes": {"put": {"summary": "Merge or replace the device's free key/values", "tags":["device"], "security":[{"mtls":[]}],
    "requestBody": body({"type":"object","required":["mode","data"],"properties":{"mode":{"type":"string","enum":["merge","replace"]},"data":obj}}),
    "responses": {"200": ok("The stored attributes", obj), **dev_common}}},
 "/device/v1/director/{file}": {"get": {"summary": "Director metadata: root.json, N.root.json (rotations) or targets.json (this device's targets, signed by the director's online key; ETag/304)", "tags":["device"], "security":[{"mtls":[]}],
    "parameters":[p("file","root.json, N.root.json or targets.json"), {"name":"If-None-Match","in":"header","required":False,"schema":{"type":"string"}}],
    "responses": {"200": ok("Signed TUF metadata", obj), "304": ok("Unchanged"), "403": err("Device revoked"), "404": err("No such file, or no assignment"), "409": err("The assigned target is not in the image repository"), "503": err("Image repository or signing unavailable")}}},
 "/device/v1/repo/metadata/{file}": {"get": {"summary": "The hosted image repository's TUF metadata", "tags":["device"], "security":[{"mtls":[]}],
    "parameters":[p("file","e.g. 2.root.json, timestamp.json, 3.snapshot.json, 3.targets.json")],
    "responses": {"200": ok("The file as signed", obj), "400": err("Not a metadata file name"), "403": err("Device revoked"), "404": err("No such file")}}},
 "/device/v1/repo/targets/{path}": {"get": {"summary": "An artifact of the device's assignment (the target and the SBOM, provenance and tlog-proof its release references); Range, If-Range, ETag/If-None-Match", "tags":["device"], "security":[{"mtls":[]}],
    "parameters":[p("path","[dir/]<sha256>.<name> (consistent snapshot)"), {"name":"Range","in":"header","required":False,"schema":{"type":"string"}}, {"name":"If-Range","in":"header","required":False,"schema":{"type":"string"}}, {"name":"If-None-Match","in":"header","required":False,"schema":{"type":"string"}}],
    "responses": {"200": ok("The whole artifact", {"type":"string","format":"binary"}, "application/octet-stream"), "206": ok("The requested range", {"type":"string","format":"binary"}, "application/octet-stream"), "304": ok("Unchanged"), "400": err("Bad path"), "403": err("Not assigned to this device, or device revoked"), "404": err("No such artifact"), "416": err("Range not satisfiable"), "503": err("Image repository unavailable")}}},
 "/api/v1/openapi.json": {"get": mgmt("This document", "read", {"200": ok("OpenAPI 3.1", obj)})},
 "/api/v1/devices": {"get": mgmt("List devices, filtered", "read", {"200": ok("Devices", {"type":"object","properties":{"devices":{"type":"array","items":{"$ref":"#/components/schemas/Device"}}}}), "422": err("Bad query")},
    [q("hardware_id","Exact hardware id"), q("firmware_version","Exact firmware version"), q("region","Exact region"), q("tag","Has this tag"), q("group","Member of this group"), q("min_security_version","At least this security version","integer"), q("attribute","key=value: attribute key equals value"), q("slot","name=state: slot name reports state (e.g. b=bad)"), q("limit","Page size, 1-1000 (default 100)","integer"), q("offset","Skip this many","integer")])},
 "/api/v1/devices/{id}": {"get": mgmt("One device with its assignment, update status and recent reports", "read", {"200": ok("The device", obj), "404": err("Unknown device")}, [p("id","Device id")])},
 "/api/v1/devices/{id}/revoke": {"post": mgmt("Revoke a device: it is refused by the device API from now on (audited)", "operate", {"200": ok("Revoked", obj), "404": err("Unknown device")}, [p("id","Device id")],
    {"required": False, "content": {"application/json": {"schema": {"type":"object","properties":{"reason":{"type":"string"}}}}}})},
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
      body({"type":"object","required":["target"],"properties":{"target":{"type":"string"},"devices":{"type":"array","items":{"type":"string"}},"group":{"type":"string"},"tag":{"type":"string"},"hardware_id":{"type":"string"},"region":{"type":"string"}}}))},
 "/api/v1/assignments/{id}": {"get": mgmt("An assignment with device counts by last reported status", "read", {"200": ok("Assignment", obj), "404": err("Unknown assignment")}, [p("id","Assignment id")])},
 "/api/v1/assignments/{id}/cancel": {"post": mgmt("Cancel: devices still pointed at it are told to install nothing (audited)", "operate", {"200": ok("Cancelled", obj), "404": err("Unknown assignment")}, [p("id","Assignment id")])},
 "/api/v1/reports": {"get": mgmt("A device's reports", "read", {"200": ok("Reports", obj), "404": err("Unknown device"), "422": err("Missing device")}, [q("device","Device id", required=True)])},
 "/api/v1/audit": {"get": mgmt("Export the audit log", "audit", {"200": {"description":"Records","content":{"application/jsonl":{"schema":{"type":"string"}},"application/json":{"schema":{"type":"array"}},"text/csv":{"schema":{"type":"string"}}}}, "422": err("Bad format")},
    [q("format","jsonl (default), json or csv"), q("from","First sequence number","integer"), q("limit","At most this many records (default 100000)","integer")])},
 "/api/v1/tokens": {"get": mgmt("List tokens (never their secrets)", "admin", {"200": ok("Tokens", obj)}),
    "post": mgmt("Create a token; the secret is returned once (audited)", "admin", {"201": ok("The token and its secret", obj), "422": err("Unknown role")}, None,
      body({"type":"object","required":["role"],"properties":{"role":{"type":"string","enum":["admin","operator","viewer","auditor"]},"name":{"type":"string"}}}))},
 "/api/v1/tokens/{id}": {"delete": mgmt("Revoke a token (audited)", "admin", {"204": ok("Revoked"), "404": err("Unknown token")}, [p("id","Token id")])},
}
doc={"openapi":"3.1.0","info":{"title":"Rampart update server","version":"1","description":"Device API (mutual TLS, identity = client certificate) and management API (HTTPS, bearer tokens with roles admin, operator, viewer, auditor). Errors are {\"error\": code, \"detail\": explanation}."},
 "paths": paths,
 "components": {"securitySchemes": {"mtls": {"type":"mutualTLS","description":"A device certificate issued by the manufacturer CA; its common name is the device id"}, "bearer": {"type":"http","scheme":"bearer","description":"A token from `rampart token create`"}},
  "schemas": {
   "Error": {"type":"object","required":["error","detail"],"properties":{"error":{"type":"string"},"detail":{"type":"string"}}},
   "DeviceFacts": {"type":"object","properties":{"hardware_id":{"type":"string"},"firmware_version":{"type":"string"},"security_version":{"type":"integer"},"region":{"type":"string"},"slots":obj,"tags":{"type":"array","items":{"type":"string"}},"attributes":obj}},
   "Device": {"type":"object","properties":{"id":{"type":"string"},"hardware_id":{"type":"string"},"firmware_version":{"type":"string"},"security_version":{"type":"integer"},"region":{"type":"string"},"slots":obj,"tags":{"type":"array","items":{"type":"string"}},"attributes":obj,"first_seen":{"type":"integer"},"last_seen":{"type":"integer"},"revoked":{"type":"boolean"}}},
   "PollAnswer": {"type":"object","properties":{"device_id":{"type":"string"},"poll_interval_secs":{"type":"integer"},"assignment":{"type":["object","null"]}}},
   "ReportRequest": {"type":"object","required":["id","status"],"properties":{"id":{"type":"string","pattern":"^[A-Za-z0-9._:-]{1,128}$"},"status":{"type":"string","enum":["downloading","downloaded","installing","installed","rebooting","failed","rolled_back","cancelled","verification_failed"]},"assignment":{"type":"string"},"progress":{"type":"integer","minimum":0,"maximum":100},"details":obj}},
   "Assignment": {"type":"object","properties":{"id":{"type":"string"},"target":{"type":"string"},"selector":obj,"created":{"type":"integer"},"created_by":{"type":"string"},"device_count":{"type":"integer"}}},
  }}}
print(json.dumps(doc, indent=1))
