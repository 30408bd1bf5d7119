//! An assignment of the release a device already runs is fulfilled at its next poll. Without
//! this, a device that rolled itself back to the release a halted campaign then rolls the
//! fleet back to had nothing to do, never reported, and stayed "assigned" forever (the demo
//! showed `{"assigned":15,"installed":5}`).

mod common;

use common::ops::Ops;
use common::*;
use serde_json::json;

on_both_backends!(an_assignment_of_the_running_release_is_fulfilled_at_the_next_poll);

async fn an_assignment_of_the_running_release_is_fulfilled_at_the_next_poll(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-on-2", "board-a", &[]).await;
    ops.device("dev-on-1", "board-a", &[]).await;
    let poll = |id: &'static str, version: &'static str| {
        let ops = &ops;
        async move {
            let mut dev = ops.server.connect(&ops.fx.device(id)).await;
            let r = dev
                .post(
                    "/device/v1/poll",
                    &json!({"hardware_id": "board-a", "firmware_version": version, "security_version": 1}),
                )
                .await;
            assert_eq!(r.status, 200, "{r:?}");
        }
    };
    // dev-on-2 already runs 2.0.0; dev-on-1 runs 1.0.0.
    poll("dev-on-2", "2.0.0").await;
    poll("dev-on-1", "1.0.0").await;
    let created = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/assignments",
            Some(&json!({"target": "fw-2.0.0.bin", "devices": ["dev-on-2", "dev-on-1"]})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().unwrap().to_owned();

    // Both poll again, as they would after the assignment.
    poll("dev-on-2", "2.0.0").await;
    poll("dev-on-1", "1.0.0").await;
    poll("dev-on-2", "2.0.0").await;
    let status = ops
        .call(
            &ops.viewer,
            "GET",
            &format!("/api/v1/assignments/{id}"),
            None,
        )
        .await;
    assert_eq!(status.status, 200);
    assert_eq!(
        status.json()["devices_by_last_status"],
        json!({"installed": 1}),
        "the device already on 2.0.0 is fulfilled"
    );
    // The device on 1.0.0 still has to install: nothing was reported for it.
    assert!(
        ops.fx
            .db
            .reports_of("dev-on-1")
            .await
            .unwrap()
            .iter()
            .all(|r| r.assignment != id)
    );
    let reports = ops.fx.db.reports_of("dev-on-2").await.unwrap();
    let fulfilled: Vec<_> = reports.iter().filter(|r| r.assignment == id).collect();
    assert_eq!(fulfilled.len(), 1, "fulfilled once, however often it polls");
    assert_eq!(fulfilled[0].status, "installed");
    assert_eq!(fulfilled[0].details["reason"], "already_running");
    ops.server.stop().await;
}
