//! `rampart campaign`: create, drive and watch campaigns through the management API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::shared::api_client::{ApiArgs, ApiClient, path_segment};
use crate::shared::table::{cell, print_json};

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign from a JSON spec file (see docs/operator-guide.md), optionally starting it.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// The campaign spec (JSON).
        spec: PathBuf,
        #[arg(long)]
        start: bool,
        /// Print the API's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// List campaigns.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Start, pause, resume, abort a campaign, or approve its current gate.
    #[command(name = "do")]
    Act {
        #[command(flatten)]
        api: ApiArgs,
        /// start, pause, resume, abort or approve.
        action: String,
        id: String,
        /// Print the API's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Show a campaign's progress per wave as bars.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        id: String,
        /// Redraw every two seconds until the campaign ends (or is paused).
        #[arg(long)]
        watch: bool,
    },
    /// Print a campaign's report (JSON or CSV).
    Report {
        #[command(flatten)]
        api: ApiArgs,
        id: String,
        #[arg(long, default_value = "json")]
        format: String,
    },
}

fn client(a: &ApiArgs) -> anyhow::Result<ApiClient> {
    a.client()
}

pub fn run(cmd: CampaignCommand) -> anyhow::Result<()> {
    match cmd {
        CampaignCommand::Create {
            api,
            spec,
            start,
            json: as_json,
        } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let spec: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", spec.display()))?;
            let r = client(&api)?.ok(
                "POST",
                "/api/v1/campaigns",
                Some(json!({"spec": spec, "start": start})),
            )?;
            if as_json {
                print_json(&r)?;
            } else {
                print!("{}", created_text(&spec, &r));
            }
        }
        CampaignCommand::List { api } => {
            let r = client(&api)?.ok("GET", "/api/v1/campaigns", None)?;
            println!(
                "{:<16} {:<18} {:>8} {:>6}  {:<24} name",
                "id", "status", "targets", "waves", "release"
            );
            for c in r["campaigns"].as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:<18} {:>8} {:>6}  {:<24} {}",
                    c["id"].as_str().unwrap_or(""),
                    c["status"].as_str().unwrap_or(""),
                    c["targets"],
                    c["waves"],
                    c["release"].as_str().unwrap_or(""),
                    c["name"].as_str().unwrap_or("")
                );
            }
        }
        CampaignCommand::Act {
            api,
            action,
            id,
            json: as_json,
        } => {
            let r = client(&api)?.ok(
                "POST",
                &format!(
                    "/api/v1/campaigns/{}/{}",
                    path_segment(&id),
                    path_segment(&action)
                ),
                None,
            )?;
            if as_json {
                print_json(&r)?;
            } else {
                print!("{}", action_text(&action, &r));
            }
        }
        CampaignCommand::Status { api, id, watch } => {
            let c = client(&api)?;
            loop {
                let r = c.ok("GET", &format!("/api/v1/campaigns/{id}"), None)?;
                print!("{}", render_status(&r));
                let status = r["status"].as_str().unwrap_or("");
                if !watch || matches!(status, "completed" | "aborted" | "paused" | "draft") {
                    break;
                }
                std::thread::sleep(Duration::from_secs(2));
                println!();
            }
        }
        CampaignCommand::Report { api, id, format } => {
            let (status, text) = client(&api)?.call_text(
                "GET",
                &format!("/api/v1/campaigns/{id}/report?format={format}"),
                None,
            )?;
            anyhow::ensure!((200..300).contains(&status), "{status}: {text}");
            print!("{text}");
        }
    }
    Ok(())
}

/// The wave sizes of a plan (cumulative device counts) as `canary 10, wave 1 90, ...`.
fn waves_text(plan: &Value) -> String {
    let bounds: Vec<u64> = plan
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let mut previous = 0;
    let waves: Vec<String> = bounds
        .iter()
        .enumerate()
        .map(|(i, &bound)| {
            let name = if i == 0 {
                "canary".to_owned()
            } else {
                format!("wave {i}")
            };
            let size = bound.saturating_sub(previous);
            previous = bound;
            format!("{name} {size}")
        })
        .collect();
    waves.join(", ")
}

/// What starting did: the devices targeted and the waves.
fn started_text(started: &Value, plan: &Value) -> String {
    let excluded = match &started["excluded"] {
        Value::Object(reasons) if !reasons.is_empty() => format!(
            " ({} left out: {})",
            reasons.values().filter_map(Value::as_u64).sum::<u64>(),
            reasons
                .iter()
                .map(|(why, n)| format!("{why} {}", cell(n)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(ids) if !ids.is_empty() => format!(" ({} left out)", ids.len()),
        Value::Number(n) if n.as_u64() != Some(0) => format!(" ({n} left out)"),
        _ => String::new(),
    };
    format!(
        "  started: {} of {} selected device(s) targeted{excluded}
  waves: {}
",
        cell(&started["targets"]),
        cell(&started["selected"]),
        waves_text(plan)
    )
}

/// `campaign create`'s answer for people.
pub fn created_text(spec: &Value, r: &Value) -> String {
    let id = cell(&r["id"]);
    let mut out = format!(
        "created campaign {id} \"{}\" for {}: {}\n",
        cell(&spec["name"]),
        cell(&spec["release"]),
        cell(&r["status"])
    );
    if r["started"].is_object() {
        out.push_str(&started_text(&r["started"], &r["plan"]));
        out.push_str(&format!(
            "  follow it with `rampart campaign status {id} --watch`\n"
        ));
    } else {
        out.push_str(&format!(
            "  start it with `rampart campaign do start {id}`\n"
        ));
    }
    out
}

/// `campaign do`'s answer for people: what the action did and where the campaign is now.
pub fn action_text(action: &str, r: &Value) -> String {
    let id = cell(&r["id"]);
    let result = &r["result"];
    let wave = |n: &Value| match n.as_u64() {
        Some(0) => "the canary".to_owned(),
        Some(n) => format!("wave {n}"),
        None => "?".to_owned(),
    };
    let effect = cell(&result["effect"]);
    let mut out = if action == "start" || result.get("targets").is_some() {
        format!("{id}: started, now {}\n", cell(&r["status"]))
    } else if let Some(to) = effect.strip_prefix("Advanced { to: ") {
        format!(
            "{id}: {action}d, wave {} started; now {}\n",
            to.trim_end_matches(" }"),
            cell(&r["status"])
        )
    } else {
        format!(
            "{id}: {} ({}), now {} at {}\n",
            action,
            if effect.is_empty() {
                "done".to_owned()
            } else {
                effect.to_lowercase()
            },
            cell(&r["status"]),
            wave(&result["wave"])
        )
    };
    if result.get("targets").is_some() {
        out.push_str(&started_text(result, &result["plan"]));
    }
    out
}

/// A bar of `width` cells: succeeded (█), failed (▓), in progress (▒), the rest (░).
fn bar(devices: u64, succeeded: u64, failed: u64, in_progress: u64, width: usize) -> String {
    if devices == 0 {
        return "░".repeat(width);
    }
    let cells = |n: u64| ((n as f64 / devices as f64) * width as f64).round() as usize;
    let (s, f) = (cells(succeeded), cells(failed));
    let p = cells(in_progress).min(width.saturating_sub(s + f));
    let rest = width.saturating_sub(s + f + p);
    format!(
        "{}{}{}{}",
        "█".repeat(s),
        "▓".repeat(f.min(width - s)),
        "▒".repeat(p),
        "░".repeat(rest)
    )
}

/// The campaign as text: a header and one progress bar per wave.
pub fn render_status(r: &Value) -> String {
    let mut out = format!(
        "{} \"{}\" — {} — {} (wave: {})\n",
        r["id"].as_str().unwrap_or(""),
        r["name"].as_str().unwrap_or(""),
        r["release"].as_str().unwrap_or(""),
        r["status"].as_str().unwrap_or(""),
        r["wave_name"].as_str().unwrap_or(""),
    );
    if let Some(halt) = r["state"]["halt"].as_object() {
        out.push_str(&format!(
            "  halted by {}: {}\n",
            halt.get("by").and_then(Value::as_str).unwrap_or("?"),
            halt.get("reason").and_then(Value::as_str).unwrap_or("")
        ));
    }
    let waves = r["figures"]["waves"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = r["figures"]["total"].clone();
    for w in waves.iter().chain(std::iter::once(&total)) {
        let n = |k: &str| w[k].as_u64().unwrap_or(0);
        let o = |k: &str| w["outcomes"][k].as_u64().unwrap_or(0);
        let in_progress = o("in_progress") + o("assigned");
        out.push_str(&format!(
            "  {:<8} {} {:>6} devices  {:>6} ok {:>5} failed {:>5} rolled back {:>6} in progress{}\n",
            w["name"].as_str().unwrap_or(""),
            bar(n("devices"), n("succeeded"), n("failed"), in_progress, 30),
            n("devices"),
            n("succeeded"),
            n("failed"),
            n("rolled_back"),
            in_progress,
            if o("held") > 0 {
                format!(", {} held", o("held"))
            } else {
                String::new()
            }
        ));
    }
    if let Some(rb) = r["fleet_rollback"].as_object() {
        out.push_str(&format!(
            "  fleet rollback: {} device(s) told their previous release; by status {}\n",
            rb.get("devices").cloned().unwrap_or_default(),
            rb.get("by_status").cloned().unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_show_shares_and_fill_the_width() {
        assert_eq!(bar(10, 5, 0, 0, 10), "█████░░░░░");
        assert_eq!(bar(10, 5, 2, 3, 10), "█████▓▓▒▒▒");
        assert_eq!(bar(0, 0, 0, 0, 4), "░░░░");
        assert_eq!(bar(3, 3, 0, 0, 10).chars().count(), 10);
    }

    #[test]
    fn create_and_actions_read_as_what_they_did() {
        let spec = json!({"name": "to 2.0.0", "release": "2.0.0/fw.img"});
        let draft = json!({"id": "c-1", "status": "draft", "plan": [], "started": null});
        let text = created_text(&spec, &draft);
        assert_eq!(
            text,
            "created campaign c-1 \"to 2.0.0\" for 2.0.0/fw.img: draft\n  start it with `rampart campaign do start c-1`\n"
        );
        let started = json!({"id": "c-1", "status": "running", "plan": [2, 10, 40],
            "started": {"selected": 42, "targets": 40, "excluded": {"quarantined": 2}, "plan": [2, 10, 40]}});
        let text = created_text(&spec, &started);
        assert!(
            text.contains(
                "started: 40 of 42 selected device(s) targeted (2 left out: quarantined 2)"
            ),
            "{text}"
        );
        assert!(
            text.contains("waves: canary 2, wave 1 8, wave 2 30"),
            "{text}"
        );
        let paused =
            json!({"id": "c-1", "status": "paused", "result": {"effect": "Paused", "wave": 1}});
        assert_eq!(
            action_text("pause", &paused),
            "c-1: pause (paused), now paused at wave 1\n"
        );
        let advanced = json!({"id": "c-1", "status": "running", "result": {"effect": "Advanced { to: 2 }", "wave": 2}});
        assert_eq!(
            action_text("approve", &advanced),
            "c-1: approved, wave 2 started; now running\n"
        );
        let start = json!({"id": "c-1", "status": "running", "result": {"selected": 3, "targets": 3, "excluded": {}, "plan": [1, 3]}});
        assert!(
            action_text("start", &start)
                .starts_with("c-1: started, now running\n  started: 3 of 3")
        );
    }

    #[test]
    fn status_lists_every_wave_and_the_halt() {
        let r = json!({
            "id": "c-1", "name": "fw", "release": "a.bin", "status": "paused", "wave_name": "canary",
            "state": {"halt": {"by": "gate", "reason": "3 of 10 failed"}},
            "figures": {"waves": [{"name": "canary", "devices": 10, "succeeded": 7, "failed": 3, "rolled_back": 3, "outcomes": {}}],
                        "total": {"name": "total", "devices": 100, "succeeded": 7, "failed": 3, "rolled_back": 3, "outcomes": {"waiting": 90}}},
        });
        let text = render_status(&r);
        assert!(text.contains("halted by gate: 3 of 10 failed"), "{text}");
        assert!(text.contains("canary"), "{text}");
        assert!(text.contains("total"), "{text}");
    }
}
