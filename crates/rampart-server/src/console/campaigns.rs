//! `GET /console/campaigns` and `/console/campaigns/{id}` (progress per wave, gate, halt and
//! breach, the actions the campaign's state allows), and `POST /console/campaigns/{id}/{action}`,
//! which goes through the management API's own action code (`operator::campaigns::act`): a
//! role that may not act is refused there, whatever the page showed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rampart_rollout::report::WaveFigures;
use rampart_rollout::{Action, Figures, Plan, allowed_actions};

use super::Console;
use super::layout::{Section, document, error_page, html_response, time};
use super::session::{CsrfOnly, Session};
use crate::engines::campaigns::Loaded;
use crate::listen::http::ApiError;
use crate::operator::Permission;
use crate::operator::campaigns::{act, figures_of, loaded};

/// Campaigns listed, newest first.
const LISTED: i64 = 200;

pub(super) async fn list(State(console): State<Arc<Console>>, session: Session) -> Response {
    let rows = match console.api.db.list_campaigns(LISTED).await {
        Ok(rows) => rows,
        Err(e) => {
            return error_page(&ApiError::from_db("listing campaigns", e), Some(&session));
        }
    };
    let content = html! {
        @if rows.is_empty() {
            p.note { "No campaigns yet. Create one with " code { "rampart campaign create" } "." }
        } @else {
            table #campaigns {
                thead { tr {
                    th { "Campaign" } th { "Release" } th { "Status" } th.num { "Waves" }
                    th.num { "Targets" } th { "Created" } th { "By" }
                } }
                tbody {
                    @for c in &rows {
                        tr data-campaign=(c.id) {
                            td { a href={ "/console/campaigns/" (c.id) } { (c.name) } }
                            td { (c.release_target) }
                            td { (status_badge(&c.status)) }
                            td.num { (c.plan.len()) }
                            td.num { (c.plan.last().copied().unwrap_or(0)) }
                            td { (time(c.created)) }
                            td { (c.created_by) }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        document("Campaigns", Section::Campaigns, Some(&session), content),
    )
}

pub(super) async fn detail(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let read = async {
        let c = loaded(&console.api, &id).await?;
        let (figures, _) = figures_of(&console.api, &c).await?;
        Ok::<_, ApiError>((c, figures))
    };
    let (c, figures) = match read.await {
        Ok(read) => read,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let title = format!("Campaign {}", c.row.name);
    html_response(
        StatusCode::OK,
        document(
            &title,
            Section::Campaigns,
            Some(&session),
            campaign(&c, figures.as_ref(), &session),
        ),
    )
}

/// `POST /console/campaigns/{id}/{action}`: the action, then back to the campaign's page.
pub(super) async fn action(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Body,
) -> Response {
    let (session, _) = match console.form_session::<CsrfOnly>(&headers, body).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    match act(&console.api, session.caller(), &id, &action).await {
        Ok(_) => Redirect::to(&format!("/console/campaigns/{id}")).into_response(),
        Err(e) => error_page(&e, Some(&session)),
    }
}

fn status_badge(status: &str) -> Markup {
    let class = match status {
        "running" | "completed" => "good",
        "paused" | "awaiting_approval" => "warn",
        "aborted" => "bad",
        _ => "",
    };
    html! { span.badge.(class) data-status=(status) { (status) } }
}

fn campaign(c: &Loaded, figures: Option<&Figures>, session: &Session) -> Markup {
    let state = &c.state;
    let gate = &c.spec.gate;
    html! {
        div.cards {
            section #summary {
                h2 { "Status" }
                dl.facts {
                    dt { "Status" } dd { (status_badge(state.status.as_str())) }
                    dt { "Release" } dd { (c.row.release_target) }
                    dt { "Current wave" } dd { (Plan::wave_name(state.wave)) }
                    dt { "Created" } dd { (time(c.row.created)) " by " (c.row.created_by) }
                    dt { "Started" } dd { (state.started.map(time).unwrap_or_else(|| "not yet".into())) }
                    @if let Some(finished) = state.finished { dt { "Finished" } dd { (time(finished)) } }
                }
            }
            section #gate {
                h2 { "Gate" }
                dl.facts {
                    dt { "Successes needed" } dd { (gate.min_success_pct) "% of results" }
                    dt { "Failures allowed" } dd { "up to " (gate.max_failure_pct) "%" }
                    dt { "Results needed" } dd { (gate.min_results) }
                    dt { "Observation" } dd { (gate.min_observation_secs) " s" }
                    dt { "Approval" } dd { (if gate.require_approval { "an operator approves each wave" } else { "automatic" }) }
                }
            }
            @if let Some(halt) = &state.halt {
                section #halt {
                    h2 { "Halted" }
                    dl.facts {
                        dt { "When" } dd { (time(halt.at)) }
                        dt { "By" } dd { (halt.by) }
                        dt { "Why" } dd { (halt.reason) }
                        @if let Some(breach) = &halt.breach {
                            dt { "Breach" } dd { (format!("{breach:?}")) }
                        }
                    }
                }
            }
        }
        h2 { "Actions" }
        (actions(c, session))
        h2 { "Waves" }
        // The page's script follows the campaign's progress while it can still change.
        div #live
            data-live=[(!state.status.is_terminal()).then(|| format!("/console/campaigns/{}/live", c.row.id))]
            data-initial-status=(state.status.as_str()) {}
        @match figures {
            None => p.note { "The campaign has not started: its waves are planned when it starts." },
            Some(figures) => {
                (waves(figures, state.wave))
                @if !figures.time_to.is_empty() {
                    h2 { "Time to reach" }
                    table #time-to {
                        thead { tr { @for t in &figures.time_to { th.num { (t.percent) "% of targets" } } } }
                        tbody { tr { @for t in &figures.time_to {
                            td.num { (t.seconds.map(|s| format!("{s} s")).unwrap_or_else(|| "not yet".into())) }
                        } } }
                    }
                }
            }
        }
    }
}

/// The buttons of the actions the campaign's state allows, for roles that may act; a note
/// for the others.
fn actions(c: &Loaded, session: &Session) -> Markup {
    let allowed = allowed_actions(&c.state);
    html! {
        @if !session.may(Permission::Operate) {
            p.note #no-actions { "Your role (" (session.role().as_str()) ") may look at campaigns but not change them." }
        } @else if allowed.is_empty() {
            p.note #no-actions { "The campaign has ended; nothing more can be done with it." }
        } @else {
            div.actions #campaign-actions {
                @for action in allowed {
                    form method="post" action={ "/console/campaigns/" (c.row.id) "/" (action.as_str()) }
                        data-confirm=[(action == Action::Abort).then_some("Abort this campaign? It cannot be resumed.")] {
                        input type="hidden" name="csrf" value=(session.csrf());
                        button type="submit" name="action" value=(action.as_str())
                            class=[(action == Action::Abort).then_some("danger")] { (label(action)) }
                    }
                }
            }
        }
    }
}

fn label(action: Action) -> &'static str {
    match action {
        Action::Start => "Start",
        Action::Pause => "Pause",
        Action::Resume => "Resume",
        Action::Approve => "Approve next wave",
        Action::Abort => "Abort",
    }
}

fn waves(figures: &Figures, current: usize) -> Markup {
    let row = |w: &WaveFigures, key: String, current: bool| {
        let done = w.succeeded + w.failed;
        // Not yet assigned, or assigned and not reported yet.
        let pending = w.devices.saturating_sub(done);
        html! {
            tr.current[current] data-wave=(key) {
                td { (w.name) @if current { " " span.badge { "current" } } }
                td.num data-field="devices" { (w.devices) }
                td { progress data-field="progress" max=(w.devices.max(1)) value=(done) { (done) " of " (w.devices) } }
                td.num data-field="succeeded" { (w.succeeded) }
                td.num data-field="failed" { (w.failed) }
                td.num data-field="rolled_back" { (w.rolled_back) }
                td.num data-field="pending" { (pending) }
                td.num data-field="success_rate" { (w.success_rate.map(|r| format!("{r:.1}%")).unwrap_or_default()) }
            }
        }
    };
    html! {
        table #waves {
            thead { tr {
                th { "Wave" } th.num { "Devices" } th { "Progress" } th.num { "Succeeded" }
                th.num { "Failed" } th.num { "Rolled back" } th.num { "Pending" } th.num { "Success rate" }
            } }
            tbody {
                @for (i, w) in figures.waves.iter().enumerate() { (row(w, i.to_string(), i == current)) }
                (row(&figures.total, "total".into(), false))
            }
        }
    }
}
