//! Mutual TLS with a device key that never leaves a PKCS#11 token (SoftHSM2), against the real
//! update server.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised (once per process). Rather than
//! mutate the environment of the test process, the test prepares a token in a temporary
//! directory and re-runs itself as a child process with that environment; the child runs the
//! whole suite once, in one thread.
//!
//! Needs SoftHSM2 (Debian package `softhsm2`). Without it the test fails; it never skips.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rampart_agent::tls::{ClientKey, TlsError, TokenKeyRef, device_agent};
use rampart_core::Scheme;
use rampart_keys::Signer as _;
use rampart_keys::pkcs11::{ModuleConfig, Pkcs11Signer};
use rampart_pki::CertificateAuthority;
use rampart_tuf_client::{Fetcher as _, HttpFetcher};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const CHILD_ENV: &str = "RAMPART_AGENT_PKCS11_TLS_CHILD";
const MODULE_VAR: &str = "RAMPART_AGENT_TEST_PKCS11_MODULE";
const TEST_NAME: &str = "device_key_on_a_pkcs11_token_authenticates_the_agent";
const TOKEN: &str = "rampart-agent-test";
const SO_PIN: &str = "12345678";
const USER_PIN: &str = "1234";

#[test]
fn device_key_on_a_pkcs11_token_authenticates_the_agent() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let module = PathBuf::from(std::env::var_os(MODULE_VAR).expect("module path"));
        suite(&module);
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let hsm = rampart_testkit::softhsm::SoftHsm::init(tmp.path(), TOKEN, SO_PIN, USER_PIN);
    let (module, conf) = (hsm.module, hsm.conf);

    let child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env(MODULE_VAR, &module)
        .env("SOFTHSM2_CONF", &conf)
        .env("TMPDIR", tmp.path())
        .output()
        .expect("re-running the test binary");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success(),
        "the SoftHSM2 suite failed:\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    println!("--- SoftHSM2 suite (child process) ---\n{stdout}{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the SoftHSM2 suite did not run:\n{stdout}\n{stderr}"
    );
}

/// The DER SubjectPublicKeyInfo of a token key, for the CA to certify.
fn spki_of(signer: &Pkcs11Signer) -> Vec<u8> {
    let alg = match signer.scheme() {
        Scheme::EcdsaP256Sha256 => rustls_pki_types::alg_id::ECDSA_P256,
        Scheme::Ed25519 => rustls_pki_types::alg_id::ED25519,
        other => panic!("unexpected scheme {other:?}"),
    };
    let material = signer.public_key().material().unwrap();
    rustls::sign::public_key_to_spki(&alg, material).to_vec()
}

fn token_key(module: &Path, pin: &str, object: &str) -> ClientKey {
    ClientKey::Pkcs11 {
        module: module.to_path_buf(),
        pin: pin.to_string(),
        key: TokenKeyRef {
            token: TOKEN.to_string(),
            object: object.to_string(),
        },
    }
}

/// One poll of the real server, as the director client does it; returns the device id the
/// server identified the caller as (from the verified client certificate).
fn poll(fetcher: &HttpFetcher, base: &str) -> Result<String, String> {
    let url = format!("{base}/device/v1/poll");
    let mut response = fetcher
        .agent()
        .post(&url)
        .header("content-type", "application/json")
        .send(&b"{}"[..])
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("HTTP {status}: {body}"));
    }
    let answer: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(answer["device_id"].as_str().unwrap().to_string())
}

/// Runs in the child process, with SOFTHSM2_CONF set.
fn suite(module: &Path) {
    let cfg = ModuleConfig {
        module_path: module.to_path_buf(),
        pin: USER_PIN.to_string(),
    };
    let p256_ref = TokenKeyRef::parse(&format!("token={TOKEN};object=device-p256")).unwrap();
    let ed_ref = TokenKeyRef::parse(&format!("token={TOKEN};object=device-ed25519")).unwrap();
    let p256 = Pkcs11Signer::generate(&cfg, &p256_ref, Scheme::EcdsaP256Sha256)
        .expect("generate the P-256 device key on the token");
    let ed = Pkcs11Signer::generate(&cfg, &ed_ref, Scheme::Ed25519)
        .expect("generate the Ed25519 device key on the token");

    let ca = CertificateAuthority::generate("Rampart Test Manufacturer CA", 30).unwrap();
    let server_cert = ca.issue_server(&["localhost", "127.0.0.1"], 30).unwrap();
    let p256_cert = ca
        .issue_device_for_public_key("dev-token-p256", &spki_of(&p256), 30)
        .unwrap();
    let ed_cert = ca
        .issue_device_for_public_key("dev-token-ed25519", &spki_of(&ed), 30)
        .unwrap();
    let ca_pem = ca.cert_pem().as_bytes();

    // The real update server, with SQLite, on a runtime of its own.
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tls = rampart_pki::server_config(
        &server_cert.cert_pem,
        &server_cert.key_pem,
        ca.cert_pem(),
        &[],
    )
    .unwrap();
    let config = rampart_server::ServerConfig::new(
        format!("sqlite://{}", dir.path().join("server.db").display()),
        tls,
        "127.0.0.1:0".parse().unwrap(),
    );
    let server = rt
        .block_on(rampart_server::Server::bind(config))
        .expect("the update server starts");
    let base = format!("https://localhost:{}", server.local_addr().port());
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(server.serve(async {
        let _ = stopped.await;
    }));

    // 1. The token key (P-256) authenticates the agent: the server names the device from the
    //    certificate, and so does the agent.
    let (fetcher, id) = device_agent(
        ca_pem,
        p256_cert.as_bytes(),
        &token_key(module, USER_PIN, "device-p256"),
    )
    .expect("the agent's TLS identity on the token");
    assert_eq!(id, "dev-token-p256");
    assert_eq!(poll(&fetcher, &base).unwrap(), "dev-token-p256");
    // A second request may reuse the pooled connection; a fresh agent makes a fresh handshake.
    assert_eq!(poll(&fetcher, &base).unwrap(), "dev-token-p256");
    println!("P-256 token key: polled over mutual TLS as {id}");

    // 2. Ed25519 on the token works as well.
    let (fetcher_ed, id_ed) = device_agent(
        ca_pem,
        ed_cert.as_bytes(),
        &token_key(module, USER_PIN, "device-ed25519"),
    )
    .expect("the Ed25519 identity on the token");
    assert_eq!(id_ed, "dev-token-ed25519");
    assert_eq!(poll(&fetcher_ed, &base).unwrap(), "dev-token-ed25519");
    println!("Ed25519 token key: polled over mutual TLS as {id_ed}");

    // 2b. The token keys also sign evidence bundles and agent-log anchors (through the same
    //     rustls signing key), verifiable with the certificate's key.
    for (cert, object) in [(&p256_cert, "device-p256"), (&ed_cert, "device-ed25519")] {
        let (key, certificate) = rampart_agent::tls::device_signing_key(
            cert.as_bytes(),
            &token_key(module, USER_PIN, object),
        )
        .expect("the token key as the evidence signer");
        let key = rampart_agent::evidence::DeviceKey::new(key, certificate.to_vec());
        let signature = key.sign(b"a manifest").expect("the token signs");
        let spki = rampart_incident::evidence::certificate_spki(key.certificate()).unwrap();
        signature.verify(&spki, b"a manifest").unwrap();
        assert!(signature.verify(&spki, b"another manifest").is_err());
        println!("{object}: signed evidence as {}", signature.algorithm);
    }

    // 3. A PEM key goes through the same connector.
    let pem_dev = ca.issue_device("dev-pem", 30).unwrap();
    let (fetcher_pem, id_pem) = device_agent(
        ca_pem,
        pem_dev.cert_pem.as_bytes(),
        &ClientKey::Pem(pem_dev.key_pem.as_bytes().to_vec()),
    )
    .unwrap();
    assert_eq!(poll(&fetcher_pem, &base).unwrap(), id_pem);
    let polls = metrics.polls();
    assert_eq!(polls, 4);

    // 4. Local refusals, before any connection is made (the server sees no new poll).
    let err = device_agent(
        ca_pem,
        p256_cert.as_bytes(),
        &token_key(module, "0000", "device-p256"),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TlsError::WrongPin { token } if token == TOKEN),
        "{err}"
    );
    assert!(err.to_string().contains("wrong PIN"), "{err}");
    println!("wrong PIN: {err}");

    // A certificate for another key (here: the Ed25519 token key's) with the P-256 token key.
    let err = device_agent(
        ca_pem,
        ed_cert.as_bytes(),
        &token_key(module, USER_PIN, "device-p256"),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TlsError::KeyMismatch { key } if key.contains("object=device-p256")),
        "{err}"
    );
    println!("mismatched certificate: {err}");
    // And a certificate for a CA-generated key of the same algorithm.
    let err = device_agent(
        ca_pem,
        pem_dev.cert_pem.as_bytes(),
        &token_key(module, USER_PIN, "device-p256"),
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");

    let err = device_agent(
        ca_pem,
        p256_cert.as_bytes(),
        &token_key(module, USER_PIN, "no-such-key"),
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::KeyNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("device-p256"),
        "lists the keys present: {err}"
    );
    println!("missing key: {err}");

    let err = device_agent(
        ca_pem,
        p256_cert.as_bytes(),
        &ClientKey::pkcs11_from_uri(module, USER_PIN, "pkcs11:token=other;object=device-p256")
            .unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::TokenNotFound { .. }), "{err}");

    let err = device_agent(
        ca_pem,
        p256_cert.as_bytes(),
        &ClientKey::Pkcs11 {
            module: PathBuf::from("/nonexistent/libpkcs11.so"),
            pin: USER_PIN.into(),
            key: p256_ref.clone(),
        },
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::Module { .. }), "{err}");
    assert_eq!(metrics.polls(), polls, "nothing reached the server");

    // 5. The server still refuses a token key whose certificate another CA issued.
    let rogue = CertificateAuthority::generate("Rogue CA", 30).unwrap();
    let rogue_cert = rogue
        .issue_device_for_public_key("dev-token-p256", &spki_of(&p256), 30)
        .unwrap();
    let (rogue_fetcher, _) = device_agent(
        ca_pem,
        rogue_cert.as_bytes(),
        &token_key(module, USER_PIN, "device-p256"),
    )
    .unwrap();
    let err = poll(&rogue_fetcher, &base).unwrap_err();
    println!("certificate from another CA: {err}");
    assert_eq!(metrics.polls(), polls);

    // 6. TLS 1.2 with the token key, against a TLS 1.2-only server requiring a client
    //    certificate from the CA.
    let (addr, seen) = tls12_server(&ca, &server_cert.cert_pem, &server_cert.key_pem);
    let body = fetcher_fresh(ca_pem, &p256_cert, module)
        .fetch(&format!("https://127.0.0.1:{}/hello", addr.port()), 1024)
        .expect("fetch over TLS 1.2 with the token key");
    assert_eq!(body, b"ok");
    let (version, peer_id) = seen.join().unwrap();
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(peer_id.as_deref(), Some("dev-token-p256"));
    println!("TLS 1.2: fetched as {peer_id:?}");

    let _ = stop.send(());
    rt.block_on(serving).unwrap().unwrap();
}

fn fetcher_fresh(ca_pem: &[u8], cert_pem: &str, module: &Path) -> HttpFetcher {
    device_agent(
        ca_pem,
        cert_pem.as_bytes(),
        &token_key(module, USER_PIN, "device-p256"),
    )
    .unwrap()
    .0
}

/// What the TLS 1.2 server saw: the negotiated version and the client certificate's device id.
type Seen = std::thread::JoinHandle<(Option<rustls::ProtocolVersion>, Option<String>)>;

/// A one-connection HTTPS server that speaks only TLS 1.2 and requires a client certificate
/// from `ca`. Returns its address and, when joined, what it saw.
fn tls12_server(
    ca: &CertificateAuthority,
    cert_pem: &str,
    key_pem: &str,
) -> (std::net::SocketAddr, Seen) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut reader = BufReader::new(&mut tls);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
        }
        let version = tls.conn.protocol_version();
        let peer = tls
            .conn
            .peer_certificates()
            .and_then(|certs| rampart_pki::device_id_from_cert(&certs[0]));
        tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
        tls.conn.send_close_notify();
        let _ = tls.flush();
        (version, peer)
    });
    (addr, handle)
}
