//! A small plain-HTTP service (the transparency log, a witness) under the attacks the update
//! server's listeners were found open to: request heads sent one byte at a time and floods of
//! idle connections from one source, while a client from another source is still served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use rampart_listen::{
    Admission, AdmissionCounters, HttpOptions, ListenerCaps, PlainListener, serve,
};
use rampart_testkit::http::Conn;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

async fn start(
    caps: ListenerCaps,
    header_timeout: Duration,
) -> (SocketAddr, Arc<AdmissionCounters>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let counters = Arc::new(AdmissionCounters::default());
    let listener = PlainListener::new(
        tcp,
        Duration::from_secs(60),
        Admission::new(caps, counters.clone()),
    );
    let router = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve(
        listener,
        router,
        HttpOptions {
            header_timeout,
            shutdown_grace: Some(Duration::from_secs(1)),
        },
        |_, peer| peer,
        std::future::pending(),
    ));
    (addr, counters)
}

async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// `GET /` from `source` on a connection of its own: the answer's status line.
async fn get_root(source: &str, addr: SocketAddr) -> String {
    let stream = connect_from(source, addr).await.unwrap();
    Conn::new(stream)
        .send("GET", "/", &[("Host", "x"), ("Connection", "close")], b"")
        .await
        .unwrap()
        .start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_take_every_slot_of_a_plain_service() {
    let caps = ListenerCaps {
        max_connections: 64,
        max_per_source: 16,
    };
    // A 10 s head deadline: without the per-source cap the attack would hold every slot and
    // the other client would wait about that long.
    let (addr, counters) = start(caps, Duration::from_secs(10)).await;
    let mut attack = tokio::task::JoinSet::new();
    for i in 0..200 {
        attack.spawn(async move {
            let Ok(mut stream) = connect_from("127.0.0.1", addr).await else {
                return;
            };
            if i % 2 == 0 {
                // Slow headers.
                if stream
                    .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
                    .await
                    .is_err()
                {
                    return;
                }
                while stream.write_all(b"a").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            } else {
                // Idle.
                let _ = stream.read(&mut [0u8; 16]).await;
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while counters.open.load(Ordering::Relaxed) < caps.max_per_source as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the attack holds its share");
    let answer = tokio::time::timeout(Duration::from_secs(3), get_root("127.0.0.2", addr))
        .await
        .expect("another source is served within 3 s during the attack");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(counters.refused_per_source.load(Ordering::Relaxed) > 0);
    assert!(counters.open.load(Ordering::Relaxed) <= caps.max_connections as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_ending_request_head_is_closed_at_the_deadline() {
    let caps = ListenerCaps {
        max_connections: 8,
        max_per_source: 8,
    };
    let (addr, _) = start(caps, Duration::from_secs(1)).await;
    let stream = connect_from("127.0.0.1", addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let dribble = tokio::spawn(async move {
        for _ in 0..150 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 256];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .expect("the server closed the never-ending head");
    dribble.abort();
}
