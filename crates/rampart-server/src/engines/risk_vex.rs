//! Vendor VEX in the risk assessment (issue 17, decision 0047): the statements of every stored
//! VEX document (verified against the trusted vendor keys when imported) are read into one
//! `rampart_vuln::suppression::SourcedVex`, kept in the parsed feed (rebuilt when the feed's
//! version changes, which every VEX import and removal raises), and applied to each release's
//! matches: a suppressed (advisory, component) pair leaves the release's exposure and is
//! recorded with the statement's justification and the document's id.

use std::collections::{BTreeMap, BTreeSet};

use rampart_db::{Db, DbError};
use rampart_vuln::component::Component;
use rampart_vuln::matching::Match;
use rampart_vuln::posture::{DeviceRun, GroupBy};
use rampart_vuln::suppression::{SourcedVex, SuppressedMatch, releases_by_group};
use rampart_vuln::vex::VexStatement;

/// The stored VEX statements, each knowing its document's id. A stored document whose
/// statements no longer read (written by another version) is left out and logged: re-import it.
pub async fn load(db: &Db) -> Result<SourcedVex, DbError> {
    let stored = db.vex_statements().await?;
    let mut documents = Vec::with_capacity(stored.len());
    for (id, json) in stored {
        match serde_json::from_str::<Vec<VexStatement>>(&json) {
            Ok(statements) => documents.push((id, statements)),
            Err(e) => crate::observe::log::error(
                "a stored VEX document no longer reads; it is not applied (re-import it)",
                serde_json::json!({"vex": id, "error": e.to_string()}),
            ),
        }
    }
    Ok(SourcedVex::new(documents))
}

/// Splits one release's matches: those that stand, and those VEX suppressed.
pub fn apply(
    vex: &SourcedVex,
    matches: Vec<Match>,
    components: &[Component],
) -> (Vec<Match>, Vec<SuppressedMatch>) {
    vex.split(matches, components)
}

/// A group's suppressed matches as `(release, match)`, at most the asked number, and how many
/// there are in all.
pub type GroupSuppressed<'a> = (Vec<(&'a str, &'a SuppressedMatch)>, usize);

/// The suppressed matches of each posture group (by `by`): those of the releases its devices
/// run, at most `max` per group, with the group's total.
pub fn by_group<'a>(
    by: GroupBy,
    devices: &'a [DeviceRun],
    suppressed: &'a BTreeMap<String, Vec<SuppressedMatch>>,
    max: usize,
) -> BTreeMap<&'a str, GroupSuppressed<'a>> {
    let releases: BTreeSet<&str> = suppressed.keys().map(String::as_str).collect();
    releases_by_group(by, devices, &releases)
        .into_iter()
        .map(|(key, releases)| {
            let all: Vec<(&str, &SuppressedMatch)> = releases
                .into_iter()
                .flat_map(|release| {
                    suppressed
                        .get(release)
                        .into_iter()
                        .flatten()
                        .map(move |s| (release, s))
                })
                .collect();
            let total = all.len();
            (key, (all.into_iter().take(max).collect(), total))
        })
        .collect()
}

/// The suppressed matches of one advisory, as `(release, match)`.
pub fn of_advisory<'a>(
    suppressed: &'a BTreeMap<String, Vec<SuppressedMatch>>,
    advisory_id: &str,
) -> Vec<(&'a str, &'a SuppressedMatch)> {
    suppressed
        .iter()
        .flat_map(|(release, list)| list.iter().map(move |s| (release.as_str(), s)))
        .filter(|(_, s)| s.matched.advisory == advisory_id)
        .collect()
}
