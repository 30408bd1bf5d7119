//! Risk posture (issue 17): which devices run releases that published advisories apply to,
//! counted by severity per device, release, hardware id, region or tag, with the worst
//! advisory and a score. Pure: the server reads the inventory, the releases' components and
//! the stored advisories, matches them (`matching`) and passes the results here.
//!
//! The score is Dependency-Track's project risk score (decision 0043):
//! `10*critical + 5*high + 3*medium + 1*low + 5*unassigned`, over the DISTINCT advisories that
//! apply to a group's devices (an advisory affecting a thousand devices of a region counts once
//! for the region; how many devices it reaches is `affected_devices`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::osv::Advisory;
use crate::severity::{Rating, score_vector};

/// What a posture row groups devices by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Device,
    Release,
    Hardware,
    Region,
    Tag,
}

impl GroupBy {
    pub const ALL: [GroupBy; 5] = [
        GroupBy::Device,
        GroupBy::Release,
        GroupBy::Hardware,
        GroupBy::Region,
        GroupBy::Tag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Device => "device",
            GroupBy::Release => "release",
            GroupBy::Hardware => "hardware",
            GroupBy::Region => "region",
            GroupBy::Tag => "tag",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// An advisory's severity as posture counts it: the highest CVSS v3.x/v4 score among its
/// parseable vectors, or unassigned when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdvisorySeverity {
    /// `None` when the advisory carries no CVSS vector this crate can score.
    pub rating: Option<Rating>,
    pub score: Option<f64>,
}

impl AdvisorySeverity {
    pub const UNASSIGNED: AdvisorySeverity = AdvisorySeverity {
        rating: None,
        score: None,
    };

    /// The highest score of the advisory's CVSS vectors. A vector that does not parse is
    /// ignored here (the advisory stays counted, as unassigned if nothing else scores), so one
    /// malformed vector never hides an advisory.
    pub fn of(advisory: &Advisory) -> AdvisorySeverity {
        advisory
            .severity
            .iter()
            .filter_map(|s| score_vector(&s.score).ok())
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .map(|s| AdvisorySeverity {
                rating: Some(s.rating),
                score: Some(s.score),
            })
            .unwrap_or(AdvisorySeverity::UNASSIGNED)
    }

    /// Orders advisories from least to most severe: unassigned sits between medium and high,
    /// where Dependency-Track's weight (5, like high) puts it, below any scored high.
    pub fn rank(self) -> (u8, f64) {
        match (self.rating, self.score) {
            (Some(Rating::Critical), Some(s)) => (5, s),
            (Some(Rating::High), Some(s)) => (4, s),
            (None, _) => (3, 0.0),
            (Some(Rating::Medium), Some(s)) => (2, s),
            (Some(Rating::Low), Some(s)) => (1, s),
            (Some(_), s) => (0, s.unwrap_or(0.0)),
        }
    }
}

/// Distinct advisories counted by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    /// Scored 0.0 (CVSS "none"): counted, weighted 0.
    pub none: u64,
    /// No CVSS vector that scores.
    pub unassigned: u64,
}

impl SeverityCounts {
    fn add(&mut self, severity: AdvisorySeverity) {
        match severity.rating {
            Some(Rating::Critical) => self.critical += 1,
            Some(Rating::High) => self.high += 1,
            Some(Rating::Medium) => self.medium += 1,
            Some(Rating::Low) => self.low += 1,
            Some(Rating::None) => self.none += 1,
            None => self.unassigned += 1,
        }
    }

    /// Dependency-Track's risk score: 10*critical + 5*high + 3*medium + 1*low + 5*unassigned.
    pub fn score(&self) -> u64 {
        10 * self.critical + 5 * self.high + 3 * self.medium + self.low + 5 * self.unassigned
    }

    pub fn total(&self) -> u64 {
        self.critical + self.high + self.medium + self.low + self.none + self.unassigned
    }
}

/// What a device runs, as the inventory says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRun {
    pub device_id: String,
    /// The release target its reported firmware version is, `None` when no release of the
    /// repository has that version (its exposure is unknown, and said so).
    pub release: Option<String>,
    pub hardware_id: String,
    pub region: String,
    pub tags: Vec<String>,
    /// The release targets its inactive slots hold (what a rollback boots), resolved like
    /// `release`; empty when the device does not say, or holds no known release there
    /// (decision 0049; see `fallback`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_releases: Vec<String>,
}

/// The advisories that apply to one release's components (advisory ids, from matching).
pub type ReleaseExposure = BTreeMap<String, BTreeSet<String>>;

/// The worst advisory of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorstAdvisory {
    pub id: String,
    #[serde(flatten)]
    pub severity: AdvisorySeverity,
}

/// One group's posture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostureRow {
    /// The device id, release target, hardware id, region or tag ("" for devices with no
    /// region, or no tag).
    pub key: String,
    pub devices: u64,
    /// Devices running a release that at least one advisory applies to.
    pub affected_devices: u64,
    /// Devices whose firmware version is no release of the repository: not assessed.
    pub unknown_release_devices: u64,
    pub counts: SeverityCounts,
    pub score: u64,
    pub worst: Option<WorstAdvisory>,
    /// Devices whose inactive slot holds a release an advisory applies to: a rollback would
    /// bring it back (filled by `fallback::annotate`; not in `counts` or `score`).
    #[serde(default)]
    pub fallback_affected: u64,
    /// In rows by device: the advisories that apply to the releases its inactive slots hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_advisories: Vec<String>,
}

#[derive(Default)]
struct Group<'a> {
    devices: u64,
    affected: u64,
    unknown: u64,
    /// The exposed releases its devices run: their advisories are joined once per release,
    /// not once per device (100,000 devices share 20 releases).
    releases: BTreeSet<&'a str>,
}

/// The posture of `devices` grouped `by`, most at risk first (score, then affected devices,
/// then key). `exposure` maps release targets to the advisory ids that apply; `severities`
/// gives each advisory's severity (an id missing there counts as unassigned).
pub fn posture(
    by: GroupBy,
    devices: &[DeviceRun],
    exposure: &ReleaseExposure,
    severities: &BTreeMap<String, AdvisorySeverity>,
) -> Vec<PostureRow> {
    let empty = BTreeSet::new();
    let mut groups: BTreeMap<&str, Group<'_>> = BTreeMap::new();
    for device in devices {
        let advisories = device
            .release
            .as_ref()
            .and_then(|r| exposure.get(r))
            .unwrap_or(&empty);
        let keys: Vec<&str> = match by {
            GroupBy::Device => vec![&device.device_id],
            GroupBy::Release => vec![device.release.as_deref().unwrap_or("")],
            GroupBy::Hardware => vec![&device.hardware_id],
            GroupBy::Region => vec![&device.region],
            // A device counts under each of its tags; untagged devices under "".
            GroupBy::Tag if device.tags.is_empty() => vec![""],
            GroupBy::Tag => {
                let distinct: BTreeSet<&str> = device.tags.iter().map(String::as_str).collect();
                distinct.into_iter().collect()
            }
        };
        for key in keys {
            let group = groups.entry(key).or_default();
            group.devices += 1;
            if device.release.is_none() {
                group.unknown += 1;
            }
            if !advisories.is_empty() {
                group.affected += 1;
                if let Some(release) = device.release.as_deref() {
                    group.releases.insert(release);
                }
            }
        }
    }
    let mut rows: Vec<PostureRow> = groups
        .into_iter()
        .map(|(key, group)| {
            let mut counts = SeverityCounts::default();
            let mut worst: Option<WorstAdvisory> = None;
            let advisories: BTreeSet<&String> = group
                .releases
                .iter()
                .filter_map(|r| exposure.get(*r))
                .flatten()
                .collect();
            for id in advisories {
                let severity = severities
                    .get(id)
                    .copied()
                    .unwrap_or(AdvisorySeverity::UNASSIGNED);
                counts.add(severity);
                // Ties keep the first id in order, so the answer is stable.
                if worst
                    .as_ref()
                    .is_none_or(|w| severity.rank() > w.severity.rank())
                {
                    worst = Some(WorstAdvisory {
                        id: id.clone(),
                        severity,
                    });
                }
            }
            PostureRow {
                key: key.to_owned(),
                devices: group.devices,
                affected_devices: group.affected,
                unknown_release_devices: group.unknown,
                score: counts.score(),
                counts,
                worst,
                fallback_affected: 0,
                fallback_advisories: Vec::new(),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then(b.affected_devices.cmp(&a.affected_devices))
            .then(a.key.cmp(&b.key))
    });
    rows
}

/// The devices an advisory applies to (running a release it matched), in id order.
pub fn affected_devices<'a>(
    advisory_id: &str,
    devices: &'a [DeviceRun],
    exposure: &ReleaseExposure,
) -> Vec<&'a DeviceRun> {
    let mut affected: Vec<&DeviceRun> = devices
        .iter()
        .filter(|d| {
            d.release
                .as_ref()
                .and_then(|r| exposure.get(r))
                .is_some_and(|ids| ids.contains(advisory_id))
        })
        .collect();
    affected.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    affected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::parse_advisory;

    fn run(id: &str, release: Option<&str>, hw: &str, region: &str, tags: &[&str]) -> DeviceRun {
        DeviceRun {
            device_id: id.into(),
            release: release.map(str::to_owned),
            hardware_id: hw.into(),
            region: region.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            fallback_releases: Vec::new(),
        }
    }

    fn rated(rating: Rating, score: f64) -> AdvisorySeverity {
        AdvisorySeverity {
            rating: Some(rating),
            score: Some(score),
        }
    }

    fn fixture() -> (
        Vec<DeviceRun>,
        ReleaseExposure,
        BTreeMap<String, AdvisorySeverity>,
    ) {
        let devices = vec![
            run("d1", Some("fw-1.bin"), "board-a", "eu", &["lab", "pilot"]),
            run("d2", Some("fw-1.bin"), "board-b", "us", &["pilot"]),
            run("d3", Some("fw-2.bin"), "board-a", "eu", &[]),
            run("d4", None, "board-b", "us", &[]),
        ];
        let mut exposure = ReleaseExposure::new();
        exposure.insert(
            "fw-1.bin".into(),
            ["CRIT-1", "HIGH-1", "NOVEC-1", "MED-1", "LOW-1"]
                .map(String::from)
                .into(),
        );
        exposure.insert("fw-2.bin".into(), BTreeSet::new());
        let severities = BTreeMap::from([
            ("CRIT-1".to_owned(), rated(Rating::Critical, 9.8)),
            ("HIGH-1".to_owned(), rated(Rating::High, 7.5)),
            ("MED-1".to_owned(), rated(Rating::Medium, 5.0)),
            ("LOW-1".to_owned(), rated(Rating::Low, 2.0)),
        ]);
        (devices, exposure, severities)
    }

    #[test]
    fn the_score_is_dependency_tracks_weighting() {
        let counts = SeverityCounts {
            critical: 1,
            high: 2,
            medium: 3,
            low: 4,
            none: 7,
            unassigned: 5,
        };
        assert_eq!(counts.score(), 10 + 2 * 5 + 3 * 3 + 4 + 5 * 5);
        assert_eq!(counts.total(), 22);
    }

    #[test]
    fn regions_count_distinct_advisories_and_affected_devices() {
        let (devices, exposure, severities) = fixture();
        let rows = posture(GroupBy::Region, &devices, &exposure, &severities);
        let us = rows.iter().find(|r| r.key == "us").unwrap();
        assert_eq!(
            (us.devices, us.affected_devices, us.unknown_release_devices),
            (2, 1, 1)
        );
        assert_eq!(
            us.counts,
            SeverityCounts {
                critical: 1,
                high: 1,
                medium: 1,
                low: 1,
                none: 0,
                unassigned: 1,
            }
        );
        assert_eq!(us.score, 10 + 5 + 3 + 1 + 5);
        assert_eq!(us.worst.as_ref().unwrap().id, "CRIT-1");
        // eu: d1 (fw-1) and d3 (clean fw-2): the same distinct advisories, counted once.
        let eu = rows.iter().find(|r| r.key == "eu").unwrap();
        assert_eq!((eu.devices, eu.affected_devices), (2, 1));
        assert_eq!(eu.score, us.score);
    }

    #[test]
    fn a_clean_release_scores_zero_and_sorts_last() {
        let (devices, exposure, severities) = fixture();
        let rows = posture(GroupBy::Release, &devices, &exposure, &severities);
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys[0], "fw-1.bin");
        let clean = rows.iter().find(|r| r.key == "fw-2.bin").unwrap();
        assert_eq!((clean.score, clean.affected_devices), (0, 0));
        assert!(clean.worst.is_none());
        let unknown = rows.iter().find(|r| r.key.is_empty()).unwrap();
        assert_eq!(unknown.unknown_release_devices, 1);
    }

    #[test]
    fn a_device_counts_under_each_of_its_tags_once() {
        let (mut devices, exposure, severities) = fixture();
        devices[0].tags.push("lab".into());
        let rows = posture(GroupBy::Tag, &devices, &exposure, &severities);
        let count = |k: &str| rows.iter().find(|r| r.key == k).unwrap().devices;
        assert_eq!(count("lab"), 1);
        assert_eq!(count("pilot"), 2);
        assert_eq!(count(""), 2);
    }

    #[test]
    fn the_worst_advisory_ranks_unassigned_below_a_scored_high() {
        let (devices, mut exposure, severities) = fixture();
        exposure.insert(
            "fw-1.bin".into(),
            ["HIGH-1", "NOVEC-1", "MED-1"].map(String::from).into(),
        );
        let rows = posture(GroupBy::Device, &devices, &exposure, &severities);
        assert_eq!(rows[0].worst.as_ref().unwrap().id, "HIGH-1");
        exposure.insert(
            "fw-1.bin".into(),
            ["NOVEC-1", "MED-1"].map(String::from).into(),
        );
        let rows = posture(GroupBy::Device, &devices, &exposure, &severities);
        assert_eq!(rows[0].worst.as_ref().unwrap().id, "NOVEC-1");
    }

    #[test]
    fn affected_devices_are_those_running_a_matched_release() {
        let (devices, exposure, _) = fixture();
        let ids: Vec<&str> = affected_devices("MED-1", &devices, &exposure)
            .into_iter()
            .map(|d| d.device_id.as_str())
            .collect();
        assert_eq!(ids, ["d1", "d2"]);
        assert!(affected_devices("OTHER", &devices, &exposure).is_empty());
    }

    #[test]
    fn an_advisory_is_rated_by_its_highest_scoring_vector_and_a_bad_vector_is_ignored() {
        let advisory = parse_advisory(
            br#"{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
                 "severity": [
                   {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"},
                   {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
                   {"type": "CVSS_V3", "score": "CVSS:3.1/garbage"}]}"#,
        )
        .unwrap();
        let severity = AdvisorySeverity::of(&advisory);
        assert_eq!(severity.rating, Some(Rating::Critical));
        assert_eq!(severity.score, Some(9.8));
        let unscored =
            parse_advisory(br#"{"id": "X-2", "modified": "2024-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(
            AdvisorySeverity::of(&unscored),
            AdvisorySeverity::UNASSIGNED
        );
    }

    #[test]
    fn group_names_round_trip() {
        for by in GroupBy::ALL {
            assert_eq!(GroupBy::parse(by.as_str()), Some(by));
        }
        assert_eq!(GroupBy::parse("planet"), None);
    }
}
