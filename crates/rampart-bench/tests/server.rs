//! `rampart-bench server` with small numbers: it starts the real server, seeds devices, polls
//! over mutual TLS and reports every figure, on SQLite and on PostgreSQL (from
//! RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it the PostgreSQL test fails).

use std::collections::HashMap;
use std::process::{Command, Stdio};

use rampart_testkit::cli::{fails, ok};

/// `rampart-bench ARGS`, with the `rampart` binary it runs built beside it.
fn bench(args: &[&str]) -> Command {
    rampart_testkit::binaries::rampart_binary();
    let mut c = Command::new(env!("CARGO_BIN_EXE_rampart-bench"));
    c.args(args).stdin(Stdio::null());
    c
}

/// The summary table rows of `backend`: figure -> (median, min, max).
fn figures(out: &str, backend: &str) -> HashMap<String, (f64, f64, f64)> {
    let mut rows = HashMap::new();
    for line in out.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() < 5 || tokens[0] != backend {
            continue;
        }
        let n = tokens.len();
        let numbers: Option<Vec<f64>> = tokens[n - 3..].iter().map(|t| t.parse().ok()).collect();
        if let Some(v) = numbers {
            rows.insert(tokens[1..n - 3].join(" "), (v[0], v[1], v[2]));
        }
    }
    rows
}

fn check_run(backend: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "server",
        "--devices",
        "2000",
        "--connections",
        "8",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--backend",
        backend,
    ];
    args.extend_from_slice(extra);
    ok(bench(&args))
}

fn check_rows(out: &str, backend: &str) {
    let f = figures(out, backend);
    let get = |name: &str| {
        f.get(name)
            .unwrap_or_else(|| panic!("no {name:?} row for {backend}:\n{out}"))
            .0
    };
    assert!(get("polls/s") > 0.0, "{out}");
    let (p50, p99, max) = (
        get("p50 latency ms"),
        get("p99 latency ms"),
        get("max latency ms"),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{out}");
    assert!(get("server peak RSS MiB") > 1.0, "{out}");
    // Every device has a row, a tag row and index entries: well over 50 bytes each.
    assert!(get("DB bytes/device") > 50.0, "{out}");
    assert!(get("server CPU cores") > 0.0, "{out}");
    assert!(out.contains(&format!("goal ({backend}, medians)")), "{out}");
}

#[test]
fn bench_server_measures_ddi_and_native_polls_in_one_run() {
    let out = check_run("sqlite", &["--api", "both", "--no-etag"]);
    for api in ["sqlite/native", "sqlite/ddi"] {
        check_rows(&out, api);
    }
    assert!(
        out.contains("sqlite: DDI polls/s are") && out.contains("x native polls/s"),
        "{out}"
    );
}

#[test]
fn bench_server_on_sqlite_reports_every_figure() {
    check_rows(&check_run("sqlite", &[]), "sqlite");
}

#[test]
fn bench_server_on_postgres_reports_every_figure() {
    let url = std::env::var("RAMPART_TEST_POSTGRES_URL").expect(
        "RAMPART_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts PostgreSQL (scripts/start-postgres.sh)",
    );
    check_rows(
        &check_run("postgres", &["--postgres-url", &url]),
        "postgres",
    );
}

#[test]
fn bench_server_on_postgres_without_a_url_says_what_is_missing() {
    let mut c = bench(&["server", "--backend", "postgres"]);
    c.env_remove("RAMPART_TEST_POSTGRES_URL");
    let out = fails(c);
    assert!(out.contains("--postgres-url"), "{out}");
}
