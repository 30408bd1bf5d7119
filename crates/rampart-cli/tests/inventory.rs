//! The inventory, assignment, report, fleet, status, token and campaign commands against a
//! live `rampart server`: each one's table for people and `--json` for scripts, and the
//! server's error and detail when the API refuses. `--log-level` in the server and the CLI.

mod common;

use common::{Prepare, Site, add_release};
use rampart_testkit::cli::{fails, ok, s};
use serde_json::{Value, json};

/// A repository with `fw-1.1.0.img` for board-a, and the server's extra arguments.
fn with_release(extra: &[&str]) -> impl FnOnce(&Prepare) -> Vec<String> {
    let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
    move |site: &Prepare| {
        let sbom = site.dir.join("fw.cdx.json");
        std::fs::write(&sbom, common::pypi_cyclonedx(&[])).unwrap();
        add_release(site, "fw-1.1.0.img", "1.1.0", "board-a", &sbom);
        extra
    }
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Data lines of a table (after its header).
fn rows(table: &str) -> Vec<&str> {
    table.lines().skip(1).collect()
}

#[test]
fn devices_assignments_reports_and_fleet_versions_as_tables_and_json() {
    let site = Site::start_with(with_release(&[]));
    site.poll_as("dev-1", "board-a", "eu", "1.0.0");
    site.poll_as("dev-2", "board-a", "us", "1.0.0");
    site.poll_as("dev-3", "board-b", "eu", "2.0.0");

    // device list: a table, filters, JSON.
    let table = ok(site.as_operator(&["device", "list"]));
    assert!(
        table.starts_with("ID     HARDWARE  VERSION  SECVER  REGION  STATUS  LAST SEEN\n"),
        "{table}"
    );
    assert_eq!(rows(&table).len(), 3, "{table}");
    assert!(
        table.contains("dev-3  board-b   2.0.0         1  eu      active"),
        "{table}"
    );
    let table = ok(site.as_operator(&["device", "list", "--hardware", "board-a"]));
    assert_eq!(rows(&table).len(), 2, "{table}");
    let table = ok(site.as_operator(&["device", "list", "--version", "2.0.0", "--region", "eu"]));
    assert_eq!(rows(&table).len(), 1, "{table}");
    assert!(
        rows(&table)[0].starts_with("dev-3  board-b   2.0.0         1  eu      active"),
        "{table}"
    );
    let listed = json_of(&ok(
        site.as_operator(&["device", "list", "--region", "eu", "--json"])
    ));
    let ids: Vec<&str> = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dev-1", "dev-3"]);
    let page = ok(site.as_operator(&["device", "list", "--limit", "2"]));
    assert!(page.contains("(more may follow: --offset 2)"), "{page}");
    let none = ok(site.as_operator(&["device", "list", "--hardware", "board-q"]));
    assert!(none.contains("(no device matches)"), "{none}");

    // device show.
    let shown = ok(site.as_operator(&["device", "show", "dev-1"]));
    assert!(shown.starts_with("device dev-1 (active)\n"), "{shown}");
    assert!(
        shown.contains("firmware     1.0.0 (security version 1)"),
        "{shown}"
    );
    assert!(
        shown.contains("slots        a: good, b: inactive"),
        "{shown}"
    );
    assert!(shown.contains("unassigned — nothing assigned"), "{shown}");
    assert!(shown.contains("no reports yet"), "{shown}");
    let shown = json_of(&ok(site.as_operator(&["device", "show", "dev-1", "--json"])));
    assert_eq!(shown["device"]["region"], "eu");
    let unknown = fails(site.as_operator(&["device", "show", "dev-nope"]));
    assert!(unknown.contains("404 unknown_device"), "{unknown}");

    // fleet versions.
    let versions = ok(site.as_operator(&["fleet", "versions"]));
    assert_eq!(
        versions,
        "VERSION  DEVICES  SHARE\n1.0.0          2  66.7%\n2.0.0          1  33.3%\n3 device(s)\n"
    );
    let versions = json_of(&ok(site.as_operator(&["fleet", "versions", "--json"])));
    assert_eq!(versions["devices"], 3);

    // assignment create, list, show; reports; cancel.
    let created = ok(site.as_operator(&[
        "assignment",
        "create",
        "fw-1.1.0.img",
        "--hardware",
        "board-a",
        "--type",
        "soft",
    ]));
    assert!(
        created.starts_with("assignment asg-")
            && created.contains(": fw-1.1.0.img to 2 device(s) (soft)"),
        "{created}"
    );
    let id = created
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    let list = ok(site.as_operator(&["assignment", "list"]));
    assert!(list.starts_with("ID "), "{list}");
    assert!(
        list.contains(&format!("{id}  fw-1.1.0.img  soft")),
        "{list}"
    );
    let list = json_of(&ok(site.as_operator(&["assignment", "list", "--json"])));
    assert_eq!(list["assignments"][0]["id"], id.as_str());
    let refused = fails(site.as_operator(&[
        "assignment",
        "create",
        "fw-nope.img",
        "--hardware",
        "board-a",
    ]));
    assert!(
        refused.contains("422 unknown_release: the image repository has no target \"fw-nope.img\""),
        "{refused}"
    );
    let unnamed = fails(site.as_operator(&["assignment", "create", "fw-1.1.0.img"]));
    assert!(unnamed.contains("name the devices"), "{unnamed}");

    site.report_as(
        "dev-1",
        &json!({"id": "r-1", "assignment": id, "status": "downloading", "progress": 40}),
    );
    site.report_as(
        "dev-1",
        &json!({"id": "r-2", "assignment": id, "status": "failed",
                "details": {"reason": "hash_mismatch"}}),
    );
    site.report_as(
        "dev-2",
        &json!({"id": "r-3", "assignment": id, "status": "installed"}),
    );
    let reports = ok(site.as_operator(&["reports", "--device", "dev-1"]));
    assert!(reports.starts_with("reports of dev-1:\nTIME "), "{reports}");
    let lines = rows(reports.strip_prefix("reports of dev-1:\n").unwrap());
    assert_eq!(lines.len(), 2, "{reports}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("failed") && l.ends_with("hash_mismatch")),
        "{reports}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("downloading") && l.contains(" 40 ")),
        "{reports}"
    );
    let both = ok(site.as_operator(&["reports", "--device", "dev-1", "--device", "dev-2"]));
    assert!(both.contains("DEVICE"), "{both}");
    assert_eq!(rows(&both).len(), 3, "{both}");
    let reports = json_of(&ok(
        site.as_operator(&["reports", "--device", "dev-2", "--json"])
    ));
    assert_eq!(reports["reports"][0]["status"], "installed");
    let shown = ok(site.as_operator(&["assignment", "show", &id]));
    assert!(
        shown.contains("installed        1") || shown.contains("installed      1"),
        "{shown}"
    );
    let shown = json_of(&ok(site.as_operator(&[
        "assignment",
        "show",
        &id,
        "--json",
    ])));
    assert_eq!(shown["devices_by_last_status"]["failed"], 1, "{shown}");
    let dev = ok(site.as_operator(&["device", "show", "dev-1"]));
    assert!(dev.contains("last report: failed"), "{dev}");
    assert!(
        dev.contains(&format!("fw-1.1.0.img from assignment {id} (soft)")),
        "{dev}"
    );

    let cancelled = ok(site.as_operator(&["assignment", "cancel", &id]));
    assert!(
        cancelled.starts_with(&format!("cancelled {id}: ")),
        "{cancelled}"
    );
    let cancelled = json_of(&ok(site.as_operator(&[
        "assignment",
        "cancel",
        &id,
        "--json",
    ])));
    assert_eq!(cancelled["id"], id.as_str());

    // revoke and reinstate: an operator may revoke, only an admin reinstate.
    let revoked = ok(site.as_operator(&["device", "revoke", "dev-2", "--reason", "stolen"]));
    assert!(
        revoked.starts_with("revoked dev-2: the device API refuses it"),
        "{revoked}"
    );
    let table = ok(site.as_operator(&["device", "list", "--status", "revoked"]));
    assert_eq!(rows(&table).len(), 1, "{table}");
    assert!(
        table.contains("dev-2") && table.contains("revoked"),
        "{table}"
    );
    let active =
        json_of(&ok(site.as_operator(&[
            "device", "list", "--status", "active", "--json",
        ])));
    assert_eq!(active["devices"].as_array().unwrap().len(), 2);
    let refused = fails(site.as_operator(&["device", "reinstate", "dev-2"]));
    assert!(
        refused.contains("403 forbidden: an operator token may not do this"),
        "{refused}"
    );
    let admin = site.admin_token();
    let reinstated = json_of(&ok(
        site.as_token(&admin, &["device", "reinstate", "dev-2", "--json"])
    ));
    assert_eq!(reinstated, json!({"device_id": "dev-2", "revoked": false}));
    let table = ok(site.as_operator(&["device", "list", "--status", "revoked"]));
    assert!(table.contains("(no device matches)"), "{table}");
}

#[test]
fn status_tokens_and_log_levels() {
    // The server logs at debug: each request too.
    let site = Site::start_with(with_release(&["--log-level", "debug"]));
    let status = ok(site.as_operator(&["status"]));
    assert!(status.starts_with("server    rampart "), "{status}");
    assert!(status.contains("database sqlite"), "{status}");
    assert!(status.contains("  campaigns  "), "{status}");
    assert!(status.contains("  timestamp "), "{status}");
    assert!(status.ends_with("healthy\n"), "{status}");
    let status = json_of(&ok(site.as_operator(&["status", "--json"])));
    assert_eq!(status["database"]["backend"], "sqlite");
    // Warned ten years ahead, the offline roles are close: the check fails, saying why.
    let warned = fails(site.as_operator(&["status", "--warn-days", "3650"]));
    assert!(
        warned.contains("root metadata version 1 expires in"),
        "{warned}"
    );
    assert!(
        warned.contains("the server reports 2 warning(s) (listed above)"),
        "{warned}"
    );
    let gone = fails(rampart_testkit::cli::rampart(&[
        "status",
        "--api",
        "https://127.0.0.1:9",
        "--token",
        "t",
        "--ca",
        s(&site.ca_pem),
    ]));
    assert!(
        gone.contains("GET https://127.0.0.1:9/api/v1/status"),
        "{gone}"
    );

    let log = site.server_log();
    assert!(
        log.contains(r#""level":"debug","msg":"request""#)
            && log.contains(r#""route":"/api/v1/status""#),
        "{log}"
    );
    // The CLI's own calls at debug.
    let mut fleet = site.as_operator(&["fleet", "versions"]);
    fleet.env("RAMPART_LOG", "debug");
    let out = fleet.output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#""msg":"api call""#) && stderr.contains("/api/v1/fleet/versions"),
        "{stderr}"
    );
    let quiet = site.as_operator(&["fleet", "versions"]).output().unwrap();
    assert!(quiet.stderr.is_empty(), "{quiet:?}");

    // Tokens through the API with an admin token; the database mode lists the same.
    let admin = site.admin_token();
    let out = site
        .as_token(
            &admin,
            &["token", "create", "--role", "viewer", "--name", "ci"],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let viewer = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(viewer.starts_with("rampart_"), "{viewer}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("created viewer token"));
    ok(site.as_token(&viewer, &["fleet", "versions"]));
    let listed = ok(site.as_token(&admin, &["token", "list"]));
    assert!(listed.starts_with("ID "), "{listed}");
    let line = listed
        .lines()
        .find(|l| l.ends_with("  ci"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("viewer") && line.contains("active"), "{line}");
    let viewer_id = line.split_whitespace().next().unwrap().to_owned();
    let listed = json_of(&ok(site.as_token(&admin, &["token", "list", "--json"])));
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("secret").is_none()),
        "{listed}"
    );
    let refused = fails(site.as_operator(&["token", "list"]));
    assert!(refused.contains("403 forbidden"), "{refused}");
    let revoked = ok(site.as_token(&admin, &["token", "revoke", &viewer_id]));
    assert_eq!(revoked.trim(), format!("revoked token {viewer_id}"));
    let gone = fails(site.as_token(&viewer, &["fleet", "versions"]));
    assert!(
        gone.contains("401 unauthorized: unknown or revoked token"),
        "{gone}"
    );
    let again = fails(site.as_token(&admin, &["token", "revoke", &viewer_id]));
    assert!(again.contains("404 unknown_token"), "{again}");
    let in_db = ok(rampart_testkit::cli::rampart(&[
        "token",
        "list",
        "--db",
        &site.db_url(),
    ]));
    assert!(
        in_db
            .lines()
            .any(|l| l.starts_with(&viewer_id) && l.contains("revoked")),
        "{in_db}"
    );
    let mut both = site.as_token(&admin, &["token", "list"]);
    both.env("RAMPART_DB", site.db_url());
    let both = fails(both);
    assert!(both.contains("give either --db"), "{both}");
}

#[test]
fn campaigns_print_what_create_and_do_did() {
    // At warn, the server's start-up notes (info) are not written.
    let site = Site::start_with(with_release(&["--log-level", "warn"]));
    site.poll_as("dev-1", "board-a", "eu", "1.0.0");
    site.poll_as("dev-2", "board-a", "eu", "1.0.0");
    let spec = site.dir.join("campaign.json");
    std::fs::write(
        &spec,
        json!({"name": "to 1.1.0", "release": "fw-1.1.0.img",
               "targets": {"filter": {"hardware_id": "board-a"}},
               "phases": {"canary": {"devices": 1}, "waves": [{"percent": 100}]},
               "gate": {"max_failure_pct": 50, "min_success_pct": 50, "min_results": 1}})
        .to_string(),
    )
    .unwrap();
    let created = ok(site.as_operator(&["campaign", "create", s(&spec)]));
    assert!(
        created.starts_with("created campaign c-")
            && created.contains("\"to 1.1.0\" for fw-1.1.0.img: draft"),
        "{created}"
    );
    let id = created.split_whitespace().nth(2).unwrap().to_owned();
    assert!(
        created.contains(&format!("start it with `rampart campaign do start {id}`")),
        "{created}"
    );
    let started = ok(site.as_operator(&["campaign", "do", "start", &id]));
    assert!(
        started.starts_with(&format!("{id}: started, now running\n")),
        "{started}"
    );
    assert!(
        started.contains("started: 2 of 2 selected device(s) targeted"),
        "{started}"
    );
    assert!(started.contains("waves: canary 1, wave 1 1"), "{started}");
    let paused = json_of(&ok(
        site.as_operator(&["campaign", "do", "pause", &id, "--json"])
    ));
    assert_eq!(paused["status"], "paused");
    let resumed = ok(site.as_operator(&["campaign", "do", "resume", &id]));
    assert!(
        resumed.starts_with(&format!("{id}: resume (resumed), now ")),
        "{resumed}"
    );
    let refused = fails(site.as_operator(&["campaign", "do", "start", &id]));
    assert!(refused.contains("cannot start a campaign"), "{refused}");
    let aborted = ok(site.as_operator(&["campaign", "do", "abort", &id]));
    assert!(
        aborted.starts_with(&format!("{id}: abort (aborted), now aborted")),
        "{aborted}"
    );
    let created = json_of(&ok(site.as_operator(&[
        "campaign",
        "create",
        s(&spec),
        "--start",
        "--json",
    ])));
    assert_eq!(created["status"], "running", "{created}");
    assert_eq!(created["started"]["targets"], 2, "{created}");

    let log = site.server_log();
    assert!(!log.contains(r#""level":"info""#), "{log}");
}
