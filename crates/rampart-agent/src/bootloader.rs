//! Bootloader backends: how the agent reads and switches the A/B state.
//!
//! GRUB and U-Boot keep the state in their environment ([`rampart_boot::ab`] variables), which
//! the agent reads and writes natively ([`crate::bootenv`]). Any other bootloader plugs in
//! through a script with RAUC's custom-backend interface.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_boot::ab::{AbError, AbState, Slot, SlotHealth};

use crate::bootenv::{EnvError, EnvStore};
use crate::config::{BootloaderConfig, BootloaderKind};
use crate::disk::{Disk, DiskError};

/// How long a bootloader script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest script output read.
const MAX_SCRIPT_OUTPUT: usize = 4096;

/// Why the bootloader state could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("bootloader environment {what}: {source}")]
    Env {
        what: String,
        #[source]
        source: EnvError,
    },
    #[error(
        "bootloader environment {what} holds unusable A/B variables: {source}; fix them with fw_setenv / grub-editenv"
    )]
    Ab {
        what: String,
        #[source]
        source: AbError,
    },
    #[error("bootloader script {script} {args}: {reason}")]
    Script {
        script: String,
        args: String,
        reason: String,
    },
    #[error(transparent)]
    Disk(#[from] DiskError),
}

impl BootError {
    /// Whether the environment itself is corrupt (as opposed to a failing backend).
    pub fn is_corrupt_env(&self) -> bool {
        match self {
            BootError::Ab { .. } => true,
            BootError::Env { source, .. } => !matches!(source, EnvError::Disk(_)),
            _ => false,
        }
    }

    /// The simulated power cut, if this is one.
    pub fn crashed(&self) -> bool {
        matches!(
            self,
            BootError::Disk(DiskError::Crashed { .. })
                | BootError::Env {
                    source: EnvError::Disk(DiskError::Crashed { .. }),
                    ..
                }
        )
    }
}

/// The four operations the agent needs (RAUC's custom-backend interface). Changes are written
/// through `D`, the platform's persistent-write layer (on a device, the [`Disk`]).
pub trait Bootloader<D = Disk>: Send {
    /// The first slot in the boot order.
    fn primary(&mut self) -> Result<Slot, BootError>;
    /// Whether `slot` may be booted.
    fn health(&mut self, slot: Slot) -> Result<SlotHealth, BootError>;
    /// Makes `slot` the first to boot, with a fresh boot counter (a try boot).
    fn set_primary(&mut self, disk: &D, slot: Slot) -> Result<(), BootError>;
    /// Marks `slot` good (counter reset) or bad (never booted).
    fn set_health(&mut self, disk: &D, slot: Slot, health: SlotHealth) -> Result<(), BootError>;
    /// Confirms the running `slot` at start: resets its boot counter if the bootloader
    /// decremented it (only written when needed, to spare flash).
    fn confirm(&mut self, disk: &D, slot: Slot) -> Result<(), BootError> {
        self.set_health(disk, slot, SlotHealth::Good)
    }
    /// Names the backend in messages.
    fn describe(&self) -> String;
    /// The environment as text, for forensic evidence: every variable of an environment
    /// store (`name=value` lines); for a backend without one, what the A/B interface tells
    /// (the primary slot and each slot's health).
    fn environment(&mut self) -> Result<String, BootError> {
        let mut text = format!(
            "# {}\nprimary={}\n",
            self.describe(),
            self.primary()?.name()
        );
        for slot in [Slot::A, Slot::B] {
            let health = match self.health(slot)? {
                SlotHealth::Good => "good",
                SlotHealth::Bad => "bad",
            };
            text.push_str(&format!("{}={health}\n", slot.name()));
        }
        Ok(text)
    }
}

/// GRUB or U-Boot: the A/B variables in an environment store.
pub struct EnvBootloader<S: EnvStore> {
    store: S,
    tries: u8,
}

impl<S: EnvStore> EnvBootloader<S> {
    pub fn new(store: S, tries: u8) -> Self {
        EnvBootloader { store, tries }
    }

    fn load(&self) -> Result<(std::collections::BTreeMap<String, String>, AbState), BootError> {
        let vars = self.store.load().map_err(|source| BootError::Env {
            what: self.store.describe(),
            source,
        })?;
        let ab = AbState::from_vars(&vars, self.tries).map_err(|source| BootError::Ab {
            what: self.store.describe(),
            source,
        })?;
        Ok((vars, ab))
    }

    fn change(&mut self, disk: &Disk, f: impl FnOnce(&mut AbState)) -> Result<(), BootError> {
        let (mut vars, mut ab) = self.load()?;
        let before = ab.clone();
        f(&mut ab);
        if ab == before && vars.contains_key(rampart_boot::ab::ORDER_VAR) {
            return Ok(());
        }
        ab.to_vars(&mut vars);
        let what = self.store.describe();
        self.store
            .store(disk, &vars)
            .map_err(|source| BootError::Env { what, source })
    }
}

impl<S: EnvStore + Send> Bootloader for EnvBootloader<S> {
    fn environment(&mut self) -> Result<String, BootError> {
        let (vars, _) = self.load()?;
        let mut text = format!("# {}\n", self.store.describe());
        for (name, value) in vars {
            text.push_str(&format!("{name}={value}\n"));
        }
        Ok(text)
    }

    fn primary(&mut self) -> Result<Slot, BootError> {
        Ok(self.load()?.1.primary())
    }

    fn health(&mut self, slot: Slot) -> Result<SlotHealth, BootError> {
        Ok(self.load()?.1.health(slot))
    }

    fn set_primary(&mut self, disk: &Disk, slot: Slot) -> Result<(), BootError> {
        let tries = self.tries;
        self.change(disk, |ab| ab.set_primary(slot, tries))
    }

    fn set_health(&mut self, disk: &Disk, slot: Slot, health: SlotHealth) -> Result<(), BootError> {
        let tries = self.tries;
        self.change(disk, |ab| ab.set_health(slot, health, tries))
    }

    fn describe(&self) -> String {
        self.store.describe()
    }
}

/// A script with RAUC's custom bootloader interface: `get-primary` prints the primary slot's
/// boot name, `set-primary NAME`, `get-state NAME` prints `good` or `bad`,
/// `set-state NAME good|bad`. Exit status 0 means success.
pub struct ScriptBootloader {
    script: PathBuf,
}

impl ScriptBootloader {
    pub fn new(script: &Path) -> Self {
        ScriptBootloader {
            script: script.to_path_buf(),
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, BootError> {
        let fail = |reason: String| BootError::Script {
            script: self.script.display().to_string(),
            args: args.join(" "),
            reason,
        };
        let mut child = Command::new(&self.script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run it: {e}")))?;
        let deadline = Instant::now() + SCRIPT_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!(
                        "did not finish within {} s",
                        SCRIPT_TIMEOUT.as_secs()
                    )));
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        };
        // The script has exited: its (small) output is in the pipes.
        let read = |r: Option<&mut dyn std::io::Read>| {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = std::io::Read::read_to_end(
                    &mut std::io::Read::take(r, MAX_SCRIPT_OUTPUT as u64),
                    &mut buf,
                );
            }
            String::from_utf8_lossy(&buf).trim().to_owned()
        };
        let stdout = read(child.stdout.as_mut().map(|s| s as &mut dyn std::io::Read));
        let stderr = read(child.stderr.as_mut().map(|s| s as &mut dyn std::io::Read));
        if !status.success() {
            return Err(fail(format!("failed ({status}): {stderr}")));
        }
        Ok(stdout)
    }
}

impl Bootloader for ScriptBootloader {
    fn primary(&mut self) -> Result<Slot, BootError> {
        let out = self.run(&["get-primary"])?;
        Slot::parse(&out).ok_or_else(|| BootError::Script {
            script: self.script.display().to_string(),
            args: "get-primary".into(),
            reason: format!("printed {out:?}, not a boot name A or B"),
        })
    }

    fn health(&mut self, slot: Slot) -> Result<SlotHealth, BootError> {
        let out = self.run(&["get-state", slot.name()])?;
        match out.as_str() {
            "good" => Ok(SlotHealth::Good),
            "bad" => Ok(SlotHealth::Bad),
            other => Err(BootError::Script {
                script: self.script.display().to_string(),
                args: format!("get-state {slot}"),
                reason: format!("printed {other:?}, not good or bad"),
            }),
        }
    }

    fn set_primary(&mut self, disk: &Disk, slot: Slot) -> Result<(), BootError> {
        let what = format!("{} set-primary {slot}", self.script.display());
        let mut result = Ok(String::new());
        disk.external(&what, || {
            result = self.run(&["set-primary", slot.name()]);
            Ok(())
        })?;
        result.map(drop)
    }

    fn set_health(&mut self, disk: &Disk, slot: Slot, health: SlotHealth) -> Result<(), BootError> {
        let state = match health {
            SlotHealth::Good => "good",
            SlotHealth::Bad => "bad",
        };
        let what = format!("{} set-state {slot} {state}", self.script.display());
        let mut result = Ok(String::new());
        disk.external(&what, || {
            result = self.run(&["set-state", slot.name(), state]);
            Ok(())
        })?;
        result.map(drop)
    }

    fn describe(&self) -> String {
        format!("bootloader script {}", self.script.display())
    }
}

/// The backend the configuration names.
pub fn from_config(config: &BootloaderConfig) -> Result<Box<dyn Bootloader>, BootError> {
    let missing = |key: &str| BootError::Script {
        script: String::new(),
        args: String::new(),
        reason: format!("the configuration lacks bootloader.{key}"),
    };
    Ok(match config.kind {
        BootloaderKind::Grub => {
            let path = config
                .grub_env
                .as_ref()
                .ok_or_else(|| missing("grub_env"))?;
            Box::new(EnvBootloader::new(
                crate::bootenv::GrubEnvFile::new(path),
                config.tries,
            ))
        }
        BootloaderKind::Uboot => {
            let path = config
                .fw_env_config
                .as_ref()
                .ok_or_else(|| missing("fw_env_config"))?;
            let store = crate::bootenv::UbootEnv::from_config_file(path).map_err(|source| {
                BootError::Env {
                    what: path.display().to_string(),
                    source,
                }
            })?;
            Box::new(EnvBootloader::new(store, config.tries))
        }
        BootloaderKind::Custom => {
            let path = config.script.as_ref().ok_or_else(|| missing("script"))?;
            Box::new(ScriptBootloader::new(path))
        }
    })
}
