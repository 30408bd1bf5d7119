use rampart_core::keys::Scheme;
use ring::rand::SystemRandom;
use ring::signature::{self as rs, KeyPair as _};
use serde_json::json;

use super::*;

const IMAGE: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000001";
const REPO: &str = "https://github.com/acme/firmware";
const MAIN: &str = "refs/heads/main";
const BUILD_TYPE: &str = "https://actions.github.io/buildtypes/workflow/v1";

/// Signs a message with a builder's private key.
type SignFn = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// A builder with a real key: ed25519 from a fixed seed, or a fresh ECDSA P-256 key.
struct Builder {
    id: String,
    key: Key,
    sign: SignFn,
}

fn ed25519_builder(id: &str, seed: u8) -> Builder {
    let pair = rs::Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
    let key = Key::from_public_bytes(Scheme::Ed25519, pair.public_key().as_ref()).unwrap();
    Builder {
        id: id.into(),
        key,
        sign: Box::new(move |m| pair.sign(m).as_ref().to_vec()),
    }
}

fn p256_builder(id: &str) -> Builder {
    let rng = SystemRandom::new();
    let alg = &rs::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = rs::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = rs::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let key = Key::from_public_bytes(Scheme::EcdsaP256Sha256, pair.public_key().as_ref()).unwrap();
    Builder {
        id: id.into(),
        key,
        sign: Box::new(move |m| {
            pair.sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        }),
    }
}

fn statement_for(builder_id: &str, sha256: &str, external: Value, build_type: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": STATEMENT_V1,
        "subject": [{"name": "fw.img", "digest": {"sha256": sha256}}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": build_type,
                "externalParameters": external,
                "resolvedDependencies": [{"uri": "git+https://github.com/acme/firmware@refs/heads/main", "digest": {"gitCommit": "a1b2"}}]
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": {"invocationId": format!("{builder_id}/run/7"), "startedOn": "2025-01-02T03:04:05Z"}
            }
        }
    }))
    .unwrap()
}

fn workflow(repo: &str, git_ref: &str) -> Value {
    json!({"workflow": {"repository": repo, "ref": git_ref, "path": ".github/workflows/release.yml"}})
}

fn statement(builder_id: &str, sha256: &str) -> Vec<u8> {
    statement_for(builder_id, sha256, workflow(REPO, MAIN), BUILD_TYPE)
}

fn sign_with(signer: &Builder, payload_type: &str, payload: &[u8]) -> Envelope {
    Envelope::sign(payload_type, payload, &signer.key.key_id(), |m| {
        Ok::<_, ()>((signer.sign)(m))
    })
    .unwrap()
}

fn envelope(signer: &Builder, payload: &[u8]) -> Vec<u8> {
    sign_with(signer, IN_TOTO_PAYLOAD_TYPE, payload)
        .to_line()
        .into_bytes()
}

fn policy(k: usize, builders: &[&Builder]) -> ProvenancePolicy {
    ProvenancePolicy::new(
        k,
        builders
            .iter()
            .map(|b| TrustedBuilder {
                id: b.id.clone(),
                keys: vec![b.key.clone()],
            })
            .collect(),
        vec![SourceSpec {
            repository: REPO.into(),
            refs: vec![MAIN.into(), "refs/tags/v*".into()],
        }],
        vec![BUILD_TYPE.into()],
    )
    .unwrap()
}

fn envelope_error(result: Result<ProvenanceVerdict, ProvenanceError>) -> EnvelopeError {
    match result {
        Err(ProvenanceError::Envelope { reason, .. }) => reason,
        other => panic!("expected an envelope error, got {other:?}"),
    }
}

#[test]
fn pae_is_the_dsse_v1_encoding() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
}

#[test]
fn one_trusted_builder_passes_with_k1_and_the_verdict_names_the_build() {
    let a = ed25519_builder("https://builder-a.example", 1);
    let verdict = verify(
        &policy(1, &[&a]),
        &[envelope(&a, &statement(&a.id, IMAGE))],
        IMAGE,
    )
    .unwrap();
    assert_eq!(verdict.builders.len(), 1);
    let b = &verdict.builders[0];
    assert_eq!(b.builder_id, a.id);
    assert_eq!(b.key_id, a.key.key_id());
    assert_eq!(b.source.repository, REPO);
    assert_eq!(b.source.git_ref, MAIN);
    assert_eq!(
        b.invocation_id.as_deref(),
        Some("https://builder-a.example/run/7")
    );
    assert!(verdict.disagreeing.is_empty());
}

#[test]
fn upper_case_image_digest_matches_lower_case_subject() {
    let a = ed25519_builder("a", 1);
    verify(
        &policy(1, &[&a]),
        &[envelope(&a, &statement(&a.id, IMAGE))],
        &IMAGE.to_ascii_uppercase(),
    )
    .unwrap();
}

#[test]
fn two_of_three_builders_agreeing_pass_with_k2() {
    let a = ed25519_builder("a", 1);
    let b = p256_builder("b");
    let c = ed25519_builder("c", 3);
    let envelopes = [
        envelope(&a, &statement(&a.id, IMAGE)),
        envelope(&b, &statement(&b.id, IMAGE)),
        envelope(&c, &statement(&c.id, OTHER)),
    ];
    let verdict = verify(&policy(2, &[&a, &b, &c]), &envelopes, IMAGE).unwrap();
    let ids: Vec<&str> = verdict
        .builders
        .iter()
        .map(|b| b.builder_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(verdict.disagreeing.len(), 1);
    assert_eq!(verdict.disagreeing[0].builder_id, "c");
    assert_eq!(verdict.disagreeing[0].named, [OTHER]);
    assert_eq!(verdict.vouching_envelopes(), [0, 1]);
}

#[test]
fn same_builder_twice_does_not_count_twice() {
    let a = ed25519_builder("a", 1);
    let b = ed25519_builder("b", 2);
    let envelopes = [
        envelope(&a, &statement(&a.id, IMAGE)),
        envelope(&a, &statement(&a.id, IMAGE)),
    ];
    match verify(&policy(2, &[&a, &b]), &envelopes, IMAGE) {
        Err(ProvenanceError::TooFewBuilders {
            have: 1,
            need: 2,
            counted,
            ..
        }) => assert_eq!(counted, ["a"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn same_builder_with_two_keys_counts_once() {
    let a1 = ed25519_builder("a", 1);
    let a2 = ed25519_builder("a", 11);
    let b = ed25519_builder("b", 2);
    let p = ProvenancePolicy::new(
        2,
        vec![
            TrustedBuilder {
                id: "a".into(),
                keys: vec![a1.key.clone(), a2.key.clone()],
            },
            TrustedBuilder {
                id: "b".into(),
                keys: vec![b.key.clone()],
            },
        ],
        vec![SourceSpec {
            repository: REPO.into(),
            refs: vec![MAIN.into()],
        }],
        vec![BUILD_TYPE.into()],
    )
    .unwrap();
    let twice = [
        envelope(&a1, &statement("a", IMAGE)),
        envelope(&a2, &statement("a", IMAGE)),
    ];
    let err = verify(&p, &twice, IMAGE).unwrap_err();
    assert!(
        matches!(err, ProvenanceError::TooFewBuilders { have: 1, .. }),
        "{err}"
    );
    let verdict = verify(
        &p,
        &[
            twice[0].clone(),
            twice[1].clone(),
            envelope(&b, &statement("b", IMAGE)),
        ],
        IMAGE,
    )
    .unwrap();
    assert_eq!(verdict.builders.len(), 2);
    assert_eq!(verdict.repeated, [1]);
}

#[test]
fn a_different_digest_from_one_builder_does_not_count() {
    let a = ed25519_builder("a", 1);
    let b = ed25519_builder("b", 2);
    let envelopes = [
        envelope(&a, &statement(&a.id, IMAGE)),
        envelope(&b, &statement(&b.id, OTHER)),
    ];
    let err = verify(&policy(2, &[&a, &b]), &envelopes, IMAGE).unwrap_err();
    match &err {
        ProvenanceError::ForAnotherDigest {
            have: 1,
            need: 2,
            disagreeing,
            ..
        } => assert_eq!(disagreeing[0].builder_id, "b"),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("provenance for another digest"),
        "{err}"
    );
}

#[test]
fn provenance_for_another_digest_is_refused() {
    let a = ed25519_builder("a", 1);
    let err = verify(
        &policy(1, &[&a]),
        &[envelope(&a, &statement(&a.id, OTHER))],
        IMAGE,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ProvenanceError::ForAnotherDigest {
                have: 0,
                need: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unsigned_envelope_is_refused() {
    let a = ed25519_builder("a", 1);
    let mut e = sign_with(&a, IN_TOTO_PAYLOAD_TYPE, &statement(&a.id, IMAGE));
    e.signatures.clear();
    let err = envelope_error(verify(&policy(1, &[&a]), &[e.to_line()], IMAGE));
    assert_eq!(err, EnvelopeError::Unsigned);
}

#[test]
fn bare_statement_is_refused_as_unsigned_by_verify() {
    let a = ed25519_builder("a", 1);
    let err = envelope_error(verify(&policy(1, &[&a]), &[statement(&a.id, IMAGE)], IMAGE));
    assert!(
        matches!(err, EnvelopeError::NotEnvelope(ref m) if m.contains("bare")),
        "{err}"
    );
}

#[test]
fn wrong_signature_is_refused() {
    let a = ed25519_builder("a", 1);
    // Signed over one statement, then the payload swapped for another: the signature no longer
    // covers what the envelope says.
    let mut e = sign_with(&a, IN_TOTO_PAYLOAD_TYPE, &statement(&a.id, OTHER));
    e.payload = general_purpose::STANDARD.encode(statement(&a.id, IMAGE));
    let err = envelope_error(verify(&policy(1, &[&a]), &[e.to_line()], IMAGE));
    assert!(
        matches!(err, EnvelopeError::WrongSignature { ref builder, .. } if builder == "a"),
        "{err}"
    );
}

#[test]
fn wrong_signature_without_key_id_is_signed_by_no_trusted_builder() {
    let a = ed25519_builder("a", 1);
    let mut e = sign_with(&a, IN_TOTO_PAYLOAD_TYPE, &statement(&a.id, OTHER));
    e.payload = general_purpose::STANDARD.encode(statement(&a.id, IMAGE));
    e.signatures[0].keyid.clear();
    let err = envelope_error(verify(&policy(1, &[&a]), &[e.to_line()], IMAGE));
    assert!(matches!(err, EnvelopeError::UnknownSigner { .. }), "{err}");
}

#[test]
fn signature_without_key_id_is_tried_against_every_trusted_key() {
    let a = ed25519_builder("a", 1);
    let b = ed25519_builder("b", 2);
    let mut e = sign_with(&b, IN_TOTO_PAYLOAD_TYPE, &statement(&b.id, IMAGE));
    e.signatures[0].keyid.clear();
    verify(&policy(1, &[&a, &b]), &[e.to_line()], IMAGE).unwrap();
}

#[test]
fn payload_type_is_bound_by_the_signature() {
    let a = ed25519_builder("a", 1);
    let mut e = sign_with(&a, "application/json", &statement(&a.id, IMAGE));
    e.payload_type = IN_TOTO_PAYLOAD_TYPE.into();
    let err = envelope_error(verify(&policy(1, &[&a]), &[e.to_line()], IMAGE));
    assert!(matches!(err, EnvelopeError::WrongSignature { .. }), "{err}");
}

#[test]
fn other_payload_type_is_refused() {
    let a = ed25519_builder("a", 1);
    let e = sign_with(&a, "application/json", &statement(&a.id, IMAGE));
    let err = envelope_error(verify(&policy(1, &[&a]), &[e.to_line()], IMAGE));
    assert_eq!(
        err,
        EnvelopeError::WrongPayloadType("application/json".into())
    );
}

#[test]
fn key_outside_the_policy_is_an_unknown_signer() {
    let a = ed25519_builder("a", 1);
    let stranger = ed25519_builder("a", 9);
    let err = envelope_error(verify(
        &policy(1, &[&a]),
        &[envelope(&stranger, &statement("a", IMAGE))],
        IMAGE,
    ));
    assert!(
        matches!(err, EnvelopeError::UnknownSigner { ref key_ids } if key_ids == &[stranger.key.key_id()]),
        "{err}"
    );
}

#[test]
fn builder_id_outside_the_policy_is_an_unknown_builder() {
    let a = ed25519_builder("a", 1);
    let err = envelope_error(verify(
        &policy(1, &[&a]),
        &[envelope(&a, &statement("https://evil.example", IMAGE))],
        IMAGE,
    ));
    assert_eq!(
        err,
        EnvelopeError::UnknownBuilder("https://evil.example".into())
    );
}

#[test]
fn a_builder_cannot_vouch_for_another_builders_build() {
    let a = ed25519_builder("a", 1);
    let b = ed25519_builder("b", 2);
    // Builder a signs a statement claiming builder b ran the build: that would let one key
    // count as two independent builders.
    let err = envelope_error(verify(
        &policy(1, &[&a, &b]),
        &[envelope(&a, &statement("b", IMAGE))],
        IMAGE,
    ));
    assert!(
        matches!(err, EnvelopeError::BuilderMismatch { ref claimed, .. } if claimed == "b"),
        "{err}"
    );
}

#[test]
fn source_repository_not_allowed_is_refused() {
    let a = ed25519_builder("a", 1);
    let s = statement_for(
        "a",
        IMAGE,
        workflow("https://github.com/evil/firmware", MAIN),
        BUILD_TYPE,
    );
    let err = envelope_error(verify(&policy(1, &[&a]), &[envelope(&a, &s)], IMAGE));
    assert!(
        matches!(err, EnvelopeError::SourceNotAllowed { ref repository, .. } if repository.contains("evil")),
        "{err}"
    );
}

#[test]
fn source_ref_not_allowed_is_refused_and_a_ref_prefix_is_allowed() {
    let a = ed25519_builder("a", 1);
    let p = policy(1, &[&a]);
    let branch = statement_for("a", IMAGE, workflow(REPO, "refs/heads/feature"), BUILD_TYPE);
    let err = envelope_error(verify(&p, &[envelope(&a, &branch)], IMAGE));
    assert!(
        matches!(err, EnvelopeError::SourceNotAllowed { ref git_ref, .. } if git_ref == "refs/heads/feature"),
        "{err}"
    );
    let tag = statement_for("a", IMAGE, workflow(REPO, "refs/tags/v1.4.0"), BUILD_TYPE);
    verify(&p, &[envelope(&a, &tag)], IMAGE).unwrap();
}

#[test]
fn build_type_not_allowed_is_refused() {
    let a = ed25519_builder("a", 1);
    let s = statement_for(
        "a",
        IMAGE,
        workflow(REPO, MAIN),
        "https://example.com/laptop-build/v1",
    );
    let err = envelope_error(verify(&policy(1, &[&a]), &[envelope(&a, &s)], IMAGE));
    assert!(
        matches!(err, EnvelopeError::BuildTypeNotAllowed(_)),
        "{err}"
    );
}

#[test]
fn provenance_without_a_source_is_refused() {
    let a = ed25519_builder("a", 1);
    let s = statement_for("a", IMAGE, json!({"inputs": {}}), BUILD_TYPE);
    let err = envelope_error(verify(&policy(1, &[&a]), &[envelope(&a, &s)], IMAGE));
    assert_eq!(err, EnvelopeError::NoSource);
}

#[test]
fn other_predicate_or_statement_version_is_refused() {
    let a = ed25519_builder("a", 1);
    let mut v: Value = serde_json::from_slice(&statement("a", IMAGE)).unwrap();
    v["predicateType"] = json!("https://slsa.dev/provenance/v0.2");
    let err = envelope_error(verify(
        &policy(1, &[&a]),
        &[envelope(&a, &serde_json::to_vec(&v).unwrap())],
        IMAGE,
    ));
    assert!(matches!(err, EnvelopeError::NotSlsa(_)), "{err}");
    let mut v: Value = serde_json::from_slice(&statement("a", IMAGE)).unwrap();
    v["_type"] = json!(STATEMENT_V0_1);
    let err = envelope_error(verify(
        &policy(1, &[&a]),
        &[envelope(&a, &serde_json::to_vec(&v).unwrap())],
        IMAGE,
    ));
    assert!(matches!(err, EnvelopeError::NotInToto(_)), "{err}");
}

#[test]
fn predicate_without_run_details_is_not_provenance() {
    let a = ed25519_builder("a", 1);
    let mut v: Value = serde_json::from_slice(&statement("a", IMAGE)).unwrap();
    v["predicate"].as_object_mut().unwrap().remove("runDetails");
    let err = envelope_error(verify(
        &policy(1, &[&a]),
        &[envelope(&a, &serde_json::to_vec(&v).unwrap())],
        IMAGE,
    ));
    assert!(matches!(err, EnvelopeError::NotProvenance(_)), "{err}");
}

#[test]
fn oversized_envelope_is_refused_before_parsing() {
    let a = ed25519_builder("a", 1);
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    let err = envelope_error(verify(&policy(1, &[&a]), &[big], IMAGE));
    assert_eq!(
        err,
        EnvelopeError::TooLarge {
            size: MAX_ENVELOPE_BYTES + 1
        }
    );
}

#[test]
fn deeply_nested_envelope_and_payload_are_refused() {
    let a = ed25519_builder("a", 1);
    let p = policy(1, &[&a]);
    let deep = format!(
        "{}{}",
        "[".repeat(MAX_JSON_DEPTH + 1),
        "]".repeat(MAX_JSON_DEPTH + 1)
    );
    assert_eq!(
        envelope_error(verify(&p, &[deep.as_bytes()], IMAGE)),
        EnvelopeError::TooDeep
    );
    // Brackets inside strings are not nesting.
    check_depth(
        format!("[\"{}\"]", "[".repeat(500)).as_bytes(),
        MAX_JSON_DEPTH,
    )
    .unwrap();
    // The signed payload is bounded the same way.
    let mut v: Value = serde_json::from_slice(&statement("a", IMAGE)).unwrap();
    let mut nested = json!(1);
    for _ in 0..MAX_JSON_DEPTH {
        nested = json!([nested]);
    }
    v["predicate"]["buildDefinition"]["internalParameters"] = nested;
    let err = envelope_error(verify(
        &p,
        &[envelope(&a, &serde_json::to_vec(&v).unwrap())],
        IMAGE,
    ));
    assert_eq!(err, EnvelopeError::TooDeep);
}

#[test]
fn too_many_signatures_envelopes_and_subjects_are_refused() {
    let a = ed25519_builder("a", 1);
    let p = policy(1, &[&a]);
    let mut e = sign_with(&a, IN_TOTO_PAYLOAD_TYPE, &statement("a", IMAGE));
    e.signatures = vec![e.signatures[0].clone(); MAX_SIGNATURES + 1];
    assert_eq!(
        envelope_error(verify(&p, &[e.to_line()], IMAGE)),
        EnvelopeError::TooManySignatures(MAX_SIGNATURES + 1)
    );
    let one = envelope(&a, &statement("a", IMAGE));
    assert_eq!(
        verify(&p, &vec![one; MAX_ENVELOPES + 1], IMAGE),
        Err(ProvenanceError::TooManyEnvelopes(MAX_ENVELOPES + 1))
    );
    assert_eq!(
        verify(&p, &[] as &[Vec<u8>], IMAGE),
        Err(ProvenanceError::NoEnvelopes)
    );
    let mut v: Value = serde_json::from_slice(&statement("a", IMAGE)).unwrap();
    v["subject"] = json!(vec![json!({"digest": {"sha256": IMAGE}}); MAX_SUBJECTS + 1]);
    assert_eq!(
        envelope_error(verify(
            &p,
            &[envelope(&a, &serde_json::to_vec(&v).unwrap())],
            IMAGE
        )),
        EnvelopeError::TooManySubjects(MAX_SUBJECTS + 1)
    );
}

#[test]
fn image_digest_must_be_sha256_hex() {
    let a = ed25519_builder("a", 1);
    let err = verify(
        &policy(1, &[&a]),
        &[envelope(&a, &statement("a", IMAGE))],
        "ab",
    )
    .unwrap_err();
    assert_eq!(err, ProvenanceError::BadImageDigest("ab".into()));
}

fn key_toml(k: &Key) -> String {
    format!(
        "{{ keytype = {:?}, scheme = {:?}, keyval = {{ public = {:?} }} }}",
        k.keytype, k.scheme, k.keyval.public
    )
}

fn policy_toml(k: usize, a: &Key, b: &Key, repository: &str) -> String {
    format!(
        r#"
required_builders = {k}
build_types = ["{BUILD_TYPE}"]

[[sources]]
repository = "{repository}"
refs = ["{MAIN}", "refs/tags/v*"]

[[builders]]
id = "a"
keys = [{}]

[[builders]]
id = "b"
keys = [{}]
"#,
        key_toml(a),
        key_toml(b)
    )
}

#[test]
fn policy_reads_from_toml_with_ed25519_and_p256_keys() {
    let a = ed25519_builder("a", 1);
    let b = p256_builder("b");
    let p = ProvenancePolicy::from_toml(policy_toml(2, &a.key, &b.key, REPO).as_bytes()).unwrap();
    assert_eq!(p.required_builders(), 2);
    assert_eq!(p.builders().len(), 2);
    verify(
        &p,
        &[
            envelope(&a, &statement("a", IMAGE)),
            envelope(&b, &statement("b", IMAGE)),
        ],
        IMAGE,
    )
    .unwrap();
}

#[test]
fn policy_with_a_key_shared_by_two_builders_is_refused() {
    let a = ed25519_builder("a", 1);
    let err =
        ProvenancePolicy::from_toml(policy_toml(2, &a.key, &a.key, REPO).as_bytes()).unwrap_err();
    assert!(err.to_string().contains("share key"), "{err}");
}

#[test]
fn policy_that_cannot_be_met_is_refused() {
    let a = ed25519_builder("a", 1);
    let b = ed25519_builder("b", 2);
    for k in [0, 3] {
        let err = ProvenancePolicy::from_toml(policy_toml(k, &a.key, &b.key, REPO).as_bytes())
            .unwrap_err();
        assert!(err.to_string().contains("required_builders"), "{err}");
    }
}

#[test]
fn policy_repository_prefix_must_end_at_a_slash() {
    let a = ed25519_builder("a", 1);
    let b = ed25519_builder("b", 2);
    let err = ProvenancePolicy::from_toml(
        policy_toml(1, &a.key, &b.key, "https://github.com/acme*").as_bytes(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("must end in"), "{err}");
    let p = ProvenancePolicy::from_toml(
        policy_toml(1, &a.key, &b.key, "https://github.com/acme/*").as_bytes(),
    )
    .unwrap();
    verify(&p, &[envelope(&a, &statement("a", IMAGE))], IMAGE).unwrap();
    let evil = statement_for(
        "a",
        IMAGE,
        workflow("https://github.com/acme-evil/fw", MAIN),
        BUILD_TYPE,
    );
    assert!(matches!(
        envelope_error(verify(&p, &[envelope(&a, &evil)], IMAGE)),
        EnvelopeError::SourceNotAllowed { .. }
    ));
}

#[test]
fn policy_refuses_inner_wildcards_unknown_fields_and_oversize() {
    let a = ed25519_builder("a", 1);
    let b = ed25519_builder("b", 2);
    let inner = policy_toml(1, &a.key, &b.key, REPO).replace("refs/tags/v*", "refs/*/main");
    assert!(
        ProvenancePolicy::from_toml(inner.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("trailing")
    );
    let everything = policy_toml(1, &a.key, &b.key, REPO).replace("refs/tags/v*", "*");
    assert!(
        ProvenancePolicy::from_toml(everything.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("everything")
    );
    let typo = format!(
        "required_builder = 1\n{}",
        policy_toml(1, &a.key, &b.key, REPO)
    );
    assert!(matches!(
        ProvenancePolicy::from_toml(typo.as_bytes()),
        Err(PolicyError::NotToml(_))
    ));
    let big = vec![b'#'; MAX_POLICY_BYTES + 1];
    assert_eq!(
        ProvenancePolicy::from_toml(&big),
        Err(PolicyError::TooLarge(MAX_POLICY_BYTES + 1))
    );
}

#[test]
fn sources_are_read_from_the_shapes_builders_write() {
    let def = |external: Value| BuildDefinition {
        build_type: BUILD_TYPE.into(),
        external_parameters: external,
        internal_parameters: Value::Null,
        resolved_dependencies: vec![],
    };
    let want = Some(Source {
        repository: REPO.into(),
        git_ref: MAIN.into(),
    });
    assert_eq!(def(workflow(REPO, MAIN)).source(), want);
    assert_eq!(def(json!({"repository": REPO, "ref": MAIN})).source(), want);
    assert_eq!(
        def(json!({"source": {"repository": REPO, "ref": MAIN}})).source(),
        want
    );
    assert_eq!(
        def(json!({"source": format!("git+{REPO}@{MAIN}")})).source(),
        want
    );
    assert_eq!(
        def(json!({"source": "git+ssh://git@github.com/acme/firmware"})).source(),
        None
    );
    assert_eq!(def(json!({"source": 7})).source(), None);
}

#[test]
fn bundle_round_trips_and_every_line_must_name_the_image() {
    let a = ed25519_builder("a", 1);
    let b = ed25519_builder("b", 2);
    let envelopes = vec![
        sign_with(&a, IN_TOTO_PAYLOAD_TYPE, &statement("a", IMAGE)),
        sign_with(&b, IN_TOTO_PAYLOAD_TYPE, &statement("b", IMAGE)),
    ];
    let bytes = bundle(&envelopes);
    assert_eq!(bytes.iter().filter(|c| **c == b'\n').count(), 2);
    assert_eq!(parse_bundle(&bytes).unwrap(), envelopes);
    check_bundle_subjects(&bytes, IMAGE).unwrap();
    assert_eq!(
        read_document(&bytes).unwrap(),
        ProvenanceDocument::Envelopes(envelopes.clone())
    );
    let mixed = bundle(&[
        envelopes[0].clone(),
        sign_with(&b, IN_TOTO_PAYLOAD_TYPE, &statement("b", OTHER)),
    ]);
    assert_eq!(
        check_bundle_subjects(&mixed, IMAGE),
        Err(BareStatementError::SubjectMismatch(IMAGE.into()))
    );
    // Signatures still verify after the envelopes were re-serialized into the bundle.
    let lines: Vec<&[u8]> = bytes
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    verify(&policy(2, &[&a, &b]), &lines, IMAGE).unwrap();
    let too_many = bundle(&vec![envelopes[0].clone(); MAX_ENVELOPES + 1]);
    assert!(matches!(
        parse_bundle(&too_many),
        Err(EnvelopeError::NotEnvelope(_))
    ));
}

#[test]
fn documents_are_told_apart() {
    let a = ed25519_builder("a", 1);
    assert_eq!(
        read_document(&statement("a", IMAGE)).unwrap(),
        ProvenanceDocument::Statement
    );
    let pretty =
        serde_json::to_vec_pretty(&sign_with(&a, IN_TOTO_PAYLOAD_TYPE, &statement("a", IMAGE)))
            .unwrap();
    assert!(
        matches!(read_document(&pretty).unwrap(), ProvenanceDocument::Envelopes(v) if v.len() == 1)
    );
    assert!(read_document(b"{\"hello\": 1}").is_err());
    assert!(read_document(b"not json\nat all").is_err());
}

#[test]
fn bare_statement_check_accepts_v1_and_v0_1_and_needs_the_image() {
    let v1 = statement("a", IMAGE);
    check_bare_statement(&v1, IMAGE).unwrap();
    let mut v: Value = serde_json::from_slice(&v1).unwrap();
    v["_type"] = json!(STATEMENT_V0_1);
    check_bare_statement(&serde_json::to_vec(&v).unwrap(), IMAGE).unwrap();
    assert_eq!(
        check_bare_statement(&v1, OTHER),
        Err(BareStatementError::SubjectMismatch(OTHER.into()))
    );
    v["_type"] = json!("https://example.com/Statement");
    assert!(matches!(
        check_bare_statement(&serde_json::to_vec(&v).unwrap(), IMAGE),
        Err(BareStatementError::Malformed(_))
    ));
}

#[test]
fn a_summary_names_builders_subjects_and_whether_they_are_the_image() {
    let builder = ed25519_builder("https://builder.example/a", 7);
    let signed = envelope(&builder, &statement("https://builder.example/a", IMAGE));
    let summary = summarize(&signed, IMAGE).unwrap();
    assert_eq!(summary.form, "envelopes");
    assert!(summary.names_image);
    assert_eq!(summary.statements.len(), 1);
    let s = &summary.statements[0];
    assert_eq!(s.builder.as_deref(), Some("https://builder.example/a"));
    assert_eq!(s.predicate_type, SLSA_PROVENANCE_V1);
    assert_eq!(s.subjects, [("fw.img".to_owned(), IMAGE.to_owned())]);
    assert_eq!(s.signatures, 1);

    // A bare statement about another image: unsigned, and not this image's.
    let bare = statement("https://builder.example/b", OTHER);
    let summary = summarize(&bare, IMAGE).unwrap();
    assert_eq!(summary.form, "statement");
    assert!(!summary.names_image);
    assert_eq!(summary.statements[0].signatures, 0);
    // Not provenance at all.
    assert!(summarize(b"not json", IMAGE).is_err());
}
