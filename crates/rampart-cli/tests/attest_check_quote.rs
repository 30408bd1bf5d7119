//! `rampart attest check-quote` against `tpm2_checkquote` (tpm2-tools) on real quotes from a
//! software TPM (swtpm): the same verdict on the good quote and on each tampered one, except
//! where tpm2-tools 5.4 is known to be wrong (CVE-2024-29038: no TPM_GENERATED magic check;
//! CVE-2024-29039: no PCR selection check). There the test shows tpm2_checkquote accepting and
//! Rampart refusing, and says why.

use std::path::Path;

use rampart_testkit::cli::{rampart, run, s};
use rampart_testkit::swtpm::SwTpm;

const NONCE: &str = "5ca1ab1e0ddba11c0ffee0000badc0de";
/// What the test extends PCR 16 with, so that a quoted PCR is not zero.
const PCR16_EXTEND: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// Files for one quote check, relative to the work directory.
struct QuoteFiles<'a> {
    ak: &'a str,
    message: &'a str,
    signature: &'a str,
    pcrs: &'a str,
    nonce: &'a str,
}

const GOOD: QuoteFiles<'static> = QuoteFiles {
    ak: "ak.pem",
    message: "quote.msg",
    signature: "quote.sig",
    pcrs: "quote.pcrs",
    nonce: NONCE,
};

/// A TPM with an EK, an ECDSA P-256 AK (and a second AK, as another device's would be), PCR 16
/// extended, and a quote of sha256:0,1,16 with NONCE.
fn quoted_tpm(dir: &Path) -> SwTpm {
    let tpm = SwTpm::start();
    // No resource manager between tpm2-tools and swtpm: each tool's transient objects stay
    // loaded unless flushed, and swtpm holds only three.
    let tool = |name: &str, args: &[&str]| {
        tpm.tpm2_ok(dir, name, args);
        tpm.tpm2_ok(dir, "tpm2_flushcontext", &["-t"]);
    };
    tool(
        "tpm2_createek",
        &["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"],
    );
    for ak in ["ak", "other-ak"] {
        let (ctx, pem) = (format!("{ak}.ctx"), format!("{ak}.pem"));
        tool(
            "tpm2_createak",
            &[
                "-C", "ek.ctx", "-c", &ctx, "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u", &pem,
                "-f", "pem",
            ],
        );
    }
    tool(
        "tpm2_readpublic",
        &["-c", "ak.ctx", "-f", "tss", "-o", "ak.tpm2b_public"],
    );
    tool("tpm2_pcrextend", &[&format!("16:sha256={PCR16_EXTEND}")]);
    tool(
        "tpm2_quote",
        &[
            "-c",
            "ak.ctx",
            "-l",
            "sha256:0,1,16",
            "-q",
            NONCE,
            "-g",
            "sha256",
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-o",
            "quote.pcrs",
        ],
    );
    tpm
}

/// Whether tpm2_checkquote accepts, and its output.
fn tpm2_checkquote(tpm: &SwTpm, dir: &Path, q: &QuoteFiles<'_>) -> (bool, String) {
    let out = tpm.tpm2(
        dir,
        "tpm2_checkquote",
        &[
            "-u",
            q.ak,
            "-m",
            q.message,
            "-s",
            q.signature,
            "-f",
            q.pcrs,
            "-q",
            q.nonce,
            "-g",
            "sha256",
        ],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Whether `rampart attest check-quote` accepts, and its output.
fn rampart_check_quote(dir: &Path, q: &QuoteFiles<'_>, extra: &[&str]) -> (bool, String) {
    let p = |f: &str| s(&dir.join(f)).to_owned();
    let mut args = vec![
        "attest".to_owned(),
        "check-quote".into(),
        "--ak-public".into(),
        p(q.ak),
        "--message".into(),
        p(q.message),
        "--signature".into(),
        p(q.signature),
        "--pcrs".into(),
        p(q.pcrs),
        "--nonce".into(),
        q.nonce.into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    run(rampart(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
}

/// Both tools give the same verdict `accept`; Rampart's refusal names `check`.
fn assert_agree(
    tpm: &SwTpm,
    dir: &Path,
    case: &str,
    q: &QuoteFiles<'_>,
    accept: bool,
    check: &str,
) {
    let (tpm2_ok, tpm2_out) = tpm2_checkquote(tpm, dir, q);
    let (rampart_ok, rampart_out) = rampart_check_quote(dir, q, &[]);
    assert_eq!(
        tpm2_ok,
        accept,
        "{case}: tpm2_checkquote {} it:\n{tpm2_out}",
        if tpm2_ok { "accepted" } else { "refused" }
    );
    assert_eq!(
        rampart_ok,
        accept,
        "{case}: rampart {} it:\n{rampart_out}",
        if rampart_ok { "accepted" } else { "refused" }
    );
    if !accept {
        assert!(
            rampart_out.contains(&format!("refused by the {check} check")),
            "{case}: rampart refused for another reason than the {check} check:\n{rampart_out}"
        );
    }
}

/// Copies `from` to `to` in `dir` with the byte at `at` (from the end when negative) XORed.
fn tamper(dir: &Path, from: &str, to: &str, at: isize, xor: u8) {
    let mut bytes = std::fs::read(dir.join(from)).unwrap();
    let i = if at < 0 {
        bytes.len() - at.unsigned_abs()
    } else {
        at as usize
    };
    bytes[i] ^= xor;
    std::fs::write(dir.join(to), bytes).unwrap();
}

#[test]
fn check_quote_agrees_with_tpm2_checkquote_on_good_and_tampered_swtpm_quotes() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let tpm = quoted_tpm(dir);

    assert_agree(&tpm, dir, "the good quote", &GOOD, true, "");
    // Rampart prints the verified values; PCR 16 is SHA-256(zeros || the extended digest).
    let (_, out) = rampart_check_quote(dir, &GOOD, &[]);
    let mut extended = vec![0u8; 32];
    extended.extend(hex::decode(PCR16_EXTEND).unwrap());
    let pcr16 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &extended));
    assert!(out.contains(&format!("16: 0x{pcr16}")), "{out}");
    // The AK as its TPM2B_PUBLIC is the same key.
    let tss_ak = QuoteFiles {
        ak: "ak.tpm2b_public",
        ..GOOD
    };
    assert_agree(
        &tpm,
        dir,
        "the good quote, AK as TPM2B_PUBLIC",
        &tss_ak,
        true,
        "",
    );

    let old_nonce = QuoteFiles {
        nonce: "0badc0de",
        ..GOOD
    };
    assert_agree(
        &tpm,
        dir,
        "another nonce (a replay)",
        &old_nonce,
        false,
        "nonce",
    );

    // The last byte of the file is padding of the last digest list; PCR 16's value is the
    // third digest of the first list.
    let pcr16_at = 4 + 16 * 8 + 4 + 4 + 2 * 66 + 2;
    tamper(dir, "quote.pcrs", "value.pcrs", pcr16_at as isize, 0x01);
    let value = QuoteFiles {
        pcrs: "value.pcrs",
        ..GOOD
    };
    assert_agree(
        &tpm,
        dir,
        "a PCR value changed",
        &value,
        false,
        "pcr-digest",
    );

    // A byte of the TPM clock in the message.
    tamper(
        dir,
        "quote.msg",
        "byte.msg",
        4 + 2 + 2 + 34 + 2 + 16 + 7,
        0x01,
    );
    let byte = QuoteFiles {
        message: "byte.msg",
        ..GOOD
    };
    assert_agree(
        &tpm,
        dir,
        "a message byte changed",
        &byte,
        false,
        "signature",
    );

    tamper(dir, "quote.sig", "bad.sig", -1, 0x01);
    let signature = QuoteFiles {
        signature: "bad.sig",
        ..GOOD
    };
    assert_agree(
        &tpm,
        dir,
        "a signature byte changed",
        &signature,
        false,
        "signature",
    );

    let other_ak = QuoteFiles {
        ak: "other-ak.pem",
        ..GOOD
    };
    assert_agree(
        &tpm,
        dir,
        "another AK (another device)",
        &other_ak,
        false,
        "signature",
    );
}

#[test]
fn check_quote_refuses_what_tpm2_checkquote_5_4_wrongly_accepts() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let tpm = quoted_tpm(dir);

    // CVE-2024-29038: a structure that is not the TPM's (its magic is not TPM_GENERATED_VALUE)
    // signed by the AK through TPM2_Sign with a hash ticket: the TPM hashes and tickets outside
    // data only when it does not start with the magic, so the forgery cannot carry it, and a
    // verifier that does not check the magic takes it for a quote.
    tamper(dir, "quote.msg", "forged.msg", 0, 0xff);
    tpm.tpm2_ok(
        dir,
        "tpm2_hash",
        &[
            "-C",
            "e",
            "-g",
            "sha256",
            "-t",
            "ticket.bin",
            "-o",
            "digest.bin",
            "forged.msg",
        ],
    );
    tpm.tpm2_ok(
        dir,
        "tpm2_sign",
        &[
            "-c",
            "ak.ctx",
            "-g",
            "sha256",
            "-d",
            "-t",
            "ticket.bin",
            "-o",
            "forged.sig",
            "digest.bin",
        ],
    );
    let forged = QuoteFiles {
        message: "forged.msg",
        signature: "forged.sig",
        ..GOOD
    };
    let (tpm2_ok, tpm2_out) = tpm2_checkquote(&tpm, dir, &forged);
    assert!(
        tpm2_ok,
        "tpm2_checkquote refused the forged structure: tpm2-tools now checks the magic \
         (CVE-2024-29038 fixed); require agreement here instead:\n{tpm2_out}"
    );
    let (rampart_ok, rampart_out) = rampart_check_quote(dir, &forged, &[]);
    assert!(
        !rampart_ok,
        "rampart accepted a forged quote:\n{rampart_out}"
    );
    assert!(
        rampart_out.contains("refused by the magic check") && rampart_out.contains("0x00544347"),
        "{rampart_out}"
    );

    // CVE-2024-29039: the PCR file relabels the quoted values (PCR 16 becomes PCR 17). The
    // digest over the same values still matches, so a verifier that does not compare the
    // file's selection with the quote's reports PCR 17's value as attested.
    tamper(dir, "quote.pcrs", "relabelled.pcrs", 4 + 3 + 2, 0x01 | 0x02);
    let relabelled = QuoteFiles {
        pcrs: "relabelled.pcrs",
        ..GOOD
    };
    let (tpm2_ok, tpm2_out) = tpm2_checkquote(&tpm, dir, &relabelled);
    assert!(
        tpm2_ok && tpm2_out.contains("17:"),
        "tpm2_checkquote refused a relabelled PCR file: tpm2-tools now compares selections \
         (CVE-2024-29039 fixed); require agreement here instead:\n{tpm2_out}"
    );
    let (rampart_ok, rampart_out) = rampart_check_quote(dir, &relabelled, &[]);
    assert!(
        !rampart_ok,
        "rampart accepted relabelled PCRs:\n{rampart_out}"
    );
    assert!(
        rampart_out.contains("refused by the pcr-values-selection check")
            && rampart_out.contains("sha256:0,1,17")
            && rampart_out.contains("sha256:0,1,16"),
        "{rampart_out}"
    );

    // The selection the verifier requires: a quote of other PCRs than asked for is refused
    // (tpm2_checkquote has no such input without an event log).
    let (ok, out) = rampart_check_quote(dir, &GOOD, &["--pcr-list", "sha256:0,1,7"]);
    assert!(
        !ok && out.contains("refused by the pcr-selection check"),
        "{out}"
    );
    let (ok, out) = rampart_check_quote(dir, &GOOD, &["--pcr-list", "sha256:0,1,16", "--json"]);
    assert!(ok, "{out}");
    let verified: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["selection"], "sha256:0,1,16");
}

#[test]
fn check_quote_refuses_unreadable_inputs_with_the_reason() {
    let testdata = |name: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../rampart-attest/testdata")
                .join(name),
        )
        .unwrap()
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(dir.join("garbage"), b"not a key").unwrap();
    std::fs::write(dir.join("big"), vec![0u8; 100_000]).unwrap();
    let garbage_ak = QuoteFiles {
        ak: "garbage",
        ..GOOD
    };
    let (ok, out) = rampart_check_quote(dir, &garbage_ak, &[]);
    assert!(
        !ok && out.contains("neither a PEM or DER public key"),
        "{out}"
    );
    std::fs::write(dir.join("ak.pem"), testdata("swtpm-ak.pem")).unwrap();
    let big_message = QuoteFiles {
        message: "big",
        ..GOOD
    };
    let (ok, out) = rampart_check_quote(dir, &big_message, &[]);
    assert!(
        !ok && out.contains("larger than the 1024-byte limit"),
        "{out}"
    );
    // A PCR file cut short is a failed check like the others (and so in --json).
    std::fs::write(dir.join("quote.msg"), testdata("swtpm-quote.msg")).unwrap();
    std::fs::write(dir.join("quote.sig"), testdata("swtpm-quote.sig")).unwrap();
    let mut short = testdata("swtpm-quote.pcrs");
    short.truncate(200);
    std::fs::write(dir.join("quote.pcrs"), short).unwrap();
    let (ok, out) = rampart_check_quote(dir, &GOOD, &["--json"]);
    assert!(
        !ok && out.contains("refused by the pcr-values-format check"),
        "{out}"
    );
    assert!(out.contains("\"check\": \"pcr-values-format\""), "{out}");
    let missing = QuoteFiles {
        message: "missing.msg",
        ..GOOD
    };
    let (ok, out) = rampart_check_quote(dir, &missing, &[]);
    assert!(!ok && out.contains("missing.msg"), "{out}");
}
