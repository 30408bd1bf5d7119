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
    live_progress_streams_within_the_sessions_cap,
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
        cookie.starts_with("rampart_console=") && cookie.len() == 16 + 43,
        "{set}"
    );
    assert_eq!(flags, "Path=/console; HttpOnly; Secure; SameSite=Strict");
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

async fn live_progress_streams_within_the_sessions_cap(backend: Backend, name: &str) {
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

    // Four streams per session; a fifth is refused, another session has its own.
    let mut open = vec![first];
    for _ in 0..3 {
        let (status, live) = Live::open(&ops, &viewer, &id).await;
        assert_eq!(status, 200, "{}", live.seen);
        open.push(live);
    }
    let (status, refused) = Live::open(&ops, &viewer, &id).await;
    assert_eq!(status, 429, "{}", refused.seen);
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
    let (status, _) = Live::open(&ops, "rampart_console=nothing", &id).await;
    assert_eq!(status, 401);
    let (status, _) = Live::open(&ops, &operator, "c-unknown").await;
    assert_eq!(status, 404);
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
