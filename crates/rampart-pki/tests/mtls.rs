//! Real mutual-TLS handshakes on 127.0.0.1: a tiny echo server accepts one
//! connection, completes the handshake, identifies the device from its
//! verified certificate and writes the id back.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rampart_pki::{
    CertificateAuthority, Error, IssuedCert, client_config, client_config_without_identity,
    device_id_from_cert, serial_hex_from_cert, server_config, validate_device_id,
    write_private_key_pem,
};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject as _;
use rustls::{AlertDescription, CertificateError, ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const DAY: Duration = Duration::from_secs(86_400);
const TIMEOUT: Duration = Duration::from_secs(20);

struct Pki {
    ca: CertificateAuthority,
    server: IssuedCert,
}

fn pki() -> Pki {
    let ca = CertificateAuthority::generate("Rampart Test Manufacturer CA", 30).unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"], 30).unwrap();
    Pki { ca, server }
}

impl Pki {
    fn server_config(&self, crls: &[String]) -> Arc<ServerConfig> {
        server_config(
            &self.server.cert_pem,
            &self.server.key_pem,
            self.ca.cert_pem(),
            crls,
        )
        .unwrap()
    }

    fn device_client(&self, device: &IssuedCert) -> Arc<ClientConfig> {
        client_config(self.ca.cert_pem(), &device.cert_pem, &device.key_pem).unwrap()
    }
}

/// What the client saw: the echoed line and the negotiated ALPN protocol.
#[derive(Debug)]
struct ClientView {
    echoed: String,
    alpn: Option<Vec<u8>>,
}

/// Runs one connection through the echo server. Returns what the client got
/// and what the server concluded (the device id, or the handshake error).
async fn exchange(
    server_config: Arc<ServerConfig>,
    client_config: Arc<ClientConfig>,
    server_name: &str,
) -> (io::Result<ClientView>, io::Result<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(server_config).accept(tcp).await?;
        let (_, connection) = tls.get_ref();
        let peer = connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .ok_or_else(|| io::Error::other("handshake completed without a peer certificate"))?;
        let id = device_id_from_cert(peer)
            .ok_or_else(|| io::Error::other("peer certificate carries no device id"))?;
        tls.write_all(format!("{id}\n").as_bytes()).await?;
        tls.shutdown().await?;
        Ok::<_, io::Error>(id)
    });
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let client = async move {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(client_config).connect(name, tcp).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut echoed = String::new();
        tls.read_to_string(&mut echoed).await?;
        Ok(ClientView { echoed, alpn })
    };
    let client = tokio::time::timeout(TIMEOUT, client)
        .await
        .expect("client timed out");
    let server = tokio::time::timeout(TIMEOUT, server)
        .await
        .expect("server timed out")
        .expect("server task panicked");
    (client, server)
}

fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Asserts the handshake was refused: the server failed with `server_says`
/// and the client got the fatal alert `alert` (and no echoed data).
#[track_caller]
fn assert_refused(
    (client, server): &(io::Result<ClientView>, io::Result<String>),
    server_says: impl Fn(&rustls::Error) -> bool,
    alert: AlertDescription,
) {
    let server_err = match server {
        Ok(id) => panic!("server accepted the client as {id:?}"),
        Err(e) => e,
    };
    let server_tls = tls_error(server_err)
        .unwrap_or_else(|| panic!("server failed, but not with a TLS error: {server_err:?}"));
    assert!(
        server_says(server_tls),
        "unexpected server-side error: {server_tls:?}"
    );
    let client_err = match client {
        Ok(view) => panic!("client was served: {view:?}"),
        Err(e) => e,
    };
    assert_eq!(
        tls_error(client_err),
        Some(&rustls::Error::AlertReceived(alert)),
        "unexpected client-side error: {client_err:?}"
    );
}

#[tokio::test]
async fn provisioned_device_is_identified_by_name_and_by_ip() {
    let pki = pki();
    let device = pki.ca.issue_device("dev-0001:a.b_C", 30).unwrap();
    for server_name in ["localhost", "127.0.0.1"] {
        let (client, server) = exchange(
            pki.server_config(&[]),
            pki.device_client(&device),
            server_name,
        )
        .await;
        assert_eq!(server.unwrap(), "dev-0001:a.b_C");
        let view = client.unwrap();
        assert_eq!(view.echoed, "dev-0001:a.b_C\n");
        assert_eq!(view.alpn.as_deref(), Some(&b"http/1.1"[..]));
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let pki = pki();
    let anonymous = client_config_without_identity(pki.ca.cert_pem()).unwrap();
    let outcome = exchange(pki.server_config(&[]), anonymous, "localhost").await;
    assert_refused(
        &outcome,
        |e| matches!(e, rustls::Error::NoCertificatesPresented),
        AlertDescription::CertificateRequired,
    );
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let pki = pki();
    // A foreign CA is unknown to the server.
    let foreign_ca = CertificateAuthority::generate("Some Other Vendor CA", 30).unwrap();
    let foreign = foreign_ca.issue_device("dev-0001", 30).unwrap();
    // The foreign device trusts the real server.
    let client = client_config(pki.ca.cert_pem(), &foreign.cert_pem, &foreign.key_pem).unwrap();
    let outcome = exchange(pki.server_config(&[]), client, "localhost").await;
    assert_refused(
        &outcome,
        |e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            )
        },
        AlertDescription::UnknownCA,
    );

    // A rogue CA that copies the real CA's name: the chain is built by name,
    // so this is caught by the signature check instead.
    let rogue_ca = CertificateAuthority::generate("Rampart Test Manufacturer CA", 30).unwrap();
    let rogue = rogue_ca.issue_device("dev-0001", 30).unwrap();
    let client = client_config(pki.ca.cert_pem(), &rogue.cert_pem, &rogue.key_pem).unwrap();
    let outcome = exchange(pki.server_config(&[]), client, "localhost").await;
    assert_refused(
        &outcome,
        |e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::BadSignature)
            )
        },
        AlertDescription::DecryptError,
    );
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let pki = pki();
    let now = SystemTime::now();
    let expired = pki
        .ca
        .issue_device_with_validity("dev-expired", now - 10 * DAY, now - DAY)
        .unwrap();
    let outcome = exchange(
        pki.server_config(&[]),
        pki.device_client(&expired),
        "localhost",
    )
    .await;
    assert_refused(
        &outcome,
        |e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            )
        },
        AlertDescription::CertificateExpired,
    );
}

#[tokio::test]
async fn not_yet_valid_certificate_is_refused() {
    let pki = pki();
    let now = SystemTime::now();
    let future = pki
        .ca
        .issue_device_with_validity("dev-future", now + DAY, now + 10 * DAY)
        .unwrap();
    let outcome = exchange(
        pki.server_config(&[]),
        pki.device_client(&future),
        "localhost",
    )
    .await;
    assert_refused(
        &outcome,
        |e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
                )
            )
        },
        AlertDescription::CertificateExpired,
    );
}

#[tokio::test]
async fn server_certificate_cannot_act_as_a_device() {
    let pki = pki();
    // Same CA, valid, but for serverAuth only.
    let client =
        client_config(pki.ca.cert_pem(), &pki.server.cert_pem, &pki.server.key_pem).unwrap();
    let outcome = exchange(pki.server_config(&[]), client, "localhost").await;
    assert_refused(
        &outcome,
        |e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::InvalidPurpose
                        | CertificateError::InvalidPurposeContext { .. }
                )
            )
        },
        AlertDescription::UnsupportedCertificate,
    );
}

#[tokio::test]
async fn revoked_device_is_refused_while_others_still_work() {
    let pki = pki();
    let revoked = pki.ca.issue_device("dev-revoked", 30).unwrap();
    let good = pki.ca.issue_device("dev-good", 30).unwrap();
    let now = SystemTime::now();
    // Serial formats other than the canonical one are accepted too.
    let shouted = revoked.serial.to_uppercase();
    let crl = pki
        .ca
        .crl(
            &[
                (shouted.as_str(), now - Duration::from_secs(60)),
                ("0x01:02:03", now - DAY),
            ],
            now - Duration::from_secs(60),
            now + 7 * DAY,
            1,
        )
        .unwrap();
    assert!(crl.starts_with("-----BEGIN X509 CRL-----"), "{crl}");
    let config = pki.server_config(&[crl]);

    let outcome = exchange(config.clone(), pki.device_client(&revoked), "localhost").await;
    assert_refused(
        &outcome,
        |e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::Revoked)
            )
        },
        AlertDescription::CertificateRevoked,
    );

    let (client, server) = exchange(config, pki.device_client(&good), "localhost").await;
    assert_eq!(server.unwrap(), "dev-good");
    assert_eq!(client.unwrap().echoed, "dev-good\n");

    // Before the CRL, the revoked device was fine.
    let (_, server) = exchange(
        pki.server_config(&[]),
        pki.device_client(&revoked),
        "localhost",
    )
    .await;
    assert_eq!(server.unwrap(), "dev-revoked");
}

#[tokio::test]
async fn empty_crl_lets_everyone_in() {
    let pki = pki();
    let device = pki.ca.issue_device("dev-1", 30).unwrap();
    let now = SystemTime::now();
    let crl = pki
        .ca
        .crl::<&str>(&[], now - Duration::from_secs(60), now + DAY, 1)
        .unwrap();
    let (_, server) = exchange(
        pki.server_config(&[crl]),
        pki.device_client(&device),
        "127.0.0.1",
    )
    .await;
    assert_eq!(server.unwrap(), "dev-1");
}

#[tokio::test]
async fn reloaded_ca_issues_devices_and_crls_that_the_server_accepts() {
    let pki = pki();
    let key_pem = pki.ca.key_pem();
    let loaded = CertificateAuthority::load(pki.ca.cert_pem(), &key_pem).unwrap();
    assert_eq!(loaded.cert_pem(), pki.ca.cert_pem());
    assert_eq!(loaded.cert_der(), pki.ca.cert_der());
    assert_eq!(loaded.serial(), pki.ca.serial());

    let device = loaded.issue_device("dev-from-reloaded-ca", 30).unwrap();
    let (_, server) = exchange(
        pki.server_config(&[]),
        pki.device_client(&device),
        "localhost",
    )
    .await;
    assert_eq!(server.unwrap(), "dev-from-reloaded-ca");

    let now = SystemTime::now();
    let crl = loaded
        .crl(
            &[(device.serial.clone(), now)],
            now - Duration::from_secs(60),
            now + DAY,
            2,
        )
        .unwrap();
    let outcome = exchange(
        pki.server_config(&[crl]),
        pki.device_client(&device),
        "localhost",
    )
    .await;
    assert_refused(
        &outcome,
        |e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::Revoked)
            )
        },
        AlertDescription::CertificateRevoked,
    );
}

#[tokio::test]
async fn ca_made_elsewhere_can_be_loaded() {
    // A CA with a richer name, PrintableString country, no keyUsage and
    // no path length: what another tool might produce.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(
        rcgen::DnType::CountryName,
        rcgen::DnValue::PrintableString("DE".try_into().unwrap()),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Rampart Devices GmbH");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Factory 3 CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_identifier_method = rcgen::KeyIdMethod::Sha512;
    let cert = params.self_signed(&key).unwrap();
    let ca = CertificateAuthority::load(&cert.pem(), &key.serialize_pem()).unwrap();

    let device = ca.issue_device("factory-3-0001", 10).unwrap();
    let server = ca.issue_server(&["localhost"], 10).unwrap();
    let config = server_config(&server.cert_pem, &server.key_pem, &cert.pem(), &[]).unwrap();
    let client = client_config(&cert.pem(), &device.cert_pem, &device.key_pem).unwrap();
    let (client, server) = exchange(config, client, "localhost").await;
    assert_eq!(server.unwrap(), "factory-3-0001");
    assert_eq!(client.unwrap().echoed, "factory-3-0001\n");
}

#[test]
fn malformed_device_ids_are_rejected_at_issue_time() {
    let ca = CertificateAuthority::generate("ids", 1).unwrap();
    let too_long = "x".repeat(129);
    for bad in [
        "",
        " ",
        "dev 1",
        "dev/1",
        "dev\\1",
        "dev\n1",
        "dév",
        "dev@1",
        "urn:rampart:device:x/y",
        ".",
        "..",
        too_long.as_str(),
    ] {
        match ca.issue_device(bad, 1) {
            Err(Error::InvalidDeviceId(id)) => assert_eq!(id, bad),
            other => panic!("{bad:?} was not rejected: {other:?}"),
        }
    }
    let longest = "y".repeat(128);
    for good in ["a", "A-z_0.9:x", "...", "SN:0042-rev.B", longest.as_str()] {
        validate_device_id(good).unwrap();
        let issued = ca.issue_device(good, 1).unwrap();
        assert_eq!(device_id_from_cert(&issued.cert_der).as_deref(), Some(good));
    }
}

#[test]
fn invalid_parameters_are_rejected() {
    assert!(matches!(
        CertificateAuthority::generate("", 1),
        Err(Error::InvalidCommonName(_))
    ));
    assert!(matches!(
        CertificateAuthority::generate("ok", 0),
        Err(Error::InvalidValidity(_))
    ));
    let ca = CertificateAuthority::generate("params", 1).unwrap();
    assert!(matches!(
        ca.issue_server::<&str>(&[], 1),
        Err(Error::NoServerNames)
    ));
    assert!(matches!(
        ca.issue_server(&["not a host"], 1),
        Err(Error::InvalidServerName(_))
    ));
    assert!(matches!(
        ca.issue_device("dev", 1_000_000),
        Err(Error::InvalidValidity(_))
    ));
    let now = SystemTime::now();
    assert!(matches!(
        ca.issue_device_with_validity("dev", now, now - DAY),
        Err(Error::InvalidValidity(_))
    ));
    for bad_serial in ["", "xyz", "0x", &"ab".repeat(21)] {
        assert!(
            matches!(
                ca.crl(&[(bad_serial, now)], now, now + DAY, 1),
                Err(Error::InvalidSerial(_))
            ),
            "{bad_serial:?}"
        );
    }
    assert!(matches!(
        ca.crl::<&str>(&[], now, now - DAY, 1),
        Err(Error::InvalidValidity(_))
    ));
    // IPv6 loopback, bracketed or not.
    ca.issue_server(&["[::1]", "::1", "rampart.example"], 1)
        .unwrap();
}

#[test]
fn pem_round_trips() {
    let ca = CertificateAuthority::generate("Round Trip CA", 10).unwrap();
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));

    // CA: cert + key -> load -> identical PEM and key.
    let loaded = CertificateAuthority::load(ca.cert_pem(), &ca.key_pem()).unwrap();
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    assert_eq!(*loaded.key_pem(), *ca.key_pem());
    let reloaded = CertificateAuthority::load(loaded.cert_pem(), &loaded.key_pem()).unwrap();
    assert_eq!(reloaded.cert_pem(), ca.cert_pem());

    // Device: PEM <-> DER agree, serial and id are readable back.
    let device = ca.issue_device("rt-1", 10).unwrap();
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(device.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(der, vec![device.cert_der.clone()]);
    assert_eq!(device.serial.len(), 40, "{}", device.serial);
    assert!(
        device
            .serial
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        serial_hex_from_cert(&device.cert_der).unwrap(),
        device.serial
    );
    assert_eq!(device_id_from_cert(&device.cert_der).unwrap(), "rt-1");
    assert!(!format!("{device:?}").contains("PRIVATE KEY"));
    assert!(!format!("{ca:?}").contains("PRIVATE KEY"));

    // The device key and cert form a usable client identity; the server key
    // and cert a usable server identity.
    let server = ca.issue_server(&["localhost"], 10).unwrap();
    client_config(ca.cert_pem(), &device.cert_pem, &device.key_pem).unwrap();
    server_config(&server.cert_pem, &server.key_pem, ca.cert_pem(), &[]).unwrap();

    // Distinct serials.
    let other = ca.issue_device("rt-1", 10).unwrap();
    assert_ne!(other.serial, device.serial);
}

#[test]
fn loading_a_ca_checks_its_parts() {
    let ca = CertificateAuthority::generate("Load CA", 10).unwrap();
    let other = CertificateAuthority::generate("Other CA", 10).unwrap();
    assert!(matches!(
        CertificateAuthority::load(ca.cert_pem(), &other.key_pem()),
        Err(Error::CaKeyMismatch)
    ));
    let device = ca.issue_device("not-a-ca", 10).unwrap();
    assert!(matches!(
        CertificateAuthority::load(&device.cert_pem, &device.key_pem),
        Err(Error::NotACa(_))
    ));
    assert!(matches!(
        CertificateAuthority::load("", &ca.key_pem()),
        Err(Error::PemMissing(_))
    ));
    assert!(matches!(
        CertificateAuthority::load(ca.cert_pem(), ""),
        Err(Error::PemMissing(_))
    ));
    assert!(matches!(
        CertificateAuthority::load(&ca.key_pem(), ca.cert_pem()),
        Err(Error::PemMissing(_))
    ));
}

#[test]
fn server_config_checks_keys_and_crls() {
    let pki = pki();
    let now = SystemTime::now();
    let other = CertificateAuthority::generate("Other CA", 10).unwrap();
    let other_crl = other.crl::<&str>(&[], now, now + DAY, 1).unwrap();
    let our_crl = pki.ca.crl::<&str>(&[], now, now + DAY, 1).unwrap();

    // Key that does not match the server certificate.
    let wrong_key = pki.ca.issue_device("x", 1).unwrap().key_pem;
    assert!(matches!(
        server_config(&pki.server.cert_pem, &wrong_key, pki.ca.cert_pem(), &[]),
        Err(Error::Tls(_))
    ));
    // A CRL from a CA the server does not trust is a configuration error.
    assert!(matches!(
        server_config(
            &pki.server.cert_pem,
            &pki.server.key_pem,
            pki.ca.cert_pem(),
            std::slice::from_ref(&other_crl)
        ),
        Err(Error::InvalidCrl { index: 0, .. })
    ));
    // Garbage CRL.
    assert!(matches!(
        server_config(
            &pki.server.cert_pem,
            &pki.server.key_pem,
            pki.ca.cert_pem(),
            &[our_crl.clone(), "not a crl".to_owned()]
        ),
        Err(Error::InvalidCrl { index: 1, .. })
    ));
    // Two client CAs, CRL for only one: refused up front.
    let bundle = format!("{}{}", pki.ca.cert_pem(), other.cert_pem());
    assert!(matches!(
        server_config(
            &pki.server.cert_pem,
            &pki.server.key_pem,
            &bundle,
            std::slice::from_ref(&our_crl)
        ),
        Err(Error::MissingCrl { index: 1 })
    ));
    server_config(
        &pki.server.cert_pem,
        &pki.server.key_pem,
        &bundle,
        &[our_crl, other_crl],
    )
    .unwrap();
}

#[tokio::test]
async fn second_ca_in_bundle_is_trusted() {
    let pki = pki();
    let second = CertificateAuthority::generate("Second Factory CA", 10).unwrap();
    let device = second.issue_device("dev-factory-2", 10).unwrap();
    let bundle = format!("{}{}", pki.ca.cert_pem(), second.cert_pem());
    let config = server_config(&pki.server.cert_pem, &pki.server.key_pem, &bundle, &[]).unwrap();
    let client = client_config(pki.ca.cert_pem(), &device.cert_pem, &device.key_pem).unwrap();
    let (_, server) = exchange(config, client, "localhost").await;
    assert_eq!(server.unwrap(), "dev-factory-2");
}

#[test]
fn device_id_falls_back_to_common_name() {
    // A certificate made elsewhere: CN only, no URI SAN.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "legacy-7");
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(device_id_from_cert(cert.der()).as_deref(), Some("legacy-7"));

    // A device URI SAN wins over the CN; an invalid one is not overridden.
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cn-name");
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "urn:rampart:device:uri-name".try_into().unwrap(),
    )];
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(device_id_from_cert(cert.der()).as_deref(), Some("uri-name"));
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "urn:rampart:device:bad/id".try_into().unwrap(),
    )];
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(device_id_from_cert(cert.der()), None);

    // No usable name at all.
    let params = rcgen::CertificateParams::new(vec!["host.example".to_owned()]).unwrap();
    let mut params = params;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(device_id_from_cert(cert.der()), None);
    assert_eq!(device_id_from_cert(b"not a certificate"), None);
}

#[test]
fn private_keys_are_written_owner_only_and_never_clobbered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.key");
    let ca = CertificateAuthority::generate("File CA", 1).unwrap();
    write_private_key_pem(&path, &ca.key_pem()).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), *ca.key_pem());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let err = write_private_key_pem(&path, "other").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), *ca.key_pem());
}
