//! `rampart-bench attest-quotes`: TPM quote verifications per second on one core, the whole
//! server-side check (`rampart_attest::quote::verify_quote_bytes`: PCR file parsing, the AK's
//! ECDSA P-256 signature, TPMS_ATTEST parsing and every field check, the PCR digest), and ring's
//! bare ECDSA P-256 verification of the same message in the same run, rounds interleaved.

use std::time::Instant;

use rampart_attest::device::QuoteBytes;
use rampart_attest::pcr::{PcrSelection, PcrValues};
use rampart_attest::quote::{AttestationKey, verify_quote_bytes};
use rampart_attest::spki;
use rampart_attest::wire::{
    Attest, Attested, ClockInfo, HashAlg, QuoteInfo, Signature, TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE, alg,
};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};

use crate::report::{machine, stats};

/// The PCRs quoted: the firmware's (0-7) and the agent's measurements (13), as a server
/// requiring both would ask for: nine PCRs, two digest lists in the PCR file.
const SELECTION: &str = "sha256:0,1,2,3,4,5,6,7,13";

pub fn bench_attest_quotes(rounds: usize) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("generating a P-256 key"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("loading the P-256 key"))?;
    let point = key.public_key().as_ref().to_vec();
    let ak = AttestationKey::from_spki_der(&spki::p256_to_der(&point))?;

    let selection = PcrSelection::parse(SELECTION)?;
    let values = (0..selection.len())
        .map(|i| {
            ring::digest::digest(&ring::digest::SHA256, &[i as u8])
                .as_ref()
                .to_vec()
        })
        .collect();
    let pcrs = PcrValues::new(selection.clone(), values)?;
    let nonce = [0x5au8; 32];
    let message = Attest {
        magic: TPM_GENERATED_VALUE,
        attest_type: TPM_ST_ATTEST_QUOTE,
        qualified_signer: vec![0x11; 34],
        extra_data: nonce.to_vec(),
        clock_info: ClockInfo {
            clock: 123_456,
            reset_count: 3,
            restart_count: 0,
            safe: true,
        },
        firmware_version: 0x2019_1023_0016_3636,
        attested: Attested::Quote(QuoteInfo {
            pcr_select: selection.to_wire(),
            pcr_digest: pcrs
                .digest_for(&selection, HashAlg::Sha256)
                .expect("values for every selected PCR"),
        }),
    }
    .to_bytes();
    let fixed = key
        .sign(&rng, &message)
        .map_err(|_| anyhow::anyhow!("signing the quote"))?;
    let (r, s) = fixed.as_ref().split_at(32);
    let quote = QuoteBytes {
        signature: Signature::Ecdsa {
            hash: alg::SHA256,
            r: r.to_vec(),
            s: s.to_vec(),
        }
        .to_bytes(),
        message,
        pcrs: pcrs.to_file(),
    };
    verify_quote_bytes(&quote, &ak, &nonce, &selection)?;
    let bare = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);

    println!("machine: {}", machine());
    println!(
        "quote: ECDSA P-256 AK, {} PCRs ({SELECTION}), {}-byte TPMS_ATTEST, {}-byte PCR file; \
         {rounds} rounds of ~0.5 s each, one thread, interleaved",
        selection.len(),
        quote.message.len(),
        quote.pcrs.len()
    );
    let mut full = Vec::with_capacity(rounds);
    let mut ecdsa = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        full.push(per_second(|| {
            verify_quote_bytes(std::hint::black_box(&quote), &ak, &nonce, &selection)
                .map(drop)
                .map_err(anyhow::Error::from)
        })?);
        ecdsa.push(per_second(|| {
            bare.verify(std::hint::black_box(&quote.message), fixed.as_ref())
                .map_err(|_| anyhow::anyhow!("bare ECDSA verification failed"))
        })?);
    }
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "", "median /s", "min /s", "max /s"
    );
    for (name, samples) in [
        ("quote verification (rampart)", &full),
        ("ECDSA P-256 verify alone (ring)", &ecdsa),
    ] {
        let s = stats(samples);
        println!(
            "{name:<34} {:>12.0} {:>12.0} {:>12.0}",
            s.median, s.min, s.max
        );
    }
    println!(
        "quote verification / bare ECDSA (medians): {:.3}",
        stats(&full).median / stats(&ecdsa).median
    );
    Ok(())
}

/// Calls `f` for about half a second; calls per second.
fn per_second(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < 0.5 {
        for _ in 0..16 {
            f()?;
        }
        n += 16;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
