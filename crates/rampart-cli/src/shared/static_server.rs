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
use std::time::{Duration, Instant};

use anyhow::Context;

/// Most connections served at once; past that, new connections get 503 and are closed.
const MAX_CONNECTIONS: usize = 64;
/// Longest request head accepted.
const MAX_HEAD: u64 = 8 * 1024;
/// Time a client has to send a whole request head (slowloris bound).
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// Time a kept-alive connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a single write may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

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
                let Ok(mut stream) = conn else { continue };
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = respond_head(&mut stream, 503, "text/plain", 0, true);
                    continue;
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
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut first = true;
    loop {
        // The first request gets the whole head deadline; later ones on a kept-alive connection
        // must start within the idle timeout. Either way the whole head must arrive in time.
        let deadline = Instant::now() + if first { HEAD_DEADLINE } else { IDLE_TIMEOUT };
        first = false;
        let Some(head) = read_head(&mut reader, deadline)? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.lines();
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let close = lines.any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("connection:") && l.contains("close")
        });
        if method != "GET" && method != "HEAD" {
            return respond_body(&mut writer, 405, b"only GET and HEAD\n", true);
        }
        match resolve(root, target).and_then(|p| std::fs::File::open(p).ok()) {
            Some(mut file) => {
                let len = file.metadata()?.len();
                respond_head(&mut writer, 200, "application/octet-stream", len, close)?;
                if method == "GET" {
                    // Streamed, so memory per connection stays bounded whatever the file size.
                    let sent = std::io::copy(&mut (&mut file).take(len), &mut writer)?;
                    if sent != len {
                        return Ok(()); // file shrank under us: the length is wrong, drop the connection
                    }
                }
            }
            None => respond_body(&mut writer, 404, b"not found\n", close)?,
        }
        if close {
            return Ok(());
        }
    }
}

/// Reads a request head (up to the blank line), or `None` if the client closed or went idle.
fn read_head(
    reader: &mut BufReader<TcpStream>,
    deadline: Instant,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || head.len() as u64 >= MAX_HEAD {
            return Ok(None);
        }
        reader.get_ref().set_read_timeout(Some(left))?;
        let start = head.len();
        let mut limited = (&mut *reader).take(MAX_HEAD - head.len() as u64);
        match limited.read_until(b'\n', &mut head) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(head));
        }
    }
}

fn respond_head(
    w: &mut TcpStream,
    status: u16,
    content_type: &str,
    len: u64,
    close: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {len}\r\nContent-Type: {content_type}\r\nConnection: {}\r\n\r\n",
        if close { "close" } else { "keep-alive" }
    );
    w.write_all(head.as_bytes())
}

fn respond_body(w: &mut TcpStream, status: u16, body: &[u8], close: bool) -> std::io::Result<()> {
    respond_head(w, status, "text/plain", body.len() as u64, close)?;
    w.write_all(body)
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

    fn get(addr: &str, request: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    }

    #[test]
    fn serves_files_with_their_length_and_head_without_body() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("targets")).unwrap();
        std::fs::write(dir.path().join("targets/a.img"), vec![b'x'; 100_000]).unwrap();
        let server = StaticServer::start(dir.path(), "127.0.0.1:0").unwrap();
        let addr = server.addr();
        let resp = get(
            &addr,
            "GET /targets/a.img HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.contains("Content-Length: 100000"),
            "{}",
            &resp[..80]
        );
        assert_eq!(resp.split("\r\n\r\n").nth(1).unwrap().len(), 100_000);
        let resp = get(
            &addr,
            "HEAD /targets/a.img HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(
            resp.contains("Content-Length: 100000") && resp.ends_with("\r\n\r\n"),
            "{resp}"
        );
        let resp = get(
            &addr,
            "GET /rampart-repo.json HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
        server.stop();
    }

    #[test]
    fn connections_past_the_limit_get_503_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
        let server = StaticServer::start(dir.path(), "127.0.0.1:0").unwrap();
        let addr = server.addr();
        // Idle clients that send nothing (slowloris) hold every slot...
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(&addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // ...and the next client is told so at once rather than queued behind them.
        let start = Instant::now();
        let resp = get(&addr, "GET /metadata/x HTTP/1.1\r\n\r\n");
        assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(idle);
        server.stop();
    }
}
