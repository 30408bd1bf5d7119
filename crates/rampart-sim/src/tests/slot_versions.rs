//! What each slot holds, as a poll tells the server (decision 0049): the agent's own
//! `daemon::facts`, run by the simulated devices, reports each slot's version from its state.

use super::*;

fn slot_facts(b: &Bench, device: &str) -> (Value, Value) {
    let facts = b.fake.state().facts[device].clone();
    (facts["slots"].clone(), facts["slot_versions"].clone())
}

#[test]
fn facts_report_each_slots_version_after_an_update_and_after_a_rollback() {
    let mut b = fleet(4, |s| {
        s.models = "board-a=50,board-b=50".parse().unwrap();
        s.faults.health.push("3.0.0:board-a=1".parse().unwrap());
    });
    b.run_for(20);
    b.assert_all_settled();
    // First boot: the agent recorded the running slot's content only; the other slot was never
    // written by it, so its version is not said (never guessed).
    let (slots, versions) = slot_facts(&b, "sim-00000");
    assert_eq!(slots, serde_json::json!({"a": "active", "b": "good"}));
    assert_eq!(versions, serde_json::json!({"a": "1.0.0"}));

    // An update: A keeps the old release (what a rollback boots), B holds the new one.
    b.fake.assign("asg-2", V2, UpdateKind::Forced);
    b.run_for(60);
    b.assert_all_settled();
    for s in b.statuses() {
        let (slots, versions) = slot_facts(&b, &s.id);
        assert_eq!(
            slots,
            serde_json::json!({"a": "good", "b": "active"}),
            "{s:?}"
        );
        assert_eq!(
            versions,
            serde_json::json!({"a": "1.0.0", "b": "2.0.0"}),
            "{s:?}"
        );
    }

    // 3.0.0 fails its health check on board-a: the device rolls back to B (2.0.0). A, which
    // 3.0.0 was written to, is marked bad and its content is no longer recorded by the agent
    // (it is not a release the device will boot), so only B's version is said.
    b.fake.assign("asg-3", V3, UpdateKind::Forced);
    b.run_for(90);
    b.assert_all_settled();
    let statuses = b.statuses();
    let (rolled, updated): (Vec<_>, Vec<_>) =
        statuses.iter().partition(|s| s.hardware_id == "board-a");
    assert!(!rolled.is_empty() && !updated.is_empty());
    for s in rolled {
        assert_eq!(s.version, "2.0.0", "{s:?}");
        let (slots, versions) = slot_facts(&b, &s.id);
        assert_eq!(
            slots,
            serde_json::json!({"a": "bad", "b": "active"}),
            "{s:?}"
        );
        assert_eq!(versions, serde_json::json!({"b": "2.0.0"}), "{s:?}");
    }
    for s in updated {
        let (slots, versions) = slot_facts(&b, &s.id);
        assert_eq!(
            slots,
            serde_json::json!({"a": "active", "b": "good"}),
            "{s:?}"
        );
        assert_eq!(
            versions,
            serde_json::json!({"a": "3.0.0", "b": "2.0.0"}),
            "{s:?}"
        );
    }
}
