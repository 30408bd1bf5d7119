use rampart_incident::agent_log::{ChainStart, parse_lines, verify_anchors, verify_chain};

use super::*;

/// An ECDSA P-256 device key signing as TLS does (ASN.1 signatures), and its SPKI.
fn p256_signer() -> (impl Fn(&[u8]) -> Result<DeviceSignature, String>, Vec<u8>) {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(key.public_key().as_ref());
    let sign = move |message: &[u8]| {
        let signature = key
            .sign(&ring::rand::SystemRandom::new(), message)
            .map_err(|e| e.to_string())?;
        Ok(DeviceSignature::new(
            rampart_incident::device_signature::SignatureAlgorithm::EcdsaP256Sha256,
            signature.as_ref(),
        ))
    };
    (sign, spki)
}

fn config(file_bytes: u64, keep: u32) -> EvidenceConfig {
    EvidenceConfig {
        log_file_bytes: file_bytes,
        log_keep_files: keep,
        anchor_every: 5,
        ..EvidenceConfig::default()
    }
}

fn read_all(log: &AgentLog) -> Vec<Record> {
    let mut bytes = Vec::new();
    for file in log.files() {
        bytes.extend(std::fs::read(file).unwrap());
    }
    parse_lines(&bytes).unwrap()
}

#[test]
fn rotation_keeps_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AgentLog::open(dir.path(), &config(2048, 30)).unwrap();
    for i in 0..100 {
        log.append(Level::Info, &format!("record {i}")).unwrap();
    }
    let files = log.files();
    assert!(files.len() > 3, "{files:?}");
    for file in &files {
        assert!(std::fs::metadata(file).unwrap().len() <= 2048);
    }
    let records = read_all(&log);
    assert_eq!(records.len(), 100);
    let summary = verify_chain(&records, &ChainStart::Genesis).unwrap();
    assert_eq!(&summary.head, log.head().unwrap());
}

#[test]
fn the_oldest_rotated_files_are_dropped_and_the_rest_still_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AgentLog::open(dir.path(), &config(1024, 2)).unwrap();
    for i in 0..100 {
        log.append(Level::Info, &format!("record {i}")).unwrap();
    }
    assert_eq!(log.files().len(), 3);
    let records = read_all(&log);
    assert!(records[0].seq > 0);
    assert!(verify_chain(&records, &ChainStart::Genesis).is_err());
    let summary = verify_chain(&records, &ChainStart::Anywhere).unwrap();
    assert_eq!(summary.head.seq, 99);
}

#[test]
fn a_reopened_log_continues_its_chain_after_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AgentLog::open(dir.path(), &config(1 << 20, 2)).unwrap();
    for i in 0..3 {
        log.append(Level::Info, &format!("record {i}")).unwrap();
    }
    drop(log);
    // A power cut in the middle of the next line.
    let current = dir.path().join(LOG_DIR).join(CURRENT);
    let mut file = OpenOptions::new().append(true).open(&current).unwrap();
    file.write_all(b"{\"seq\":3,\"time\":1,\"ki").unwrap();
    drop(file);
    let mut log = AgentLog::open(dir.path(), &config(1 << 20, 2)).unwrap();
    assert_eq!(log.head().unwrap().seq, 2);
    log.append(Level::Warn, "after the restart").unwrap();
    let records = read_all(&log);
    assert_eq!(records.len(), 4);
    verify_chain(&records, &ChainStart::Genesis).unwrap();
}

#[test]
fn a_reopened_log_continues_after_a_rotation_left_the_current_file_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AgentLog::open(dir.path(), &config(1024, 3)).unwrap();
    for i in 0..20 {
        log.append(Level::Info, &format!("record {i}")).unwrap();
    }
    drop(log);
    let current = dir.path().join(LOG_DIR).join(CURRENT);
    let rotated = dir.path().join(LOG_DIR).join(format!("{CURRENT}.1"));
    // Rotate by hand: as if the agent died right after renaming.
    std::fs::remove_file(dir.path().join(LOG_DIR).join(format!("{CURRENT}.3"))).ok();
    std::fs::rename(
        dir.path().join(LOG_DIR).join(format!("{CURRENT}.2")),
        dir.path().join(LOG_DIR).join(format!("{CURRENT}.3")),
    )
    .ok();
    std::fs::rename(
        &rotated,
        dir.path().join(LOG_DIR).join(format!("{CURRENT}.2")),
    )
    .unwrap();
    std::fs::rename(&current, &rotated).unwrap();
    let mut log = AgentLog::open(dir.path(), &config(1024, 3)).unwrap();
    assert_eq!(log.head().unwrap().seq, 19);
    log.append(Level::Info, "next").unwrap();
    verify_chain(&read_all(&log), &ChainStart::Anywhere).unwrap();
}

#[test]
fn a_damaged_log_is_set_aside_and_the_break_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AgentLog::open(dir.path(), &config(1 << 20, 2)).unwrap();
    log.append(Level::Info, "before").unwrap();
    drop(log);
    let current = dir.path().join(LOG_DIR).join(CURRENT);
    std::fs::write(&current, b"not a record\n").unwrap();
    let log = AgentLog::open(dir.path(), &config(1 << 20, 2)).unwrap();
    let records = read_all(&log);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].level, Level::Error);
    assert!(
        records[0].message.contains("set aside"),
        "{}",
        records[0].message
    );
    let aside: Vec<_> = std::fs::read_dir(dir.path().join(LOG_DIR))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("damaged"))
        .collect();
    assert_eq!(aside.len(), 1);
}

#[test]
fn anchors_are_due_every_n_records_and_verify_with_the_device_key() {
    let (sign, spki) = p256_signer();
    let dir = tempfile::tempdir().unwrap();
    let mut log = AgentLog::open(dir.path(), &config(1 << 20, 2)).unwrap();
    for i in 0..5 {
        assert!(!log.anchor_due());
        log.append(Level::Info, &format!("record {i}")).unwrap();
    }
    assert!(log.anchor_due());
    log.anchor("device-7", &sign).unwrap();
    assert!(!log.anchor_due());
    // A signer that fails leaves the chain as it was.
    let head = log.head().cloned();
    assert!(
        log.anchor("device-7", &|_| Err("token gone".into()))
            .is_err()
    );
    assert_eq!(log.head().cloned(), head);
    let records = read_all(&log);
    let summary = verify_chain(&records, &ChainStart::Genesis).unwrap();
    assert_eq!(summary.anchors.len(), 1);
    verify_anchors(&summary.anchors, "device-7", &spki).unwrap();
}
