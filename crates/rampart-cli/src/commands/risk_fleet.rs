//! `rampart risk import|posture|remediate`: the fleet's supply-chain risk through the
//! management API (`/api/v1/risk/...`).

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use super::risk_feed::{Batch, FeedLimits, open_feed};
use crate::shared::api_client::{ApiClient, path_segment};
use crate::shared::table::{Align, Table};

/// The route's counts, summed over batches.
#[derive(Debug, Default)]
struct ImportCounts {
    added: u64,
    replaced: u64,
    unchanged: u64,
    withdrawn: u64,
}

impl ImportCounts {
    fn add(&mut self, answer: &Value) {
        let n = |k: &str| answer[k].as_u64().unwrap_or(0);
        self.added += n("added");
        self.replaced += n("replaced");
        self.unchanged += n("unchanged");
        self.withdrawn += n("withdrawn");
    }
}

/// Sends one batch; a refusal names the batch's first and last record.
fn send(
    client: &ApiClient,
    batch: &mut Batch,
    sources: &mut Vec<String>,
    counts: &mut ImportCounts,
) -> anyhow::Result<()> {
    let records = std::mem::take(&mut batch.records);
    let n = records.len();
    *batch = Batch::default();
    let answer = client
        .ok(
            "POST",
            "/api/v1/risk/advisories",
            Some(json!({"advisories": records})),
        )
        .with_context(|| {
            format!(
                "importing the batch of {n} records from {} to {}",
                sources.first().map_or("", String::as_str),
                sources.last().map_or("", String::as_str)
            )
        })?;
    sources.clear();
    counts.add(&answer);
    Ok(())
}

pub fn import(client: &ApiClient, advisories: &Path) -> anyhow::Result<()> {
    let limits = FeedLimits::default();
    let (mut feed, expected) = open_feed(advisories, limits)?;
    anyhow::ensure!(
        expected > 0,
        "{} holds no *.json advisory records: give a directory of OSV records or osv.dev's per-ecosystem zip",
        advisories.display()
    );
    let started = Instant::now();
    let mut counts = ImportCounts::default();
    let mut batch = Batch::default();
    let mut sources = Vec::new();
    let (mut read, mut batches, mut total_bytes) = (0usize, 0usize, 0u64);
    while let Some(record) = feed.next_record(limits, &mut total_bytes)? {
        if !batch.fits(&record) {
            send(client, &mut batch, &mut sources, &mut counts)?;
            batches += 1;
            eprintln!(
                "imported {read} of {expected} records ({batches} batches, {:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
        read += 1;
        sources.push(record.source.clone());
        batch.push(record);
    }
    if !batch.is_empty() {
        send(client, &mut batch, &mut sources, &mut counts)?;
        batches += 1;
    }
    println!(
        "{read} advisories imported in {batches} batch(es): {} added, {} changed, {} unchanged, {} withdrawn",
        counts.added, counts.replaced, counts.unchanged, counts.withdrawn
    );
    Ok(())
}

/// How `posture` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Csv,
}

const COLUMNS: [&str; 12] = [
    "key",
    "devices",
    "affected_devices",
    "fallback_affected",
    "unknown_release_devices",
    "critical",
    "high",
    "medium",
    "low",
    "unassigned",
    "score",
    "worst",
];

fn cells(row: &Value) -> [String; 12] {
    let n = |v: &Value| v.as_u64().unwrap_or(0).to_string();
    let counts = &row["counts"];
    [
        row["key"].as_str().unwrap_or("").to_owned(),
        n(&row["devices"]),
        n(&row["affected_devices"]),
        // Devices whose inactive slot (what a rollback boots) holds an exposed release.
        n(&row["fallback_affected"]),
        n(&row["unknown_release_devices"]),
        n(&counts["critical"]),
        n(&counts["high"]),
        n(&counts["medium"]),
        n(&counts["low"]),
        n(&counts["unassigned"]),
        n(&row["score"]),
        row["worst"]["id"].as_str().unwrap_or("").to_owned(),
    ]
}

/// Every row, page by page.
fn all_rows(client: &ApiClient, by: &str) -> anyhow::Result<(Value, Vec<Value>)> {
    const PAGE: usize = 1000;
    let mut rows = Vec::new();
    loop {
        let page = client.ok(
            "GET",
            &format!(
                "/api/v1/risk/posture?by={by}&limit={PAGE}&offset={}",
                rows.len()
            ),
            None,
        )?;
        let got = page["rows"].as_array().cloned().unwrap_or_default();
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        let done = got.is_empty() || rows.len() + got.len() >= total;
        rows.extend(got);
        if done {
            return Ok((page, rows));
        }
    }
}

pub fn posture(client: &ApiClient, by: &str, output: Output) -> anyhow::Result<()> {
    let (last_page, rows) = all_rows(client, by)?;
    match output {
        Output::Json => {
            let mut answer = last_page;
            answer["rows"] = Value::Array(rows);
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        Output::Csv => print!("{}", posture_csv(&rows)?),
        Output::Table => {
            print!("{}", posture_table(by, &rows));
            let unassessed: Vec<&str> = last_page["releases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["sbom"] != "indexed")
                .filter_map(|r| r["target"].as_str())
                .collect();
            println!(
                "{} devices, {} advisories in matching",
                last_page["devices"], last_page["advisories"]
            );
            if !unassessed.is_empty() {
                println!(
                    "releases without an indexed SBOM (their devices are not assessed): {}",
                    unassessed.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// RFC 4180 CSV with a header line.
pub fn posture_csv(rows: &[Value]) -> anyhow::Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(COLUMNS)?;
    for row in rows {
        out.write_record(cells(row))?;
    }
    let bytes = out.into_inner().context("writing CSV")?;
    Ok(String::from_utf8(bytes)?)
}

pub fn posture_table(by: &str, rows: &[Value]) -> String {
    let key = by.to_ascii_uppercase();
    let mut table = Table::new(&[
        (key.as_str(), Align::Left),
        ("DEVICES", Align::Right),
        ("AFFECTED", Align::Right),
        ("FALLBACK", Align::Right),
        ("UNKNOWN", Align::Right),
        ("CRIT", Align::Right),
        ("HIGH", Align::Right),
        ("MED", Align::Right),
        ("LOW", Align::Right),
        ("UNASSIGNED", Align::Right),
        ("SCORE", Align::Right),
        ("WORST", Align::Left),
    ]);
    for r in rows {
        let mut c = cells(r);
        if c[0].is_empty() {
            c[0] = "(none)".into();
        }
        table.row(c);
    }
    table.render()
}

pub struct RemediateRequest<'a> {
    pub advisory: &'a str,
    pub release: &'a str,
    pub name: Option<&'a str>,
    pub options: Option<&'a Path>,
    pub start: bool,
}

pub fn remediate(client: &ApiClient, r: RemediateRequest<'_>) -> anyhow::Result<()> {
    let mut body = json!({"release": r.release, "start": r.start});
    if let Some(name) = r.name {
        body["name"] = json!(name);
    }
    if let Some(path) = r.options {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the campaign options {}", path.display()))?;
        let options: Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not JSON: give campaign spec fields (phases, gate, policy, ...)",
                path.display()
            )
        })?;
        anyhow::ensure!(
            options.is_object(),
            "{} must be a JSON object of campaign spec fields",
            path.display()
        );
        body["options"] = options;
    }
    let path = format!(
        "/api/v1/risk/advisories/{}/remediate",
        path_segment(r.advisory)
    );
    let answer = client.ok("POST", &path, Some(body))?;
    println!(
        "campaign {} \"{}\": {} to {} device(s) affected by {} ({})",
        answer["id"].as_str().unwrap_or(""),
        answer["name"].as_str().unwrap_or(""),
        answer["release"].as_str().unwrap_or(""),
        answer["devices_total"],
        r.advisory,
        answer["status"].as_str().unwrap_or("")
    );
    for device in answer["devices"].as_array().into_iter().flatten() {
        println!("  {}", device.as_str().unwrap_or(""));
    }
    // Not in the campaign: their running release is fixed, but the slot a rollback boots is
    // not (decision 0049).
    let fallback_only = answer["fallback_only_total"].as_u64().unwrap_or(0);
    if fallback_only > 0 {
        println!(
            "{fallback_only} device(s) not targeted hold an affected release in their inactive slot (a rollback would bring it back); re-image them with `rampart device reimage`:"
        );
        for device in answer["fallback_only"].as_array().into_iter().flatten() {
            println!("  {}", device.as_str().unwrap_or(""));
        }
    }
    // Not in the campaign either: the release is not built for their hardware.
    let incompatible = answer["incompatible_total"].as_u64().unwrap_or(0);
    if incompatible > 0 {
        println!(
            "{incompatible} affected device(s) not targeted are hardware release {} is not built for; remediate them with a fixed release for their hardware:",
            answer["release"].as_str().unwrap_or("")
        );
        for device in answer["incompatible"].as_array().into_iter().flatten() {
            println!(
                "  {} ({})",
                device["id"].as_str().unwrap_or(""),
                device["hardware_id"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_keys_with_commas_and_quotes() {
        let rows = [
            json!({"key": "eu, \"west\"", "devices": 2, "affected_devices": 1,
            "fallback_affected": 1, "counts": {"critical": 1}, "score": 10,
            "worst": {"id": "PYSEC-1"}}),
        ];
        let text = posture_csv(&rows).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "\"eu, \"\"west\"\"\",2,1,1,0,1,0,0,0,0,10,PYSEC-1"
        );
    }
}
