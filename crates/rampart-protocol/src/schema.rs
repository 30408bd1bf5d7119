//! JSON Schemas (2020-12, as OpenAPI 3.1 uses) of the wire types: the device API's schemas in
//! the OpenAPI document's `components.schemas`. Generated here, written to
//! `device-api-schemas.json` by `cargo run -p rampart-protocol --features schema --example
//! device_api_schemas`, and merged into the document by `scripts/gen-openapi.py`.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value};

use crate::{
    AttestationAnswer, AttributesAnswer, AttributesUpdate, DeviceFacts, EnrolAnswer,
    EnrolChallenge, EnrolProof, EnrolRequest, ErrorDocument, EvidenceComplete, EvidenceProgress,
    PollAnswer, QuarantineAck, QuoteSubmission, ReportAnswer, ReportRequest,
};

/// Where the generated schemas are checked in, relative to this crate.
pub const SCHEMAS_FILE: &str = "device-api-schemas.json";

/// The schemas, by name. Request bodies are described as the server reads them (what it
/// accepts: a field with a default may be left out), answers as the server writes them (a
/// field it always writes is required). A name generated both ways must come out the same.
pub fn device_api_schemas() -> Map<String, Value> {
    let mut requests = generator(SchemaSettings::draft2020_12().for_deserialize());
    requests.subschema_for::<DeviceFacts>();
    requests.subschema_for::<ReportRequest>();
    requests.subschema_for::<AttributesUpdate>();
    requests.subschema_for::<EnrolRequest>();
    requests.subschema_for::<EnrolProof>();
    requests.subschema_for::<QuoteSubmission>();
    requests.subschema_for::<QuarantineAck>();
    requests.subschema_for::<EvidenceComplete>();
    let mut answers = generator(SchemaSettings::draft2020_12().for_serialize());
    answers.subschema_for::<PollAnswer>();
    answers.subschema_for::<ReportAnswer>();
    answers.subschema_for::<AttributesAnswer>();
    answers.subschema_for::<ErrorDocument>();
    answers.subschema_for::<EnrolChallenge>();
    answers.subschema_for::<EnrolAnswer>();
    answers.subschema_for::<AttestationAnswer>();
    answers.subschema_for::<EvidenceProgress>();

    let mut out = Map::new();
    for (name, mut schema) in requests
        .take_definitions(true)
        .into_iter()
        .chain(answers.take_definitions(true))
    {
        drop_integer_formats(&mut schema);
        if let Some(other) = out.get(&name) {
            assert_eq!(
                other, &schema,
                "{name} is read and written with different shapes; give the two sides two types"
            );
        }
        out.insert(name, schema);
    }
    out
}

fn generator(settings: SchemaSettings) -> SchemaGenerator {
    settings
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator()
}

/// schemars marks integers with Rust's widths (`"format": "uint64"`), which OpenAPI does not
/// define and the rest of the document does not use; the bounds (`minimum`) stay.
fn drop_integer_formats(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("int") || f.starts_with("uint"))
            {
                map.remove("format");
            }
            map.values_mut().for_each(drop_integer_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_integer_formats),
        _ => {}
    }
}
