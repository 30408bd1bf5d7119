//! `rampart risk exposure` and `rampart risk advisory`: each advisory's exposure window as the
//! server's risk watch keeps it (`GET /api/v1/risk/exposure`, decision 0046), and one advisory
//! with its affected devices and exposure (`GET /api/v1/risk/advisories/{id}`).

use anyhow::Context;
use serde_json::Value;

use super::risk_fleet::Output;
use crate::shared::api_client::{ApiClient, path_segment};
use crate::shared::table::{Align, Table, cell, span};

const COLUMNS: [&str; 8] = [
    "advisory",
    "state",
    "affected_now",
    "peak_affected",
    "published",
    "first_affected_at",
    "remediated_at",
    "window_secs",
];

/// Most rows read in all (the server keeps one per advisory that ever affected a device).
const MAX_ROWS: usize = 1_000_000;

fn cells(row: &Value) -> Vec<String> {
    COLUMNS.iter().map(|c| cell(&row[*c])).collect()
}

/// Every exposure row in `state` (`None`: all), page by page.
fn all_rows(client: &ApiClient, state: Option<&str>) -> anyhow::Result<Vec<Value>> {
    const PAGE: usize = 1000;
    let mut rows = Vec::new();
    loop {
        let mut path = format!("/api/v1/risk/exposure?limit={PAGE}&offset={}", rows.len());
        if let Some(state) = state {
            path.push_str(&format!("&state={state}"));
        }
        let page = client.ok("GET", &path, None)?;
        let got = page["rows"].as_array().cloned().unwrap_or_default();
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        let done = got.is_empty() || rows.len() + got.len() >= total.min(MAX_ROWS);
        rows.extend(got);
        if done {
            return Ok(rows);
        }
    }
}

pub fn exposure(client: &ApiClient, state: Option<&str>, output: Output) -> anyhow::Result<()> {
    let rows = all_rows(client, state)?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"state": state, "rows": rows}))?
        ),
        Output::Csv => print!("{}", exposure_csv(&rows)?),
        Output::Table => print!("{}", exposure_table(&rows)),
    }
    Ok(())
}

/// RFC 4180 CSV with a header line (times as Unix seconds).
pub fn exposure_csv(rows: &[Value]) -> anyhow::Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(COLUMNS)?;
    for row in rows {
        out.write_record(cells(row))?;
    }
    let bytes = out.into_inner().context("writing CSV")?;
    Ok(String::from_utf8(bytes)?)
}

pub fn exposure_table(rows: &[Value]) -> String {
    let mut table = Table::new(&[
        ("ADVISORY", Align::Left),
        ("STATE", Align::Left),
        ("AFFECTED", Align::Right),
        ("PEAK", Align::Right),
        ("OPEN FOR", Align::Right),
        ("WINDOW", Align::Right),
    ]);
    for r in rows {
        table.row([
            cell(&r["advisory"]),
            cell(&r["state"]),
            cell(&r["affected_now"]),
            cell(&r["peak_affected"]),
            span(&r["open_secs"]),
            span(&r["window_secs"]),
        ]);
    }
    let mut out = table.render();
    if rows.is_empty() {
        out.push_str("(no advisory has affected a device)\n");
    }
    out
}

pub fn advisory(client: &ApiClient, id: &str, json: bool) -> anyhow::Result<()> {
    let encoded = path_segment(id);
    let answer = client.ok("GET", &format!("/api/v1/risk/advisories/{encoded}"), None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    for a in answer["advisories"].as_array().into_iter().flatten() {
        let e = &a["exposure"];
        println!("{}  {}", cell(&a["id"]), cell(&a["summary"]));
        println!(
            "  from {}  severity {} {}  aliases {}",
            cell(&a["source"]),
            cell(&a["severity"]["rating"]),
            cell(&a["severity"]["score"]),
            a["aliases"]
                .as_array()
                .map(|v| v.iter().map(cell).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        );
        println!(
            "  affects {} device(s) now (peak {}); exposure {}, window {}",
            cell(&a["affected_count"]),
            cell(&e["peak_affected"]),
            cell(&e["state"]),
            span(&e["window_secs"])
        );
        for d in a["devices"].as_array().into_iter().flatten() {
            println!("    {}  {}", cell(&d["id"]), cell(&d["release"]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exposure_prints_as_a_table_and_as_csv() {
        let rows = vec![
            json!({"advisory": "PYSEC-1", "state": "open", "affected_now": 3, "peak_affected": 4,
                   "published": 100, "first_affected_at": 200, "remediated_at": null,
                   "window_secs": null, "open_secs": 90_000}),
            json!({"advisory": "GHSA-x,y", "state": "remediated", "affected_now": 0, "peak_affected": 2,
                   "published": 100, "first_affected_at": 200, "remediated_at": 4_000,
                   "window_secs": 3_900, "open_secs": null}),
        ];
        let table = exposure_table(&rows);
        assert!(table.starts_with("ADVISORY"), "{table}");
        assert!(table.contains("PYSEC-1   open"), "{table}");
        assert!(table.contains("1d1h"), "{table}");
        assert!(table.contains("1h5m"), "{table}");
        let csv = exposure_csv(&rows).unwrap();
        assert_eq!(
            csv.lines().next().unwrap(),
            "advisory,state,affected_now,peak_affected,published,first_affected_at,remediated_at,window_secs"
        );
        assert!(
            csv.contains("\"GHSA-x,y\",remediated,0,2,100,200,4000,3900"),
            "{csv}"
        );
        assert!(exposure_table(&[]).contains("no advisory"));
    }
}
