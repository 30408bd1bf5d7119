//! The C2SP signed-note example (shared/vectors/signed-note): the note verifies with its
//! verifier key, and changing any one byte of the text, the signature or the key breaks it.

use std::path::PathBuf;

use rampart_log::note::{KeyType, Note, NoteError, Verifier};

fn vector_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/signed-note/"
    ))
}

fn read_vector(name: &str) -> Vec<u8> {
    let path = vector_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "test vector {} is missing or unreadable: {e}",
            path.display()
        )
    })
}

fn note_bytes() -> Vec<u8> {
    read_vector("example.note")
}

fn vkey() -> String {
    let raw = String::from_utf8(read_vector("example.vkey")).expect("example.vkey is not UTF-8");
    raw.strip_suffix('\n').unwrap_or(&raw).to_owned()
}

/// Whether `bytes` parse as a note that `verifier` signed (both the lenient and the strict API
/// must agree).
fn verifies(bytes: &[u8], verifier: &Verifier) -> bool {
    let Ok(note) = Note::parse(bytes) else {
        return false;
    };
    let lenient = note.verified_by(std::slice::from_ref(verifier)).len() == 1;
    let strict = note.verify(std::slice::from_ref(verifier)).is_ok();
    assert_eq!(lenient, strict, "verified_by and verify disagree");
    lenient
}

#[test]
fn example_note_verifies() {
    let bytes = note_bytes();
    let v = Verifier::parse(&vkey()).unwrap();
    assert_eq!(v.name(), "example.com/foo");
    assert_eq!(v.key_type(), KeyType::Ed25519);
    assert_eq!(hex::encode(v.key_id()), "530d903a");
    assert_eq!(v.to_vkey_string(), vkey());

    let note = Note::parse(&bytes).unwrap();
    assert_eq!(note.text, "This is an example message.\n");
    assert_eq!(note.signatures.len(), 1);
    assert_eq!(note.signatures[0].name, "example.com/foo");
    assert_eq!(note.signatures[0].key_id, v.key_id());
    assert_eq!(note.signatures[0].signature.len(), 64);
    assert_eq!(note.to_bytes(), bytes, "encoding does not round-trip");
    assert!(v.verify_signature(&note.text, &note.signatures[0]));
    assert!(verifies(&bytes, &v));
}

#[test]
fn changing_one_byte_of_the_text_fails() {
    let bytes = note_bytes();
    let v = Verifier::parse(&vkey()).unwrap();
    let text_len = Note::parse(&bytes).unwrap().text.len();
    for i in 0..text_len {
        for replacement in [b'x', b'.', b' ', b'\n'] {
            if bytes[i] == replacement {
                continue;
            }
            let mut m = bytes.clone();
            m[i] = replacement;
            assert!(
                !verifies(&m, &v),
                "text byte {i} changed to {replacement:?} still verifies"
            );
        }
    }
}

#[test]
fn changing_one_byte_of_the_signature_fails() {
    let bytes = note_bytes();
    let v = Verifier::parse(&vkey()).unwrap();
    let note = Note::parse(&bytes).unwrap();
    // Every byte of the decoded signature.
    for i in 0..note.signatures[0].signature.len() {
        let mut m = note.clone();
        m.signatures[0].signature[i] ^= 0x01;
        assert!(
            !verifies(&m.to_bytes(), &v),
            "signature byte {i} flipped still verifies"
        );
        assert_eq!(
            m.verify(std::slice::from_ref(&v)),
            Err(NoteError::InvalidSignature {
                key: "example.com/foo+530d903a".into()
            })
        );
    }
    // Every character of the encoded signature line after the em dash.
    let sig_start = note.text.len() + 1 + "\u{2014} ".len();
    for i in sig_start..bytes.len() - 1 {
        let mut m = bytes.clone();
        m[i] = if m[i] == b'A' { b'B' } else { b'A' };
        assert!(
            !verifies(&m, &v),
            "signature line byte {i} changed still verifies"
        );
    }
}

#[test]
fn changing_one_byte_of_the_key_fails() {
    let bytes = note_bytes();
    let vkey = vkey();
    let v = Verifier::parse(&vkey).unwrap();

    // Every byte of the public key, keeping the stated key ID: the key string is rejected.
    for i in 0..v.public_key().len() {
        let mut pk = v.public_key().to_vec();
        pk[i] ^= 0x01;
        let mut raw = vec![0x01];
        raw.extend_from_slice(&pk);
        let s = format!(
            "{}+{}+{}",
            v.name(),
            hex::encode(v.key_id()),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw)
        );
        assert!(matches!(
            Verifier::parse(&s),
            Err(NoteError::KeyIdMismatch { .. })
        ));
        // With its own (correct) key ID the key is a different key: the note is not verified.
        let other = Verifier::new(v.name(), KeyType::Ed25519, &pk).unwrap();
        assert!(
            !verifies(&bytes, &other),
            "public key byte {i} flipped still verifies"
        );
    }

    // Every character of the key string: either rejected or it does not verify the note.
    for i in 0..vkey.len() {
        let mut m = vkey.clone().into_bytes();
        m[i] = if m[i] == b'A' { b'B' } else { b'A' };
        let Ok(s) = String::from_utf8(m) else {
            continue;
        };
        if let Ok(other) = Verifier::parse(&s) {
            assert!(
                !verifies(&bytes, &other),
                "key string byte {i} changed still verifies"
            );
        }
    }
}
