//! A real TPM end to end: swtpm (started in a temp dir, EK certificates from its own CA), the
//! real `rampart-agent` built with its `tpm` feature, and the real `rampart server` requiring
//! attestation. The device's mutual-TLS key is made in the TPM (`rampart-agent tpm provision`
//! writes the CSR, the manufacturer CA certifies it); the agent enrols its attestation key
//! (EK certificate chain), is attested on the factory release, installs the assigned update,
//! and after the reboot (swtpm power cycle, new boot id) is attested on the new release. The
//! NV counter then refuses a downgrade after the state directory is wiped.

mod support;

use rampart_boot::ab::Slot;
use rampart_testkit::cli::{ok, run, s};
use serde_json::{Value, json};
use support::tpm_site::{DEVICE, TpmSite, V1, V2};

#[test]
fn the_agent_with_a_tpm_held_key_attests_installs_and_is_attested_on_the_new_release() {
    let mut site = TpmSite::start(
        &[
            "--require-attestation".into(),
            "--attestation-freshness".into(),
            "6".into(),
        ],
        "",
    );

    // ---- Enrolment (EK certificate chain, ActivateCredential) and a first quote, over mutual
    // TLS with the TPM-held key. ----
    let view = site.attested_on(V1);
    assert_eq!(view["enrolled"], true, "{view}");

    // ---- The update: installed (attested, so not withheld), reboot, committed. ----
    let (status, v) = site.api.call(
        "POST",
        "/api/v1/assignments",
        Some(json!({"target": V2, "type": "forced", "devices": [DEVICE]})),
    );
    assert_eq!(status, 201, "{v}");
    let (done, out) = site.dev.run_once();
    assert!(done && out.contains("rebooting"), "{out}");
    // A reboot: the TPM power-cycles (PCRs reset, NV kept), the bootloader boots B.
    assert_eq!(site.reboot(), Slot::B);
    let view = site.attested_on(V2);
    assert_eq!(view["outcome"], "attested", "{view}");
    let status = serde_json::from_str::<Value>(&ok(site.dev.agent(&["status"]))).unwrap();
    assert_eq!(status["security_version"], 2, "{status}");

    // ---- The state directory wiped: the TPM's NV counter still refuses 1.0.0. ----
    let state_dir = site.dev.dir.join("state");
    std::fs::remove_dir_all(&state_dir).unwrap();
    ok(site.dev.agent(&[
        "init",
        s(&site.repo.join("metadata/1.root.json")),
        "--director-root",
        s(&site.director.join("1.root.json")),
    ]));
    ok(site.dev.agent(&["reset-state"]));
    let status = serde_json::from_str::<Value>(&ok(site.dev.agent(&["status"]))).unwrap();
    assert_eq!(status["security_version"], 2, "{status}");
    let (installed, out) =
        run(site
            .dev
            .agent(&["install", "--from", s(&site.repo), V1, "--no-reboot"]));
    assert!(!installed, "{out}");
    assert!(out.contains("security_version_rollback"), "{out}");
    site.server.kill();
}
