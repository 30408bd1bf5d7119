//! `rampart release add --provenance ... --provenance-policy`, `verify-provenance` and
//! `sign-provenance`, run as the binary: builders' keys made with `rampart key generate`, their
//! statements signed with `sign-provenance`, a k = 2 policy, and refusals that write nothing.

use std::path::{Path, PathBuf};

use rampart_testkit::cli::{fails, init_repo, ok, rampart, s};
use serde_json::{Value, json};

const SOURCE_REPO: &str = "https://github.com/acme/firmware";
const BUILD_TYPE: &str = "https://actions.github.io/buildtypes/workflow/v1";

struct Builder {
    id: String,
    key_file: String,
}

fn builder(dir: &Path, name: &str, scheme: &str) -> Builder {
    let key_file = dir.join(format!("{name}.key"));
    ok(rampart(&[
        "key",
        "generate",
        "--scheme",
        scheme,
        "--out",
        s(&key_file),
    ]));
    Builder {
        id: format!("https://{name}.builders.example"),
        key_file: key_file.display().to_string(),
    }
}

/// The builder's public key as the policy's TOML inline table, from `rampart key export-public`.
fn key_toml(b: &Builder) -> String {
    let out = ok(rampart(&["key", "export-public", &b.key_file]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let k = &v["key"];
    format!(
        "{{ keytype = {}, scheme = {}, keyval = {{ public = {} }} }}",
        k["keytype"], k["scheme"], k["keyval"]["public"]
    )
}

fn write_policy(dir: &Path, k: usize, builders: &[&Builder]) -> PathBuf {
    let mut text = format!(
        "required_builders = {k}\nbuild_types = [\"{BUILD_TYPE}\"]\n\n[[sources]]\nrepository = \"{SOURCE_REPO}\"\nrefs = [\"refs/heads/main\", \"refs/tags/v*\"]\n"
    );
    for b in builders {
        text.push_str(&format!(
            "\n[[builders]]\nid = \"{}\"\nkeys = [{}]\n",
            b.id,
            key_toml(b)
        ));
    }
    let path = dir.join(format!("policy-k{k}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn statement(builder_id: &str, sha256: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "fw.img", "digest": {"sha256": sha256}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"workflow": {"repository": SOURCE_REPO, "ref": "refs/tags/v1.0.0", "path": ".github/workflows/release.yml"}},
                "resolvedDependencies": [{"uri": format!("git+{SOURCE_REPO}@refs/tags/v1.0.0"), "digest": {"gitCommit": "9f1e2d"}}]
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": {"invocationId": "run-1", "startedOn": "2025-03-01T10:00:00Z"}
            }
        }
    }))
    .unwrap()
}

/// `rampart release sign-provenance` over a statement for `sha256`; returns the envelope file.
fn signed(dir: &Path, b: &Builder, sha256: &str, name: &str) -> PathBuf {
    let st = dir.join(format!("{name}.statement.json"));
    std::fs::write(&st, statement(&b.id, sha256)).unwrap();
    let env = dir.join(format!("{name}.dsse.json"));
    ok(rampart(&[
        "release",
        "sign-provenance",
        "--key",
        &b.key_file,
        "--builder-id",
        &b.id,
        "--out",
        s(&env),
        s(&st),
    ]));
    env
}

/// Every file under `dir` with its contents: what a refusal must leave unchanged.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

fn add_args<'a>(image: &'a Path, repo: &'a Path, version: &'a str) -> Vec<&'a str> {
    vec![
        "release",
        "add",
        s(image),
        "--repo",
        s(repo),
        "--hw",
        "board-a",
        "--version",
        version,
        "--security-version",
        "1",
    ]
}

#[test]
fn release_add_with_a_k2_policy_verifies_two_builders_and_refuses_bad_provenance_writing_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let repo = init_repo(dir);
    let a = builder(dir, "builder-a", "ed25519");
    let b = builder(dir, "builder-b", "p256");
    let c = builder(dir, "builder-c", "ed25519");
    let policy = write_policy(dir, 2, &[&a, &b, &c]);

    let image_bytes: Vec<u8> = (0..50_000u32).map(|i| (i * 31) as u8).collect();
    let image = dir.join("fw.img");
    std::fs::write(&image, &image_bytes).unwrap();
    let sha = sha256_hex(&image_bytes);
    let env_a = signed(dir, &a, &sha, "a");
    let env_b = signed(dir, &b, &sha, "b");

    // Two independent builders agree: the release is added with both envelopes as a bundle.
    let mut args = add_args(&image, &repo, "1.0.0");
    args.extend([
        "--provenance",
        s(&env_a),
        s(&env_b),
        "--provenance-policy",
        s(&policy),
    ]);
    let out = ok(rampart(&args));
    assert!(
        out.contains("2 of 2 required independent builder(s) vouch"),
        "{out}"
    );
    let targets: Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata/2.targets.json")).unwrap())
            .unwrap();
    let prov = &targets["signed"]["targets"]["1.0.0/fw.img"]["custom"]["rampart"]["provenance"];
    assert_eq!(prov["path"], "1.0.0/fw.img.intoto.jsonl");
    assert_eq!(prov["media_type"], "application/vnd.in-toto.bundle");
    let bundle_sha = prov["sha256"].as_str().unwrap();
    let bundle =
        std::fs::read(repo.join(format!("targets/1.0.0/{bundle_sha}.fw.img.intoto.jsonl")))
            .unwrap();
    assert_eq!(
        bundle_sha,
        sha256_hex(&bundle),
        "the bundle's digest is bound in the target"
    );
    assert_eq!(
        bundle
            .split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        2
    );
    ok(rampart(&["repo", "verify", s(&repo)]));

    // A second image for the refusals.
    let image2_bytes: Vec<u8> = (0..40_000u32).map(|i| (i * 17) as u8).collect();
    let image2 = dir.join("fw2.img");
    std::fs::write(&image2, &image2_bytes).unwrap();
    let sha2 = sha256_hex(&image2_bytes);
    let env2_a = signed(dir, &a, &sha2, "a2");
    let env2_b = signed(dir, &b, &sha2, "b2");
    let before = snapshot(&repo);

    // A wrong signature: builder b's envelope with its payload swapped for another statement.
    let mut tampered: Value = serde_json::from_slice(&std::fs::read(&env2_b).unwrap()).unwrap();
    let forged = statement(&b.id, &sha2);
    let mut forged_v: Value = serde_json::from_slice(&forged).unwrap();
    forged_v["predicate"]["runDetails"]["metadata"]["invocationId"] = json!("forged");
    tampered["payload"] = json!(base64_standard(&serde_json::to_vec(&forged_v).unwrap()));
    let env_tampered = dir.join("tampered.dsse.json");
    std::fs::write(&env_tampered, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let mut args = add_args(&image2, &repo, "1.1.0");
    args.extend([
        "--provenance",
        s(&env2_a),
        s(&env_tampered),
        "--provenance-policy",
        s(&policy),
    ]);
    let err = fails(rampart(&args));
    assert!(err.contains("wrong signature"), "{err}");
    assert!(
        err.contains("tampered.dsse.json"),
        "the error names the file: {err}"
    );
    assert_eq!(snapshot(&repo), before, "a refused release writes nothing");

    // Provenance for another digest: builder b's rebuild of the first image does not count for
    // the second, so only 1 of 2 builders vouch.
    let mut args = add_args(&image2, &repo, "1.1.0");
    args.extend([
        "--provenance",
        s(&env2_a),
        s(&env_b),
        "--provenance-policy",
        s(&policy),
    ]);
    let err = fails(rampart(&args));
    assert!(err.contains("provenance for another digest"), "{err}");
    assert!(err.contains("only 1 of 2"), "{err}");
    assert_eq!(snapshot(&repo), before, "a refused release writes nothing");

    // The same builder twice is one builder.
    let env2_a_again = signed(dir, &a, &sha2, "a2-again");
    let mut args = add_args(&image2, &repo, "1.1.0");
    args.extend([
        "--provenance",
        s(&env2_a),
        s(&env2_a_again),
        "--provenance-policy",
        s(&policy),
    ]);
    let err = fails(rampart(&args));
    assert!(err.contains("only 1 of 2 independent builders"), "{err}");

    // With a policy a bare statement is unsigned and refused.
    let bare = dir.join("a2.statement.json");
    let mut args = add_args(&image2, &repo, "1.1.0");
    args.extend(["--provenance", s(&bare), "--provenance-policy", s(&policy)]);
    let err = fails(rampart(&args));
    assert!(err.contains("bare in-toto statement"), "{err}");
    assert_eq!(snapshot(&repo), before, "a refused release writes nothing");

    // Standalone verification: passes with two builders, fails with one.
    let out = ok(rampart(&[
        "release",
        "verify-provenance",
        "--policy",
        s(&policy),
        "--image",
        s(&image2),
        s(&env2_a),
        s(&env2_b),
    ]));
    assert!(out.contains("provenance verified"), "{out}");
    let out = ok(rampart(&[
        "release",
        "verify-provenance",
        "--policy",
        s(&policy),
        "--sha256",
        &sha2,
        "--json",
        s(&env2_a),
        s(&env2_b),
    ]));
    let verdict: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verdict["builders"].as_array().unwrap().len(), 2);
    let err = fails(rampart(&[
        "release",
        "verify-provenance",
        "--policy",
        s(&policy),
        "--image",
        s(&image2),
        s(&env2_a),
    ]));
    assert!(err.contains("only 1 of 2"), "{err}");
}

#[test]
fn sign_provenance_signs_only_the_builders_own_statement() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let a = builder(dir, "builder-a", "ed25519");
    let st = dir.join("other.statement.json");
    std::fs::write(
        &st,
        statement("https://someone-else.example", &"ab".repeat(32)),
    )
    .unwrap();
    let err = fails(rampart(&[
        "release",
        "sign-provenance",
        "--key",
        &a.key_file,
        "--builder-id",
        &a.id,
        s(&st),
    ]));
    assert!(err.contains("a builder signs only its own builds"), "{err}");
}

#[test]
fn release_add_without_a_policy_keeps_accepting_one_bare_statement() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let repo = init_repo(dir);
    let image_bytes = vec![7u8; 4096];
    let image = dir.join("fw.img");
    std::fs::write(&image, &image_bytes).unwrap();
    let st = dir.join("fw.intoto.json");
    std::fs::write(
        &st,
        statement("https://a.example", &sha256_hex(&image_bytes)),
    )
    .unwrap();
    let mut args = add_args(&image, &repo, "1.0.0");
    args.extend(["--provenance", s(&st)]);
    ok(rampart(&args));
    let targets: Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata/2.targets.json")).unwrap())
            .unwrap();
    let prov = &targets["signed"]["targets"]["1.0.0/fw.img"]["custom"]["rampart"]["provenance"];
    assert_eq!(prov["path"], "1.0.0/fw.img.intoto.json");
    assert_eq!(prov["media_type"], "application/vnd.in-toto+json");
}

fn base64_standard(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
