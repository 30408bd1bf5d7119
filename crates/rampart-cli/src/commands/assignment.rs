//! `rampart assignment create|list|show|cancel`: telling devices which release to install,
//! through the management API (`/api/v1/assignments...`). Tables for people, the API's JSON
//! with `--json`.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::shared::api_client::{ApiOutput, path_segment};
use crate::shared::table::{Align, Table, cell, when};

#[derive(Subcommand)]
pub enum AssignmentCommand {
    /// Assign a release to devices chosen by id, group, tag, hardware id and/or region (every
    /// criterion given must match; revoked devices are left out). Operator; audited.
    Create(CreateArgs),
    /// List assignments, newest first.
    List(ApiOutput),
    /// One assignment, with its devices counted by their last report's status.
    Show(IdArgs),
    /// Cancel an assignment: devices still told to install it are told to install nothing.
    Cancel(IdArgs),
}

/// How devices treat an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpdateType {
    /// Installed at once.
    Forced,
    /// Installed when the device's own checks allow.
    Soft,
    /// Downloaded, not installed.
    DownloadOnly,
    /// Soft until --force-after seconds have passed, then forced.
    Timeforced,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The release: its target path in the image repository (e.g. 1.2.0/fw.img).
    target: String,
    /// A device (repeat for more).
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Members of this group.
    #[arg(long)]
    group: Option<String>,
    /// Devices with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Devices of this hardware id.
    #[arg(long)]
    hardware: Option<String>,
    /// Devices in this region.
    #[arg(long)]
    region: Option<String>,
    #[arg(long = "type", value_enum, default_value_t = UpdateType::Forced)]
    update_type: UpdateType,
    /// For --type timeforced: seconds until it is forced (60 to 2592000).
    #[arg(long)]
    force_after: Option<u64>,
    #[command(flatten)]
    out: ApiOutput,
}

#[derive(Args)]
pub struct IdArgs {
    /// The assignment id (asg-...).
    id: String,
    #[command(flatten)]
    out: ApiOutput,
}

pub fn run(cmd: AssignmentCommand) -> anyhow::Result<()> {
    match cmd {
        AssignmentCommand::Create(a) => create(&a),
        AssignmentCommand::List(out) => {
            let v = out.client()?.ok("GET", "/api/v1/assignments", None)?;
            out.print(&v, |v| {
                let list = v["assignments"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    "(no assignments)\n".into()
                } else {
                    assignments_table(&list)
                }
            })
        }
        AssignmentCommand::Show(a) => {
            let v = a
                .out
                .client()?
                .ok("GET", &assignment_path(&a.id, ""), None)?;
            a.out.print(&v, show_text)
        }
        AssignmentCommand::Cancel(a) => {
            let v = a
                .out
                .client()?
                .ok("POST", &assignment_path(&a.id, "/cancel"), None)?;
            a.out.print(&v, |v| {
                format!(
                    "cancelled {}: {} device(s) told to install nothing (those already installing may finish)\n",
                    a.id,
                    cell(&v["devices_cancelled"])
                )
            })
        }
    }
}

fn assignment_path(id: &str, suffix: &str) -> String {
    format!("/api/v1/assignments/{}{suffix}", path_segment(id))
}

fn create(a: &CreateArgs) -> anyhow::Result<()> {
    let mut body = json!({"target": a.target, "type": update_type_name(a.update_type)});
    if !a.devices.is_empty() {
        body["devices"] = json!(a.devices);
    }
    for (key, value) in [
        ("group", &a.group),
        ("tag", &a.tag),
        ("hardware_id", &a.hardware),
        ("region", &a.region),
    ] {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    if let Some(secs) = a.force_after {
        body["force_after_secs"] = json!(secs);
    }
    anyhow::ensure!(
        body.as_object()
            .is_some_and(|o| o.len() > 2 || o.contains_key("devices")),
        "name the devices: give --device, --group, --tag, --hardware and/or --region"
    );
    let v = a
        .out
        .client()?
        .ok("POST", "/api/v1/assignments", Some(body))?;
    a.out.print(&v, |v| {
        format!(
            "assignment {}: {} to {} device(s) ({}); follow it with `rampart assignment show {}`\n",
            cell(&v["id"]),
            cell(&v["target"]),
            cell(&v["device_count"]),
            cell(&v["update_type"]),
            cell(&v["id"])
        )
    })
}

fn update_type_name(t: UpdateType) -> &'static str {
    match t {
        UpdateType::Forced => "forced",
        UpdateType::Soft => "soft",
        UpdateType::DownloadOnly => "download_only",
        UpdateType::Timeforced => "timeforced",
    }
}

/// Assignments as a table.
pub fn assignments_table(list: &[Value]) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("TARGET", Align::Left),
        ("TYPE", Align::Left),
        ("DEVICES", Align::Right),
        ("CREATED", Align::Left),
        ("BY", Align::Left),
    ]);
    for a in list {
        let kind = if a["reimage"] == true {
            format!("{} (re-image)", cell(&a["update_type"]))
        } else {
            cell(&a["update_type"])
        };
        table.row([
            cell(&a["id"]),
            cell(&a["target"]),
            kind,
            cell(&a["device_count"]),
            when(&a["created"]),
            cell(&a["created_by"]),
        ]);
    }
    table.render()
}

fn show_text(v: &Value) -> String {
    let a = &v["assignment"];
    let mut out = format!(
        "assignment {}: {} to {} device(s) ({}), created {} by {}\n  selector {}\n",
        cell(&a["id"]),
        cell(&a["target"]),
        cell(&a["device_count"]),
        cell(&a["update_type"]),
        when(&a["created"]),
        cell(&a["created_by"]),
        a["selector"]
    );
    let by_status = v["devices_by_last_status"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if by_status.is_empty() {
        out.push_str("  no device has reported on it yet\n");
    } else {
        out.push_str("  devices by their last report:\n");
        let mut table = Table::new(&[("STATUS", Align::Left), ("DEVICES", Align::Right)]);
        for (status, n) in &by_status {
            table.row([status.clone(), cell(n)]);
        }
        for line in table.render().lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_read_as_a_table_and_one_with_its_devices_by_status() {
        let a = json!({"id": "asg-1", "target": "1.0.0/fw.img", "update_type": "forced",
                       "device_count": 3, "created": 86_400, "created_by": "token:ab",
                       "selector": {"hardware_id": "board-a"}, "reimage": false});
        assert_eq!(
            assignments_table(std::slice::from_ref(&a)),
            "ID     TARGET        TYPE    DEVICES  CREATED               BY\n\
             asg-1  1.0.0/fw.img  forced        3  1970-01-02T00:00:00Z  token:ab\n"
        );
        let text = show_text(&json!({"assignment": a, "devices_by_last_status": {"installed": 2}}));
        assert!(
            text.contains("selector {\"hardware_id\":\"board-a\"}"),
            "{text}"
        );
        assert!(text.contains("installed        2"), "{text}");
    }
}
