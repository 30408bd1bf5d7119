//! The `rampart-agent` binary's edges: where its configuration's paths point, what a missing
//! state directory says, how errors are printed, and a reader that stops reading.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A device directory `dev/` holding `agent.toml` with relative paths only (state, slots,
/// bootloader, boot id), its slot files and its state directory.
fn device_dir(work: &Path) -> PathBuf {
    let dev = work.join("dev");
    std::fs::create_dir_all(dev.join("state")).unwrap();
    for slot in ["slot-A", "slot-B"] {
        std::fs::write(dev.join(slot), vec![0u8; 64 * 1024]).unwrap();
    }
    std::fs::write(dev.join("boot_id"), "5f0c3e9a-boot\n").unwrap();
    std::fs::write(
        dev.join("agent.toml"),
        r#"state_dir = "state"
hardware_id = "board-a"
[slots]
A = "slot-A"
B = "slot-B"
[bootloader]
kind = "grub"
grub_env = "grubenv"
[boot]
booted_slot = "A"
boot_id = "boot_id"
"#,
    )
    .unwrap();
    dev
}

/// `rampart-agent ARGS` run in `cwd`: success, standard output, standard error.
fn agent(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RAMPART_AGENT_CONFIG")
        .env_remove("RAMPART_AGENT_STATE")
        .stdin(Stdio::null())
        .output()
        .expect("the agent binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Relative paths in the configuration are relative to the file, not to the working
/// directory: the same device seen from its own directory and from its parent is one device
/// (the state written from one is read from the other).
#[test]
fn config_paths_resolve_against_the_config_files_directory() {
    let work = tempfile::tempdir().unwrap();
    let dev = device_dir(work.path());
    let (ok, out, err) = agent(work.path(), &["--config", "dev/agent.toml", "reset-state"]);
    assert!(ok && out.contains("slot A committed"), "{out}{err}");
    assert!(
        dev.join("state/agent-state.json").is_file(),
        "the state is written in dev/state, not ./state"
    );
    assert!(!work.path().join("state").exists());

    let absolute = dev.join("agent.toml");
    for (cwd, config) in [
        (work.path(), "dev/agent.toml"),
        (dev.as_path(), "agent.toml"),
        (Path::new("/"), absolute.to_str().unwrap()),
    ] {
        let (ok, out, err) = agent(cwd, &["--config", config, "status"]);
        assert!(ok, "from {}: {err}", cwd.display());
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            status["state"]["committed"],
            "A",
            "from {}: {status}",
            cwd.display()
        );
    }
}

/// A state directory that does not exist is an error naming it and saying how to create it,
/// never a fresh state printed as if the device were new.
#[test]
fn a_missing_state_directory_is_an_error_that_names_it_and_says_how_to_create_it() {
    let work = tempfile::tempdir().unwrap();
    let dev = device_dir(work.path());
    std::fs::remove_dir(dev.join("state")).unwrap();
    let (ok, out, err) = agent(work.path(), &["--config", "dev/agent.toml", "status"]);
    assert!(!ok, "{out}");
    assert!(out.is_empty(), "no state is printed: {out}");
    let missing = dev.join("state");
    assert!(
        err.contains(&format!("the state directory {} ", missing.display())),
        "{err}"
    );
    assert!(
        err.contains("rampart-agent --config dev/agent.toml init"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "printed once: {err}");
}

/// An error is printed once, and the operating system's text in it once (the configuration
/// error shows its I/O error and also returns it as its source).
#[test]
fn an_agent_error_and_its_os_text_are_printed_once() {
    let work = tempfile::tempdir().unwrap();
    let (ok, out, err) = agent(work.path(), &["--config", "missing.toml", "status"]);
    assert!(!ok && out.is_empty(), "{out}");
    let os_text = std::io::Error::from_raw_os_error(2).to_string();
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert_eq!(err.matches(&os_text).count(), 1, "{err}");
    assert!(err.contains("missing.toml"), "{err}");
}

/// Standard output whose reader is gone (`rampart-agent ... | head -0`): the agent ends
/// quietly and successfully, with no panic message.
#[test]
fn a_closed_standard_output_ends_the_agent_quietly() {
    let work = tempfile::tempdir().unwrap();
    let dev = device_dir(work.path());
    // A pipe whose read end is closed before the agent starts: every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
        .args(["--config", "agent.toml", "reset-state"])
        .current_dir(&dev)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
    // The work itself was done.
    assert!(dev.join("state/agent-state.json").is_file());
}

#[test]
fn completions_for_every_shell_and_man_pages_for_every_command() {
    let work = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (ok, script, err) = agent(work.path(), &["completions", shell]);
        assert!(ok, "{shell}: {err}");
        for word in [
            "rampart-agent",
            "install",
            "reset-state",
            "provision",
            "state-dir",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let man = work.path().join("man");
    let (ok, _, err) = agent(work.path(), &["man", "--dir", man.to_str().unwrap()]);
    assert!(ok, "{err}");
    for page in [
        "rampart-agent",
        "rampart-agent-install",
        "rampart-agent-tpm-provision",
    ] {
        let text = std::fs::read_to_string(man.join(format!("{page}.1"))).unwrap();
        assert!(text.contains(".SH NAME"), "{page}");
    }
    let pages = std::fs::read_dir(&man).unwrap().count();
    assert!(err.starts_with(&format!("{pages} man pages in ")), "{err}");
}
