//! The witness's HTTP service bounds its connections like the update server's listeners: a
//! request head that never completes is closed at the head deadline (10 s), instead of
//! holding a connection for as long as the client keeps sending a byte now and then.

use std::sync::Arc;
use std::time::Duration;

use rampart_log::note::NoteSigner;
use rampart_tlog::witness::{Witness, WitnessConfig, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_closes_a_request_head_that_never_completes() {
    let dir = tempfile::tempdir().unwrap();
    let witness = Arc::new(
        Witness::new(WitnessConfig {
            signer: NoteSigner::cosigner_from_seed("witness.example/bounds", [7; 32]).unwrap(),
            state_dir: dir.path().to_path_buf(),
            logs: vec![],
        })
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(witness, listener));

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let dribble = tokio::spawn(async move {
        // Up to 40 s of one byte every 500 ms: far past the 10 s deadline.
        for _ in 0..80 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(35), async {
        let mut buf = [0u8; 256];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .expect("the witness closed the never-ending request head");
    dribble.abort();
}
