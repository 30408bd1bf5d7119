//! `GET /console/fleet`: the fleet at a glance (devices per version, hardware, region and
//! status) and a device table with a search, filters in the query string and keyset pages
//! (`after=<last id>`), so the last page of 100,000 devices costs what the first does.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use rampart_db::{Device, DeviceFilter, DevicePage, FleetCounts};
use serde::Deserialize;

use super::Console;
use super::access::page_query;
use super::layout::{Section, document, error_page, html_response, query, time};
use super::session::Session;
use crate::listen::http::ApiError;

/// Devices per page.
const PAGE: i64 = 50;
/// Longest filter value (the inventory stores at most 256 bytes per field).
const MAX_FILTER: usize = 256;

/// The page's query string; an empty value is no filter.
#[derive(Deserialize, Default)]
pub(super) struct FleetQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    hardware: String,
    #[serde(default)]
    region: String,
    /// `active`, `revoked` or `quarantined`.
    #[serde(default)]
    status: String,
    /// The last device id of the previous page.
    #[serde(default)]
    after: String,
}

/// The statuses the filter offers: (value, label).
const STATUSES: [(&str, &str); 3] = [
    ("active", "active"),
    ("quarantined", "quarantined"),
    ("revoked", "revoked"),
];

impl FleetQuery {
    /// The storage filter the query asks for (422 for a value no device could have).
    fn filter(&self) -> Result<DeviceFilter, ApiError> {
        for (name, value) in [
            ("q", &self.q),
            ("version", &self.version),
            ("hardware", &self.hardware),
            ("region", &self.region),
            ("after", &self.after),
        ] {
            if value.len() > MAX_FILTER {
                return Err(ApiError::invalid(format!(
                    "{name} is longer than {MAX_FILTER} bytes; shorten it"
                )));
            }
        }
        let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let (revoked, quarantined) = match self.status.as_str() {
            "" => (None, None),
            "active" => (Some(false), Some(false)),
            "revoked" => (Some(true), None),
            "quarantined" => (None, Some(true)),
            other => {
                return Err(ApiError::invalid(format!(
                    "status {:?} is not one of active, quarantined, revoked",
                    other.chars().take(32).collect::<String>()
                )));
            }
        };
        Ok(DeviceFilter {
            hardware_id: some(&self.hardware),
            firmware_version: some(&self.version),
            region: some(&self.region),
            id_contains: some(self.q.trim()),
            revoked,
            quarantined,
            ..DeviceFilter::default()
        })
    }

    /// This query's filters as a query string, with `after` set to `after`.
    fn with_after(&self, after: &str) -> String {
        query(&[
            ("q", &self.q),
            ("version", &self.version),
            ("hardware", &self.hardware),
            ("region", &self.region),
            ("status", &self.status),
            ("after", after),
        ])
    }
}

pub(super) async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    query: Result<Query<FleetQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match page_query(query) {
        Ok(q) => q,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let filter = match q.filter() {
        Ok(filter) => filter,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let db = &console.api.db;
    let page = match q.after.as_str() {
        "" => DevicePage::Offset(0),
        after => DevicePage::After(after),
    };
    // One more than a page: whether there is a next page.
    let read = async {
        let counts = db.fleet_counts().await?;
        let mut devices = db.list_devices_from(&filter, page, PAGE + 1).await?;
        let more = devices.len() as i64 > PAGE;
        devices.truncate(PAGE as usize);
        let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
        let quarantined: BTreeSet<String> = db
            .quarantined_among(&ids)
            .await?
            .into_iter()
            .map(|q| q.device_id)
            .collect();
        Ok::<_, rampart_db::DbError>((counts, devices, more, quarantined))
    };
    let (counts, devices, more, quarantined) = match read.await {
        Ok(read) => read,
        Err(e) => return error_page(&ApiError::from_db("reading the fleet", e), Some(&session)),
    };
    let content = html! {
        (summary(&counts))
        h2 { "Devices" }
        (filters(&q, &counts))
        (device_table(&devices, &quarantined))
        div.pager {
            @if !q.after.is_empty() {
                a href={ "/console/fleet" (q.with_after("")) } { "First page" }
            }
            @if more && let Some(last) = devices.last() {
                a href={ "/console/fleet" (q.with_after(&last.id)) } rel="next" { "Next page" }
            }
        }
    };
    html_response(
        StatusCode::OK,
        document("Fleet", Section::Fleet, Some(&session), content),
    )
}

/// The counts per version, hardware, region and status, each value a link to its devices.
fn summary(counts: &FleetCounts) -> Markup {
    let column = |title: &str, key: &str, values: &[(String, i64)]| {
        html! {
            div {
                h2 { (title) }
                table.counts data-count=(key) {
                    @for (value, n) in values {
                        tr {
                            td { a href={ "/console/fleet" (query(&[(key, value)])) } {
                                @if value.is_empty() { span.note { "(none)" } } @else { (value) }
                            } }
                            td.num { (n) }
                        }
                    }
                }
            }
        }
    };
    let active = counts.devices - counts.revoked - counts.quarantined;
    html! {
        p { strong { (counts.devices) } " devices" }
        div.cards {
            (column("Firmware versions", "version", &counts.versions))
            (column("Hardware", "hardware", &counts.hardware))
            (column("Regions", "region", &counts.regions))
            div {
                h2 { "Status" }
                table.counts data-count="status" {
                    tr { td { a href="/console/fleet?status=active" { "active" } } td.num { (active.max(0)) } }
                    tr { td { a href="/console/fleet?status=quarantined" { "quarantined" } } td.num { (counts.quarantined) } }
                    tr { td { a href="/console/fleet?status=revoked" { "revoked" } } td.num { (counts.revoked) } }
                }
            }
        }
    }
}

/// The search and filter form (a GET form: filters live in the URL, so they can be shared).
fn filters(q: &FleetQuery, counts: &FleetCounts) -> Markup {
    let select = |name: &str, label: &str, current: &str, values: &[(String, i64)]| {
        html! {
            label {
                (label)
                select name=(name) {
                    option value="" { "any" }
                    @for (value, _) in values {
                        option value=(value) selected[value == current] { (value) }
                    }
                    // A value from a link that is no longer among the counts stays chosen.
                    @if !current.is_empty() && !values.iter().any(|(v, _)| v == current) {
                        option value=(current) selected { (current) }
                    }
                }
            }
        }
    };
    html! {
        form.filters method="get" action="/console/fleet" data-autosubmit {
            label { "Device id contains" input type="search" name="q" value=(q.q) maxlength=(MAX_FILTER); }
            (select("version", "Firmware version", &q.version, &counts.versions))
            (select("hardware", "Hardware", &q.hardware, &counts.hardware))
            (select("region", "Region", &q.region, &counts.regions))
            label {
                "Status"
                select name="status" {
                    option value="" { "any" }
                    @for (value, label) in STATUSES {
                        option value=(value) selected[q.status == value] { (label) }
                    }
                }
            }
            button type="submit" { "Filter" }
            a href="/console/fleet" { "Clear" }
        }
    }
}

fn device_table(devices: &[Device], quarantined: &BTreeSet<String>) -> Markup {
    html! {
        @if devices.is_empty() {
            p.note #no-devices { "No device matches these filters." }
        } @else {
            table #devices {
                thead { tr {
                    th { "Device" } th { "Hardware" } th { "Firmware" } th.num { "Security version" }
                    th { "Region" } th { "Status" } th { "Last seen" }
                } }
                tbody {
                    @for d in devices {
                        tr data-device=(d.id) {
                            td { a href={ "/console/devices/" (d.id) } { (d.id) } }
                            td { (d.facts.hardware_id) }
                            td { (d.facts.firmware_version) }
                            td.num { (d.facts.security_version) }
                            td { (d.facts.region) }
                            td { (status_badge(d.revoked, quarantined.contains(&d.id))) }
                            td { (time(d.last_seen)) }
                        }
                    }
                }
            }
        }
    }
}

/// A device's status as a badge.
pub(super) fn status_badge(revoked: bool, quarantined: bool) -> Markup {
    html! {
        @if revoked {
            span.badge.bad { "revoked" }
        } @else if quarantined {
            span.badge.warn { "quarantined" }
        } @else {
            span.badge.good { "active" }
        }
    }
}
