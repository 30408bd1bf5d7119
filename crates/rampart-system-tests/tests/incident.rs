//! Incident response end to end, with a real TPM: swtpm, the real `rampart-agent` (TPM-held
//! key, measured boot), the real `rampart server` with attestation, the incident engine, alerts
//! to a real HTTP receiver and a real syslog receiver. A device's running slot is tampered
//! with; at its next boot the measurement no longer matches the release, its quote fails, and:
//! the attestation detector opens an incident; the playbook quarantines the device (the server
//! refuses it assignments; the agent verifies the signed instruction and runs its containment
//! hook), collects a signed evidence bundle (the TPM quote binds it) and alerts; the server is
//! killed and restarted mid-incident and resumes; the operator approves the re-image, which
//! leaves both slots on the known-good release; the operator releases the device; the exported
//! chain-of-custody bundle verifies offline, and a tampered copy does not.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_boot::ab::Slot;
use rampart_testkit::cli::{ok, rampart, run, s};
use serde_json::{Value, json};
use support::log_site::LogSite;
use support::tpm_site::{DEVICE, SLOT_BYTES, TpmSite, V1, V2};

const SECRET: &str = "incident-webhook-secret-0123456789";

/// One request a receiver got: its headers (names lowercased) and body.
type Request = (Vec<(String, String)>, Vec<u8>);

/// A webhook receiver: every request's headers and body, answered 200.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Request>>>);

impl Received {
    fn start() -> (Received, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        let received = Received::default();
        let store = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut line); // request line
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let length = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length.min(1 << 20)];
                if reader.read_exact(&mut body).is_ok() {
                    store.0.lock().unwrap().push((headers, body));
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        (received, url)
    }

    /// The bodies of signed `incident.alert` deliveries whose signature verifies.
    fn verified_alerts(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(headers, body)| {
                let h = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let ts: i64 = h("x-rampart-timestamp").parse().ok()?;
                let expected = rampart_notify::sign(SECRET.as_bytes(), ts, body);
                (h("x-rampart-event") == "incident.alert" && h("x-rampart-signature") == expected)
                    .then(|| serde_json::from_slice(body).ok())
                    .flatten()
            })
            .collect()
    }
}

/// The incidents naming the device.
fn incidents_of(site: &TpmSite, detector: &str) -> Vec<Value> {
    let list = site
        .api
        .get(&format!("/api/v1/incidents?detector={detector}"));
    list["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            site.api
                .get(&format!("/api/v1/incidents/{}", i["id"].as_str().unwrap()))
        })
        .filter(|v| {
            v["devices"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["device_id"] == DEVICE))
        })
        .collect()
}

fn incident(site: &TpmSite, id: &str) -> Value {
    site.api.get(&format!("/api/v1/incidents/{id}"))
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_tampered_device_is_detected_contained_investigated_reimaged_and_exported() {
    let (webhook, webhook_url) = Received::start();
    let syslog = UdpSocket::bind("127.0.0.1:0").unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let syslog_addr = syslog.local_addr().unwrap();
    let hook_dir = tempfile::tempdir().unwrap();
    // Evidence bundles are anchored in a witnessed transparency log (with the audit heads).
    let logs = LogSite::start(hook_dir.path(), "log.example/incidents");
    let evidence_dir = hook_dir.path().join("evidence");
    let contained = hook_dir.path().join("contained");
    let agent_config = format!(
        "[incident]\ncontainment_hook = [\"sh\", \"-c\", \"echo locked-down >> {c}\"]\n",
        c = contained.display()
    );
    let mut site = TpmSite::start(
        &[
            "--attestation-freshness".into(),
            "30".into(),
            "--syslog".into(),
            format!("udp://{syslog_addr}"),
            "--webhook-allow".into(),
            "127.0.0.1/32".into(),
            "--evidence-dir".into(),
            evidence_dir.display().to_string(),
            "--audit-log-url".into(),
            logs.url.clone(),
            "--audit-log-policy".into(),
            logs.policy.display().to_string(),
        ],
        &agent_config,
    );
    let (status, v) = site.api.call(
        "POST",
        "/api/v1/webhooks",
        Some(json!({"url": webhook_url, "secret": SECRET, "events": ["incident.alert"], "description": "on-call"})),
    );
    assert_eq!(status, 201, "{v}");
    let audit_key = site
        .server
        .line_after("audit heads signed with key ", Duration::from_secs(30))
        .expect("the server prints its audit key");
    site.attested_on(V1);

    // ---- The attack: the running slot's image is changed (it still boots). ----
    let mut a = site.dev.slot(Slot::A);
    a[100] ^= 0xff;
    write(&site.dev.dir.join("slot-A"), &a);
    assert_eq!(site.reboot(), Slot::A);

    // ---- Detected: the failed quote opens an attestation incident naming the device. ----
    site.run_until("an attestation incident names the device", |site| {
        !incidents_of(site, "attestation_failed").is_empty()
    });
    let id = incidents_of(&site, "attestation_failed")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // ---- Contained: quarantined server side, the signed instruction ran the hook once. ----
    site.run_until("the device is quarantined and its hook ran", |site| {
        let q = site
            .api
            .get(&format!("/api/v1/devices/{DEVICE}/quarantine"));
        q["quarantined"] == true && q["quarantine"]["ack_hook"] == "succeeded" && contained.exists()
    });
    let (status, v) = site.api.call(
        "POST",
        "/api/v1/assignments",
        Some(json!({"target": V2, "type": "forced", "devices": [DEVICE]})),
    );
    assert_eq!(status, 409, "a quarantined device takes no assignment: {v}");

    // ---- Evidence: collected, signed by the TPM-held key, stored and anchored. ----
    site.run_until("the evidence bundle is stored", |site| {
        incident(site, &id)["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e["kind"] == "evidence_stored"))
    });

    // ---- The server dies mid-incident and comes back where it was. ----
    site.restart_server();
    // Every device of the incident is quarantined: the engine's automatic progress (a pass
    // every few seconds, resumed after the restart) moves it to contained.
    site.run_until("the incident is contained", |site| {
        incident(site, &id)["state"] == "contained"
    });
    let view = incident(&site, &id);

    // ---- Eradicated and recovered: the operator approves the re-image (the playbook holds it
    // for the operator role); both slots end on the device's last attested-good release. ----
    let pending: Vec<String> = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "reimage" && a["state"] == "pending_approval")
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pending.len(), 1, "{view}");
    let (status, v) = site.api.call(
        "POST",
        &format!("/api/v1/incident-actions/{}/approve", pending[0]),
        None,
    );
    assert_eq!(status, 200, "{v}");
    // Agent passes (rebooting when it says so) until both slots hold the good release.
    let good = sha256(&site.v1);
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        let (_, out) = site.dev.run_once();
        if out.contains("rebooting") {
            site.reboot();
        }
        let both = [Slot::A, Slot::B]
            .iter()
            .all(|slot| sha256(&site.dev.slot(*slot)[..site.v1.len()]) == good);
        if both && !out.contains("rebooting") {
            break;
        }
        last = out;
        std::thread::sleep(Duration::from_millis(300));
    }
    for slot in [Slot::A, Slot::B] {
        assert_eq!(
            sha256(&site.dev.slot(slot)[..site.v1.len()]),
            sha256(&site.v1),
            "slot {slot} holds the known-good release; last agent output:\n{last}"
        );
        assert_eq!(site.dev.slot(slot).len(), SLOT_BYTES);
    }
    site.attested_on(V1);
    ok(rampart(&[
        "device",
        "release",
        DEVICE,
        "--api",
        &site.management,
        "--token",
        &site.token,
        "--ca",
        s(&site.pki.ca_pem),
    ]));
    site.run_until("the incident is recovered", |site| {
        incident(site, &id)["state"] == "recovered"
    });
    let view = incident(&site, &id);
    for phase in ["to_detect", "to_contain", "to_recover"] {
        assert!(view["timings"][phase].is_u64(), "{phase}: {view}");
    }

    // ---- Exported: the chain-of-custody bundle verifies offline; a tampered one fails. ----
    site.run_until("the evidence bundle is anchored in the log", |site| {
        site.api.get(&format!("/api/v1/incidents/{id}/evidence"))["bundles"][0]["anchored"] == true
    });
    let export = site.w.join("incident-export.json");
    ok(rampart(&[
        "incident",
        "export",
        &id,
        "--out",
        s(&export),
        "--api",
        &site.management,
        "--token",
        &site.token,
        "--ca",
        s(&site.pki.ca_pem),
    ]));
    let out = ok(rampart(&[
        "incident",
        "verify-export",
        s(&export),
        "--ca",
        s(&site.pki.ca_pem),
        "--anchor-key",
        audit_key.trim(),
        "--log-policy",
        s(&logs.policy),
    ]));
    assert!(out.contains("1 evidence bundle(s) verified"), "{out}");
    let mut tampered: Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    // The device's own words in the bundle, changed after the fact.
    let bundle = tampered["evidence"][0]["bundle"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if bundle.starts_with('e') { "f" } else { "e" };
    tampered["evidence"][0]["bundle"] = json!(format!("{flipped}{}", &bundle[1..]));
    let tampered_path = site.w.join("tampered-export.json");
    write(&tampered_path, &serde_json::to_vec(&tampered).unwrap());
    let (verified, out) = run(rampart(&[
        "incident",
        "verify-export",
        s(&tampered_path),
        "--ca",
        s(&site.pki.ca_pem),
        "--anchor-key",
        audit_key.trim(),
        "--log-policy",
        s(&logs.policy),
    ]));
    assert!(!verified, "a tampered export must not verify: {out}");

    // ---- Alerted: a signed webhook and an RFC 5424 syslog message carry the incident. ----
    let alerts = webhook.verified_alerts();
    assert!(
        alerts.iter().any(|a| a.to_string().contains(&id)),
        "a signed incident.alert names the incident: {alerts:?}"
    );
    let mut buf = [0u8; 65536];
    let mut found = false;
    while let Ok(n) = syslog.recv(&mut buf) {
        let message = rampart_notify::syslog::parse(&buf[..n]).expect("RFC 5424");
        if message.param("incident@32473", "id") == Some(id.as_str()) {
            found = true;
            break;
        }
    }
    assert!(found, "a syslog message names the incident");
    site.server.kill();
    drop(logs);
}
