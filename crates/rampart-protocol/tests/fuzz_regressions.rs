//! Inputs the fuzz targets found (fuzz/, docs/fuzzing.md), kept as tests of the wire types.

use rampart_protocol::AttributesUpdate;

/// fuzz target `device_requests`: a number with more digits than an f64 holds was parsed one
/// unit in the last place off the nearest value, so the attribute the server stored and
/// answered with read back as a different number (serde_json's default float parsing is
/// approximate; the workspace enables its `float_roundtrip`).
#[test]
fn long_attribute_numbers_read_back_as_the_same_number() {
    let body = br#"{"mode":"merge","data":{"sitKe":888777777777777777777777777777777777777777777777770000000000000000000014521283175554435031}}"#;
    let update: AttributesUpdate = serde_json::from_slice(body).unwrap();
    let written = serde_json::to_vec(&update).unwrap();
    let read: AttributesUpdate = serde_json::from_slice(&written).unwrap();
    assert_eq!(read, update);
    // And it is the nearest f64, as Rust's own (correctly rounded) parser gives it.
    let nearest: f64 = "888777777777777777777777777777777777777777777777770000000000000000000014521283175554435031"
        .parse()
        .unwrap();
    assert_eq!(update.data["sitKe"].as_f64(), Some(nearest));
}
