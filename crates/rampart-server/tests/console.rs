//! The web console over real TLS on loopback, against embedded SQLite and PostgreSQL: logging in
//! with a token for a strict session cookie, the security headers of every answer, CSRF and
//! origin checks on every POST, sessions ended by logout, idleness, the per-token cap and
//! revocation, failed logins throttled like the API's, a viewer refused what an operator may do
//! (a forged POST included), filters, and device-controlled markup shown as text.

mod common;

use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use common::ops::Ops;
use common::*;
use rampart_server::ConsoleConfig;
use serde_json::{Value, json};

on_both_backends!(
    login_gives_a_strict_cookie_and_every_answer_the_security_headers,
    every_post_needs_the_same_origin_and_the_sessions_csrf_token,
    a_viewer_sees_no_campaign_controls_and_a_forged_post_is_refused,
    sessions_end_at_logout_when_idle_beyond_the_cap_and_with_their_token,
    failed_logins_are_throttled_with_the_apis_failures,
    device_controlled_markup_renders_as_text_and_filters_select_rows,
    live_progress_streams_within_the_tokens_cap,
    live_streams_leave_half_the_management_listener_to_the_api,
    an_open_live_stream_does_not_keep_its_session_from_idling_out,
    release_pages_show_the_sbom_provenance_and_where_it_runs,
    incident_pages_show_the_incident_and_only_operators_act_on_it,
    the_audit_page_verifies_finds_tampering_and_exports_for_auditors_only,
    risk_lists_advisories_and_only_operators_remediate_from_the_console,
    the_device_page_shows_its_risk_incidents_and_audit_records,
    the_indicators_page_charts_stored_events_and_escapes_names,
);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const SAME_ORIGIN: [(&str, &str); 2] = [
    ("Origin", "https://localhost"),
    ("Sec-Fetch-Site", "same-origin"),
];

/// `name=value` of the cookie a login set.
fn session_cookie(r: &Response) -> String {
    let set = r.header("set-cookie").expect("a Set-Cookie header");
    set.split(';').next().unwrap().to_owned()
}

/// Logs in with `token`; returns the `Cookie` header value.
async fn login(ops: &Ops, token: &str) -> String {
    let r = login_answer(ops, token).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/console/fleet"));
    session_cookie(&r)
}

async fn login_answer(ops: &Ops, token: &str) -> Response {
    let body = serde_urlencoded::to_string([("token", token)]).unwrap();
    let mut headers = vec![FORM];
    headers.extend(SAME_ORIGIN);
    ops.conn()
        .await
        .send("POST", "/console/login", &headers, body.as_bytes())
        .await
        .unwrap()
}

async fn get(ops: &Ops, cookie: &str, path: &str) -> Response {
    ops.conn()
        .await
        .send("GET", path, &[("Cookie", cookie)], b"")
        .await
        .unwrap()
}

/// A form POST with the session cookie, the given extra headers and body.
async fn post(ops: &Ops, cookie: &str, path: &str, extra: &[(&str, &str)], body: &str) -> Response {
    let mut headers = vec![("Cookie", cookie)];
    if !extra
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        headers.push(FORM);
    }
    headers.extend_from_slice(extra);
    ops.conn()
        .await
        .send("POST", path, &headers, body.as_bytes())
        .await
        .unwrap()
}

/// The page's CSRF token (the logout form's hidden field, on every page of a session).
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_owned()
}

fn assert_security_headers(r: &Response) {
    assert_eq!(r.header("content-security-policy"), Some(CSP), "{r:?}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
}

async fn login_gives_a_strict_cookie_and_every_answer_the_security_headers(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-001", "board-a", &[]).await;

    // Without a session, pages send the browser to the login form.
    let mut conn = ops.conn().await;
    let r = conn.get("/console/fleet", &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/console/login"));
    assert_security_headers(&r);
    let r = conn.get("/console/login", &[]).await;
    assert_eq!(r.status, 200);
    assert_security_headers(&r);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.text()
            .contains("<form method=\"post\" action=\"/console/login\">")
    );

    // The token goes in the form body; the answer is a cookie no script can read.
    let r = login_answer(&ops, &ops.viewer).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").unwrap();
    let (cookie, flags) = set.split_once("; ").unwrap();
    assert!(
        cookie.starts_with("__Host-rampart_console=") && cookie.len() == 23 + 43,
        "{set}"
    );
    assert_eq!(flags, "Path=/; HttpOnly; Secure; SameSite=Strict");
    assert!(
        !set.contains(&ops.viewer),
        "the token itself is never a cookie"
    );
    // Only the session id's digest is stored.
    let id = cookie.split_once('=').unwrap().1;
    let limits = rampart_db::SessionLimits {
        idle_secs: 3600,
        max_per_token: 16,
    };
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()));
    let stored = ops
        .fx
        .db
        .console_session(&digest, unix_now(), limits)
        .await
        .unwrap();
    assert_eq!(stored.unwrap().0.role, "viewer");
    assert!(
        ops.fx
            .db
            .console_session(id, unix_now(), limits)
            .await
            .unwrap()
            .is_none()
    );

    let r = get(&ops, cookie, "/console/fleet").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_security_headers(&r);
    let page = r.text();
    assert!(page.contains("data-device=\"dev-001\""), "{page}");
    assert!(!page.contains(id), "the session id is never in a page");
    for path in [
        "/console/devices/dev-001",
        "/console/campaigns",
        "/console/risk",
    ] {
        let r = get(&ops, cookie, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_security_headers(&r);
    }
    let r = get(&ops, cookie, "/console/devices/nobody").await;
    assert_eq!(r.status, 404);
    assert_security_headers(&r);
    assert!(r.text().contains("nobody"), "{}", r.text());
    let r = get(&ops, cookie, "/console/no-such-page").await;
    assert_eq!(r.status, 404);
    assert_security_headers(&r);

    // Assets: under their content hash, cached for a year; any other name is unknown.
    let at = page.find("/console/assets/console-").unwrap();
    let css = &page[at..at + page[at..].find('"').unwrap()];
    assert!(css.ends_with(".css"), "{css}");
    let r = conn.get(css, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_security_headers(&r);
    let r = conn
        .get("/console/assets/console-0000000000000000.css", &[])
        .await;
    assert_eq!(r.status, 404);

    // The login is audited under the token's id.
    let audit = ops.call(&ops.admin, "GET", "/api/v1/audit", None).await;
    assert!(audit.text().contains("console.login"), "{}", audit.text());
    ops.server.stop().await;
}

/// Creates and starts a campaign over the API on ten board-a devices; returns its id.
async fn running_campaign(ops: &Ops) -> String {
    for i in 0..10 {
        ops.device(&format!("dev-{i:03}"), "board-a", &[]).await;
    }
    let spec = json!({
        "name": "to 2.0.0",
        "release": "fw-2.0.0.bin",
        "targets": {"filter": {"hardware_id": "board-a"}},
        "phases": {"canary": {"devices": 2}, "waves": [{"percent": 50}]},
        "gate": {"min_success_pct": 90, "max_failure_pct": 20, "min_results": 2},
    });
    ops.start_campaign(spec).await
}

/// A running campaign, a session of `token` and the campaign's page as that session sees it.
async fn campaign_page(ops: &Ops, token: &str) -> (String, String, String) {
    let id = running_campaign(ops).await;
    let cookie = login(ops, token).await;
    let page = get(ops, &cookie, &format!("/console/campaigns/{id}"))
        .await
        .text();
    (id, cookie, page)
}

async fn campaign_status(ops: &Ops, id: &str) -> Value {
    ops.call(&ops.viewer, "GET", &format!("/api/v1/campaigns/{id}"), None)
        .await
        .json()["status"]
        .clone()
}

async fn every_post_needs_the_same_origin_and_the_sessions_csrf_token(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    let (id, cookie, page) = campaign_page(&ops, &ops.operator).await;
    assert!(page.contains("id=\"campaign-actions\""), "{page}");
    let csrf = csrf_of(&page);
    let pause = format!("/console/campaigns/{id}/pause");
    let good = format!("csrf={csrf}");

    // Refused: no token, another session's token, another origin, a cross-site fetch.
    let other = login(&ops, &ops.operator).await;
    let other_csrf = csrf_of(&get(&ops, &other, "/console/fleet").await.text());
    assert_ne!(other_csrf, csrf);
    // (what, headers, body, status)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16);
    let cases: [Case; 4] = [
        ("no token", SAME_ORIGIN.to_vec(), String::new(), 403),
        (
            "another session's token",
            SAME_ORIGIN.to_vec(),
            format!("csrf={other_csrf}"),
            403,
        ),
        (
            "another origin",
            vec![("Origin", "https://evil.example")],
            good.clone(),
            403,
        ),
        (
            "a cross-site fetch",
            vec![("Sec-Fetch-Site", "cross-site")],
            good.clone(),
            403,
        ),
    ];
    for (what, headers, body, status) in cases {
        let r = post(&ops, &cookie, &pause, &headers, &body).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_security_headers(&r);
        assert_eq!(campaign_status(&ops, &id).await, "running", "{what}");
    }
    // No session at all.
    let r = ops
        .conn()
        .await
        .send("POST", &pause, &[FORM], good.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    // A body that is not a form.
    let r = post(
        &ops,
        &cookie,
        &pause,
        &[("Content-Type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.text());

    // The real form: paused, then resumed, through the API's own action code (audited so).
    let r = post(&ops, &cookie, &pause, &SAME_ORIGIN, &good).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/console/campaigns/{id}").as_str())
    );
    assert_eq!(campaign_status(&ops, &id).await, "paused");
    let page = get(&ops, &cookie, &format!("/console/campaigns/{id}"))
        .await
        .text();
    assert!(page.contains("action=\"/console/campaigns/") && page.contains("/resume\""));
    let resume = async || {
        let path = format!("/console/campaigns/{id}/resume");
        post(&ops, &cookie, &path, &[], &good).await
    };
    let r = resume().await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(campaign_status(&ops, &id).await, "running");
    // An action the state does not allow is refused by the same rules as the API's.
    let r = resume().await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("it is not paused"), "{}", r.text());
    ops.server.stop().await;
}

async fn a_viewer_sees_no_campaign_controls_and_a_forged_post_is_refused(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    let (id, cookie, page) = campaign_page(&ops, &ops.viewer).await;
    assert!(!page.contains("campaign-actions"), "{page}");
    assert!(!page.contains("/pause\""), "{page}");
    assert!(page.contains("id=\"no-actions\""), "{page}");
    assert!(page.contains("Your role (viewer)"), "{page}");
    // A forged POST with the viewer's own valid session and CSRF token: the server refuses.
    let csrf = csrf_of(&page);
    let r = post(
        &ops,
        &cookie,
        &format!("/console/campaigns/{id}/pause"),
        &SAME_ORIGIN,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("a viewer token may not do this"),
        "{}",
        r.text()
    );
    assert_eq!(campaign_status(&ops, &id).await, "running");
    // A monitor token may not use the console at all.
    let monitor = rampart_server::management::create_token(
        &ops.fx.db,
        &rampart_server::audit::AuditWriter::new(ops.fx.db.clone()),
        rampart_server::Role::Monitor,
        "m",
        "cli:test",
        unix_now(),
    )
    .await
    .unwrap()
    .secret;
    let r = login_answer(&ops, &monitor).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.header("set-cookie").is_none());
    ops.server.stop().await;
}

async fn sessions_end_at_logout_when_idle_beyond_the_cap_and_with_their_token(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start_with(backend, name, |config| {
        config.console.max_sessions_per_token = 2;
    })
    .await;
    let live =
        async |ops: &Ops, cookie: &str| get(ops, cookie, "/console/fleet").await.status == 200;

    // Logout ends the session and clears the cookie; the old cookie is no longer a session.
    let cookie = login(&ops, &ops.operator).await;
    assert!(live(&ops, &cookie).await);
    let csrf = csrf_of(&get(&ops, &cookie, "/console/fleet").await.text());
    let r = post(
        &ops,
        &cookie,
        "/console/logout",
        &SAME_ORIGIN,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/console/login"));
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(!live(&ops, &cookie).await, "a logged-out session");

    // The cap: a third login of the same token ends its oldest session (logins a second apart,
    // so which one is oldest is plain).
    let first = login(&ops, &ops.viewer).await;
    wait_past(unix_now()).await;
    let second = login(&ops, &ops.viewer).await;
    assert!(live(&ops, &first).await && live(&ops, &second).await);
    let third = login(&ops, &ops.viewer).await;
    assert!(!live(&ops, &first).await, "beyond the cap");
    assert!(live(&ops, &second).await && live(&ops, &third).await);

    // Logging in again from a browser that has a session ends that session (a browser holds
    // one; a planted one does not outlive the login), audited as a logout.
    let body = serde_urlencoded::to_string([("token", ops.viewer.as_str())]).unwrap();
    let mut headers = vec![FORM, ("Cookie", second.as_str())];
    headers.extend(SAME_ORIGIN);
    let r = ops
        .conn()
        .await
        .send("POST", "/console/login", &headers, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 303, "{}", r.text());
    let fourth = session_cookie(&r);
    assert!(!live(&ops, &second).await, "the session the login replaced");
    assert!(live(&ops, &fourth).await && live(&ops, &third).await);
    let audit = ops
        .call(&ops.admin, "GET", "/api/v1/audit", None)
        .await
        .text();
    assert!(audit.contains("replaced by a new login"), "{audit}");

    // The role is checked on every view, as the token's is stored now: a token whose role
    // could no longer read the fleet (changed in the database) sees no page.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&ops.fx.db_url).await.unwrap();
    sqlx::query("UPDATE api_tokens SET role = 'monitor' WHERE role = 'viewer'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(get(&ops, &third, "/console/fleet").await.status, 403);
    sqlx::query("UPDATE api_tokens SET role = 'viewer' WHERE role = 'monitor'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(live(&ops, &third).await, "a viewer again");

    // Revoking the token ends its sessions at once.
    let tokens = ops
        .call(&ops.admin, "GET", "/api/v1/tokens", None)
        .await
        .json();
    let viewer_ids: Vec<String> = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "viewer")
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    for id in viewer_ids {
        let r = ops
            .call(&ops.admin, "DELETE", &format!("/api/v1/tokens/{id}"), None)
            .await;
        assert!(r.status < 300, "{r:?}");
    }
    assert!(!live(&ops, &third).await, "a revoked token's session");

    // Idle: unused for the idle limit (1 s), the session is over.
    let ops = ops
        .restart_with(|config| {
            config.console = ConsoleConfig {
                idle_timeout: Duration::from_secs(1),
                ..ConsoleConfig::default()
            };
        })
        .await;
    let cookie = login(&ops, &ops.operator).await;
    wait_past(unix_now()).await;
    assert!(!live(&ops, &cookie).await, "an idle session");
    ops.server.stop().await;
}

async fn failed_logins_are_throttled_with_the_apis_failures(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let r = login_answer(&ops, "rampart_wrong").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("set-cookie").is_none());
    assert!(r.text().contains("unknown or revoked"), "{}", r.text());
    // Wrong tokens from one source: after the free budget, 429 with Retry-After, as a page.
    let mut throttled = None;
    for _ in 0..40 {
        let r = login_answer(&ops, "rampart_wrong").await;
        if r.status == 429 {
            throttled = Some(r);
            break;
        }
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = throttled.expect("failed logins are slowed down");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("Too many failed logins"), "{}", r.text());
    assert_security_headers(&r);
    // The same budget as the API's tokens: a wrong bearer token is slowed down now too.
    let r = ops
        .call("rampart_wrong", "GET", "/api/v1/devices", None)
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    // A valid token still logs in (a stranger's failures must not lock operators out).
    login(&ops, &ops.operator).await;
    assert!(
        ops.server
            .metric("rampart_server_auth_failures_total{kind=\"console_login\"}")
            .await
            >= 20
    );
    ops.server.stop().await;
}

async fn device_controlled_markup_renders_as_text_and_filters_select_rows(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    let script = "<script>window.pwned=1</script>";
    let img = "<img src=x onerror=\"window.pwned=2\">";
    let mut dev = ops.server.connect(&ops.fx.device("evil-001")).await;
    let r = dev
        .post(
            "/device/v1/poll",
            &json!({"hardware_id": script, "firmware_version": img, "security_version": 1,
                    "region": "eu\"><b>x", "slots": {"a": img}, "attributes": {img: script}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = dev
        .post(
            "/device/v1/reports",
            &json!({"id": "r-1", "status": "failed", "details": {"message": img, "reason": script}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    for i in 0..3 {
        ops.device(
            &format!("dev-{i:03}"),
            if i == 0 { "board-z" } else { "board-a" },
            &[],
        )
        .await;
    }

    let cookie = login(&ops, &ops.viewer).await;
    for path in [
        "/console/fleet",
        "/console/devices/evil-001",
        "/console/risk?by=hardware",
    ] {
        let page = get(&ops, &cookie, path).await.text();
        for raw in ["<script>window", "<img src=x", "<b>x"] {
            assert!(!page.contains(raw), "{path}: {raw} unescaped in {page}");
        }
        assert!(
            page.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"),
            "{path}: {page}"
        );
        // The risk page groups by hardware: the firmware version is not on it.
        if !path.starts_with("/console/risk") {
            assert!(page.contains("&lt;img src=x onerror="), "{path}");
        }
    }

    // Filters: by hardware (a value from the counts), by search, by status; keyset pages.
    let rows = |page: &str| -> Vec<String> {
        page.match_indices("data-device=\"")
            .map(|(at, _)| {
                let rest = &page[at + 13..];
                rest[..rest.find('"').unwrap()].to_owned()
            })
            .collect()
    };
    let fleet = |query: &str| {
        let cookie = cookie.clone();
        let ops = &ops;
        let query = query.to_owned();
        async move {
            get(ops, &cookie, &format!("/console/fleet{query}"))
                .await
                .text()
        }
    };
    assert_eq!(
        rows(&fleet("?hardware=board-a").await),
        ["dev-001", "dev-002"]
    );
    assert_eq!(rows(&fleet("?q=EVIL").await), ["evil-001"]);
    assert_eq!(rows(&fleet("?q=dev&hardware=board-z").await), ["dev-000"]);
    assert_eq!(rows(&fleet("?status=revoked").await), Vec::<String>::new());
    assert_eq!(rows(&fleet("?after=dev-001&q=dev").await), ["dev-002"]);
    let page = fleet("?hardware=board-a").await;
    assert!(
        page.contains("<option value=\"board-a\" selected>board-a</option>"),
        "{page}"
    );
    // The risk page groups as the API does, and refuses what the API refuses.
    let risk = get(&ops, &cookie, "/console/risk?by=hardware").await.text();
    assert!(risk.contains("data-key=\"board-a\""), "{risk}");
    let r = get(&ops, &cookie, "/console/risk?by=sideways").await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = get(&ops, &cookie, "/console/fleet?status=sideways").await;
    assert_eq!(r.status, 422, "{}", r.text());
    let long = "x".repeat(300);
    let r = get(&ops, &cookie, &format!("/console/fleet?q={long}")).await;
    assert_eq!(r.status, 422, "{}", r.text());
    ops.server.stop().await;
}

/// An open live stream: the connection and what it has sent so far.
struct Live {
    conn: Conn<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    seen: String,
}

impl Live {
    async fn open(ops: &Ops, cookie: &str, campaign: &str) -> (u16, Live) {
        let mut conn = ops.conn().await;
        conn.write_request(
            "GET",
            &format!("/console/campaigns/{campaign}/live"),
            &[("Cookie", cookie), ("Accept", "text/event-stream")],
            b"",
        )
        .await
        .unwrap();
        let mut live = Live {
            conn,
            seen: String::new(),
        };
        live.read_until("\r\n\r\n").await;
        let status = live.seen[9..12].parse().unwrap();
        (status, live)
    }

    /// Reads until `needle` has been sent (a generous bound for a busy machine).
    async fn read_until(&mut self, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let n = tokio::time::timeout(left, self.conn.stream_mut().read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in {}", self.seen))
                .unwrap();
            assert!(n > 0, "the stream closed before {needle:?}: {}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// The `progress` events sent so far, parsed.
    fn progress(&self) -> Vec<Value> {
        self.seen
            .split("event: progress\ndata: ")
            .skip(1)
            .map(|rest| serde_json::from_str(&rest[..rest.find('\n').unwrap()]).unwrap())
            .collect()
    }
}

async fn live_progress_streams_within_the_tokens_cap(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    // The campaign page follows the stream while the campaign runs.
    let (id, viewer, page) = campaign_page(&ops, &ops.viewer).await;
    assert!(
        page.contains(&format!("data-live=\"/console/campaigns/{id}/live\"")),
        "{page}"
    );

    let (status, mut first) = Live::open(&ops, &viewer, &id).await;
    assert_eq!(status, 200, "{}", first.seen);
    assert!(
        first
            .seen
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream")
    );
    first.read_until("event: progress").await;
    first.read_until("}\n").await;
    let progress = first.progress();
    assert_eq!(progress[0]["status"], "running", "{progress:?}");
    assert_eq!(progress[0]["waves"][0]["devices"], 2, "{progress:?}");

    // A change reaches the open stream without anyone asking.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            &format!("/api/v1/campaigns/{id}/pause"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    first.read_until("\"status\":\"paused\"").await;

    // Eight streams per token, whatever its sessions: a second login of the same token buys
    // no more; another token has its own.
    let viewer_again = login(&ops, &ops.viewer).await;
    let mut open = vec![first];
    for i in 0..7 {
        let session = if i % 2 == 0 { &viewer_again } else { &viewer };
        let (status, live) = Live::open(&ops, session, &id).await;
        assert_eq!(status, 200, "{}", live.seen);
        open.push(live);
    }
    for session in [&viewer, &viewer_again, &login(&ops, &ops.viewer).await] {
        let (status, refused) = Live::open(&ops, session, &id).await;
        assert_eq!(status, 429, "{}", refused.seen);
    }
    let operator = login(&ops, &ops.operator).await;
    let (status, _other) = Live::open(&ops, &operator, &id).await;
    assert_eq!(status, 200);
    // A closed stream frees its place.
    drop(open.pop());
    wait_until("a closed stream's place is free", || async {
        let (status, _live) = Live::open(&ops, &viewer, &id).await;
        status == 200
    })
    .await;

    // No session, no stream; an unknown campaign is not one either.
    let (status, _) = Live::open(&ops, "__Host-rampart_console=nothing", &id).await;
    assert_eq!(status, 401);
    let (status, _) = Live::open(&ops, &operator, "c-unknown").await;
    assert_eq!(status, 404);
    ops.server.stop().await;
}

/// Each live stream holds a connection of the management listener: the server follows at most
/// half the listener's cap, so the API still answers with every stream it allows open.
async fn live_streams_leave_half_the_management_listener_to_the_api(backend: Backend, name: &str) {
    let ops = Ops::start_with(backend, name, |config| {
        config.connections.management.max_connections = 8;
        config.connections.management.max_per_source = 8;
    })
    .await;
    let (id, viewer, _) = campaign_page(&ops, &ops.viewer).await;
    let operator = login(&ops, &ops.operator).await;
    let mut open = Vec::new();
    for session in [&viewer, &viewer, &operator, &operator] {
        let (status, live) = Live::open(&ops, session, &id).await;
        assert_eq!(status, 200, "{}", live.seen);
        open.push(live);
    }
    // Both tokens are within their own caps; the server's (4 of 8 connections) is reached.
    let (status, refused) = Live::open(&ops, &operator, &id).await;
    assert_eq!(status, 429, "{}", refused.seen);
    assert!(
        refused.seen.contains("too_many_live_views"),
        "{}",
        refused.seen
    );
    // The API and the pages still answer beside the four streams.
    let r = ops.call(&ops.viewer, "GET", "/api/v1/status", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(get(&ops, &viewer, "/console/fleet").await.status, 200);
    drop(open);
    ops.server.stop().await;
}

/// A campaign page left open keeps its live stream, which checks its session every 30 s; that
/// check is not a use, so the session still idles out (otherwise an unattended page would keep
/// an operator's session for its whole 12-hour lifetime).
async fn an_open_live_stream_does_not_keep_its_session_from_idling_out(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start_with(backend, name, |config| {
        config.console = ConsoleConfig {
            idle_timeout: Duration::from_secs(40),
            ..ConsoleConfig::default()
        };
    })
    .await;
    let (id, viewer, _) = campaign_page(&ops, &ops.viewer).await;
    let last_use = unix_now();
    let (status, mut stream) = Live::open(&ops, &viewer, &id).await;
    assert_eq!(status, 200, "{}", stream.seen);
    stream.read_until("event: progress").await;
    // Past the idle limit with only the stream open (it checked the session at about 30 s).
    wait_past(last_use + 41).await;
    let page = get(&ops, &viewer, "/console/fleet").await;
    assert_eq!(
        page.status,
        303,
        "an idle session with an open stream: {}",
        page.text()
    );
    drop(stream);
    ops.server.stop().await;
}

const SCRIPT: &str = "<script>window.pwned=1</script>";
const ESCAPED_SCRIPT: &str = "&lt;script&gt;window.pwned=1&lt;/script&gt;";

/// Asserts `page` holds `SCRIPT` only as text.
fn assert_inert(what: &str, page: &str) {
    assert!(
        !page.contains("<script>window"),
        "{what}: unescaped in {page}"
    );
    assert!(
        page.contains(ESCAPED_SCRIPT),
        "{what}: the markup is not shown in {page}"
    );
}

/// A form POST with the session's cookie, same-origin headers and its CSRF token (plus
/// `fields`).
async fn post_form(
    ops: &Ops,
    cookie: &str,
    csrf: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> Response {
    let mut all = vec![("csrf", csrf)];
    all.extend_from_slice(fields);
    let body = serde_urlencoded::to_string(all).unwrap();
    post(ops, cookie, path, &SAME_ORIGIN, &body).await
}

/// `fw-sbom.bin` (5.0.0, board-a): an SBOM of 60 components (the first named with markup)
/// and a bare provenance statement naming the image.
async fn publish_release_with_documents(ops: &Ops) {
    use rampart_repo::{NoProgress, ReleaseRequest, Repository};
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let dir = ops.repo_dir.path();
    let image = dir.join("fw-sbom.bin");
    let bytes = "firmware with documents".repeat(100);
    std::fs::write(&image, &bytes).unwrap();
    let sha256 = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        bytes.as_bytes(),
    ));
    let mut pins: Vec<(String, String)> = vec![(SCRIPT.to_owned(), "1.0.0".to_owned())];
    pins.extend((1..60).map(|i| (format!("lib-{i:02}"), format!("1.{i}.0"))));
    let pins: Vec<(&str, &str)> = pins.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let sbom = dir.join("fw-sbom.cdx.json");
    std::fs::write(&sbom, common::risk::cyclonedx(&pins)).unwrap();
    let provenance = dir.join("fw-sbom.intoto.json");
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "fw-sbom.bin", "digest": {"sha256": sha256}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {"buildType": "https://example.com/build/v1", "externalParameters": {}},
            "runDetails": {"builder": {"id": "https://builder.example/ci"}}
        }
    });
    std::fs::write(&provenance, statement.to_string()).unwrap();
    let repo = Repository::open(&dir.join("repo")).unwrap();
    let now = unix_now();
    let request = ReleaseRequest {
        image,
        target_name: Some("fw-sbom.bin".into()),
        hardware_ids: vec!["board-a".into()],
        version: "5.0.0".into(),
        security_version: 1,
        sbom: Some(sbom),
        provenance: Some(rampart_repo::ProvenanceInput::Statement(provenance)),
        role: None,
    };
    repo.add_releases(&[request], &open_key, now, &NoProgress)
        .unwrap();
    repo.publish(&open_key, now).unwrap();
    wait_until("the hosted repository lists fw-sbom.bin", || async {
        let r = ops.call(&ops.viewer, "GET", "/api/v1/releases", None).await;
        r.text().contains("fw-sbom.bin")
    })
    .await;
}

async fn release_pages_show_the_sbom_provenance_and_where_it_runs(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    publish_release_with_documents(&ops).await;
    common::risk::poll_as(&ops, "dev-run-1", "board-a", "eu", "5.0.0").await;
    common::risk::poll_as(&ops, "dev-run-2", "board-a", "us", "5.0.0").await;
    common::risk::poll_as(&ops, "dev-old", "board-a", "us", "1.0.0").await;
    let cookie = login(&ops, &ops.viewer).await;

    let list = get(&ops, &cookie, "/console/releases").await;
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.text();
    for target in ["fw-1.0.0.bin", "fw-2.0.0.bin", "fw-sbom.bin"] {
        assert!(
            list.contains(&format!("data-release=\"{target}\"")),
            "{list}"
        );
    }
    // Documents are not releases of their own.
    assert!(
        !list.contains("data-release=\"fw-sbom.cdx.json\""),
        "{list}"
    );

    let r = get(&ops, &cookie, "/console/release?target=fw-sbom.bin").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_security_headers(&r);
    let page = r.text();
    assert_inert("the release page", &page);
    assert!(page.contains("60 components"), "{page}");
    assert!(
        page.contains("lib-49") && !page.contains("lib-50"),
        "the first page only"
    );
    assert!(page.contains("offset=50"), "a next page: {page}");
    assert!(page.contains("https://builder.example/ci"), "{page}");
    assert!(
        page.contains("data-field=\"names-image\">names this image"),
        "{page}"
    );
    assert!(page.contains("no transparency-log proof"), "{page}");
    assert!(page.contains("data-field=\"running\">2<"), "{page}");
    assert!(
        page.contains("href=\"/console/fleet?version=5.0.0\""),
        "{page}"
    );
    let second = get(
        &ops,
        &cookie,
        "/console/release?target=fw-sbom.bin&offset=50",
    )
    .await
    .text();
    assert!(
        second.contains("lib-59") && !second.contains("lib-49"),
        "{second}"
    );
    // A release without documents says so; an unknown one is 404, a missing name 422.
    let plain = get(&ops, &cookie, "/console/release?target=fw-1.0.0.bin")
        .await
        .text();
    assert!(plain.contains("carries no SBOM") && plain.contains("carries no provenance"));
    assert!(plain.contains("data-field=\"running\">1<"), "{plain}");
    let r = get(&ops, &cookie, "/console/release?target=nothing.bin").await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = get(&ops, &cookie, "/console/release").await;
    assert_eq!(r.status, 422, "{}", r.text());
    ops.server.stop().await;
}

/// Opens an incident over the API as the operator, its title holding markup, on `devices`.
async fn open_incident(ops: &Ops, devices: &[&str]) -> String {
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/incidents",
            Some(&json!({"severity": "high", "title": format!("bad boot {SCRIPT}"), "devices": devices})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    r.json()["id"].as_str().unwrap().to_owned()
}

async fn incident(ops: &Ops, id: &str) -> Value {
    ops.call(&ops.viewer, "GET", &format!("/api/v1/incidents/{id}"), None)
        .await
        .json()
}

async fn incident_pages_show_the_incident_and_only_operators_act_on_it(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-001", "board-a", &[]).await;
    ops.device("dev-002", "board-a", &[]).await;
    // Operator-opened incidents hold a re-image for approval by an operator.
    let playbooks = json!({"operator": {"default": {"now": ["alert"],
        "approve": [{"action": "reimage", "role": "operator"}]}}});
    let r = ops
        .call(&ops.admin, "PUT", "/api/v1/playbooks", Some(&playbooks))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let id = open_incident(&ops, &["dev-001", "dev-002"]).await;

    // A viewer: the list (filtered by state) and the page, with no forms.
    let viewer = login(&ops, &ops.viewer).await;
    let list = get(&ops, &viewer, "/console/incidents").await.text();
    assert_inert("the incident list", &list);
    assert!(list.contains(&format!("data-incident=\"{id}\"")), "{list}");
    let closed = get(&ops, &viewer, "/console/incidents?state=closed")
        .await
        .text();
    assert!(
        !closed.contains(&format!("data-incident=\"{id}\"")),
        "{closed}"
    );
    let r = get(&ops, &viewer, "/console/incidents?state=sideways").await;
    assert_eq!(r.status, 422, "{}", r.text());
    let page = get(&ops, &viewer, &format!("/console/incidents/{id}"))
        .await
        .text();
    assert_inert("the incident page", &page);
    assert!(page.contains("href=\"/console/devices/dev-001\""), "{page}");
    assert!(
        page.contains("id=\"timeline\"") && page.contains("opened"),
        "{page}"
    );
    assert!(
        !page.contains("incident-actions") && !page.contains("/approve\""),
        "{page}"
    );
    assert!(page.contains("Your role (viewer)"), "{page}");
    // Forged with the viewer's own session and CSRF token: refused by the API's rule.
    let viewer_csrf = csrf_of(&page);
    for path in [
        format!("/console/incidents/{id}/ack"),
        format!("/console/incidents/{id}/close"),
    ] {
        let r = post_form(&ops, &viewer, &viewer_csrf, &path, &[]).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }
    assert!(incident(&ops, &id).await["acknowledged_at"].is_null());

    // An operator: the forms; without the CSRF token refused; with it, acknowledged.
    let operator = login(&ops, &ops.operator).await;
    let page = get(&ops, &operator, &format!("/console/incidents/{id}"))
        .await
        .text();
    assert!(page.contains("id=\"incident-actions\""), "{page}");
    assert!(
        page.contains(&format!("action=\"/console/incidents/{id}/ack\"")),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let ack = format!("/console/incidents/{id}/ack");
    let r = post(&ops, &operator, &ack, &SAME_ORIGIN, "").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(incident(&ops, &id).await["acknowledged_at"].is_null());
    let r = post_form(&ops, &operator, &csrf, &ack, &[]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/console/incidents/{id}").as_str())
    );
    let view = incident(&ops, &id).await;
    assert!(view["acknowledged_at"].is_i64(), "{view}");
    assert!(
        view["acknowledged_by"]
            .as_str()
            .unwrap()
            .starts_with("token:")
    );

    // The held re-images: approve one from the page (the viewer was shown no button).
    let held: Vec<String> = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "pending_approval")
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(held.len(), 2, "{view}");
    let page = get(&ops, &operator, &format!("/console/incidents/{id}"))
        .await
        .text();
    let approve = format!("/console/incident-actions/{}/approve", held[0]);
    assert!(page.contains(&format!("action=\"{approve}\"")), "{page}");
    let r = post_form(&ops, &viewer, &viewer_csrf, &approve, &[]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = post_form(&ops, &operator, &csrf, &approve, &[]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let view = incident(&ops, &id).await;
    let decided = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == held[0].as_str())
        .unwrap();
    assert_ne!(decided["state"], "pending_approval", "{view}");
    let reject = format!("/console/incident-actions/{}/reject", held[1]);
    let r = post_form(&ops, &operator, &csrf, &reject, &[]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let view = incident(&ops, &id).await;
    let rejected = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == held[1].as_str())
        .unwrap();
    assert_eq!(rejected["state"], "rejected", "{view}");

    // Moved forward with a note; the page then offers only the later states.
    let r = post_form(
        &ops,
        &operator,
        &csrf,
        &format!("/console/incidents/{id}/contained"),
        &[("note", "isolated")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(incident(&ops, &id).await["state"], "contained");
    let page = get(&ops, &operator, &format!("/console/incidents/{id}"))
        .await
        .text();
    assert!(
        !page.contains(&format!("/console/incidents/{id}/contained\"")),
        "{page}"
    );
    assert!(
        page.contains(&format!("/console/incidents/{id}/eradicated\"")),
        "{page}"
    );
    let r = post_form(
        &ops,
        &operator,
        &csrf,
        &format!("/console/incidents/{id}/sideways"),
        &[],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());

    // Closed with a note (markup in it is the operator's, shown as text in the timeline).
    let r = post_form(
        &ops,
        &operator,
        &csrf,
        &format!("/console/incidents/{id}/close"),
        &[("note", SCRIPT)],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(incident(&ops, &id).await["state"], "closed");
    let page = get(&ops, &operator, &format!("/console/incidents/{id}"))
        .await
        .text();
    assert!(page.contains("The incident is closed."), "{page}");
    assert!(!page.contains("<script>window"), "{page}");
    let closed = get(&ops, &viewer, "/console/incidents?state=closed")
        .await
        .text();
    assert!(
        closed.contains(&format!("data-incident=\"{id}\"")),
        "{closed}"
    );
    ops.server.stop().await;
}

async fn the_audit_page_verifies_finds_tampering_and_exports_for_auditors_only(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-001", "board-a", &[]).await;
    // Viewers and operators have no audit page, and no link to one.
    for token in [&ops.viewer, &ops.operator] {
        let cookie = login(&ops, token).await;
        let fleet = get(&ops, &cookie, "/console/fleet").await.text();
        assert!(!fleet.contains("href=\"/console/audit\""), "{fleet}");
        for path in ["/console/audit", "/console/audit/export?format=jsonl"] {
            let r = get(&ops, &cookie, path).await;
            assert_eq!(r.status, 403, "{path}: {}", r.text());
        }
    }
    let cookie = login(&ops, &ops.auditor).await;
    let page = get(&ops, &cookie, "/console/audit").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.text();
    assert!(page.contains("href=\"/console/audit\""), "{page}");
    assert!(page.contains("console.login"), "{page}");
    assert!(page.contains("data-seq=\"0\""), "{page}");

    // Verified: intact, with the count and head of the stored chain.
    let stored = ops.audit_records().await;
    let verified = get(&ops, &cookie, "/console/audit?verify=1").await.text();
    assert!(verified.contains("id=\"chain-ok\""), "{verified}");
    let count = verified
        .split("data-field=\"count\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap();
    assert!(count >= stored.len(), "{count} < {}", stored.len());
    assert!(
        verified.contains(&hex::encode(stored[count.min(stored.len()) - 1].hash))
            || count > stored.len(),
        "{verified}"
    );

    // The export: a download of the records, with the session (no token in the URL).
    let r = get(&ops, &cookie, "/console/audit/export?format=jsonl").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"rampart-audit.jsonl\"")
    );
    let exported = rampart_audit::parse_jsonl(r.text().as_bytes()).unwrap();
    assert!(exported.len() >= stored.len());
    rampart_audit::verify(&exported).unwrap();
    let r = get(&ops, &cookie, "/console/audit/export?format=csv").await;
    assert_eq!(r.header("content-type"), Some("text/csv"));
    let r = get(&ops, &cookie, "/console/audit/export?format=xml").await;
    assert_eq!(r.status, 422, "{}", r.text());

    // A record edited in the database: the verification names it.
    sqlx::any::install_default_drivers();
    let url = if ops.fx.db_url.starts_with("sqlite:") {
        format!("{}?mode=rw", ops.fx.db_url)
    } else {
        ops.fx.db_url.clone()
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let mut edited = stored[1].clone();
    edited.subject = "covered-up".into();
    sqlx::query("UPDATE audit_log SET record = $1 WHERE seq = $2")
        .bind(rampart_audit::to_json_line(&edited))
        .bind(1_i64)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let verified = get(&ops, &cookie, "/console/audit?verify=1").await.text();
    assert!(verified.contains("id=\"chain-bad\""), "{verified}");
    assert!(verified.contains("record 1 was edited"), "{verified}");
    ops.server.stop().await;
}

/// Two devices on the vulnerable release, one on the clean one, the real advisories naming
/// `requests` imported, and one test advisory whose id holds markup.
async fn fleet_with_advisories(ops: &Ops) {
    common::risk::add_sbom_releases(ops).await;
    common::risk::poll_as(ops, "dev-eu-a", "board-a", "eu", "3.0.0").await;
    common::risk::poll_as(ops, "dev-us-b", "board-b", "us", "3.0.0").await;
    common::risk::poll_as(ops, "dev-clean", "board-a", "us", "4.0.0").await;
    let mut records = common::risk::advisories_naming("requests");
    records.push(json!({"id": format!("TEST-{SCRIPT}"), "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}]}]}));
    common::risk::import(ops, &ops.operator, &records).await;
}

async fn risk_lists_advisories_and_only_operators_remediate_from_the_console(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    fleet_with_advisories(&ops).await;
    let markup_id = format!("TEST-{SCRIPT}");

    let viewer = login(&ops, &ops.viewer).await;
    let page = get(&ops, &viewer, "/console/risk").await.text();
    assert_inert("the risk page", &page);
    assert!(page.contains("id=\"advisories\""), "{page}");
    // The test advisory: both vulnerable devices, fixed in 2.20.0.
    let row_at = page
        .find(&format!("data-advisory=\"TEST-{ESCAPED_SCRIPT}\""))
        .unwrap();
    let row = &page[row_at..row_at + page[row_at..].find("</tr>").unwrap()];
    assert!(row.contains("<td class=\"num\">2</td>"), "{row}");
    assert!(
        row.contains("fw-vuln.bin") && row.contains("2.20.0"),
        "{row}"
    );
    assert!(!page.contains("class=\"remediate\""), "{page}");
    assert!(page.contains("id=\"no-remediation\""), "{page}");
    // A forged remediation with the viewer's session is refused by the API's rule.
    let path =
        "/console/risk/advisories/TEST-%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E/remediate";
    let r = post_form(
        &ops,
        &viewer,
        &csrf_of(&page),
        path,
        &[("release", "fw-clean.bin")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());

    // An operator: the form, refused without the CSRF token, then the campaign.
    let operator = login(&ops, &ops.operator).await;
    let page = get(&ops, &operator, "/console/risk").await.text();
    assert!(page.contains(&format!("action=\"{path}\"")), "{page}");
    let r = post(&ops, &operator, path, &SAME_ORIGIN, "release=fw-clean.bin").await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = post_form(
        &ops,
        &operator,
        &csrf_of(&page),
        path,
        &[("release", "fw-vuln.bin")],
    )
    .await;
    assert_eq!(r.status, 409, "a release still affected: {}", r.text());
    let campaigns = ops
        .call(&ops.viewer, "GET", "/api/v1/campaigns", None)
        .await
        .json();
    assert_eq!(
        campaigns["campaigns"].as_array().unwrap().len(),
        0,
        "{campaigns}"
    );
    let r = post_form(
        &ops,
        &operator,
        &csrf_of(&page),
        path,
        &[("release", "fw-clean.bin")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.header("location").unwrap().to_owned();
    let id = location.strip_prefix("/console/campaigns/").unwrap();
    let c = ops
        .call(&ops.viewer, "GET", &format!("/api/v1/campaigns/{id}"), None)
        .await
        .json();
    assert_eq!(c["release"], "fw-clean.bin", "{c}");
    assert_eq!(
        c["spec"]["targets"],
        json!({"devices": ["dev-eu-a", "dev-us-b"]}),
        "{c}"
    );
    let audit = ops.audit_records().await;
    let record = audit
        .iter()
        .find(|r| r.action == "risk.remediation_created")
        .expect("audited");
    assert_eq!(record.details["advisory"], markup_id.as_str());
    ops.server.stop().await;
}

async fn the_device_page_shows_its_risk_incidents_and_audit_records(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    fleet_with_advisories(&ops).await;
    let id = open_incident(&ops, &["dev-eu-a"]).await;

    let viewer = login(&ops, &ops.viewer).await;
    let page = get(&ops, &viewer, "/console/devices/dev-eu-a").await.text();
    assert_inert("the device page", &page);
    assert!(page.contains("id=\"device-advisories\""), "{page}");
    assert!(
        page.contains("href=\"/console/release?target=fw-vuln.bin\""),
        "{page}"
    );
    assert!(page.contains(&format!("data-incident=\"{id}\"")), "{page}");
    // Audit records are the auditors': a viewer is told so.
    assert!(page.contains("id=\"no-audit\""), "{page}");
    assert!(!page.contains("id=\"audit-records\""), "{page}");
    let clean = get(&ops, &viewer, "/console/devices/dev-clean")
        .await
        .text();
    assert!(clean.contains("data-field=\"advisories\">0<"), "{clean}");
    assert!(clean.contains("id=\"no-incidents\""), "{clean}");

    let auditor = login(&ops, &ops.auditor).await;
    let page = get(&ops, &auditor, "/console/devices/dev-eu-a")
        .await
        .text();
    assert!(page.contains("id=\"audit-records\""), "{page}");
    // Its enrolment and its incident are among its records; another device's are not.
    assert!(
        page.contains("device.enrolled") || page.contains("device:dev-eu-a"),
        "{page}"
    );
    assert!(!page.contains(">dev-us-b<"), "{page}");
    ops.server.stop().await;
}

async fn the_indicators_page_charts_stored_events_and_escapes_names(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    for i in 0..4 {
        ops.device(&format!("dev-{i:03}"), "board-a", &[]).await;
    }
    let spec = json!({
        "name": "<script>window.pwned=3</script>",
        "release": "fw-2.0.0.bin",
        "targets": {"filter": {"hardware_id": "board-a"}},
        "phases": {"canary": {"devices": 2}, "waves": [{"percent": 100}]},
        "gate": {"min_success_pct": 50, "max_failure_pct": 50, "min_results": 2},
    });
    ops.start_campaign(spec).await;
    // A result stored by the device API: one successful install this hour.
    let mut dev = ops.server.connect(&ops.fx.device("dev-000")).await;
    let r = dev
        .post(
            "/device/v1/reports",
            &json!({"id": "r-ok", "status": "installed", "details": {"reason": "ok"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");

    let cookie = login(&ops, &ops.viewer).await;
    let r = get(&ops, &cookie, "/console/indicators?span=24h").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_security_headers(&r);
    let page = r.text();
    // In the navigation, with three charts drawn on the server and no inline style.
    assert!(
        page.contains(r#"<a href="/console/indicators" class="active">Indicators</a>"#),
        "{page}"
    );
    for chart in ["chart-results", "chart-rates", "chart-incidents"] {
        assert!(
            page.contains(&format!(r#"<svg class="chart" id="{chart}""#)),
            "{chart}: {page}"
        );
    }
    assert!(!page.contains("style="), "{page}");
    // The install counts: one bar with its exact value, a 100% success rate.
    assert!(page.contains(": 1 succeeded</title>"), "{page}");
    assert!(
        page.contains(r#"<td class="num" id="success-rate">100.0%</td>"#),
        "{page}"
    );
    // The campaign that started is listed under its name, escaped.
    assert!(!page.contains("<script>window"), "{page}");
    assert!(
        page.contains("&lt;script&gt;window.pwned=3&lt;/script&gt;"),
        "{page}"
    );
    // Other spans; an unknown one is refused with what to ask instead.
    let r = get(&ops, &cookie, "/console/indicators?span=30d").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<strong>Last 30 days</strong>"));
    let r = get(&ops, &cookie, "/console/indicators?span=1y").await;
    assert_eq!(r.status, 422);
    assert!(
        r.text().contains("span must be 24h, 7d or 30d"),
        "{}",
        r.text()
    );
    ops.server.stop().await;
}
