//! The polling load of `rampart-bench server`: one task per keep-alive connection, each a device.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

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
    let tcp = TcpStream::connect(addr).await.context("connecting")?;
    tcp.set_nodelay(true)?;
    let mut tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
        .context("TLS handshake")?;
    let mut request = match &poll {
        Poll::Native => poll_request(None),
        Poll::Ddi(auth) => ddi_poll_request(id, auth),
    };
    let mut buf = Vec::with_capacity(4096);
    let mut latencies = Vec::new();
    let mut first = true;
    loop {
        let p = phase.load(Ordering::Relaxed);
        if p == STOP {
            return Ok(latencies);
        }
        let sent = Instant::now();
        tls.write_all(&request).await.context("sending a poll")?;
        tls.flush().await?;
        let response = read_response(&mut tls, &mut buf).await?;
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
                let etag = response.etag.context("poll answer without an ETag")?;
                request = poll_request(Some(&etag));
            }
        }
        if p == MEASURE && phase.load(Ordering::Relaxed) == MEASURE {
            latencies.push(micros);
        }
    }
}

fn ddi_poll_request(id: &str, authorization: &str) -> Vec<u8> {
    format!(
        "GET /DEFAULT/controller/v1/{id} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nAuthorization: {authorization}\r\n\r\n"
    )
    .into_bytes()
}

fn poll_request(etag: Option<&str>) -> Vec<u8> {
    let mut r = String::from(
        "POST /device/v1/poll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n",
    );
    if let Some(etag) = etag {
        r.push_str(&format!("If-None-Match: {etag}\r\n"));
    }
    r.push_str("\r\n{}");
    r.into_bytes()
}

pub struct Response {
    pub(super) status: u16,
    pub(super) etag: Option<String>,
    pub(super) body: Vec<u8>,
}

/// Reads one HTTP/1.1 response (Content-Length bodies only) from a keep-alive connection;
/// `buf` carries bytes read past it.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Response> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            bail!("response header over 64 KiB");
        }
        if stream.read_buf(buf).await.context("reading a response")? == 0 {
            bail!("the server closed the connection");
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let (mut length, mut etag, mut close) = (None, None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("etag") {
            etag = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported by the load generator");
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let length = match status {
        304 | 204 | 100..=199 => 0,
        _ => length.context("response without Content-Length")?,
    };
    while buf.len() < head_end + length {
        if stream
            .read_buf(buf)
            .await
            .context("reading a response body")?
            == 0
        {
            bail!("the server closed the connection mid-response");
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    if close && status < 400 {
        bail!("the server closed the keep-alive connection");
    }
    Ok(Response { status, etag, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn responses_are_read_one_at_a_time() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\netag: \"ab\"\r\n\r\n{}HTTP/1.1 304 Not Modified\r\netag: \"ab\"\r\n\r\n".to_vec();
        let mut reader = &wire[..];
        let mut buf = Vec::new();
        let r = read_response(&mut reader, &mut buf).await.unwrap();
        assert_eq!(
            (r.status, r.etag.as_deref(), &r.body[..]),
            (200, Some("\"ab\""), &b"{}"[..])
        );
        let r = read_response(&mut reader, &mut buf).await.unwrap();
        assert_eq!((r.status, r.body.len()), (304, 0));
        assert!(read_response(&mut reader, &mut buf).await.is_err());
    }
}
