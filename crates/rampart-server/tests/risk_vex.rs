//! Vendor-signed VEX through the real server (issue 17, decision 0047), on embedded SQLite and
//! PostgreSQL: the real PyPI advisories of ../shared/vectors/osv-pypi imported, a release
//! pinning jinja2 2.10, a vendor's OpenVEX statement (signed with a real key file) that
//! PYSEC-2019-217 (CVE-2019-10906) does not affect it: suppressed in the posture and the
//! advisory route with its justification, at the next request; a later `affected` statement
//! overrides it. Unsigned, untrusted, tampered and oversized VEX refused with nothing stored;
//! roles; a server without vendor keys refuses VEX.

mod common;

use base64::Engine as _;
use common::ops::Ops;
use common::risk::*;
use common::*;
use rampart_vuln::provenance::Envelope;
use rampart_vuln::signed_vex::OPENVEX_PAYLOAD_TYPE;
use serde_json::{Value, json};

on_both_backends!(
    a_signed_vex_suppresses_a_real_advisory_in_posture_until_a_later_affected_statement,
    vex_import_refuses_unsigned_untrusted_tampered_and_oversized_documents,
    vex_import_is_refused_without_configured_signers,
);

/// A vendor with a real key file (the server tests' key scheme), signing as `rampart risk vex
/// sign` does.
struct Vendor {
    signer: Box<dyn rampart_keys::Signer>,
    _dir: tempfile::TempDir,
}

impl Vendor {
    fn new(name: &str) -> Vendor {
        let dir = tempfile::tempdir().unwrap();
        let path = gen_key(dir.path(), name);
        Vendor {
            signer: open_key(&path).unwrap(),
            _dir: dir,
        }
    }

    fn key(&self) -> rampart_core::keys::Key {
        self.signer.public_key().clone()
    }

    fn sign(&self, document: &str) -> Value {
        let envelope = Envelope::sign(
            OPENVEX_PAYLOAD_TYPE,
            document.as_bytes(),
            &self.signer.key_id(),
            |m| self.signer.sign(m),
        )
        .unwrap();
        serde_json::to_value(envelope).unwrap()
    }
}

fn openvex(status: &str, timestamp: &str) -> String {
    let reason = if status == "not_affected" {
        r#""justification": "vulnerable_code_not_in_execute_path",
           "impact_statement": "Templates are compiled at build time; the sandbox is never used.","#
    } else {
        r#""action_statement": "Upgrade to the next firmware release.","#
    };
    format!(
        r#"{{"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://vendor.example/vex/{timestamp}",
            "author": "Vendor Security", "timestamp": "{timestamp}", "version": 1,
            "statements": [{{"vulnerability": {{"name": "CVE-2019-10906"}},
              "products": [{{"@id": "pkg:pypi/jinja2@2.10"}}], "status": "{status}", {reason}
              "timestamp": "{timestamp}"}}]}}"#
    )
}

async fn advisory(ops: &Ops, id: &str) -> Value {
    let r = ops
        .call(
            &ops.viewer,
            "GET",
            &format!("/api/v1/risk/advisories/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["advisories"][0].clone()
}

async fn vex_total(ops: &Ops) -> u64 {
    let r = ops.call(&ops.viewer, "GET", "/api/v1/risk/vex", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["total"].as_u64().unwrap()
}

async fn a_signed_vex_suppresses_a_real_advisory_in_posture_until_a_later_affected_statement(
    backend: Backend,
    name: &str,
) {
    let vendor = Vendor::new("vendor");
    let key = vendor.key();
    let ops = Ops::start_with(backend, name, move |c| c.vex_signers = vec![key]).await;
    add_sbom_releases(&ops).await;
    poll_as(&ops, "dev-eu-a", "board-a", "eu", "3.0.0").await;
    poll_as(&ops, "dev-us-b", "board-b", "us", "3.0.0").await;
    import(&ops, &ops.operator, &real_advisories()).await;

    let before = advisory(&ops, "PYSEC-2019-217").await;
    assert_eq!(before["affected_count"], 2, "{before}");
    assert_eq!(before["suppressed"], json!([]));
    let release_before = row(&posture(&ops, "release").await, "fw-vuln.bin").clone();
    assert_eq!(release_before["suppressed_total"], 0);

    let signed = vendor.sign(&openvex("not_affected", "2024-03-01T12:00:00Z"));
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/risk/vex", Some(&signed))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let stored = r.json();
    assert_eq!(stored["signer_key_id"], vendor.signer.key_id());
    assert_eq!(stored["statements"], 1);
    // The same document again is stored once.
    let again = ops
        .call(&ops.admin, "POST", "/api/v1/risk/vex", Some(&signed))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json()["created"], false);
    assert_eq!(vex_total(&ops).await, 1);

    // At the next request: the advisory affects no device, and says why.
    let after = advisory(&ops, "PYSEC-2019-217").await;
    assert_eq!(after["affected_count"], 0, "{after}");
    let suppressed = &after["suppressed"][0];
    assert_eq!(suppressed["release"], "fw-vuln.bin");
    assert_eq!(suppressed["name"], "jinja2");
    assert_eq!(suppressed["vex"]["status"], "not_affected");
    assert_eq!(
        suppressed["vex"]["justification"],
        "vulnerable_code_not_in_execute_path"
    );
    assert_eq!(suppressed["vex"]["source"], stored["id"]);
    for (by, key) in [
        ("region", "eu"),
        ("hardware", "board-b"),
        ("release", "fw-vuln.bin"),
    ] {
        let p = posture(&ops, by).await;
        let r = row(&p, key);
        assert_eq!(r["suppressed_total"], 1, "{by} {key}: {r}");
        assert_eq!(r["suppressed"][0]["advisory"], "PYSEC-2019-217", "{r}");
        assert!(
            r["suppressed"][0]["vex"]["impact_statement"]
                .as_str()
                .unwrap()
                .contains("sandbox"),
            "{r}"
        );
    }
    let release_after = row(&posture(&ops, "release").await, "fw-vuln.bin").clone();
    assert!(
        release_after["score"].as_u64() < release_before["score"].as_u64(),
        "{release_after} vs {release_before}"
    );

    // The vendor later finds it affected after all: the newer statement wins the conflict.
    let later = vendor.sign(&openvex("affected", "2024-06-01T00:00:00Z"));
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/risk/vex", Some(&later))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let restored = advisory(&ops, "PYSEC-2019-217").await;
    assert_eq!(restored["affected_count"], 2, "{restored}");
    assert_eq!(restored["suppressed"], json!([]));
    let release_restored = row(&posture(&ops, "release").await, "fw-vuln.bin").clone();
    assert_eq!(release_restored["score"], release_before["score"]);

    // Removing the later document brings the suppression back.
    let later_id = r.json()["id"].as_str().unwrap().to_owned();
    let r = ops
        .call(
            &ops.operator,
            "DELETE",
            &format!("/api/v1/risk/vex/{later_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(advisory(&ops, "PYSEC-2019-217").await["affected_count"], 0);
    let audit = ops.audit_records().await;
    for action in ["risk.vex_imported", "risk.vex_removed"] {
        assert!(audit.iter().any(|a| a.action == action), "no {action}");
    }
    ops.server.stop().await;
}

async fn vex_import_refuses_unsigned_untrusted_tampered_and_oversized_documents(
    backend: Backend,
    name: &str,
) {
    let vendor = Vendor::new("vendor");
    let key = vendor.key();
    let ops = Ops::start_with(backend, name, move |c| c.vex_signers = vec![key]).await;
    let document = openvex("not_affected", "2024-03-01T12:00:00Z");
    let post = |body: Value| {
        let ops = &ops;
        async move {
            ops.call(&ops.operator, "POST", "/api/v1/risk/vex", Some(&body))
                .await
        }
    };

    // A bare document: unsigned.
    let r = post(serde_json::from_str(&document).unwrap()).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (422, json!("unsigned_vex")),
        "{r:?}"
    );
    // Signed by a key the server does not trust.
    let stranger = Vendor::new("stranger");
    let r = post(stranger.sign(&document)).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (422, json!("untrusted_vex_signer")),
        "{r:?}"
    );
    // Changed after signing.
    let mut tampered = vendor.sign(&document);
    let changed = document.replace("not_affected", "fixed");
    tampered["payload"] = json!(base64::engine::general_purpose::STANDARD.encode(changed));
    let r = post(tampered).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (422, json!("wrong_vex_signature")),
        "{r:?}"
    );
    // Roles: reading is for every role that reads, importing for operators.
    for token in [&ops.viewer, &ops.auditor] {
        let r = ops
            .call(
                token,
                "POST",
                "/api/v1/risk/vex",
                Some(&vendor.sign(&document)),
            )
            .await;
        assert_eq!(r.status, 403, "{r:?}");
    }
    // A query the listing does not take: 422.
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/risk/vex?limit=0", None)
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    let r = ops
        .call(&ops.operator, "DELETE", "/api/v1/risk/vex/nothex", None)
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    let r = ops
        .call(
            &ops.operator,
            "DELETE",
            &format!("/api/v1/risk/vex/{}", "0".repeat(64)),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(vex_total(&ops).await, 0);

    // A signed document of ~100 KiB (a large CycloneDX VEX) is over the server's default body
    // limit (64 KiB) but within the VEX route's: accepted.
    let padded = document.replace(
        r#""author": "Vendor Security""#,
        &format!(r#""author": "Vendor Security {}""#, "x".repeat(100 * 1024)),
    );
    let r = post(vendor.sign(&padded)).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(vex_total(&ops).await, 1);
    // Over the VEX route's limit: 413, and nothing stored.
    let oversized = document.replace(
        r#""author": "Vendor Security""#,
        &format!(r#""author": "Vendor Security {}""#, "x".repeat(600 * 1024)),
    );
    let r = post(vendor.sign(&oversized)).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(vex_total(&ops).await, 1);
    ops.server.stop().await;
}

async fn vex_import_is_refused_without_configured_signers(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let vendor = Vendor::new("vendor");
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/risk/vex",
            Some(&vendor.sign(&openvex("not_affected", "2024-03-01T12:00:00Z"))),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let body = r.json();
    assert_eq!(body["error"], "no_vex_signers");
    assert!(
        body["detail"].as_str().unwrap().contains("--vex-signer"),
        "{body}"
    );
    assert_eq!(vex_total(&ops).await, 0);
    ops.server.stop().await;
}
