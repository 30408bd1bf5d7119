//! Maintenance windows: when a device may be updated.
//!
//! A [`MaintenanceWindow`] opens every time its cron pattern matches the local
//! wall-clock time in its time zone, and then stays open for `duration_secs`
//! seconds of real (elapsed) time. [`MaintenanceWindow::compile`] validates it
//! once and returns a [`CompiledWindow`] that answers the questions a rollout
//! asks: is the window open now ([`CompiledWindow::is_open`]), when does it
//! next open ([`CompiledWindow::next_open`]) and when does the current opening
//! close ([`CompiledWindow::closes_at`]).
//!
//! Like the rest of this crate the module is pure: it reads no clock and no
//! files (the time-zone database is bundled into the binary by `jiff`), and
//! every instant is a unix time in whole seconds given by the caller.
//!
//! # Pattern
//!
//! The pattern has exactly five fields, `minute hour day-of-month month
//! day-of-week`, with the syntax of the `croner` crate: lists, ranges and
//! steps (`0,30`, `1-5`, `*/15`), month and weekday names (`JAN`, `SAT`),
//! weekdays 0 to 7 with both 0 and 7 meaning Sunday, and croner's extensions
//! `L` (last), `W` (nearest weekday), `#` (nth weekday of the month) and a `+`
//! before the weekday field to require both day fields. When both day fields
//! are restricted and there is no `+`, a day matches if either matches, as in
//! Vixie cron: `0 2 1 * MON` opens on the 1st of each month and on every
//! Monday. Seconds, years and `@daily`-style nicknames are refused so that a
//! pattern means the same thing everywhere it is shown.
//!
//! # Opening and closing
//!
//! Every match opens the window at a whole minute `s`, and the window then
//! covers the half-open interval `[s, s + duration_secs)`: it is open at its
//! first second and closed again at `s + duration_secs`. Openings may overlap
//! (an hourly pattern with a two-hour duration) and then simply keep the
//! window open. [`CompiledWindow::closes_at`] reports the end of the most
//! recent opening, which is never later than the moment the window really
//! closes; a later opening that overlaps it extends the maintenance time, and
//! a caller that asks again after the reported end finds it still open.
//!
//! The duration is elapsed time, not wall-clock time: a two-hour window that
//! straddles a daylight-saving change lasts two real hours, so its closing
//! time on the wall clock moves by the size of the change.
//!
//! # Daylight saving time
//!
//! Wall-clock times that a clock change skips or repeats follow the rules of
//! the `croner` crate for zoned times (the tests in this module check that
//! the two agree around real changes in Europe/Berlin, America/New_York and
//! America/Nuuk).
//! Croner treats two kinds of pattern differently:
//!
//! * A *fixed-time* pattern has a single minute and a single hour, such as
//!   `30 2 * * *` or `0 2 * * 6`.
//!   - Skipped start (spring forward): the window opens at the instant the
//!     clock jumps, the first one after the gap, and lasts its full duration
//!     from there. In
//!     Europe/Berlin on 2025-03-30 the clock jumps from 02:00 to 03:00, so a
//!     02:30 window opens at 03:00 CEST. If the gap ends on the next
//!     calendar day, that day must match the pattern too: in America/Nuuk the
//!     clock jumps from Saturday 23:00 to Sunday 00:00 in late March, so a
//!     daily 23:30 window opens at Sunday 00:00 but a Saturday-only one
//!     (`30 23 * * 6`) opens nothing that week.
//!   - Repeated start (fall back): the window opens once, at the first of
//!     the two instants. In Europe/Berlin on 2025-10-26 a 02:30 window opens
//!     at 02:30 CEST and not again at 02:30 CET an hour later.
//! * Any other pattern (a list, range, step or wildcard in the minute or hour,
//!   such as `*/30 2 * * *` or `0 1-3 * * *`) is an *interval* pattern.
//!   - Skipped start: the skipped times do not happen and open nothing; the
//!     pattern's other times that day still do. `*/30 2 * * *` opens nothing
//!     in Berlin on 2025-03-30.
//!   - Repeated start: the window opens at each real instant whose wall clock
//!     matches, so in both passes through the repeated hour.
//!
//! A pattern whose every match is skipped in its zone is refused by
//! [`MaintenanceWindow::compile`]: say `*/30 2 25-31 3 +SUN`, 02:00 to 02:30
//! on the last Sunday of March, which Europe/Berlin always skips.
//!
//! # Cost
//!
//! `croner` can also search zoned times itself, but when a fixed-time start
//! falls into a skipped hour it steps through the gap second by second, up
//! to 3600 time-zone lookups, in every search that crosses that day: for a
//! weekly window, every query for a week. Because
//! [`CompiledWindow::is_open`] is asked for every device, this module
//! instead lets croner search wall-clock (civil) times, which have no gaps,
//! and resolves each matching wall-clock time in the zone itself: a query
//! costs one or two croner searches plus a few time-zone lookups, whatever
//! the pattern and however long the window, and this module allocates
//! nothing for it. (In a debug build on the week after Berlin's spring
//! change, `is_open` for `30 2 * * 0` took about 15 µs; croner's zoned
//! search took about 2.8 ms.)
//!
//! # Validation
//!
//! [`MaintenanceWindow::compile`] refuses, with a [`WindowError`] that says
//! what is wrong and how to fix it: a pattern longer than
//! [`MAX_CRON_LEN`] bytes, a field count other than five, a field croner
//! cannot parse, a pattern that matches no date at all (`0 0 31 2 *`), one
//! whose every match is skipped by daylight saving time in its zone, a
//! duration outside [`MIN_DURATION_SECS`]..=[`MAX_DURATION_SECS`], and a
//! time-zone name that is not in the IANA database. Error messages quote the
//! input, cut to a bounded length.

use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, JobType, Weekday};
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// The longest cron pattern accepted, in bytes. Real five-field patterns are
/// a few dozen bytes; the bound keeps parsing and error messages small.
pub const MAX_CRON_LEN: usize = 256;

/// The number of fields in a pattern: minute, hour, day of month, month and
/// day of week.
pub const CRON_FIELDS: usize = 5;

/// The shortest window: one minute, the resolution of a five-field pattern.
pub const MIN_DURATION_SECS: u64 = 60;

/// The longest window: seven days, so that a weekly pattern can keep the
/// window open all the time, and no longer, which would only hide a mistake.
pub const MAX_DURATION_SECS: u64 = 7 * 24 * 60 * 60;

/// At most this many characters of a rejected time-zone name are quoted back,
/// so an error message stays small whatever the input.
const MAX_QUOTED_CHARS: usize = 64;

/// How many matching wall-clock times one search may pass over because they
/// open nothing (skipped by a clock change, or the second pass of a repeated
/// time for a fixed-time pattern). A real pattern passes over at most two or
/// three; the bound only ends the search for a pattern whose every match is
/// skipped, which then counts as never matching.
const MAX_PASSED_MATCHES: usize = 64;

/// The instant from which [`MaintenanceWindow::compile`] looks for a first
/// opening in the window's zone: 2000-01-01T00:00:00Z. A pattern that can
/// match some date always opens within 400 years of it, unless every match
/// is skipped by daylight saving time.
const ZONE_CHECK_FROM_UNIX: i64 = 946_684_800;

/// The first year of the 400-year cycle searched for a matching date.
const CYCLE_START_YEAR: i16 = 2000;

/// The Gregorian calendar, weekdays included, repeats every 400 years
/// (146097 days, exactly 20871 weeks), and a five-field pattern sees only the
/// month, the day of the month and the weekday of a date. So a pattern that
/// matches no date in one such cycle matches no date ever.
const GREGORIAN_CYCLE_YEARS: i16 = 400;

const ONE_SECOND: SignedDuration = SignedDuration::from_secs(1);

/// A recurring maintenance window: it opens each time `cron` matches (in
/// `timezone`) and stays open for `duration_secs`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// Five fields, `minute hour day-of-month month day-of-week`, e.g.
    /// `"0 2 * * 6"` for Saturdays at 02:00.
    pub cron: String,
    /// How long each opening lasts, in seconds of elapsed time: 60 to 604800.
    pub duration_secs: u64,
    /// The IANA time zone the pattern is read in, e.g. `"Europe/Berlin"`.
    pub timezone: String,
}

/// Why a [`MaintenanceWindow`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The pattern is longer than [`MAX_CRON_LEN`] bytes.
    #[error(
        "the maintenance window cron pattern is {len} bytes long, but at most {MAX_CRON_LEN} bytes are allowed; use a five-field pattern such as \"0 2 * * 6\" (Saturdays at 02:00)"
    )]
    CronTooLong {
        /// The length of the pattern in bytes.
        len: usize,
    },

    /// The pattern does not have exactly five fields.
    #[error(
        "the maintenance window cron pattern {pattern:?} has {found} fields, but it needs exactly {CRON_FIELDS}: \"minute hour day-of-month month day-of-week\"; write for example \"0 2 * * 6\" for Saturdays at 02:00 (seconds, years and nicknames such as @daily are not supported)"
    )]
    CronFieldCount {
        /// The pattern as given.
        pattern: String,
        /// How many whitespace-separated fields it has.
        found: usize,
    },

    /// Croner could not parse the pattern.
    #[error(
        "the maintenance window cron pattern {pattern:?} is invalid: {reason}; correct it so that it reads \"minute hour day-of-month month day-of-week\" (minute 0-59, hour 0-23, day 1-31, month 1-12 or JAN-DEC, weekday 0-7 or SUN-SAT), for example \"0 2 * * 6\""
    )]
    CronInvalid {
        /// The pattern as given.
        pattern: String,
        /// Croner's description of the problem.
        reason: String,
    },

    /// The pattern matches no date at all, such as February 31st.
    #[error(
        "the maintenance window cron pattern {pattern:?} matches no date at all (for example February 30th or April 31st), so the window would never open; choose a day of the month that exists in the chosen months, or use \"L\" for the last day of the month"
    )]
    CronNeverMatches {
        /// The pattern as given.
        pattern: String,
    },

    /// Every time the pattern matches, the local clock skips that time
    /// because of daylight saving time.
    #[error(
        "the maintenance window cron pattern {pattern:?} only matches local times that the clock skips in time zone {timezone:?} (daylight saving time), so the window would never open; choose an hour outside the clock change, or a single minute and hour such as \"30 2 ...\", which opens right after a skipped hour"
    )]
    CronNeverOpensInZone {
        /// The pattern as given.
        pattern: String,
        /// The time zone as given.
        timezone: String,
    },

    /// The duration is below [`MIN_DURATION_SECS`].
    #[error(
        "the maintenance window duration_secs is {duration_secs}, but a window must last at least {MIN_DURATION_SECS} seconds (one minute); set duration_secs between {MIN_DURATION_SECS} and {MAX_DURATION_SECS}"
    )]
    DurationTooShort {
        /// The duration as given.
        duration_secs: u64,
    },

    /// The duration is above [`MAX_DURATION_SECS`].
    #[error(
        "the maintenance window duration_secs is {duration_secs}, but a window may last at most {MAX_DURATION_SECS} seconds (seven days); set duration_secs between {MIN_DURATION_SECS} and {MAX_DURATION_SECS}, and use a pattern that matches more often if the window must stay open longer"
    )]
    DurationTooLong {
        /// The duration as given.
        duration_secs: u64,
    },

    /// The time zone is not in the IANA database.
    #[error("{name:?} is not a known IANA time zone; {}", zone_hint(.suggestion.as_deref()))]
    UnknownTimeZone {
        /// The name as given, cut to 64 characters.
        name: String,
        /// The closest known name, if one is close.
        suggestion: Option<String>,
    },
}

fn zone_hint(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(name) => format!(
            "did you mean {name:?}? Use a name from the IANA database such as \"Europe/Berlin\" or \"UTC\""
        ),
        None => "use a name such as \"Europe/Berlin\" or \"UTC\"".to_owned(),
    }
}

/// A validated [`MaintenanceWindow`], ready to answer queries cheaply.
///
/// It is immutable, `Send` and `Sync`, so one compiled window can serve every
/// device of a rollout; queries take `&self` and change nothing.
#[derive(Debug, Clone)]
pub struct CompiledWindow {
    spec: MaintenanceWindow,
    cron: Cron,
    tz: TimeZone,
    /// Croner's fixed-time rule, which decides how skipped and repeated
    /// wall-clock times open the window (see the module documentation).
    fixed_time: bool,
    duration: SignedDuration,
}

/// One opening of a window: it covers `[opened_at, closes_at)`, in unix
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    /// When the window opened: the first second it covers.
    pub opened_at: i64,
    /// When this opening ends: the first second it no longer covers.
    pub closes_at: i64,
}

impl MaintenanceWindow {
    /// Whether a window as stored (its JSON) is open at `now`. A stored window that no longer
    /// reads or compiles counts as closed: it holds its devices rather than releasing them (it
    /// was validated when it was set).
    pub fn stored_is_open(stored: &str, now: i64) -> bool {
        serde_json::from_str::<MaintenanceWindow>(stored)
            .ok()
            .and_then(|w| w.compile().ok())
            .is_some_and(|w| w.is_open(now))
    }

    /// Validates and prepares the window (cron: 5 fields "minute hour
    /// day-of-month month day-of-week"; duration 60 s to 7 days; IANA zone
    /// name).
    pub fn compile(&self) -> Result<CompiledWindow, WindowError> {
        let cron = parse_cron(&self.cron)?;
        let duration = check_duration(self.duration_secs)?;
        let tz = lookup_zone(&self.timezone)?;
        if !matches_some_date(&cron) {
            return Err(WindowError::CronNeverMatches {
                pattern: self.cron.clone(),
            });
        }
        let compiled = CompiledWindow {
            spec: self.clone(),
            fixed_time: cron.determine_job_type() == JobType::FixedTime,
            cron,
            tz,
            duration,
        };
        // A pattern can match dates and still never open: in a zone whose
        // clock always skips the matching times. Searching once here keeps
        // such a window out, instead of letting every query search in vain.
        let opens = Timestamp::from_second(ZONE_CHECK_FROM_UNIX)
            .ok()
            .and_then(|from| compiled.next_start(from));
        if opens.is_none() {
            return Err(WindowError::CronNeverOpensInZone {
                pattern: self.cron.clone(),
                timezone: self.timezone.clone(),
            });
        }
        Ok(compiled)
    }
}

impl CompiledWindow {
    /// The window this was compiled from.
    pub fn spec(&self) -> &MaintenanceWindow {
        &self.spec
    }

    /// Whether the window is open at `now_unix` (a window opened at most
    /// `duration_secs` ago covers now).
    pub fn is_open(&self, now_unix: i64) -> bool {
        self.current(now_unix).is_some()
    }

    /// When the window is next open: `now_unix` itself if open now, else the
    /// start of the next window; None if the pattern never matches again.
    ///
    /// "Never" is bounded by the calendar range that croner searches (up to
    /// the year 5000) and the timestamps that jiff represents.
    pub fn next_open(&self, now_unix: i64) -> Option<i64> {
        if self.is_open(now_unix) {
            return Some(now_unix);
        }
        let now = Timestamp::from_second(now_unix).ok()?;
        self.next_start(now).map(Timestamp::as_second)
    }

    /// If open now: when the current window closes.
    ///
    /// This is the end of the most recent opening. If a later opening
    /// overlaps it, the window stays open past this time (see the module
    /// documentation), so the answer is never later than the real close.
    pub fn closes_at(&self, now_unix: i64) -> Option<i64> {
        self.current(now_unix).map(|opening| opening.closes_at)
    }

    /// If open now: the most recent opening, which covers `now_unix`.
    pub fn current(&self, now_unix: i64) -> Option<Opening> {
        let now = Timestamp::from_second(now_unix).ok()?;
        // The most recent opening reaches furthest, since every opening lasts
        // equally long: if it does not cover now, no opening does.
        let start = self.latest_start(now)?;
        let end = start.checked_add(self.duration).ok()?;
        (now < end).then(|| Opening {
            opened_at: start.as_second(),
            closes_at: end.as_second(),
        })
    }

    /// The last instant at or before `now` at which the window opens.
    fn latest_start(&self, now: Timestamp) -> Option<Timestamp> {
        let local = self.tz.to_datetime(now);
        let latest = self.latest_start_from(local, now);
        // In the second pass through a repeated hour the wall clock reads
        // earlier than times it already showed once in the first pass, and
        // openings at those times lie in the past too. Search back from the
        // end of the first pass as well, and keep the later result.
        match self.first_pass_end(now, local) {
            Some(end) => latest.max(self.latest_start_from(end, now)),
            None => latest,
        }
    }

    /// The first instant at or after `now` at which the window opens.
    fn next_start(&self, now: Timestamp) -> Option<Timestamp> {
        let local = self.tz.to_datetime(now);
        let next = self.next_start_from(local, now);
        // In the first pass through a repeated hour, the second pass is still
        // to come, and an interval pattern opens there too, at wall-clock
        // times earlier than now's. Search from its start as well.
        if self.fixed_time {
            return next;
        }
        match self.second_pass_start(now, local) {
            Some(start) => earliest(next, self.next_start_from(start, now)),
            None => next,
        }
    }

    /// Walks matching wall-clock times back from `bound` (inclusive) and
    /// returns the latest instant at or before `now` that one of them opens.
    fn latest_start_from(&self, mut bound: DateTime, now: Timestamp) -> Option<Timestamp> {
        for _ in 0..MAX_PASSED_MATCHES {
            let civil = self.cron.find_previous_occurrence(&bound, true).ok()?;
            match self.locate(civil)? {
                Local::Once(at) if at <= now => return Some(at),
                Local::Twice { earlier, later } => {
                    if !self.fixed_time && later <= now {
                        return Some(later);
                    }
                    if earlier <= now {
                        return Some(earlier);
                    }
                }
                Local::Skipped { gap_end } => {
                    if let Some(at) = self.skipped_start(gap_end)
                        && at <= now
                    {
                        return Some(at);
                    }
                    // Every wall-clock time in the gap is skipped alike:
                    // continue just before the gap rather than minute by
                    // minute through it.
                    bound = self.tz.to_datetime(gap_end.checked_sub(ONE_SECOND).ok()?);
                    continue;
                }
                Local::Once(_) => {}
            }
            bound = civil.checked_sub(ONE_SECOND).ok()?;
        }
        None
    }

    /// Walks matching wall-clock times forward from `bound` (inclusive) and
    /// returns the earliest instant at or after `now` that one of them opens.
    fn next_start_from(&self, mut bound: DateTime, now: Timestamp) -> Option<Timestamp> {
        for _ in 0..MAX_PASSED_MATCHES {
            let civil = self.cron.find_next_occurrence(&bound, true).ok()?;
            match self.locate(civil)? {
                Local::Once(at) if at >= now => return Some(at),
                Local::Twice { earlier, later } => {
                    if earlier >= now {
                        return Some(earlier);
                    }
                    if !self.fixed_time && later >= now {
                        return Some(later);
                    }
                }
                Local::Skipped { gap_end } => {
                    if let Some(at) = self.skipped_start(gap_end)
                        && at >= now
                    {
                        return Some(at);
                    }
                    // Continue at the first wall-clock time after the gap.
                    bound = self.tz.to_datetime(gap_end);
                    continue;
                }
                Local::Once(_) => {}
            }
            bound = civil.checked_add(ONE_SECOND).ok()?;
        }
        None
    }

    /// Where a matching wall-clock time that the clock skips opens the
    /// window: for a fixed-time pattern at the end of the gap, provided that
    /// the date there still matches (croner's rule); otherwise nowhere.
    fn skipped_start(&self, gap_end: Timestamp) -> Option<Timestamp> {
        if !self.fixed_time {
            return None;
        }
        date_matches(&self.cron, self.tz.to_datetime(gap_end).date()).then_some(gap_end)
    }

    /// Resolves a wall-clock time in the window's zone.
    fn locate(&self, civil: DateTime) -> Option<Local> {
        match self.tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                offset.to_timestamp(civil).ok().map(Local::Once)
            }
            AmbiguousOffset::Fold { before, after } => Some(Local::Twice {
                earlier: before.to_timestamp(civil).ok()?,
                later: after.to_timestamp(civil).ok()?,
            }),
            AmbiguousOffset::Gap { before, after } => {
                // Read with the new offset, the time lands before the change;
                // read with the old one, after it. The change itself, where
                // the gap ends, is the one transition between the two.
                let lands_before = after.to_timestamp(civil).ok()?;
                let lands_after = before.to_timestamp(civil).ok()?;
                let gap_end = self
                    .tz
                    .following(lands_before)
                    .next()
                    .map(|transition| transition.timestamp())
                    .filter(|&change| change <= lands_after)
                    .unwrap_or(lands_after);
                Some(Local::Skipped { gap_end })
            }
        }
    }

    /// If `now` lies in the second pass through a repeated range of
    /// wall-clock times: the last wall-clock time of the first pass.
    fn first_pass_end(&self, now: Timestamp, local: DateTime) -> Option<DateTime> {
        let AmbiguousOffset::Fold { before, after } =
            self.tz.to_ambiguous_timestamp(local).offset()
        else {
            return None;
        };
        if after.to_timestamp(local).ok()? != now {
            return None;
        }
        let first_pass = before.to_timestamp(local).ok()?;
        let change = self.tz.following(first_pass).next()?.timestamp();
        Some(self.tz.to_datetime(change.checked_sub(ONE_SECOND).ok()?))
    }

    /// If `now` lies in the first pass through a repeated range of
    /// wall-clock times: the first wall-clock time of the second pass.
    fn second_pass_start(&self, now: Timestamp, local: DateTime) -> Option<DateTime> {
        let AmbiguousOffset::Fold { before, .. } = self.tz.to_ambiguous_timestamp(local).offset()
        else {
            return None;
        };
        if before.to_timestamp(local).ok()? != now {
            return None;
        }
        let change = self.tz.following(now).next()?.timestamp();
        Some(self.tz.to_datetime(change))
    }
}

/// How a wall-clock time maps to real instants in a zone.
enum Local {
    /// The time happens once.
    Once(Timestamp),
    /// The clock goes back and the time happens twice.
    Twice {
        earlier: Timestamp,
        later: Timestamp,
    },
    /// The clock jumps forward over the time; the jump happens at `gap_end`.
    Skipped { gap_end: Timestamp },
}

/// The earlier of two optional instants, ignoring a missing one.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse_cron(pattern: &str) -> Result<Cron, WindowError> {
    // Checked before anything is parsed or quoted, so neither work nor error
    // messages grow with the input.
    if pattern.len() > MAX_CRON_LEN {
        return Err(WindowError::CronTooLong { len: pattern.len() });
    }
    let found = pattern.split_whitespace().count();
    if found != CRON_FIELDS {
        return Err(WindowError::CronFieldCount {
            pattern: pattern.to_owned(),
            found,
        });
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|error| WindowError::CronInvalid {
            pattern: pattern.to_owned(),
            reason: error.to_string(),
        })
}

fn check_duration(duration_secs: u64) -> Result<SignedDuration, WindowError> {
    if duration_secs < MIN_DURATION_SECS {
        return Err(WindowError::DurationTooShort { duration_secs });
    }
    match i64::try_from(duration_secs) {
        Ok(secs) if duration_secs <= MAX_DURATION_SECS => Ok(SignedDuration::from_secs(secs)),
        _ => Err(WindowError::DurationTooLong { duration_secs }),
    }
}

fn lookup_zone(name: &str) -> Result<TimeZone, WindowError> {
    match jiff::tz::db().get(name) {
        // `Etc/Unknown` resolves to jiff's placeholder zone, which has no
        // IANA name and would silently behave as UTC.
        Ok(tz) if tz.iana_name().is_some() => Ok(tz),
        _ => Err(WindowError::UnknownTimeZone {
            name: quote_bounded(name),
            suggestion: suggest_zone(name),
        }),
    }
}

/// Whether the pattern matches at least one minute of some date.
fn matches_some_date(cron: &Cron) -> bool {
    let pattern = &cron.pattern;
    let any_hour = (0..24).any(|hour| pattern.hour_match(hour).unwrap_or(false));
    let any_minute = (0..60).any(|minute| pattern.minute_match(minute).unwrap_or(false));
    if !(any_hour && any_minute) {
        return false;
    }
    // One Gregorian cycle decides (see GREGORIAN_CYCLE_YEARS). A pattern that
    // can match usually does within days, so the full 146097 days are only
    // walked for a pattern that is refused.
    (CYCLE_START_YEAR..CYCLE_START_YEAR + GREGORIAN_CYCLE_YEARS).any(|year| {
        (1..=12).any(|month| {
            let Ok(first) = Date::new(year, month, 1) else {
                return false;
            };
            (1..=first.days_in_month())
                .any(|day| Date::new(year, month, day).is_ok_and(|date| date_matches(cron, date)))
        })
    })
}

/// Whether a date matches the pattern's month, day-of-month and day-of-week
/// fields.
fn date_matches(cron: &Cron, date: Date) -> bool {
    let (Ok(month), Ok(day)) = (u32::try_from(date.month()), u32::try_from(date.day())) else {
        return false;
    };
    let weekday = Weekday::from_days_from_sunday(u32::from(
        date.weekday().to_sunday_zero_offset().unsigned_abs(),
    ));
    cron.pattern.month_match(month).unwrap_or(false)
        && cron
            .pattern
            .day_match(i32::from(date.year()), month, day, weekday)
            .unwrap_or(false)
}

/// The input, cut to [`MAX_QUOTED_CHARS`] characters for an error message.
fn quote_bounded(input: &str) -> String {
    match input.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

/// The known zone name closest to a mistyped one, if it is close enough to
/// be what was meant.
fn suggest_zone(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_QUOTED_CHARS {
        return None;
    }
    let wanted = name.to_ascii_lowercase();
    // Allow about one edit in four characters, and at most three.
    let max_distance = (wanted.len() / 4).clamp(1, 3);
    let mut best: Option<(usize, String)> = None;
    for known in jiff::tz::db().available() {
        let known = known.as_str();
        let distance = edit_distance(wanted.as_bytes(), known.to_ascii_lowercase().as_bytes());
        if distance <= max_distance && best.as_ref().is_none_or(|(d, _)| distance < *d) {
            best = Some((distance, known.to_owned()));
        }
    }
    best.map(|(_, known)| known)
}

/// The Levenshtein distance between two byte strings.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &x) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(x != y);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60;
    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;

    fn spec(cron: &str, duration_secs: u64, timezone: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            cron: cron.to_owned(),
            duration_secs,
            timezone: timezone.to_owned(),
        }
    }

    fn window(cron: &str, duration_secs: u64, timezone: &str) -> CompiledWindow {
        spec(cron, duration_secs, timezone)
            .compile()
            .unwrap_or_else(|error| panic!("{cron:?} in {timezone}: {error}"))
    }

    fn refused(cron: &str, duration_secs: u64, timezone: &str) -> WindowError {
        match spec(cron, duration_secs, timezone).compile() {
            Ok(_) => panic!("{cron:?} for {duration_secs} s in {timezone:?} was accepted"),
            Err(error) => error,
        }
    }

    /// The virtual clock: the unix time of an RFC 3339 instant. The offset
    /// in the text says which local time is meant, e.g.
    /// "2025-03-30T03:00:00+02:00" is 03:00 CEST.
    fn at(instant: &str) -> i64 {
        instant
            .parse::<Timestamp>()
            .unwrap_or_else(|error| panic!("{instant}: {error}"))
            .as_second()
    }

    fn opening(opened_at: i64, closes_at: i64) -> Option<Opening> {
        Some(Opening {
            opened_at,
            closes_at,
        })
    }

    #[test]
    fn the_virtual_clock_reads_fixed_unix_times() {
        assert_eq!(at("2025-06-15T02:00:00Z"), 1_749_952_800);
        assert_eq!(at("2025-03-30T03:00:00+02:00"), 1_743_296_400);
        assert_eq!(at("2025-10-26T02:00:00+01:00"), 1_761_440_400);
        assert_eq!(at("2025-03-09T03:00:00-04:00"), 1_741_503_600);
        assert_eq!(at("2025-11-02T01:00:00-05:00"), 1_762_063_200);
    }

    #[test]
    fn open_from_the_first_second_until_the_duration_has_passed() {
        let w = window("0 2 * * *", 2 * 3600, "UTC");
        let start = at("2025-06-15T02:00:00Z");
        let end = start + 2 * HOUR;

        assert!(!w.is_open(start - 1));
        assert!(w.is_open(start));
        assert!(w.is_open(start + 1));
        assert!(w.is_open(end - 1));
        assert!(!w.is_open(end));
        assert!(!w.is_open(start + DAY - 1));
        assert!(w.is_open(start + DAY));

        assert_eq!(w.closes_at(start - 1), None);
        assert_eq!(w.closes_at(start), Some(end));
        assert_eq!(w.closes_at(end - 1), Some(end));
        assert_eq!(w.closes_at(end), None);
        assert_eq!(w.current(start + 5 * MINUTE), opening(start, end));

        assert_eq!(w.next_open(start - 1), Some(start));
        assert_eq!(w.next_open(start - DAY + 2 * HOUR), Some(start));
        assert_eq!(w.next_open(start), Some(start));
        assert_eq!(w.next_open(end - 1), Some(end - 1));
        assert_eq!(w.next_open(end), Some(start + DAY));
    }

    #[test]
    fn the_shortest_window_lasts_one_minute() {
        let w = window("*/5 * * * *", 60, "UTC");
        let start = at("2025-06-15T10:05:00Z");
        assert!(!w.is_open(start - 1));
        assert!(w.is_open(start));
        assert!(w.is_open(start + 59));
        assert!(!w.is_open(start + 60));
        assert_eq!(w.next_open(start + 60), Some(start + 5 * MINUTE));
    }

    #[test]
    fn a_window_spans_midnight_into_the_next_day() {
        let w = window("30 23 * * *", 2 * 3600, "Europe/Berlin");
        let start = at("2025-06-15T23:30:00+02:00");
        let end = at("2025-06-16T01:30:00+02:00");

        assert!(!w.is_open(start - 1));
        assert!(w.is_open(start));
        // After local midnight the opening of the previous day still counts.
        assert_eq!(
            w.current(at("2025-06-16T00:00:00+02:00")),
            opening(start, end)
        );
        assert!(w.is_open(end - 1));
        assert!(!w.is_open(end));
        assert_eq!(w.closes_at(at("2025-06-16T01:00:00+02:00")), Some(end));
        assert_eq!(w.next_open(end), Some(at("2025-06-16T23:30:00+02:00")));
        // Early on the 15th, the opening of the 14th is the one that counts.
        assert_eq!(
            w.current(at("2025-06-15T00:15:00+02:00")),
            opening(
                at("2025-06-14T23:30:00+02:00"),
                at("2025-06-15T01:30:00+02:00")
            )
        );
    }

    #[test]
    fn a_weekday_window_opens_on_that_day_only() {
        // Saturdays at 02:00 Berlin time for two hours. 2025-06-14 is a
        // Saturday.
        let w = window("0 2 * * 6", 2 * 3600, "Europe/Berlin");
        let saturday = at("2025-06-14T02:00:00+02:00");
        assert_eq!(saturday, at("2025-06-14T00:00:00Z"));

        assert!(w.is_open(saturday));
        assert!(w.is_open(at("2025-06-14T03:59:59+02:00")));
        assert!(!w.is_open(at("2025-06-14T04:00:00+02:00")));
        assert!(!w.is_open(at("2025-06-14T01:59:59+02:00")));
        // The same local time on Friday and on Sunday is closed.
        assert!(!w.is_open(at("2025-06-13T02:30:00+02:00")));
        assert!(!w.is_open(at("2025-06-15T02:30:00+02:00")));
        // From midweek, and from after the window, the next Saturday.
        assert_eq!(w.next_open(at("2025-06-11T12:00:00+02:00")), Some(saturday));
        assert_eq!(
            w.next_open(at("2025-06-14T04:00:00+02:00")),
            Some(at("2025-06-21T02:00:00+02:00"))
        );

        // Names, and 7 for Sunday, mean the same as numbers.
        let by_name = window("0 2 * * SAT", 2 * 3600, "Europe/Berlin");
        assert_eq!(by_name.next_open(saturday - DAY), Some(saturday));
        let sunday = window("0 2 * * 7", 3600, "Europe/Berlin");
        assert_eq!(
            sunday.next_open(saturday),
            Some(at("2025-06-15T02:00:00+02:00"))
        );
        assert_eq!(w.spec().cron, "0 2 * * 6");
    }

    #[test]
    fn day_of_month_or_day_of_week_matches_unless_plus_asks_for_both() {
        // 2025-06-01 is a Sunday; the first Monday is the 2nd.
        let either = window("0 2 1 * MON", 3600, "UTC");
        assert!(either.is_open(at("2025-06-01T02:00:00Z")));
        assert!(either.is_open(at("2025-06-02T02:00:00Z")));
        assert!(either.is_open(at("2025-06-09T02:00:00Z")));
        let both = window("0 2 1 * +MON", 3600, "UTC");
        assert!(!both.is_open(at("2025-06-01T02:00:00Z")));
        assert!(!both.is_open(at("2025-06-02T02:00:00Z")));
        // The 1st is next a Monday in September 2025.
        assert_eq!(
            both.next_open(at("2025-06-01T00:00:00Z")),
            Some(at("2025-09-01T02:00:00Z"))
        );
    }

    #[test]
    fn the_time_zone_changes_the_answer_at_the_same_instant() {
        let utc = window("0 2 * * *", 3600, "UTC");
        let berlin = window("0 2 * * *", 3600, "Europe/Berlin");
        let new_york = window("0 2 * * *", 3600, "America/New_York");

        // 00:30 UTC is 02:30 in Berlin (CEST) and 20:30 in New York (EDT).
        let instant = at("2025-06-15T00:30:00Z");
        assert!(berlin.is_open(instant));
        assert!(!utc.is_open(instant));
        assert!(!new_york.is_open(instant));

        let instant = at("2025-06-15T02:30:00Z");
        assert!(utc.is_open(instant));
        assert!(!berlin.is_open(instant));

        let instant = at("2025-06-15T06:30:00Z");
        assert!(new_york.is_open(instant));
        assert!(!utc.is_open(instant));

        let from = at("2025-06-15T01:00:00Z");
        assert_eq!(utc.next_open(from), Some(at("2025-06-15T02:00:00Z")));
        assert_eq!(berlin.next_open(from), Some(at("2025-06-16T00:00:00Z")));
        assert_eq!(new_york.next_open(from), Some(at("2025-06-15T06:00:00Z")));

        // Berlin keeps standard time (UTC+1) in winter.
        assert_eq!(
            berlin.next_open(at("2025-01-15T12:00:00Z")),
            Some(at("2025-01-16T01:00:00Z"))
        );
    }

    #[test]
    fn next_open_inside_and_outside_a_window() {
        let w = window("0 22 * * 1-5", 4 * 3600, "Europe/Berlin");
        let monday = at("2025-06-16T22:00:00+02:00");
        // Inside: now itself.
        for now in [monday, monday + 1, monday + 2 * HOUR, monday + 4 * HOUR - 1] {
            assert_eq!(w.next_open(now), Some(now));
        }
        // Outside: the start of the next opening.
        assert_eq!(w.next_open(monday - 1), Some(monday));
        assert_eq!(w.next_open(monday + 4 * HOUR), Some(monday + DAY));
        // Friday night's window is followed by Monday's.
        let friday = at("2025-06-20T22:00:00+02:00");
        assert_eq!(
            w.next_open(friday + 4 * HOUR),
            Some(at("2025-06-23T22:00:00+02:00"))
        );
        assert_eq!(w.closes_at(friday + HOUR), Some(friday + 4 * HOUR));
    }

    #[test]
    fn overlapping_openings_keep_the_window_open() {
        // Hourly openings of two hours overlap: always open, and closes_at
        // names the end of the latest opening, the earliest possible close.
        let w = window("0 * * * *", 2 * 3600, "UTC");
        let base = at("2025-06-15T10:00:00Z");
        for now in (base..base + DAY).step_by(601) {
            assert!(w.is_open(now), "{now}");
            let latest = now - now.rem_euclid(HOUR);
            assert_eq!(w.current(now), opening(latest, latest + 2 * HOUR));
        }

        // The longest weekly window is open all the time.
        let weekly = window("0 0 * * MON", 604_800, "UTC");
        let monday = at("2025-06-16T00:00:00Z");
        for now in (monday - 7 * DAY..monday + 14 * DAY).step_by(3599) {
            assert!(weekly.is_open(now), "{now}");
        }
        assert_eq!(weekly.closes_at(monday - 1), Some(monday));
        assert_eq!(weekly.current(monday), opening(monday, monday + 7 * DAY));
    }

    // Europe/Berlin, 2025-03-30: at 01:00 UTC the clock jumps from 02:00 CET
    // to 03:00 CEST, so 02:00 to 02:59 do not happen.
    const BERLIN_SPRING: &str = "2025-03-30T01:00:00Z";

    #[test]
    fn berlin_spring_forward_opens_a_skipped_fixed_time_at_the_end_of_the_gap() {
        let change = at(BERLIN_SPRING);
        assert_eq!(change, at("2025-03-30T03:00:00+02:00"));
        for cron in ["30 2 * * *", "0 2 * * *", "59 2 * * SUN"] {
            let w = window(cron, 3600, "Europe/Berlin");
            assert!(!w.is_open(change - 1), "{cron}");
            assert_eq!(w.current(change), opening(change, change + HOUR), "{cron}");
            assert!(w.is_open(change + HOUR - 1), "{cron}");
            assert!(!w.is_open(change + HOUR), "{cron}");
            assert_eq!(
                w.next_open(at("2025-03-30T00:00:00Z")),
                Some(change),
                "{cron}"
            );
        }
        // The days around it are ordinary.
        let w = window("30 2 * * *", 3600, "Europe/Berlin");
        assert_eq!(
            w.next_open(at("2025-03-29T00:00:00Z")),
            Some(at("2025-03-29T02:30:00+01:00"))
        );
        assert_eq!(
            w.next_open(change + HOUR),
            Some(at("2025-03-31T02:30:00+02:00"))
        );
    }

    #[test]
    fn berlin_spring_forward_skips_interval_times_in_the_gap() {
        let w = window("*/30 2 * * *", 30 * 60, "Europe/Berlin");
        assert!(w.is_open(at("2025-03-29T02:30:00+01:00")));
        let day_start = at("2025-03-30T00:00:00+01:00");
        let day_end = at("2025-03-31T00:00:00+02:00");
        for now in (day_start..day_end).step_by(300) {
            assert!(!w.is_open(now), "{now}");
        }
        assert_eq!(
            w.next_open(day_start),
            Some(at("2025-03-31T02:00:00+02:00"))
        );

        // Times on either side of the gap still open.
        let w = window("0 1-3 * * *", 30 * 60, "Europe/Berlin");
        let one = at("2025-03-30T01:00:00+01:00");
        let three = at("2025-03-30T03:00:00+02:00");
        assert_eq!(w.current(one + MINUTE), opening(one, one + 30 * MINUTE));
        assert_eq!(w.next_open(one + 30 * MINUTE), Some(three));
        assert_eq!(three - one, HOUR);
    }

    #[test]
    fn a_window_across_spring_forward_lasts_its_duration_in_real_time() {
        // Opens 01:00 CET, lasts two real hours: until 04:00 CEST.
        let w = window("0 1 * * *", 2 * 3600, "Europe/Berlin");
        let start = at("2025-03-30T01:00:00+01:00");
        assert_eq!(w.closes_at(start), Some(at("2025-03-30T04:00:00+02:00")));
        assert!(w.is_open(at("2025-03-30T03:59:59+02:00")));
        assert!(!w.is_open(at("2025-03-30T04:00:00+02:00")));
    }

    // Europe/Berlin, 2025-10-26: at 01:00 UTC the clock goes back from 03:00
    // CEST to 02:00 CET, so 02:00 to 02:59 happen twice.
    #[test]
    fn berlin_fall_back_opens_a_fixed_time_once_at_the_first_pass() {
        let w = window("30 2 * * *", 3600, "Europe/Berlin");
        let first = at("2025-10-26T02:30:00+02:00");
        let second = at("2025-10-26T02:30:00+01:00");
        assert_eq!(second - first, HOUR);

        assert!(!w.is_open(first - 1));
        assert_eq!(w.current(first), opening(first, first + HOUR));
        // In the second pass the wall clock reads 02:10 again, earlier than
        // 02:30, but the window opened at the first 02:30 covers it.
        assert_eq!(
            w.current(at("2025-10-26T02:10:00+01:00")),
            opening(first, first + HOUR)
        );
        assert!(w.is_open(second - 1));
        // The second 02:30 opens nothing.
        assert!(!w.is_open(second));
        assert!(!w.is_open(second + 10 * MINUTE));
        assert_eq!(w.next_open(second), Some(at("2025-10-27T02:30:00+01:00")));
        assert_eq!(
            w.next_open(at("2025-10-26T02:40:00+01:00")),
            Some(at("2025-10-27T02:30:00+01:00"))
        );
        assert_eq!(w.next_open(at("2025-10-26T00:00:00+02:00")), Some(first));
    }

    #[test]
    fn berlin_fall_back_opens_an_interval_pattern_in_both_passes() {
        let w = window("0,30 2 * * *", 20 * 60, "Europe/Berlin");
        let openings = [
            at("2025-10-26T02:00:00+02:00"),
            at("2025-10-26T02:30:00+02:00"),
            at("2025-10-26T02:00:00+01:00"),
            at("2025-10-26T02:30:00+01:00"),
        ];
        for (i, start) in openings.into_iter().enumerate() {
            assert_eq!(start, at("2025-10-26T00:00:00Z") + i as i64 * 30 * MINUTE);
            assert!(!w.is_open(start - 1));
            assert_eq!(w.current(start), opening(start, start + 20 * MINUTE));
            assert!(!w.is_open(start + 20 * MINUTE));
            assert_eq!(w.next_open(start - 5 * MINUTE), Some(start));
        }
        // From 02:55 CEST, after the second opening has closed, the next one
        // is 02:00 CET in the second pass, though the wall clock reads
        // earlier there.
        assert!(!w.is_open(at("2025-10-26T02:55:00+02:00")));
        assert_eq!(
            w.next_open(at("2025-10-26T02:55:00+02:00")),
            Some(openings[2])
        );
        assert_eq!(
            w.next_open(openings[3] + 20 * MINUTE),
            Some(at("2025-10-27T02:00:00+01:00"))
        );
    }

    #[test]
    fn a_window_across_fall_back_lasts_its_duration_in_real_time() {
        // Opens 02:00 CEST; two real hours later the wall clock says 03:00 CET.
        let w = window("0 2 * * *", 2 * 3600, "Europe/Berlin");
        let start = at("2025-10-26T02:00:00+02:00");
        assert_eq!(w.closes_at(start), Some(at("2025-10-26T03:00:00+01:00")));
        assert!(w.is_open(at("2025-10-26T02:59:59+01:00")));
        assert!(!w.is_open(at("2025-10-26T03:00:00+01:00")));
    }

    #[test]
    fn new_york_spring_forward() {
        // 2025-03-09: at 07:00 UTC the clock jumps from 02:00 EST to 03:00 EDT.
        let change = at("2025-03-09T07:00:00Z");
        assert_eq!(change, at("2025-03-09T03:00:00-04:00"));
        let fixed = window("30 2 * * *", 3600, "America/New_York");
        assert_eq!(
            fixed.next_open(at("2025-03-09T00:00:00-05:00")),
            Some(change)
        );
        assert_eq!(
            fixed.current(change + MINUTE),
            opening(change, change + HOUR)
        );
        assert!(!fixed.is_open(change - 1));
        assert_eq!(
            fixed.next_open(change + HOUR),
            Some(at("2025-03-10T02:30:00-04:00"))
        );

        let interval = window("*/15 2 * * *", 15 * 60, "America/New_York");
        assert!(!interval.is_open(change));
        assert_eq!(
            interval.next_open(at("2025-03-09T01:00:00-05:00")),
            Some(at("2025-03-10T02:00:00-04:00"))
        );
    }

    #[test]
    fn new_york_fall_back() {
        // 2025-11-02: at 06:00 UTC the clock goes back from 02:00 EDT to
        // 01:00 EST, so 01:00 to 01:59 happen twice.
        let fixed = window("30 1 * * *", 3600, "America/New_York");
        let first = at("2025-11-02T01:30:00-04:00");
        let second = at("2025-11-02T01:30:00-05:00");
        assert_eq!(fixed.current(first), opening(first, first + HOUR));
        assert_eq!(first + HOUR, second);
        assert!(fixed.is_open(at("2025-11-02T01:15:00-05:00")));
        assert!(!fixed.is_open(second));
        assert_eq!(
            fixed.next_open(second),
            Some(at("2025-11-03T01:30:00-05:00"))
        );

        let interval = window("*/30 1 * * *", 10 * 60, "America/New_York");
        let starts = [
            at("2025-11-02T01:00:00-04:00"),
            at("2025-11-02T01:30:00-04:00"),
            at("2025-11-02T01:00:00-05:00"),
            at("2025-11-02T01:30:00-05:00"),
        ];
        for pair in starts.windows(2) {
            assert_eq!(pair[1] - pair[0], 30 * MINUTE);
            assert_eq!(interval.next_open(pair[0] + 10 * MINUTE), Some(pair[1]));
        }
        for start in starts {
            assert_eq!(
                interval.current(start + 9 * MINUTE),
                opening(start, start + 10 * MINUTE)
            );
        }
    }

    #[test]
    fn a_skipped_fixed_time_whose_gap_ends_the_next_day_needs_that_day_to_match() {
        // America/Nuuk, Saturday 2025-03-29: at 23:00 the clock jumps to
        // 00:00 on Sunday the 30th, so 23:30 is skipped.
        let change = at("2025-03-30T00:00:00-01:00");
        assert_eq!(change, at("2025-03-29T23:00:00-02:00"));
        let from = at("2025-03-29T12:00:00-02:00");
        // Daily: Sunday matches too, so the window opens at the gap's end.
        let daily = window("30 23 * * *", 3600, "America/Nuuk");
        assert_eq!(daily.next_open(from), Some(change));
        assert_eq!(daily.current(change), opening(change, change + HOUR));
        // Saturdays only: Sunday does not match, so that week opens nothing
        // (croner's rule, which the module documentation describes).
        let saturday = window("30 23 * * 6", 3600, "America/Nuuk");
        assert!(!saturday.is_open(change));
        assert_eq!(
            saturday.next_open(from),
            Some(at("2025-04-05T23:30:00-01:00"))
        );
    }

    /// The DST handling here is this module's own; croner's zoned search is
    /// the reference it must agree with. Compare the most recent and the
    /// next opening at many instants around the four clock changes.
    #[test]
    fn agrees_with_croner_zoned_search_around_clock_changes() {
        let patterns = [
            "30 2 * * *",
            "0 2 * * *",
            "0 3 * * *",
            "59 1 * * *",
            "30 1 * * *",
            "0 2 * * 0",
            "*/30 2 * * *",
            "0,30 1,2 * * *",
            "15 1-3 * * *",
            "*/20 * * * *",
            "0 2 * * 1",
            "30 23 * * *",
            "30 23 * * 6",
        ];
        let changes = [
            ("Europe/Berlin", "2025-03-30T01:00:00Z"),
            ("Europe/Berlin", "2025-10-26T01:00:00Z"),
            ("America/New_York", "2025-03-09T07:00:00Z"),
            ("America/New_York", "2025-11-02T06:00:00Z"),
            ("America/Nuuk", "2025-03-30T01:00:00Z"),
        ];
        for (zone, change) in changes {
            let change = at(change);
            // Every seven minutes (which meets every minute of the hour in
            // turn) for eight hours either side, and each whole hour with
            // the seconds either side of it.
            let mut instants: Vec<i64> = (change - 8 * HOUR..change + 8 * HOUR)
                .step_by(7 * 60)
                .collect();
            for hour in -8..8 {
                let edge = change + hour * HOUR;
                instants.extend([edge - 1, edge, edge + 1]);
            }
            for cron in patterns {
                let w = window(cron, 3600, zone);
                for &now in &instants {
                    let zoned = Timestamp::from_second(now).unwrap().to_zoned(w.tz.clone());
                    let croner_previous = w
                        .cron
                        .find_previous_occurrence(&zoned, true)
                        .ok()
                        .map(|z| z.timestamp());
                    let croner_next = w
                        .cron
                        .find_next_occurrence(&zoned, true)
                        .ok()
                        .map(|z| z.timestamp());
                    let now_ts = Timestamp::from_second(now).unwrap();
                    assert_eq!(
                        w.latest_start(now_ts),
                        croner_previous,
                        "latest start of {cron:?} in {zone} at {zoned}"
                    );
                    assert_eq!(
                        w.next_start(now_ts),
                        croner_next,
                        "next start of {cron:?} in {zone} at {zoned}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_rare_pattern_is_found_years_away() {
        // February 29th on a Monday: 2016, then 2044.
        let w = window("0 0 29 2 +MON", 3600, "UTC");
        let now = at("2025-06-15T00:00:00Z");
        assert_eq!(w.next_open(now), Some(at("2044-02-29T00:00:00Z")));
        assert!(w.is_open(at("2016-02-29T00:59:59Z")));
        assert!(!w.is_open(now));
    }

    #[test]
    fn extreme_instants_give_answers_without_panicking() {
        let windows = [
            window("0 2 * * 6", 7200, "Europe/Berlin"),
            window("*/5 * * * *", 60, "America/New_York"),
            window("0 0 1 1 *", 604_800, "Pacific/Kiritimati"),
        ];
        let extremes = [
            i64::MIN,
            i64::MIN + 1,
            Timestamp::MIN.as_second(),
            Timestamp::MIN.as_second() + DAY,
            -1,
            0,
            Timestamp::MAX.as_second() - DAY,
            Timestamp::MAX.as_second(),
            i64::MAX,
        ];
        for w in &windows {
            for now in extremes {
                let open = w.is_open(now);
                assert_eq!(open, w.closes_at(now).is_some());
                if let Some(next) = w.next_open(now) {
                    assert!(next >= now);
                }
            }
            assert!(!w.is_open(i64::MAX));
            assert_eq!(w.next_open(i64::MAX), None);
            assert_eq!(w.next_open(Timestamp::MAX.as_second()), None);
            assert!(!w.is_open(i64::MIN));
        }
    }

    #[test]
    fn refuses_a_pattern_longer_than_the_limit() {
        let long = format!("0 2 * * {}", "1,".repeat(130) + "2");
        assert!(long.len() > MAX_CRON_LEN);
        let error = refused(&long, 3600, "UTC");
        assert_eq!(error, WindowError::CronTooLong { len: long.len() });
        let message = error.to_string();
        assert!(message.contains("at most 256 bytes"), "{message}");
        assert!(message.contains("\"0 2 * * 6\""), "{message}");
        // The input is not quoted back.
        assert!(message.len() < 300, "{message}");

        // A long pattern from whitespace alone counts too.
        let padded = format!("0 2 * * 6{}", " ".repeat(300));
        assert!(matches!(
            refused(&padded, 3600, "UTC"),
            WindowError::CronTooLong { .. }
        ));
    }

    #[test]
    fn refuses_a_pattern_without_exactly_five_fields() {
        for (cron, found) in [
            ("", 0),
            ("   ", 0),
            ("@daily", 1),
            ("0 2 * *", 4),
            ("0 0 2 * * 6", 6),
            ("0 0 2 * * 6 2030", 7),
        ] {
            let error = refused(cron, 3600, "UTC");
            assert_eq!(
                error,
                WindowError::CronFieldCount {
                    pattern: cron.to_owned(),
                    found
                }
            );
            let message = error.to_string();
            assert!(
                message.contains(&format!("has {found} fields")),
                "{message}"
            );
            assert!(
                message.contains("minute hour day-of-month month day-of-week"),
                "{message}"
            );
        }
    }

    #[test]
    fn refuses_fields_croner_cannot_parse() {
        for cron in [
            "60 2 * * *",
            "0 24 * * *",
            "0 2 32 * *",
            "0 2 0 * *",
            "0 2 * 13 *",
            "0 2 * * 8",
            "x 2 * * *",
            "*/0 2 * * *",
            "0 2 * * FRIDAY",
            "0 2 * * 5#6",
        ] {
            let error = refused(cron, 3600, "UTC");
            let WindowError::CronInvalid { pattern, reason } = &error else {
                panic!("{cron:?}: {error:?}");
            };
            assert_eq!(pattern, cron);
            assert!(!reason.is_empty());
            let message = error.to_string();
            assert!(
                message.contains(&format!("{cron:?} is invalid")),
                "{message}"
            );
            assert!(message.contains("for example \"0 2 * * 6\""), "{message}");
        }
    }

    #[test]
    fn hostile_patterns_are_refused_or_accepted_without_panicking() {
        for cron in [
            "ß ß ß ß ß",
            "٣ 2 * * *",
            "\u{0} 2 * * *",
            "- - - - -",
            "/ / / / /",
            ", , , , ,",
            "L W # + ?",
            "0 2 * * +",
            "0 2 * * ++MON",
            "0 2 * * #1",
            "0 2 * * 1#",
            "0 2 LW * *",
            "0 2 1W-3 * *",
            "99999999999999999999999 2 * * *",
            "0 2 ? ? ?",
            "0-59/59 0-23/23 1-31/31 1-12/12 0-7/7",
            "@daily @daily @daily @daily @daily",
        ] {
            // Either answer is fine; a panic fails the test.
            let _ = spec(cron, 3600, "Europe/Berlin").compile();
        }
    }

    #[test]
    fn refuses_a_pattern_that_matches_no_date() {
        for cron in [
            "0 0 31 2 *",
            "0 0 30 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 30 2 +MON",
            "0 0 31 2 +*",
        ] {
            let error = refused(cron, 3600, "UTC");
            assert_eq!(
                error,
                WindowError::CronNeverMatches {
                    pattern: cron.to_owned()
                }
            );
            let message = error.to_string();
            assert!(message.contains("matches no date"), "{message}");
            assert!(message.contains("choose a day of the month"), "{message}");
        }
        // Rare is not never: February 29th, and "L" for the last day.
        window("0 0 29 2 *", 3600, "UTC");
        window("0 0 L 2 *", 3600, "UTC");
    }

    #[test]
    fn refuses_a_pattern_whose_every_match_is_skipped_in_its_zone() {
        // The last Sunday of March at 02:xx: in Berlin the clock always jumps
        // over 02:00 to 03:00 that very night.
        let cron = "*/30 2 25-31 3 +SUN";
        let error = refused(cron, 3600, "Europe/Berlin");
        assert_eq!(
            error,
            WindowError::CronNeverOpensInZone {
                pattern: cron.to_owned(),
                timezone: "Europe/Berlin".to_owned()
            }
        );
        let message = error.to_string();
        assert!(
            message.contains("only matches local times that the clock skips"),
            "{message}"
        );
        assert!(
            message.contains("choose an hour outside the clock change"),
            "{message}"
        );
        // Elsewhere it is fine, and so is a fixed time, which opens after the
        // skipped hour.
        window(cron, 3600, "America/New_York");
        window(cron, 3600, "UTC");
        let fixed = window("30 2 25-31 3 +SUN", 3600, "Europe/Berlin");
        assert_eq!(
            fixed.next_open(at("2025-01-01T00:00:00Z")),
            Some(at("2025-03-30T03:00:00+02:00"))
        );
    }

    #[test]
    fn refuses_a_duration_out_of_range() {
        for duration_secs in [0, 1, 59] {
            let error = refused("0 2 * * *", duration_secs, "UTC");
            assert_eq!(error, WindowError::DurationTooShort { duration_secs });
            let message = error.to_string();
            assert!(message.contains("at least 60 seconds"), "{message}");
            assert!(message.contains("between 60 and 604800"), "{message}");
        }
        for duration_secs in [604_801, 1 << 40, u64::MAX] {
            let error = refused("0 2 * * *", duration_secs, "UTC");
            assert_eq!(error, WindowError::DurationTooLong { duration_secs });
            let message = error.to_string();
            assert!(message.contains("at most 604800 seconds"), "{message}");
            assert!(message.contains("between 60 and 604800"), "{message}");
        }
        window("0 2 * * *", 60, "UTC");
        window("0 2 * * *", 604_800, "UTC");
    }

    #[test]
    fn refuses_an_unknown_time_zone() {
        let error = refused("0 2 * * *", 3600, "Europe/Berln");
        assert_eq!(
            error,
            WindowError::UnknownTimeZone {
                name: "Europe/Berln".to_owned(),
                suggestion: Some("Europe/Berlin".to_owned())
            }
        );
        let message = error.to_string();
        assert!(
            message.starts_with("\"Europe/Berln\" is not a known IANA time zone; "),
            "{message}"
        );
        assert!(
            message.contains("did you mean \"Europe/Berlin\"?"),
            "{message}"
        );

        for name in [
            "",
            "Mars/Olympus_Mons",
            "+02:00",
            "Etc/Unknown",
            "Local",
            "CEST",
        ] {
            let error = refused("0 2 * * *", 3600, name);
            let WindowError::UnknownTimeZone { name: quoted, .. } = &error else {
                panic!("{name:?}: {error:?}");
            };
            assert_eq!(quoted, name);
            let message = error.to_string();
            assert!(
                message.contains("is not a known IANA time zone"),
                "{message}"
            );
            assert!(
                message.contains("\"Europe/Berlin\" or \"UTC\""),
                "{message}"
            );
        }
        let error = refused("0 2 * * *", 3600, "");
        assert_eq!(
            error.to_string(),
            "\"\" is not a known IANA time zone; use a name such as \"Europe/Berlin\" or \"UTC\""
        );

        // A huge name is quoted only in part.
        let huge = "Europe/".repeat(2000);
        let message = refused("0 2 * * *", 3600, &huge).to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(
            message.contains("…\" is not a known IANA time zone"),
            "{message}"
        );

        // jiff looks names up regardless of ASCII case.
        window("0 2 * * *", 3600, "europe/berlin");
        window("0 2 * * *", 3600, "utc");
    }

    #[test]
    fn serde_round_trip_and_strict_fields() {
        let json = r#"{"cron":"0 2 * * 6","duration_secs":7200,"timezone":"Europe/Berlin"}"#;
        let parsed: MaintenanceWindow = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, spec("0 2 * * 6", 7200, "Europe/Berlin"));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
        assert_eq!(parsed.compile().unwrap().spec(), &parsed);

        let unknown = r#"{"cron":"0 2 * * 6","duration_secs":7200,"timezone":"UTC","tz":"UTC"}"#;
        let error = serde_json::from_str::<MaintenanceWindow>(unknown).unwrap_err();
        assert!(error.to_string().contains("unknown field `tz`"), "{error}");
        let missing = r#"{"cron":"0 2 * * 6","timezone":"UTC"}"#;
        assert!(serde_json::from_str::<MaintenanceWindow>(missing).is_err());
        let negative = r#"{"cron":"0 2 * * 6","duration_secs":-1,"timezone":"UTC"}"#;
        assert!(serde_json::from_str::<MaintenanceWindow>(negative).is_err());
    }

    #[test]
    fn a_compiled_window_can_be_shared_between_threads() {
        fn shared<T: Send + Sync + Clone>() {}
        shared::<CompiledWindow>();
        shared::<MaintenanceWindow>();
        shared::<WindowError>();
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance(b"", b""), 0);
        assert_eq!(edit_distance(b"abc", b""), 3);
        assert_eq!(edit_distance(b"europe/berln", b"europe/berlin"), 1);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
    }
}
