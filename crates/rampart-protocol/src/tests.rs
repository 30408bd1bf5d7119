//! Known JSON (the exact documents the server and the agent exchanged before these types),
//! round trips, every spelling, and the OpenAPI document against the types.

use std::str::FromStr as _;

use serde_json::{Value, json};

use crate::*;

fn round_trip<T>(text: &str) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_str(text).unwrap();
    assert_eq!(serde_json::to_string(&value).unwrap(), text);
    assert_eq!(serde_json::from_str::<T>(text).unwrap(), value);
    value
}

#[test]
fn poll_answers_are_written_as_before() {
    let answer = round_trip::<PollAnswer>(
        r#"{"device_id":"dev-1","poll_interval_secs":300,"assignment":{"id":"asg-1","target":"fw-2.0.bin","director_version":4,"type":"download_only"}}"#,
    );
    let assignment = answer.assignment.unwrap();
    assert_eq!(assignment.kind, UpdateKind::DownloadOnly);
    assert_eq!(assignment.director_version, 4);
    // Nothing assigned is an explicit null.
    round_trip::<PollAnswer>(r#"{"device_id":"dev-1","poll_interval_secs":60,"assignment":null}"#);
}

#[test]
fn the_agent_reads_answers_tolerantly() {
    // An older server: no interval, no type; a newer one: fields the agent does not know.
    let answer: PollAnswer = serde_json::from_str(
        r#"{"device_id":"d","assignment":{"id":"a","target":"t","director_version":2,"new":1},"hint":"x"}"#,
    )
    .unwrap();
    assert_eq!(answer.poll_interval_secs, None);
    assert_eq!(answer.assignment.unwrap().kind, UpdateKind::Forced);
    let null_type: PollAnswer = serde_json::from_str(
        r#"{"device_id":"d","assignment":{"id":"a","target":"t","director_version":2,"type":null}}"#,
    )
    .unwrap();
    assert_eq!(null_type.assignment.unwrap().kind, UpdateKind::Forced);
    let no_assignment: PollAnswer = serde_json::from_str(r#"{"device_id":"d"}"#).unwrap();
    assert_eq!(no_assignment.assignment, None);
    // A type it does not know is refused, not guessed.
    let err = serde_json::from_str::<PollAnswer>(
        r#"{"device_id":"d","assignment":{"id":"a","target":"t","director_version":2,"type":"later"}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown assignment type \"later\""), "{err}");
    let err: ErrorDocument = serde_json::from_str(r#"{"error":"device_revoked","x":1}"#).unwrap();
    assert_eq!(
        (err.error.as_str(), err.detail.as_str()),
        ("device_revoked", "")
    );
}

#[test]
fn every_update_kind_spelling() {
    for (kind, spelling) in [
        (UpdateKind::Forced, "forced"),
        (UpdateKind::Soft, "soft"),
        (UpdateKind::DownloadOnly, "download_only"),
    ] {
        assert_eq!(kind.as_str(), spelling);
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(spelling));
        assert_eq!(UpdateKind::parse(Some(spelling)), Ok(kind));
    }
    assert_eq!(UpdateKind::parse(None), Ok(UpdateKind::Forced));
    assert!(UpdateKind::parse(Some("timeforced")).is_err());
}

#[test]
fn facts_keep_the_agents_shape() {
    // The agent's poll body: no region, tags or attributes.
    let facts = round_trip::<DeviceFacts>(
        r#"{"hardware_id":"board-a","firmware_version":"1.0.0","security_version":2,"slots":{"a":"active","b":"good"}}"#,
    );
    assert_eq!(facts.attributes, None);
    let full = round_trip::<DeviceFacts>(
        r#"{"hardware_id":"b","firmware_version":"1","security_version":1,"region":"eu","slots":{},"tags":["x"],"attributes":{"battery_pct":80}}"#,
    );
    assert_eq!(full.attributes.unwrap()["battery_pct"], 80);
    // `{}` attributes replace the stored ones; `null` is not a set of attributes.
    let empty: DeviceFacts = serde_json::from_str(
        r#"{"hardware_id":"b","firmware_version":"1","security_version":1,"attributes":{}}"#,
    )
    .unwrap();
    assert_eq!(empty.attributes, Some(serde_json::Map::new()));
    assert!(
        serde_json::from_str::<DeviceFacts>(
            r#"{"hardware_id":"b","firmware_version":"1","security_version":1,"attributes":null}"#
        )
        .is_err()
    );
    // Unknown facts are ignored (a newer agent polling an older server).
    assert!(
        serde_json::from_str::<DeviceFacts>(
            r#"{"hardware_id":"b","firmware_version":"1","security_version":1,"uptime":5}"#
        )
        .is_ok()
    );
    assert!(serde_json::from_str::<DeviceFacts>(r#"{"hardware_id":"b"}"#).is_err());
}

#[test]
fn reports_are_written_as_the_agent_wrote_them() {
    let report = round_trip::<ReportRequest>(
        r#"{"id":"r-1","status":"downloading","details":{"target":"t","written":10},"assignment":"asg-1","progress":40}"#,
    );
    assert_eq!(report.status, ReportStatus::Downloading);
    assert_eq!(report.progress, Some(40));
    round_trip::<ReportRequest>(
        r#"{"id":"r-2","status":"rolled_back","details":{"reason":"health_check_failed"}}"#,
    );
    round_trip::<ReportAnswer>(r#"{"id":"r-1","created":1700000000,"duplicate":false}"#);
}

#[test]
fn the_server_reads_reports_strictly() {
    let parse = |text: &str| serde_json::from_str::<ReportRequest>(text);
    assert!(parse(r#"{"id":"r","status":"installed","extra":1}"#).is_err());
    assert!(parse(r#"{"id":"r","status":"done"}"#).is_err());
    assert!(parse(r#"{"id":"r","status":"installed","progress":null}"#).is_err());
    assert!(parse(r#"{"id":"r","status":"installed","progress":-1}"#).is_err());
    assert!(parse(r#"{"status":"installed"}"#).is_err());
    // Absent and null optional fields are the same (as before).
    let minimal =
        parse(r#"{"id":"r","status":"installed","assignment":null,"details":null}"#).unwrap();
    assert_eq!(
        (minimal.assignment, minimal.progress, minimal.details),
        (None, None, None)
    );
    // Out-of-range progress is the server's to refuse, with its own message.
    assert_eq!(
        parse(r#"{"id":"r","status":"installing","progress":300}"#)
            .unwrap()
            .progress,
        Some(300)
    );
}

#[test]
fn every_report_status_spelling() {
    let spellings = [
        "downloading",
        "downloaded",
        "installing",
        "installed",
        "rebooting",
        "failed",
        "rolled_back",
        "cancelled",
        "verification_failed",
    ];
    assert_eq!(ReportStatus::ALL.len(), spellings.len());
    for (i, (status, spelling)) in ReportStatus::ALL.iter().zip(spellings).enumerate() {
        assert_eq!(*status as usize, i);
        assert_eq!(status.as_str(), spelling);
        assert_eq!(status.to_string(), spelling);
        assert_eq!(serde_json::to_value(status).unwrap(), json!(spelling));
        assert_eq!(
            serde_json::from_value::<ReportStatus>(json!(spelling)).unwrap(),
            *status
        );
        assert_eq!(ReportStatus::from_str(spelling), Ok(*status));
        assert!(*status == spelling && *status != "Installed");
    }
    assert_eq!(
        ReportStatus::from_str("Installed"),
        Err(UnknownStatus("Installed".into()))
    );
}

#[test]
fn every_reason_spelling() {
    let reasons = [
        (Reason::Ok, "ok"),
        (Reason::MetadataInvalid, "metadata_invalid"),
        (Reason::HashMismatch, "hash_mismatch"),
        (Reason::TooLong, "too_long"),
        (Reason::Truncated, "truncated"),
        (Reason::DownloadStalled, "download_stalled"),
        (Reason::DownloadFailed, "download_failed"),
        (Reason::PollRefused, "poll_refused"),
        (Reason::HardwareIncompatible, "hardware_incompatible"),
        (Reason::SecurityVersionRollback, "security_version_rollback"),
        (Reason::NotInTransparencyLog, "not_in_transparency_log"),
        (Reason::ReleaseInvalid, "release_invalid"),
        (Reason::SlotTooSmall, "slot_too_small"),
        (Reason::SlotIo, "slot_io"),
        (Reason::BootEnvCorrupt, "boot_env_corrupt"),
        (Reason::BootloaderFailed, "bootloader_failed"),
        (Reason::StateCorrupt, "state_corrupt"),
        (Reason::HealthCheckFailed, "health_check_failed"),
        (Reason::BootloaderFallback, "bootloader_fallback"),
        (Reason::UnexpectedSlot, "unexpected_slot"),
        (Reason::Cancelled, "cancelled"),
        (Reason::TpmFailed, "tpm_failed"),
    ];
    for (reason, spelling) in reasons {
        assert_eq!(reason.as_str(), spelling);
        assert_eq!(serde_json::to_value(reason).unwrap(), json!(spelling));
        assert_eq!(
            serde_json::from_value::<Reason>(json!(spelling)).unwrap(),
            reason
        );
    }
}

#[test]
fn attribute_updates() {
    let update = round_trip::<AttributesUpdate>(r#"{"mode":"merge","data":{"a":1,"b":null}}"#);
    assert_eq!(update.mode, AttributesMode::Merge);
    round_trip::<AttributesUpdate>(r#"{"mode":"replace","data":{}}"#);
    assert!(serde_json::from_str::<AttributesUpdate>(r#"{"mode":"remove","data":{}}"#).is_err());
    assert!(
        serde_json::from_str::<AttributesUpdate>(r#"{"mode":"merge","data":{},"x":1}"#).is_err()
    );
    assert!(serde_json::from_str::<AttributesUpdate>(r#"{"mode":"merge","data":[]}"#).is_err());
    round_trip::<AttributesAnswer>(r#"{"device_id":"d","attributes":{"z":1,"a":"x"}}"#);
    round_trip::<ErrorDocument>(r#"{"error":"invalid_request","detail":"why"}"#);
}

fn repo_file(path: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn checked_in_schemas_are_generated_from_the_types() {
    let generated = schema::device_api_schemas();
    let checked_in = repo_file(schema::SCHEMAS_FILE);
    let checked_in = checked_in.as_object().unwrap();
    let names = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    let stale = format!(
        "crates/rampart-protocol/{} is not what the types generate; run: cargo run -q -p \
         rampart-protocol --features schema --example device_api_schemas > \
         crates/rampart-protocol/{0}, then python3 scripts/gen-openapi.py > \
         crates/rampart-server/openapi.json",
        schema::SCHEMAS_FILE
    );
    assert_eq!(names(checked_in), names(&generated), "{stale}");
    for (name, schema) in &generated {
        assert_eq!(checked_in.get(name), Some(schema), "{name}: {stale}");
    }
}

/// An answer's status and the schema of its body.
type Answer = (&'static str, &'static str);

/// The device API's bodies in the OpenAPI document: (path, method, request schema, answers).
const DEVICE_BODIES: [(&str, &str, &str, &[Answer]); 6] = [
    (
        "/device/v1/poll",
        "post",
        "DeviceFacts",
        &[("200", "PollAnswer")],
    ),
    (
        "/device/v1/reports",
        "post",
        "ReportRequest",
        &[("200", "ReportAnswer"), ("201", "ReportAnswer")],
    ),
    (
        "/device/v1/attributes",
        "put",
        "AttributesUpdate",
        &[("200", "AttributesAnswer")],
    ),
    (
        "/device/v1/attestation/enrol",
        "post",
        "EnrolRequest",
        &[("200", "EnrolChallenge")],
    ),
    (
        "/device/v1/attestation/activate",
        "post",
        "EnrolProof",
        &[("200", "EnrolAnswer")],
    ),
    (
        "/device/v1/attestation/quote",
        "post",
        "QuoteSubmission",
        &[("200", "AttestationAnswer")],
    ),
];

/// Every `$ref` under `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.trim_start_matches("#/components/schemas/").to_owned());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn openapi_document_and_types_agree_both_ways() {
    let doc = repo_file("../rampart-server/openapi.json");
    let documented = doc["components"]["schemas"].as_object().unwrap();
    // Types -> document: every generated schema is in the document as generated.
    for (name, schema) in schema::device_api_schemas() {
        assert_eq!(
            documented.get(&name),
            Some(&schema),
            "the OpenAPI document's {name} is not the one the types generate; regenerate it \
             (python3 scripts/gen-openapi.py > crates/rampart-server/openapi.json)"
        );
    }
    // Document -> types: the device API's bodies are described by those schemas and no others.
    let generated = schema::device_api_schemas();
    for (path, method, request, answers) in DEVICE_BODIES {
        let op = &doc["paths"][path][method];
        let mut found = Vec::new();
        refs(&op["requestBody"], &mut found);
        assert_eq!(found, [request], "{method} {path}");
        for (status, schema) in answers {
            let mut found = Vec::new();
            refs(&op["responses"][status]["content"], &mut found);
            assert_eq!(found, [*schema], "{method} {path} {status}");
        }
        // Every error answer is the generated error document.
        for (status, answer) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                let mut found = Vec::new();
                refs(&answer["content"], &mut found);
                assert!(
                    found.is_empty() || found == ["Error"],
                    "{method} {path} {status}: {found:?}"
                );
            }
        }
    }
    // And every name those schemas refer to is generated, not written by hand.
    for schema in generated.values() {
        let mut found = Vec::new();
        refs(schema, &mut found);
        for name in found {
            assert!(generated.contains_key(&name), "{name} is not generated");
        }
    }
}

#[test]
fn slot_versions_round_trip_and_interoperate_with_older_peers() {
    // A new agent's poll round-trips.
    let facts = round_trip::<DeviceFacts>(
        r#"{"hardware_id":"board-a","firmware_version":"2.0.0","security_version":2,"slots":{"a":"good","b":"active"},"slot_versions":{"a":"1.0.0","b":"2.0.0"}}"#,
    );
    let versions = facts.slot_versions.unwrap();
    assert_eq!(versions["a"], "1.0.0");
    assert_eq!(versions["b"], "2.0.0");
    // An old agent's poll (no slot_versions): not said, and written back without the key.
    let old = round_trip::<DeviceFacts>(
        r#"{"hardware_id":"board-a","firmware_version":"1.0.0","security_version":2,"slots":{"a":"active","b":"good"}}"#,
    );
    assert_eq!(old.slot_versions, None);
    // An old server reads a new agent's poll: its facts type has no slot_versions and ignores
    // unknown keys, as this crate's own type did before the field.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct OldServerFacts {
        hardware_id: String,
        firmware_version: String,
        security_version: u64,
        #[serde(default)]
        slots: serde_json::Map<String, Value>,
    }
    let new_body = serde_json::to_string(&DeviceFacts {
        hardware_id: "board-a".into(),
        firmware_version: "2.0.0".into(),
        security_version: 2,
        slot_versions: Some([("a".to_owned(), "1.0.0".to_owned())].into()),
        ..DeviceFacts::default()
    })
    .unwrap();
    let read: OldServerFacts = serde_json::from_str(&new_body).unwrap();
    assert_eq!(read.firmware_version, "2.0.0");
    // `{}` is said (no slot version known); `null` is not a map.
    let none_known: DeviceFacts = serde_json::from_str(
        r#"{"hardware_id":"b","firmware_version":"1","security_version":1,"slot_versions":{}}"#,
    )
    .unwrap();
    assert_eq!(none_known.slot_versions, Some(Default::default()));
    assert!(
        serde_json::from_str::<DeviceFacts>(
            r#"{"hardware_id":"b","firmware_version":"1","security_version":1,"slot_versions":null}"#
        )
        .is_err()
    );
}

fn facts_with_slot_versions(versions: &str) -> Result<DeviceFacts, serde_json::Error> {
    serde_json::from_str(&format!(
        r#"{{"hardware_id":"b","firmware_version":"1","security_version":1,"slot_versions":{versions}}}"#
    ))
}

#[test]
fn too_many_slot_versions_are_refused() {
    let slots = |n: usize| {
        let entries: Vec<String> = (0..n).map(|i| format!(r#""s{i}":"1.0.{i}""#)).collect();
        format!("{{{}}}", entries.join(","))
    };
    assert_eq!(
        facts_with_slot_versions(&slots(crate::MAX_SLOT_VERSIONS))
            .unwrap()
            .slot_versions
            .unwrap()
            .len(),
        crate::MAX_SLOT_VERSIONS
    );
    let err = facts_with_slot_versions(&slots(crate::MAX_SLOT_VERSIONS + 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than 8 slots"), "{err}");
}

#[test]
fn slot_version_names_and_versions_are_bounded() {
    let long_name = "n".repeat(crate::MAX_SLOT_NAME_LEN + 1);
    let long_version = "1".repeat(crate::MAX_SLOT_VERSION_LEN + 1);
    for (body, needle) in [
        (format!(r#"{{"{long_name}":"1.0"}}"#), "slot name"),
        (r#"{"":"1.0"}"#.to_owned(), "slot name"),
        (
            format!(r#"{{"a":"{long_version}"}}"#),
            "the version of slot",
        ),
        (r#"{"a":""}"#.to_owned(), "the version of slot"),
        (r#"{"a":"1.0\u0007"}"#.to_owned(), "control characters"),
        (r#"{"a":"1.0","a":"2.0"}"#.to_owned(), "twice"),
        (r#"{"a":1}"#.to_owned(), "invalid type"),
        (r#"["a"]"#.to_owned(), "slot names to firmware versions"),
    ] {
        let err = facts_with_slot_versions(&body).unwrap_err().to_string();
        assert!(err.contains(needle), "{body}: {err}");
    }
    let at_limits = format!(
        r#"{{"{}":"{}"}}"#,
        "n".repeat(crate::MAX_SLOT_NAME_LEN),
        "1".repeat(crate::MAX_SLOT_VERSION_LEN)
    );
    assert!(facts_with_slot_versions(&at_limits).is_ok());
}
