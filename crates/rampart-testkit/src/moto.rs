//! A real S3-compatible server for the artifact-store tests: moto (`moto[server]` from PyPI,
//! pinned in scripts/requirements-bench.txt, which scripts/test.sh installs for `python3`), run
//! as `python3 -m moto.server` on a free loopback port and killed when dropped. The tests FAIL
//! (never skip) when moto is missing, saying how to install it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long moto may take to start (it imports a lot of Python).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Credentials moto accepts (it checks none); set so no real credential lookup happens.
pub const ACCESS_KEY: &str = "rampart-test";
pub const SECRET_KEY: &str = "rampart-test-secret";
pub const REGION: &str = "us-east-1";

/// A running moto server, killed (and reaped) when dropped.
pub struct Moto {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One request without a body (moto checks no signatures): the status code and the body.
fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let answer = crate::http::BlockingClient::new(&format!("http://{addr}"), None)
        .with_timeout(Duration::from_secs(10))
        .request(method, path, &[("Connection", "close")], b"")?;
    Ok((answer.status, answer.body))
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Moto {
        let check = Command::new("python3")
            .args(["-c", "import moto.server, flask; print(moto.__version__)"])
            .output()
            .expect("python3 runs (scripts/test.sh installs it)");
        assert!(
            check.status.success(),
            "moto[server] is not installed for python3, and the artifact-store tests need a real \
             S3-compatible server: run scripts/test.sh, or \
             `python3 -m pip install -r scripts/requirements-bench.txt`\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut last_log = String::new();
        // A port found free can be taken before moto binds it: try a few.
        for _ in 0..3 {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let log = std::env::temp_dir().join(format!(
                "rampart-moto-{}-{}.log",
                std::process::id(),
                addr.port()
            ));
            let child = Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
                .arg(addr.port().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(&log).expect("create the moto log"),
                ))
                .spawn()
                .expect("python3 -m moto.server starts");
            let mut moto = Moto { child, addr, log };
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if matches!(request(addr, "GET", "/"), Ok((200, _))) {
                    return moto;
                }
                if moto.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last_log = std::fs::read_to_string(&moto.log).unwrap_or_default();
        }
        panic!("moto did not start on a free loopback port; its log:\n{last_log}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = request(self.addr, "PUT", &format!("/{name}")).expect("moto answers");
        assert_eq!(
            status,
            200,
            "creating bucket {name}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// An object's bytes, read with boto3 (moto's own S3 client, not the code under test), or
    /// `None` if there is no such object.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        const GET: &str = "import sys, boto3
c = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2],
                 aws_secret_access_key=sys.argv[3], region_name=sys.argv[4])
try:
    sys.stdout.buffer.write(c.get_object(Bucket=sys.argv[5], Key=sys.argv[6])['Body'].read())
except c.exceptions.NoSuchKey:
    sys.exit(3)
";
        let out = Command::new("python3")
            .args([
                "-c",
                GET,
                &self.endpoint(),
                ACCESS_KEY,
                SECRET_KEY,
                REGION,
                bucket,
                key,
            ])
            .output()
            .expect("python3 runs");
        match out.status.code() {
            Some(0) => Some(out.stdout),
            Some(3) => None,
            _ => panic!(
                "reading {bucket}/{key} with boto3: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// Object-store options (the `AWS_*` keys, lower case) that point at this server.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint_url", self.endpoint()),
            ("aws_access_key_id", ACCESS_KEY.into()),
            ("aws_secret_access_key", SECRET_KEY.into()),
            ("aws_region", REGION.into()),
            ("aws_allow_http", "true".into()),
        ]
    }

    /// The same as environment variables, for a `rampart` child process.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v))
            .collect()
    }
}
