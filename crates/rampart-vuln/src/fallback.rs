//! Fallback exposure (issue 17, decision 0049): what each device's INACTIVE slot holds. An
//! A/B device keeps the release it ran before in its other slot, and a rollback (automatic, on
//! a failed health check, or the operator's) boots it again: a device running a fixed release
//! whose fallback slot holds a vulnerable one is one rollback away from exposure.
//!
//! `posture` counts only what devices run, and those counts stay as they are; this module
//! adds, per posture row, `fallback_affected` (devices whose inactive slot holds a release an
//! advisory applies to) and, in rows by device, that slot's advisories; and, per advisory,
//! which slot of each device holds the affected release.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::posture::{DeviceRun, GroupBy, PostureRow, ReleaseExposure};

/// Which slot of a device holds a release an advisory applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotHolding {
    /// The running slot (the device is affected now).
    Running,
    /// Only the inactive slot: a rollback would bring the advisory back.
    Inactive,
    /// Both: affected now, and a rollback would not help.
    Both,
}

impl SlotHolding {
    pub fn as_str(self) -> &'static str {
        match self {
            SlotHolding::Running => "running",
            SlotHolding::Inactive => "inactive",
            SlotHolding::Both => "both",
        }
    }
}

/// The distinct advisories that apply to the releases `device`'s inactive slots hold.
pub fn fallback_advisories<'a>(
    device: &DeviceRun,
    exposure: &'a ReleaseExposure,
) -> BTreeSet<&'a String> {
    device
        .fallback_releases
        .iter()
        .filter_map(|r| exposure.get(r))
        .flatten()
        .collect()
}

/// The keys a device counts under, as `posture` groups them.
fn group_keys(by: GroupBy, device: &DeviceRun) -> Vec<&str> {
    match by {
        GroupBy::Device => vec![&device.device_id],
        GroupBy::Release => vec![device.release.as_deref().unwrap_or("")],
        GroupBy::Hardware => vec![&device.hardware_id],
        GroupBy::Region => vec![&device.region],
        GroupBy::Tag if device.tags.is_empty() => vec![""],
        GroupBy::Tag => {
            let distinct: BTreeSet<&str> = device.tags.iter().map(String::as_str).collect();
            distinct.into_iter().collect()
        }
    }
}

/// Fills `fallback_affected` in `rows` (the output of `posture::posture` over the same
/// `devices` grouped `by`), and in rows by device `fallback_advisories`. The running counts,
/// score and order are left as they are.
pub fn annotate(
    by: GroupBy,
    rows: &mut [PostureRow],
    devices: &[DeviceRun],
    exposure: &ReleaseExposure,
) {
    let mut per_key: BTreeMap<&str, (u64, BTreeSet<&String>)> = BTreeMap::new();
    for device in devices {
        let advisories = fallback_advisories(device, exposure);
        if advisories.is_empty() {
            continue;
        }
        for key in group_keys(by, device) {
            let entry = per_key.entry(key).or_default();
            entry.0 += 1;
            if by == GroupBy::Device {
                entry.1.extend(advisories.iter().copied());
            }
        }
    }
    let position: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key.as_str(), i))
        .collect();
    let mut filled: Vec<(usize, u64, Vec<String>)> = Vec::new();
    for (key, (count, advisories)) in per_key {
        if let Some(&i) = position.get(key) {
            filled.push((i, count, advisories.into_iter().cloned().collect()));
        }
    }
    for (i, count, advisories) in filled {
        rows[i].fallback_affected = count;
        rows[i].fallback_advisories = advisories;
    }
}

/// Every device a release matched by `advisory_id` is on, running or in an inactive slot, with
/// which slot holds it, in device id order.
pub fn devices_by_slot<'a>(
    advisory_id: &str,
    devices: &'a [DeviceRun],
    exposure: &ReleaseExposure,
) -> Vec<(&'a DeviceRun, SlotHolding)> {
    let holds = |release: &String| {
        exposure
            .get(release)
            .is_some_and(|ids| ids.contains(advisory_id))
    };
    let mut out: Vec<(&DeviceRun, SlotHolding)> = devices
        .iter()
        .filter_map(|d| {
            let running = d.release.as_ref().is_some_and(holds);
            let inactive = d.fallback_releases.iter().any(holds);
            let holding = match (running, inactive) {
                (true, true) => SlotHolding::Both,
                (true, false) => SlotHolding::Running,
                (false, true) => SlotHolding::Inactive,
                (false, false) => return None,
            };
            Some((d, holding))
        })
        .collect();
    out.sort_by(|a, b| a.0.device_id.cmp(&b.0.device_id));
    out
}

/// The devices whose inactive slot holds a release `advisory_id` applies to while the running
/// one does not: a remediation campaign (which targets running releases) leaves their fallback
/// as it is; a re-image writes both slots.
pub fn fallback_only_devices<'a>(
    advisory_id: &str,
    devices: &'a [DeviceRun],
    exposure: &ReleaseExposure,
) -> Vec<&'a DeviceRun> {
    devices_by_slot(advisory_id, devices, exposure)
        .into_iter()
        .filter(|(_, holding)| *holding == SlotHolding::Inactive)
        .map(|(d, _)| d)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posture::{AdvisorySeverity, posture};

    fn run(id: &str, running: &str, fallback: &[&str], region: &str, tags: &[&str]) -> DeviceRun {
        DeviceRun {
            device_id: id.into(),
            release: Some(running.into()),
            hardware_id: "board-a".into(),
            region: region.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            fallback_releases: fallback.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn fixture() -> (Vec<DeviceRun>, ReleaseExposure) {
        let devices = vec![
            // Runs the fixed release, the vulnerable one in its other slot.
            run("d1", "fixed.bin", &["vuln.bin"], "eu", &["lab"]),
            // Runs the vulnerable release, the fixed one in its other slot.
            run("d2", "vuln.bin", &["fixed.bin"], "eu", &[]),
            // Both slots vulnerable (after a re-image of the vulnerable release).
            run("d3", "vuln.bin", &["vuln.bin"], "us", &["lab", "lab"]),
            // Fixed, and says nothing of its other slot (a hawkBit client).
            run("d4", "fixed.bin", &[], "us", &[]),
        ];
        let mut exposure = ReleaseExposure::new();
        exposure.insert("vuln.bin".into(), ["ADV-1".to_owned()].into());
        exposure.insert("fixed.bin".into(), BTreeSet::new());
        (devices, exposure)
    }

    fn rows(by: GroupBy) -> Vec<PostureRow> {
        let (devices, exposure) = fixture();
        let severities: BTreeMap<String, AdvisorySeverity> = BTreeMap::new();
        let mut rows = posture(by, &devices, &exposure, &severities);
        annotate(by, &mut rows, &devices, &exposure);
        rows
    }

    fn row(rows: &[PostureRow], key: &str) -> PostureRow {
        rows.iter().find(|r| r.key == key).unwrap().clone()
    }

    #[test]
    fn a_vulnerable_fallback_counts_in_fallback_affected_not_in_affected() {
        let by_device = rows(GroupBy::Device);
        let d1 = row(&by_device, "d1");
        assert_eq!((d1.affected_devices, d1.fallback_affected), (0, 1));
        assert_eq!(d1.score, 0, "the running counts stay as they are");
        assert_eq!(d1.fallback_advisories, ["ADV-1"]);
        let d2 = row(&by_device, "d2");
        assert_eq!((d2.affected_devices, d2.fallback_affected), (1, 0));
        assert!(d2.fallback_advisories.is_empty());
        let d3 = row(&by_device, "d3");
        assert_eq!((d3.affected_devices, d3.fallback_affected), (1, 1));
        let d4 = row(&by_device, "d4");
        assert_eq!((d4.affected_devices, d4.fallback_affected), (0, 0));

        let by_region = rows(GroupBy::Region);
        assert_eq!(row(&by_region, "eu").fallback_affected, 1);
        assert_eq!(row(&by_region, "us").fallback_affected, 1);
        // Grouped by the running release: d1 (fixed) and d3 (vulnerable) hold it in reserve.
        let by_release = rows(GroupBy::Release);
        assert_eq!(row(&by_release, "fixed.bin").fallback_affected, 1);
        assert_eq!(row(&by_release, "vuln.bin").fallback_affected, 1);
        let by_hardware = rows(GroupBy::Hardware);
        assert_eq!(row(&by_hardware, "board-a").fallback_affected, 2);
        // A device counts once under each distinct tag, as posture counts it.
        let by_tag = rows(GroupBy::Tag);
        assert_eq!(row(&by_tag, "lab").fallback_affected, 2);
        assert_eq!(row(&by_tag, "lab").devices, 2);
        assert_eq!(row(&by_tag, "").fallback_affected, 0);
        // Only rows by device list the advisories.
        assert!(by_region.iter().all(|r| r.fallback_advisories.is_empty()));
    }

    #[test]
    fn every_device_an_advisory_reaches_is_marked_with_its_slot() {
        let (devices, exposure) = fixture();
        let marked: Vec<(&str, SlotHolding)> = devices_by_slot("ADV-1", &devices, &exposure)
            .into_iter()
            .map(|(d, h)| (d.device_id.as_str(), h))
            .collect();
        assert_eq!(
            marked,
            [
                ("d1", SlotHolding::Inactive),
                ("d2", SlotHolding::Running),
                ("d3", SlotHolding::Both),
            ]
        );
        let only: Vec<&str> = fallback_only_devices("ADV-1", &devices, &exposure)
            .into_iter()
            .map(|d| d.device_id.as_str())
            .collect();
        assert_eq!(only, ["d1"]);
        assert!(devices_by_slot("OTHER", &devices, &exposure).is_empty());
    }

    #[test]
    fn devices_without_slot_versions_are_assessed_as_before() {
        let (mut devices, exposure) = fixture();
        for d in &mut devices {
            d.fallback_releases.clear();
        }
        let severities: BTreeMap<String, AdvisorySeverity> = BTreeMap::new();
        let before = posture(GroupBy::Device, &devices, &exposure, &severities);
        let mut after = before.clone();
        annotate(GroupBy::Device, &mut after, &devices, &exposure);
        assert_eq!(before, after);
    }
}
