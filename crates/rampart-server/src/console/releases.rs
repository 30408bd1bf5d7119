//! `GET /console/releases` (the hosted repository's releases) and `GET /console/release?target=`
//! (one release: its SBOM's components, paged; its provenance; its transparency-log entry; and
//! where it is deployed), read by the management API's code (`operator::releases`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use rampart_vuln::component::Component;
use rampart_vuln::provenance::ProvenanceSummary;
use serde::Deserialize;

use super::Console;
use super::access::page_query;
use super::layout::{Section, document, error_page, html_response, query};
use super::session::Session;
use crate::listen::http::ApiError;
use crate::operator::releases::{Deployment, LogEntry, ReleaseView, release_catalog, release_view};

/// SBOM components per page.
const COMPONENTS_PAGE: usize = 50;
/// Longest target name looked up (TUF target paths are far shorter).
const MAX_TARGET: usize = 1024;

pub(super) async fn list(State(console): State<Arc<Console>>, session: Session) -> Response {
    let catalog = match release_catalog(&console.api).await {
        Ok(catalog) => catalog,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let mut releases = catalog.releases;
    releases.sort_by(|a, b| a.target.cmp(&b.target));
    let content = html! {
        p { "The image repository's verified releases (timestamp version " (catalog.timestamp_version) "); documents (SBOMs, provenance, tlog-proofs) are listed with the release they describe." }
        table #releases {
            thead { tr {
                th { "Target" } th { "Version" } th { "Hardware" } th.num { "Security version" }
                th.num { "Bytes" } th { "Documents" }
            } }
            tbody {
                @for r in releases.iter().filter(|r| r.release.is_some()) {
                    @if let Some(info) = &r.release {
                        tr data-release=(r.target) {
                            td { a href={ "/console/release" (query(&[("target", &r.target)])) } { (r.target) } }
                            td { (info.version) }
                            td { (info.hardware_ids.join(", ")) }
                            td.num { (info.security_version) }
                            td.num { (r.length) }
                            td {
                                @if info.sbom.is_some() { span.badge { "SBOM" } " " }
                                @if info.provenance.is_some() { span.badge { "provenance" } " " }
                                @if info.tlog_proof.is_some() { span.badge { "log proof" } }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        document("Releases", Section::Releases, Some(&session), content),
    )
}

#[derive(Deserialize)]
pub(super) struct ReleaseQuery {
    #[serde(default)]
    target: String,
    #[serde(default)]
    offset: Option<usize>,
}

pub(super) async fn detail(
    State(console): State<Arc<Console>>,
    session: Session,
    q: Result<Query<ReleaseQuery>, QueryRejection>,
) -> Response {
    let q = match page_query(q) {
        Ok(q) => q,
        Err(e) => return error_page(&e, Some(&session)),
    };
    if q.target.is_empty() || q.target.len() > MAX_TARGET {
        let e = ApiError::invalid(format!(
            "give the release's target name (?target=, 1 to {MAX_TARGET} bytes); pick one on the releases page"
        ));
        return error_page(&e, Some(&session));
    }
    let view = match release_view(&console.api, &q.target).await {
        Ok(view) => view,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let title = format!("Release {}", view.release.target);
    html_response(
        StatusCode::OK,
        document(
            &title,
            Section::Releases,
            Some(&session),
            content(&view, q.offset.unwrap_or(0)),
        ),
    )
}

fn content(view: &ReleaseView, offset: usize) -> Markup {
    let r = &view.release;
    html! {
        div.cards {
            section #summary {
                h2 { "Release" }
                dl.facts {
                    dt { "Target" } dd { (r.target) }
                    dt { "SHA-256" } dd { code { (r.sha256) } }
                    dt { "Bytes" } dd { (r.length) }
                    @if let Some(info) = &r.release {
                        dt { "Version" } dd #version { (info.version) }
                        dt { "Hardware" } dd { (info.hardware_ids.join(", ")) }
                        dt { "Security version" } dd { (info.security_version) }
                    } @else {
                        dt { "Kind" } dd { span.note { "a document, not firmware" } }
                    }
                }
            }
            section #deployment {
                h2 { "Deployed" }
                (deployment(&view.deployment, r.release.as_ref().map(|i| i.version.as_str())))
            }
        }
        div.cards {
            section #provenance {
                h2 { "Provenance" }
                (provenance(view.provenance.as_ref()))
            }
            section #log-entry {
                h2 { "Transparency log" }
                (log_entry(view.log_entry.as_ref()))
            }
        }
        h2 { "SBOM" }
        (sbom(view.components.as_ref(), &r.target, offset))
    }
}

fn deployment(deployment: &Result<Deployment, String>, version: Option<&str>) -> Markup {
    html! {
        @match deployment {
            Err(problem) => p.error { "Where it runs cannot be read: " (problem) },
            Ok(d) => {
                @let hardware: BTreeSet<&String> = d.running.keys().chain(d.inactive.keys()).collect();
                @let total = |m: &BTreeMap<String, usize>| m.values().sum::<usize>();
                p {
                    strong data-field="running" { (total(&d.running)) } " devices run it (active slot); "
                    strong data-field="inactive" { (total(&d.inactive)) } " hold it in their inactive slot (what a rollback boots)."
                }
                @if !hardware.is_empty() {
                    table #deployed {
                        thead { tr { th { "Hardware" } th.num { "Active slot" } th.num { "Inactive slot" } } }
                        tbody { @for hw in hardware {
                            tr { td { (hw) } td.num { (d.running.get(hw).copied().unwrap_or(0)) } td.num { (d.inactive.get(hw).copied().unwrap_or(0)) } }
                        } }
                    }
                }
                @if let Some(version) = version {
                    p { a #fleet-link href={ "/console/fleet" (query(&[("version", version)])) } { "The devices running version " (version) } }
                }
            }
        }
    }
}

fn provenance(summary: Option<&Result<ProvenanceSummary, String>>) -> Markup {
    html! {
        @match summary {
            None => p.note { "The release carries no provenance." },
            Some(Err(problem)) => p.error { (problem) },
            Some(Ok(p)) => {
                dl.facts {
                    dt { "Form" } dd { (if p.form == "statement" { "a bare in-toto statement (unsigned)" } else { "signed DSSE envelopes" }) }
                    dt { "Subject check" } dd {
                        @if p.names_image { span.badge.good data-field="names-image" { "names this image" } }
                        @else { span.badge.bad data-field="names-image" { "does not name this image" } }
                    }
                    dt { "Policy" } dd { span.note { "signatures and builders were checked against the provenance policy by " code { "rampart release add --provenance-policy" } " when the release was added, if one was given" } }
                }
                table #statements {
                    thead { tr { th { "Predicate" } th { "Builder" } th.num { "Signatures" } th { "Subjects (SHA-256)" } } }
                    tbody { @for s in &p.statements {
                        tr {
                            td { (s.predicate_type) }
                            td { (s.builder.as_deref().unwrap_or("")) }
                            td.num { (s.signatures) }
                            td { @for (name, digest) in &s.subjects { div { (name) " " code { (digest) } } } }
                        }
                    } }
                }
            }
        }
    }
}

fn log_entry(entry: Option<&Result<LogEntry, String>>) -> Markup {
    html! {
        @match entry {
            None => p.note { "The release carries no transparency-log proof." },
            Some(Err(problem)) => p.error { (problem) },
            Some(Ok(e)) => dl.facts {
                dt { "Log" } dd { (e.origin) }
                dt { "Entry" } dd data-field="log-index" { (e.index) }
                dt { "Checkpoint" } dd { "tree size " (e.tree_size) ", root " code { (e.root_hex) } }
                dt { "Inclusion proof" } dd { (e.proof_hashes) " hashes" }
                dt { "Signed by" } dd { (e.signers.join(", ")) }
                dt { "Checked" } dd { span.note { "devices verify the proof against the log's key and witness policy before installing" } }
            },
        }
    }
}

fn sbom(
    components: Option<&Result<Vec<Component>, String>>,
    target: &str,
    offset: usize,
) -> Markup {
    html! {
        @match components {
            None => p.note { "The release carries no SBOM." },
            Some(Err(problem)) => p.error { (problem) },
            Some(Ok(components)) => {
                p { (components.len()) " components" }
                table #components {
                    thead { tr { th { "Name" } th { "Version" } th { "Package URL" } th { "CPE" } } }
                    tbody { @for c in components.iter().skip(offset).take(COMPONENTS_PAGE) {
                        tr { td { (c.name) } td { (c.version) } td { (c.purl.as_deref().unwrap_or("")) } td { (c.cpe.as_deref().unwrap_or("")) } }
                    } }
                }
                div.pager {
                    @if offset > 0 {
                        a href={ "/console/release" (query(&[("target", target)])) } { "First page" }
                    }
                    @let next = offset.saturating_add(COMPONENTS_PAGE);
                    @if next < components.len() {
                        a href={ "/console/release" (query(&[("target", target), ("offset", &next.to_string())])) } rel="next" { "Next page" }
                    }
                }
            }
        }
    }
}
