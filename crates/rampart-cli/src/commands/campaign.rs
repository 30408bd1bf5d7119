//! `rampart campaign`: create, drive and watch campaigns through the management API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::shared::api_client::{ApiArgs, ApiClient};

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
        CampaignCommand::Create { api, spec, start } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let spec: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", spec.display()))?;
            let r = client(&api)?.ok(
                "POST",
                "/api/v1/campaigns",
                Some(json!({"spec": spec, "start": start})),
            )?;
            println!("{}", serde_json::to_string_pretty(&r)?);
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
        CampaignCommand::Act { api, action, id } => {
            let r = client(&api)?.ok("POST", &format!("/api/v1/campaigns/{id}/{action}"), None)?;
            println!("{id}: {}", r["status"].as_str().unwrap_or("?"));
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
