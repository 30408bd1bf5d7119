//! A SoftHSM2 token in a directory of its own: a PKCS#11 token for the key and TLS tests,
//! without touching the machine's token store. Needs SoftHSM2 (Debian package `softhsm2`,
//! which scripts/test.sh installs); the tests fail, never skip, without it.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, when a process initialises the module, so a token is
//! used by processes started with [`SoftHsm::env`] (the `rampart` binary, or a test re-running
//! itself), not by the test process after it started.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The variable naming the PKCS#11 module, as the `rampart` binary reads it.
pub const MODULE_ENV: &str = "RAMPART_PKCS11_MODULE";
/// Where Debian installs the SoftHSM2 PKCS#11 module.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// An initialised token, its configuration under a directory the test owns.
pub struct SoftHsm {
    /// The `SOFTHSM2_CONF` file.
    pub conf: PathBuf,
    /// The PKCS#11 module.
    pub module: PathBuf,
    /// The user PIN.
    pub pin: String,
}

impl SoftHsm {
    /// Initialises token `label` (security officer PIN `so_pin`, user PIN `pin`) with its
    /// store under `dir/tokens` and its configuration in `dir/softhsm2.conf`.
    /// The module is `RAMPART_PKCS11_MODULE` when set (another SoftHSM2 build), else
    /// [`DEFAULT_MODULE`].
    pub fn init(dir: &Path, label: &str, so_pin: &str, pin: &str) -> SoftHsm {
        let module = std::env::var_os(MODULE_ENV)
            .filter(|m| !m.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MODULE));
        assert!(
            module.is_file(),
            "SoftHSM2's PKCS#11 module {} is missing: apt-get install softhsm2, or set {MODULE_ENV} to it",
            module.display()
        );
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("create the token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("write the SoftHSM2 configuration");
        let init = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", so_pin, "--pin", pin])
            .output()
            .expect("softhsm2-util runs (apt-get install softhsm2)");
        assert!(
            init.status.success(),
            "softhsm2-util --init-token failed: {}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        SoftHsm {
            conf,
            module,
            pin: pin.to_owned(),
        }
    }

    /// Points `command` at the token: `SOFTHSM2_CONF`, and the module and PIN in the variables
    /// the `rampart` binary reads (`RAMPART_PKCS11_MODULE`, `RAMPART_PKCS11_PIN`).
    pub fn env<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command
            .env("SOFTHSM2_CONF", &self.conf)
            .env("RAMPART_PKCS11_MODULE", &self.module)
            .env("RAMPART_PKCS11_PIN", &self.pin)
    }
}
