//! The one HTTP/1.1 client of the tests and benchmarks: plain TCP, TLS or mutual TLS (rustls),
//! keep-alive, `Content-Length` bodies, `HEAD` answers, and reading requests too (for tests
//! that stand between a device and the server).
//!
//! [`Conn`] is the async client over any stream; [`BlockingClient`] wraps it for tests that run
//! no runtime of their own (a base URL, default headers, a deadline per request, reconnecting
//! when the server closed the keep-alive connection); [`ManagementClient`] is an operator
//! calling the management API with a bearer token. Every request is written the same way:
//! `Host`, then `Content-Length` and, for a body, `Content-Type: application/json` unless the
//! caller gave them, then the caller's headers.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// One HTTP message: an answer (`status` set) or a request (`status` 0).
#[derive(Debug, Clone)]
pub struct Message {
    /// The status line or request line.
    pub start: String,
    /// The status code of an answer; 0 for a request.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Message {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; asserts the answer says it is JSON.
    pub fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {}", self.status, self.text()))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a JSON error answer with this status and code (an object of `error` and a
    /// non-empty `detail`, nothing else), and returns its detail.
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        assert_eq!(body["error"], code, "{body}");
        let detail = body["detail"].as_str().unwrap().to_owned();
        assert!(!detail.is_empty());
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
        detail
    }

    /// The message as it goes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// What [`Conn::read_message`] reads, which decides what a missing `Content-Length` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A request: no `Content-Length`, no body.
    Request,
    /// An answer: no `Content-Length` is an error unless the status has no body (204, 304).
    Answer,
    /// The answer to a `HEAD` request: never a body, whatever `Content-Length` says.
    AnswerToHead,
}

/// The streams a [`Conn`] can run over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// An HTTP/1.1 connection: requests written, messages read one at a time (keep-alive).
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

/// A TLS (or mutual-TLS, as the configuration says) connection.
pub type TlsConn = Conn<TlsStream<TcpStream>>;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// The stream itself, e.g. to watch the server close it, or to write raw bytes.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// The stream, for raw writes between messages.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Writes one request (see the module documentation for the headers added).
    pub async fn write_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !has("host") {
            head.push_str("Host: localhost\r\n");
        }
        if !has("content-length") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if !has("content-type") && !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.write_all(body).await?;
        self.stream.flush().await
    }

    /// One request and its answer.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Message> {
        self.write_request(method, path, headers, body).await?;
        let reading = if method == "HEAD" {
            Reading::AnswerToHead
        } else {
            Reading::Answer
        };
        self.read_message(reading).await
    }

    /// `GET`; panics if the connection fails.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Message {
        self.send("GET", path, headers, b"").await.unwrap()
    }

    /// `POST` of a JSON body; panics if the connection fails.
    pub async fn post(&mut self, path: &str, body: &Value) -> Message {
        self.send("POST", path, &[], body.to_string().as_bytes())
            .await
            .unwrap()
    }

    /// `PUT` of a JSON body; panics if the connection fails.
    pub async fn put(&mut self, path: &str, body: &Value) -> Message {
        self.send("PUT", path, &[], body.to_string().as_bytes())
            .await
            .unwrap()
    }

    /// Reads more bytes; `UnexpectedEof` when the peer closed the connection.
    pub async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Whether the connection can carry another request: the peer has not closed it and sent
    /// nothing unasked (looked at without waiting).
    pub async fn is_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let peek = std::future::poll_fn(|cx| {
            let mut chunk = [0u8; 1];
            let mut read = tokio::io::ReadBuf::new(&mut chunk);
            match std::pin::Pin::new(&mut self.stream).poll_read(cx, &mut read) {
                std::task::Poll::Pending => std::task::Poll::Ready(true),
                std::task::Poll::Ready(_) => std::task::Poll::Ready(false),
            }
        });
        peek.await
    }

    /// Reads one answer.
    pub async fn read_response(&mut self) -> io::Result<Message> {
        self.read_message(Reading::Answer).await
    }

    /// Reads one message.
    pub async fn read_message(&mut self, reading: Reading) -> io::Result<Message> {
        let head_end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or("").to_owned();
        let status = match reading {
            Reading::Request => 0,
            Reading::Answer | Reading::AnswerToHead => start
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?,
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| {
                v.parse::<usize>()
                    .map_err(|_| io::Error::other(format!("bad Content-Length in {head:?}")))
            })
            .transpose()?;
        let length = match (reading, length, status) {
            (Reading::AnswerToHead, _, _) => 0,
            (_, Some(n), _) => n,
            (Reading::Request, None, _) | (Reading::Answer, None, 204 | 304) => 0,
            (Reading::Answer, None, _) => {
                return Err(io::Error::other(format!("no Content-Length in {head:?}")));
            }
        };
        while self.buf.len() < head_end + 4 + length {
            self.fill().await?;
        }
        let body = self.buf[head_end + 4..head_end + 4 + length].to_vec();
        self.buf.drain(..head_end + 4 + length);
        Ok(Message {
            start,
            status,
            headers,
            body,
        })
    }
}

/// A TLS connection to `addr`, checking the server's certificate for `server_name` (a DNS name
/// or an IP address) against the configuration's roots; mutual TLS when the configuration
/// carries a client certificate.
pub async fn connect_tls(
    addr: SocketAddr,
    server_name: &str,
    config: &Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    // Requests go out in one write each; waiting to coalesce them only adds latency.
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| io::Error::other(format!("server name {server_name:?}: {e}")))?;
    TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// A client configuration trusting the CA certificate `ca_pem`, presenting no certificate.
pub fn tls_config(ca_pem: &str) -> Arc<ClientConfig> {
    rampart_pki::client_config_without_identity(ca_pem).expect("a CA certificate in PEM")
}

/// A mutual-TLS client configuration: trusts `ca_pem`, presents `cert_pem` with `key_pem`.
pub fn mutual_tls_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Arc<ClientConfig> {
    rampart_pki::client_config(ca_pem, cert_pem, key_pem).expect("a certificate and its key")
}

/// Whether `e` says the peer closed the connection.
fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A base URL split into what a connection needs.
struct Origin {
    addr: SocketAddr,
    host: String,
    tls: bool,
}

fn origin(base: &str) -> Origin {
    let (tls, rest) = if let Some(rest) = base.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = base.strip_prefix("http://") {
        (false, rest)
    } else {
        panic!("{base:?} is not an http:// or https:// URL")
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("{base:?} names no reachable host:port"));
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Origin { addr, host, tls }
}

/// A blocking client on a base URL (`http://HOST:PORT` or `https://HOST:PORT`, any path after it
/// is ignored): each request reuses the keep-alive connection, or opens a new one when there is
/// none or the server closed it.
///
/// It works inside an async test too: the request then runs on a thread of its own (a runtime
/// cannot block inside another).
pub struct BlockingClient {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    origin: Origin,
    tls: Option<Arc<ClientConfig>>,
    headers: Vec<(String, String)>,
    timeout: Duration,
    conn: Mutex<Option<Conn<Box<dyn Stream>>>>,
}

impl BlockingClient {
    /// `tls` is needed for an `https://` base: the CA to trust, and the client certificate for
    /// mutual TLS.
    pub fn new(base: &str, tls: Option<Arc<ClientConfig>>) -> BlockingClient {
        let origin = origin(base);
        assert!(
            !origin.tls || tls.is_some(),
            "{base} needs a TLS client configuration"
        );
        BlockingClient {
            runtime: Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the blocking client"),
            ),
            origin,
            tls,
            headers: Vec::new(),
            timeout: Duration::from_secs(60),
            conn: Mutex::new(None),
        }
    }

    /// Sends `name: value` with every request (e.g. `Authorization`).
    pub fn with_header(mut self, name: &str, value: &str) -> BlockingClient {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The longest a request may take, from connecting to the end of the answer.
    pub fn with_timeout(mut self, timeout: Duration) -> BlockingClient {
        self.timeout = timeout;
        self
    }

    /// One request and its answer. A failed request drops the connection (the next one opens
    /// a fresh one); a request on a reused connection the server had closed is sent again once
    /// on a new connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Message> {
        let mut all: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.extend_from_slice(headers);
        let host = format!("{}:{}", self.origin.host, self.origin.addr.port());
        if !all.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            all.push(("Host", &host));
        }
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the client");
        let exchange = || {
            let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            runtime.block_on(async {
                tokio::time::timeout(self.timeout, async {
                    // A kept connection the server has closed meanwhile (its idle limit) is
                    // replaced before anything is sent on it.
                    let kept = match slot.take() {
                        Some(mut conn) => conn.is_open().await.then_some(conn),
                        None => None,
                    };
                    let reused = kept.is_some();
                    let mut conn = match kept {
                        Some(conn) => conn,
                        None => self.connect().await?,
                    };
                    // Sent again on a new connection only when repeating it is harmless: a
                    // POST the server may have carried out before dying is not repeated.
                    let idempotent =
                        matches!(method, "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS");
                    let answer = match conn.send(method, path, &all, body).await {
                        Err(e) if reused && idempotent && closed(&e) => {
                            conn = self.connect().await?;
                            conn.send(method, path, &all, body).await
                        }
                        other => other,
                    }?;
                    let closes = answer
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                    if !closes {
                        *slot = Some(conn);
                    }
                    Ok(answer)
                })
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{method} {path}: no answer within {:?}", self.timeout),
                    ))
                })
            })
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(exchange).join().expect("the request thread"))
        } else {
            exchange()
        }
    }

    async fn connect(&self) -> io::Result<Conn<Box<dyn Stream>>> {
        let stream: Box<dyn Stream> = match (&self.tls, self.origin.tls) {
            (Some(config), true) => {
                Box::new(connect_tls(self.origin.addr, &self.origin.host, config).await?)
            }
            _ => Box::new(TcpStream::connect(self.origin.addr).await?),
        };
        Ok(Conn::new(stream))
    }

    /// `GET`; panics if there is no answer.
    pub fn get(&self, path: &str) -> Message {
        self.request("GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `POST` of `body`; panics if there is no answer.
    pub fn post(&self, path: &str, body: &[u8]) -> Message {
        self.request("POST", path, &[], body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async test's thread must not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An operator on the management API: HTTPS trusting the server's CA, a bearer token, JSON.
pub struct ManagementClient {
    client: BlockingClient,
}

impl ManagementClient {
    /// `base` is the management API's URL as the server prints it (`https://HOST:PORT/...`);
    /// `ca_pem` the CA that signed the server's certificate.
    pub fn new(base: &str, token: &str, ca_pem: &str) -> ManagementClient {
        ManagementClient {
            client: BlockingClient::new(base, Some(tls_config(ca_pem)))
                .with_header("Authorization", &format!("Bearer {token}")),
        }
    }

    /// `METHOD PATH` (a body of `{}` for anything but `GET` when none is given): the status and
    /// the JSON answer (a JSON string holding the text when it is not JSON). Panics if there is
    /// no answer.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = match method {
            "GET" | "HEAD" => Vec::new(),
            _ => body.unwrap_or(json!({})).to_string().into_bytes(),
        };
        let answer = self
            .client
            .request(method, path, &[], &body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text = answer.text();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (answer.status, value)
    }

    /// `GET PATH`, which must answer 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_read_one_at_a_time() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\netag: \"ab\"\r\n\r\n{}HTTP/1.1 304 Not Modified\r\netag: \"ab\"\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n".to_vec();
        let mut conn = Conn::new(tokio::io::join(&wire[..], tokio::io::sink()));
        let r = conn.read_response().await.unwrap();
        assert_eq!(
            (r.status, r.header("ETag"), &r.body[..]),
            (200, Some("\"ab\""), &b"{}"[..])
        );
        let r = conn.read_response().await.unwrap();
        assert_eq!((r.status, r.body.len()), (304, 0));
        // The answer to HEAD has no body, whatever its Content-Length says.
        let r = conn.read_message(Reading::AnswerToHead).await.unwrap();
        assert_eq!((r.status, r.header("content-length")), (200, Some("9")));
        assert!(conn.read_response().await.is_err());
    }

    #[tokio::test]
    async fn requests_are_written_with_length_and_type_unless_given() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut conn = Conn::new(client);
        conn.write_request("POST", "/x", &[("X-A", "1")], b"{}")
            .await
            .unwrap();
        conn.write_request("GET", "/y", &[("Host", "h"), ("Content-Length", "0")], b"")
            .await
            .unwrap();
        drop(conn);
        let mut peer = Conn::new(&mut server);
        let first = peer.read_message(Reading::Request).await.unwrap();
        assert_eq!(first.start, "POST /x HTTP/1.1");
        assert_eq!(first.header("host"), Some("localhost"));
        assert_eq!(first.header("content-type"), Some("application/json"));
        assert_eq!(
            (first.header("x-a"), &first.body[..]),
            (Some("1"), &b"{}"[..])
        );
        let second = peer.read_message(Reading::Request).await.unwrap();
        assert_eq!(second.header("host"), Some("h"));
        assert_eq!(second.headers.len(), 2, "{second:?}");
        assert_eq!(
            second.to_bytes(),
            b"GET /y HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_missing_content_length_is_an_error_only_where_a_body_is_due() {
        let read = |wire: &'static [u8], reading| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(async move {
                    Conn::new(tokio::io::join(wire, tokio::io::sink()))
                        .read_message(reading)
                        .await
                })
        };
        assert!(read(b"HTTP/1.1 200 OK\r\n\r\n", Reading::Answer).is_err());
        assert_eq!(
            read(b"HTTP/1.1 204 No Content\r\n\r\n", Reading::Answer)
                .unwrap()
                .status,
            204
        );
        assert!(
            read(b"GET / HTTP/1.1\r\n\r\n", Reading::Request)
                .unwrap()
                .body
                .is_empty()
        );
    }

    #[test]
    fn base_urls_give_the_address_and_the_name_to_check() {
        let o = origin("https://127.0.0.1:8443/api/v1/");
        assert_eq!(
            (o.addr.port(), o.host.as_str(), o.tls),
            (8443, "127.0.0.1", true)
        );
        let o = origin("http://[::1]:80");
        assert_eq!((o.host.as_str(), o.tls), ("::1", false));
    }

    /// A server on loopback that answers `answers_per_connection` requests on each connection
    /// with `ok` and the connection's number, then closes it.
    fn serve(answers_per_connection: usize) -> SocketAddr {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                for _ in 0..answers_per_connection {
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap() > 0 && !line.ends_with("\r\n\r\n") {}
                    let body = format!("ok{n}");
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .unwrap();
                }
            }
        });
        addr
    }

    fn exchange_three(addr: SocketAddr) -> Vec<String> {
        let client = BlockingClient::new(&format!("http://{addr}/"), None);
        (0..3).map(|_| client.get("/").text()).collect()
    }

    #[test]
    fn the_blocking_client_keeps_its_connection_and_reconnects_when_it_is_closed() {
        assert_eq!(exchange_three(serve(2)), ["ok0", "ok0", "ok1"]);
    }

    #[tokio::test]
    async fn the_blocking_client_works_inside_an_async_test() {
        assert_eq!(exchange_three(serve(3)), ["ok0", "ok0", "ok0"]);
    }
}
