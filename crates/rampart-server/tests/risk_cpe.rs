//! CPE and firmware-name matching in the server's risk posture (issue 17, decision 0048), on
//! embedded SQLite and PostgreSQL: NVD records written after the public ones
//! (`rampart-vuln/tests/data/nvd-firmware/`) imported through `POST /api/v1/risk/nvd`, a
//! release whose Yocto-like SBOM has firmware parts without purls (and a kernel with a CPE),
//! a fixed one, and the real OSV record PYSEC-2019-133 whose alias CVE-2019-11324 NVD also
//! lists: one CVE, one advisory. A rejected record leaves the posture; bad documents store
//! nothing.

mod common;

use common::ops::Ops;
use common::risk::*;
use common::*;
use serde_json::{Value, json};

on_both_backends!(
    posture_counts_firmware_part_cves_on_the_devices_that_run_the_release,
    nvd_import_refuses_bad_documents_and_stores_nothing,
);

fn counts(row: &Value) -> [u64; 5] {
    ["critical", "high", "medium", "low", "unassigned"]
        .map(|k| row["counts"][k].as_u64().unwrap_or_else(|| panic!("{row}")))
}

async fn posture_counts_firmware_part_cves_on_the_devices_that_run_the_release(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    add_firmware_image_releases(&ops).await;
    poll_as(&ops, "dev-eu-vuln", "board-y", "eu", "5.0.0").await;
    poll_as(&ops, "dev-us-vuln", "board-y", "us", "5.0.0").await;
    poll_as(&ops, "dev-eu-fixed", "board-y", "eu", "6.0.0").await;

    // The real OSV record of urllib3's CVE-2019-11324 (it carries no CVSS vector).
    let osv: Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(OSV_PYPI).join("PYSEC-2019-133.json")).unwrap(),
    )
    .unwrap();
    import(&ops, &ops.operator, &[osv]).await;
    let records = nvd_records();
    let first = import_nvd(&ops, &ops.operator, &records).await;
    assert_eq!(first["added"], records.len() as u64, "{first}");
    let again = import_nvd(&ops, &ops.admin, &records).await;
    assert_eq!(again["unchanged"], records.len() as u64, "{again}");

    let by_release = posture(&ops, "release").await;
    let vuln = row(&by_release, "fw-yocto-vuln.bin");
    // busybox CVE-2022-28391 (9.8) and U-Boot CVE-2022-30790 (9.6) by name; Dirty Pipe
    // (7.8) by name and by CPE, once; PYSEC-2019-133 by purl, scored by NVD's CVE-2019-11324
    // (7.5), which is not counted a second time.
    assert_eq!(counts(vuln), [2, 2, 0, 0, 0], "{vuln}");
    assert_eq!(vuln["score"], 30, "{vuln}");
    assert_eq!(vuln["affected_devices"], 2, "{vuln}");
    assert_eq!(vuln["worst"]["id"], "CVE-2022-28391", "{vuln}");
    let fixed = row(&by_release, "fw-yocto-fixed.bin");
    assert_eq!(fixed["score"], 0, "{fixed}");
    assert_eq!(fixed["affected_devices"], 0, "{fixed}");
    let by_region = posture(&ops, "region").await;
    assert_eq!(row(&by_region, "eu")["affected_devices"], 1);
    assert_eq!(row(&by_region, "eu")["devices"], 2);
    assert_eq!(row(&by_region, "us")["score"], 30);

    // A firmware part's CVE, by id: the devices that run the release.
    let detail = ops
        .call(
            &ops.viewer,
            "GET",
            "/api/v1/risk/advisories/PYSEC-2019-133",
            None,
        )
        .await
        .json();
    assert_eq!(detail["advisories"][0]["affected_count"], 2, "{detail}");
    assert_eq!(detail["advisories"][0]["source"], "osv", "{detail}");
    // A CVE only NVD describes, matched by name on busybox: found by its CVE id, with the
    // devices and the component it matched.
    let busybox = ops
        .call(
            &ops.viewer,
            "GET",
            "/api/v1/risk/advisories/CVE-2022-28391",
            None,
        )
        .await;
    assert_eq!(busybox.status, 200, "{busybox:?}");
    let busybox = busybox.json();
    let cve = &busybox["advisories"][0];
    assert_eq!(cve["source"], "nvd", "{busybox}");
    assert_eq!(cve["severity"]["rating"], "critical", "{busybox}");
    assert_eq!(cve["affected_count"], 2, "{busybox}");
    assert_eq!(cve["withdrawn"], Value::Null, "{busybox}");
    assert_eq!(cve["components"][0]["name"], "busybox", "{busybox}");

    // A remediation of a CVE only NVD describes targets the devices running the release.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/risk/advisories/CVE-2022-30790/remediate",
            Some(&json!({"release": "fw-yocto-fixed.bin"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = r.json();
    assert_eq!(r["devices"], json!(["dev-eu-vuln", "dev-us-vuln"]), "{r}");
    assert_eq!(r["advisory_ids"], json!(["CVE-2022-30790"]), "{r}");

    // NVD rejects CVE-2022-28391 (the record re-issued as Rejected): out of the posture.
    let mut rejected = records
        .iter()
        .find(|r| r["cve"]["id"] == "CVE-2022-28391")
        .unwrap()
        .clone();
    rejected["cve"]["vulnStatus"] = json!("Rejected");
    rejected["cve"]["lastModified"] = json!("2030-01-01T00:00:00.000");
    let withdrawn = import_nvd(&ops, &ops.operator, &[rejected]).await;
    assert_eq!(
        (
            withdrawn["replaced"].as_u64(),
            withdrawn["withdrawn"].as_u64()
        ),
        (Some(1), Some(1)),
        "{withdrawn}"
    );
    let after = posture(&ops, "release").await;
    let vuln = row(&after, "fw-yocto-vuln.bin");
    assert_eq!(counts(vuln), [1, 2, 0, 0, 0], "{vuln}");
    // Still found by id, as rejected, affecting nothing; nothing to remediate.
    let busybox = ops
        .call(
            &ops.viewer,
            "GET",
            "/api/v1/risk/advisories/CVE-2022-28391",
            None,
        )
        .await
        .json();
    let cve = &busybox["advisories"][0];
    assert_eq!(cve["withdrawn"], "2030-01-01T00:00:00.000", "{busybox}");
    assert_eq!(cve["affected_count"], 0, "{busybox}");
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/risk/advisories/CVE-2022-28391/remediate",
            Some(&json!({"release": "fw-yocto-fixed.bin"})),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.text().contains("no_affected_devices"), "{r:?}");
    assert_eq!(vuln["worst"]["id"], "CVE-2022-30790", "{vuln}");
    assert_eq!(
        ops.fx.db.nvd_advisory_counts().await.unwrap(),
        (records.len() as u64 - 1, 1)
    );
    let audit = ops.audit_records().await;
    assert_eq!(
        audit
            .iter()
            .filter(|r| r.action == "risk.nvd_imported")
            .count(),
        3
    );
    ops.server.stop().await;
}

async fn nvd_import_refuses_bad_documents_and_stores_nothing(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let records = nvd_records();
    let one = json!({"vulnerabilities": [records[0]]});
    for (token, status) in [
        (&ops.viewer, 403),
        (&ops.auditor, 403),
        (&"not-a-token".to_owned(), 401),
    ] {
        let r = ops
            .call(token, "POST", "/api/v1/risk/nvd", Some(&one))
            .await;
        assert_eq!(r.status, status, "{r:?}");
    }
    let version = ops.fx.db.advisory_feed_version().await.unwrap();
    let auth = format!("Bearer {}", ops.operator);
    let send = |body: String| {
        let (ops, auth) = (&ops, auth.clone());
        async move {
            ops.conn()
                .await
                .send(
                    "POST",
                    "/api/v1/risk/nvd",
                    &[("Authorization", &auth)],
                    body.as_bytes(),
                )
                .await
        }
    };
    // Nested deeper than NVD's structure, in a body small enough to read: 422 before parsing.
    let deep = format!(
        r#"{{"vulnerabilities": [{}, {{"cve": {{"id": "CVE-2099-1", "x": {}1{}}}}}]}}"#,
        records[0],
        "[".repeat(100),
        "]".repeat(100)
    );
    let r = send(deep).await.unwrap();
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("nests JSON arrays and objects more than 32 deep"),
        "{r:?}"
    );
    // Over the body limit: 413 at the announced length (or the connection closed while the
    // client still writes).
    let huge = json!({"vulnerabilities": [{"cve": {"id": "x".repeat(2 * 1024 * 1024)}}]});
    match send(huge.to_string()).await {
        Ok(r) => assert_eq!(r.status, 413, "{r:?}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        ),
    }
    // One bad record refuses the batch, naming it; a duplicate; an empty batch; too many.
    let mut long_id = records[1].clone();
    long_id["cve"]["id"] = json!("C".repeat(600));
    let many: Vec<Value> = (0..2001).map(|_| json!({"cve": {"id": "CVE-1"}})).collect();
    for (body, needle) in [
        (
            json!({"vulnerabilities": [records[0], {"cve": {"published": "2020"}}]}),
            "vulnerabilities[1]",
        ),
        (
            json!({"vulnerabilities": [records[0], long_id]}),
            "vulnerabilities[1]",
        ),
        (
            json!({"vulnerabilities": [records[0], records[0]]}),
            "twice",
        ),
        (json!({"vulnerabilities": []}), "1 to 2000"),
        (json!({"vulnerabilities": many}), "1 to 2000"),
        (json!({"cves": []}), "vulnerabilities"),
    ] {
        let r = ops
            .call(&ops.operator, "POST", "/api/v1/risk/nvd", Some(&body))
            .await;
        assert_eq!(r.status, 422, "{r:?}");
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(needle), "{needle}: {detail}");
    }
    // Nothing was stored and the feed did not change.
    assert_eq!(ops.fx.db.nvd_advisory_counts().await.unwrap(), (0, 0));
    assert_eq!(ops.fx.db.advisory_feed_version().await.unwrap(), version);
    // The good record alone is taken.
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/risk/nvd", Some(&one))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(ops.fx.db.nvd_advisory_counts().await.unwrap(), (1, 0));
    assert!(ops.fx.db.advisory_feed_version().await.unwrap() > version);
    ops.server.stop().await;
}
