//! Risk per slot (issue 17, decision 0049) through the real server, on embedded SQLite and
//! PostgreSQL: devices say what each slot holds in their poll (`slot_versions`); posture counts
//! a device whose INACTIVE slot holds the vulnerable release in `fallback_affected` and not in
//! `affected_devices`; the advisory route marks which slot holds it; remediation targets the
//! devices running it and lists the others as `fallback_only`; devices that do not say (older
//! agents, hawkBit clients) are assessed as before; a poll over the bounds is refused.

mod common;

use common::ops::Ops;
use common::risk::*;
use common::*;
use serde_json::{Value, json};

on_both_backends!(
    posture_counts_a_vulnerable_fallback_slot_apart_from_the_running_one,
    slot_versions_over_the_bounds_refuse_the_poll,
);

async fn poll_with_slots(ops: &Ops, id: &str, running: &str, slots: Value, versions: Value) -> u16 {
    let mut dev = ops.server.connect(&ops.fx.device(id)).await;
    let r = dev
        .post(
            "/device/v1/poll",
            &json!({"hardware_id": "board-a", "firmware_version": running, "security_version": 1,
                    "region": "eu", "slots": slots, "slot_versions": versions}),
        )
        .await;
    r.status
}

/// The real advisories that name `requests` (one of the vulnerable release's pins).
fn requests_advisories() -> Vec<Value> {
    let records = advisories_naming("requests");
    assert!(records.len() >= 3, "{} records", records.len());
    records
}

async fn posture_counts_a_vulnerable_fallback_slot_apart_from_the_running_one(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    add_sbom_releases(&ops).await;
    // Updated to the clean release; the vulnerable one stays in slot a (what a rollback boots).
    let status = poll_with_slots(
        &ops,
        "dev-fallback",
        "4.0.0",
        json!({"a": "good", "b": "active"}),
        json!({"a": "3.0.0", "b": "4.0.0"}),
    )
    .await;
    assert_eq!(status, 200);
    // Runs the vulnerable release; its other slot was never written.
    let status = poll_with_slots(
        &ops,
        "dev-running",
        "3.0.0",
        json!({"a": "active", "b": "good"}),
        json!({"a": "3.0.0"}),
    )
    .await;
    assert_eq!(status, 200);
    // Clean in both slots.
    let status = poll_with_slots(
        &ops,
        "dev-clean",
        "4.0.0",
        json!({"a": "active", "b": "good"}),
        json!({"a": "4.0.0", "b": "4.0.0"}),
    )
    .await;
    assert_eq!(status, 200);
    // Older agents and hawkBit clients say nothing of their slots' versions.
    poll_as(&ops, "dev-old-agent", "board-a", "eu", "3.0.0").await;
    import(&ops, &ops.operator, &requests_advisories()).await;

    let by_device = posture(&ops, "device").await;
    let fallback = row(&by_device, "dev-fallback");
    assert_eq!(fallback["affected_devices"], 0, "{fallback}");
    assert_eq!(fallback["fallback_affected"], 1, "{fallback}");
    assert_eq!(fallback["score"], 0, "the running counts stay: {fallback}");
    let fallback_advisories = fallback["fallback_advisories"].as_array().unwrap();
    assert!(!fallback_advisories.is_empty(), "{fallback}");
    for (id, affected, fallback_affected) in [
        ("dev-running", 1, 0),
        ("dev-clean", 0, 0),
        ("dev-old-agent", 1, 0),
    ] {
        let r = row(&by_device, id);
        assert_eq!(r["affected_devices"], affected, "{r}");
        assert_eq!(r["fallback_affected"], fallback_affected, "{r}");
        assert!(r.get("fallback_advisories").is_none(), "{r}");
    }
    // The device without slot versions scores exactly as a device running the same release.
    assert_eq!(
        row(&by_device, "dev-old-agent")["score"],
        row(&by_device, "dev-running")["score"]
    );
    let eu = posture(&ops, "region").await;
    let eu = row(&eu, "eu");
    assert_eq!(
        (
            &eu["devices"],
            &eu["affected_devices"],
            &eu["fallback_affected"]
        ),
        (&json!(4), &json!(2), &json!(1)),
        "{eu}"
    );

    // The advisory marks which slot holds the affected release.
    let advisory = fallback_advisories[0].as_str().unwrap();
    let detail = ops
        .call(
            &ops.viewer,
            "GET",
            &format!("/api/v1/risk/advisories/{advisory}"),
            None,
        )
        .await;
    assert_eq!(detail.status, 200, "{detail:?}");
    let detail = detail.json()["advisories"][0].clone();
    assert_eq!(detail["affected_count"], 2, "{detail}");
    assert_eq!(detail["fallback_only_count"], 1, "{detail}");
    let marks: Vec<(&str, &str)> = detail["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["slot"].as_str().unwrap()))
        .collect();
    assert_eq!(
        marks,
        [
            ("dev-fallback", "inactive"),
            ("dev-old-agent", "running"),
            ("dev-running", "running"),
        ]
    );

    // Remediation targets the devices running it; the fallback-only device is listed apart.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            &format!("/api/v1/risk/advisories/{advisory}/remediate"),
            Some(&json!({"release": "fw-clean.bin"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = r.json();
    assert_eq!(r["devices"], json!(["dev-old-agent", "dev-running"]), "{r}");
    assert_eq!(r["fallback_only"], json!(["dev-fallback"]), "{r}");
    assert_eq!(r["fallback_only_total"], 1, "{r}");
    ops.server.stop().await;
}

async fn slot_versions_over_the_bounds_refuse_the_poll(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let nine: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("s{i}"), json!("1.0.0"))).collect();
    let mut dev = ops.server.connect(&ops.fx.device("dev-many")).await;
    for (versions, needle) in [
        (Value::Object(nine), "more than 8 slots"),
        (json!({"a": "1".repeat(129)}), "the version of slot"),
        (json!({"a": null}), "invalid type"),
    ] {
        let r = dev
            .post(
                "/device/v1/poll",
                &json!({"hardware_id": "board-a", "firmware_version": "1.0.0",
                        "security_version": 1, "slot_versions": versions}),
            )
            .await;
        assert_eq!(r.status, 422, "{r:?}");
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(needle), "{detail}");
    }
    // Eight are taken.
    let eight: serde_json::Map<String, Value> =
        (0..8).map(|i| (format!("s{i}"), json!("1.0.0"))).collect();
    let r = dev
        .post(
            "/device/v1/poll",
            &json!({"hardware_id": "board-a", "firmware_version": "1.0.0",
                    "security_version": 1, "slot_versions": eight}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let stored = ops.fx.db.device("dev-many").await.unwrap().unwrap();
    assert_eq!(stored.facts.slot_versions.unwrap().len(), 8);
    ops.server.stop().await;
}
