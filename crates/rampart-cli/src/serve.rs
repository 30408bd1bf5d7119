//! A small read-only static file server for a repository's `metadata/` and `targets/`.
//!
//! Plain HTTP is enough here: TUF metadata and hashes, not the transport, carry the trust.
//! Hand-written on `std::net` rather than taken from `tiny_http`, which leaves Nagle's algorithm
//! on and so added 40 ms delayed-ACK stalls to responses, distorting client benchmarks (see
//! docs/decisions/0005-static-server.md).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;

/// Most connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// Longest request head accepted.
const MAX_HEAD: u64 = 8 * 1024;

pub struct StaticServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl StaticServer {
    pub fn start(dir: &Path, listen: &str) -> anyhow::Result<StaticServer> {
        let root =
            std::fs::canonicalize(dir).with_context(|| format!("serving {}", dir.display()))?;
        let listener =
            TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                while active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    std::thread::sleep(Duration::from_millis(5));
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (root, active) = (root.clone(), active.clone());
                std::thread::spawn(move || {
                    let _ = serve_connection(&root, stream);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(StaticServer { addr, stop, thread })
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn join(self) {
        let _ = self.thread.join();
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        let _ = self.thread.join();
    }
}

fn serve_connection(root: &Path, stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        let mut limited = (&mut reader).take(MAX_HEAD);
        loop {
            let start = head.len();
            if limited.read_until(b'\n', &mut head)? == 0 {
                return Ok(());
            }
            let line = &head[start..];
            if line == b"\r\n" || line == b"\n" {
                break;
            }
            if limited.limit() == 0 {
                return respond(
                    &mut writer,
                    431,
                    "text/plain",
                    b"request head too large\n",
                    true,
                );
            }
        }
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.lines();
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let close = lines.any(|l| {
            l.to_ascii_lowercase().starts_with("connection:")
                && l.to_ascii_lowercase().contains("close")
        });
        if method != "GET" && method != "HEAD" {
            respond(&mut writer, 405, "text/plain", b"only GET and HEAD\n", true)?;
            return Ok(());
        }
        match resolve(root, target).and_then(|p| std::fs::read(p).ok()) {
            Some(body) => {
                let body = if method == "HEAD" { Vec::new() } else { body };
                respond(&mut writer, 200, "application/octet-stream", &body, close)?
            }
            None => respond(&mut writer, 404, "text/plain", b"not found\n", close)?,
        }
        if close {
            return Ok(());
        }
    }
}

fn respond(
    w: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: {content_type}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if close { "close" } else { "keep-alive" }
    );
    let mut msg = Vec::with_capacity(head.len() + body.len());
    msg.extend_from_slice(head.as_bytes());
    msg.extend_from_slice(body);
    w.write_all(&msg)
}

fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split('?').next()?;
    let decoded = percent_decode(path.trim_start_matches('/'))?;
    let rel = Path::new(&decoded);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let first = rel.components().next()?;
    if first.as_os_str() != "metadata" && first.as_os_str() != "targets" {
        return None;
    }
    let full = root.join(rel);
    full.is_file().then_some(full)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metadata_and_targets_are_served_and_traversal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
        std::fs::write(dir.path().join("metadata/timestamp.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("rampart-repo.json"), b"secret-ish").unwrap();
        let root = dir.path();
        assert!(resolve(root, "/metadata/timestamp.json").is_some());
        assert!(resolve(root, "/rampart-repo.json").is_none());
        assert!(resolve(root, "/metadata/../rampart-repo.json").is_none());
        assert!(resolve(root, "/metadata/%2e%2e/rampart-repo.json").is_none());
    }
}
