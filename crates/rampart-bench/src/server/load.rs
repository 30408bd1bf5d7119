//! The polling load of `rampart-bench server`: one task per keep-alive connection, each a device.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rampart_testkit::http::{TlsConn, connect_tls};
use tokio_rustls::rustls::ClientConfig;

use super::process::cpu_secs;
use super::{Pki, ServerBenchArgs, Target};

pub struct Load {
    pub(super) polls_per_sec: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
    pub(super) server_cpu: f64,
    pub(super) client_cpu: f64,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

pub async fn generate_load(
    a: &ServerBenchArgs,
    pki: &Pki,
    target: &Target,
    server_pid: u32,
) -> anyhow::Result<Load> {
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let mut tasks = tokio::task::JoinSet::new();
    for (k, (id, config)) in pki.clients.iter().enumerate() {
        let (addr, config, poll) = match target {
            Target::Native(addr) => (*addr, config.clone(), Poll::Native),
            Target::Ddi(addr, tokens) => (
                *addr,
                pki.token_client.clone(),
                Poll::Ddi(tokens[k].clone()),
            ),
        };
        let (id, phase, etags) = (id.clone(), phase.clone(), !a.no_etag);
        tasks.spawn(async move {
            let result = device_loop(addr, config, &id, poll, etags, &phase).await;
            // One failed connection ends the measurement for all.
            if result.is_err() {
                phase.store(STOP, Ordering::Relaxed);
            }
            result.with_context(|| format!("device {id}"))
        });
    }
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let server_pid = server_pid.to_string();
    let cpu = |pid: &str| cpu_secs(pid).unwrap_or(f64::NAN);
    let (server0, client0) = (cpu(&server_pid), cpu("self"));
    let start = Instant::now();
    if phase
        .compare_exchange(WARMUP, MEASURE, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        tokio::time::sleep(Duration::from_secs(a.duration)).await;
        phase.store(STOP, Ordering::Relaxed);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (server1, client1) = (cpu(&server_pid), cpu("self"));
    let mut latencies: Vec<u32> = Vec::new();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("load task panicked")? {
            Ok(samples) => latencies.extend(samples),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if latencies.is_empty() {
        bail!("no poll completed during the measurement");
    }
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
        f64::from(latencies[rank - 1]) / 1000.0
    };
    Ok(Load {
        polls_per_sec: latencies.len() as f64 / elapsed,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: quantile(1.0),
        server_cpu: (server1 - server0) / elapsed,
        client_cpu: (client1 - client0) / elapsed,
    })
}

/// One device: connects, then polls until the phase is STOP. Returns the latencies (µs) of the
/// polls completed while measuring.
/// How a device polls.
enum Poll {
    Native,
    /// DDI, with this `Authorization` value.
    Ddi(String),
}

async fn device_loop(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
    id: &str,
    poll: Poll,
    etags: bool,
    phase: &AtomicU8,
) -> anyhow::Result<Vec<u32>> {
    let mut conn = TlsConn::new(
        connect_tls(addr, "localhost", &config)
            .await
            .context("connecting (TCP and TLS)")?,
    );
    let mut etag: Option<String> = None;
    let mut latencies = Vec::new();
    let mut first = true;
    loop {
        let p = phase.load(Ordering::Relaxed);
        if p == STOP {
            return Ok(latencies);
        }
        let sent = Instant::now();
        match &poll {
            // A device with nothing new to install: `{}`, and the last ETag once it has one.
            Poll::Native => {
                let headers: Vec<(&str, &str)> =
                    etag.iter().map(|e| ("If-None-Match", e.as_str())).collect();
                conn.write_request("POST", "/device/v1/poll", &headers, b"{}")
                    .await
            }
            Poll::Ddi(auth) => {
                let path = format!("/DEFAULT/controller/v1/{id}");
                let headers = [
                    ("Accept", "application/json"),
                    ("Authorization", auth.as_str()),
                ];
                conn.write_request("GET", &path, &headers, b"").await
            }
        }
        .context("sending a poll")?;
        let response = conn
            .read_response()
            .await
            .context("reading the poll answer")?;
        if response.header("transfer-encoding").is_some() {
            bail!("chunked responses are not supported by the load generator");
        }
        if response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            && response.status < 400
        {
            bail!("the server closed the keep-alive connection");
        }
        let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        match response.status {
            200 | 304 => {}
            s => bail!(
                "poll answered {s}: {}",
                String::from_utf8_lossy(&response.body)
            ),
        }
        if first {
            first = false;
            let answer: serde_json::Value =
                serde_json::from_slice(&response.body).context("poll answer is not JSON")?;
            if let Poll::Ddi(_) = poll {
                if answer["config"]["polling"]["sleep"].as_str().is_none() {
                    bail!("the DDI poll answer has no config.polling.sleep: {answer}");
                }
            } else if answer["device_id"] != id {
                bail!("the server took this connection for another device: {answer}");
            } else if etags {
                let tag = response
                    .header("etag")
                    .context("poll answer without an ETag")?;
                etag = Some(tag.to_owned());
            }
        }
        if p == MEASURE && phase.load(Ordering::Relaxed) == MEASURE {
            latencies.push(micros);
        }
    }
}
