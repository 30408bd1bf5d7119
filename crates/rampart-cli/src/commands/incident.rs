//! `rampart incident ...`: incidents through the management API: list and show them (with
//! their devices, timeline, actions and timings), open one, acknowledge, contain, re-image,
//! collect evidence, move and close; approve or reject held actions; read and store the
//! playbooks. Tables by default, the API's JSON with `--json`.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};

use crate::shared::api_client::{ApiClient, ApiOutput as Output, path_segment};

/// Largest playbooks file read.
const MAX_PLAYBOOKS_FILE: u64 = 64 * 1024;

#[derive(clap::Subcommand)]
pub enum IncidentCommand {
    /// Chain of custody: `export ID --out FILE` and `verify-export FILE --ca CA.pem ...`
    /// (commands/incident_export.rs).
    #[command(flatten)]
    Custody(super::incident_export::IncidentExportCommand),
    /// List incidents, newest first, with their timings.
    List(ListArgs),
    /// One incident: devices, timeline, actions and timings.
    Show(IdArgs),
    /// Open an incident (its devices get the operator playbook's actions).
    Open(OpenArgs),
    /// Acknowledge an incident (the first acknowledgement is kept).
    Ack(IdArgs),
    /// Quarantine every device of the incident.
    Contain(IdArgs),
    /// Re-image every device of the incident onto a known-good release (both slots).
    Reimage(ReimageArgs),
    /// Collect a forensic evidence bundle from every device of the incident.
    Collect(IdArgs),
    /// Move an incident forward (contained, eradicated, recovered, closed).
    State(StateArgs),
    /// Close an incident (its cause may open a new one from now on).
    Close(NoteArgs),
    /// Approve an action a playbook held for approval.
    Approve(IdArgs),
    /// Reject an action a playbook held for approval.
    Reject(IdArgs),
    /// Show the playbooks in force, or store new ones (`--set FILE`, admin).
    Playbooks(PlaybooksArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only incidents in this state (detected, contained, eradicated, recovered, closed).
    #[arg(long)]
    state: Option<String>,
    /// Only this severity (low, medium, high, critical).
    #[arg(long)]
    severity: Option<String>,
    /// Only incidents this detector opened (e.g. attestation_failed, operator).
    #[arg(long)]
    detector: Option<String>,
    /// Only incidents this device is in.
    #[arg(long)]
    device: Option<String>,
    /// At most this many (1-500).
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[command(flatten)]
    out: Output,
}

#[derive(clap::Args)]
pub struct IdArgs {
    /// The incident's id (inc-…), or for approve/reject the action's (act-…).
    id: String,
    #[command(flatten)]
    out: Output,
}

#[derive(clap::Args)]
pub struct OpenArgs {
    /// low, medium, high or critical.
    #[arg(long)]
    severity: String,
    /// One line saying what happened.
    #[arg(long)]
    title: String,
    /// A device in the incident (repeat for more).
    #[arg(long = "device")]
    devices: Vec<String>,
    /// The release involved.
    #[arg(long)]
    release: Option<String>,
    #[command(flatten)]
    out: Output,
}

#[derive(clap::Args)]
pub struct ReimageArgs {
    id: String,
    /// The known-good release (a firmware target of the image repository); without it each
    /// device's last attested-good release.
    #[arg(long)]
    release: Option<String>,
    #[command(flatten)]
    out: Output,
}

#[derive(clap::Args)]
pub struct StateArgs {
    id: String,
    /// contained, eradicated, recovered or closed.
    state: String,
    /// Why (kept on the timeline).
    #[arg(long, default_value = "")]
    note: String,
    #[command(flatten)]
    out: Output,
}

#[derive(clap::Args)]
pub struct NoteArgs {
    id: String,
    /// Why (kept on the timeline).
    #[arg(long, default_value = "")]
    note: String,
    #[command(flatten)]
    out: Output,
}

#[derive(clap::Args)]
pub struct PlaybooksArgs {
    /// Store the playbooks of this file (TOML as in --incident-config's [playbooks] tables,
    /// or the JSON GET /api/v1/playbooks answers); detectors it does not name keep the
    /// built-in ones.
    #[arg(long, value_name = "FILE")]
    set: Option<PathBuf>,
    #[command(flatten)]
    out: Output,
}

pub fn run(cmd: IncidentCommand) -> anyhow::Result<()> {
    match cmd {
        IncidentCommand::Custody(c) => super::incident_export::run(c),
        IncidentCommand::List(a) => list(&a),
        IncidentCommand::Show(a) => {
            let v = a
                .out
                .api
                .client()?
                .ok("GET", &incident_path(&a.id, ""), None)?;
            print(&a.out, &v, show_table)
        }
        IncidentCommand::Open(a) => {
            let body = json!({"severity": a.severity, "title": a.title, "devices": a.devices, "release": a.release});
            let v = a
                .out
                .api
                .client()?
                .ok("POST", "/api/v1/incidents", Some(body))?;
            print(&a.out, &v, show_table)
        }
        IncidentCommand::Ack(a) => {
            let v = post(&a.out, &incident_path(&a.id, "/ack"), None)?;
            print(&a.out, &v, |v| {
                if v["newly_acknowledged"] == true {
                    println!("{}: acknowledged", a.id);
                } else {
                    println!("{}: was already acknowledged", a.id);
                }
            })
        }
        IncidentCommand::Contain(a) => act(&a.out, &a.id, "contain", None),
        IncidentCommand::Collect(a) => act(&a.out, &a.id, "collect", None),
        IncidentCommand::Reimage(a) => act(
            &a.out,
            &a.id,
            "reimage",
            Some(json!({"release": a.release})),
        ),
        IncidentCommand::State(a) => {
            let body = json!({"state": a.state, "note": a.note});
            let v = post(&a.out, &incident_path(&a.id, "/state"), Some(body))?;
            print(&a.out, &v, incident_line)
        }
        IncidentCommand::Close(a) => {
            let body = json!({"note": a.note});
            let v = post(&a.out, &incident_path(&a.id, "/close"), Some(body))?;
            print(&a.out, &v, incident_line)
        }
        IncidentCommand::Approve(a) => decide(&a, "approve"),
        IncidentCommand::Reject(a) => decide(&a, "reject"),
        IncidentCommand::Playbooks(a) => playbooks(&a),
    }
}

/// `/api/v1/incidents/ID` and a suffix; the id is checked so it cannot change the path.
fn incident_path(id: &str, suffix: &str) -> String {
    format!("/api/v1/incidents/{}{suffix}", path_segment(id))
}

fn post(out: &Output, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    out.api.client()?.ok("POST", path, body)
}

fn print(out: &Output, v: &Value, table: impl FnOnce(&Value)) -> anyhow::Result<()> {
    if out.json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        table(v);
    }
    Ok(())
}

fn list(a: &ListArgs) -> anyhow::Result<()> {
    let mut query = vec![format!("limit={}", a.limit)];
    for (key, value) in [
        ("state", &a.state),
        ("severity", &a.severity),
        ("detector", &a.detector),
        ("device", &a.device),
    ] {
        if let Some(v) = value {
            query.push(format!("{key}={}", path_segment(v)));
        }
    }
    let client: ApiClient = a.out.api.client()?;
    let v = client.ok(
        "GET",
        &format!("/api/v1/incidents?{}", query.join("&")),
        None,
    )?;
    print(&a.out, &v, |v| {
        println!(
            "{:<20} {:<10} {:<8} {:<22} {:>8} {:>8} {:>8}  title",
            "id", "state", "severity", "detector", "detect", "contain", "recover"
        );
        for i in v["incidents"].as_array().into_iter().flatten() {
            let t = &i["timings"];
            println!(
                "{:<20} {:<10} {:<8} {:<22} {:>8} {:>8} {:>8}  {}",
                s(&i["id"]),
                s(&i["state"]),
                s(&i["severity"]),
                s(&i["detector"]),
                secs(&t["to_detect"]),
                secs(&t["to_contain"]),
                secs(&t["to_recover"]),
                s(&i["title"])
            );
        }
    })
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A duration for a table: `-` until the state is reached.
fn secs(v: &Value) -> String {
    v.as_i64().map_or_else(|| "-".into(), |n| format!("{n}s"))
}

fn incident_line(v: &Value) {
    println!(
        "{}: {} ({}, {})",
        s(&v["id"]),
        s(&v["state"]),
        s(&v["severity"]),
        s(&v["title"])
    );
}

fn show_table(v: &Value) {
    incident_line(v);
    println!(
        "  cause {}  opened by {}  release {}",
        s(&v["cause"]),
        s(&v["opened_by"]),
        if s(&v["release"]).is_empty() {
            "-"
        } else {
            s(&v["release"])
        }
    );
    let t = &v["timings"];
    println!(
        "  to detect {}  acknowledge {}  contain {}  eradicate {}  recover {}  close {}",
        secs(&t["to_detect"]),
        secs(&t["to_acknowledge"]),
        secs(&t["to_contain"]),
        secs(&t["to_eradicate"]),
        secs(&t["to_recover"]),
        secs(&t["to_close"])
    );
    let devices = v["devices"].as_array().cloned().unwrap_or_default();
    println!("devices ({}):", devices.len());
    for d in &devices {
        println!("  {:<32} {}", s(&d["device_id"]), s(&d["reason"]));
    }
    println!("actions:");
    for a in v["actions"].as_array().into_iter().flatten() {
        let role = s(&a["required_role"]);
        println!(
            "  {:<20} {:<18} {:<24} {:<16}{}",
            s(&a["id"]),
            s(&a["action"]),
            if s(&a["device_id"]).is_empty() {
                "(incident)"
            } else {
                s(&a["device_id"])
            },
            s(&a["state"]),
            if role.is_empty() {
                String::new()
            } else {
                format!(" needs {role}")
            }
        );
    }
    println!("timeline:");
    for e in v["timeline"].as_array().into_iter().flatten() {
        println!(
            "  #{:<6} {:>10} {:<18} {:<28} {}",
            e["audit_seq"],
            e["at"],
            s(&e["kind"]),
            s(&e["actor"]),
            s(&e["device_id"])
        );
    }
}

fn act(out: &Output, id: &str, verb: &str, body: Option<Value>) -> anyhow::Result<()> {
    let v = post(out, &incident_path(id, &format!("/{verb}")), body)?;
    print(out, &v, |v| {
        let n = v["requested"].as_array().map_or(0, Vec::len);
        println!(
            "{id}: {n} {} action(s) requested (a device with one already pending or running gets no second)",
            s(&v["action"])
        );
    })
}

fn decide(a: &IdArgs, how: &str) -> anyhow::Result<()> {
    let v = post(
        &a.out,
        &format!("/api/v1/incident-actions/{}/{how}", path_segment(&a.id)),
        None,
    )?;
    print(&a.out, &v, |v| {
        println!(
            "{}: {} of {} on {} is {}",
            s(&v["id"]),
            s(&v["action"]),
            s(&v["incident_id"]),
            if s(&v["device_id"]).is_empty() {
                "the incident"
            } else {
                s(&v["device_id"])
            },
            s(&v["state"])
        );
    })
}

/// Reads a playbooks file: TOML (`[playbooks.DETECTOR.LEVEL]` tables, or the same without
/// the `playbooks.` prefix) or JSON.
fn read_playbooks(path: &PathBuf) -> anyhow::Result<Value> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_PLAYBOOKS_FILE,
        "{} is {size} bytes; a playbooks file is at most {MAX_PLAYBOOKS_FILE}",
        path.display()
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
    } else {
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
        serde_json::to_value(table)?
    };
    // The configuration file's shape nests them under `playbooks`.
    Ok(match value.get("playbooks") {
        Some(inner) => inner.clone(),
        None => value,
    })
}

fn playbooks(a: &PlaybooksArgs) -> anyhow::Result<()> {
    let client = a.out.api.client()?;
    let v = match &a.set {
        Some(path) => client.ok("PUT", "/api/v1/playbooks", Some(read_playbooks(path)?))?,
        None => client.ok("GET", "/api/v1/playbooks", None)?,
    };
    print(&a.out, &v, |v| {
        println!(
            "{:<24} {:<9} {:<40} held for approval",
            "detector", "severity", "now"
        );
        for (detector, levels) in v.as_object().into_iter().flatten() {
            for (level, plan) in levels.as_object().into_iter().flatten() {
                let now: Vec<&str> = plan["now"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let held: Vec<String> = plan["approve"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| format!("{} by {}", s(&h["action"]), s(&h["role"])))
                    .collect();
                println!(
                    "{:<24} {:<9} {:<40} {}",
                    detector,
                    level,
                    now.join(", "),
                    held.join(", ")
                );
            }
        }
    })
}
