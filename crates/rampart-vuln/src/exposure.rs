//! Each advisory's exposure window (issue 17, decision 0046): from the advisory's `published`
//! time to the moment the fleet stopped running anything it affects, and whether (and for which
//! version of the record) operators were alerted.
//!
//! The server's risk watch observes, pass after pass, how many devices each advisory affects;
//! [`observe`] turns the stored record and one observation into the next record and says
//! whether to alert. No I/O, no clock: `now` is the caller's.
//!
//! The rules:
//! * an advisory gets a record the first time it affects a device (`first_affected_at`);
//! * it is *remediated* when the count falls to 0 after being above 0 (`remediated_at`), and
//!   open again (`remediated_at` cleared) if devices run an affected release later;
//! * a withdrawn advisory stops counting: its count is 0, it is `withdrawn`, never remediated
//!   and never alerted;
//! * an alert goes out once per version of the record (`modified`): when the advisory first
//!   affects devices, and again only when a changed record now affects a release that no
//!   earlier alert named. The same record seen again (another pass, a restart, a re-import)
//!   never alerts twice.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Most release targets an exposure record remembers as alerted (a repository with more
/// releases than this affected by one advisory is alerted on the first ones' terms).
pub const MAX_ALERTED_RELEASES: usize = 1_000;

/// One advisory's exposure, as stored between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// The advisory's OSV `published` time (Unix seconds), when it states one that parses.
    pub published: Option<i64>,
    /// When a pass first saw it affect a device.
    pub first_affected_at: Option<i64>,
    /// Devices it affects now.
    pub affected_now: u64,
    /// The most devices it affected at once.
    pub peak_affected: u64,
    /// When the count fell to 0 after being above 0; cleared when it rises again.
    pub remediated_at: Option<i64>,
    /// When a pass first saw the advisory withdrawn (cleared if a later record un-withdraws it).
    pub withdrawn_at: Option<i64>,
    /// The `modified` of the record version last alerted (`None`: never alerted).
    pub alerted_modified: Option<String>,
    /// The release targets the alerts so far named (sorted, at most [`MAX_ALERTED_RELEASES`]).
    pub alerted_releases: Vec<String>,
}

/// Where an exposure stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExposureState {
    /// Devices run an affected release.
    Open,
    /// Devices ran an affected release; none does now.
    Remediated,
    /// The advisory was withdrawn: it no longer counts.
    Withdrawn,
}

impl ExposureState {
    pub const ALL: [ExposureState; 3] = [
        ExposureState::Open,
        ExposureState::Remediated,
        ExposureState::Withdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExposureState::Open => "open",
            ExposureState::Remediated => "remediated",
            ExposureState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<ExposureState> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl Exposure {
    pub fn state(&self) -> ExposureState {
        if self.withdrawn_at.is_some() {
            ExposureState::Withdrawn
        } else if self.remediated_at.is_some() {
            ExposureState::Remediated
        } else {
            ExposureState::Open
        }
    }

    /// Seconds from publication (or, for an advisory without a `published` time, from the
    /// first pass that saw it affect a device) to remediation; `None` while open or withdrawn.
    pub fn window_secs(&self) -> Option<i64> {
        if self.state() != ExposureState::Remediated {
            return None;
        }
        let start = self.published.or(self.first_affected_at)?;
        self.remediated_at
            .map(|end| end.saturating_sub(start).max(0))
    }
}

/// What one pass saw of an advisory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation<'a> {
    /// The stored record's `modified`.
    pub modified: &'a str,
    /// Its `published`, already parsed ([`parse_published`]).
    pub published: Option<i64>,
    pub withdrawn: bool,
    /// Devices running a release it affects.
    pub affected: u64,
    /// The release targets it affects devices on.
    pub releases: &'a BTreeSet<String>,
}

/// The next record, and whether to alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `None`: the advisory never affected a device and needs no record.
    pub next: Option<Exposure>,
    /// Queue the advisory alert for this version of the record.
    pub alert: bool,
}

/// Applies one observation at `now` to the stored record (`None`: none yet).
pub fn observe(previous: Option<&Exposure>, seen: &Observation<'_>, now: i64) -> Step {
    let Some(previous) = previous else {
        if seen.withdrawn || seen.affected == 0 {
            return Step {
                next: None,
                alert: false,
            };
        }
        let mut next = Exposure {
            published: seen.published,
            first_affected_at: Some(now),
            affected_now: seen.affected,
            peak_affected: seen.affected,
            ..Exposure::default()
        };
        mark_alerted(&mut next, seen);
        return Step {
            next: Some(next),
            alert: true,
        };
    };
    let mut next = previous.clone();
    next.published = seen.published;
    if seen.withdrawn {
        next.affected_now = 0;
        next.withdrawn_at = previous.withdrawn_at.or(Some(now));
        return Step {
            next: Some(next),
            alert: false,
        };
    }
    next.withdrawn_at = None;
    next.affected_now = seen.affected;
    next.peak_affected = previous.peak_affected.max(seen.affected);
    if seen.affected > 0 {
        next.first_affected_at = previous.first_affected_at.or(Some(now));
        next.remediated_at = None;
    } else if previous.affected_now > 0 || previous.withdrawn_at.is_some() {
        // Fell to 0 (or came back from a withdrawal affecting nothing): remediated now, unless
        // an earlier pass already said so.
        if next.first_affected_at.is_some() {
            next.remediated_at = previous.remediated_at.or(Some(now));
        }
    }
    let alert = seen.affected > 0
        && match &previous.alerted_modified {
            None => true,
            Some(alerted) => {
                alerted != seen.modified
                    && seen
                        .releases
                        .iter()
                        .any(|r| previous.alerted_releases.binary_search(r).is_err())
            }
        };
    if alert {
        mark_alerted(&mut next, seen);
    }
    Step {
        next: Some(next),
        alert,
    }
}

fn mark_alerted(next: &mut Exposure, seen: &Observation<'_>) {
    next.alerted_modified = Some(seen.modified.to_owned());
    let mut releases: BTreeSet<String> = next.alerted_releases.iter().cloned().collect();
    releases.extend(seen.releases.iter().cloned());
    next.alerted_releases = releases.into_iter().take(MAX_ALERTED_RELEASES).collect();
}

/// An OSV `published` time (RFC 3339) as Unix seconds; `None` when absent or unparseable (the
/// window then starts at the first pass that saw the advisory affect a device).
pub fn parse_published(published: Option<&str>) -> Option<i64> {
    OffsetDateTime::parse(published?, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn releases(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn seen<'a>(
        modified: &'a str,
        affected: u64,
        releases: &'a BTreeSet<String>,
    ) -> Observation<'a> {
        Observation {
            modified,
            published: Some(1_000),
            withdrawn: false,
            affected,
            releases,
        }
    }

    #[test]
    fn an_advisory_affecting_nothing_gets_no_record_and_no_alert() {
        let none = releases(&[]);
        let step = observe(None, &seen("m1", 0, &none), 5_000);
        assert_eq!(
            step,
            Step {
                next: None,
                alert: false
            }
        );
    }

    #[test]
    fn the_first_pass_that_sees_devices_alerts_and_the_next_does_not() {
        let r = releases(&["fw-vuln.bin"]);
        let first = observe(None, &seen("m1", 3, &r), 5_000);
        assert!(first.alert);
        let record = first.next.unwrap();
        assert_eq!(record.first_affected_at, Some(5_000));
        assert_eq!(record.alerted_modified.as_deref(), Some("m1"));
        assert_eq!(record.state(), ExposureState::Open);
        let again = observe(Some(&record), &seen("m1", 3, &r), 5_030);
        assert!(!again.alert, "the same version is alerted once");
        assert_eq!(again.next.unwrap(), record);
    }

    #[test]
    fn a_changed_record_alerts_again_only_when_it_reaches_a_release_not_alerted() {
        let one = releases(&["fw-a.bin"]);
        let record = observe(None, &seen("m1", 2, &one), 10).next.unwrap();
        // A new version affecting the same releases: no new alert.
        let same = observe(Some(&record), &seen("m2", 2, &one), 20);
        assert!(!same.alert);
        let record = same.next.unwrap();
        assert_eq!(record.alerted_modified.as_deref(), Some("m1"));
        // A new version reaching another release: alerted, once.
        let two = releases(&["fw-a.bin", "fw-b.bin"]);
        let wider = observe(Some(&record), &seen("m3", 5, &two), 30);
        assert!(wider.alert);
        let record = wider.next.unwrap();
        assert_eq!(record.alerted_releases, ["fw-a.bin", "fw-b.bin"]);
        assert_eq!(record.peak_affected, 5);
        assert!(!observe(Some(&record), &seen("m3", 5, &two), 40).alert);
        // The same version reaching more devices on an already-alerted release: no alert.
        let more_devices = observe(None, &seen("m1", 1, &one), 10).next.unwrap();
        assert!(!observe(Some(&more_devices), &seen("m1", 9, &one), 50).alert);
    }

    #[test]
    fn falling_to_zero_remediates_and_rising_again_reopens() {
        let r = releases(&["fw-vuln.bin"]);
        let none = releases(&[]);
        let record = observe(None, &seen("m1", 2, &r), 2_000).next.unwrap();
        let fixed = observe(Some(&record), &seen("m1", 0, &none), 3_000)
            .next
            .unwrap();
        assert_eq!(fixed.state(), ExposureState::Remediated);
        assert_eq!(fixed.remediated_at, Some(3_000));
        assert_eq!(fixed.window_secs(), Some(2_000), "published at 1000");
        assert_eq!(fixed.peak_affected, 2);
        // A later pass keeps the first remediation time.
        let later = observe(Some(&fixed), &seen("m1", 0, &none), 4_000)
            .next
            .unwrap();
        assert_eq!(later.remediated_at, Some(3_000));
        let back = observe(Some(&later), &seen("m1", 1, &r), 5_000);
        assert!(!back.alert, "already alerted for this version");
        let back = back.next.unwrap();
        assert_eq!(back.state(), ExposureState::Open);
        assert_eq!(back.remediated_at, None);
        assert_eq!(back.window_secs(), None);
        assert_eq!(back.first_affected_at, Some(2_000));
    }

    #[test]
    fn a_withdrawn_advisory_stops_counting_and_never_alerts() {
        let r = releases(&["fw-vuln.bin"]);
        let withdrawn = Observation {
            withdrawn: true,
            ..seen("m2", 0, &r)
        };
        assert_eq!(observe(None, &withdrawn, 10).next, None);
        assert!(!observe(None, &withdrawn, 10).alert);
        let record = observe(None, &seen("m1", 4, &r), 10).next.unwrap();
        let step = observe(Some(&record), &withdrawn, 20);
        assert!(!step.alert);
        let gone = step.next.unwrap();
        assert_eq!(gone.state(), ExposureState::Withdrawn);
        assert_eq!(gone.affected_now, 0);
        assert_eq!(
            gone.remediated_at, None,
            "a withdrawal is not a remediation"
        );
        assert_eq!(gone.window_secs(), None);
    }

    #[test]
    fn a_window_without_a_published_time_starts_at_the_first_affected_pass() {
        let r = releases(&["fw"]);
        let none = releases(&[]);
        let unpublished = Observation {
            published: None,
            ..seen("m1", 1, &r)
        };
        let record = observe(None, &unpublished, 100).next.unwrap();
        let gone = Observation {
            published: None,
            ..seen("m1", 0, &none)
        };
        let fixed = observe(Some(&record), &gone, 160).next.unwrap();
        assert_eq!(fixed.window_secs(), Some(60));
    }

    #[test]
    fn published_times_parse_as_rfc3339_and_garbage_is_none() {
        assert_eq!(
            parse_published(Some("2021-01-01T00:00:00Z")),
            Some(1_609_459_200)
        );
        assert_eq!(
            parse_published(Some("2021-01-01T01:00:00+01:00")),
            Some(1_609_459_200)
        );
        assert_eq!(parse_published(Some("yesterday")), None);
        assert_eq!(parse_published(None), None);
    }
}
