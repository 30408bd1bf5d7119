//! `HardwareTpm` against a real (software) TPM 2.0: swtpm per test, through libtss2's swtpm TCTI,
//! its outputs checked by tpm2-tools (`tpm2_checkquote`, `tpm2_makecredential`) and by rustls.
//!
//! swtpm serves one client at a time, so each test drops its `HardwareTpm` (and every key
//! sharing its context) before running a tpm2-tools command against the same TPM.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use rampart_attest::device::TpmDevice as _;
use rampart_pki::CertificateAuthority;
use rampart_testkit::swtpm::SwTpm;
use rampart_tpm::counter::MAX_RAISE_STEPS;
use rampart_tpm::{EkAlgorithm, HardwareTpm, TpmOptions};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};

fn open(tpm: &SwTpm) -> HardwareTpm {
    HardwareTpm::open(&tpm.tcti(), TpmOptions::default()).expect("open the swtpm")
}

fn sha256(data: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .try_into()
        .unwrap()
}

/// A TPM2B (big-endian u16 size, then the bytes), as tpm2-tools reads public areas.
fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    [&(bytes.len() as u16).to_be_bytes()[..], bytes].concat()
}

/// The AK name: nameAlg SHA-256 (0x000B) || SHA-256(TPMT_PUBLIC).
fn name(public: &[u8]) -> Vec<u8> {
    [&[0x00, 0x0b][..], &sha256(public)].concat()
}

fn write(dir: &Path, file: &str, bytes: &[u8]) {
    std::fs::write(dir.join(file), bytes).unwrap();
}

#[test]
fn quote_verifies_with_tpm2_checkquote_and_the_ak_persists() {
    let swtpm = SwTpm::start();
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = open(&swtpm);
    let event = sha256(b"the booted slot's image");
    tpm.extend(13, &event).unwrap();
    let nonce = sha256(b"server nonce");
    let quote = tpm.quote(&nonce, &[16, 0, 13]).unwrap();
    let ak = tpm.attestation_key().unwrap();
    drop(tpm);

    write(dir.path(), "ak.pub", &tpm2b(&ak));
    write(dir.path(), "quote.msg", &quote.message);
    write(dir.path(), "quote.sig", &quote.signature);
    write(dir.path(), "quote.pcrs", &quote.pcrs);
    let check = |nonce: &[u8]| {
        swtpm.tpm2(
            dir.path(),
            "tpm2_checkquote",
            &[
                "-u",
                "ak.pub",
                "-m",
                "quote.msg",
                "-s",
                "quote.sig",
                "-f",
                "quote.pcrs",
                "-g",
                "sha256",
                "-q",
                &hex::encode(nonce),
            ],
        )
    };
    let good = check(&nonce);
    let out = String::from_utf8_lossy(&good.stdout).to_lowercase();
    assert!(
        good.status.success(),
        "tpm2_checkquote refused the quote:\n{out}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let pcr13 = sha256(&[[0u8; 32], event].concat());
    assert!(
        out.contains(&format!("13: 0x{}", hex::encode(pcr13))),
        "PCR 13 is the extend of the event:\n{out}"
    );
    assert!(
        !check(&sha256(b"another nonce")).status.success(),
        "tpm2_checkquote must refuse another nonce (or this test proves nothing)"
    );

    // The same AK after a reopen and after a power cycle: it is persistent.
    assert_eq!(open(&swtpm).attestation_key().unwrap(), ak);
    let mut swtpm = swtpm;
    swtpm.restart();
    assert_eq!(open(&swtpm).attestation_key().unwrap(), ak);
}

/// The credential file `tpm2_makecredential -o` writes: magic, version, TPM2B_ID_OBJECT,
/// TPM2B_ENCRYPTED_SECRET; returns the two TPM2B contents.
fn parse_credential(file: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(&file[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
    let take = |at: usize| {
        let len = usize::from(u16::from_be_bytes([file[at], file[at + 1]]));
        (file[at + 2..at + 2 + len].to_vec(), at + 2 + len)
    };
    let (blob, next) = take(8);
    let (secret, end) = take(next);
    assert_eq!(end, file.len());
    (blob, secret)
}

fn make_credential(swtpm: &SwTpm, dir: &Path, ek: &[u8], ak_name: &[u8], out: &str) {
    write(dir, "ek.pub", &tpm2b(ek));
    write(dir, "secret.bin", b"a secret for the enrolling AK...");
    swtpm.tpm2_ok(
        dir,
        "tpm2_makecredential",
        &[
            "-T",
            "none",
            "-e",
            "ek.pub",
            "-s",
            "secret.bin",
            "-n",
            &hex::encode(ak_name),
            "-o",
            out,
        ],
    );
}

fn activation(options: TpmOptions, expect_certificate: Option<&str>) {
    let swtpm = SwTpm::start();
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = HardwareTpm::open(&swtpm.tcti(), options.clone()).unwrap();
    let endorsement = tpm.endorsement().unwrap();
    let expected_certificate =
        expect_certificate.map(|file| std::fs::read(swtpm.ek_certificate_file(file)).unwrap());
    assert_eq!(endorsement.certificate, expected_certificate);
    let ak = tpm.attestation_key().unwrap();
    drop(tpm);

    make_credential(
        &swtpm,
        dir.path(),
        &endorsement.public,
        &name(&ak),
        "mine.cred",
    );
    let another_ak = name(b"the public area of another attestation key");
    make_credential(
        &swtpm,
        dir.path(),
        &endorsement.public,
        &another_ak,
        "theirs.cred",
    );
    let (blob, secret) = parse_credential(&std::fs::read(dir.path().join("mine.cred")).unwrap());
    let (their_blob, their_secret) =
        parse_credential(&std::fs::read(dir.path().join("theirs.cred")).unwrap());

    let mut tpm = HardwareTpm::open(&swtpm.tcti(), options).unwrap();
    assert_eq!(
        tpm.activate_credential(&blob, &secret).unwrap(),
        b"a secret for the enrolling AK..."
    );
    let err = tpm
        .activate_credential(&their_blob, &their_secret)
        .unwrap_err()
        .to_string();
    assert!(err.contains("another attestation key"), "{err}");
    // The TPM still works after the refusal (the policy session was flushed).
    assert_eq!(
        tpm.activate_credential(&blob, &secret).unwrap(),
        b"a secret for the enrolling AK..."
    );
}

#[test]
fn credential_activates_for_its_ak_only_rsa_ek_with_certificate() {
    activation(TpmOptions::default(), Some("ek-rsa2048.crt"));
}

#[test]
fn credential_activates_for_its_ak_only_ecc_ek() {
    // swtpm certifies a P-384 EK, not the P-256 one: no certificate at 0x01c0000a.
    activation(
        TpmOptions {
            ek_algorithm: EkAlgorithm::EccP256,
            ..TpmOptions::default()
        },
        None,
    );
}

#[test]
fn counter_survives_a_power_cycle_and_never_goes_down() {
    let mut swtpm = SwTpm::start();
    let mut tpm = open(&swtpm);
    assert_eq!(
        tpm.security_floor().unwrap(),
        0,
        "an undefined counter reads 0"
    );
    tpm.raise_security_floor(5).unwrap();
    assert_eq!(tpm.security_floor().unwrap(), 5);
    drop(tpm);

    // New process state, TPM power-cycled: the floor is in the TPM.
    swtpm.restart();
    let mut tpm = open(&swtpm);
    assert_eq!(tpm.security_floor().unwrap(), 5);
    tpm.raise_security_floor(3).unwrap();
    assert_eq!(tpm.security_floor().unwrap(), 5, "a raise below leaves it");
    tpm.raise_security_floor(7).unwrap();
    assert_eq!(tpm.security_floor().unwrap(), 7);
}

#[test]
fn absurd_counter_jump_is_refused_without_incrementing() {
    let swtpm = SwTpm::start();
    let mut tpm = open(&swtpm);
    tpm.raise_security_floor(2).unwrap();
    let err = tpm
        .raise_security_floor(2 + MAX_RAISE_STEPS + 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("small steps"), "{err}");
    assert_eq!(tpm.security_floor().unwrap(), 2);
}

#[test]
fn a_foreign_object_at_our_handle_is_refused() {
    let swtpm = SwTpm::start();
    let tpm = open(&swtpm);
    let tls = tpm.tls_key().unwrap();
    drop((tpm, tls));
    // The TLS key (unrestricted) where the AK (restricted) is expected.
    let options = TpmOptions {
        ak_handle: rampart_tpm::DEFAULT_TLS_KEY_HANDLE,
        ..TpmOptions::default()
    };
    let err = HardwareTpm::open(&swtpm.tcti(), options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not Rampart's attestation key"), "{err}");
}

#[test]
fn tls_key_in_the_tpm_makes_a_csr_and_a_mutual_tls_handshake() {
    let swtpm = SwTpm::start();
    let (csr_pem, spki) = {
        let key = open(&swtpm).tls_key().unwrap();
        let csr = key.certificate_request_pem("tpm-device-1").unwrap();
        (csr, key.spki_der().to_vec())
    };

    // The operator's side: the CA checks the request's self-signature and certifies the key.
    let ca = CertificateAuthority::generate("Rampart test CA", 30).unwrap();
    let csr = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes()).unwrap();
    let (device_id, cert_pem) = ca
        .issue_device_for_request(csr.as_ref(), Some("tpm-device-1"), 30)
        .unwrap();
    assert_eq!(device_id, "tpm-device-1");

    // The same key after a reopen: persistent. (The key shares the TPM context: the
    // `HardwareTpm` itself may go.)
    let key = open(&swtpm).tls_key().unwrap();
    assert_eq!(key.spki_der(), spki);

    let server_cert = ca.issue_server(&["localhost"], 30).unwrap();
    let server_config = rampart_pki::server_config(
        &server_cert.cert_pem,
        &server_cert.key_pem,
        ca.cert_pem(),
        &[],
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(server_config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut line = String::new();
        BufReader::new(&mut tls).read_line(&mut line).unwrap();
        let peer = tls.conn.peer_certificates().unwrap()[0].clone();
        tls.write_all(b"welcome\n").unwrap();
        tls.conn.send_close_notify();
        let _ = tls.flush();
        (line, rampart_pki::device_id_from_cert(&peer))
    });

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(chain, Arc::new(key));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    let conn =
        rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap())
            .unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"hello from the TPM\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&mut tls).read_line(&mut answer).unwrap();
    assert_eq!(answer, "welcome\n");
    let (line, peer_id) = server.join().unwrap();
    assert_eq!(line, "hello from the TPM\n");
    assert_eq!(peer_id.as_deref(), Some("tpm-device-1"));
}
