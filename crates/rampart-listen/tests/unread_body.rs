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
use rampart_testkit::http::{Conn, Message};
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

/// Sends a request announcing a 5-byte body (and the body if `send_body`), then reads the
/// answer's head, lower-cased.
async fn answer_head(addr: std::net::SocketAddr, path: &str, send_body: bool) -> String {
    let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
    let headers = [
        ("host", "test"),
        ("content-type", "application/json"),
        ("content-length", "5"),
    ];
    let body: &[u8] = if send_body { b"false" } else { b"" };
    conn.write_request("POST", path, &headers, body)
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), conn.read_response())
        .await
        .expect("an answer within 30 s")
        .unwrap_or_else(|e| panic!("closed before an answer: {e}"));
    let head = Message {
        body: Vec::new(),
        ..answer
    };
    String::from_utf8_lossy(&head.to_bytes()).to_lowercase()
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
