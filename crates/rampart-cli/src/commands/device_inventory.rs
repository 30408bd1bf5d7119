//! `rampart device list|show|revoke|reinstate`: the server's device inventory through the
//! management API (`/api/v1/devices...`). Tables for people, the API's JSON with `--json`.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::shared::api_client::{ApiOutput, path_segment};
use crate::shared::now_unix;
use crate::shared::table::{Align, Table, ago, cell, cell_or_dash, when};

#[derive(Subcommand)]
pub enum InventoryCommand {
    /// List devices in the inventory, by id, filtered (every filter given must match).
    List(ListArgs),
    /// One device: what it runs and reports, its slots, assignment, update status, last
    /// reports and attestation.
    Show(IdArgs),
    /// Revoke a device: the device API refuses it from now on (operator; audited).
    Revoke(RevokeArgs),
    /// Reinstate a revoked device (admin; audited).
    Reinstate(IdArgs),
}

/// Whether devices are revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceStatus {
    /// Not revoked.
    Active,
    Revoked,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only devices of this hardware id.
    #[arg(long)]
    hardware: Option<String>,
    /// Only devices in this region.
    #[arg(long)]
    region: Option<String>,
    /// Only devices running this firmware version.
    #[arg(long)]
    version: Option<String>,
    /// Only active or only revoked devices.
    #[arg(long, value_enum)]
    status: Option<DeviceStatus>,
    /// Only devices with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Only members of this group.
    #[arg(long)]
    group: Option<String>,
    /// At most this many (1-1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// Skip this many (for the next page).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    #[command(flatten)]
    out: ApiOutput,
}

#[derive(Args)]
pub struct IdArgs {
    /// The device id.
    id: String,
    #[command(flatten)]
    out: ApiOutput,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The device id.
    id: String,
    /// Why (kept in the audit log).
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    out: ApiOutput,
}

pub fn run(cmd: InventoryCommand) -> anyhow::Result<()> {
    match cmd {
        InventoryCommand::List(a) => list(&a),
        InventoryCommand::Show(a) => {
            let v = a.out.client()?.ok("GET", &device_path(&a.id, ""), None)?;
            a.out.print(&v, |v| show_text(v, now_unix()))
        }
        InventoryCommand::Revoke(a) => {
            let v = a.out.client()?.ok(
                "POST",
                &device_path(&a.id, "/revoke"),
                Some(json!({"reason": a.reason})),
            )?;
            a.out.print(&v, |_| {
                format!(
                    "revoked {}: the device API refuses it from now on (undo with `rampart device reinstate {}`, admin)\n",
                    a.id, a.id
                )
            })
        }
        InventoryCommand::Reinstate(a) => {
            let v = a
                .out
                .client()?
                .ok("POST", &device_path(&a.id, "/reinstate"), None)?;
            a.out.print(&v, |_| {
                format!("reinstated {}: the device API answers it again\n", a.id)
            })
        }
    }
}

fn device_path(id: &str, suffix: &str) -> String {
    format!("/api/v1/devices/{}{suffix}", path_segment(id))
}

fn list(a: &ListArgs) -> anyhow::Result<()> {
    let mut query = vec![format!("limit={}", a.limit), format!("offset={}", a.offset)];
    let status = a.status.map(|s| match s {
        DeviceStatus::Active => "active".to_owned(),
        DeviceStatus::Revoked => "revoked".to_owned(),
    });
    for (key, value) in [
        ("hardware_id", &a.hardware),
        ("region", &a.region),
        ("firmware_version", &a.version),
        ("status", &status),
        ("tag", &a.tag),
        ("group", &a.group),
    ] {
        if let Some(v) = value {
            query.push(format!("{key}={}", path_segment(v)));
        }
    }
    let v = a
        .out
        .client()?
        .ok("GET", &format!("/api/v1/devices?{}", query.join("&")), None)?;
    a.out.print(&v, |v| {
        let devices = v["devices"].as_array().cloned().unwrap_or_default();
        let mut text = devices_table(&devices, now_unix());
        if devices.is_empty() {
            text.push_str("(no device matches)\n");
        } else if devices.len() == usize::from(a.limit) {
            text.push_str(&format!(
                "(more may follow: --offset {})\n",
                a.offset + u64::from(a.limit)
            ));
        }
        text
    })
}

/// The devices as a table, their last contact relative to `now`.
pub fn devices_table(devices: &[Value], now: i64) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("HARDWARE", Align::Left),
        ("VERSION", Align::Left),
        ("SECVER", Align::Right),
        ("REGION", Align::Left),
        ("STATUS", Align::Left),
        ("LAST SEEN", Align::Right),
    ]);
    for d in devices {
        table.row([
            cell(&d["id"]),
            cell_or_dash(&d["hardware_id"]),
            cell_or_dash(&d["firmware_version"]),
            cell(&d["security_version"]),
            cell_or_dash(&d["region"]),
            revoked_word(&d["revoked"]).into(),
            ago(&d["last_seen"], now),
        ]);
    }
    table.render()
}

fn revoked_word(revoked: &Value) -> &'static str {
    if revoked == true { "revoked" } else { "active" }
}

/// `key: value` pairs of a JSON object, comma-separated; `-` when empty.
fn pairs(v: &Value) -> String {
    let text: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {}", cell(v)))
        .collect();
    if text.is_empty() {
        "-".into()
    } else {
        text.join(", ")
    }
}

/// `GET /api/v1/devices/{id}` for people, times relative to `now`.
pub fn show_text(v: &Value, now: i64) -> String {
    let d = &v["device"];
    let mut out = format!(
        "device {} ({})\n",
        cell(&d["id"]),
        revoked_word(&d["revoked"])
    );
    let mut line = |label: &str, text: String| out.push_str(&format!("  {label:<12} {text}\n"));
    line(
        "hardware",
        format!(
            "{}   region {}",
            cell_or_dash(&d["hardware_id"]),
            cell_or_dash(&d["region"])
        ),
    );
    line(
        "firmware",
        format!(
            "{} (security version {})",
            cell_or_dash(&d["firmware_version"]),
            cell(&d["security_version"])
        ),
    );
    line("slots", pairs(&d["slots"]));
    if d["slot_versions"].is_object() {
        line("slot versions", pairs(&d["slot_versions"]));
    }
    let tags: Vec<String> = d["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(cell)
        .collect();
    line(
        "tags",
        if tags.is_empty() {
            "-".into()
        } else {
            tags.join(", ")
        },
    );
    line("attributes", pairs(&d["attributes"]));
    line(
        "seen",
        format!(
            "first {}, last {} ({})",
            when(&d["first_seen"]),
            when(&d["last_seen"]),
            ago(&d["last_seen"], now)
        ),
    );
    let enrolment = &v["enrolment"];
    if enrolment.is_object() {
        line(
            "enrolled",
            format!(
                "by {}{}",
                cell_or_dash(&enrolment["by"]),
                match cell(&enrolment["tenant"]) {
                    t if t.is_empty() => String::new(),
                    t => format!(" (tenant {t})"),
                }
            ),
        );
    }
    let a = &v["assignment"];
    line(
        "update",
        if a.is_object() && !cell(&a["target"]).is_empty() {
            format!(
                "{} — {} from assignment {} ({}{})",
                cell(&v["update_status"]),
                cell(&a["target"]),
                cell(&a["assignment_id"]),
                cell(&a["update_type"]),
                if a["reimage"] == true {
                    ", re-image"
                } else {
                    ""
                }
            )
        } else {
            format!("{} — nothing assigned", cell(&v["update_status"]))
        },
    );
    let att = &v["attestation"];
    line(
        "attestation",
        if att.is_object() {
            match cell(&att["outcome"]).as_str() {
                "attested" => format!(
                    "attested (release {}, fresh until {})",
                    cell_or_dash(&att["release"]),
                    when(&att["fresh_until"])
                ),
                outcome => format!(
                    "{outcome}: {}{}",
                    cell_or_dash(&att["reason"]),
                    if att["enrolled"] == true {
                        ""
                    } else {
                        " (no attestation key enrolled)"
                    }
                ),
            }
        } else {
            "- (the server does not attest devices)".into()
        },
    );
    let reports = v["recent_reports"].as_array().cloned().unwrap_or_default();
    match reports.first() {
        None => out.push_str("no reports yet\n"),
        Some(last) => {
            out.push_str(&format!(
                "last report: {} {} ({})\n",
                cell(&last["status"]),
                when(&last["created"]),
                ago(&last["created"], now)
            ));
            out.push_str(&format!("recent reports ({}):\n", reports.len()));
            out.push_str(&indent(&reports_table(&reports, false)));
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Reports as a table, newest first as the API gives them; with the device column when they
/// come from several devices.
pub fn reports_table(reports: &[Value], with_device: bool) -> String {
    let mut columns = vec![("TIME", Align::Left)];
    if with_device {
        columns.push(("DEVICE", Align::Left));
    }
    columns.extend([
        ("STATUS", Align::Left),
        ("PROGRESS", Align::Right),
        ("ASSIGNMENT", Align::Left),
        ("REASON", Align::Left),
    ]);
    let mut table = Table::new(&columns);
    for r in reports {
        let mut row = vec![when(&r["created"])];
        if with_device {
            row.push(cell(&r["device_id"]));
        }
        row.extend([
            cell(&r["status"]),
            cell(&r["progress"]),
            cell_or_dash(&r["assignment"]),
            // Failures carry a reason code (and rollbacks their cause) in their details.
            cell_or_dash(&r["details"]["reason"]),
        ]);
        table.row(row);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_reads_as_its_facts_update_and_reports() {
        let v = json!({
            "device": {"id": "dev-1", "hardware_id": "board-a", "firmware_version": "1.0.0",
                       "security_version": 2, "region": "eu", "slots": {"a": "good", "b": "inactive"},
                       "tags": ["canary"], "attributes": {}, "first_seen": 100, "last_seen": 1_000,
                       "revoked": false},
            "enrolment": {"by": "certificate", "tenant": ""},
            "assignment": {"assignment_id": "asg-1", "target": "1.0.0/fw.img", "update_type": "forced", "reimage": false},
            "update_status": "up_to_date",
            "recent_reports": [{"id": "r2", "device_id": "dev-1", "assignment": "asg-1", "status": "installed",
                                "progress": 100, "details": {}, "created": 990},
                               {"id": "r1", "device_id": "dev-1", "assignment": "asg-1", "status": "failed",
                                "progress": 0, "details": {"reason": "hash_mismatch"}, "created": 900}],
        });
        let text = show_text(&v, 1_060);
        assert!(text.starts_with("device dev-1 (active)\n"), "{text}");
        assert!(
            text.contains("firmware     1.0.0 (security version 2)"),
            "{text}"
        );
        assert!(text.contains("slots        a: good, b: inactive"), "{text}");
        assert!(
            text.contains("up_to_date — 1.0.0/fw.img from assignment asg-1 (forced)"),
            "{text}"
        );
        assert!(text.contains("(1m0s ago)"), "{text}");
        assert!(text.contains("the server does not attest"), "{text}");
        assert!(text.contains("last report: installed"), "{text}");
        assert!(text.contains("hash_mismatch"), "{text}");
        let table = devices_table(&[v["device"].clone()], 1_060);
        assert_eq!(
            table,
            "ID     HARDWARE  VERSION  SECVER  REGION  STATUS  LAST SEEN\n\
             dev-1  board-a   1.0.0         2  eu      active   1m0s ago\n"
        );
    }
}
