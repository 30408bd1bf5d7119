//! `POST /api/v1/risk/advisories/{id}/remediate` through the real server, on embedded SQLite and
//! PostgreSQL: a campaign of the clean release for exactly the devices a real PyPI advisory
//! affects (the vulnerable release's devices, in two regions and two hardware ids), audited;
//! refusals of a release the advisory still affects, a release without an SBOM, an unknown
//! release, an unknown advisory, one affecting no device, and options that would override the
//! device set; affected devices on hardware the fixed release does not list are left out and
//! named, and a release built for none of them is refused.

mod common;

use common::ops::Ops;
use common::risk::*;
use common::*;
use serde_json::{Value, json};

on_both_backends!(
    remediation_campaign_targets_exactly_the_affected_devices,
    remediation_refuses_a_still_affected_or_unknown_release_and_nothing_to_fix,
    remediation_leaves_out_devices_the_fixed_release_is_not_built_for,
);

/// The fleet of the posture test: two devices on the vulnerable release, two on the clean one;
/// the real advisories naming one of the vulnerable pins imported. Answers the id of the
/// vulnerable release's worst advisory.
async fn fleet_with_feed(ops: &Ops) -> String {
    add_sbom_releases(ops).await;
    poll_as(ops, "dev-eu-a", "board-a", "eu", "3.0.0").await;
    poll_as(ops, "dev-us-b", "board-b", "us", "3.0.0").await;
    poll_as(ops, "dev-us-a-clean", "board-a", "us", "4.0.0").await;
    poll_as(ops, "dev-eu-b-clean", "board-b", "eu", "4.0.0").await;
    import_pin_advisories(ops).await;
    let by_release = posture(ops, "release").await;
    row(&by_release, "fw-vuln.bin")["worst"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Imports the real advisories naming one of the vulnerable pins.
async fn import_pin_advisories(ops: &Ops) {
    let pins: Vec<String> = VULNERABLE_PINS
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    let records: Vec<Value> = real_advisories()
        .into_iter()
        .filter(|r| {
            r["affected"].as_array().into_iter().flatten().any(|a| {
                a["package"]["name"]
                    .as_str()
                    .is_some_and(|n| pins.contains(&n.to_ascii_lowercase()))
            })
        })
        .collect();
    assert!(records.len() > 20, "{} records", records.len());
    import(ops, &ops.operator, &records).await;
}

async fn remediate(ops: &Ops, token: &str, advisory: &str, body: Value) -> (u16, Value) {
    let r = ops
        .call(
            token,
            "POST",
            &format!("/api/v1/risk/advisories/{advisory}/remediate"),
            Some(&body),
        )
        .await;
    let status = r.status;
    (status, r.json())
}

async fn remediation_campaign_targets_exactly_the_affected_devices(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let advisory = fleet_with_feed(&ops).await;
    let body = json!({"release": "fw-clean.bin", "name": "fix it",
                      "options": {"phases": {"canary": {"devices": 1}}}});
    for token in [&ops.viewer, &ops.auditor] {
        let (status, r) = remediate(&ops, token, &advisory, body.clone()).await;
        assert_eq!(status, 403, "{r}");
    }
    let (status, r) = remediate(&ops, &ops.operator, &advisory, body).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["devices"], json!(["dev-eu-a", "dev-us-b"]), "{r}");
    assert_eq!(r["devices_total"], 2);
    assert_eq!(r["status"], "draft");
    let id = r["id"].as_str().unwrap();
    // The campaign holds the device list, fixed at creation, and the options given.
    let c = ops
        .call(&ops.viewer, "GET", &format!("/api/v1/campaigns/{id}"), None)
        .await
        .json();
    assert_eq!(c["name"], "fix it");
    assert_eq!(c["release"], "fw-clean.bin");
    assert_eq!(
        c["spec"]["targets"],
        json!({"devices": ["dev-eu-a", "dev-us-b"]})
    );
    assert_eq!(c["spec"]["phases"]["canary"]["devices"], 1, "{c}");
    let audit = ops.audit_records().await;
    let record = audit
        .iter()
        .find(|r| r.action == "risk.remediation_created")
        .expect("the remediation is audited");
    assert_eq!(record.subject, id);
    assert_eq!(record.details["advisory"], advisory.as_str());
    assert_eq!(record.details["devices"], 2);
    ops.server.stop().await;
}

async fn remediation_refuses_a_still_affected_or_unknown_release_and_nothing_to_fix(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    let advisory = fleet_with_feed(&ops).await;
    // An advisory on a package no release holds: it affects no device.
    let stray = json!({"advisories": [{"id": "TEST-STRAY-1", "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "rampart-test-nowhere"}, "versions": ["1.0.0"]}]}]});
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/risk/advisories",
            Some(&stray),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    for (id, body, status, error) in [
        (
            advisory.as_str(),
            json!({"release": "fw-vuln.bin"}),
            409,
            "release_still_affected",
        ),
        (
            advisory.as_str(),
            json!({"release": "fw-1.0.0.bin"}),
            409,
            "release_not_assessed",
        ),
        (
            advisory.as_str(),
            json!({"release": "nope.bin"}),
            422,
            "unknown_release",
        ),
        (
            "NOPE-404",
            json!({"release": "fw-clean.bin"}),
            404,
            "unknown_advisory",
        ),
        (
            "TEST-STRAY-1",
            json!({"release": "fw-clean.bin"}),
            409,
            "no_affected_devices",
        ),
        (
            advisory.as_str(),
            json!({"release": "fw-clean.bin", "options": {"targets": {"group": "all"}}}),
            422,
            "invalid",
        ),
        (
            advisory.as_str(),
            json!({"release": "fw-clean.bin", "options": {"colour": "red"}}),
            422,
            "invalid",
        ),
        (
            advisory.as_str(),
            json!({"release": "fw-clean.bin", "bogus": 1}),
            422,
            "invalid",
        ),
    ] {
        let (got, r) = remediate(&ops, &ops.operator, id, body.clone()).await;
        assert_eq!(got, status, "{id} {body}: {r}");
        assert!(
            r["error"].as_str().unwrap_or("").contains(error),
            "{id} {body}: {r}"
        );
        assert!(!r["detail"].as_str().unwrap_or("").is_empty(), "{r}");
    }
    // Nothing was created by the refusals.
    let list = ops
        .call(&ops.viewer, "GET", "/api/v1/campaigns", None)
        .await
        .json();
    assert_eq!(list["campaigns"], json!([]), "{list}");
    ops.server.stop().await;
}

async fn remediation_leaves_out_devices_the_fixed_release_is_not_built_for(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    add_sbom_releases(&ops).await;
    // board-c runs version 3.0.0 too; fw-clean.bin is built for board-a and board-b only,
    // so a campaign of it could not start on board-c.
    poll_as(&ops, "dev-eu-a", "board-a", "eu", "3.0.0").await;
    poll_as(&ops, "dev-eu-c", "board-c", "eu", "3.0.0").await;
    import_pin_advisories(&ops).await;
    let by_release = posture(&ops, "release").await;
    let vulnerable = row(&by_release, "fw-vuln.bin");
    assert_eq!(vulnerable["affected_devices"], 2, "{vulnerable}");
    let advisory = vulnerable["worst"]["id"].as_str().unwrap().to_owned();

    let (status, r) = remediate(
        &ops,
        &ops.operator,
        &advisory,
        json!({"release": "fw-clean.bin", "start": true}),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["devices"], json!(["dev-eu-a"]), "{r}");
    assert_eq!(
        r["incompatible"],
        json!([{"id": "dev-eu-c", "hardware_id": "board-c"}]),
        "{r}"
    );
    assert_eq!(r["incompatible_total"], 1, "{r}");
    // Leaving board-c out is what lets the campaign start.
    assert_eq!(r["status"], "running", "{r}");
    let audit = ops.audit_records().await;
    let record = audit
        .iter()
        .find(|r| r.action == "risk.remediation_created")
        .expect("the remediation is audited");
    assert_eq!(record.details["incompatible"], 1);

    // Once board-a runs the clean release, only board-c is affected: fw-clean.bin fixes
    // none of the affected devices.
    poll_as(&ops, "dev-eu-a", "board-a", "eu", "4.0.0").await;
    let (status, r) = remediate(
        &ops,
        &ops.operator,
        &advisory,
        json!({"release": "fw-clean.bin"}),
    )
    .await;
    assert_eq!(status, 409, "{r}");
    assert_eq!(r["error"], "no_compatible_devices", "{r}");
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.contains("board-c"), "{detail}");
    ops.server.stop().await;
}
