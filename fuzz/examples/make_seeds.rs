//! Writes the seed corpora of the fuzz targets into `OUT/<target>/`, built with the project's
//! own writers as its tests build their fixtures: a signed TUF repository with a delegation,
//! SBOM and provenance; director metadata; a release statement logged with a checkpoint,
//! a cosignature and its tlog-proof; tiles and bundles; GRUB and U-Boot environments; key
//! files; DDI bodies and poll answers; advisory-feed zips (with a few of ../shared/vectors'
//! OSV records when they are there: the shell has no zip writer). fuzz/seeds.sh runs it, then
//! adds ../shared/vectors and the documented agent configuration.
#![forbid(unsafe_code)]

use rampart_attest::credential::make_credential;
use rampart_attest::device::TpmDevice;
use rampart_attest::measure::{append_boot_events, boot_log};
use rampart_attest::soft::SoftTpm;
use rampart_boot::{grubenv, ubootenv};
use rampart_core::Scheme;
use rampart_core::director::{build_targets, signing_bytes};
use rampart_core::metadata::Signature;
use rampart_fuzz::join;
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_keys::{SignError, Signer};
use rampart_log::checkpoint::Checkpoint;
use rampart_log::cosignature::{cosign, sign_checkpoint};
use rampart_log::merkle::{leaf_hash, node_hash};
use rampart_log::note::{Note, NoteSigner};
use rampart_log::proof::TlogProof;
use rampart_log::statement::ReleaseStatement;
use rampart_log::tiles::{encode_bundle, entries_path, tile_path};
use rampart_protocol::{
    AttributesMode, AttributesUpdate, DeviceFacts, ErrorDocument, Reason, ReportRequest,
    ReportStatus,
};
use rampart_repo::{InitOptions, ReleaseRequest, Repository, RoleSigners};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Passphrase of the seed key files (the key_file target opens them with it).
const PASSPHRASE: &str = "fuzz";
/// The device the director metadata and poll answers are for (as in the poll_answer target).
const DEVICE_ID: &str = "device-0001";
/// The image every release carries; its SHA-256 is the cyclonedx_sbom target's provenance digest.
const IMAGE: &[u8] = b"hello\n";
const IMAGE_SHA256: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

type Error = Box<dyn std::error::Error>;

struct Seeds {
    out: PathBuf,
    count: usize,
}

impl Seeds {
    fn add(&mut self, target: &str, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let dir = self.out.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        self.count += 1;
        Ok(())
    }

    fn add_json<T: serde::Serialize>(
        &mut self,
        target: &str,
        name: &str,
        value: &T,
    ) -> Result<(), Error> {
        self.add(target, name, &serde_json::to_vec(value)?)
    }
}

/// Key files the fuzz harness can afford to open (64 KiB, one pass of Argon2id).
fn cheap_key(scheme: Scheme) -> Result<(FileSigner, Vec<u8>), SignError> {
    let kdf = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };
    FileSigner::generate(scheme, PASSPHRASE, kdf)
}

fn main() -> Result<(), Error> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: make-seeds OUT_DIR")?);
    let mut seeds = Seeds { out, count: 0 };
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let (release_key, release_file) = keys(&mut seeds)?;
    let work = seeds.out.join(".work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let repo = repository(&mut seeds, &work, &release_file, now)?;
    director(&mut seeds, &repo, &release_key, now)?;
    transparency(&mut seeds)?;
    tiles(&mut seeds)?;
    boot_environments(&mut seeds)?;
    device_protocols(&mut seeds)?;
    attestation(&mut seeds)?;
    device_csr(&mut seeds)?;
    osv_feed_zip(&mut seeds)?;
    std::fs::remove_dir_all(&work)?;
    println!(
        "make-seeds: {} seeds in {}",
        seeds.count,
        seeds.out.display()
    );
    Ok(())
}

/// Key files of every scheme, their public keys, PKCS#11 references. Returns one key (and its
/// file) to sign the repository and the director metadata with.
fn keys(seeds: &mut Seeds) -> Result<(FileSigner, Vec<u8>), Error> {
    for scheme in [Scheme::EcdsaP256Sha256, Scheme::MlDsa65] {
        let (signer, file) = cheap_key(scheme)?;
        let name = format!("{scheme:?}").to_lowercase();
        seeds.add("key_file", &format!("{name}.key"), &file)?;
        seeds.add(
            "key_file",
            &format!("{name}.pub.json"),
            &serde_json::to_vec(signer.public_key())?,
        )?;
    }
    seeds.add(
        "key_file",
        "token.ref",
        b"pkcs11:token=device;object=tls;type=private",
    )?;
    seeds.add(
        "key_file",
        "token-encoded.ref",
        b"token=my%20token;object=release%2Dkey",
    )?;
    let (signer, file) = cheap_key(Scheme::Ed25519)?;
    seeds.add("key_file", "ed25519.key", &file)?;
    seeds.add(
        "key_file",
        "ed25519.pub.json",
        &serde_json::to_vec(signer.public_key())?,
    )?;
    Ok((signer, file))
}

/// A published image repository (every role one key, a delegated role, releases with an SBOM
/// and provenance): its metadata files and documents.
fn repository(
    seeds: &mut Seeds,
    work: &Path,
    key_file: &[u8],
    now: i64,
) -> Result<Repository, Error> {
    let open = |reference: &str| -> Result<Box<dyn Signer>, SignError> {
        Ok(Box::new(FileSigner::from_file_bytes(
            key_file, PASSPHRASE, reference,
        )?))
    };
    let one = || RoleSigners {
        keys: vec!["file:seed.key".into()],
        threshold: 1,
    };
    let opts = InitOptions {
        root: one(),
        targets: one(),
        snapshot: one(),
        timestamp: one(),
        expiry_days: Default::default(),
    };
    let dir = work.join("repo");
    let mut repo = Repository::init(&dir, opts, &open, now)?;
    repo.delegate(
        "bin",
        vec!["bin/*".into(), "bin/?/[a-c]*".into()],
        one(),
        true,
        &open,
        now,
    )?;
    let image = work.join("image.bin");
    std::fs::write(&image, IMAGE)?;
    let sbom = json!({
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "metadata": {"component": {"type": "firmware", "name": "board-a-image", "version": "1.2.0"}},
        "components": [
            {"type": "library", "name": "zlib", "version": "1.3.1", "purl": "pkg:generic/zlib@1.3.1"},
            {"type": "library", "name": "openssl", "version": "3.0.13",
             "hashes": [{"alg": "SHA-256", "content": IMAGE_SHA256}]}
        ]
    });
    let provenance = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "image.bin", "digest": {"sha256": IMAGE_SHA256}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.com/build/v1"}}
    });
    let sbom_path = work.join("image.cdx.json");
    let provenance_path = work.join("image.intoto.json");
    std::fs::write(&sbom_path, serde_json::to_vec_pretty(&sbom)?)?;
    std::fs::write(&provenance_path, serde_json::to_vec(&provenance)?)?;
    let release = |version: &str, target: &str, role: Option<&str>| ReleaseRequest {
        image: image.clone(),
        target_name: Some(target.into()),
        hardware_ids: vec!["board-a".into(), "board-b".into()],
        version: version.into(),
        security_version: 2,
        sbom: Some(sbom_path.clone()),
        provenance: Some(rampart_repo::ProvenanceInput::Statement(
            provenance_path.clone(),
        )),
        role: role.map(str::to_owned),
    };
    let requests = [
        release("1.2.0", "1.2.0/image.bin", None),
        release("1.3.0", "bin/image-1.3.0.bin", Some("bin")),
    ];
    repo.add_releases(&requests, &open, now, &rampart_repo::NoProgress)?;
    repo.publish(&open, now)?;
    let mut files = Vec::new();
    collect_files(&dir, &mut files)?;
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let bytes = std::fs::read(&path)?;
        if name.ends_with(".cdx.json") || name.ends_with(".intoto.json") {
            seeds.add("cyclonedx_sbom", &name, &bytes)?;
        } else if name.ends_with(".json") && !name.starts_with("rampart-repo") {
            seeds.add("tuf_metadata", &name, &bytes)?;
            seeds.add("canonical_json", &name, &bytes)?;
            if name.ends_with("root.json") {
                seeds.add("director_metadata", &name, &bytes)?;
            }
        }
    }
    seeds.add_json("cyclonedx_sbom", "sbom.json", &sbom)?;
    seeds.add_json("cyclonedx_sbom", "provenance.json", &provenance)?;
    Ok(repo)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The device's director targets metadata, signed, listing the repository's release.
fn director(seeds: &mut Seeds, repo: &Repository, key: &FileSigner, now: i64) -> Result<(), Error> {
    let targets = repo.targets_role("targets")?;
    let assigned: Vec<_> = targets.targets.into_iter().collect();
    let body = build_targets(DEVICE_ID, 3, now + 86_400, &assigned);
    let signature = Signature {
        keyid: key.key_id(),
        sig: hex::encode(key.sign(&signing_bytes(&body))?),
    };
    let envelope = rampart_core::director::envelope(&body, &[signature]);
    seeds.add("director_metadata", "targets.json", &envelope)?;
    seeds.add("canonical_json", "director-targets.json", &envelope)?;
    Ok(())
}

/// A release statement logged in a two-entry log: the statement note, the log's checkpoint
/// cosigned by a witness, and the statement's tlog-proof.
fn transparency(seeds: &mut Seeds) -> Result<(), Error> {
    let publisher = NoteSigner::from_seed("release.example", [3; 32])?;
    let log = NoteSigner::from_seed("log.example", [1; 32])?;
    // The same witness as the cosignature target's.
    let witness = NoteSigner::cosigner_from_seed("witness.example", [7; 32])?;
    let statement = ReleaseStatement {
        target: "1.2.0/image.bin".into(),
        version: "1.2.0".into(),
        security_version: 2,
        hardware_ids: vec!["board-a".into()],
        sha256: hex::decode(IMAGE_SHA256)?
            .try_into()
            .map_err(|_| "digest length")?,
        sbom_sha256: Some([9; 32]),
    };
    let text = statement.to_text()?;
    seeds.add("tlog_proof", "statement.txt", text.as_bytes())?;
    let (entry, leaf) = statement.entry(&[publisher.sign(&text)?])?;
    seeds.add("signed_note", "statement.note", &entry)?;
    let sibling = leaf_hash(b"another entry");
    let mut checkpoint = Checkpoint::new("log.example/rampart", 2, node_hash(&leaf, &sibling));
    let body = checkpoint.to_body();
    seeds.add("checkpoint", "checkpoint", body.as_bytes())?;
    let mut note = sign_checkpoint(&log, &checkpoint)?;
    let cosignature = cosign(&witness, &body, 1_700_000_000)?;
    note.signatures.push(cosignature.clone());
    seeds.add("signed_note", "checkpoint.note", &note.to_bytes())?;
    let lines = [
        note.signatures[0].to_line(),
        cosignature.to_line(),
        String::new(),
    ]
    .join("\n");
    seeds.add(
        "cosignature",
        "cosigned",
        &join(body.as_bytes(), lines.as_bytes()),
    )?;
    let keys = [
        log.verifier_key_string(),
        witness.verifier_key_string(),
        log.signer_key_string(),
    ];
    seeds.add("signed_note", "keys", keys.join("\n").as_bytes())?;
    let proof = TlogProof {
        extra: Some(b"rampart".to_vec()),
        index: 0,
        hashes: vec![sibling],
        checkpoint: note,
    };
    seeds.add("tlog_proof", "proof", &proof.to_bytes())?;
    checkpoint.extensions.push("— extension line".into());
    seeds.add(
        "checkpoint",
        "checkpoint-extension",
        checkpoint.to_body().as_bytes(),
    )?;
    let unsigned = Note::new("a note with\nno signature\n")?;
    seeds.add("signed_note", "unsigned.note", &unsigned.to_bytes())?;
    Ok(())
}

/// A partial hash tile, an entry bundle, and tile paths.
fn tiles(seeds: &mut Seeds) -> Result<(), Error> {
    let tile: Vec<u8> = (0u8..5).flat_map(|i| leaf_hash(&[i])).collect();
    // The first three bytes choose the width (5) and the node location (see the target).
    seeds.add("tiles", "tile-width-5", &[&[0, 5, 1][..], &tile].concat())?;
    let entries: [&[u8]; 3] = [b"first", b"", b"third entry"];
    let bundle = encode_bundle(&entries)?;
    seeds.add(
        "tiles",
        "bundle-width-3",
        &[&[0, 3, 0][..], &bundle].concat(),
    )?;
    seeds.add(
        "tiles",
        "tile-path",
        tile_path(1, 1_234_067, Some(5)).as_bytes(),
    )?;
    seeds.add("tiles", "entries-path", entries_path(7, None).as_bytes())?;
    Ok(())
}

/// GRUB environment blocks and U-Boot environments (single and redundant) as the agent writes
/// them.
fn boot_environments(seeds: &mut Seeds) -> Result<(), Error> {
    let vars = BTreeMap::from([
        ("rampart_slot".to_string(), "B".to_string()),
        ("rampart_tries".to_string(), "3".to_string()),
        ("rampart_trial".to_string(), "1".to_string()),
        (
            "bootcmd".to_string(),
            "run distro_bootcmd; echo a=b".to_string(),
        ),
    ]);
    seeds.add("grub_env", "grubenv", &grubenv::serialize(&vars)?)?;
    seeds.add(
        "grub_env",
        "grubenv-empty",
        &grubenv::serialize(&BTreeMap::new())?,
    )?;
    // The uboot_env target: fw_env.config text, 0xff, a size byte (x16 = env_size), copies.
    let size_byte = 16u8;
    let env_size = usize::from(size_byte) * 16;
    let single = ubootenv::serialize(&vars, env_size, None)?;
    let config = "# device offset size\n/dev/mtd0 0x0 0x100\n";
    let mut input = join(config.as_bytes(), &[size_byte]);
    input.extend_from_slice(&single);
    seeds.add("uboot_env", "single", &input)?;
    let redundant = "/dev/mmcblk0 0x3fe000 100 200\n/dev/mmcblk0 0x3ff000 0x100 0x200 1\n";
    let mut input = join(redundant.as_bytes(), &[size_byte]);
    input.extend_from_slice(&ubootenv::serialize(&vars, env_size, Some(4))?);
    input.extend_from_slice(&ubootenv::serialize(&BTreeMap::new(), env_size, Some(5))?);
    seeds.add("uboot_env", "redundant", &input)?;
    Ok(())
}

/// hawkBit DDI feedback and configData bodies (as SWUpdate sends them), native poll answers and
/// the native request bodies.
fn device_protocols(seeds: &mut Seeds) -> Result<(), Error> {
    let feedback = json!({
        "id": "17", "time": "20260101T000000",
        "status": {"execution": "proceeding", "result": {"finished": "none", "progress": {"cnt": 2, "of": 5}},
                   "code": 200, "details": ["Installing", "x".repeat(600)]},
        "timestamp": 1_767_225_600_000_i64
    });
    seeds.add_json("ddi_bodies", "feedback.json", &feedback)?;
    // SWUpdate puts raw newlines from its messages into details.
    let raw =
        br#"{"status":{"execution":"closed","result":{"finished":"failure"},"details":["line one
line two"]}}"#;
    seeds.add("ddi_bodies", "feedback-raw-newline.json", raw)?;
    let config = json!({"mode": "merge", "data": {"hwRevision": "2", "VIN": "JH4TB2H26CC000000"}});
    seeds.add_json("ddi_bodies", "config-data.json", &config)?;
    seeds.add(
        "ddi_bodies",
        "config-remove.json",
        br#"{"mode":"remove","data":{"VIN":""}}"#,
    )?;
    seeds.add("ddi_bodies", "authorization", b"TargetToken 2f1c9a7e0b")?;
    let poll = json!({
        "device_id": DEVICE_ID, "poll_interval_secs": 300,
        "assignment": {"id": "asg-7", "target": "1.2.0/image.bin", "director_version": 3, "type": "soft"}
    });
    seeds.add_json("poll_answer", "assignment.json", &poll)?;
    let idle = json!({"device_id": DEVICE_ID, "assignment": null});
    seeds.add_json("poll_answer", "idle.json", &idle)?;
    let refusal = ErrorDocument {
        error: "forbidden".into(),
        detail: "the device certificate is revoked".into(),
    };
    seeds.add_json("poll_answer", "error.json", &refusal)?;
    device_requests(seeds)
}

/// The native device API's request bodies, as the agent writes them.
fn device_requests(seeds: &mut Seeds) -> Result<(), Error> {
    let facts = DeviceFacts {
        hardware_id: "board-a".into(),
        firmware_version: "1.2.0".into(),
        security_version: 2,
        region: "eu-west".into(),
        tags: vec!["canary".into()],
        attributes: Some(serde_json::Map::from_iter([(
            "site".into(),
            json!("plant-4"),
        )])),
        ..DeviceFacts::default()
    };
    seeds.add_json("device_requests", "facts.json", &facts)?;
    let report = ReportRequest {
        id: "0f8e2c1a-5b7d-4e2f-9a61-3c4d5e6f7a8b".into(),
        status: ReportStatus::Installing,
        details: Some(
            json!({"reason": Reason::Ok, "target": "1.2.0/image.bin", "version": "1.2.0"}),
        ),
        assignment: Some("asg-7".into()),
        progress: Some(42),
    };
    seeds.add_json("device_requests", "report.json", &report)?;
    let update = AttributesUpdate {
        mode: AttributesMode::Merge,
        data: serde_json::Map::from_iter([
            ("site".into(), json!("plant-5")),
            ("old".into(), json!(null)),
        ]),
    };
    seeds.add_json("device_requests", "attributes.json", &update)?;
    seeds.add(
        "device_requests",
        "status",
        ReportStatus::VerificationFailed.as_str().as_bytes(),
    )?;
    Ok(())
}

/// The agent's event log (one and two boots' worth), and an enrolment: the software TPM
/// model's EK public, and a credential made for it (credential_input: length-prefixed public
/// and blob, then the secret).
fn attestation(seeds: &mut Seeds) -> Result<(), Error> {
    let mut log = boot_log(13, [0x5a; 32], "firmware/widget-2.0.bin");
    seeds.add("event_log", "agent-boot", &log.encode())?;
    append_boot_events(&mut log, 9, [0x01; 32], "firmware/widget-2.1.bin");
    seeds.add("event_log", "two-pcrs", &log.encode())?;
    let mut tpm = SoftTpm::new([1; 32]);
    let ek = tpm.endorsement()?.public;
    let made = make_credential(&ek, &tpm.attestation_key_name(), b"challenge", &[2; 32])?;
    let mut input = Vec::new();
    for part in [&ek, &made.credential_blob] {
        input.extend_from_slice(&u16::try_from(part.len())?.to_be_bytes());
        input.extend_from_slice(part);
    }
    input.extend_from_slice(&made.encrypted_secret);
    seeds.add("credential_input", "soft-ek", &input)?;
    Ok(())
}

/// Certificate signing requests as devices make them (device_csr): ECDSA P-256 and Ed25519.
fn device_csr(seeds: &mut Seeds) -> Result<(), Error> {
    for (name, algorithm) in [
        ("p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("ed25519", &rcgen::PKCS_ED25519),
    ] {
        let key = rcgen::KeyPair::generate_for(algorithm)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, DEVICE_ID);
        seeds.add("device_csr", name, params.serialize_request(&key)?.der())?;
    }
    Ok(())
}

/// An OSV record as osv.dev publishes one (a PyPI range with a fix, a `versions` list, aliases).
fn osv_record(id: &str) -> Result<Vec<u8>, Error> {
    Ok(serde_json::to_vec(&json!({
        "schema_version": "1.6.0",
        "id": id,
        "modified": "2024-01-01T00:00:00Z",
        "published": "2023-06-01T00:00:00Z",
        "aliases": ["CVE-2023-0001"],
        "affected": [{
            "package": {"ecosystem": "PyPI", "name": "requests", "purl": "pkg:pypi/requests"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}],
            "versions": ["2.19.0", "2.19.1"]
        }],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}]
    }))?)
}

/// A zip of `entries` written as osv.dev writes its per-ecosystem `all.zip`.
fn feed_zip(
    entries: &[(String, Vec<u8>)],
    method: zip::CompressionMethod,
) -> Result<Vec<u8>, Error> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        if name.ends_with('/') {
            zip.add_directory(name.as_str(), options)?;
        } else {
            zip.start_file(name.as_str(), options)?;
            zip.write_all(bytes)?;
        }
    }
    Ok(zip.finish()?.into_inner())
}

/// Advisory-feed zips (the osv_feed_zip target): stored and deflated, with entries that are not
/// records, and the first real PyPI records of ../shared/vectors when they are beside the repository.
fn osv_feed_zip(seeds: &mut Seeds) -> Result<(), Error> {
    let records = vec![
        ("PYSEC-2023-1.json".to_owned(), osv_record("PYSEC-2023-1")?),
        (
            "GHSA-aaaa-bbbb-cccc.json".to_owned(),
            osv_record("GHSA-aaaa-bbbb-cccc")?,
        ),
    ];
    for (name, method) in [
        ("stored.zip", zip::CompressionMethod::Stored),
        ("deflated.zip", zip::CompressionMethod::Deflated),
    ] {
        seeds.add("osv_feed_zip", name, &feed_zip(&records, method)?)?;
    }
    let mut mixed = records.clone();
    mixed.insert(1, ("README.txt".to_owned(), b"not a record".to_vec()));
    mixed.push(("nested/".to_owned(), Vec::new()));
    mixed.push(("nested/NOT-JSON.json".to_owned(), b"{\"id\": 3}".to_vec()));
    seeds.add(
        "osv_feed_zip",
        "mixed.zip",
        &feed_zip(&mixed, zip::CompressionMethod::Deflated)?,
    )?;
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/osv-pypi");
    let Ok(listing) = std::fs::read_dir(&vectors) else {
        eprintln!(
            "make-seeds: {} not found; the osv_feed_zip seeds hold no real records",
            vectors.display()
        );
        return Ok(());
    };
    let mut names: Vec<PathBuf> = listing
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut real = Vec::new();
    for path in names.iter().take(8) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("vector file name")?;
        real.push((name.to_owned(), std::fs::read(path)?));
    }
    seeds.add(
        "osv_feed_zip",
        "pypi-real.zip",
        &feed_zip(&real, zip::CompressionMethod::Deflated)?,
    )
}
