//! What every console page shares: the document around a page's content (navigation, who is
//! logged in, the logout form), error pages, and the small formatters pages use. maud escapes
//! every `(value)`; nothing here emits raw markup from data.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::session::Session;
use crate::listen::http::ApiError;
use crate::operator::Permission;

/// The navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Fleet,
    Releases,
    Campaigns,
    Incidents,
    Risk,
    Audit,
    Indicators,
    /// Pages outside the navigation (login, errors).
    None,
}

/// A whole page: `content` inside the layout, for `session` (none on the login page).
pub(super) fn document(
    title: &str,
    section: Section,
    session: Option<&Session>,
    content: Markup,
) -> Markup {
    let nav = |to: Section, href: &str, label: &str| {
        html! { a href=(href) class=[(section == to).then_some("active")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Rampart console" }
                // No icon to fetch (the policy allows data: images).
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(assets::css_url());
                script src=(assets::script_url()) defer {}
            }
            body {
                header.top {
                    a.brand href="/console/fleet" { "Rampart" }
                    nav {
                        @if session.is_some() {
                            (nav(Section::Fleet, "/console/fleet", "Fleet"))
                            (nav(Section::Releases, "/console/releases", "Releases"))
                            (nav(Section::Campaigns, "/console/campaigns", "Campaigns"))
                            (nav(Section::Incidents, "/console/incidents", "Incidents"))
                            (nav(Section::Risk, "/console/risk", "Risk"))
                            (nav(Section::Indicators, "/console/indicators", "Indicators"))
                        }
                        @if session.is_some_and(|s| s.may(Permission::Audit)) {
                            (nav(Section::Audit, "/console/audit", "Audit"))
                        }
                    }
                    @if let Some(session) = session {
                        span.who data-role=(session.role().as_str()) {
                            (session.token_name()) " · " (session.role().as_str())
                        }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(session.csrf());
                            button.secondary type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// An HTML answer with `status`.
pub(super) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        markup.into_string(),
    )
        .into_response()
}

/// An error page: the API's error (status, code and what to do) as HTML.
pub(super) fn error_page(error: &ApiError, session: Option<&Session>) -> Response {
    let title = error
        .status
        .canonical_reason()
        .unwrap_or("Request refused")
        .to_owned();
    let content = html! {
        div.error {
            p { (error.detail) }
            p.note { "Error code: " code { (error.error) } }
        }
        p { a href="/console/fleet" { "Back to the fleet" } }
    };
    html_response(
        error.status,
        document(&title, Section::None, session, content),
    )
}

/// 404 for a console path that has no page.
pub(super) async fn not_found() -> Response {
    error_page(
        &ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the console has no such page; start from the fleet page",
        ),
        None,
    )
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC` ("never" for 0 and earlier).
pub(super) fn time(unix: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    match jiff::Timestamp::from_second(unix) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => unix.to_string(),
    }
}

/// A JSON value as text: a string as it is, anything else as JSON.
pub(super) fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A query string (`?a=1&b=2`) from pairs, percent-encoded; empty values are left out.
pub(super) fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if kept.is_empty() {
        return String::new();
    }
    format!("?{}", serde_urlencoded::to_string(kept).unwrap_or_default())
}

/// `value` as one segment of a URL path: every byte but letters, digits, `-`, `.` and `_`
/// percent-encoded (an advisory id from a feed may hold `/`, `?` or markup).
pub(super) fn path_segment(value: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const KEPT: &percent_encoding::AsciiSet =
        &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');
    utf8_percent_encode(value, KEPT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_queries_are_formatted_for_people_and_urls() {
        assert_eq!(time(0), "never");
        assert_eq!(time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(query(&[("a", ""), ("b", "")]), "");
        assert_eq!(path_segment("GHSA-x.y_z"), "GHSA-x.y_z");
        assert_eq!(path_segment("a/<b>?"), "a%2F%3Cb%3E%3F");
        assert_eq!(
            query(&[("version", "1.0 & <x>"), ("q", ""), ("region", "eu")]),
            "?version=1.0+%26+%3Cx%3E&region=eu"
        );
    }
}
