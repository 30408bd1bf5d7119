//! Remote attestation against the real server (issue 15, docs/decisions/0027), with devices
//! whose TPM is `rampart_attest::soft::SoftTpm` (the same structures a real TPM makes, checked
//! by the same verifier). One test per fail-closed class; each fails if its check is removed.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::ops::Ops;
use common::*;
use rampart_attest::device::TpmDevice;
use rampart_attest::measure::{boot_log, release_claim_data};
use rampart_attest::soft::SoftTpm;
use rampart_server::attestation::AttestationConfig;
use serde_json::{Value, json};

const AGENT_PCR: u8 = 13;
/// The release the devices run (see `common::ops::image_repo`).
const RUNNING: &str = "fw-1.0.0.bin";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .try_into()
        .unwrap()
}

/// The bytes of a release image of `common::ops::image_repo`.
fn image(target: &str) -> Vec<u8> {
    format!("firmware {target}").repeat(100).into_bytes()
}

fn config(tweak: impl FnOnce(&mut AttestationConfig)) -> AttestationConfig {
    let mut config = AttestationConfig::default();
    tweak(&mut config);
    config
}

/// A device with a software TPM, as the agent drives it.
struct Device {
    id: &'static str,
    tpm: SoftTpm,
}

impl Device {
    fn new(id: &'static str, seed: u8) -> Device {
        Device {
            id,
            tpm: SoftTpm::new([seed; 32]),
        }
    }

    /// The agent's boot measurements of `target` (its image and the release claim), extended
    /// into the agent PCR; the event log that explains them.
    fn boot(&mut self, target: &str) -> Vec<u8> {
        let digest = sha256(&image(target));
        self.tpm.extend(AGENT_PCR, &digest).unwrap();
        self.tpm
            .extend(AGENT_PCR, &sha256(&release_claim_data(target)))
            .unwrap();
        boot_log(AGENT_PCR, digest, target).encode()
    }

    async fn poll(&self, ops: &Ops) -> Value {
        let mut conn = ops.server.connect(&ops.fx.device(self.id)).await;
        let r = conn
            .post(
                "/device/v1/poll",
                &json!({"hardware_id": "board-a", "firmware_version": "1.0.0", "security_version": 1}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.json()
    }

    /// A poll that says which boot the device is in.
    async fn poll_in_boot(&self, ops: &Ops, boot_id: &str) -> Value {
        let mut conn = ops.server.connect(&ops.fx.device(self.id)).await;
        let r = conn
            .post(
                "/device/v1/poll",
                &json!({"hardware_id": "board-a", "firmware_version": "1.0.0", "security_version": 1, "boot_id": boot_id}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.json()
    }

    async fn post(&self, ops: &Ops, path: &str, body: &Value) -> Response {
        let mut conn = ops.server.connect(&ops.fx.device(self.id)).await;
        conn.post(path, body).await
    }

    async fn approve_ek(&mut self, ops: &Ops) {
        let ek = self.tpm.endorsement().unwrap();
        let r = ops
            .call(
                &ops.admin,
                "POST",
                "/api/v1/attestation/approved-eks",
                Some(&json!({"ek_public": b64(&ek.public), "note": self.id})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
    }

    /// Enrolment, step 1.
    async fn enrol(&mut self, ops: &Ops) -> Response {
        let ek = self.tpm.endorsement().unwrap();
        let ak = self.tpm.attestation_key().unwrap();
        self.post(
            ops,
            "/device/v1/attestation/enrol",
            &json!({"ek_public": b64(&ek.public), "ak_public": b64(&ak)}),
        )
        .await
    }

    /// Enrolment, step 1, and the secret the TPM recovers from the challenge.
    async fn challenge(&mut self, ops: &Ops) -> (Value, Vec<u8>) {
        let challenge = self.enrol(ops).await;
        assert_eq!(challenge.status, 200, "{challenge:?}");
        let challenge = challenge.json();
        let decode = |field: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(challenge[field].as_str().unwrap())
                .unwrap()
        };
        let secret = self
            .tpm
            .activate_credential(&decode("credential_blob"), &decode("encrypted_secret"))
            .unwrap();
        (challenge, secret)
    }

    /// Both enrolment steps, with the secret the TPM recovers.
    async fn enrol_and_activate(&mut self, ops: &Ops) {
        let (challenge, secret) = self.challenge(ops).await;
        let r = self
            .post(
                ops,
                "/device/v1/attestation/activate",
                &json!({"challenge_id": challenge["challenge_id"], "secret": b64(&secret)}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.json()["ak_name"],
            hex::encode(self.tpm.attestation_key_name())
        );
    }

    /// The nonce of the poll answer's attestation request.
    async fn nonce(&self, ops: &Ops) -> String {
        let answer = self.poll(ops).await;
        answer["attestation"]["nonce"]
            .as_str()
            .unwrap_or_else(|| panic!("no attestation request in {answer}"))
            .to_owned()
    }

    /// A quote submission over `pcrs` for `nonce`, with `log`.
    fn quote(&mut self, nonce: &str, pcrs: &[u8], log: &[u8]) -> Value {
        let quote = self.tpm.quote(&hex::decode(nonce).unwrap(), pcrs).unwrap();
        json!({
            "nonce": nonce,
            "message": b64(&quote.message),
            "signature": b64(&quote.signature),
            "pcrs": b64(&quote.pcrs),
            "event_log": b64(log),
        })
    }

    /// Quotes `pcrs` for the nonce of the next poll answer and sends it with `log`: the answer.
    async fn quote_and_submit(&mut self, ops: &Ops, pcrs: &[u8], log: &[u8]) -> Value {
        let nonce = self.nonce(ops).await;
        let submission = self.quote(&nonce, pcrs, log);
        self.submit(ops, &submission).await
    }

    async fn submit(&self, ops: &Ops, submission: &Value) -> Value {
        let r = self
            .post(ops, "/device/v1/attestation/quote", submission)
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.json()
    }

    /// A device with an approved EK and an enrolled AK that booted `RUNNING`; the boot's log.
    async fn enrolled(ops: &Ops, id: &'static str, seed: u8) -> (Device, Vec<u8>) {
        let mut dev = Device::new(id, seed);
        dev.poll(ops).await;
        dev.approve_ek(ops).await;
        dev.enrol_and_activate(ops).await;
        let log = dev.boot(RUNNING);
        (dev, log)
    }

    /// Enrols, boots `RUNNING`, and attests; returns the boot's event log.
    async fn attest(&mut self, ops: &Ops) -> Vec<u8> {
        self.poll(ops).await;
        self.approve_ek(ops).await;
        self.enrol_and_activate(ops).await;
        let log = self.boot(RUNNING);
        let nonce = self.nonce(ops).await;
        let submission = self.quote(&nonce, &[AGENT_PCR], &log);
        let answer = self.submit(ops, &submission).await;
        assert_eq!(answer["outcome"], "attested", "{answer}");
        log
    }

    /// The device's attestation as the management API shows it.
    async fn view(&self, ops: &Ops) -> Value {
        let r = ops
            .call(
                &ops.viewer,
                "GET",
                &format!("/api/v1/devices/{}", self.id),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["attestation"].clone()
    }
}

async fn start(backend: Backend, name: &str, attestation: AttestationConfig) -> Ops {
    Ops::start_with(backend, name, |c| c.attestation = Some(attestation)).await
}

/// Asserts `rampart_attestation_failures_total{check}` is `n`.
async fn assert_failures(ops: &Ops, check: &str, n: u64) {
    let series = format!("rampart_attestation_failures_total{{check=\"{check}\"}}");
    assert_eq!(ops.server.metric(&series).await, n, "{series}");
}

async fn security_events(ops: &Ops, device: &str) -> Vec<Value> {
    let r = ops
        .call(
            &ops.viewer,
            "GET",
            &format!("/api/v1/attestation/events?device={device}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["events"].as_array().unwrap().clone()
}

/// Asserts the device's last quote failed with a reason containing `needle`, that the failure
/// is shown, counted and raised as a security event.
async fn assert_failed(ops: &Ops, device: &Device, answer: &Value, needle: &str) {
    assert_eq!(answer["outcome"], "failed", "{answer}");
    let reason = answer["reason"].as_str().unwrap();
    assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
    let view = device.view(ops).await;
    assert_eq!(view["outcome"], "failed", "{view}");
    assert_eq!(view["reason"], reason);
    let events = security_events(ops, device.id).await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "attestation.failed" && e["detail"]["reason"] == reason),
        "{events:?}"
    );
    let records = ops.audit_records().await;
    assert!(
        records
            .iter()
            .any(|r| r.action == "device.attestation_failed" && r.subject == device.id)
    );
}

on_both_backends!(
    enrol_activate_and_attest_then_the_inventory_shows_attested,
    a_device_that_rebooted_is_asked_for_a_quote_at_once,
    a_wrong_secret_at_activation_is_refused_and_enrols_nothing,
    an_ek_neither_certified_nor_approved_is_refused,
    a_dead_verifier_engine_leaves_devices_stale_never_attested,
    a_bad_signature_is_refused_and_recorded_not_only_logged,
    a_replayed_nonce_is_refused,
    a_quote_by_another_devices_ak_is_refused,
    a_pcr_selection_other_than_the_required_one_is_refused,
    an_event_log_that_does_not_replay_is_refused,
    truncated_or_garbage_attestation_structures_are_refused,
    tpm_counters_going_backwards_are_refused,
    the_policy_withholds_assignment_and_artifacts_until_the_device_attests,
    a_campaign_requiring_attestation_holds_unattested_devices_without_failing_them,
    the_staleness_engine_audits_a_pass_going_stale_once,
    one_tpm_attests_for_one_device_and_a_device_keeps_its_tpm,
    a_device_flooding_the_attestation_routes_is_slowed_down,
    an_ek_certificate_chaining_to_the_ek_roots_needs_no_approval,
    a_firmware_event_log_is_replayed_with_the_agents_to_the_quoted_firmware_pcr,
);

async fn enrol_activate_and_attest_then_the_inventory_shows_attested(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let mut dev = Device::new("dev-tpm-1", 1);
    let first = dev.poll(&ops).await;
    assert_eq!(first["attestation"]["enrolled"], false, "{first}");
    assert_eq!(first["attestation"]["pcrs"], "sha256:13");
    // The pending nonce is reused: the poll answer (and its ETag) stays the same.
    assert_eq!(dev.poll(&ops).await, first);
    assert_eq!(dev.view(&ops).await["outcome"], "stale");
    dev.attest(&ops).await;
    let view = dev.view(&ops).await;
    assert_eq!(view["outcome"], "attested", "{view}");
    assert_eq!(view["release"], RUNNING);
    // Fresh: the next poll asks for no quote.
    assert_eq!(dev.poll(&ops).await["attestation"], Value::Null);
    assert_eq!(
        ops.server
            .metric("rampart_attestation_quotes_passed_total")
            .await,
        1
    );
    assert_eq!(
        ops.server
            .metric("rampart_attestation_enrolments_total")
            .await,
        1
    );
    let records = ops.audit_records().await;
    assert!(
        records
            .iter()
            .any(|r| r.action == "device.attestation_enrolled")
    );
    assert!(
        records
            .iter()
            .any(|r| r.action == "attestation.ek_approved")
    );
}

async fn a_wrong_secret_at_activation_is_refused_and_enrols_nothing(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let mut dev = Device::new("dev-tpm-2", 2);
    dev.poll(&ops).await;
    dev.approve_ek(&ops).await;
    let (challenge, right) = dev.challenge(&ops).await;
    let answer = |secret: Vec<u8>| json!({"challenge_id": challenge["challenge_id"], "secret": b64(&secret)});
    let r = dev
        .post(
            &ops,
            "/device/v1/attestation/activate",
            &answer(vec![7; 32]),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"], "activation_failed");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("not in the same TPM")
    );
    assert_eq!(dev.poll(&ops).await["attestation"]["enrolled"], false);
    // The challenge is used up: the right secret now is refused too.
    let r = dev
        .post(&ops, "/device/v1/attestation/activate", &answer(right))
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(dev.poll(&ops).await["attestation"]["enrolled"], false);
    let events = security_events(&ops, dev.id).await;
    assert_eq!(
        events[0]["kind"], "attestation.enrolment_refused",
        "{events:?}"
    );
    assert_failures(&ops, "enrolment", 2).await;
}

async fn an_ek_neither_certified_nor_approved_is_refused(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let mut dev = Device::new("dev-tpm-3", 3);
    dev.poll(&ops).await;
    let r = dev.enrol(&ops).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"], "enrolment_refused");
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("neither certified nor approved"),
        "{detail}"
    );
    assert!(detail.contains("rampart attest approve-ek"), "{detail}");
    // A certificate the server cannot check (no EK roots) does not make it trusted either.
    let ek = dev.tpm.endorsement().unwrap();
    let ak = dev.tpm.attestation_key().unwrap();
    let r = dev
        .post(
            &ops,
            "/device/v1/attestation/enrol",
            &json!({"ek_public": b64(&ek.public), "ek_certificate": b64(b"not a certificate"), "ak_public": b64(&ak)}),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(dev.poll(&ops).await["attestation"]["enrolled"], false);
}

async fn a_dead_verifier_engine_leaves_devices_stale_never_attested(backend: Backend, name: &str) {
    // The staleness engine sweeps once at start, then never again within the test: it is as
    // good as dead. The device must still go stale when its freshness window ends.
    let ops = start(
        backend,
        name,
        config(|c| {
            c.freshness = Duration::from_secs(2);
            c.sweep_interval = Duration::from_secs(24 * 3600);
            c.require = true;
        }),
    )
    .await;
    let mut dev = Device::new("dev-tpm-4", 4);
    dev.attest(&ops).await;
    let verified_at = dev.view(&ops).await["verified_at"].as_i64().unwrap();
    // Past the window (state, not a timing assertion): stale, and the policy refuses.
    wait_past(verified_at + 2).await;
    let view = dev.view(&ops).await;
    assert_eq!(view["outcome"], "stale", "{view}");
    let mut conn = ops.server.connect(&ops.fx.device(dev.id)).await;
    let r = conn.get("/device/v1/repo/targets/any.bin", &[]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"], "attestation_required");
    // No sweep ran, so the gauge still says what it said at start: it is not what decides.
    assert_eq!(
        ops.server
            .metric("rampart_attestation_devices{state=\"attested\"}")
            .await,
        0
    );
}

async fn a_bad_signature_is_refused_and_recorded_not_only_logged(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let mut dev = Device::new("dev-tpm-5", 5);
    let log = dev.attest(&ops).await;
    // Due again only after half the window; ask through a quote with a nonce of a new request.
    let nonce = issue_nonce(&ops, &dev).await;
    let mut submission = dev.quote(&nonce, &[AGENT_PCR], &log);
    let mut signature = base64::engine::general_purpose::STANDARD
        .decode(submission["signature"].as_str().unwrap())
        .unwrap();
    let last = signature.len() - 1;
    signature[last] ^= 1;
    submission["signature"] = json!(b64(&signature));
    let answer = dev.submit(&ops, &submission).await;
    // Was attested; now failed (not attested with a warning in a log).
    assert_failed(&ops, &dev, &answer, "signature").await;
    assert_failures(&ops, "quote", 1).await;
}

/// A fresh nonce for a device that is attested (so its poll asks for none): the test asks
/// the server for one the way a poll after half the window would.
async fn issue_nonce(ops: &Ops, dev: &Device) -> String {
    ops.fx
        .db
        .pending_nonce(dev.id, unix_now(), 900, 60, || hex::encode([0x5a; 32]))
        .await
        .unwrap()
        .nonce
}

async fn a_replayed_nonce_is_refused(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let (mut dev, log) = Device::enrolled(&ops, "dev-tpm-6", 6).await;
    let nonce = dev.nonce(&ops).await;
    let submission = dev.quote(&nonce, &[AGENT_PCR], &log);
    assert_eq!(dev.submit(&ops, &submission).await["outcome"], "attested");
    let answer = dev.submit(&ops, &submission).await;
    assert_failed(&ops, &dev, &answer, "already used").await;
    assert_failures(&ops, "nonce", 1).await;
}

async fn a_quote_by_another_devices_ak_is_refused(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let mut victim = Device::new("dev-tpm-7a", 7);
    let mut other = Device::new("dev-tpm-7b", 8);
    victim.poll(&ops).await;
    victim.approve_ek(&ops).await;
    victim.enrol_and_activate(&ops).await;
    other.attest(&ops).await;
    // The other device's TPM quotes the victim's nonce over the right measurements.
    let nonce = victim.nonce(&ops).await;
    let submission = {
        other.tpm.reboot();
        let log = other.boot(RUNNING);
        other.quote(&nonce, &[AGENT_PCR], &log)
    };
    let answer = victim.submit(&ops, &submission).await;
    assert_failed(&ops, &victim, &answer, "another key").await;
}

async fn a_pcr_selection_other_than_the_required_one_is_refused(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let (mut dev, log) = Device::enrolled(&ops, "dev-tpm-8", 9).await;
    let answer = dev.quote_and_submit(&ops, &[AGENT_PCR, 14], &log).await;
    assert_failed(&ops, &dev, &answer, "are required").await;
}

async fn an_event_log_that_does_not_replay_is_refused(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let mut dev = Device::new("dev-tpm-9", 10);
    dev.poll(&ops).await;
    dev.approve_ek(&ops).await;
    dev.enrol_and_activate(&ops).await;
    // The TPM measured another image than the log the device sends says.
    let digest = sha256(b"an image that is not the release");
    dev.tpm.extend(AGENT_PCR, &digest).unwrap();
    dev.tpm
        .extend(AGENT_PCR, &sha256(&release_claim_data(RUNNING)))
        .unwrap();
    let log = boot_log(AGENT_PCR, sha256(&image(RUNNING)), RUNNING).encode();
    let answer = dev.quote_and_submit(&ops, &[AGENT_PCR], &log).await;
    assert_failed(&ops, &dev, &answer, "does not replay").await;
    assert_failures(&ops, "measurements", 1).await;
}

async fn truncated_or_garbage_attestation_structures_are_refused(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let (mut dev, log) = Device::enrolled(&ops, "dev-tpm-10", 11).await;
    let nonce = dev.nonce(&ops).await;
    let mut submission = dev.quote(&nonce, &[AGENT_PCR], &log);
    let message = base64::engine::general_purpose::STANDARD
        .decode(submission["message"].as_str().unwrap())
        .unwrap();
    submission["message"] = json!(b64(&message[..message.len() - 5]));
    let answer = dev.submit(&ops, &submission).await;
    assert_failed(&ops, &dev, &answer, "signature").await;
    // Not base64 at all: a clear 422, nothing verified.
    submission["message"] = json!("%%% not base64 %%%");
    let r = dev
        .post(&ops, "/device/v1/attestation/quote", &submission)
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.json()["detail"].as_str().unwrap().contains("message"));
    // Unknown fields are refused.
    let r = dev
        .post(
            &ops,
            "/device/v1/attestation/quote",
            &json!({"nonce": nonce, "surprise": 1}),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
}

async fn tpm_counters_going_backwards_are_refused(backend: Backend, name: &str) {
    let ops = start(
        backend,
        name,
        config(|c| c.freshness = Duration::from_secs(2)),
    )
    .await;
    let (mut dev, log) = Device::enrolled(&ops, "dev-tpm-11", 12).await;
    // Two quotes the server never sees advance the TPM's clock.
    for _ in 0..2 {
        dev.tpm.quote(&[1; 32], &[AGENT_PCR]).unwrap();
    }
    let nonce = dev.nonce(&ops).await;
    let submission = dev.quote(&nonce, &[AGENT_PCR], &log);
    assert_eq!(dev.submit(&ops, &submission).await["outcome"], "attested");
    // The same TPM restored to an earlier state (same keys, same boot, an older clock).
    let mut restored = Device::new(dev.id, 12);
    let log = restored.boot(RUNNING);
    // Asked again once half the window has passed (waited on as state, bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let next = loop {
        if let Some(n) = dev.poll(&ops).await["attestation"]["nonce"].as_str()
            && n != nonce
        {
            break n.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the device was not asked for a new quote"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let submission = restored.quote(&next, &[AGENT_PCR], &log);
    let answer = restored.submit(&ops, &submission).await;
    assert_failed(&ops, &restored, &answer, "clock went backwards").await;
    assert_failures(&ops, "counters", 1).await;
}

async fn the_policy_withholds_assignment_and_artifacts_until_the_device_attests(
    backend: Backend,
    name: &str,
) {
    let ops = start(backend, name, config(|c| c.require = true)).await;
    let mut dev = Device::new("dev-tpm-12", 13);
    dev.poll(&ops).await;
    let created = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/assignments",
            Some(&json!({"target": "fw-2.0.0.bin", "devices": [dev.id]})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let artifact = format!(
        "/device/v1/repo/targets/{}.fw-2.0.0.bin",
        hex::encode(sha256(&image("fw-2.0.0.bin")))
    );
    let answer = dev.poll(&ops).await;
    assert_eq!(answer["assignment"], Value::Null, "{answer}");
    assert!(answer["attestation"]["nonce"].is_string());
    let mut conn = ops.server.connect(&ops.fx.device(dev.id)).await;
    let r = conn.get(&artifact, &[]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"], "attestation_required");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("send the quote")
    );

    dev.attest(&ops).await;
    let answer = dev.poll(&ops).await;
    assert_eq!(answer["assignment"]["target"], "fw-2.0.0.bin", "{answer}");
    let mut conn = ops.server.connect(&ops.fx.device(dev.id)).await;
    let r = conn.get(&artifact, &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, image("fw-2.0.0.bin"));
}

async fn a_campaign_requiring_attestation_holds_unattested_devices_without_failing_them(
    backend: Backend,
    name: &str,
) {
    let ops = start(backend, name, config(|_| {})).await;
    let mut attested = Device::new("dev-tpm-13a", 14);
    let unattested = Device::new("dev-tpm-13b", 15);
    attested.attest(&ops).await;
    unattested.poll(&ops).await;
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/campaigns",
            Some(&json!({"spec": {
                "name": "attested only",
                "release": "fw-2.0.0.bin",
                "targets": {"devices": [attested.id, unattested.id]},
                "phases": {"canary": {"percent": 100}},
                "require_attestation": true,
            }, "start": true})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let assignment = |answer: Value| answer["assignment"]["id"].as_str().map(str::to_owned);
    assert_eq!(assignment(attested.poll(&ops).await), Some(id.clone()));
    assert_eq!(assignment(unattested.poll(&ops).await), None);
    let c = ops
        .call(&ops.viewer, "GET", &format!("/api/v1/campaigns/{id}"), None)
        .await
        .json();
    assert_eq!(c["figures"]["total"]["outcomes"]["held"], 1, "{c:#}");
    assert_eq!(
        c["figures"]["total"]["outcomes"]["failed"]
            .as_u64()
            .unwrap_or(0),
        0,
        "{c:#}"
    );
}

async fn the_staleness_engine_audits_a_pass_going_stale_once(backend: Backend, name: &str) {
    let ops = start(
        backend,
        name,
        config(|c| {
            c.freshness = Duration::from_secs(1);
            c.sweep_interval = Duration::from_millis(100);
        }),
    )
    .await;
    let mut dev = Device::new("dev-tpm-14", 16);
    dev.attest(&ops).await;
    wait_until(
        "the pass going stale is raised as a security event",
        || async {
            security_events(&ops, dev.id)
                .await
                .iter()
                .any(|e| e["kind"] == "attestation.stale")
        },
    )
    .await;
    wait_until("the sweeps after it", || async {
        ops.server
            .metric("rampart_attestation_devices{state=\"stale\"}")
            .await
            == 1
    })
    .await;
    let stale_events = security_events(&ops, dev.id)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "attestation.stale")
        .count();
    assert_eq!(stale_events, 1, "noted once, not at every sweep");
    assert_eq!(
        ops.server.metric("rampart_attestation_stale_total").await,
        1
    );
    let records = ops.audit_records().await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r.action == "device.attestation_stale" && r.subject == dev.id)
            .count(),
        1
    );
    assert_eq!(dev.view(&ops).await["outcome"], "stale");
}

async fn one_tpm_attests_for_one_device_and_a_device_keeps_its_tpm(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let mut first = Device::new("dev-tpm-15a", 17);
    first.attest(&ops).await;
    // The same TPM (same seed: same EK) behind a second device certificate.
    let mut second = Device::new("dev-tpm-15b", 17);
    second.poll(&ops).await;
    let r = second.enrol(&ops).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("already attests for device \"dev-tpm-15a\"")
    );
    // Another approved TPM behind the first device's certificate.
    let mut other_tpm = Device::new("dev-tpm-15a", 18);
    other_tpm.approve_ek(&ops).await;
    let r = other_tpm.enrol(&ops).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("this device enrolled with the TPM")
    );
    // The first device still holds its attestation.
    assert_eq!(first.view(&ops).await["outcome"], "attested");
}

async fn a_device_flooding_the_attestation_routes_is_slowed_down(backend: Backend, name: &str) {
    let ops = start(backend, name, config(|_| {})).await;
    let mut dev = Device::new("dev-tpm-16", 19);
    dev.poll(&ops).await;
    // Refused enrolments (no approved EK), each recorded, as fast as the device can send them.
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(dev.enrol(&ops).await.status);
    }
    let refused = statuses.iter().filter(|s| **s == 403).count();
    let slowed = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused + slowed, 30, "{statuses:?}");
    assert!(slowed >= 5, "{statuses:?}");
    assert!(security_events(&ops, dev.id).await.len() <= 25);
}

/// A TPM's RSA EK (TPMT_PUBLIC) and its EK certificate (DER) from swtpm, and its maker's CA
/// certificates (root and issuer) as an operator's EK roots.
fn swtpm_ek(tpm: &rampart_testkit::swtpm::SwTpm) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    tpm.tpm2_ok(
        dir.path(),
        "tpm2_createek",
        &["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"],
    );
    tpm.tpm2_ok(dir.path(), "tpm2_flushcontext", &["-t"]);
    // tpm2-tools writes a TPM2B_PUBLIC: its size, then the TPMT_PUBLIC.
    let public = std::fs::read(dir.path().join("ek.pub")).unwrap()[2..].to_vec();
    let certificate = std::fs::read(tpm.ek_certificate_file("ek-rsa2048.crt")).unwrap();
    let mut roots = Vec::new();
    for pem in [tpm.ek_root(), tpm.ek_issuer()] {
        roots.extend(
            rampart_attest::ekcert::certificates_from_pem(&std::fs::read(pem).unwrap()).unwrap(),
        );
    }
    (public, certificate, roots)
}

async fn an_ek_certificate_chaining_to_the_ek_roots_needs_no_approval(
    backend: Backend,
    name: &str,
) {
    let maker = rampart_testkit::swtpm::SwTpm::start();
    let other_maker = rampart_testkit::swtpm::SwTpm::start();
    let (ek_public, certificate, roots) = swtpm_ek(&maker);
    let (_, _, other_roots) = swtpm_ek(&other_maker);
    let ops = start(backend, name, config(|c| c.ek_roots = other_roots)).await;
    // The AK's attributes are what step 1 checks of it; the software TPM's will do.
    let mut dev = Device::new("dev-tpm-17", 20);
    dev.poll(&ops).await;
    let ak = dev.tpm.attestation_key().unwrap();
    let enrol = json!({"ek_public": b64(&ek_public), "ek_certificate": b64(&certificate), "ak_public": b64(&ak)});
    // Another maker's roots do not vouch for this TPM.
    let r = dev.post(&ops, "/device/v1/attestation/enrol", &enrol).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("its EK certificate is refused"),
        "{r:?}"
    );
    ops.server.stop().await;

    let ops = start(backend, "ekroots2", config(|c| c.ek_roots = roots)).await;
    dev.poll(&ops).await;
    let r = dev.post(&ops, "/device/v1/attestation/enrol", &enrol).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["credential_blob"].is_string());
    // A certificate for another EK does not vouch for this one.
    let (other_public, _, _) = swtpm_ek(&other_maker);
    let r = dev
        .post(
            &ops,
            "/device/v1/attestation/enrol",
            &json!({"ek_public": b64(&other_public), "ek_certificate": b64(&certificate), "ak_public": b64(&ak)}),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
}

/// A device whose firmware measured into PCR 0 sends the firmware's log beside its own: the
/// server replays both to the quoted PCRs 0 and 13. A firmware log that does not explain PCR 0
/// fails, naming the PCR; without the firmware log PCR 0 is unexplained and fails too.
async fn a_firmware_event_log_is_replayed_with_the_agents_to_the_quoted_firmware_pcr(
    backend: Backend,
    name: &str,
) {
    const EV_POST_CODE: u32 = 0x1;
    let ops = start(
        backend,
        name,
        config(|c| c.required_pcrs = vec![0, AGENT_PCR]),
    )
    .await;
    let mut dev = Device::new("dev-tpm-fw", 40);
    dev.poll(&ops).await;
    dev.approve_ek(&ops).await;
    dev.enrol_and_activate(&ops).await;
    let firmware_digest = sha256(b"the firmware's first stage");
    dev.tpm.extend(0, &firmware_digest).unwrap();
    let mut firmware = rampart_attest::eventlog::EventLog::new_sha256();
    firmware.push_sha256(0, EV_POST_CODE, firmware_digest, b"first stage".to_vec());
    let log = dev.boot(RUNNING);

    // No firmware log: nothing explains PCR 0.
    let nonce = dev.nonce(&ops).await;
    let submission = dev.quote(&nonce, &[0, AGENT_PCR], &log);
    let answer = dev.submit(&ops, &submission).await;
    assert_failed(&ops, &dev, &answer, "PCR 0").await;

    // A firmware log that claims another first stage than the TPM measured.
    let mut forged = rampart_attest::eventlog::EventLog::new_sha256();
    forged.push_sha256(
        0,
        EV_POST_CODE,
        sha256(b"another first stage"),
        b"first stage".to_vec(),
    );
    let nonce = dev.nonce(&ops).await;
    let mut submission = dev.quote(&nonce, &[0, AGENT_PCR], &log);
    submission["firmware_event_log"] = json!(b64(&forged.encode()));
    let answer = dev.submit(&ops, &submission).await;
    assert_failed(&ops, &dev, &answer, "PCR 0").await;

    // The firmware's own log with the agent's: both replay to the quote.
    let nonce = dev.nonce(&ops).await;
    let mut submission = dev.quote(&nonce, &[0, AGENT_PCR], &log);
    submission["firmware_event_log"] = json!(b64(&firmware.encode()));
    let answer = dev.submit(&ops, &submission).await;
    assert_eq!(answer["outcome"], "attested", "{answer}");
}

async fn a_device_that_rebooted_is_asked_for_a_quote_at_once(backend: Backend, name: &str) {
    // An hour of freshness: only the reboot can make the server ask again within the test.
    let ops = start(
        backend,
        name,
        config(|c| c.freshness = Duration::from_secs(3600)),
    )
    .await;
    let mut dev = Device::new("dev-boot-1", 9);
    dev.poll_in_boot(&ops, "boot-1").await;
    dev.approve_ek(&ops).await;
    dev.enrol_and_activate(&ops).await;
    let log = dev.boot(RUNNING);
    let asked = dev.poll_in_boot(&ops, "boot-1").await;
    let nonce = asked["attestation"]["nonce"].as_str().unwrap().to_owned();
    let submission = dev.quote(&nonce, &[AGENT_PCR], &log);
    let answer = dev.submit(&ops, &submission).await;
    assert_eq!(answer["outcome"], "attested", "{answer}");
    // Fresh and in the boot it quoted from: no quote asked.
    let same = dev.poll_in_boot(&ops, "boot-1").await;
    assert_eq!(same["attestation"], Value::Null, "{same}");
    // A poll that does not say its boot is judged by freshness alone.
    assert_eq!(dev.poll(&ops).await["attestation"], Value::Null);
    // Rebooted (perhaps into an image changed behind the agent's back): asked at once.
    let rebooted = dev.poll_in_boot(&ops, "boot-2").await;
    assert!(
        rebooted["attestation"]["nonce"].is_string(),
        "a reboot must be measured at once: {rebooted}"
    );
    assert_eq!(dev.view(&ops).await["outcome"], "attested");
}
