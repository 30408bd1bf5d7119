//! The signed quarantine instruction on the device (decision 0031), against the real update
//! server over mutual TLS (embedded SQLite): the agent runs its containment hook (a real shell
//! script) once, remembers it through its persistent-write layer and acknowledges it (the server
//! stores the acknowledgement); a second poll's copy, or a restarted agent, runs nothing again;
//! a forged instruction (signed by a key the pinned director root does not list) or one for
//! another device runs nothing and is not acknowledged.

use std::path::Path;

use rampart_agent::disk::Disk;
use rampart_agent::quarantine::{Acted, handle, remembered, run_hook};
use rampart_agent::server_client::{DeviceTls, ServerClient};
use rampart_core::keys::{Key, Scheme};
use rampart_core::metadata::{Common, RoleKeys, Root, format_expires};
use rampart_db::{AuditLine, Db, NewQuarantine};
use rampart_incident::instruction::{QUARANTINE_TYPE, signing_bytes};
use rampart_pki::CertificateAuthority;
use rampart_protocol::{
    HookOutcome, InstructionSignature, QuarantineState, QuarantineStatement, SignedQuarantine,
};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn keypair(seed: u8) -> (Ed25519KeyPair, Key) {
    let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
    let key = Key::from_public_bytes(Scheme::Ed25519, pair.public_key().as_ref()).unwrap();
    (pair, key)
}

/// Pins a director root listing `online` for every role in the device's state directory.
fn pin_root(state: &Path, online: &Key) {
    let mut keys = std::collections::BTreeMap::new();
    keys.insert(online.key_id(), online.clone());
    let roles = ["root", "targets", "snapshot", "timestamp"]
        .into_iter()
        .map(|r| {
            (
                r.to_owned(),
                RoleKeys {
                    keyids: vec![online.key_id()],
                    threshold: 1,
                },
            )
        })
        .collect();
    let root = Root {
        common: Common {
            type_: "root".into(),
            spec_version: "1.0.31".into(),
            version: 1,
            expires: format_expires(now() + 86_400),
        },
        consistent_snapshot: None,
        keys,
        roles,
    };
    std::fs::create_dir_all(state.join("director")).unwrap();
    std::fs::write(
        state.join("director/root.json"),
        serde_json::to_vec(&serde_json::json!({"signed": root, "signatures": []})).unwrap(),
    )
    .unwrap();
}

fn signed(device: &str, issued: i64, pair: &Ed25519KeyPair, key: &Key) -> SignedQuarantine {
    let statement = QuarantineStatement {
        kind: QUARANTINE_TYPE.into(),
        device_id: device.into(),
        incident: String::new(),
        state: QuarantineState::Quarantined,
        containment: true,
        issued,
        expires: now() + 3_600,
    };
    let sig = pair.sign(&signing_bytes(&statement).unwrap());
    SignedQuarantine {
        signed: statement,
        signatures: vec![InstructionSignature {
            keyid: key.key_id(),
            sig: hex::encode(sig.as_ref()),
        }],
    }
}

/// Quarantines `device` in the server's database, as the operator API would.
async fn quarantine(db: &Db, device: &str, since: i64) {
    let last = db.last_audit().await.unwrap().map(|l| {
        rampart_audit::parse_jsonl(l.line.as_bytes())
            .unwrap()
            .remove(0)
    });
    let mut chain = rampart_audit::AuditChain::resume(last.as_ref()).unwrap();
    let record = chain
        .append(
            since,
            "token:test",
            "device.quarantined",
            device,
            serde_json::json!({}),
        )
        .unwrap();
    let line = AuditLine {
        seq: record.seq,
        line: rampart_audit::to_json_line(&record),
    };
    let new = NewQuarantine {
        device_id: device.into(),
        incident_id: String::new(),
        actor: "token:test".into(),
        reason: "test".into(),
        since,
    };
    db.quarantine_device(&new, &line).await.unwrap();
}

#[test]
fn the_containment_hook_runs_once_and_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ca = CertificateAuthority::generate("Rampart Test CA", 30).unwrap();
    let server_cert = ca.issue_server(&["localhost", "127.0.0.1"], 30).unwrap();
    let tls = rampart_pki::server_config(
        &server_cert.cert_pem,
        &server_cert.key_pem,
        ca.cert_pem(),
        &[],
    )
    .unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("server.db").display());
    let config =
        rampart_server::ServerConfig::new(db_url.clone(), tls, "127.0.0.1:0".parse().unwrap());
    let server = rt.block_on(rampart_server::Server::bind(config)).unwrap();
    let base = format!("https://localhost:{}", server.local_addr().port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let db = rt.block_on(Db::connect(&db_url)).unwrap();

    let device = "dev-hook";
    let cert = ca.issue_device(device, 30).unwrap();
    let client = ServerClient::new(
        &base,
        &DeviceTls {
            server_ca_pem: ca.cert_pem().as_bytes().to_vec(),
            cert_pem: cert.cert_pem.as_bytes().to_vec(),
            key_pem: cert.key_pem.as_bytes().to_vec(),
        },
    )
    .unwrap();
    client.poll().unwrap();
    let since = now();
    rt.block_on(quarantine(&db, device, since));

    let state = dir.path().join("state");
    let (director, director_key) = keypair(1);
    pin_root(&state, &director_key);
    // The hook: appends a line per run, so a second run shows.
    let runs = dir.path().join("runs.log");
    let hook = dir.path().join("lockdown.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$RAMPART_QUARANTINE_STATE $RAMPART_DEVICE_ID $1\" >> {}\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = rampart_agent::config::IncidentConfig {
        containment_hook: vec![hook.display().to_string()],
        ..Default::default()
    };
    let disk = Disk::new();
    let act = |instruction: &SignedQuarantine| {
        handle(&state, &disk, &client, instruction, now(), |s| {
            run_hook(&config, s)
        })
    };
    let run_count = || {
        std::fs::read_to_string(&runs)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };

    // Forged: a key the pinned root does not list, under its own id and under the director's.
    let (forger, forger_key) = keypair(2);
    let forged = signed(device, since, &forger, &forger_key);
    assert!(
        act(&forged)
            .unwrap_err()
            .contains("valid director signature")
    );
    let mut borrowed = forged.clone();
    borrowed.signatures[0].keyid = director_key.key_id();
    assert!(act(&borrowed).is_err());
    // Genuine, but for another device.
    assert!(act(&signed("dev-other", since, &director, &director_key)).is_err());
    assert_eq!(run_count(), 0, "a refused instruction ran the hook");
    assert_eq!(remembered(&state), None);

    let genuine = signed(device, since, &director, &director_key);
    let acted: Acted = act(&genuine).unwrap().expect("acted on");
    assert_eq!(
        (acted.hook, acted.acked, acted.issued),
        (HookOutcome::Succeeded, true, since)
    );
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap(),
        format!("quarantined {device} quarantined\n")
    );
    let stored = rt.block_on(db.quarantine(device)).unwrap().unwrap();
    assert_eq!(
        (stored.ack_issued, stored.ack_hook.as_deref()),
        (Some(since), Some("succeeded"))
    );
    // The next poll's copy, and a restarted agent (memory read back from the state directory),
    // run nothing again.
    assert_eq!(act(&genuine).unwrap(), None);
    assert_eq!(remembered(&state).unwrap(), acted);
    assert_eq!(run_count(), 1);
    // An older statement (a replay) is ignored.
    assert!(act(&signed(device, since - 10, &director, &director_key)).is_err());
    assert_eq!(run_count(), 1);

    let _ = stop.send(());
    rt.block_on(serving).unwrap().unwrap();
}
