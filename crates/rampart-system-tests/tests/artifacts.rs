//! `rampart repo upload-artifacts` and `rampart server --artifacts`, against a real
//! S3-compatible server (moto; the tests fail if it is not installed, see
//! rampart_testkit::moto).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use rampart_testkit::cli::{fails, ok, rampart, s};
use rampart_testkit::moto::Moto;

const BUCKET: &str = "fleet-artifacts";

/// `rampart ARGS` pointed at moto through the `AWS_*` environment variables.
fn with_moto(moto: &Moto, args: &[&str]) -> Command {
    let mut c = rampart(args);
    c.envs(moto.env());
    c
}

fn key(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.key"));
    ok(rampart(&["key", "generate", "--out", s(&path)]));
    path.to_str().unwrap().to_owned()
}

/// A repository with one release (`len` bytes, with an SBOM).
fn repository(w: &Path, len: usize) -> PathBuf {
    let keys = w.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let k = |name: &str| key(&keys, name);
    let repo = w.join("repo");
    ok(rampart(&[
        "repo",
        "init",
        s(&repo),
        "--root-key",
        &k("root"),
        "--targets-key",
        &k("targets"),
        "--snapshot-key",
        &k("snapshot"),
        "--timestamp-key",
        &k("timestamp"),
    ]));
    release(w, &repo, "1.0.0", len);
    repo
}

fn release(w: &Path, repo: &Path, version: &str, len: usize) {
    let seed = version.bytes().map(u32::from).sum::<u32>();
    let image: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect();
    let img = w.join(format!("fw-{version}.img"));
    std::fs::write(&img, image).unwrap();
    let sbom = w.join(format!("sbom-{version}.cdx.json"));
    std::fs::write(
        &sbom,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1}"#,
    )
    .unwrap();
    ok(rampart(&[
        "release",
        "add",
        s(&img),
        "--repo",
        s(repo),
        "--hw",
        "board-a",
        "--version",
        version,
        "--security-version",
        "1",
        "--sbom",
        s(&sbom),
        "--name",
        &format!("{version}/fw.img"),
    ]));
}

/// Every file below `targets/`: (path below it, bytes).
fn targets(repo: &Path) -> Vec<(String, Vec<u8>)> {
    let root = repo.join("targets");
    let mut out = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn upload_artifacts_uploads_every_target_once() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    // Over one upload part (8 MiB): a streamed multipart upload.
    let repo = repository(w, 20 << 20);
    let to = format!("s3://{BUCKET}/prod");
    let upload = || {
        with_moto(
            &moto,
            &["repo", "upload-artifacts", "--repo", s(&repo), "--to", &to],
        )
    };

    let out = ok(upload());
    let files = targets(&repo);
    assert_eq!(files.len(), 2, "the image and its SBOM: {files:?}");
    for (name, bytes) in &files {
        assert!(
            out.contains(&format!("uploaded {name} ({} bytes)", bytes.len())),
            "{out}"
        );
        let stored = moto
            .object(BUCKET, &format!("prod/targets/{name}"))
            .unwrap_or_else(|| panic!("no object for {name}:\n{out}"));
        assert!(stored == *bytes, "{name}: the object differs from the file");
    }
    assert!(out.contains("done: 2 uploaded"), "{out}");

    // Again: nothing to do.
    let out = ok(upload());
    assert!(
        out.contains("done: 0 uploaded (0 bytes), 2 already there"),
        "{out}"
    );
    for (name, _) in &files {
        assert!(out.contains(&format!("exists   {name}")), "{out}");
    }

    // A new release: only its files go up.
    release(w, &repo, "1.1.0", 1000);
    let out = ok(upload());
    let now = targets(&repo);
    assert!(now.len() > files.len(), "{now:?}");
    for (name, bytes) in &now {
        let line = if files.iter().any(|(old, _)| old == name) {
            format!("exists   {name}")
        } else {
            format!("uploaded {name} ({} bytes)", bytes.len())
        };
        assert!(out.contains(&line), "{line}:\n{out}");
    }

    // An object of another size is replaced.
    let (first, first_bytes) = &files[0];
    let corrupt = repo.join("targets").join(first);
    let saved = std::fs::read(&corrupt).unwrap();
    std::fs::write(&corrupt, b"short").unwrap();
    ok(upload());
    std::fs::write(&corrupt, &saved).unwrap();
    let out = ok(upload());
    assert!(
        out.contains(&format!(
            "replaced {first} ({} bytes; the object had 5)",
            first_bytes.len()
        )),
        "{out}"
    );
    assert!(out.contains("done: 1 uploaded"), "{out}");
    for (name, bytes) in now {
        let stored = moto
            .object(BUCKET, &format!("prod/targets/{name}"))
            .unwrap();
        assert!(stored == bytes, "{name}");
    }

    // Clear errors: a malformed URL, a bucket that does not exist, not a repository.
    let out = fails(with_moto(
        &moto,
        &[
            "repo",
            "upload-artifacts",
            "--repo",
            s(&repo),
            "--to",
            "s3:/fleet",
        ],
    ));
    assert!(out.contains("is not an artifact store URL"), "{out}");
    let out = fails(with_moto(
        &moto,
        &[
            "repo",
            "upload-artifacts",
            "--repo",
            s(&repo),
            "--to",
            "s3://no-such-bucket",
        ],
    ));
    assert!(
        out.contains("cannot reach the artifact store s3://no-such-bucket"),
        "{out}"
    );
    assert!(out.contains("check that the bucket exists"), "{out}");
    let out = fails(with_moto(
        &moto,
        &["repo", "upload-artifacts", "--repo", s(w), "--to", &to],
    ));
    assert!(out.contains("is not an image repository"), "{out}");
}

#[test]
fn server_checks_its_artifact_store_at_start() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let repo = repository(w, 1000);

    let ca = rampart_pki::CertificateAuthority::generate("CLI Test CA", 30).unwrap();
    let server_cert = ca.issue_server(&["localhost"], 30).unwrap();
    let now = SystemTime::now();
    let crl = ca
        .crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)
        .unwrap();
    let write = |name: &str, text: &str| {
        let p = w.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cert = write("server.pem", &server_cert.cert_pem);
    let key = write("server.key", &server_cert.key_pem);
    let ca_pem = write("ca.pem", ca.cert_pem());
    let crl_pem = write("crl.pem", &crl);
    let db = format!("sqlite://{}", w.join("server.db").display());
    let server = |artifacts: &str| {
        with_moto(
            &moto,
            &[
                "server",
                "--db",
                &db,
                "--listen",
                "127.0.0.1:0",
                "--cert",
                s(&cert),
                "--key",
                s(&key),
                "--client-ca",
                s(&ca_pem),
                "--crl",
                s(&crl_pem),
                "--repo",
                s(&repo),
                "--artifacts",
                artifacts,
            ],
        )
    };

    let out = fails(server("s3://no-such-bucket/prod"));
    assert!(
        out.contains("cannot reach the artifact store s3://no-such-bucket/prod"),
        "{out}"
    );
    let out = fails(server("https://example.invalid/bucket"));
    // Refused while the configuration is checked, naming the setting and what it takes.
    assert!(
        out.contains("repository.artifacts") && out.contains("is not an object store"),
        "{out}"
    );
    assert!(out.contains("give s3://BUCKET"), "{out}");

    // The bucket exists: the server starts.
    let mut child = server(&format!("s3://{BUCKET}/prod"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The server says a few things about itself (renewal, audit heads), then where it listens.
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let listening = line.starts_with("device API listening on ");
        seen.push(line);
        if listening || seen.len() > 10 {
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("device API listening on ")),
        "{seen:?} (exit status {status})"
    );
}
