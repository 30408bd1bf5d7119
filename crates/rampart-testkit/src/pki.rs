//! The update server's PKI as files: a manufacturer CA, the server's certificate for 127.0.0.1,
//! an empty CRL, and device certificates, written where `rampart server` and the agent read them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rampart_pki::CertificateAuthority;

/// A CA and the server's certificate, written in a directory.
pub struct ServerPki {
    pub ca: CertificateAuthority,
    pub ca_pem: PathBuf,
    pub crl_pem: PathBuf,
    pub server_pem: PathBuf,
    /// The server's private key (mode 0600).
    pub server_key: PathBuf,
}

impl ServerPki {
    /// A new CA called `ca_name`; in `dir`: `ca.pem`, `crl.pem` (empty, valid `crl_days`),
    /// `server.pem` and the server's key at `server_key_file` (certificates valid 30 days).
    pub fn write(dir: &Path, ca_name: &str, crl_days: u64, server_key_file: &str) -> ServerPki {
        let ca = CertificateAuthority::generate(ca_name, 30).expect("a test CA");
        let server_cert = ca
            .issue_server(&["127.0.0.1"], 30)
            .expect("a server certificate");
        let now = SystemTime::now();
        let crl = ca
            .crl::<&str>(&[], now, now + Duration::from_secs(crl_days * 86_400), 1)
            .expect("an empty CRL");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            path
        };
        let ca_pem = write("ca.pem", ca.cert_pem());
        let crl_pem = write("crl.pem", &crl);
        let server_pem = write("server.pem", &server_cert.cert_pem);
        let server_key = dir.join(server_key_file);
        rampart_pki::write_private_key_pem(&server_key, &server_cert.key_pem)
            .expect("write the server key");
        ServerPki {
            ca,
            ca_pem,
            crl_pem,
            server_pem,
            server_key,
        }
    }

    /// A device certificate for `id`: `dir/ID.pem`, and its key (mode 0600) at `dir/KEY_FILE`.
    pub fn device(&self, dir: &Path, id: &str, key_file: &str) -> (PathBuf, PathBuf) {
        let issued = self.ca.issue_device(id, 30).expect("a device certificate");
        let pem = dir.join(format!("{id}.pem"));
        std::fs::write(&pem, &issued.cert_pem).expect("write the device certificate");
        let key = dir.join(key_file);
        rampart_pki::write_private_key_pem(&key, &issued.key_pem).expect("write the device key");
        (pem, key)
    }

    /// `server --db DB` with the device API and the management API on free loopback ports and
    /// this PKI's certificates; callers add the rest.
    pub fn server_command(&self, db: &str) -> Vec<String> {
        [
            "server",
            "--db",
            db,
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain(self.server_args())
        .collect()
    }

    /// `--cert`, `--key`, `--client-ca` and `--crl` of `rampart server`.
    pub fn server_args(&self) -> Vec<String> {
        [
            ("--cert", &self.server_pem),
            ("--key", &self.server_key),
            ("--client-ca", &self.ca_pem),
            ("--crl", &self.crl_pem),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
        .collect()
    }
}
