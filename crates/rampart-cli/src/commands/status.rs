//! `rampart status`: whether the server answers, and its health as `GET /api/v1/status` tells
//! it: version, uptime and database, every engine's heartbeat, and when the hosted repository's
//! metadata expires. Fails (exit 1) when the server cannot be reached or reports a warning, so
//! scripts and monitors can run it as a check.

use clap::Args;
use serde_json::Value;

use crate::shared::api_client::ApiOutput;
use crate::shared::table::{Align, Table, cell, cell_or_dash, span, when};

#[derive(Args)]
pub struct StatusArgs {
    /// Warn about offline metadata (root, targets, the director's root) expiring within this
    /// many days (0-3650); by default the server's --expiry-warning-days.
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=3650))]
    warn_days: Option<u16>,
    #[command(flatten)]
    out: ApiOutput,
}

pub fn run(a: &StatusArgs) -> anyhow::Result<()> {
    let path = match a.warn_days {
        Some(days) => format!("/api/v1/status?warn_days={days}"),
        None => "/api/v1/status".to_owned(),
    };
    let v = a.out.client()?.ok("GET", &path, None)?;
    a.out.print(&v, status_text)?;
    let warnings = v["warnings"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        v["healthy"] == true,
        "the server reports {warnings} warning(s){}",
        if a.out.json {
            " (see warnings)"
        } else {
            " (listed above)"
        }
    );
    Ok(())
}

/// The status for people.
pub fn status_text(v: &Value) -> String {
    let s = &v["server"];
    let mut out = format!(
        "server    rampart {}, up {} (since {}), database {}\n",
        cell(&s["version"]),
        span(&s["uptime_secs"]),
        when(&s["started_at"]),
        cell(&v["database"]["backend"])
    );
    let engines = v["engines"].as_array().cloned().unwrap_or_default();
    let count = |state: &str| engines.iter().filter(|e| e["state"] == state).count();
    out.push_str(&format!(
        "engines   {} ok, {} starting, {} stalled\n",
        count("ok"),
        count("starting"),
        count("stalled")
    ));
    let mut table = Table::new(&[
        ("ENGINE", Align::Left),
        ("STATE", Align::Left),
        ("LAST BEAT", Align::Right),
        ("BOUND", Align::Right),
    ]);
    for e in &engines {
        table.row([
            cell(&e["engine"]),
            cell(&e["state"]),
            if e["last_beat"].is_null() {
                "-".into()
            } else {
                format!("{} ago", span(&e["age_secs"]))
            },
            span(&e["bound_secs"]),
        ]);
    }
    out.push_str(&indent(&table.render()));
    let m = &v["metadata"];
    let roles = m["roles"].as_array().cloned().unwrap_or_default();
    if roles.is_empty() && m["repository"] != true {
        out.push_str("metadata  (no image repository or director hosted)\n");
    } else {
        out.push_str(&format!(
            "metadata  offline roles warned {} day(s) ahead\n",
            cell_or_dash(&m["warn_days"])
        ));
        let mut table = Table::new(&[
            ("ROLE", Align::Left),
            ("VERSION", Align::Right),
            ("EXPIRES", Align::Left),
            ("LEFT", Align::Right),
            ("STATE", Align::Left),
        ]);
        for r in &roles {
            table.row([
                cell(&r["role"]),
                cell(&r["version"]),
                cell(&r["expires"]),
                span(&r["seconds_left"]),
                cell(&r["state"]),
            ]);
        }
        out.push_str(&indent(&table.render()));
    }
    let warnings = v["warnings"].as_array().cloned().unwrap_or_default();
    if warnings.is_empty() {
        out.push_str("healthy\n");
    } else {
        out.push_str(&format!("{} warning(s):\n", warnings.len()));
        for w in &warnings {
            out.push_str(&format!("  - {}\n", cell(w)));
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_status_lists_engines_roles_and_warnings() {
        let v = json!({
            "server": {"version": "0.1.0", "started_at": 86_400, "uptime_secs": 3_700},
            "database": {"backend": "sqlite"},
            "engines": [{"engine": "campaigns", "state": "ok", "last_beat": 90_000, "age_secs": 1, "bound_secs": 60},
                        {"engine": "renewal", "state": "stalled", "last_beat": null, "age_secs": 500, "bound_secs": 300}],
            "metadata": {"repository": true, "warn_days": 21, "roles": [
                {"role": "root", "version": 1, "expires": "2027-01-01T00:00:00Z", "seconds_left": 900_000, "state": "valid"}]},
            "healthy": false,
            "warnings": ["engine renewal has not completed a round for 500 s"],
        });
        let text = status_text(&v);
        assert!(
            text.starts_with("server    rampart 0.1.0, up 1h1m"),
            "{text}"
        );
        assert!(
            text.contains("engines   1 ok, 0 starting, 1 stalled"),
            "{text}"
        );
        assert!(
            text.contains("  campaigns  ok          1s ago   1m0s"),
            "{text}"
        );
        assert!(
            text.contains("  root        1  2027-01-01T00:00:00Z  10d10h  valid"),
            "{text}"
        );
        assert!(text.contains("1 warning(s):\n  - engine renewal"), "{text}");
    }
}
