//! Which versions a device's inactive slots hold (decision 0049), from its stored facts:
//! `slot_versions` (slot name -> version) and `slots` (slot name -> state). Risk resolves each
//! to a release like the running version and reports it as the device's fallback exposure.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The versions held by the slots a rollback could boot: every slot with a version except the
/// running one and those the bootloader marks `bad` (a bad slot is not booted again). The
/// running slot is the one the device marks `active`; a device that marks none (an integration
/// that reports other states) has its running slot recognised by the running version instead,
/// so a slot holding that same version is not counted twice. Not said (`None`): nothing.
pub fn inactive_slot_versions<'a>(
    slots: &Map<String, Value>,
    slot_versions: Option<&'a BTreeMap<String, String>>,
    running_version: &str,
) -> Vec<&'a str> {
    let Some(versions) = slot_versions else {
        return Vec::new();
    };
    let state = |name: &str| slots.get(name).and_then(Value::as_str);
    let marks_active = versions.keys().any(|name| state(name) == Some("active"));
    let mut out: Vec<&str> = versions
        .iter()
        .filter(|(name, version)| {
            let running = if marks_active {
                state(name) == Some("active")
            } else {
                version.as_str() == running_version
            };
            !running && state(name) != Some("bad")
        })
        .map(|(_, version)| version.as_str())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn versions(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(s, v)| ((*s).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn slots(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_inactive_slot_is_the_one_not_marked_active() {
        let held = versions(&[("a", "1.0.0"), ("b", "2.0.0")]);
        let s = slots(json!({"a": "good", "b": "active"}));
        assert_eq!(inactive_slot_versions(&s, Some(&held), "2.0.0"), ["1.0.0"]);
        // After a re-image both slots hold the same release: the fallback is that release too.
        let same = versions(&[("a", "2.0.0"), ("b", "2.0.0")]);
        assert_eq!(inactive_slot_versions(&s, Some(&same), "2.0.0"), ["2.0.0"]);
    }

    #[test]
    fn a_bad_slot_is_no_fallback_and_nothing_said_is_nothing() {
        let held = versions(&[("a", "3.0.0"), ("b", "2.0.0")]);
        let s = slots(json!({"a": "bad", "b": "active"}));
        assert!(inactive_slot_versions(&s, Some(&held), "2.0.0").is_empty());
        assert!(inactive_slot_versions(&s, None, "2.0.0").is_empty());
    }

    #[test]
    fn without_an_active_mark_the_running_version_names_the_running_slot() {
        let held = versions(&[("a", "1.0.0"), ("b", "2.0.0")]);
        let s = slots(json!({"a": "good", "b": "inactive"}));
        assert_eq!(inactive_slot_versions(&s, Some(&held), "1.0.0"), ["2.0.0"]);
    }
}
