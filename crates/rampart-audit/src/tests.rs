//! Chain, tampering, serialization and robustness tests.

use serde_json::{Value, json};

use crate::*;

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

const ACTIONS: [(&str, &str); 7] = [
    ("token:ops-1", "release.created"),
    ("device:dev-42", "device.enrolled"),
    ("system", "certificate.refused"),
    ("token:ops-1", "assignment.created"),
    ("token:admin", "token.created"),
    ("token:ops-2", "device.revoked"),
    ("device:dev-7", "verification.failed"),
];

fn build(n: u64) -> Vec<AuditRecord> {
    let mut chain = AuditChain::new();
    (0..n)
        .map(|i| {
            let (actor, action) = ACTIONS[(i % 7) as usize];
            chain
                .append(
                    T0 + i as i64 * 37,
                    actor,
                    action,
                    &format!("dev-{i}"),
                    json!({"index": i, "reason": format!("case {i}"), "tags": ["a", "b"]}),
                )
                .unwrap()
        })
        .collect()
}

fn head_and_count(records: &[AuditRecord]) -> ([u8; 32], u64) {
    (records.last().unwrap().hash, records.len() as u64)
}

#[test]
fn a_chain_of_100_verifies() {
    let records = build(100);
    let v = verify(&records).unwrap();
    assert_eq!(v.count, 100);
    assert_eq!(v.head, records[99].hash);
    assert_eq!(records[0].prev_hash, GENESIS_HASH);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    // Against its own head, and against an older checkpoint (the chain grew since).
    assert_eq!(
        verify_against(&records, Some(head_and_count(&records))).unwrap(),
        v
    );
    assert_eq!(
        verify_against(&records, Some((records[59].hash, 60))).unwrap(),
        v
    );
    assert_eq!(
        verify_against(&records, Some((GENESIS_HASH, 0))).unwrap(),
        v
    );
}

#[test]
fn empty_chain() {
    let v = verify(&[]).unwrap();
    assert_eq!(v.count, 0);
    assert_eq!(v.head, GENESIS_HASH);
    assert_eq!(
        verify_against(&[], Some((GENESIS_HASH, 0))).unwrap().count,
        0
    );
    assert_eq!(
        verify_against(&[], Some(([1; 32], 0))).unwrap_err(),
        AuditError::CheckpointMismatch {
            count: 0,
            expected: [1; 32],
            found: GENESIS_HASH
        }
    );
    assert_eq!(
        verify_against(&[], Some(([1; 32], 3))).unwrap_err(),
        AuditError::Truncated {
            expected_count: 3,
            found_count: 0
        }
    );
}

fn assert_edited(records: Vec<AuditRecord>, seq: u64) {
    match verify(&records).unwrap_err() {
        AuditError::HashMismatch {
            seq: s,
            stored,
            computed,
        } => {
            assert_eq!(s, seq);
            assert_ne!(stored, computed);
        }
        other => panic!("expected HashMismatch at {seq}, got {other}"),
    }
}

type Edit = fn(&mut AuditRecord);

#[test]
fn editing_any_field_of_a_middle_record_is_detected() {
    let original = build(100);
    let edits: Vec<(&str, Edit)> = vec![
        ("actor", |r| r.actor = "token:attacker".into()),
        ("action", |r| r.action = "device.enrolled.x".into()),
        ("subject", |r| r.subject.push('!')),
        ("details value", |r| r.details["reason"] = json!("nothing")),
        ("details new key", |r| r.details["extra"] = json!(1)),
        ("details removed key", |r| {
            r.details.as_object_mut().unwrap().remove("tags");
        }),
        ("time", |r| r.time += 1),
        ("prev_hash", |r| r.prev_hash[0] ^= 1),
        ("hash", |r| r.hash[31] ^= 0x80),
    ];
    for (name, edit) in edits {
        for seq in [0, 1, 50, 99] {
            let mut records = original.clone();
            edit(&mut records[seq as usize]);
            let err = verify(&records).unwrap_err();
            assert!(
                matches!(err, AuditError::HashMismatch { seq: s, .. } if s == seq),
                "{name} at {seq}: {err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("record {seq} was edited"))
            );
            assert_edited(records, seq);
        }
    }
}

#[test]
fn reordering_details_keys_is_not_an_edit() {
    let mut records = build(3);
    let reversed: serde_json::Map<String, Value> = records[1]
        .details
        .as_object()
        .unwrap()
        .iter()
        .rev()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    records[1].details = Value::Object(reversed);
    verify(&records).unwrap();
}

#[test]
fn removing_a_middle_record_is_detected() {
    let mut records = build(100);
    records.remove(50);
    let err = verify(&records).unwrap_err();
    assert_eq!(err, AuditError::Missing { seq: 50, next: 51 });
    assert_eq!(
        err.to_string(),
        "record 50 is missing (removed): the next record present is 51"
    );

    let mut records = build(100);
    records.drain(10..20);
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::Missing { seq: 10, next: 20 }
    );
}

#[test]
fn removing_the_first_record_is_detected() {
    let mut records = build(100);
    records.remove(0);
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::Missing { seq: 0, next: 1 }
    );
}

#[test]
fn removing_the_last_record_is_detected_against_the_published_head() {
    let full = build(100);
    let checkpoint = head_and_count(&full);
    let mut records = full.clone();
    records.pop();
    // Alone, a shorter chain is a valid chain...
    assert_eq!(verify(&records).unwrap().count, 99);
    // ...but not against the head published over 100 records.
    let err = verify_against(&records, Some(checkpoint)).unwrap_err();
    assert_eq!(
        err,
        AuditError::Truncated {
            expected_count: 100,
            found_count: 99
        }
    );
    assert!(err.to_string().contains("records 99 onwards were removed"));
}

#[test]
fn removing_and_renumbering_is_detected() {
    // Remove record 50 and renumber the rest without recomputing hashes.
    let mut records = build(100);
    records.remove(50);
    for r in &mut records[50..] {
        r.seq -= 1;
    }
    assert!(matches!(
        verify(&records).unwrap_err(),
        AuditError::HashMismatch { seq: 50, .. }
    ));

    // Renumber and recompute each hash but keep prev_hash: the link breaks.
    for r in &mut records[50..] {
        r.hash = r.compute_hash();
    }
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::BrokenLink {
            seq: 50,
            expected: records[49].hash,
            found: records[50].prev_hash
        }
    );
}

#[test]
fn rewriting_the_whole_tail_is_detected_only_with_a_checkpoint() {
    let full = build(100);
    let checkpoint = head_and_count(&full);
    let early_checkpoint = (full[59].hash, 60);
    // An attacker with write access removes record 50 and re-chains everything after it.
    let mut chain = AuditChain::resume(Some(&full[49])).unwrap();
    let mut forged: Vec<AuditRecord> = full[..50].to_vec();
    for r in &full[51..] {
        forged.push(
            chain
                .append(r.time, &r.actor, &r.action, &r.subject, r.details.clone())
                .unwrap(),
        );
    }
    forged.push(
        chain
            .append(T0 + 10_000, "system", "padding", "", json!({}))
            .unwrap(),
    );
    assert_eq!(verify(&forged).unwrap().count, 100);
    assert_eq!(
        verify_against(&forged, Some(checkpoint)).unwrap_err(),
        AuditError::CheckpointMismatch {
            count: 100,
            expected: checkpoint.0,
            found: forged[99].hash
        }
    );
    assert!(matches!(
        verify_against(&forged, Some(early_checkpoint)).unwrap_err(),
        AuditError::CheckpointMismatch { count: 60, .. }
    ));
}

#[test]
fn reordering_records_is_detected() {
    let mut records = build(100);
    records.swap(40, 41);
    let err = verify(&records).unwrap_err();
    assert_eq!(
        err,
        AuditError::OutOfOrder {
            expected: 40,
            found: 41
        }
    );
    assert_eq!(
        err.to_string(),
        "records reordered: record 41 stands where record 40 belongs"
    );

    let mut records = build(100);
    records.swap(10, 90);
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::OutOfOrder {
            expected: 10,
            found: 90
        }
    );

    // First and last.
    let mut records = build(100);
    records.swap(0, 99);
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::OutOfOrder {
            expected: 0,
            found: 99
        }
    );

    // Swapped and renumbered, hashes kept: the content no longer matches.
    let mut records = build(100);
    records.swap(40, 41);
    records[40].seq = 40;
    records[41].seq = 41;
    assert!(matches!(
        verify(&records).unwrap_err(),
        AuditError::HashMismatch { seq: 40, .. }
    ));
}

#[test]
fn duplicating_a_record_is_detected() {
    let mut records = build(100);
    let copy = records[30].clone();
    records.insert(31, copy);
    let err = verify(&records).unwrap_err();
    assert_eq!(
        err,
        AuditError::Duplicate {
            seq: 30,
            position: 31
        }
    );
    assert_eq!(
        err.to_string(),
        "record 30 is duplicated: a copy appears at position 31"
    );

    // A copy of an early record later on, and a copy of the last record appended.
    let mut records = build(100);
    let copy = records[5].clone();
    records.insert(70, copy);
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::Duplicate {
            seq: 5,
            position: 70
        }
    );
    let mut records = build(100);
    records.push(records[99].clone());
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::Duplicate {
            seq: 99,
            position: 100
        }
    );

    // A record replaced by a copy of another: record 42 is then missing.
    let mut records = build(100);
    records[42] = records[41].clone();
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::Duplicate {
            seq: 41,
            position: 42
        }
    );
}

#[test]
fn unexpected_seq_is_reported() {
    let mut records = build(10);
    records[9].seq = 3; // not a copy of record 3, and record 9 appears nowhere
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::UnexpectedSeq {
            position: 9,
            expected: 9,
            found: 3
        }
    );
}

#[test]
fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
    let mut records = build(100);
    records[50].details["reason"] = json!("covered up");
    records[50].hash = records[50].compute_hash();
    let err = verify(&records).unwrap_err();
    assert_eq!(
        err,
        AuditError::BrokenLink {
            seq: 51,
            expected: records[50].hash,
            found: records[51].prev_hash
        }
    );
    assert!(err.to_string().starts_with("record 51: prev_hash "));
    assert!(err.to_string().contains("the hash of record 50"));

    // The same on the last record is only visible against a published head.
    let full = build(100);
    let mut records = full.clone();
    records[99].subject = "dev-other".into();
    records[99].hash = records[99].compute_hash();
    verify(&records).unwrap();
    assert!(matches!(
        verify_against(&records, Some(head_and_count(&full))).unwrap_err(),
        AuditError::CheckpointMismatch { count: 100, .. }
    ));
}

#[test]
fn a_first_record_not_linked_to_genesis_is_detected() {
    let mut records = build(5);
    records[0].prev_hash = [7; 32];
    records[0].hash = records[0].compute_hash();
    let err = verify(&records).unwrap_err();
    assert_eq!(
        err,
        AuditError::BrokenLink {
            seq: 0,
            expected: GENESIS_HASH,
            found: [7; 32]
        }
    );
    assert!(err.to_string().contains("the genesis"));
}

#[test]
fn invalid_stored_records_are_reported_by_seq() {
    let mut records = build(5);
    records[2].details = json!(["not", "an", "object"]);
    assert_eq!(
        verify(&records).unwrap_err(),
        AuditError::InvalidRecord {
            seq: 2,
            field: "details",
            reason: "must be a JSON object, found an array".into()
        }
    );
    let mut records = build(5);
    records[3].actor = "a\nb".into();
    assert!(matches!(
        verify(&records).unwrap_err(),
        AuditError::InvalidRecord {
            seq: 3,
            field: "actor",
            ..
        }
    ));
}

#[test]
fn resume_continues_the_chain() {
    let full = build(20);
    let mut chain = AuditChain::resume(Some(&full[9])).unwrap();
    assert_eq!(chain.next_seq(), 10);
    assert_eq!(chain.head(), full[9].hash);
    let mut records = full[..10].to_vec();
    for r in &full[10..] {
        records.push(
            chain
                .append(r.time, &r.actor, &r.action, &r.subject, r.details.clone())
                .unwrap(),
        );
    }
    assert_eq!(records, full);
    assert_eq!(AuditChain::resume(None).unwrap(), AuditChain::new());
    assert_eq!(AuditChain::default(), AuditChain::new());

    let mut tampered = full[9].clone();
    tampered.subject = "x".into();
    assert!(matches!(
        AuditChain::resume(Some(&tampered)).unwrap_err(),
        AuditError::HashMismatch { seq: 9, .. }
    ));
}

#[test]
fn sequence_exhaustion_is_an_error() {
    let mut chain = AuditChain::new();
    let mut last = chain.append(T0, "system", "x", "", json!({})).unwrap();
    last.seq = u64::MAX - 1;
    last.hash = last.compute_hash();
    let mut chain = AuditChain::resume(Some(&last)).unwrap();
    assert_eq!(chain.next_seq(), u64::MAX);
    assert_eq!(
        chain.append(T0, "system", "x", "", json!({})).unwrap_err(),
        AuditError::SequenceExhausted
    );
    last.seq = u64::MAX;
    last.hash = last.compute_hash();
    assert_eq!(
        AuditChain::resume(Some(&last)).unwrap_err(),
        AuditError::SequenceExhausted
    );
}

#[test]
fn append_refuses_invalid_fields_and_leaves_the_chain_unchanged() {
    let mut chain = AuditChain::new();
    chain.append(T0, "system", "start", "", json!({})).unwrap();
    let before = chain.clone();
    let long = "x".repeat(MAX_TEXT_BYTES + 1);
    let deep = (0..MAX_DETAILS_DEPTH).fold(json!(1), |v, _| json!([v]));
    let cases: Vec<(i64, &str, &str, &str, Value, &str, &str)> = vec![
        (T0, "", "a", "s", json!({}), "actor", "must not be empty"),
        (T0, "x", "", "s", json!({}), "action", "must not be empty"),
        (T0, &long, "a", "s", json!({}), "actor", "257 bytes"),
        (T0, "x", &long, "s", json!({}), "action", "257 bytes"),
        (T0, "x", "a", &long, json!({}), "subject", "257 bytes"),
        (T0, "x\u{0}", "a", "s", json!({}), "actor", "U+0000"),
        (T0, "x", "a\tb", "s", json!({}), "action", "U+0009"),
        (T0, "x", "a", "s\r\n", json!({}), "subject", "U+000D"),
        (T0, "x", "a", "s\u{7f}", json!({}), "subject", "U+007F"),
        (T0, "x", "a", "s\u{85}", json!({}), "subject", "U+0085"),
        (
            T0,
            "x",
            "a",
            "dev\u{202E}24",
            json!({}),
            "subject",
            "U+202E",
        ),
        (T0, "x", "a", "s\u{2028}", json!({}), "subject", "U+2028"),
        (T0, "x", "a", "\u{FEFF}s", json!({}), "subject", "U+FEFF"),
        (T0, "x", "a", "s\u{200B}", json!({}), "subject", "U+200B"),
        (T0, "x", "a", "s", json!([]), "details", "found an array"),
        (T0, "x", "a", "s", json!(null), "details", "found null"),
        (T0, "x", "a", "s", json!("{}"), "details", "found a string"),
        (
            T0,
            "x",
            "a",
            "s",
            json!({"f": 1.5}),
            "details",
            "not an integer",
        ),
        (
            T0,
            "x",
            "a",
            "s",
            json!({"f": [1.0]}),
            "details",
            "not an integer",
        ),
        (
            T0,
            "x",
            "a",
            "s",
            json!({"big": "y".repeat(MAX_DETAILS_BYTES)}),
            "details",
            "at most 16384 allowed",
        ),
        (
            T0,
            "x",
            "a",
            "s",
            json!({ "d": deep }),
            "details",
            "deeper than 16",
        ),
        (MIN_TIME - 1, "x", "a", "s", json!({}), "time", "outside"),
        (MAX_TIME + 1, "x", "a", "s", json!({}), "time", "outside"),
        (i64::MIN, "x", "a", "s", json!({}), "time", "outside"),
    ];
    for (time, actor, action, subject, details, field, reason) in cases {
        let err = chain
            .append(time, actor, action, subject, details)
            .unwrap_err();
        match &err {
            AuditError::InvalidField {
                field: f,
                reason: r,
            } => {
                assert_eq!(*f, field, "{err}");
                assert!(r.contains(reason), "{err}");
            }
            other => panic!("expected InvalidField, got {other}"),
        }
        assert_eq!(chain, before);
    }

    // The limits themselves are allowed.
    let exactly = "x".repeat(MAX_TEXT_BYTES);
    let fits = (1..MAX_DETAILS_DEPTH).fold(json!(1), |v, _| json!([v]));
    let filler = "y".repeat(MAX_DETAILS_BYTES - r#"{"f":""}"#.len());
    let mut records = vec![];
    let mut chain = AuditChain::new();
    for (time, details) in [
        (MIN_TIME, json!({ "d": fits })),
        (MAX_TIME, json!({ "f": filler })),
        (
            0,
            json!({"n": i64::MIN, "m": u64::MAX, "s": "ä\u{0}\u{1f}\u{7f}", "z": null, "b": [true, false]}),
        ),
    ] {
        records.push(
            chain
                .append(time, &exactly, &exactly, &exactly, details)
                .unwrap(),
        );
    }
    records.push(chain.append(T0, "a", "b", "", json!({})).unwrap());
    verify(&records).unwrap();
    assert_eq!(parse_jsonl(to_jsonl(&records)).unwrap(), records);
}

#[test]
fn hash_encoding_matches_the_documented_layout() {
    let mut chain = AuditChain::new();
    let r = chain
        .append(
            T0,
            "token:ops-1",
            "device.enrolled",
            "dev-42",
            json!({"z": 1, "a": "é\n\"", "m": [null, true, -3]}),
        )
        .unwrap();
    let details = r#"{"a":"é\n\"","m":[null,true,-3],"z":1}"#;
    assert_eq!(canonical_json(&r.details), details);

    let mut expected = Vec::new();
    for field in [
        DOMAIN.as_bytes(),
        &r.seq.to_be_bytes(),
        &r.time.to_be_bytes(),
        b"token:ops-1",
        b"device.enrolled",
        b"dev-42",
        details.as_bytes(),
        &GENESIS_HASH,
    ] {
        if field.len() != 8 && field.len() != 32 {
            expected.extend_from_slice(&(field.len() as u64).to_be_bytes());
        }
        expected.extend_from_slice(field);
    }
    assert_eq!(r.hash_input(), expected);
    assert_eq!(&expected[..8], &20u64.to_be_bytes());
    // Pinned: changing the encoding breaks every stored chain. Computed independently with
    // Python's hashlib over the layout above.
    assert_eq!(
        hex::encode(r.hash),
        "6a97bff7e27cddd57f31191eff020c93263bd4a79c7d5e24ebaec8b7ff05f590"
    );
}

#[test]
fn field_boundaries_cannot_be_shifted() {
    let mut a = AuditChain::new();
    let mut b = AuditChain::new();
    let ra = a.append(T0, "ab", "c", "d", json!({})).unwrap();
    let rb = b.append(T0, "a", "bc", "d", json!({})).unwrap();
    assert_ne!(ra.hash, rb.hash);
    let ra = a.append(T0, "x", "y", "", json!({"k": "v"})).unwrap();
    let rb = b.append(T0, "x", "y", "", json!({"k": "v"})).unwrap();
    assert_ne!(ra.hash, rb.hash); // different prev_hash
}

#[test]
fn canonical_json_escapes() {
    let v = json!({"s": "\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}\"\\/é😀", "b": {"y": 1, "x": [2]}});
    assert_eq!(
        canonical_json(&v),
        "{\"b\":{\"x\":[2],\"y\":1},\"s\":\"\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\\\"\\\\/é😀\"}"
    );
    // Keys sort by UTF-8 bytes: "Z" < "a" < "é" < "😀".
    let v = json!({"😀": 0, "é": 0, "a": 0, "Z": 0});
    assert_eq!(canonical_json(&v), r#"{"Z":0,"a":0,"é":0,"😀":0}"#);
    // It is JSON that reads back to the same value.
    let v = json!({"s": "\u{0}x\u{1f}", "n": -9_223_372_036_854_775_808i64, "u": u64::MAX});
    let back: Value = serde_json::from_str(&canonical_json(&v)).unwrap();
    assert_eq!(back, v);
}

#[test]
fn jsonl_round_trip() {
    let records = build(100);
    let text = to_jsonl(&records);
    assert_eq!(text.lines().count(), 100);
    assert!(text.ends_with('\n'));
    assert_eq!(text.lines().next().unwrap(), to_json_line(&records[0]));
    let parsed = parse_jsonl(&text).unwrap();
    assert_eq!(parsed, records);
    verify(&parsed).unwrap();
    // Byte-identical when written again.
    assert_eq!(to_jsonl(&parsed), text);
    // Without the final newline, with CRLF, as bytes.
    assert_eq!(parse_jsonl(text.trim_end()).unwrap(), records);
    assert_eq!(parse_jsonl(text.replace('\n', "\r\n")).unwrap(), records);
    assert_eq!(parse_jsonl(text.as_bytes()).unwrap(), records);
    assert!(parse_jsonl("").unwrap().is_empty());
    assert_eq!(to_jsonl(&[]), "");
}

#[test]
fn jsonl_line_layout() {
    let mut chain = AuditChain::new();
    let r = chain
        .append(
            T0,
            "token:ops-1",
            "device.enrolled",
            "dev \"42\"",
            json!({"serial": "A1", "batch": 7}),
        )
        .unwrap();
    assert_eq!(
        to_json_line(&r),
        format!(
            r#"{{"seq":0,"time":1767225600,"actor":"token:ops-1","action":"device.enrolled","subject":"dev \"42\"","details":{{"batch":7,"serial":"A1"}},"prev_hash":"{}","hash":"{}"}}"#,
            "0".repeat(64),
            hex::encode(r.hash)
        )
    );
    // Member order and whitespace are free on input.
    let reordered = format!(
        r#" {{ "hash" : "{}", "prev_hash":"{}", "details":{{"serial":"A1","batch":7}}, "subject":"dev \"42\"", "action":"device.enrolled", "actor":"token:ops-1", "time":1767225600, "seq":0 }} "#,
        hex::encode(r.hash),
        "0".repeat(64)
    );
    assert_eq!(parse_jsonl(reordered).unwrap(), vec![r]);
}

#[test]
fn serde_round_trip() {
    let records = build(5);
    let text = serde_json::to_string(&records).unwrap();
    let back: Vec<AuditRecord> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, records);
    // serde's form is the JSON Lines form.
    assert_eq!(
        serde_json::to_string(&records[1]).unwrap(),
        to_json_line(&records[1])
    );
}

fn parse_err(input: &str) -> (usize, String) {
    match parse_jsonl(input).unwrap_err() {
        AuditError::Parse { line, reason } => (line, reason),
        other => panic!("expected a parse error, got {other}"),
    }
}

#[test]
fn jsonl_rejects_malformed_input_with_line_numbers() {
    let records = build(3);
    let good: Vec<String> = records.iter().map(to_json_line).collect();
    let with_line_2 = |line: &str| format!("{}\n{}\n{}\n", good[0], line, good[2]);
    let hash1 = hex::encode(records[1].hash);
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "blank line"),
        ("   ".into(), "blank line"),
        ("{".into(), "EOF"),
        ("not json".into(), "expected"),
        ("[]".into(), "invalid type"),
        ("{}".into(), "missing field"),
        (
            good[1].replace("\"seq\":1", "\"seq\":1,\"extra\":0"),
            "unknown field `extra`",
        ),
        (
            good[1].replace("\"seq\":1", "\"seq\":1,\"seq\":1"),
            "duplicate field `seq`",
        ),
        (
            good[1].replace("{\"index\"", "{\"index\":0,\"index\""),
            "duplicate key \"index\" in details",
        ),
        (
            good[1].replace("\"index\":1", "\"index\":1.0"),
            "not an integer",
        ),
        (
            good[1].replace("\"index\":1", "\"index\":1e3"),
            "not an integer",
        ),
        (
            good[1].replace("\"index\":1", "\"index\":99999999999999999999"),
            "not an integer",
        ),
        (
            good[1].replace(&hash1, &hash1.to_uppercase()),
            "hash must be 64 lowercase hex",
        ),
        (good[1].replace(&hash1, &hash1[..62]), "found 62 characters"),
        (
            good[1].replace(&hash1, &format!("{}zz", &hash1[..62])),
            "lowercase hex",
        ),
        (good[1].replace("\"seq\":1", "\"seq\":-1"), "invalid value"),
        (
            good[1].replace("\"seq\":1", "\"seq\":\"1\""),
            "invalid type",
        ),
        (
            good[1].replace("\"time\":1767225637", "\"time\":99999999999999"),
            "invalid time",
        ),
        (
            good[1].replace("\"actor\":\"device:dev-42\"", "\"actor\":\"\\u0000\""),
            "invalid actor",
        ),
        (
            good[1].replace("\"actor\":\"device:dev-42\"", "\"actor\":\"\""),
            "invalid actor: must not be empty",
        ),
        (
            format!(
                "{{\"seq\":1,\"time\":0,\"actor\":\"a\",\"action\":\"b\",\"subject\":\"\",\"details\":[],\"prev_hash\":\"{}\",\"hash\":\"{}\"}}",
                "0".repeat(64),
                "0".repeat(64)
            ),
            "invalid details: must be a JSON object",
        ),
        (format!("{} {}", good[1], good[1]), "trailing characters"),
        (format!("{}\u{0}", good[1]), "trailing characters"),
        ("x".repeat(MAX_LINE_BYTES + 1), "at most 65536 allowed"),
        (
            format!("{{\"details\":{}", "[".repeat(10_000)),
            "recursion limit",
        ),
    ];
    for (line, expected) in cases {
        let (n, reason) = parse_err(&with_line_2(&line));
        assert_eq!(n, 2, "{reason}");
        assert!(reason.contains(expected), "{expected:?} not in {reason:?}");
        assert!(!reason.contains("at line"), "{reason}");
    }
    // Errors on the first and last line, and a blank line between records.
    assert_eq!(parse_err(&format!("x\n{}\n", good[0])).0, 1);
    assert_eq!(parse_err(&format!("{}\n{}\nx", good[0], good[1])).0, 3);
    assert_eq!(parse_err(&format!("{}\n\n{}\n", good[0], good[1])).0, 2);
    assert_eq!(parse_err("\n").0, 1);
    // Invalid UTF-8.
    let mut bytes = format!("{}\n", good[0]).into_bytes();
    bytes.extend_from_slice(b"{\"seq\":\xff}\n");
    match parse_jsonl(&bytes).unwrap_err() {
        AuditError::Parse { line: 2, reason } => assert!(reason.contains("UTF-8")),
        other => panic!("{other}"),
    }
}

#[test]
fn parsing_never_panics_on_damaged_input() {
    let text = to_jsonl(&build(4));
    let bytes = text.as_bytes();
    // Every truncation.
    for end in 0..bytes.len() {
        let _ = parse_jsonl(&bytes[..end]);
    }
    // Bytes flipped or replaced by awkward values, all over (deterministic pseudo-random).
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let awkward = [
        b'"', b'\\', b'{', b'}', b'[', b',', b':', b'\n', b'\r', 0, 0xff, b'9', b'-',
    ];
    for _ in 0..3_000 {
        let mut damaged = bytes.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() % damaged.len() as u64) as usize;
            damaged[at] = if next() % 2 == 0 {
                damaged[at] ^ (1 << (next() % 8))
            } else {
                awkward[(next() % awkward.len() as u64) as usize]
            };
        }
        if let Ok(records) = parse_jsonl(&damaged) {
            // Whatever parses, verification answers without panicking, and rejects any change
            // that altered a record.
            let result = verify(&records);
            if records.len() == 4 && result.is_ok() {
                assert_eq!(records, build(4));
            }
            let _ = to_csv(&records);
        }
    }
}

#[test]
fn csv_export() {
    let mut chain = AuditChain::new();
    let records = vec![
        chain
            .append(
                T0,
                "token:ops-1",
                "release.created",
                "fw-1.2.0",
                json!({"version": "1.2.0"}),
            )
            .unwrap(),
        chain
            .append(
                T0 + 61,
                "device:dev-42",
                "verification.failed",
                "a,b \"quoted\"",
                json!({"reason": "line1\nline2, \"x\""}),
            )
            .unwrap(),
    ];
    let csv = to_csv(&records);
    let rows: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0], CSV_HEADER);
    assert_eq!(rows[3], "");
    assert_eq!(
        rows[1],
        format!(
            "0,1767225600,2026-01-01T00:00:00Z,token:ops-1,release.created,fw-1.2.0,\"{{\"\"version\"\":\"\"1.2.0\"\"}}\",{},{}",
            "0".repeat(64),
            hex::encode(records[0].hash)
        )
    );
    assert_eq!(
        rows[2],
        format!(
            "1,1767225661,2026-01-01T00:01:01Z,device:dev-42,verification.failed,\"a,b \"\"quoted\"\"\",\"{{\"\"reason\"\":\"\"line1\\nline2, \\\"\"x\\\"\"\"\"}}\",{},{}",
            hex::encode(records[0].hash),
            hex::encode(records[1].hash)
        )
    );
    assert_eq!(read_csv(&csv)[2][5], "a,b \"quoted\"");
    assert_eq!(
        read_csv(&csv)[2][6],
        canonical_json(&json!({"reason": "line1\nline2, \"x\""}))
    );

    // Raw line breaks (only possible in records not made by AuditChain) stay inside quotes.
    let mut odd = records[0].clone();
    odd.subject = "two\r\nlines".into();
    odd.time = i64::MAX;
    let csv = to_csv(&[odd]);
    let table = read_csv(&csv);
    assert_eq!(table.len(), 2);
    assert_eq!(table[1][5], "two\r\nlines");
    assert_eq!(table[1][2], "");
    assert_eq!(to_csv(&[]), format!("{CSV_HEADER}\r\n"));
}

/// A minimal RFC 4180 reader, to check the writer's output reads back.
fn read_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = vec![];
    let mut row = vec![];
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'));
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted && field.is_empty() && row.is_empty());
    for r in &rows {
        assert_eq!(r.len(), 9);
    }
    rows
}

// ---- signed audit heads ------------------------------------------------------------------

fn audit_key(name: &str, seed: u8) -> rampart_log::note::NoteSigner {
    rampart_log::note::NoteSigner::from_seed(name, [seed; 32]).unwrap()
}

/// Signs the head of `records` and checks it back, as the server and `audit verify` do.
fn anchored(records: &[AuditRecord], key: &rampart_log::note::NoteSigner) -> AuditHead {
    let head = AuditHead::of(&verify(records).unwrap(), T0 + 9_999).unwrap();
    let note = head.sign(key).unwrap();
    verify_signed_head(&note, &key.verifier()).unwrap()
}

/// Rewrites record `at` and recomputes every hash from there on, as an attacker with write
/// access to the database can: the chain on its own still verifies.
fn rewrite_from(records: &[AuditRecord], at: usize) -> Vec<AuditRecord> {
    let mut chain = AuditChain::resume(at.checked_sub(1).map(|i| &records[i])).unwrap();
    let mut out = records[..at].to_vec();
    for (i, r) in records[at..].iter().enumerate() {
        let subject = if i == 0 { "someone-else" } else { &r.subject };
        out.push(
            chain
                .append(r.time, &r.actor, &r.action, subject, r.details.clone())
                .unwrap(),
        );
    }
    out
}

#[test]
fn rewritten_audit_history_is_detected() {
    let key = audit_key("rampart.test/audit", 7);
    let records = build(40);
    let early = anchored(&records[..20], &key);
    let head = anchored(&records, &key);
    let rewritten = rewrite_from(&records, 17);
    assert!(
        verify(&rewritten).is_ok(),
        "the unkeyed chain alone cannot tell"
    );
    let err = verify_against_heads(&rewritten, &[head]).unwrap_err();
    assert_eq!(
        err,
        AuditError::AnchorMismatch {
            seq: 39,
            count: 40,
            anchored: 40,
            signed_at: T0 + 9_999,
            intact_before: 0,
        }
    );
    assert!(
        err.to_string()
            .starts_with("record 39 of 40 does not match the anchored head"),
        "{err}"
    );
    // An earlier head narrows it down: it is the first one to fail, so it is named.
    let err = verify_against_heads(&rewritten, &[head, early]).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::AnchorMismatch {
                seq: 19,
                anchored: 20,
                ..
            }
        ),
        "{err:?}"
    );
    // A rewrite after the early head: the early head still matches, the range is named.
    let rewritten_late = rewrite_from(&records, 25);
    let err = verify_against_heads(&rewritten_late, &[early, head]).unwrap_err();
    assert!(
        err.to_string().contains(
            "rewritten in records 20 to 39 (records 0 to 19 match an earlier anchored head)"
        ),
        "{err}"
    );
    // The untouched chain, grown since the heads were signed, passes.
    let mut grown = records.clone();
    let mut chain = AuditChain::resume(grown.last()).unwrap();
    grown.push(
        chain
            .append(T0 + 99_999, "system", "late", "", json!({}))
            .unwrap(),
    );
    assert_eq!(
        verify_against_heads(&grown, &[early, head]).unwrap().count,
        41
    );
}

#[test]
fn truncated_audit_history_is_detected() {
    let key = audit_key("rampart.test/audit", 7);
    let records = build(40);
    let head = anchored(&records, &key);
    let cut = &records[..35];
    assert!(verify(cut).is_ok(), "the unkeyed chain alone cannot tell");
    let err = verify_against_heads(cut, &[head]).unwrap_err();
    assert_eq!(
        err,
        AuditError::AnchorTruncated {
            anchored: 40,
            found: 35,
            signed_at: T0 + 9_999
        }
    );
    assert!(
        err.to_string().starts_with(
            "history truncated: the anchored head (signed at 2026-01-01T02:46:39Z) covers 40 records, the log has 35; records 35 to 39 are missing"
        ),
        "{err}"
    );
    // Everything cut: still detected.
    assert!(matches!(
        verify_against_heads(&[], &[head]),
        Err(AuditError::AnchorTruncated { found: 0, .. })
    ));
}

#[test]
fn forged_audit_head_signature_is_refused() {
    let key = audit_key("rampart.test/audit", 7);
    let records = build(5);
    let head = AuditHead::of(&verify(&records).unwrap(), T0).unwrap();
    let note = head.sign(&key).unwrap();
    assert_eq!(verify_signed_head(&note, &key.verifier()).unwrap(), head);

    // A head signed by another key under the same name: refused.
    let impostor = audit_key("rampart.test/audit", 8);
    let forged = head.sign(&impostor).unwrap();
    assert!(matches!(
        verify_signed_head(&forged, &key.verifier()),
        Err(AuditError::HeadSignature { .. })
    ));

    // The genuine signature over an edited text (a smaller size, to excuse a truncation).
    let text = String::from_utf8(note.clone()).unwrap();
    let edited = text.replace("size 5\n", "size 3\n");
    assert_ne!(edited, text);
    let err = verify_signed_head(edited.as_bytes(), &key.verifier()).unwrap_err();
    assert!(
        err.to_string().starts_with("audit head signature refused"),
        "{err}"
    );

    // A note signed by the right key that is not an audit head (e.g. a release statement).
    let mut other = rampart_log::note::Note::new("rampart.dev/release-statement/v1\n").unwrap();
    key.sign_note(&mut other).unwrap();
    assert!(matches!(
        verify_signed_head(&other.to_bytes(), &key.verifier()),
        Err(AuditError::HeadFormat { .. })
    ));
}

#[test]
fn audit_head_text_round_trips_and_is_strict() {
    let head = AuditHead {
        size: 40,
        hash: [0xab; 32],
        time: T0,
    };
    let text = head.to_text();
    assert_eq!(AuditHead::parse_text(&text).unwrap(), head);
    for bad in [
        text.replace("size 40", "size 040"),
        text.replace("size 40", "size 0"),
        text.replace("size 40", "size +40"),
        text.replace("hash ab", "hash AB"),
        text.replace("time ", "time  "),
        text.replace("\ntime", "\nextra 1\ntime"),
        text.trim_end().to_string(),
        text.replace(HEAD_HEADER, "rampart.dev/audit-head/v2"),
    ] {
        assert!(AuditHead::parse_text(&bad).is_err(), "{bad:?} accepted");
    }
}
