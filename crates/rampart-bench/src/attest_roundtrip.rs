//! `rampart-bench attest-roundtrip`: one device's attestation round trip against a real TPM
//! (swtpm, started for the run, EK certificates from its own CA) and the real `rampart server`
//! (child process, `--attestation`): the poll whose answer asks for a quote, TPM2_Quote with
//! the attestation key through the agent's own code (`rampart_agent::attest::answer`), and the
//! quote's submission and verification (signature, nonce, PCRs, counters, the event log
//! replayed, the measurements checked against the signed release). Each round is timed whole,
//! and the quote alone. Needs the `tpm` feature (libtss2) and swtpm.

#[cfg(feature = "tpm")]
use crate::report::{machine, stats};
use anyhow::bail;

/// `rampart-bench attest-roundtrip` options.
#[derive(clap::Args)]
pub struct AttestRoundtripArgs {
    /// Timed round trips (after the enrolment and one warm-up round).
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Directory to build in (new or empty; default: a new temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

pub fn run(a: AttestRoundtripArgs) -> anyhow::Result<()> {
    #[cfg(feature = "tpm")]
    return with_tpm::run(a);
    #[cfg(not(feature = "tpm"))]
    {
        let _ = a;
        bail!(
            "attest-roundtrip needs a real TPM: build with `cargo build --release -p rampart-bench --features tpm` (libtss2-dev, and swtpm to run)"
        )
    }
}

#[cfg(feature = "tpm")]
mod with_tpm {
    use super::*;

    use anyhow::Context;
    use rampart_cli::commands::demo::server::start_server;
    use rampart_cli::commands::demo::setup::{PASSPHRASE, prepare_dir};

    use crate::campaign::demo_repository;

    use rampart_agent::attest::{Answered, AttestationServer, answer};
    use rampart_agent::config::TpmConfig;
    use rampart_agent::server_client::{Poll, ServerClient};
    use rampart_attest::device::TpmDevice;
    use rampart_protocol::{AttestationOutcome, AttestationRequest, DeviceFacts};
    use std::time::{Duration, Instant};

    /// A quote stays fresh for this long; the server asks again after half of it.
    const FRESHNESS_SECS: u64 = 1;

    pub(super) fn run(a: AttestRoundtripArgs) -> anyhow::Result<()> {
        let swtpm = rampart_testkit::swtpm::SwTpm::start();
        let dir = prepare_dir(a.dir)?;
        let (repo_dir, _tlog, added) = demo_repository(&dir)?;
        let factory = &added[0];
        let ek_roots = dir.join("ek-roots.pem");
        let mut roots = std::fs::read(swtpm.ek_issuer())?;
        roots.extend(std::fs::read(swtpm.ek_root())?);
        std::fs::write(&ek_roots, roots)?;
        let freshness = FRESHNESS_SECS.to_string();
        let server = start_server(
            &dir.join("server"),
            &repo_dir,
            PASSPHRASE,
            &[
                "--attestation-freshness",
                &freshness,
                "--ek-roots",
                ek_roots.to_str().context("a UTF-8 path")?,
            ],
        )?;
        let device = server.ca.issue_device("bench-tpm-1", 30)?;
        let key = rampart_agent::tls::ClientKey::Pem(device.key_pem.as_bytes().to_vec());
        let (fetcher, id) = rampart_agent::tls::device_agent(
            server.ca.cert_pem().as_bytes(),
            device.cert_pem.as_bytes(),
            &key,
        )?;
        let client = ServerClient::from_fetcher(&server.process.device_url, fetcher, id);
        let opened = rampart_agent::tpm::open(&TpmConfig {
            tcti: swtpm.tcti(),
            pcr: rampart_attest::measure::DEFAULT_AGENT_PCR,
            ek_algorithm: "rsa2048".into(),
            ak_handle: 0x8101_0052,
            tls_key_handle: 0x8100_0052,
            nv_counter_index: 0x0100_5250,
        })?;
        let mut tpm = opened.device();
        // This boot's measurements: the factory image and its release claim.
        let sha256: [u8; 32] = hex::decode(&factory.sha256)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("the factory image's sha256 is not 32 bytes"))?;
        let log = rampart_attest::measure::boot_log(
            rampart_attest::measure::DEFAULT_AGENT_PCR,
            sha256,
            &factory.target_name,
        );
        for event in &log.events {
            let digest = event.sha256().context("a SHA-256 event")?;
            tpm.extend(rampart_attest::measure::DEFAULT_AGENT_PCR, &digest)?;
        }
        let log = log.encode();
        let facts = DeviceFacts {
            hardware_id: "board-a".into(),
            firmware_version: "1.0.0".into(),
            security_version: 1,
            ..DeviceFacts::default()
        };
        let poll = |client: &ServerClient| -> anyhow::Result<AttestationRequest> {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let Poll { attestation, .. } = client.poll_with(&facts)?;
                if let Some(request) = attestation {
                    return Ok(request);
                }
                if Instant::now() > deadline {
                    bail!("the server asked for no quote within 10 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        // Enrolment (the EK certificate chain, ActivateCredential), then a warm-up quote.
        let request = poll(&client)?;
        match answer(
            tpm.as_mut(),
            &request,
            &log,
            &client as &dyn AttestationServer,
        )? {
            Answered::Enrolled => {}
            other => bail!("expected an enrolment, got {other:?}"),
        }
        let round = |tpm: &mut dyn TpmDevice| -> anyhow::Result<f64> {
            let t = Instant::now();
            let request = poll(&client)?;
            let answered = answer(tpm, &request, &log, &client as &dyn AttestationServer)?;
            let total = t.elapsed();
            match answered {
                Answered::Quoted(a) if a.outcome == AttestationOutcome::Attested => {}
                other => bail!("the quote was not attested: {other:?}"),
            }
            Ok(total.as_secs_f64() * 1e3)
        };
        round(tpm.as_mut())?;
        let mut totals = Vec::new();
        let mut quotes = Vec::new();
        for _ in 0..a.rounds {
            // The server asks again once half the freshness window has passed.
            std::thread::sleep(Duration::from_millis(FRESHNESS_SECS * 500 + 50));
            totals.push(round(tpm.as_mut())?);
            let t = Instant::now();
            tpm.quote(&[7u8; 32], &[rampart_attest::measure::DEFAULT_AGENT_PCR])?;
            quotes.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (r, q) = (stats(&totals), stats(&quotes));
        println!("machine: {}", machine());
        println!(
            "attestation round trip (poll asking for a quote, TPM2_Quote on swtpm, submission and verification), {} rounds: median {:.1} ms, p10 {:.1}, p90 {:.1}, max {:.1}",
            a.rounds, r.median, r.p10, r.p90, r.max
        );
        println!(
            "TPM2_Quote alone on swtpm (one PCR): median {:.1} ms, p10 {:.1}, p90 {:.1}, max {:.1}",
            q.median, q.p10, q.p90, q.max
        );
        Ok(())
    }
}
