//! The workspace's binaries, for tests in any package: built (or found up to date) with the
//! test's own profile and target directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// `BIN` of package `package`, built (or found up to date) in the directory the running test
/// binary was built in.
///
/// A test of one package cannot name another package's binary (`CARGO_BIN_EXE_*` covers only
/// its own), and `cargo test -p X` builds only X's. So this runs `cargo build -p PACKAGE --bin
/// BIN` with the same profile and target directory (cargo releases its build lock before running
/// tests, so this does not deadlock), once per test process and binary.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    workspace_binary_with_features(package, bin, "")
}

/// [`workspace_binary`] built with the cargo `features` (comma-separated; `""`: the default).
pub fn workspace_binary_with_features(package: &str, bin: &str, features: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{bin} [{features}]");
    if let Some((_, path)) = built.iter().find(|(name, _)| *name == key) {
        return path.clone();
    }
    let path = build(package, bin, features);
    built.push((key, path.clone()));
    path
}

/// The `rampart` operator binary.
pub fn rampart_binary() -> PathBuf {
    workspace_binary("rampart-cli", "rampart")
}

/// The `rampart-agent` device binary.
pub fn agent_binary() -> PathBuf {
    workspace_binary("rampart-agent", "rampart-agent")
}

/// The `rampart-agent` device binary with TPM support (its `tpm` feature: libtss2), copied
/// beside the default build as `rampart-agent-tpm`, so tests that run the default binary
/// meanwhile keep theirs.
pub fn agent_binary_with_tpm() -> PathBuf {
    let built = workspace_binary_with_features("rampart-agent", "rampart-agent", "tpm");
    let copy = built.with_file_name(format!("rampart-agent-tpm{}", std::env::consts::EXE_SUFFIX));
    std::fs::copy(&built, &copy)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), copy.display()));
    copy
}

/// The profile directory (`target/debug`, `target/release`, ...) the running test was built in:
/// test binaries live in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let deps = exe.parent().expect("the test binary has a directory");
    let dir = if deps.file_name().and_then(|n| n.to_str()) == Some("deps") {
        deps.parent().expect("deps/ has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

fn build(package: &str, bin: &str, features: &str) -> PathBuf {
    let profile_dir = profile_dir();
    let binary = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("cannot tell the profile from {}", profile_dir.display()),
    };
    let target_dir = profile_dir.parent().expect("a target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .args(["--features", features])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() && binary.exists() => binary,
        Ok(out) => panic!(
            "building the {bin} binary failed ({}); build it with `cargo build -p {package}` \
             (expected at {}):\n{}",
            out.status,
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "could not run {} to build {bin} ({e}); build it with `cargo build -p {package}` \
             (expected at {})",
            cargo.to_string_lossy(),
            binary.display()
        ),
    }
}
