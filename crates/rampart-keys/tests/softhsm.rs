//! The PKCS#11 backend against a real SoftHSM2 token.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised, and the backend reads
//! `RAMPART_PKCS11_MODULE` / `RAMPART_PKCS11_PIN`; all are process-wide. Rather than mutate
//! the environment of the test process (unsafe in edition 2024), the test prepares a token in a
//! temporary directory and then re-runs itself as a child process with that environment; the
//! child runs the whole suite against the token, once, in one thread.
//!
//! Needs SoftHSM2 (Debian package `softhsm2`). Without it the test fails; it never skips.

use std::process::Command;
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use rampart_core::{KeyError, Scheme};
use rampart_keys::pkcs11::{self, ModuleConfig, Pkcs11Signer, TokenKeyRef};
use rampart_keys::{SignError, Signer, open_signer};

const CHILD_ENV: &str = "RAMPART_SOFTHSM_TEST_CHILD";
const TEST_NAME: &str = "softhsm_token_end_to_end";
const TOKEN: &str = "rampart-test";
const SO_PIN: &str = "12345678";
const USER_PIN: &str = "1234";

#[test]
fn softhsm_token_end_to_end() {
    if std::env::var_os(CHILD_ENV).is_some() {
        suite();
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let hsm = rampart_testkit::softhsm::SoftHsm::init(tmp.path(), TOKEN, SO_PIN, USER_PIN);
    let (module, conf) = (hsm.module, hsm.conf);

    let child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("SOFTHSM2_CONF", &conf)
        .env(pkcs11::MODULE_ENV, &module)
        .env(pkcs11::PIN_ENV, USER_PIN)
        .output()
        .expect("re-running the test binary");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success(),
        "SoftHSM2 suite failed:\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    println!("--- SoftHSM2 suite (child process) ---\n{stdout}{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the SoftHSM2 suite did not run:\n{stdout}\n{stderr}"
    );
}

fn pkcs11_message(e: SignError) -> String {
    match e {
        SignError::Pkcs11(m) => m,
        other => panic!("expected SignError::Pkcs11, got {other:?}"),
    }
}

/// Runs in the child process, with SOFTHSM2_CONF and the RAMPART_PKCS11_* variables set.
fn suite() {
    let cfg = ModuleConfig::from_env().expect("module config from the environment");
    let ed_ref = TokenKeyRef::parse(&format!("token={TOKEN};object=root-ed25519")).unwrap();
    let p256_ref = TokenKeyRef::parse(&format!("token={TOKEN};object=targets-p256")).unwrap();
    let msg = b"{\"signed\":{\"_type\":\"targets\",\"version\":7}}";

    // Ed25519 on the token.
    let ed = Pkcs11Signer::generate(&cfg, &ed_ref, Scheme::Ed25519).expect("generate ed25519");
    assert_eq!(ed.scheme(), Scheme::Ed25519);
    assert_eq!(ed.public_key().keytype, "ed25519");
    let ed_sig = ed.sign(msg).expect("sign with ed25519");
    assert_eq!(ed_sig.len(), 64);
    ed.public_key()
        .verify(msg, &ed_sig)
        .expect("ed25519 verifies");
    assert_eq!(
        ed.public_key().verify(b"tampered", &ed_sig),
        Err(KeyError::BadSignature)
    );

    // P-256 on the token: DER signatures over the message (SHA-256 prehash inside).
    let p256 =
        Pkcs11Signer::generate(&cfg, &p256_ref, Scheme::EcdsaP256Sha256).expect("generate P-256");
    assert_eq!(p256.scheme(), Scheme::EcdsaP256Sha256);
    assert!(
        p256.public_key()
            .keyval
            .public
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let p_sig = p256.sign(msg).expect("sign with P-256");
    assert_eq!(p_sig[0], 0x30, "ECDSA signatures are DER");
    p256.public_key()
        .verify(msg, &p_sig)
        .expect("P-256 verifies");
    assert_eq!(
        p256.public_key().verify(b"tampered", &p_sig),
        Err(KeyError::BadSignature)
    );
    assert_ne!(ed.key_id(), p256.key_id());

    // Re-open both by reference string, through the generic entry point.
    let ed_again = open_signer(&format!("pkcs11:token={TOKEN};object=root-ed25519"))
        .expect("open ed25519 by reference");
    assert_eq!(ed_again.public_key(), ed.public_key());
    assert_eq!(
        ed_again.sign(msg).unwrap(),
        ed_sig,
        "Ed25519 is deterministic"
    );
    let p_again = open_signer(&p256_ref.to_string()).expect("open P-256 by reference");
    assert_eq!(p_again.key_id(), p256.key_id());
    let sig = p_again.sign(b"other message").unwrap();
    p256.public_key().verify(b"other message", &sig).unwrap();

    // Signers are Send + Sync: sign from several threads at once.
    let shared: Arc<dyn Signer> = Arc::from(p_again);
    std::thread::scope(|s| {
        for i in 0..4 {
            let signer = Arc::clone(&shared);
            s.spawn(move || {
                let m = format!("message {i}");
                let sig = signer.sign(m.as_bytes()).unwrap();
                signer.public_key().verify(m.as_bytes(), &sig).unwrap();
            });
        }
    });

    // The private keys are sensitive and non-extractable: ask the token directly.
    assert_private_keys_locked_in(&cfg, &["root-ed25519", "targets-p256"]);

    // list_keys returns both key pairs with their TUF keys.
    let keys = pkcs11::list_keys(&cfg, TOKEN).expect("list keys");
    assert_eq!(
        keys,
        vec![
            ("root-ed25519".to_string(), ed.public_key().clone()),
            ("targets-p256".to_string(), p256.public_key().clone()),
        ]
    );

    // ML-DSA-65: SoftHSM2 has no such mechanism; the error says so and points to the file backend.
    let ml_ref = TokenKeyRef::parse(&format!("token={TOKEN};object=pq-root")).unwrap();
    let m = pkcs11_message(Pkcs11Signer::generate(&cfg, &ml_ref, Scheme::MlDsa65).unwrap_err());
    assert!(m.contains("ml-dsa-65"), "{m}");
    assert!(m.contains("CKM_ML_DSA"), "{m}");
    assert!(m.contains("file backend"), "{m}");
    let m =
        pkcs11_message(Pkcs11Signer::generate(&cfg, &ml_ref, Scheme::RsaPssSha256).unwrap_err());
    assert!(m.contains("verification only"), "{m}");
    assert_eq!(pkcs11::list_keys(&cfg, TOKEN).unwrap().len(), 2);

    // A wrong PIN is refused with a clear message.
    let wrong = ModuleConfig {
        module_path: cfg.module_path.clone(),
        pin: "9999".into(),
    };
    let m = pkcs11_message(Pkcs11Signer::open(&wrong, &ed_ref).unwrap_err());
    assert!(m.contains("wrong PIN"), "{m}");
    assert!(m.contains(pkcs11::PIN_ENV), "{m}");

    // A duplicate label is refused, and the existing key is left alone.
    let m =
        pkcs11_message(Pkcs11Signer::generate(&cfg, &ed_ref, Scheme::EcdsaP256Sha256).unwrap_err());
    assert!(m.contains("already exists"), "{m}");
    assert_eq!(
        Pkcs11Signer::open(&cfg, &ed_ref).unwrap().public_key(),
        ed.public_key()
    );
    assert_eq!(pkcs11::list_keys(&cfg, TOKEN).unwrap().len(), 2);

    // Unknown token and unknown object: the errors name what exists.
    let m = pkcs11_message(
        Pkcs11Signer::open(
            &cfg,
            &TokenKeyRef {
                token: "no-such-token".into(),
                object: "root-ed25519".into(),
            },
        )
        .unwrap_err(),
    );
    assert!(m.contains("no-such-token") && m.contains(TOKEN), "{m}");
    let m = pkcs11_message(
        Pkcs11Signer::open(
            &cfg,
            &TokenKeyRef {
                token: TOKEN.into(),
                object: "missing".into(),
            },
        )
        .unwrap_err(),
    );
    assert!(
        m.contains("missing") && m.contains("root-ed25519") && m.contains("targets-p256"),
        "{m}"
    );

    // A malformed reference is a BadReference error.
    assert!(matches!(
        open_signer(&format!("pkcs11:token={TOKEN};label=x")),
        Err(SignError::BadReference(_))
    ));
}

/// Opens an independent cryptoki context on the same module (the backend has already
/// initialised it, so C_Initialize reports CKR_CRYPTOKI_ALREADY_INITIALIZED) and checks the
/// protection attributes of each private key.
fn assert_private_keys_locked_in(cfg: &ModuleConfig, labels: &[&str]) {
    let ctx = Pkcs11::new(&cfg.module_path).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("initialising {}: {e}", cfg.module_path.display()),
    }
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == TOKEN)
        .expect("the test token");
    let session = ctx.open_ro_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    for label in labels {
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap();
        assert_eq!(found.len(), 1, "one private key labelled {label}");
        let key = found[0];
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Sign,
                    AttributeType::Id,
                ],
            )
            .unwrap();
        for want in [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::AlwaysSensitive(true),
            Attribute::NeverExtractable(true),
            Attribute::Sign(true),
        ] {
            assert!(
                attrs.contains(&want),
                "{label}: expected {want:?} in {attrs:?}"
            );
        }
        assert!(
            attrs
                .iter()
                .any(|a| matches!(a, Attribute::Id(id) if !id.is_empty())),
            "{label}: has a CKA_ID"
        );
        // The private value cannot be read out.
        let info = session
            .get_attribute_info(key, &[AttributeType::Value])
            .unwrap();
        assert!(
            matches!(info.as_slice(), [AttributeInfo::Sensitive]),
            "{label}: CKA_VALUE is {info:?}, expected sensitive"
        );
        let value = session
            .get_attributes(key, &[AttributeType::Value])
            .unwrap();
        assert!(value.is_empty(), "{label}: CKA_VALUE was returned");
    }
    session.close().unwrap();
}
