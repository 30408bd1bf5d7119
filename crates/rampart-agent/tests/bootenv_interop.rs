//! The agent's native bootloader environments against the real tools: Debian's `grub-editenv`
//! (package grub-common) and libubootenv's `fw_printenv`/`fw_setenv` (package
//! libubootenv-tool). What one side writes, the other must read exactly, including which
//! U-Boot copy is current after any mix of writers.
//!
//! The tools are required: a missing one fails the test (with the package to install) rather
//! than skipping it, so a green run always means interoperability was checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use rampart_agent::bootenv::{EnvError, EnvStore, GrubEnvFile, UbootEnv};
use rampart_agent::disk::Disk;
use rampart_boot::ubootenv::{self, UbootEnvError};

/// The U-Boot environment size used here (libubootenv's usual 16 KiB).
const ENV_SIZE: usize = 0x4000;

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The path of a required tool; panics naming the Debian package when it is missing.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]);
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} is not installed: this interoperability test needs the Debian package {package} \
         (apt-get install -y {package}; scripts/test.sh installs it)"
    );
}

/// Runs `cmd`, failing the test with its output unless it succeeds.
fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// GRUB

fn grub_editenv() -> Command {
    Command::new(tool("grub-editenv", "grub-common"))
}

/// What `grub-editenv FILE list` prints for `vars` stored in name order: `name=value` lines,
/// values unescaped (a value with a newline spans lines).
fn listing(vars: &BTreeMap<String, String>) -> String {
    vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[test]
fn agent_writes_grub_block_and_grub_editenv_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let mut env = GrubEnvFile::new(&path);
    let mut v = vars(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
        // GRUB escapes backslashes and newlines with a backslash.
        ("path", r"C:\boot\\x"),
        ("multi", "line one\nline two"),
        ("spaces", "  a = b  "),
    ]);
    env.store(&Disk::new(), &v).unwrap();
    let listed = run(grub_editenv().arg(&path).arg("list"));
    assert_eq!(listed, listing(&v));

    // grub-editenv can edit the agent's block in place (it finds the `#` padding), and the
    // agent reads its edits.
    run(grub_editenv()
        .arg(&path)
        .args(["set", "BOOT_ORDER=B A", "added=new value"]));
    run(grub_editenv().arg(&path).args(["unset", "BOOT_B_LEFT"]));
    v.insert("BOOT_ORDER".into(), "B A".into());
    v.insert("added".into(), "new value".into());
    v.remove("BOOT_B_LEFT");
    assert_eq!(env.load().unwrap(), v);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024);
}

#[test]
fn grub_editenv_writes_and_agent_reads_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    run(grub_editenv().arg(&path).arg("create"));
    // A freshly created block (with grub-editenv's warning comment) holds no variables.
    let env = GrubEnvFile::new(&path);
    assert_eq!(env.load().unwrap(), BTreeMap::new());
    run(grub_editenv().arg(&path).args([
        "set",
        "BOOT_ORDER=B A",
        "BOOT_B_LEFT=2",
        "x=back\\slash and\nnewline",
        "eq=a=b",
        "empty=",
    ]));
    let expected = vars(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_B_LEFT", "2"),
        ("x", "back\\slash and\nnewline"),
        ("eq", "a=b"),
        ("empty", ""),
    ]);
    assert_eq!(env.load().unwrap(), expected);
    // The escapes are really in the file, as GRUB writes them.
    let raw = std::fs::read(&path).unwrap();
    let needle = b"x=back\\\\slash and\\\nnewline\n";
    assert!(raw.windows(needle.len()).any(|w| w == needle));

    // Values that shrink and grow in place.
    run(grub_editenv()
        .arg(&path)
        .args(["set", "BOOT_ORDER=A", "BOOT_B_LEFT=123456789"]));
    let mut expected = expected;
    expected.insert("BOOT_ORDER".into(), "A".into());
    expected.insert("BOOT_B_LEFT".into(), "123456789".into());
    assert_eq!(env.load().unwrap(), expected);
}

// ---------------------------------------------------------------------------------------------
// U-Boot

/// A U-Boot environment on plain files, with the config the tools and the agent share.
struct Uboot {
    dir: tempfile::TempDir,
    config: PathBuf,
    files: Vec<PathBuf>,
    /// An empty default environment for `fw_setenv -f`, so the tools never pick up the host's
    /// `/etc/u-boot-initial-env`.
    no_defaults: PathBuf,
}

impl Uboot {
    /// `copies` zero-filled files of ENV_SIZE (libubootenv reads exactly ENV_SIZE bytes, so
    /// the files must exist at full size). For files, libubootenv ignores the sector size and
    /// uses incremental flags; the sector-size column is given as on real devices.
    fn new(copies: usize) -> Uboot {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("# device\toffset\tenv size\tsector size\n");
        let mut files = Vec::new();
        for i in 0..copies {
            let f = dir.path().join(format!("env{i}"));
            std::fs::write(&f, vec![0u8; ENV_SIZE]).unwrap();
            text.push_str(&format!(
                "{}\t0x0\t{ENV_SIZE:#x}\t{ENV_SIZE:#x}\n",
                f.display()
            ));
            files.push(f);
        }
        let config = dir.path().join("fw_env.config");
        std::fs::write(&config, text).unwrap();
        let no_defaults = dir.path().join("u-boot-initial-env");
        std::fs::write(&no_defaults, "").unwrap();
        Uboot {
            dir,
            config,
            files,
            no_defaults,
        }
    }

    /// The agent's view (taking the tools' lock file, as in production).
    fn agent(&self) -> UbootEnv {
        UbootEnv::from_config_file(&self.config).unwrap()
    }

    /// `fw_printenv -c CONFIG`, parsed (values here never contain newlines).
    fn printenv(&self) -> BTreeMap<String, String> {
        let missing = self.dir.path().join("no-such-default-env");
        let out = run(Command::new(tool("fw_printenv", "libubootenv-tool"))
            .arg("-c")
            .arg(&self.config)
            .arg("-f")
            .arg(&missing));
        out.lines()
            .map(|l| {
                let (k, v) = l.split_once('=').expect("fw_printenv prints name=value");
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    /// `fw_printenv` when no copy is valid (its default-environment fallback disabled).
    fn printenv_fails(&self) -> String {
        let missing = self.dir.path().join("no-such-default-env");
        let out = output(
            Command::new(tool("fw_printenv", "libubootenv-tool"))
                .arg("-c")
                .arg(&self.config)
                .arg("-f")
                .arg(&missing),
        );
        assert!(
            !out.status.success(),
            "fw_printenv read an environment: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `fw_setenv -c CONFIG NAME VALUE ...` (a NAME without VALUE, last, deletes it).
    fn setenv(&self, args: &[&str]) {
        run(Command::new(tool("fw_setenv", "libubootenv-tool"))
            .arg("-c")
            .arg(&self.config)
            .arg("-f")
            .arg(&self.no_defaults)
            .args(args));
    }

    fn raw(&self, copy: usize) -> Vec<u8> {
        std::fs::read(&self.files[copy]).unwrap()
    }

    /// The flags bytes of the two copies.
    fn flags(&self) -> [u8; 2] {
        [self.raw(0)[4], self.raw(1)[4]]
    }

    /// Flips a bit of a copy's stored CRC.
    fn corrupt_crc(&self, copy: usize) {
        let mut raw = self.raw(copy);
        raw[0] ^= 0x01;
        std::fs::write(&self.files[copy], raw).unwrap();
    }
}

fn boot_vars(order: &str, a: u8, b: u8) -> BTreeMap<String, String> {
    vars(&[
        ("BOOT_ORDER", order),
        ("BOOT_A_LEFT", &a.to_string()),
        ("BOOT_B_LEFT", &b.to_string()),
        ("bootcmd", "run rampart_boot; reset"),
    ])
}

#[test]
fn agent_writes_redundant_uboot_env_and_fw_printenv_reads_it() {
    let u = Uboot::new(2);
    let mut agent = u.agent();
    assert!(agent.is_redundant());
    let expected_flags = [[0, 1], [2, 1], [2, 3]];
    for (i, v) in [
        boot_vars("A B", 3, 3),
        boot_vars("B A", 3, 3),
        boot_vars("B A", 3, 2),
    ]
    .iter()
    .enumerate()
    {
        agent.store(&Disk::new(), v).unwrap();
        assert_eq!(u.flags(), expected_flags[i], "write {i}");
        assert_eq!(&u.printenv(), v, "write {i}");
    }
}

#[test]
fn fw_setenv_writes_alternating_copies_and_agent_reads_the_latest() {
    let u = Uboot::new(2);
    let agent = u.agent();
    u.setenv(&["BOOT_ORDER", "A B", "BOOT_A_LEFT", "3"]);
    // From nothing valid, fw_setenv writes the second copy with flags 1, as the agent does.
    assert_eq!(u.flags(), [0, 1]);
    assert_eq!(
        agent.load().unwrap(),
        vars(&[("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "3")])
    );
    u.setenv(&["BOOT_ORDER", "B A", "BOOT_B_LEFT", "3"]);
    assert_eq!(u.flags(), [2, 1]);
    u.setenv(&["BOOT_B_LEFT", "2"]);
    assert_eq!(u.flags(), [2, 3]);
    u.setenv(&["BOOT_A_LEFT"]); // deletes it
    assert_eq!(u.flags(), [4, 3]);
    assert_eq!(
        agent.load().unwrap(),
        vars(&[("BOOT_ORDER", "B A"), ("BOOT_B_LEFT", "2")])
    );
}

#[test]
fn agent_and_fw_setenv_interleave_and_agree_on_the_current_copy() {
    let u = Uboot::new(2);
    let mut agent = u.agent();
    let mut expected = boot_vars("A B", 3, 3);
    agent.store(&Disk::new(), &expected).unwrap();
    let mut last_flags = u.flags();
    for round in 0..4u8 {
        // The tool writes on top of the agent's copy...
        let b_left = format!("{}", 9 - round);
        u.setenv(&["BOOT_B_LEFT", &b_left]);
        expected.insert("BOOT_B_LEFT".into(), b_left);
        assert_eq!(
            agent.load().unwrap(),
            expected,
            "round {round}, after fw_setenv"
        );
        // ...and the agent on top of the tool's.
        expected.insert("round".into(), round.to_string());
        agent.store(&Disk::new(), &expected).unwrap();
        assert_eq!(u.printenv(), expected, "round {round}, after the agent");
        // Each write went to the other copy, with the counter one higher.
        let flags = u.flags();
        assert_ne!(flags[0], last_flags[0]);
        assert_ne!(flags[1], last_flags[1]);
        last_flags = flags;
    }
    assert_eq!(last_flags, [8, 9]);
}

#[test]
fn flags_counter_wraps_around_the_same_way_in_both() {
    let u = Uboot::new(2);
    let mut agent = u.agent();
    // Copy 0 current with flags 0xFF, copy 1 older with 0xFE.
    let old = boot_vars("A B", 3, 3);
    let current = boot_vars("B A", 3, 3);
    std::fs::write(
        &u.files[0],
        ubootenv::serialize(&current, ENV_SIZE, Some(0xFF)).unwrap(),
    )
    .unwrap();
    std::fs::write(
        &u.files[1],
        ubootenv::serialize(&old, ENV_SIZE, Some(0xFE)).unwrap(),
    )
    .unwrap();
    assert_eq!(u.printenv(), current);
    assert_eq!(agent.load().unwrap(), current);

    // fw_setenv wraps to 0x00 in copy 1, which both then take as current.
    u.setenv(&["BOOT_B_LEFT", "2"]);
    assert_eq!(u.flags(), [0xFF, 0x00]);
    let mut expected = current.clone();
    expected.insert("BOOT_B_LEFT".into(), "2".into());
    assert_eq!(agent.load().unwrap(), expected);

    // The agent continues the count in copy 0, and fw_printenv follows.
    expected.insert("BOOT_B_LEFT".into(), "1".into());
    agent.store(&Disk::new(), &expected).unwrap();
    assert_eq!(u.flags(), [0x01, 0x00]);
    assert_eq!(u.printenv(), expected);

    // The same wrap written by the agent: copy 1 at 0xFF current, agent writes 0x00.
    std::fs::write(
        &u.files[0],
        ubootenv::serialize(&old, ENV_SIZE, Some(0xFE)).unwrap(),
    )
    .unwrap();
    std::fs::write(
        &u.files[1],
        ubootenv::serialize(&current, ENV_SIZE, Some(0xFF)).unwrap(),
    )
    .unwrap();
    agent.store(&Disk::new(), &expected).unwrap();
    assert_eq!(u.flags(), [0x00, 0xFF]);
    assert_eq!(u.printenv(), expected);
}

#[test]
fn agent_writes_the_same_bytes_as_fw_setenv() {
    let u = Uboot::new(2);
    u.setenv(&["b", "2", "a", "1", "BOOT_ORDER", "A B"]);
    let written = u.raw(1);
    let expected = vars(&[("a", "1"), ("b", "2"), ("BOOT_ORDER", "A B")]);
    let ours = ubootenv::serialize(&expected, ENV_SIZE, Some(1)).unwrap();
    // Header and entries (sorted the same way) are identical; libubootenv leaves the padding
    // unfilled, so the CRC and the tail are compared only when its padding is zeros too.
    let used = 5 + b"BOOT_ORDER=A B\0a=1\0b=2\0\0".len();
    assert_eq!(&written[4..used], &ours[4..used]);
    if written[used..].iter().all(|&b| b == 0) {
        assert_eq!(written, ours);
    }
}

#[test]
fn single_copy_round_trips_with_the_tools() {
    let u = Uboot::new(1);
    let mut agent = u.agent();
    assert!(!agent.is_redundant());
    let v = boot_vars("A B", 3, 3);
    agent.store(&Disk::new(), &v).unwrap();
    assert_eq!(u.printenv(), v);
    // No flags byte in a single copy: the data follows the CRC.
    assert_eq!(&u.raw(0)[4..15], b"BOOT_A_LEFT");
    u.setenv(&["BOOT_ORDER", "B A"]);
    let mut expected = v;
    expected.insert("BOOT_ORDER".into(), "B A".into());
    assert_eq!(agent.load().unwrap(), expected);
    expected.insert("BOOT_B_LEFT".into(), "2".into());
    agent.store(&Disk::new(), &expected).unwrap();
    assert_eq!(u.printenv(), expected);
}

#[test]
fn bad_crc_in_the_current_copy_falls_back_to_the_other_in_both() {
    let u = Uboot::new(2);
    let mut agent = u.agent();
    let older = boot_vars("A B", 3, 3);
    let newer = boot_vars("B A", 3, 3);
    agent.store(&Disk::new(), &older).unwrap();
    agent.store(&Disk::new(), &newer).unwrap();
    assert_eq!(u.flags(), [2, 1]);
    assert_eq!(u.printenv(), newer);

    u.corrupt_crc(0);
    assert_eq!(agent.load().unwrap(), older);
    assert_eq!(u.printenv(), older);

    // Both corrupt: the agent refuses with NoValidCopy, naming both reasons; fw_printenv has
    // no environment either.
    u.corrupt_crc(1);
    let err = agent.load().unwrap_err();
    let EnvError::NoValidCopy { source, .. } = &err else {
        panic!("expected NoValidCopy, got {err}");
    };
    let UbootEnvError::NoValidCopy { first, second } = source else {
        panic!("expected NoValidCopy, got {source}");
    };
    assert!(matches!(**first, UbootEnvError::BadCrc { .. }), "{first}");
    assert!(matches!(**second, UbootEnvError::BadCrc { .. }), "{second}");
    let stderr = u.printenv_fails();
    assert!(stderr.contains("Cannot read environment"), "{stderr}");

    // A complete write by the agent recreates an environment fw_printenv accepts.
    agent.store(&Disk::new(), &newer).unwrap();
    assert_eq!(u.printenv(), newer);
}

#[test]
fn fw_setenv_also_falls_back_after_the_agents_copy_is_corrupted() {
    let u = Uboot::new(2);
    let mut agent = u.agent();
    u.setenv(&["BOOT_ORDER", "A B"]);
    agent
        .store(&Disk::new(), &vars(&[("BOOT_ORDER", "B A")]))
        .unwrap();
    assert_eq!(u.flags(), [2, 1]);
    u.corrupt_crc(0);
    // fw_setenv now starts from the tool's own copy and overwrites the corrupt one.
    u.setenv(&["BOOT_B_LEFT", "1"]);
    assert_eq!(u.flags(), [2, 1]);
    let expected = vars(&[("BOOT_ORDER", "A B"), ("BOOT_B_LEFT", "1")]);
    assert_eq!(agent.load().unwrap(), expected);
    assert_eq!(u.printenv(), expected);
}
