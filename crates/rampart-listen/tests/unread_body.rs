//! An answer given before the request body was read says `Connection: close`: hyper closes such
//! a connection after the answer (unless the rest of the body happens to be buffered already),
//! and a client that meanwhile sends its next request on it loses that request. Found by the
//! schemathesis run against the update server (a refused credential or an unknown id, answered
//! before the body, reset about one in eight of the next requests on keep-alive connections).

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use rampart_listen::{HttpOptions, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Starts the serve loop on loopback with a route that refuses without reading the body and
/// one that reads it; returns the address.
async fn server() -> std::net::SocketAddr {
    let router = Router::new()
        .route("/refuse", post(|| async { StatusCode::UNAUTHORIZED }))
        .route(
            "/read",
            post(|body: Bytes| async move { body.len().to_string() }),
        );
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(serve(
        tcp,
        router,
        HttpOptions {
            header_timeout: Duration::from_secs(30),
            shutdown_grace: None,
        },
        |_, peer| peer,
        std::future::pending(),
    ));
    addr
}

/// Sends `head` (a request announcing a 5-byte body), then reads the answer's head, lower-cased.
async fn answer_head(addr: std::net::SocketAddr, path: &str, send_body: bool) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    if send_body {
        conn.write_all(b"false").await.unwrap();
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        assert!(n > 0, "closed before an answer: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).to_lowercase()
}

#[tokio::test]
async fn an_answer_before_the_body_is_read_says_connection_close() {
    let addr = server().await;
    // The body is not sent before the answer: the handler answered without reading it.
    let refused = answer_head(addr, "/refuse", false).await;
    assert!(refused.starts_with("http/1.1 401"), "{refused}");
    assert!(
        refused.contains("\r\nconnection: close\r\n"),
        "an answer given before the body was read must end the connection and say so:\n{refused}"
    );
}

#[tokio::test]
async fn an_answer_after_the_body_was_read_keeps_the_connection() {
    let addr = server().await;
    let read = answer_head(addr, "/read", true).await;
    assert!(read.starts_with("http/1.1 200"), "{read}");
    assert!(!read.contains("connection: close"), "{read}");
}
