//! A software TPM 2.0 per test: swtpm (Debian `swtpm`, `swtpm-tools`), manufactured by
//! `swtpm_setup` in a directory the test owns, with endorsement-key certificates issued by a
//! local CA of its own (also in that directory), and reached over TCP by tpm2-tools and by
//! libtss2 (tss-esapi). The tests FAIL, never skip, when swtpm or tpm2-tools is missing;
//! scripts/test.sh installs them.
//!
//! What `swtpm_setup --create-ek-cert` makes (swtpm 0.7): an RSA-2048 EK certificate at NV
//! index 0x01c00002 and an ECC **P-384** EK certificate at 0x01c00016 (the high-range template),
//! both signed by the CA's intermediate [`SwTpm::ek_issuer`], itself signed by
//! [`SwTpm::ek_root`]. The EK objects themselves are not left persistent for the tests: create
//! them from the standard templates (`tpm2_createek`, or tss-esapi).
//!
//! [`SwTpm::restart`] is a power cycle: PCRs and loaded objects are gone, NV indices (counters)
//! and persistent objects stay.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long swtpm may take to listen (a busy CI machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// NV index of the RSA-2048 EK certificate (TCG EK credential profile).
pub const EK_CERT_RSA2048_NV: u32 = 0x01c0_0002;
/// NV index of the ECC P-384 EK certificate swtpm writes.
pub const EK_CERT_ECC_P384_NV: u32 = 0x01c0_0016;

/// A manufactured software TPM listening on loopback, killed (and reaped) when dropped.
pub struct SwTpm {
    dir: PathBuf,
    /// Whether dropping removes `dir` (made by [`SwTpm::start`], not given by the caller).
    owns_dir: bool,
    child: Option<Child>,
    /// The TPM command port; the control port is `port + 1`.
    pub port: u16,
}

impl Drop for SwTpm {
    fn drop(&mut self) {
        self.stop();
    }
}

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is missing, and this test needs a real (software) TPM: run scripts/test.sh, or \
         apt-get install {package}"
    );
}

/// Two free consecutive loopback ports (command, control). A port found free can be taken
/// before swtpm binds it: [`SwTpm::start_in`] retries.
fn free_port_pair() -> u16 {
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        if port < u16::MAX && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return port;
        }
    }
}

impl SwTpm {
    /// Manufactures a TPM in a new directory under the system's temporary directory (removed
    /// when dropped) and starts it.
    pub fn start() -> SwTpm {
        let dir = std::env::temp_dir().join(format!(
            "rampart-swtpm-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let mut tpm = SwTpm::start_in(&dir);
        // Only a directory this call made is removed on drop.
        tpm.owns_dir = true;
        tpm
    }

    /// Manufactures a TPM with its state, CA and configuration under `dir` (made if missing;
    /// must not hold a TPM yet) and starts it.
    pub fn start_in(dir: &Path) -> SwTpm {
        require("swtpm", "swtpm");
        require("swtpm_setup", "swtpm-tools");
        require("tpm2_startup", "tpm2-tools");
        for sub in ["state", "ca", "ek-certs"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create the swtpm directories");
        }
        let ca = dir.join("ca");
        std::fs::write(
            dir.join("swtpm-localca.conf"),
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\n\
                 certserial = {ca}/certserial\n",
                ca = ca.display()
            ),
        )
        .expect("write swtpm-localca.conf");
        std::fs::write(
            dir.join("swtpm_setup.conf"),
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\n\
                 create_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n",
                dir.join("swtpm-localca.conf").display()
            ),
        )
        .expect("write swtpm_setup.conf");
        let setup = Command::new("swtpm_setup")
            .args([
                "--tpm2",
                "--create-ek-cert",
                "--pcr-banks",
                "sha256",
                "--tpmstate",
            ])
            .arg(dir.join("state"))
            .arg("--config")
            .arg(dir.join("swtpm_setup.conf"))
            .arg("--write-ek-cert-files")
            .arg(dir.join("ek-certs"))
            .output()
            .expect("swtpm_setup runs");
        assert!(
            setup.status.success(),
            "swtpm_setup failed to manufacture a TPM in {}:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&setup.stdout),
            String::from_utf8_lossy(&setup.stderr)
        );
        let mut tpm = SwTpm {
            dir: dir.to_path_buf(),
            owns_dir: false,
            child: None,
            port: 0,
        };
        tpm.launch();
        tpm
    }

    fn launch(&mut self) {
        let dir = self.dir.clone();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port_pair();
            let log = dir.join("swtpm.log");
            let child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--flags", "startup-clear", "--server"])
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", dir.join("state").display()))
                .arg("--log")
                .arg(format!("file={},level=1", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("swtpm starts");
            self.child = Some(child);
            self.port = port;
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    // swtpm serves one client at a time: the probe's connection is closed
                    // before anyone else connects.
                    return;
                }
                let exited = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    last = format!(
                        "swtpm exited ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    self.child = None;
                    break;
                }
                if Instant::now() > deadline {
                    panic!("swtpm did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("swtpm did not start: {last}");
    }

    fn stop(&mut self) {
        self.power_off();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn power_off(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An orderly shutdown through the control channel, then make sure.
            let _ = Command::new("swtpm_ioctl")
                .args(["--tcp", &format!("127.0.0.1:{}", self.port + 1), "-s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A power cycle: the TPM stops and starts again on its kept state (PCRs reset; NV indices
    /// and persistent objects kept), on new ports.
    pub fn restart(&mut self) {
        self.power_off();
        self.launch();
    }

    /// The directory the TPM's state, CA and configuration live in.
    pub fn home(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The libtss2 TCTI configuration (tss-esapi's `TctiNameConf::from_str`).
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Runs a tpm2-tools command against this TPM (`TPM2TOOLS_TCTI`) in `cwd`.
    pub fn tpm2(&self, cwd: &Path, tool: &str, args: &[&str]) -> Output {
        Command::new(tool)
            .args(args)
            .current_dir(cwd)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output()
            .unwrap_or_else(|e| panic!("{tool} runs (apt-get install tpm2-tools): {e}"))
    }

    /// Like [`SwTpm::tpm2`], and panics with its output when it fails.
    pub fn tpm2_ok(&self, cwd: &Path, tool: &str, args: &[&str]) -> Output {
        let out = self.tpm2(cwd, tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The EK certificates swtpm_setup wrote (`ek-rsa2048.crt`, `ek-secp384r1.crt`, DER).
    pub fn ek_certificate_file(&self, name: &str) -> PathBuf {
        self.home().join("ek-certs").join(name)
    }

    /// The local CA's root certificate (PEM), the trust anchor of the EK certificates.
    pub fn ek_root(&self) -> PathBuf {
        self.home().join("ca/swtpm-localca-rootca-cert.pem")
    }

    /// The local CA's intermediate certificate (PEM) that signed the EK certificates.
    pub fn ek_issuer(&self) -> PathBuf {
        self.home().join("ca/issuercert.pem")
    }
}
