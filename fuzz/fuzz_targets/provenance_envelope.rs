//! Release provenance (rampart-vuln::provenance): DSSE envelopes, in-toto bundles and bare
//! statements as operators hand them over, provenance policies, and the input as the signed
//! payload of an envelope a trusted builder signed, verified against a policy. Whatever is
//! accepted must name the image and the trusted builder.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rampart_core::keys::{Key, Scheme};
use rampart_vuln::provenance::{
    self, Envelope, IN_TOTO_PAYLOAD_TYPE, ProvenancePolicy, SourceSpec, Statement, TrustedBuilder,
};
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The image digest the seeds name.
const IMAGE: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
const BUILDER: &str = "https://builder.example";

struct Fixture {
    pair: Ed25519KeyPair,
    key: Key,
    policy: ProvenancePolicy,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("fixed seed");
        let key = Key::from_public_bytes(Scheme::Ed25519, pair.public_key().as_ref())
            .expect("ed25519 key");
        let policy = ProvenancePolicy::new(
            1,
            vec![TrustedBuilder {
                id: BUILDER.into(),
                keys: vec![key.clone()],
            }],
            vec![SourceSpec {
                repository: "https://github.com/acme/".into(),
                refs: vec!["refs/*".into()],
            }],
            vec!["https://actions.github.io/buildtypes/workflow/v1".into()],
        )
        .expect("fixed policy");
        Fixture { pair, key, policy }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // As a document handed over: envelope, bundle or bare statement.
    let _ = provenance::read_document(data);
    let _ = provenance::parse_bundle(data);
    let _ = provenance::check_bundle_subjects(data, IMAGE);
    let _ = provenance::check_bare_statement(data, IMAGE);
    let _ = ProvenancePolicy::from_toml(data);
    // Unsigned by the trusted key: never accepted.
    assert!(provenance::verify(&f.policy, &[data], IMAGE).is_err());

    // As the payload a trusted builder signed.
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, data, &f.key.key_id(), |m| {
        Ok::<_, ()>(f.pair.sign(m).as_ref().to_vec())
    })
    .expect("signing cannot fail");
    if let Ok(verdict) = provenance::verify(&f.policy, &[envelope.to_line()], IMAGE) {
        assert_eq!(verdict.builders.len(), 1);
        assert_eq!(verdict.builders[0].builder_id, BUILDER);
        let statement = Statement::parse(data).expect("an accepted payload parses");
        assert!(statement.names_sha256(IMAGE));
    }
});
