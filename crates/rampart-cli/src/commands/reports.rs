//! `rampart reports --device ID ...`: devices' reports through the management API
//! (`GET /api/v1/reports`), newest first. A table for people, the API's JSON with `--json`.

use clap::Args;
use serde_json::{Value, json};

use super::device_inventory::reports_table;
use crate::shared::api_client::{ApiOutput, path_segment};

#[derive(Args)]
pub struct ReportsArgs {
    /// A device whose reports to show (repeat for more; the reports are merged, newest first).
    #[arg(long = "device", required = true)]
    devices: Vec<String>,
    /// At most this many per device (1-1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    #[command(flatten)]
    out: ApiOutput,
}

pub fn run(a: &ReportsArgs) -> anyhow::Result<()> {
    let client = a.out.client()?;
    let mut reports: Vec<Value> = Vec::new();
    for device in &a.devices {
        let v = client.ok(
            "GET",
            &format!(
                "/api/v1/reports?device={}&limit={}",
                path_segment(device),
                a.limit
            ),
            None,
        )?;
        reports.extend(v["reports"].as_array().cloned().unwrap_or_default());
    }
    // Newest first across devices; the same second keeps each device's own order.
    reports.sort_by_key(|r| std::cmp::Reverse(r["created"].as_i64().unwrap_or(0)));
    let answer = json!({"reports": reports});
    a.out.print(&answer, |v| {
        let reports = v["reports"].as_array().cloned().unwrap_or_default();
        if reports.is_empty() {
            format!("(no reports from {})\n", a.devices.join(", "))
        } else {
            let mut text = reports_table(&reports, a.devices.len() > 1);
            if a.devices.len() == 1 {
                text.insert_str(0, &format!("reports of {}:\n", a.devices[0]));
            }
            text
        }
    })
}
