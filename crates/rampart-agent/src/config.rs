//! The agent's TOML configuration (`/etc/rampart/agent.toml`; see
//! `docs/device-integration.md` for every key).

use std::path::{Path, PathBuf};

use rampart_boot::ab::{DEFAULT_TRIES, MAX_TRIES, Slot};
use serde::Deserialize;

/// Largest accepted configuration file.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the configuration {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the configuration {path} is {size} bytes; at most {MAX_CONFIG_BYTES} are read")]
    TooLarge { path: String, size: u64 },
    #[error("the configuration {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the agent's state (trusted metadata, state file, anti-rollback counter).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// This device's hardware compatibility id.
    pub hardware_id: String,
    /// The update server; absent for devices updated only offline (`install --from`).
    #[serde(default)]
    pub server: Option<ServerConfig>,
    /// The two slots: block devices or plain files.
    pub slots: SlotsConfig,
    pub bootloader: BootloaderConfig,
    #[serde(default)]
    pub boot: BootConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub install: InstallConfig,
    /// The device's TPM 2.0 (measured boot, attestation, the hardware anti-rollback floor);
    /// absent: the device has none, and the anti-rollback counter is a file.
    #[serde(default)]
    pub tpm: Option<TpmConfig>,
    /// The tamper-evident agent log and forensic evidence bundles (`[evidence]`).
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// Incident response: the hooks a signed quarantine instruction runs.
    #[serde(default)]
    pub incident: IncidentConfig,
}

/// Incident response on the device (`[incident]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentConfig {
    /// Run (argv) when a signed `quarantined` statement arrives, e.g. a network lock-down
    /// that leaves the update server reachable. Empty: none (acknowledged `not_configured`).
    #[serde(default)]
    pub containment_hook: Vec<String>,
    /// Run (argv) when a signed `released` statement arrives, undoing the containment.
    #[serde(default)]
    pub release_hook: Vec<String>,
    /// A hook not finished within this many seconds is killed and counts as failed.
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout_secs: u64,
}

fn default_hook_timeout() -> u64 {
    60
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            containment_hook: Vec::new(),
            release_hook: Vec::new(),
            hook_timeout_secs: default_hook_timeout(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/rampart-agent")
}

/// How the agent reaches the update server (mutual TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The device API, e.g. `https://updates.example:8443`.
    pub url: String,
    /// CA certificate(s) the server's certificate must chain to (PEM).
    pub ca: PathBuf,
    /// The device certificate (PEM); its device id is this device's identity.
    pub cert: PathBuf,
    /// The device's private key: a PEM file path, a PKCS#11 URI
    /// (`pkcs11:token=LABEL;object=LABEL`) of a key that never leaves the token, or `tpm:`,
    /// the key kept in the TPM at `[tpm] tls_key_handle` (`rampart-agent tpm provision`).
    pub key: String,
    /// PKCS#11 module for a token key (default: SoftHSM2's).
    #[serde(default)]
    pub pkcs11_module: Option<PathBuf>,
    /// File holding the token's user PIN (first line).
    #[serde(default)]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// Seconds between polls when the server does not say (it normally does).
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// Upper bound of the exponential backoff after failures.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: u64,
}

fn default_poll() -> u64 {
    300
}
fn default_max_backoff() -> u64 {
    3600
}

/// The A and B slots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotsConfig {
    #[serde(rename = "A")]
    pub a: PathBuf,
    #[serde(rename = "B")]
    pub b: PathBuf,
}

impl SlotsConfig {
    pub fn path(&self, slot: Slot) -> &Path {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
}

/// Which bootloader backend switches slots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootloaderConfig {
    pub kind: BootloaderKind,
    /// GRUB: the environment block file (e.g. `/boot/efi/EFI/BOOT/grubenv`).
    #[serde(default)]
    pub grub_env: Option<PathBuf>,
    /// U-Boot: libubootenv's `fw_env.config`.
    #[serde(default)]
    pub fw_env_config: Option<PathBuf>,
    /// Custom: a script with RAUC's interface (`get-primary`, `set-primary X`, `get-state X`,
    /// `set-state X good|bad`).
    #[serde(default)]
    pub script: Option<PathBuf>,
    /// Boot attempts a newly activated slot gets before the bootloader falls back.
    #[serde(default = "default_tries")]
    pub tries: u8,
}

fn default_tries() -> u8 {
    DEFAULT_TRIES
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootloaderKind {
    Grub,
    Uboot,
    Custom,
}

/// How the agent learns which slot and which boot it runs in, and how it reboots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootConfig {
    /// Kernel command line carrying `rampart.slot=A|B` (or RAUC's `rauc.slot=`).
    #[serde(default = "default_cmdline")]
    pub cmdline: PathBuf,
    /// A fixed booted slot instead of the command line (benchmarks, images without A/B
    /// command lines).
    #[serde(default)]
    pub booted_slot: Option<String>,
    /// The kernel's per-boot random id.
    #[serde(default = "default_boot_id")]
    pub boot_id: PathBuf,
    /// The command that reboots the device.
    #[serde(default = "default_reboot")]
    pub reboot_command: Vec<String>,
}

fn default_cmdline() -> PathBuf {
    PathBuf::from("/proc/cmdline")
}
fn default_boot_id() -> PathBuf {
    PathBuf::from("/proc/sys/kernel/random/boot_id")
}
fn default_reboot() -> Vec<String> {
    vec!["systemctl".into(), "reboot".into()]
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            cmdline: default_cmdline(),
            booted_slot: None,
            boot_id: default_boot_id(),
            reboot_command: default_reboot(),
        }
    }
}

/// Health checks run after booting a new slot, before committing it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Commands that must all exit 0 (argv lists).
    #[serde(default)]
    pub commands: Vec<Vec<String>>,
    /// Whether the update server must answer a poll over mutual TLS (the built-in check).
    #[serde(default = "default_true")]
    pub check_server: bool,
    /// All checks must pass within this many seconds.
    #[serde(default = "default_deadline")]
    pub deadline_secs: u64,
}

fn default_true() -> bool {
    true
}
fn default_deadline() -> u64 {
    300
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            commands: Vec::new(),
            check_server: true,
            deadline_secs: default_deadline(),
        }
    }
}

/// Install tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallConfig {
    /// Resume checkpoints (slot fsynced, progress recorded) are taken once at least this many
    /// bytes and `checkpoint_secs` have passed since the last one: a slow download loses at
    /// most a few seconds when interrupted, and a fast local install is not slowed by fsyncs.
    #[serde(default = "default_checkpoint")]
    pub checkpoint_bytes: u64,
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// For `soft` assignments: a command (argv) that exits 0 when the device may install now
    /// (on mains, battery high enough, no user session...). Any other exit, or a failure to
    /// run it, defers the install to a later poll. Without it, soft installs like forced.
    /// Forced and download-only assignments never run it.
    #[serde(default)]
    pub soft_check: Vec<String>,
}

fn default_checkpoint() -> u64 {
    4 << 20
}

fn default_checkpoint_secs() -> u64 {
    5
}

impl Default for InstallConfig {
    fn default() -> Self {
        InstallConfig {
            checkpoint_bytes: default_checkpoint(),
            checkpoint_secs: default_checkpoint_secs(),
            soft_check: Vec::new(),
        }
    }
}

/// The agent's hash-chained log and what an evidence bundle collects (`[evidence]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Commands whose output goes into every evidence bundle (argv lists), e.g.
    /// `[["ip", "addr"], ["ss", "-tanp"]]`.
    #[serde(default)]
    pub commands: Vec<Vec<String>>,
    /// How long one command may run before it is killed.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_secs: u64,
    /// Output kept per command (stdout then stderr); the rest is cut.
    #[serde(default = "default_command_max_bytes")]
    pub command_max_bytes: u64,
    /// Lines of the system journal (`journalctl -n N -o short-iso`) in a bundle; 0: none.
    #[serde(default = "default_journal_lines")]
    pub journal_lines: u64,
    /// Bytes of journal excerpt kept at most.
    #[serde(default = "default_journal_max_bytes")]
    pub journal_max_bytes: u64,
    /// The agent log's file size before it is rotated.
    #[serde(default = "default_log_file_bytes")]
    pub log_file_bytes: u64,
    /// Rotated agent log files kept besides the current one.
    #[serde(default = "default_log_keep_files")]
    pub log_keep_files: u32,
    /// Records between two anchors (the chain head signed by the device key).
    #[serde(default = "default_anchor_every")]
    pub anchor_every: u64,
}

fn default_command_timeout() -> u64 {
    10
}
fn default_command_max_bytes() -> u64 {
    64 * 1024
}
fn default_journal_lines() -> u64 {
    1000
}
fn default_journal_max_bytes() -> u64 {
    256 * 1024
}
fn default_log_file_bytes() -> u64 {
    1 << 20
}
fn default_log_keep_files() -> u32 {
    4
}
fn default_anchor_every() -> u64 {
    100
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            commands: Vec::new(),
            command_timeout_secs: default_command_timeout(),
            command_max_bytes: default_command_max_bytes(),
            journal_lines: default_journal_lines(),
            journal_max_bytes: default_journal_max_bytes(),
            log_file_bytes: default_log_file_bytes(),
            log_keep_files: default_log_keep_files(),
            anchor_every: default_anchor_every(),
        }
    }
}

impl EvidenceConfig {
    fn check(&self) -> Result<(), String> {
        if self.commands.iter().any(Vec::is_empty) {
            return Err("evidence.commands holds an empty command".into());
        }
        if self.command_timeout_secs == 0 {
            return Err("evidence.command_timeout_secs must be at least 1".into());
        }
        if self.log_file_bytes < 64 * 1024 {
            return Err("evidence.log_file_bytes must be at least 65536".into());
        }
        if self.anchor_every == 0 {
            return Err("evidence.anchor_every must be at least 1".into());
        }
        Ok(())
    }
}

/// `server.key` naming the TLS key in the TPM: `tpm:` (at `[tpm] tls_key_handle`).
pub const TPM_KEY: &str = "tpm:";

/// The device's TPM 2.0 (`[tpm]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    /// How libtss2 reaches the TPM (a TCTI string): `device:/dev/tpmrm0` (the kernel's resource
    /// manager), `tabrmd`, or `swtpm:host=127.0.0.1,port=2321`.
    #[serde(default = "default_tcti")]
    pub tcti: String,
    /// The SHA-256 PCR the agent extends with what booted (one no firmware or bootloader
    /// measures into; PCR 13 by default).
    #[serde(default = "default_agent_pcr")]
    pub pcr: u8,
    /// The endorsement key's standard template: `rsa2048` (what most TPMs certify) or
    /// `ecc256`.
    #[serde(default = "default_ek_algorithm")]
    pub ek_algorithm: String,
    /// Persistent handle of the attestation key (created there on first use).
    #[serde(default = "default_ak_handle", deserialize_with = "handle")]
    pub ak_handle: u32,
    /// Persistent handle of the mutual-TLS key (`rampart-agent tpm provision` creates it;
    /// `server.key = "tpm:"` uses it).
    #[serde(default = "default_tls_key_handle", deserialize_with = "handle")]
    pub tls_key_handle: u32,
    /// NV index of the anti-rollback counter (TPM_NT_COUNTER, defined on first use).
    #[serde(default = "default_nv_counter_index", deserialize_with = "handle")]
    pub nv_counter_index: u32,
    /// The firmware's TCG event log, sent with every quote so the server can replay the
    /// firmware and bootloader measurements (PCRs 0-9) it requires: on devices whose firmware
    /// measures, `/sys/kernel/security/tpm0/binary_bios_measurements`. Absent: only the
    /// agent's own log is sent.
    #[serde(default)]
    pub firmware_event_log: Option<PathBuf>,
}

fn default_tcti() -> String {
    "device:/dev/tpmrm0".into()
}
pub use rampart_attest::measure::DEFAULT_AGENT_PCR;
fn default_agent_pcr() -> u8 {
    DEFAULT_AGENT_PCR
}
fn default_ek_algorithm() -> String {
    "rsa2048".into()
}
// The defaults of `rampart-tpm` (its TpmOptions), which the agent without the `tpm` feature
// does not link.
fn default_ak_handle() -> u32 {
    0x8101_0052
}
fn default_tls_key_handle() -> u32 {
    0x8100_0052
}
fn default_nv_counter_index() -> u32 {
    0x0100_5250
}

/// A TPM handle written as hex (`"0x81010002"`) or as a number.
fn handle<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Handle {
        Number(u32),
        Text(String),
    }
    match Handle::deserialize(d)? {
        Handle::Number(n) => Ok(n),
        Handle::Text(t) => parse_handle(&t).map_err(serde::de::Error::custom),
    }
}

/// Parses a TPM handle: `0x81010002` (hex) or decimal.
pub fn parse_handle(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed
        .map_err(|_| format!("{text:?} is not a TPM handle (write it as hex, e.g. \"0x81010002\")"))
}

/// The largest PCR index of a PC-client TPM (24 PCRs).
const MAX_PCR: u8 = 23;

impl TpmConfig {
    fn check(&self) -> Result<(), String> {
        if self.tcti.trim().is_empty() {
            return Err("tpm.tcti is empty; e.g. \"device:/dev/tpmrm0\"".into());
        }
        if self.pcr > MAX_PCR {
            return Err(format!(
                "tpm.pcr = {} is not a PCR (0 to {MAX_PCR}); the default is {DEFAULT_AGENT_PCR}",
                self.pcr
            ));
        }
        // The owner's persistent handles and NV indexes (TPM 2.0 Part 1, 29.7).
        for (key, value, range) in [
            ("ak_handle", self.ak_handle, 0x8100_0000..=0x817f_ffff),
            (
                "tls_key_handle",
                self.tls_key_handle,
                0x8100_0000..=0x817f_ffff,
            ),
            (
                "nv_counter_index",
                self.nv_counter_index,
                0x0100_0000..=0x013f_ffff,
            ),
        ] {
            if !range.contains(&value) {
                return Err(format!(
                    "tpm.{key} = 0x{value:08x} is outside 0x{:08x}..0x{:08x}",
                    range.start(),
                    range.end()
                ));
            }
        }
        if self.ak_handle == self.tls_key_handle {
            return Err(format!(
                "tpm.ak_handle and tpm.tls_key_handle are both 0x{:08x}; they must differ",
                self.ak_handle
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let read = |source| ConfigError::Read {
            path: shown.clone(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: shown, size });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let mut config = Config::parse(&text).map_err(|reason| ConfigError::Invalid {
            path: shown.clone(),
            reason,
        })?;
        // Relative paths in the file mean the same thing from any working directory: they
        // are relative to the file's own directory (as the keys document).
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = std::path::absolute(dir).map_err(read)?;
        config.resolve_relative_to(&dir);
        Ok(config)
    }

    /// Makes every relative path of the configuration relative to `dir`: files and
    /// directories, and commands given as a relative path with a `/` (`./check-app`; a bare
    /// name such as `systemctl` is still looked up in `PATH`, and a bare PKCS#11 module name
    /// by the dynamic loader). A PKCS#11 URI is not a path.
    pub fn resolve_relative_to(&mut self, dir: &Path) {
        let file = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        let optional = |p: &mut Option<PathBuf>| {
            if let Some(p) = p {
                file(p);
            }
        };
        let command = |argv: &mut Vec<String>| {
            if let Some(program) = argv.first_mut()
                && program.contains('/')
                && Path::new(program.as_str()).is_relative()
            {
                *program = dir.join(program.as_str()).display().to_string();
            }
        };
        file(&mut self.state_dir);
        if let Some(server) = &mut self.server {
            file(&mut server.ca);
            file(&mut server.cert);
            if !server.key.starts_with("pkcs11:")
                && !server.key.starts_with(TPM_KEY)
                && Path::new(&server.key).is_relative()
            {
                server.key = dir.join(&server.key).display().to_string();
            }
            // A bare library name (`libsofthsm2.so`) is for the dynamic loader to find.
            if let Some(module) = &mut server.pkcs11_module
                && module.components().count() > 1
            {
                file(module);
            }
            optional(&mut server.pkcs11_pin_file);
        }
        file(&mut self.slots.a);
        file(&mut self.slots.b);
        optional(&mut self.bootloader.grub_env);
        optional(&mut self.bootloader.fw_env_config);
        optional(&mut self.bootloader.script);
        file(&mut self.boot.cmdline);
        file(&mut self.boot.boot_id);
        command(&mut self.boot.reboot_command);
        self.health.commands.iter_mut().for_each(command);
        command(&mut self.install.soft_check);
        self.evidence.commands.iter_mut().for_each(command);
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.hardware_id.trim().is_empty() {
            return Err("hardware_id is empty".into());
        }
        if self.slots.a == self.slots.b {
            return Err(format!(
                "slots A and B are the same ({}); they must be two different devices or files",
                self.slots.a.display()
            ));
        }
        let b = &self.bootloader;
        let need = |value: &Option<PathBuf>, key: &str| {
            if value.is_none() {
                Err(format!(
                    "bootloader.kind = {:?} needs bootloader.{key}",
                    format!("{:?}", b.kind).to_lowercase()
                ))
            } else {
                Ok(())
            }
        };
        match b.kind {
            BootloaderKind::Grub => need(&b.grub_env, "grub_env")?,
            BootloaderKind::Uboot => need(&b.fw_env_config, "fw_env_config")?,
            BootloaderKind::Custom => need(&b.script, "script")?,
        }
        if b.tries == 0 || b.tries > MAX_TRIES {
            return Err(format!(
                "bootloader.tries = {} must be from 1 to {MAX_TRIES}",
                b.tries
            ));
        }
        if let Some(slot) = &self.boot.booted_slot
            && Slot::parse(slot).is_none()
        {
            return Err(format!("boot.booted_slot = {slot:?} is not A or B"));
        }
        if self.boot.reboot_command.is_empty() {
            return Err("boot.reboot_command is empty".into());
        }
        if self.health.commands.iter().any(Vec::is_empty) {
            return Err("health.commands holds an empty command".into());
        }
        if self.install.checkpoint_bytes < 4096 {
            return Err("install.checkpoint_bytes must be at least 4096".into());
        }
        if let Some(tpm) = &self.tpm {
            tpm.check()?;
        }
        self.evidence.check()?;
        if let Some(server) = &self.server
            && server.key.starts_with(TPM_KEY)
        {
            if server.key != TPM_KEY {
                return Err(format!(
                    "server.key = {:?}: the key in the TPM is written \"tpm:\" (its handle is tpm.tls_key_handle)",
                    server.key
                ));
            }
            if self.tpm.is_none() {
                return Err(
                    "server.key = \"tpm:\" needs a [tpm] section (the TPM that holds the key)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
hardware_id = "board-a"
[slots]
A = "/dev/mmcblk0p2"
B = "/dev/mmcblk0p3"
[bootloader]
kind = "uboot"
fw_env_config = "/etc/fw_env.config"
"#;

    #[test]
    fn minimal_configuration_takes_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.state_dir, Path::new("/var/lib/rampart-agent"));
        assert_eq!(c.bootloader.tries, DEFAULT_TRIES);
        assert_eq!(c.boot.cmdline, Path::new("/proc/cmdline"));
        assert!(c.health.check_server);
        assert!(c.server.is_none());
        assert_eq!(c.slots.path(Slot::B), Path::new("/dev/mmcblk0p3"));
        assert!(c.tpm.is_none());
    }

    #[test]
    fn tpm_section_takes_defaults_and_hex_handles() {
        let c = Config::parse(&format!("{MINIMAL}[tpm]\n")).unwrap();
        let tpm = c.tpm.unwrap();
        assert_eq!(tpm.tcti, "device:/dev/tpmrm0");
        assert_eq!(tpm.pcr, 13);
        assert_eq!(tpm.ak_handle, 0x8101_0052);
        let c = Config::parse(&format!(
            "{MINIMAL}[tpm]\ntcti = \"swtpm:host=127.0.0.1,port=2321\"\npcr = 16\nak_handle = \"0x81010010\"\nnv_counter_index = 0x01000020\n"
        ))
        .unwrap();
        let tpm = c.tpm.unwrap();
        assert_eq!(
            (tpm.pcr, tpm.ak_handle, tpm.nv_counter_index),
            (16, 0x8101_0010, 0x0100_0020)
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                MINIMAL.replace("fw_env_config", "grub_env"),
                "fw_env_config",
            ),
            (MINIMAL.replace("mmcblk0p3", "mmcblk0p2"), "the same"),
            (
                MINIMAL.replace("kind = \"uboot\"", "kind = \"lilo\""),
                "lilo",
            ),
            (format!("{MINIMAL}tries = 0\n"), "tries"),
            (format!("colour = 1\n{MINIMAL}"), "colour"),
            (
                format!("{MINIMAL}[boot]\nbooted_slot = \"C\"\n"),
                "booted_slot",
            ),
            (format!("{MINIMAL}[tpm]\npcr = 24\n"), "tpm.pcr"),
            (
                format!("{MINIMAL}[tpm]\nak_handle = \"81010002\"\n"),
                "ak_handle",
            ),
            (
                format!("{MINIMAL}[tpm]\nak_handle = \"0x02\"\n"),
                "ak_handle",
            ),
            (
                format!("{MINIMAL}[tpm]\ntls_key_handle = \"0x81010052\"\n"),
                "both",
            ),
            (format!("{MINIMAL}[tpm]\ntcti = \"\"\n"), "tcti"),
        ];
        for (text, needle) in cases {
            let err = Config::parse(&text).unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
