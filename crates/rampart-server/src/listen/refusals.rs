//! Refused device connections (failed or timed-out handshakes, no device identity, a source
//! over its cap), summarised into `certificate.refused` audit records: one per reason and
//! interval, so a client hammering the port cannot flood the audit log.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::listen::mtls::RefusedConnection;
use crate::observe::audit::AuditWriter;

/// Refused TLS handshakes are recorded as one summary record per this interval (per reason),
/// so a client hammering the port cannot flood the audit log.
pub const REFUSAL_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Capacity of the refused-connection queue; beyond it reports are dropped (the connection
/// counters in the metrics still count them), so a flood cannot exhaust memory.
pub const REFUSAL_QUEUE: usize = 4096;

type Pending = BTreeMap<String, (u64, Vec<String>, i64)>;

fn note(pending: &mut Pending, r: RefusedConnection) {
    let entry = pending.entry(r.reason).or_insert((0, Vec::new(), r.time));
    entry.0 += 1;
    let addr = r.remote_addr.ip().to_string();
    if entry.1.len() < 16 && !entry.1.contains(&addr) {
        entry.1.push(addr);
    }
}

/// Summarises refused connections into `certificate.refused` audit records, one per reason
/// and interval, until `stop`; then records what is left.
pub async fn run_refusal_recorder(
    writer: AuditWriter,
    mut refusals: mpsc::Receiver<RefusedConnection>,
    summary_interval: Duration,
    stop: watch::Receiver<bool>,
) {
    let stop = crate::helpers::stopped(stop);
    tokio::pin!(stop);
    let mut pending = Pending::new();
    let mut tick = tokio::time::interval(summary_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            refusal = refusals.recv() => match refusal {
                Some(r) => note(&mut pending, r),
                None => break,
            },
            _ = tick.tick() => flush_refusals(&writer, &mut pending).await,
            () = &mut stop => break,
        }
    }
    while let Ok(r) = refusals.try_recv() {
        note(&mut pending, r);
    }
    flush_refusals(&writer, &mut pending).await;
}

async fn flush_refusals(writer: &AuditWriter, pending: &mut Pending) {
    for (reason, (count, addrs, first)) in std::mem::take(pending) {
        let details = serde_json::json!({
            "reason": reason,
            "count": count,
            "first_seen": first,
            "remote_addresses": addrs,
        });
        if let Err(e) = writer
            .record(
                crate::helpers::unix_now(),
                "system",
                "certificate.refused",
                "",
                details,
            )
            .await
        {
            crate::observe::log::error(
                "recording refused connections in the audit log",
                serde_json::json!({"error": e.to_string()}),
            );
        }
    }
}
