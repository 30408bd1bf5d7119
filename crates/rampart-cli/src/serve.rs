//! A minimal read-only static file server for a repository's `metadata/` and `targets/`.
//! Plain HTTP is enough: TUF metadata and hashes, not the transport, carry the trust.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

pub struct StaticServer {
    server: Arc<tiny_http::Server>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl StaticServer {
    pub fn start(dir: &Path, listen: &str) -> anyhow::Result<StaticServer> {
        let root =
            std::fs::canonicalize(dir).with_context(|| format!("serving {}", dir.display()))?;
        let server = Arc::new(
            tiny_http::Server::http(listen)
                .map_err(|e| anyhow::anyhow!("listening on {listen}: {e}"))?,
        );
        let threads = (0..4)
            .map(|_| {
                let (server, root) = (server.clone(), root.clone());
                std::thread::spawn(move || {
                    for req in server.incoming_requests() {
                        let _ = respond(&root, req);
                    }
                })
            })
            .collect();
        Ok(StaticServer { server, threads })
    }

    pub fn addr(&self) -> String {
        self.server
            .server_addr()
            .to_ip()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    pub fn stop(self) {
        self.server.unblock();
        for _ in 1..self.threads.len() {
            self.server.unblock();
        }
        self.join();
    }
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
    Some(root.join(rel))
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

fn respond(root: &Path, req: tiny_http::Request) -> std::io::Result<()> {
    if req.method() != &tiny_http::Method::Get {
        return req.respond(tiny_http::Response::empty(405));
    }
    match resolve(root, req.url())
        .and_then(|p| std::fs::File::open(p).ok())
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
    {
        Some(f) => req.respond(tiny_http::Response::from_file(f)),
        None => req.respond(tiny_http::Response::empty(404)),
    }
}
