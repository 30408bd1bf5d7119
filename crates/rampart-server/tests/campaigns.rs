//! Campaigns through the management API, with devices polling and reporting on the mutual-TLS
//! device API, against embedded SQLite and PostgreSQL: waves widen on healthy results, a
//! breach halts on its own and rolls the fleet back, bad requests are refused, and a restart
//! mid-campaign resumes where it was. Alerts go to a real HTTP receiver on loopback.

mod common;

use std::future::IntoFuture as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ops::Ops;
use common::*;
use serde_json::{Value, json};

on_both_backends!(
    a_healthy_campaign_widens_to_every_device,
    a_breach_halts_at_the_canary_and_rolls_the_fleet_back,
    bad_campaigns_are_refused_with_clear_errors,
    a_restart_mid_campaign_resumes_where_it_was,
    operator_actions_follow_the_state_machine,
    conditions_and_maintenance_windows_hold_devices_until_they_allow,
    a_campaign_skips_a_quarantined_device_and_its_gate_does_not_count_it,
);

fn dev(i: usize) -> String {
    format!("dev-{i:03}")
}

async fn register(ops: &Ops, n: usize) {
    for i in 0..n {
        ops.device(&dev(i), "board-a", &["lab"]).await;
    }
}

/// What a device is told on its next poll: `(assignment id, target, type)`.
async fn poll(ops: &Ops, id: &str) -> Option<(String, String, String)> {
    let mut conn = ops.server.connect(&ops.fx.device(id)).await;
    let r = conn.post("/device/v1/poll", &json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let a = r.json()["assignment"].clone();
    (!a.is_null()).then(|| {
        (
            a["id"].as_str().unwrap().to_string(),
            a["target"].as_str().unwrap().to_string(),
            a["type"].as_str().unwrap_or("").to_string(),
        )
    })
}

async fn report(ops: &Ops, id: &str, assignment: &str, status: &str, reason: &str) {
    let mut conn = ops.server.connect(&ops.fx.device(id)).await;
    let r = conn
        .post(
            "/device/v1/reports",
            &json!({"id": format!("{assignment}-{status}-{}", unix_now_nanos()), "status": status, "assignment": assignment, "details": {"reason": reason}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
}

fn unix_now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn create(ops: &Ops, spec: Value, start: bool) -> Response {
    ops.call(
        &ops.operator,
        "POST",
        "/api/v1/campaigns",
        Some(&json!({"spec": spec, "start": start})),
    )
    .await
}

async fn campaign(ops: &Ops, id: &str) -> Value {
    let r = ops
        .call(&ops.viewer, "GET", &format!("/api/v1/campaigns/{id}"), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// Waits until the campaign's status (and wave) is as given.
async fn wait_for(ops: &Ops, id: &str, status: &str, wave: u64) -> Value {
    // A generous bound: the campaign engine's passes run later on a busy machine, and only
    // the state is asserted, never how fast it came.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut last = Value::Null;
    while std::time::Instant::now() < deadline {
        last = campaign(ops, id).await;
        if last["status"] == status && last["wave"] == wave {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("campaign {id} never reached {status} at wave {wave} within 120 s: {last:#}");
}

/// Devices currently told to install `target` under `assignment`.
async fn assigned(ops: &Ops, n: usize, assignment: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        if let Some((a, _, _)) = poll(ops, &dev(i)).await
            && a == assignment
        {
            out.push(dev(i));
        }
    }
    out
}

fn spec(name: &str, release: &str) -> Value {
    json!({
        "name": name,
        "release": release,
        "targets": {"filter": {"hardware_id": "board-a"}},
        "phases": {"canary": {"devices": 2}, "waves": [{"percent": 50}]},
        "gate": {"min_success_pct": 90, "max_failure_pct": 20, "min_results": 2},
    })
}

async fn a_healthy_campaign_widens_to_every_device(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    register(&ops, 10).await;
    let r = create(&ops, spec("fw 1.0", "fw-1.0.0.bin"), true).await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["plan"], json!([2, 5, 10]));
    // The canary: two devices, told the campaign's release as a forced update.
    let canary = assigned(&ops, 10, &id).await;
    assert_eq!(canary.len(), 2, "{canary:?}");
    let (_, target, kind) = poll(&ops, &canary[0]).await.unwrap();
    assert_eq!((target.as_str(), kind.as_str()), ("fw-1.0.0.bin", "forced"));
    for d in &canary {
        report(&ops, d, &id, "downloading", "").await;
        report(&ops, d, &id, "installed", "ok").await;
    }
    wait_for(&ops, &id, "running", 1).await;
    let wave1 = assigned(&ops, 10, &id).await;
    assert_eq!(wave1.len(), 5);
    for d in wave1.iter().filter(|d| !canary.contains(d)) {
        report(&ops, d, &id, "installed", "ok").await;
    }
    wait_for(&ops, &id, "running", 2).await;
    for d in &assigned(&ops, 10, &id).await {
        report(&ops, d, &id, "installed", "ok").await;
    }
    let done = wait_for(&ops, &id, "completed", 2).await;
    let total = &done["figures"]["total"];
    assert_eq!(
        (total["devices"].as_u64(), total["succeeded"].as_u64()),
        (Some(10), Some(10))
    );
    assert_eq!(done["figures"]["waves"].as_array().unwrap().len(), 3);
    assert!(
        done["figures"]["time_to"][3]["seconds"].is_i64(),
        "{done:#}"
    );
    // The report as CSV.
    let r = ops
        .call(
            &ops.viewer,
            "GET",
            &format!("/api/v1/campaigns/{id}/report?format=csv"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let csv = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        csv.lines().nth(1).unwrap().starts_with("canary,2,2,0,"),
        "{csv}"
    );
    assert!(
        csv.lines().nth(4).unwrap().starts_with("total,10,10,0,"),
        "{csv}"
    );
    // Audited: created, started, two waves, completed.
    let actions: Vec<String> = ops
        .audit_records()
        .await
        .iter()
        .map(|r| r.action.clone())
        .filter(|a| a.starts_with("campaign."))
        .collect();
    assert_eq!(
        actions,
        [
            "campaign.created",
            "campaign.started",
            "campaign.wave_started",
            "campaign.wave_started",
            "campaign.completed"
        ]
    );
}

/// An HTTP endpoint on loopback that records every webhook body it is sent (answers 200).
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = bodies.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let store = store.clone();
        async move {
            if let Ok(v) = serde_json::from_slice(&body) {
                store.lock().unwrap().push(v);
            }
            "thanks"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rampart", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    (url, bodies)
}

/// The `data` of the webhook event `event` about `campaign`, once it has arrived.
async fn alert(bodies: &Mutex<Vec<Value>>, event: &str, campaign: &str) -> Value {
    // Generous: delivery waits on the dispatcher's tick and a loaded machine (never timing).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let found = bodies
            .lock()
            .unwrap()
            .iter()
            .find(|b| b["event"] == event && b["data"]["campaign"] == campaign)
            .cloned();
        if let Some(b) = found {
            return b["data"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {event} webhook for {campaign}; received: {:#?}",
            bodies.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_breach_halts_at_the_canary_and_rolls_the_fleet_back(backend: Backend, name: &str) {
    let keys = tempfile::tempdir().unwrap();
    let ops = Ops::start_with(backend, name, |c| {
        c.webhooks.poll_interval = Duration::from_millis(50);
        // The alert receiver is on loopback, which webhooks reach only when allow-listed; the
        // webhook's secret is sealed with a key file (needed on PostgreSQL).
        c.webhooks.allow_networks = vec!["127.0.0.0/8".parse().unwrap()];
        c.webhooks.secrets_key = Some(keys.path().join("secrets.key"));
    })
    .await;
    // The operators' alert endpoint.
    let (url, alerts) = webhook_receiver().await;
    let r = ops
        .call(
            &ops.admin,
            "POST",
            "/api/v1/webhooks",
            Some(
                &json!({"url": url, "secret": "a-webhook-secret-of-32-bytes-xyz",
                "events": ["campaign.gate_breach", "campaign.halted", "campaign.completed"]}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    register(&ops, 10).await;
    // Everyone first runs fw-1.0.0 through a campaign that completes.
    let mut good = spec("fw 1.0", "fw-1.0.0.bin");
    good["phases"] = json!({"canary": {"percent": 100}});
    let r = create(&ops, good, true).await;
    let first = r.json()["id"].as_str().unwrap().to_string();
    for d in assigned(&ops, 10, &first).await {
        report(&ops, &d, &first, "installed", "ok").await;
    }
    wait_for(&ops, &first, "completed", 0).await;
    // fw-2.0.0 breaks: the canary's first failure is 1 of 2 (50 % > 20 %).
    let mut bad = spec("fw 2.0", "fw-2.0.0.bin");
    bad["phases"] = json!({"canary": {"devices": 3}, "waves": [{"percent": 50}]});
    bad["rollback_on_breach"] = json!(true);
    let r = create(&ops, bad, true).await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    let canary = assigned(&ops, 10, &id).await;
    assert_eq!(canary.len(), 3);
    report(&ops, &canary[0], &id, "installed", "ok").await;
    report(&ops, &canary[1], &id, "rolled_back", "health_check_failed").await;
    let halted = wait_for(&ops, &id, "paused", 0).await;
    assert_eq!(halted["state"]["halt"]["by"], "gate");
    assert_eq!(halted["state"]["halt"]["breach"]["kind"], "failure_rate");
    // The operators hear of it without asking: the breach and the halt, and earlier the
    // completion of the good campaign.
    let breach = alert(&alerts, "campaign.gate_breach", &id).await;
    assert_eq!(breach["status"], "paused", "{breach:#}");
    assert_eq!(
        breach["details"]["breach"]["kind"], "failure_rate",
        "{breach:#}"
    );
    assert_eq!(breach["details"]["rollback"], true, "{breach:#}");
    let halt = alert(&alerts, "campaign.halted", &id).await;
    assert_eq!(halt["details"]["action"], "pause", "{halt:#}");
    alert(&alerts, "campaign.completed", &first).await;
    // The fleet rollback: every canary device is told fw-1.0.0 again; nobody else changed.
    let rollback = format!("{id}:rollback");
    for d in &canary {
        let (a, target, _) = poll(&ops, d).await.unwrap();
        assert_eq!(
            (a.as_str(), target.as_str()),
            (rollback.as_str(), "fw-1.0.0.bin"),
            "{d}"
        );
    }
    assert_eq!(
        assigned(&ops, 10, &first).await.len(),
        7,
        "the other devices keep fw-1.0.0"
    );
    assert!(
        assigned(&ops, 10, &id).await.is_empty(),
        "wave 1 never started"
    );
    report(&ops, &canary[0], &rollback, "installed", "ok").await;
    let c = campaign(&ops, &id).await;
    assert_eq!(c["fleet_rollback"]["devices"], 3, "{c:#}");
    assert_eq!(c["fleet_rollback"]["by_status"]["installed"], 1, "{c:#}");
    assert_eq!(
        c["figures"]["total"]["failure_reasons"]["health_check_failed"],
        1
    );
    // Approving past a rolled-back breach is refused.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            &format!("/api/v1/campaigns/{id}/approve"),
            None,
        )
        .await;
    assert!(r.error(409, "invalid_action").contains("rolled back"));
}

async fn bad_campaigns_are_refused_with_clear_errors(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    register(&ops, 4).await;
    ops.device("dev-z", "board-z", &[]).await;
    let mut s = spec("x", "fw-1.0.0.bin");
    s["targets"] = json!({"devices": ["dev-000", "dev-z"]});
    let r = create(&ops, s, true).await;
    assert!(
        r.error(422, "invalid_request").contains("other hardware"),
        "{r:?}"
    );
    let mut s = spec("x", "fw-1.0.0.bin");
    s["gate"]["min_results"] = json!(3);
    let r = create(&ops, s, true).await;
    assert!(
        r.error(422, "invalid_request").contains("could never pass"),
        "{r:?}"
    );
    let r = create(&ops, spec("x", "no-such.bin"), true).await;
    r.error(422, "unknown_release");
    let mut s = spec("x", "fw-1.0.0.bin");
    s["targets"] = json!({"devices": ["dev-000", "ghost"]});
    assert!(
        create(&ops, s, true)
            .await
            .error(422, "invalid_request")
            .contains("ghost")
    );
    let mut s = spec("x", "fw-1.0.0.bin");
    s["gate"]["max_failure_pct"] = json!(120);
    assert!(
        create(&ops, s, false)
            .await
            .error(422, "invalid_request")
            .contains("between 0 and 100")
    );
    // One campaign per device at a time.
    let r = create(&ops, spec("first", "fw-1.0.0.bin"), true).await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = create(&ops, spec("second", "fw-2.0.0.bin"), true).await;
    assert!(
        r.error(409, "conflict").contains("active campaign"),
        "{r:?}"
    );
    // The refused start left the second campaign a draft with no devices.
    let list = ops
        .call(&ops.viewer, "GET", "/api/v1/campaigns", None)
        .await
        .json();
    let second = list["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "second")
        .unwrap()
        .clone();
    assert_eq!(
        (second["status"].as_str(), second["targets"].as_u64()),
        (Some("draft"), Some(0))
    );
    let r = ops
        .call(
            &ops.viewer,
            "POST",
            "/api/v1/campaigns",
            Some(&json!({"spec": spec("v", "fw-1.0.0.bin")})),
        )
        .await;
    r.error(403, "forbidden");
    let r = ops
        .call(&ops.operator, "GET", "/api/v1/campaigns/c-nothing", None)
        .await;
    r.error(404, "unknown_campaign");
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/campaigns",
            Some(&json!({"spec": {"name": "x"}})),
        )
        .await;
    assert!(r.status == 400 || r.status == 422, "{r:?}");
}

async fn a_restart_mid_campaign_resumes_where_it_was(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    register(&ops, 10).await;
    let mut s = spec("fw 1.0", "fw-1.0.0.bin");
    s["gate"]["min_observation_secs"] = json!(2);
    let r = create(&ops, s, true).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let canary = assigned(&ops, 10, &id).await;
    for d in &canary {
        report(&ops, d, &id, "installed", "ok").await;
    }
    wait_for(&ops, &id, "running", 1).await;
    let before = campaign(&ops, &id).await;
    let wave1 = assigned(&ops, 10, &id).await;
    assert_eq!(wave1.len(), 5);
    let versions_before = director_versions(&ops, 10).await;

    let ops = ops.restart().await;
    let after = campaign(&ops, &id).await;
    assert_eq!(
        after["state"], before["state"],
        "the state survives the restart unchanged"
    );
    assert_eq!(
        assigned(&ops, 10, &id).await,
        wave1,
        "the same wave-1 devices, no others"
    );
    assert_eq!(
        director_versions(&ops, 10).await,
        versions_before,
        "nothing was re-assigned"
    );
    for d in wave1.iter().filter(|d| !canary.contains(d)) {
        report(&ops, d, &id, "installed", "ok").await;
    }
    wait_for(&ops, &id, "running", 2).await;
}

async fn director_versions(ops: &Ops, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut conn = ops.server.connect(&ops.fx.device(&dev(i))).await;
        let r = conn.post("/device/v1/poll", &json!({})).await;
        out.push(
            r.json()["assignment"]["director_version"]
                .as_u64()
                .unwrap_or(0),
        );
    }
    out
}

async fn operator_actions_follow_the_state_machine(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    register(&ops, 6).await;
    let mut s = spec("manual", "fw-1.0.0.bin");
    s["gate"]["require_approval"] = json!(true);
    s["update_type"] = json!("download_only");
    let r = create(&ops, s, false).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["status"], "draft");
    let act = |a: &'static str| {
        let id = id.clone();
        let ops = &ops;
        async move {
            ops.call(
                &ops.operator,
                "POST",
                &format!("/api/v1/campaigns/{id}/{a}"),
                None,
            )
            .await
        }
    };
    assert!(
        act("pause")
            .await
            .error(409, "invalid_action")
            .contains("start it first")
    );
    act("frobnicate").await.error(404, "unknown_action");
    assert_eq!(act("start").await.json()["status"], "running");
    let canary = assigned(&ops, 6, &id).await;
    assert_eq!(poll(&ops, &canary[0]).await.unwrap().2, "download_only");
    // A download-only campaign counts `downloaded` as success.
    for d in &canary {
        report(&ops, d, &id, "downloaded", "ok").await;
    }
    wait_for(&ops, &id, "awaiting_approval", 0).await;
    assert_eq!(act("pause").await.json()["status"], "paused");
    assert_eq!(act("resume").await.json()["status"], "running");
    wait_for(&ops, &id, "awaiting_approval", 0).await;
    let r = act("approve").await;
    assert_eq!(
        (
            r.json()["status"].as_str(),
            r.json()["state"]["wave"].as_u64()
        ),
        (Some("running"), Some(1))
    );
    assert_eq!(act("abort").await.json()["status"], "aborted");
    // Devices that had not finished are told their previous assignment (nothing) again.
    assert_eq!(
        assigned(&ops, 6, &id).await.len(),
        2,
        "only the canary keeps it"
    );
    act("resume").await.error(409, "invalid_action");
}

/// Polls as device `i` with a battery level (its reported attributes).
async fn battery(ops: &Ops, i: usize, pct: u64) {
    let mut conn = ops.server.connect(&ops.fx.device(&dev(i))).await;
    let r = conn
        .post(
            "/device/v1/poll",
            &json!({"hardware_id": "board-a", "firmware_version": "0.9.0", "security_version": 1, "region": "eu", "tags": ["lab"], "attributes": {"battery_pct": pct}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

async fn conditions_and_maintenance_windows_hold_devices_until_they_allow(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    for (i, pct) in [(0, 80), (1, 80), (2, 10), (3, 90)] {
        battery(&ops, i, pct).await;
    }
    // dev-003 is in a group whose window opens at a minute half an hour away, for one minute.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/groups",
            Some(&json!({"name": "night"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/groups/night/members",
            Some(&json!({"add": [dev(3)]})),
        )
        .await;
    assert!(r.status < 300, "{r:?}");
    let minute = (unix_now() / 60 + 30) % 60;
    let r = ops
        .call(
            &ops.operator,
            "PUT",
            "/api/v1/groups/night/maintenance-window",
            Some(&json!({"cron": format!("{minute} * * * *"), "duration_secs": 60, "timezone": "UTC"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["open_now"], false);
    let r = ops
        .call(
            &ops.operator,
            "PUT",
            "/api/v1/groups/night/maintenance-window",
            Some(&json!({"cron": "61 * * * *", "duration_secs": 60, "timezone": "UTC"})),
        )
        .await;
    r.error(422, "invalid_request");
    let r = ops
        .call(
            &ops.operator,
            "PUT",
            "/api/v1/groups/nowhere/maintenance-window",
            Some(&json!({"cron": "0 2 * * *", "duration_secs": 60, "timezone": "UTC"})),
        )
        .await;
    r.error(404, "unknown_group");

    let mut s = spec("charged only", "fw-1.0.0.bin");
    s["phases"] = json!({"canary": {"percent": 100}});
    s["policy"] = json!({"conditions": [{"attribute": "battery_pct", "op": "gte", "value": 30}]});
    let r = create(&ops, s, true).await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(assigned(&ops, 4, &id).await, [dev(0), dev(1)]);
    let c = campaign(&ops, &id).await;
    assert_eq!(c["figures"]["total"]["outcomes"]["held"], 2, "{c:#}");
    // dev-002 charges: the engine gives it the release on its next step.
    battery(&ops, 2, 95).await;
    let mut now_assigned = Vec::new();
    // Waits on the state, with a bound generous for a busy machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        now_assigned = assigned(&ops, 4, &id).await;
        if now_assigned.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        now_assigned,
        [dev(0), dev(1), dev(2)],
        "dev-003 waits for its window"
    );
}

async fn quarantine(ops: &Ops, id: &str) {
    let r = ops
        .call(
            &ops.operator,
            "POST",
            &format!("/api/v1/devices/{id}/quarantine"),
            Some(&json!({"reason": "test"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
}

/// Quarantine (decision 0031) in campaigns: a device quarantined before the start is in no
/// wave; a canary device quarantined mid-wave is told the release no more, and its failure
/// report is not counted by the gate (counted, one failure of three canaries would breach the
/// 20% failure limit and halt the campaign).
async fn a_campaign_skips_a_quarantined_device_and_its_gate_does_not_count_it(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    register(&ops, 7).await;
    quarantine(&ops, &dev(0)).await;
    let mut s = spec("fw 1.0", "fw-1.0.0.bin");
    s["phases"] = json!({"canary": {"devices": 3}, "waves": [{"percent": 50}]});
    let r = create(&ops, s, true).await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["plan"].as_array().unwrap().last(), Some(&json!(6)));
    let canary = assigned(&ops, 7, &id).await;
    assert_eq!(canary.len(), 3, "{canary:?}");
    assert!(!canary.contains(&dev(0)));
    quarantine(&ops, &canary[0]).await;
    assert_eq!(poll(&ops, &canary[0]).await, None);
    report(&ops, &canary[0], &id, "failed", "tampered").await;
    for d in &canary[1..] {
        report(&ops, d, &id, "installed", "ok").await;
    }
    wait_for(&ops, &id, "running", 1).await;
    let wave1 = assigned(&ops, 7, &id).await;
    assert!(
        !wave1.contains(&dev(0)) && !wave1.contains(&canary[0]),
        "{wave1:?}"
    );
}
