use super::*;
use crate::device_signature::tests::TestKey;

const DEVICE: &str = "device-7";

fn chain_of(n: u64) -> (Chain, Vec<Record>) {
    let mut chain = Chain::new();
    let records = (0..n)
        .map(|i| {
            chain.append(
                1_000 + i as i64,
                Level::Info,
                &format!("line {i}\nwith a newline"),
            )
        })
        .collect();
    (chain, records)
}

fn anchor(chain: &mut Chain, key: &TestKey, time: i64) -> Record {
    chain
        .anchor(time, DEVICE, |m| Ok::<_, ()>(key.sign(m)))
        .unwrap()
}

#[test]
fn a_written_chain_reads_back_and_verifies_from_genesis() {
    let key = TestKey::p256();
    let (mut chain, mut records) = chain_of(5);
    records.push(anchor(&mut chain, &key, 2_000));
    records.push(chain.append(2_001, Level::Warn, "after the anchor"));
    let text: String = records.iter().map(Record::to_line).collect();
    let parsed = parse_lines(text.as_bytes()).unwrap();
    assert_eq!(parsed, records);
    let summary = verify_chain(&parsed, &ChainStart::Genesis).unwrap();
    assert_eq!(summary.head, records[6].head());
    assert_eq!(summary.anchors, vec![records[5].clone()]);
    verify_anchors(&summary.anchors, DEVICE, &key.spki()).unwrap();
}

#[test]
fn an_edited_record_is_named_as_where_the_chain_breaks() {
    let (_, mut records) = chain_of(6);
    records[3].message = "nothing happened".into();
    assert_eq!(
        verify_chain(&records, &ChainStart::Genesis),
        Err(ChainError::Broken {
            seq: 3,
            reason: "its hash does not match its content: it was changed".into()
        })
    );
    // Re-hashing the edited record breaks the link of the next one.
    records[3].hash = records[3].compute_hash();
    assert!(matches!(
        verify_chain(&records, &ChainStart::Genesis),
        Err(ChainError::Broken { seq: 4, .. })
    ));
}

#[test]
fn a_removed_record_breaks_the_chain() {
    let (_, mut records) = chain_of(6);
    records.remove(2);
    assert!(matches!(
        verify_chain(&records, &ChainStart::Genesis),
        Err(ChainError::Broken { seq: 3, .. })
    ));
}

#[test]
fn a_log_missing_its_beginning_fails_from_genesis_but_verifies_after_a_known_head() {
    let (_, records) = chain_of(6);
    assert!(matches!(
        verify_chain(&records[2..], &ChainStart::Genesis),
        Err(ChainError::Broken { seq: 2, .. })
    ));
    let summary = verify_chain(&records[2..], &ChainStart::After(records[1].head())).unwrap();
    assert_eq!(summary.first_seq, 2);
    let summary = verify_chain(&records[2..], &ChainStart::Anywhere).unwrap();
    assert_eq!(summary.first_prev, records[1].hash);
}

#[test]
fn a_chain_restored_from_its_last_line_continues_it() {
    let (chain, mut records) = chain_of(3);
    let mut restored = Chain::after(chain.head().unwrap().clone());
    records.push(restored.append(9, Level::Error, "after restart"));
    verify_chain(&records, &ChainStart::Genesis).unwrap();
}

#[test]
fn an_anchor_signed_by_another_key_or_for_another_device_is_refused() {
    let device = TestKey::p256();
    let attacker = TestKey::p256();
    let (mut chain, _) = chain_of(2);
    let forged = anchor(&mut chain, &attacker, 5);
    assert!(matches!(
        verify_anchors(&[forged], DEVICE, &device.spki()),
        Err(ChainError::AnchorSignature { seq: 2, .. })
    ));
    let mut other = Chain::new();
    let for_other = other
        .anchor(5, "device-8", |m| Ok::<_, ()>(device.sign(m)))
        .unwrap();
    assert!(matches!(
        verify_anchors(&[for_other], DEVICE, &device.spki()),
        Err(ChainError::AnchorWrongDevice { seq: 0, .. })
    ));
}

#[test]
fn a_log_rewritten_after_the_server_saw_an_anchor_is_detected() {
    let key = TestKey::p256();
    let (mut chain, mut records) = chain_of(4);
    let seen = anchor(&mut chain, &key, 50);
    records.push(seen.clone());
    records.push(chain.append(51, Level::Info, "later"));
    let known = [KnownAnchor {
        seq: seen.seq,
        prev: seen.prev.clone(),
    }];
    check_known_anchors(&records, &known).unwrap();

    // The device rewrites record 1 and re-hashes everything after it, re-signing a new
    // anchor at the same position: the chain verifies, the known anchor does not match.
    let mut rewriter = Chain::new();
    let mut rewritten: Vec<Record> = (0..4)
        .map(|i| {
            let message = if i == 1 { "benign" } else { "line" };
            rewriter.append(1_000 + i, Level::Info, message)
        })
        .collect();
    rewritten.push(anchor(&mut rewriter, &key, 50));
    let summary = verify_chain(&rewritten, &ChainStart::Genesis).unwrap();
    verify_anchors(&summary.anchors, DEVICE, &key.spki()).unwrap();
    assert_eq!(
        check_known_anchors(&rewritten, &known),
        Err(ChainError::RewrittenBeforeAnchor { seq: 4 })
    );
}

#[test]
fn torn_oversized_and_malformed_lines_are_named() {
    let (_, records) = chain_of(2);
    let mut text: String = records.iter().map(Record::to_line).collect();
    text.push_str("{\"seq\":2");
    assert_eq!(
        parse_lines(text.as_bytes()),
        Err(LogError::TornLine { line: 3 })
    );
    let long = format!("{}\n", "x".repeat(MAX_LINE_BYTES + 1));
    assert!(matches!(
        parse_lines(long.as_bytes()),
        Err(LogError::LineTooLong { line: 1, .. })
    ));
    assert!(matches!(
        parse_lines(b"{\"seq\":\"x\"}\n"),
        Err(LogError::BadLine { line: 1, .. })
    ));
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let mut chain = Chain::new();
    let record = chain.append(0, Level::Info, &"\u{e9}".repeat(MAX_MESSAGE_BYTES));
    assert!(record.message.len() <= MAX_MESSAGE_BYTES);
    verify_chain(&[record], &ChainStart::Genesis).unwrap();
}
