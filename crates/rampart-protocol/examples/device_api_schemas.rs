//! Prints the device API's JSON Schemas, generated from the wire types, for
//! `crates/rampart-protocol/device-api-schemas.json` (read by `scripts/gen-openapi.py`):
//!
//! ```text
//! cargo run -q -p rampart-protocol --features schema --example device_api_schemas \
//!     > crates/rampart-protocol/device-api-schemas.json
//! ```

fn main() {
    let schemas = rampart_protocol::schema::device_api_schemas();
    let text = serde_json::to_string_pretty(&schemas).expect("schemas serialize");
    println!("{text}");
}
