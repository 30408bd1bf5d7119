//! The CLI's trycmd cases (tests/cmd/): every command's and subcommand's `--help`
//! (tests/cmd/help/, one case per command, named as its man page), and the output of commands
//! that run without a server (tests/cmd/offline/). After a deliberate change to help or output,
//! `TRYCMD=overwrite cargo test -p rampart-cli --test cmd` rewrites the expected files; review
//! the diff. Commands that need a server are tested in Rust (tests/inventory.rs and others).
//!
//! Also here: the completion scripts and man pages, generated for every shell and command.

use std::collections::BTreeSet;
use std::path::Path;

use clap::CommandFactory as _;
use rampart_cli::cli::Cli;

const HELP_CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cmd/help");

#[test]
fn cli_cases() {
    trycmd::TestCases::new()
        .register_bin("rampart", Path::new(env!("CARGO_BIN_EXE_rampart")))
        .case("tests/cmd/help/*.toml")
        .case("tests/cmd/offline/*.toml");
}

/// Every visible command and subcommand, as the words after `rampart` (the top is `[]`).
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        out.push(prefix.to_vec());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_owned());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), &[], &mut out);
    out
}

/// The case (and man page) name of a command: `rampart-device-list`.
fn case_name(path: &[String]) -> String {
    std::iter::once("rampart")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
}

/// A guard: a command added without a help case fails here, naming the case file to add
/// (its content is printed; `TRYCMD=overwrite` then writes the expected output).
#[test]
fn every_command_has_a_help_case() {
    let paths = command_paths();
    assert!(paths.len() > 100, "{} commands", paths.len());
    let mut missing = Vec::new();
    let mut expected = BTreeSet::new();
    for path in &paths {
        let name = case_name(path);
        let file = Path::new(HELP_CASES).join(format!("{name}.toml"));
        expected.insert(format!("{name}.toml"));
        let args: Vec<String> = path
            .iter()
            .map(|w| format!("{w:?}"))
            .chain(std::iter::once("\"--help\"".to_owned()))
            .collect();
        let wanted = format!(
            "bin.name = \"rampart\"\nargs = [{}]\nstatus.code = 0\nenv.inherit = false\n",
            args.join(", ")
        );
        match std::fs::read_to_string(&file) {
            Ok(text) if text == wanted => {}
            _ => missing.push(format!("{}:\n{wanted}", file.display())),
        }
    }
    assert!(
        missing.is_empty(),
        "{} command(s) without their help case; write these files:\n\n{}",
        missing.len(),
        missing.join("\n")
    );
    // And no case for a command that is gone.
    let stale: Vec<String> = std::fs::read_dir(HELP_CASES)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml") && !expected.contains(n))
        .collect();
    assert!(stale.is_empty(), "help cases of no command: {stale:?}");
}

#[test]
fn completions_are_generated_for_every_shell_and_name_real_commands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        // Commands and options at several depths, as each shell's script spells them.
        for word in [
            "assignment",
            "campaign",
            "quarantined",
            "sbom-check",
            // Options (fish writes them without the dashes).
            "warn-days",
            "log-level",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
        assert!(script.contains("rampart"), "{shell}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("possible values: bash, elvish, fish, powershell, zsh")
    );
}

#[test]
fn man_pages_are_written_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["man", "--dir"])
        .arg(dir.path().join("man1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let paths = command_paths();
    for path in &paths {
        let page = dir
            .path()
            .join("man1")
            .join(format!("{}.1", case_name(path)));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{}", page.display());
        assert!(text.contains(".SH NAME"), "{}", page.display());
    }
    let written = std::fs::read_dir(dir.path().join("man1")).unwrap().count();
    assert_eq!(written, paths.len());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{} man pages in ", paths.len())),
        "{stderr}"
    );
    // Without --dir: the top page on stdout.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    let top = String::from_utf8(out.stdout).unwrap();
    assert!(top.contains(".TH rampart 1"), "{top}");
    assert!(
        top.contains("rampart\\-status(1)"),
        "{}",
        &top[..top.len().min(2000)]
    );
}
