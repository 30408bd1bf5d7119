//! What the CLI prints for people: aligned tables, cells from the API's JSON, times and
//! durations; and the API's JSON itself for scripts (`--json`).

use serde_json::Value;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table: a header line, then one line per row, columns two spaces apart, each as wide as
/// its widest cell; no trailing spaces.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            header: columns.iter().map(|(h, _)| (*h).to_owned()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty, extra ones dropped).
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        let mut cells: Vec<String> = cells.into_iter().take(self.header.len()).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .zip(&self.align)
                .map(|((c, w), a)| match a {
                    Align::Left => format!("{c:<w$}"),
                    Align::Right => format!("{c:>w$}"),
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// A JSON value as a cell: strings as they are, null as nothing, anything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A cell, or `-` when empty.
pub fn cell_or_dash(v: &Value) -> String {
    let c = cell(v);
    if c.is_empty() { "-".into() } else { c }
}

/// A duration as days and hours, hours and minutes, or minutes and seconds; `-` when not a
/// number.
pub fn span(secs: &Value) -> String {
    secs.as_i64().map_or_else(|| "-".into(), span_secs)
}

pub fn span_secs(s: i64) -> String {
    let sign = if s < 0 { "-" } else { "" };
    let s = s.unsigned_abs();
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d{h}h")
    } else if h > 0 {
        format!("{sign}{h}h{m}m")
    } else if m > 0 {
        format!("{sign}{m}m{sec}s")
    } else {
        format!("{sign}{sec}s")
    }
}

/// A Unix time as UTC (`2026-01-02T03:04:05Z`); `-` when not a number or zero.
pub fn when(unix: &Value) -> String {
    match unix.as_i64() {
        Some(t) if t > 0 => rampart_core::metadata::format_expires(t),
        _ => "-".into(),
    }
}

/// How long ago a Unix time was, from `now`: `12s ago`; `-` when not a number or zero.
pub fn ago(unix: &Value, now: i64) -> String {
    match unix.as_i64() {
        Some(t) if t > 0 => format!("{} ago", span_secs(now.saturating_sub(t).max(0))),
        _ => "-".into(),
    }
}

/// Prints the API's answer as pretty JSON (`--json`).
pub fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_without_trailing_spaces() {
        let mut t = Table::new(&[
            ("ID", Align::Left),
            ("N", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(["dev-1".into(), "3".into(), String::new()]);
        t.row(["d".into(), "120".into(), "ok".into()]);
        assert_eq!(t.render(), "ID       N  NOTE\ndev-1    3\nd      120  ok\n");
        t.row(["short".into()]);
        assert!(t.render().ends_with("short\n"));
        assert!(!Table::new(&[("A", Align::Left)]).render().contains("  "));
    }

    #[test]
    fn cells_times_and_durations_read_as_people_write_them() {
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell_or_dash(&json!("")), "-");
        assert_eq!(span(&json!(90_000)), "1d1h");
        assert_eq!(span(&json!(3_900)), "1h5m");
        assert_eq!(span(&json!(75)), "1m15s");
        assert_eq!(span(&json!(null)), "-");
        assert_eq!(span_secs(-30), "-30s");
        assert_eq!(when(&json!(0)), "-");
        assert_eq!(when(&json!(86_400)), "1970-01-02T00:00:00Z");
        assert_eq!(ago(&json!(100), 160), "1m0s ago");
    }
}
