//! `rampart fleet versions`: how many devices run each firmware version, through the
//! management API (`GET /api/v1/fleet/versions`).

use clap::Subcommand;
use serde_json::Value;

use crate::shared::api_client::ApiOutput;
use crate::shared::table::{Align, Table, cell};

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Devices per firmware version, with each version's share of the fleet.
    Versions(ApiOutput),
}

pub fn run(cmd: FleetCommand) -> anyhow::Result<()> {
    match cmd {
        FleetCommand::Versions(out) => {
            let v = out.client()?.ok("GET", "/api/v1/fleet/versions", None)?;
            out.print(&v, versions_table)
        }
    }
}

/// The versions as a table with a total line.
pub fn versions_table(v: &Value) -> String {
    let total = v["devices"].as_u64().unwrap_or(0);
    let mut table = Table::new(&[
        ("VERSION", Align::Left),
        ("DEVICES", Align::Right),
        ("SHARE", Align::Right),
    ]);
    for row in v["versions"].as_array().into_iter().flatten() {
        let n = row["devices"].as_u64().unwrap_or(0);
        let version = cell(&row["firmware_version"]);
        table.row([
            if version.is_empty() {
                "(unknown)".into()
            } else {
                version
            },
            n.to_string(),
            if total == 0 {
                "-".into()
            } else {
                format!("{:.1}%", n as f64 * 100.0 / total as f64)
            },
        ]);
    }
    let mut text = table.render();
    text.push_str(&format!("{total} device(s)\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_show_counts_and_shares() {
        let v = json!({"devices": 4, "versions": [{"firmware_version": "1.0.0", "devices": 3},
                                                  {"firmware_version": "", "devices": 1}]});
        assert_eq!(
            versions_table(&v),
            "VERSION    DEVICES  SHARE\n1.0.0            3  75.0%\n(unknown)        1  25.0%\n4 device(s)\n"
        );
    }
}
