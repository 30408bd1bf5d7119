//! The `rampart server` child of `rampart-bench server`, and what is read about it from /proc.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Pki;

pub fn server_log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("server log {}:\n{tail}", log.display())
}

/// The `rampart server` child; killed if dropped while running.
pub struct ServerProcess {
    pub(super) child: Child,
    pub(super) addr: std::net::SocketAddr,
    pub(super) ddi_addr: std::net::SocketAddr,
    pub(super) management_addr: std::net::SocketAddr,
}

impl ServerProcess {
    pub(super) fn start(
        db_url: &str,
        pki: &Pki,
        log: &Path,
        ddi: bool,
    ) -> anyhow::Result<ServerProcess> {
        let exe = rampart_cli::shared::rampart_binary()?;
        let mut command = Command::new(exe);
        command.arg("server");
        if ddi {
            command.args([
                "--ddi-listen",
                "127.0.0.1:0",
                "--management-listen",
                "127.0.0.1:0",
            ]);
        }
        let mut child = command
            .arg("--db")
            .arg(db_url)
            // Webhook secrets are sealed with this key (required with PostgreSQL).
            .arg("--secrets-key")
            .arg(log.with_extension("secrets.key"))
            .args(["--listen", "127.0.0.1:0"])
            .arg("--cert")
            .arg(&pki.cert_path)
            .arg("--key")
            .arg(&pki.key_path)
            .arg("--client-ca")
            .arg(&pki.ca_path)
            .arg("--crl")
            .arg(&pki.crl_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("starting `rampart server`")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps reading (and discarding) stdout so the server never writes into a closed pipe.
        // The listening lines, in order: device API, DDI API, management API.
        let wanted = if ddi { 3 } else { 1 };
        std::thread::spawn(move || {
            let mut sent = 0;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let addr = [
                    "device API listening on ",
                    "DDI API listening on https://",
                    "management API listening on https://",
                ]
                .iter()
                .find_map(|p| line.strip_prefix(p));
                if let Some(addr) = addr
                    && sent < wanted
                {
                    sent += 1;
                    let addr = addr
                        .trim()
                        .trim_end_matches('/')
                        .trim_end_matches("/api/v1");
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let unset: std::net::SocketAddr = "127.0.0.1:0".parse()?;
        let mut server = ServerProcess {
            child,
            addr: unset,
            ddi_addr: unset,
            management_addr: unset,
        };
        let mut addrs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while addrs.len() < wanted {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(addr) => addrs.push(
                    addr.parse::<std::net::SocketAddr>()
                        .with_context(|| format!("server printed a bad address {addr:?}"))?,
                ),
                Err(_) => break,
            }
        }
        match addrs.as_slice() {
            [device] => server.addr = *device,
            [device, ddi, management] => {
                server.addr = *device;
                server.ddi_addr = *ddi;
                server.management_addr = *management;
            }
            _ => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                bail!(
                    "`rampart server` did not start listening\n{}",
                    server_log_tail(log)
                );
            }
        }
        Ok(server)
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (graceful: drains and writes pending last-seen times), then waits.
    pub(super) fn stop(&mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("`rampart server` exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("`rampart server` did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Peak resident set size of a process, KiB (VmHWM).
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/PID/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmHWM")?
        .parse()?)
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture that matters here.
    Some(ticks / 100.0)
}
