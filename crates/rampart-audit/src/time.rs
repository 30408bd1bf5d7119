//! Conversions between unix seconds and RFC 3339 timestamps (UTC), for callers that hold one
//! and for the CSV export. Pure arithmetic on the proleptic Gregorian calendar.

use crate::AuditError;
use crate::record::{MAX_TIME, MIN_TIME};

/// `time` as RFC 3339 in UTC, `YYYY-MM-DDTHH:MM:SSZ`; `None` outside years 0000 to 9999.
pub fn rfc3339_from_unix(time: i64) -> Option<String> {
    if !(MIN_TIME..=MAX_TIME).contains(&time) {
        return None;
    }
    let days = time.div_euclid(86_400);
    let secs = time.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// Reads an RFC 3339 timestamp (`2026-01-01T12:00:00Z`, `2026-01-01T13:00:00.250+01:00`) as
/// unix seconds. A fraction of a second is dropped; a leap second (`:60`) is refused, as is a
/// time outside years 0000 to 9999 UTC.
pub fn unix_from_rfc3339(input: &str) -> Result<i64, AuditError> {
    parse(input.as_bytes()).map_err(|reason| AuditError::Timestamp {
        input: input.chars().take(64).collect(),
        reason: reason.to_string(),
    })
}

fn parse(b: &[u8]) -> Result<i64, &'static str> {
    const SHAPE: &str = "expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)";
    let num = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let digits = b.get(range).ok_or(SHAPE)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(SHAPE);
        }
        Ok(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8]| -> Result<(), &'static str> {
        match b.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(SHAPE),
        }
    };
    let year = num(0..4)?;
    sep(4, b"-")?;
    let month = num(5..7)?;
    sep(7, b"-")?;
    let day = num(8..10)?;
    sep(10, b"Tt ")?;
    let hour = num(11..13)?;
    sep(13, b":")?;
    let minute = num(14..16)?;
    sep(16, b":")?;
    let second = num(17..19)?;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err("a fraction of a second needs at least one digit");
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 => {
            sep(i + 3, b":")?;
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err("offset out of range");
            }
            let offset = oh * 3600 + om * 60;
            if sign == b'-' { -offset } else { offset }
        }
        _ => return Err(SHAPE),
    };
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    if hour > 23 || minute > 59 {
        return Err("hour or minute out of range");
    }
    if second == 60 {
        return Err("leap seconds are not supported");
    }
    if second > 59 {
        return Err("second out of range");
    }
    let time =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    if !(MIN_TIME..=MAX_TIME).contains(&time) {
        return Err("outside years 0000 to 9999 UTC");
    }
    Ok(time)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_from_unix(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_from_unix(1_767_225_600).unwrap(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339_from_unix(951_782_400).unwrap(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(rfc3339_from_unix(-1).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_from_unix(MIN_TIME).unwrap(), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(MAX_TIME).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_from_unix(MIN_TIME - 1), None);
        assert_eq!(rfc3339_from_unix(MAX_TIME + 1), None);
        assert_eq!(rfc3339_from_unix(i64::MIN), None);
        assert_eq!(rfc3339_from_unix(i64::MAX), None);
    }

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(
            unix_from_rfc3339("2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600
        );
        assert_eq!(
            unix_from_rfc3339("2026-01-01t00:00:00z").unwrap(),
            1_767_225_600
        );
        assert_eq!(
            unix_from_rfc3339("2026-01-01T01:30:00.999+01:30").unwrap(),
            1_767_225_600
        );
        assert_eq!(
            unix_from_rfc3339("2025-12-31T23:00:00-01:00").unwrap(),
            1_767_225_600
        );
        assert_eq!(unix_from_rfc3339("0000-01-01T00:00:00Z").unwrap(), MIN_TIME);
        assert_eq!(unix_from_rfc3339("9999-12-31T23:59:59Z").unwrap(), MAX_TIME);
    }

    #[test]
    fn round_trips() {
        let mut t = MIN_TIME;
        while t <= MAX_TIME {
            let s = rfc3339_from_unix(t).unwrap();
            assert_eq!(unix_from_rfc3339(&s).unwrap(), t, "{s}");
            t += 86_400 * 13 + 3_607;
        }
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "2026",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+01",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00.Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-12-31T23:59:60Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00Zjunk",
            "+026-01-01T00:00:00Z",
            "0000-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-00:01",
            "２０２６-01-01T00:00:00Z",
        ] {
            let err = unix_from_rfc3339(bad).unwrap_err();
            assert!(matches!(err, AuditError::Timestamp { .. }), "{bad}: {err}");
        }
        let long = "9".repeat(10_000);
        let AuditError::Timestamp { input, .. } = unix_from_rfc3339(&long).unwrap_err() else {
            panic!("wrong error");
        };
        assert_eq!(input.len(), 64);
    }
}
