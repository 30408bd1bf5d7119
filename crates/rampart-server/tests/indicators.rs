//! Indicators from stored events (issue 18) on embedded SQLite and PostgreSQL: reports,
//! incidents and advisory exposures stored at chosen times give the hand-computed series and
//! summary of `GET /api/v1/indicators`; a campaign run through the device API gives its time
//! to 50% (and never 90%) and the `/metrics` gauges of the last 24 hours; bad windows are clear
//! 422s.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use common::ops::Ops;
use common::*;
use rampart_db::{ExposureChange, Report};
use rampart_incident::finding::Finding;
use rampart_incident::model::{Cause, Detector, IncidentState, Severity};
use rampart_incident::playbook::Playbooks;
use rampart_server::audit::AuditWriter;
use rampart_server::incidents::IncidentStore;
use rampart_vuln::exposure::Exposure;
use serde_json::{Value, json};

on_both_backends!(
    stored_events_give_the_hand_computed_series_and_summary,
    a_campaign_and_recent_events_show_in_the_api_and_on_metrics,
);

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

async fn indicators(ops: &Ops, query: &str) -> Value {
    ops.get_json(&ops.viewer, &format!("/api/v1/indicators{query}"))
        .await
}

async fn report(ops: &Ops, device: &str, id: &str, status: &str, created: i64) {
    ops.fx
        .db
        .insert_report(&Report {
            id: id.into(),
            device_id: device.into(),
            assignment: "a-test".into(),
            status: status.into(),
            progress: 0,
            details: json!({}),
            created,
        })
        .await
        .unwrap();
}

/// An incident store on a clock the test sets.
fn store_at(ops: &Ops) -> (IncidentStore, Arc<AtomicI64>) {
    let clock = Arc::new(AtomicI64::new(0));
    let read = clock.clone();
    let store = IncidentStore::with_clock(
        ops.fx.db.clone(),
        AuditWriter::new(ops.fx.db.clone()),
        Playbooks::default(),
        Arc::new(move || read.load(Ordering::SeqCst)),
    );
    (store, clock)
}

/// An incident of its own cause, first signalled at `signal`, detected at `detected` and
/// recovered at `recovered` (if any).
async fn incident(
    store: &IncidentStore,
    clock: &AtomicI64,
    key: &str,
    signal: i64,
    detected: i64,
    recovered: Option<i64>,
) {
    clock.store(detected, Ordering::SeqCst);
    let recorded = store
        .record_finding(&Finding {
            cause: Cause {
                detector: Detector::RollbackSpike,
                key: key.into(),
            },
            severity: Severity::Medium,
            title: format!("rollbacks on {key}"),
            device_id: None,
            release: None,
            first_signal_at: signal,
            detail: json!({}),
        })
        .await
        .unwrap();
    if let Some(at) = recovered {
        clock.store(at, Ordering::SeqCst);
        store
            .move_to(
                &recorded.incident_id,
                IncidentState::Recovered,
                "token:test",
                "fixed",
            )
            .await
            .unwrap();
    }
}

async fn stored_events_give_the_hand_computed_series_and_summary(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    for i in 0..6 {
        ops.device(&format!("dev-{i}"), "board-a", &[]).await;
    }
    // Three clock hours, three days ago.
    let t = (unix_now() - 3 * DAY) / HOUR * HOUR;
    // Hour 0: 4 installed, 1 failed, 1 rolled back (and progress, which is no result).
    for i in 0..4 {
        report(&ops, &format!("dev-{i}"), "r1", "installed", t + 10 + i).await;
    }
    report(&ops, "dev-4", "r1", "failed", t + 20).await;
    report(&ops, "dev-5", "r1", "rolled_back", t + 30).await;
    report(&ops, "dev-0", "r0", "downloading", t + 5).await;
    // Hour 2: 1 installed, 1 verification failure. Before the window: 1 installed.
    report(&ops, "dev-0", "r2", "installed", t + 2 * HOUR + 100).await;
    report(
        &ops,
        "dev-1",
        "r2",
        "verification_failed",
        t + 2 * HOUR + 200,
    )
    .await;
    report(&ops, "dev-2", "r-old", "installed", t - 10).await;

    // Incidents: detect 60 s (hour 0, recovered 1,800 s later, in hour 0), 20 s (hour 1, open),
    // 100 s (hour 2, recovered 600 s later).
    let (store, clock) = store_at(&ops);
    incident(&store, &clock, "a", t + 100, t + 160, Some(t + 160 + 1_800)).await;
    incident(&store, &clock, "b", t + HOUR + 100, t + HOUR + 120, None).await;
    incident(
        &store,
        &clock,
        "c",
        t + 2 * HOUR + 100,
        t + 2 * HOUR + 200,
        Some(t + 2 * HOUR + 800),
    )
    .await;

    // An advisory published two days before the window, known affected 50 s into it and
    // remediated in hour 2.
    let exposure = Exposure {
        published: Some(t - 2 * DAY),
        first_affected_at: Some(t + 50),
        affected_now: 0,
        peak_affected: 3,
        remediated_at: Some(t + 2 * HOUR + 300),
        ..Exposure::default()
    };
    ops.fx
        .db
        .save_exposure_pass(
            &[ExposureChange {
                advisory_id: "GHSA-test-0001".into(),
                exposure,
                decided_from: None,
                alert: false,
            }],
            t + 2 * HOUR + 300,
            (t + 2 * HOUR + 300) * 1_000,
            &mut |_, _| unreachable!("no alert is asked for"),
        )
        .await
        .unwrap();

    let body = indicators(&ops, &format!("?from={t}&to={}&bucket=hour", t + 3 * HOUR)).await;
    assert_eq!(
        body["window"],
        json!({"from": t, "to": t + 3 * HOUR, "bucket": "hour"})
    );
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 3);
    assert_eq!(series[0]["start"], t);
    assert_eq!(
        series[0]["results"],
        json!({"succeeded": 4, "failed": 1, "rolled_back": 1})
    );
    assert_eq!(series[0]["success_ratio"].as_f64(), Some(4.0 / 6.0));
    assert_eq!(series[0]["rollback_ratio"].as_f64(), Some(1.0 / 6.0));
    assert_eq!(
        series[1]["success_ratio"],
        Value::Null,
        "no results in hour 1"
    );
    assert_eq!(series[2]["success_ratio"].as_f64(), Some(0.5));
    let summary = &body["summary"];
    assert_eq!(
        summary["results"],
        json!({"succeeded": 5, "failed": 2, "rolled_back": 1})
    );
    assert_eq!(summary["success_ratio"].as_f64(), Some(5.0 / 8.0));
    assert_eq!(summary["rollback_ratio"].as_f64(), Some(1.0 / 8.0));
    // Incidents: detect 20, 60, 100 (median 60, p90 100); remediate 600, 1,800.
    assert_eq!(
        summary["incident_time_to_detect"],
        json!({"count": 3, "median": 60, "p90": 100})
    );
    assert_eq!(
        summary["incident_time_to_remediate"],
        json!({"count": 2, "median": 600, "p90": 1_800})
    );
    assert_eq!(series[0]["incidents_detected"]["median"], 60);
    assert_eq!(series[0]["incidents_remediated"]["median"], 1_800);
    assert_eq!(series[1]["incidents_detected"]["median"], 20);
    assert_eq!(series[1]["incidents_remediated"]["count"], 0);
    assert_eq!(series[2]["incidents_remediated"]["median"], 600);
    // The advisory: known affected 2 days and 50 s after publication; remediated after 2 days
    // and 2 hours 5 minutes.
    assert_eq!(
        summary["advisory_time_to_known_affected"],
        json!({"count": 1, "median": 2 * DAY + 50, "p90": 2 * DAY + 50})
    );
    assert_eq!(
        summary["advisory_time_to_remediate"]["median"],
        2 * DAY + 2 * HOUR + 300
    );
    assert_eq!(series[2]["advisories_remediated"]["count"], 1);
    assert_eq!(body["campaigns"], json!([]));
    assert_eq!(
        body["truncated"],
        json!({"incidents": false, "advisories": false})
    );

    // The same events by day: the window widens to the whole day, which holds the report
    // 10 s before `t` unless `t` is midnight.
    let by_day = indicators(&ops, &format!("?from={t}&to={}&bucket=day", t + 3 * HOUR)).await;
    assert_eq!(by_day["window"]["from"], t - t % DAY);
    assert_eq!(by_day["series"].as_array().unwrap().len(), 1);
    let earlier = u64::from(t % DAY != 0);
    assert_eq!(
        by_day["summary"]["results"],
        json!({"succeeded": 5 + earlier, "failed": 2, "rolled_back": 1})
    );
    // A window with nothing in it: buckets without figures.
    let empty = indicators(&ops, &format!("?from={}&to={}", t - 20 * DAY, t - 19 * DAY)).await;
    assert_eq!(empty["series"].as_array().unwrap().len(), 24);
    assert_eq!(empty["summary"]["success_ratio"], Value::Null);
    assert_eq!(empty["summary"]["incident_time_to_detect"]["count"], 0);

    // Bounded, clear refusals; a token is needed.
    for (query, says) in [
        ("?bucket=week", "bucket must be hour or day"),
        (&format!("?from={t}&to={t}") as &str, "must be before to"),
        (
            &format!("?from={}&to={t}&bucket=hour", t - 40 * DAY),
            "use bucket=day",
        ),
        (&format!("?from={}&to={t}", t - 400 * DAY), "366 days"),
        ("?from=yesterday", "Unix seconds"),
        ("?limit=5", "this route takes from and to"),
    ] {
        let r = ops
            .call(
                &ops.viewer,
                "GET",
                &format!("/api/v1/indicators{query}"),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{query}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_window", "{query}");
        assert!(r.text().contains(says), "{query}: {}", r.text());
    }
    ops.call("rampart_0000_guess", "GET", "/api/v1/indicators", None)
        .await
        .error(401, "unauthorized");
    ops.server.stop().await;
}

fn dev(i: usize) -> String {
    format!("dev-{i:03}")
}

async fn poll(ops: &Ops, id: &str) -> Option<String> {
    let mut conn = ops.server.connect(&ops.fx.device(id)).await;
    let r = conn.post("/device/v1/poll", &json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["assignment"]["id"].as_str().map(str::to_owned)
}

async fn device_report(ops: &Ops, id: &str, assignment: &str, status: &str) {
    let mut conn = ops.server.connect(&ops.fx.device(id)).await;
    let r = conn
        .post(
            "/device/v1/reports",
            &json!({"id": format!("{assignment}-{status}"), "status": status, "assignment": assignment, "details": {"reason": if status == "failed" { "health_check_failed" } else { "ok" }}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
}

async fn campaign(ops: &Ops, id: &str) -> Value {
    ops.get_json(&ops.viewer, &format!("/api/v1/campaigns/{id}"))
        .await
}

/// The value of one series of the scrape, as a number.
fn gauge(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn a_campaign_and_recent_events_show_in_the_api_and_on_metrics(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    for i in 0..4 {
        ops.device(&dev(i), "board-a", &[]).await;
    }
    let spec = json!({
        "name": "to 1.0 <b>",
        "release": "fw-1.0.0.bin",
        "targets": {"filter": {"hardware_id": "board-a"}},
        "phases": {"canary": {"devices": 2}, "waves": [{"percent": 100}]},
        "gate": {"min_success_pct": 50, "max_failure_pct": 50, "min_results": 2},
    });
    let id = ops.start_campaign(spec).await;
    // Every device reports as soon as it is told: three install it, one fails.
    let reported = std::sync::Mutex::new(std::collections::BTreeSet::new());
    wait_until("the campaign completes", || async {
        for i in 0..4 {
            let done = reported.lock().unwrap().contains(&i);
            if !done
                && let Some(a) = poll(&ops, &dev(i)).await
                && a == id
            {
                let status = if i == 3 { "failed" } else { "installed" };
                device_report(&ops, &dev(i), &id, status).await;
                reported.lock().unwrap().insert(i);
            }
        }
        campaign(&ops, &id).await["status"] == "completed"
    })
    .await;
    let figures = campaign(&ops, &id).await["figures"]["time_to"].clone();

    // Incidents of the last hour on a clock the test sets: detected in 60 s, remediated in
    // 180 s; detected in 20 s, still open.
    let now = unix_now();
    let (store, clock) = store_at(&ops);
    incident(
        &store,
        &clock,
        "recent-a",
        now - 400,
        now - 340,
        Some(now - 160),
    )
    .await;
    incident(&store, &clock, "recent-b", now - 300, now - 280, None).await;

    let body = indicators(&ops, "?bucket=hour").await;
    let c = &body["campaigns"][0];
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["name"], "to 1.0 <b>");
    assert_eq!(c["targeted"], 4);
    // 3 of 4 succeeded: 50% (the 2nd success) reached, 90% (the 4th) never; the same times as
    // the campaign's own report.
    assert!(c["time_to"][0]["seconds"].as_i64().unwrap() >= 0, "{c}");
    assert_eq!(c["time_to"][1], json!({"percent": 90, "seconds": null}));
    assert_eq!(c["time_to"], figures, "{c} against {figures}");
    let share = |p: u64| {
        body["summary"]["campaign_time_to"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["percent"] == p)
            .unwrap()
            .clone()
    };
    assert_eq!(share(50)["reached"]["count"], 1);
    assert_eq!(share(90)["not_reached"], 1);
    assert_eq!(
        body["summary"]["results"],
        json!({"succeeded": 3, "failed": 1, "rolled_back": 0})
    );

    // /metrics: the last 24 hours from the same computation.
    let text = ops.server.scrape().await;
    let g =
        |series: &str| gauge(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    assert_eq!(
        g("rampart_indicator_update_results_24h{result=\"succeeded\"}"),
        3.0
    );
    assert_eq!(
        g("rampart_indicator_update_results_24h{result=\"failed\"}"),
        1.0
    );
    assert_eq!(
        g("rampart_indicator_update_results_24h{result=\"rolled_back\"}"),
        0.0
    );
    assert_eq!(g("rampart_indicator_update_success_ratio_24h"), 0.75);
    assert_eq!(g("rampart_indicator_update_rollback_ratio_24h"), 0.0);
    assert_eq!(
        g("rampart_indicator_incident_time_to_detect_seconds_24h{quantile=\"0.5\"}"),
        20.0
    );
    assert_eq!(
        g("rampart_indicator_incident_time_to_detect_seconds_24h{quantile=\"0.9\"}"),
        60.0
    );
    assert_eq!(
        g("rampart_indicator_incident_time_to_remediate_seconds_24h{quantile=\"0.5\"}"),
        180.0
    );
    // No advisory was remediated: its figure is left out, not shown as 0.
    assert!(
        gauge(
            &text,
            "rampart_indicator_advisory_time_to_remediate_seconds_24h{quantile=\"0.5\"}"
        )
        .is_none(),
        "{text}"
    );
    ops.server.stop().await;
}
