//! A device's reports over the API are rate-limited per device: a flood from one certificate
//! gets 429 with `Retry-After`, another device is not affected, and a result sent again after
//! the wait is stored (nothing is dropped: the agent keeps results queued until stored).

mod common;

use std::time::Duration;

use common::*;
use rampart_server::connections::ListenerCaps;
use serde_json::json;

on_both_backends!(a_report_flood_from_one_device_is_rate_limited_and_results_get_in_after_the_wait);

async fn a_report_flood_from_one_device_is_rate_limited_and_results_get_in_after_the_wait(
    backend: Backend,
    name: &str,
) {
    let fx = Fixture::new(backend, name).await;
    let server = fx
        .start(&[], |config| {
            config.connections.device = ListenerCaps {
                max_connections: 64,
                max_per_source: 64,
            };
        })
        .await;
    let noisy = fx.device("dev-noisy");
    let mut conn = server.connect(&noisy).await;
    assert_eq!(conn.post("/device/v1/poll", &json!({})).await.status, 200);

    let (mut stored, mut limited, mut retry_after) = (0u64, 0u64, None);
    for i in 0..400 {
        let response = conn
            .post(
                "/device/v1/reports",
                &json!({"id": format!("p-{i}"), "status": "downloading", "progress": 1}),
            )
            .await;
        match response.status {
            201 => stored += 1,
            429 => {
                limited += 1;
                assert!(
                    response
                        .error(429, "too_many_reports")
                        .contains("send again")
                );
                retry_after = response
                    .header("retry-after")
                    .map(|v| v.parse::<u64>().unwrap());
            }
            other => panic!("report {i}: status {other}"),
        }
    }
    assert!(limited > 0, "400 reports at once were never rate-limited");
    let retry_after = retry_after.expect("a 429 carries Retry-After");
    assert!(retry_after >= 1);
    let in_db = fx.db.reports_of("dev-noisy").await.unwrap().len() as u64;
    assert_eq!(in_db, stored, "only the accepted reports are stored");
    assert!(stored < 400);

    // Another device has its own allowance.
    let mut quiet = server.connect(&fx.device("dev-quiet")).await;
    assert_eq!(quiet.post("/device/v1/poll", &json!({})).await.status, 200);
    let response = quiet
        .post(
            "/device/v1/reports",
            &json!({"id": "r-1", "status": "installed"}),
        )
        .await;
    assert_eq!(response.status, 201);

    // The noisy device's result, sent again after the wait it was told, is stored.
    let result = json!({"id": "result-1", "status": "installed"});
    let mut status = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(retry_after)).await;
        status = conn.post("/device/v1/reports", &result).await.status;
        if status == 201 {
            break;
        }
        assert_eq!(status, 429);
    }
    assert_eq!(status, 201, "the result was never accepted after waiting");
    assert!(
        fx.db
            .report("dev-noisy", "result-1")
            .await
            .unwrap()
            .is_some()
    );
    server.stop().await;
}
