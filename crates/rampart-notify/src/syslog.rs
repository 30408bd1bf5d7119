//! RFC 5424 syslog messages: written with every header field checked and every
//! structured-data value escaped, bounded in size, framed for TCP by octet counting (RFC 6587
//! section 3.4.1), and read back by a strict parser (the server's tests parse what the server
//! sends with it; its own tests hold it to the RFC's examples).
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID name="value" ...] BOM MSG
//! ```

use std::fmt::Write as _;

/// Longest message the server sends (RFC 5424 section 6.1: receivers should accept 2048
/// octets, and 8192 is the largest commonly accepted; RFC 5426 section 3.2 keeps UDP under
/// the path MTU where it can, but a datagram of this size still crosses loopback and most
/// networks as fragments).
pub const MAX_MESSAGE: usize = 8192;
/// Largest PRIVAL (facility 23, severity 7).
const MAX_PRIVAL: u32 = 191;
/// The UTF-8 byte-order mark that marks MSG as UTF-8 (RFC 5424 section 6.4).
pub const BOM: &[u8] = b"\xEF\xBB\xBF";
/// The nil value of any header field and of STRUCTURED-DATA.
const NIL: &str = "-";
/// The IANA-registered SD-IDs (RFC 5424 section 7); any other needs `@` and an enterprise number.
const REGISTERED_SD_IDS: [&str; 3] = ["timeQuality", "origin", "meta"];

/// Why a message could not be written or did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    #[error("syslog {field} {value:?} is invalid: {why}")]
    Field {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("the syslog message does not parse at byte {at}: {why}")]
    Parse { at: usize, why: String },
    #[error("the syslog frame does not parse: {0}")]
    Frame(String),
}

/// Syslog severities (RFC 5424 table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum SyslogSeverity {
    Emergency = 0,
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Informational = 6,
    Debug = 7,
}

/// The facility names of RFC 5424 table 1, by code.
pub const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// A facility code (0 to 23) by its name (`auth`, `local0`, ...).
pub fn facility_code(name: &str) -> Option<u8> {
    FACILITIES
        .iter()
        .position(|f| *f == name)
        .and_then(|i| u8::try_from(i).ok())
}

/// One structured-data element: `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    pub params: Vec<(String, String)>,
}

/// A message to write, or one parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage {
    /// 0 to 23 (see [`FACILITIES`]).
    pub facility: u8,
    pub severity: SyslogSeverity,
    /// RFC 3339 with the RFC's restrictions (`2003-10-11T22:14:15.003Z`), or `None` (nil).
    pub timestamp: Option<String>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub procid: Option<String>,
    pub msgid: Option<String>,
    pub structured_data: Vec<SdElement>,
    /// The free-form message; written as UTF-8 after a BOM. Empty: none.
    pub msg: String,
}

/// Checks a header field: 1 to `max` printable US-ASCII characters (33 to 126), not the nil
/// value itself.
fn check_header(field: &'static str, value: &str, max: usize) -> Result<(), SyslogError> {
    let bad = |why| SyslogError::Field {
        field,
        value: value.chars().take(64).collect(),
        why,
    };
    if value.is_empty() || value.len() > max {
        return Err(bad(
            "it must be 1 to its maximum length of printable US-ASCII",
        ));
    }
    if !value.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(bad("only printable US-ASCII without spaces is allowed"));
    }
    if value == NIL {
        return Err(bad("\"-\" is the nil value; leave the field out instead"));
    }
    Ok(())
}

/// Checks an SD-NAME: 1 to 32 printable US-ASCII characters except `=`, space, `]` and `"`.
fn check_sd_name(field: &'static str, name: &str) -> Result<(), SyslogError> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
    {
        return Err(SyslogError::Field {
            field,
            value: name.chars().take(64).collect(),
            why: "an SD name is 1 to 32 printable US-ASCII characters except '=', ']', '\"' and space",
        });
    }
    Ok(())
}

fn check_sd_id(id: &str) -> Result<(), SyslogError> {
    check_sd_name("SD-ID", id)?;
    match id.split_once('@') {
        Some((name, enterprise))
            if !name.is_empty()
                && !name.contains('@')
                && !enterprise.is_empty()
                && enterprise.bytes().all(|b| b.is_ascii_digit() || b == b'.') =>
        {
            Ok(())
        }
        None if REGISTERED_SD_IDS.contains(&id) => Ok(()),
        _ => Err(SyslogError::Field {
            field: "SD-ID",
            value: id.to_owned(),
            why: "an SD-ID is NAME@ENTERPRISE-NUMBER unless IANA registered it (timeQuality, origin, meta)",
        }),
    }
}

/// Escapes a PARAM-VALUE: `"`, `\` and `]` get a backslash (RFC 5424 section 6.3.3).
fn escape_param(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl SyslogMessage {
    /// PRIVAL: facility · 8 + severity.
    pub fn prival(&self) -> u32 {
        u32::from(self.facility) * 8 + self.severity as u32
    }

    /// The message as bytes, at most `max` (at most [`MAX_MESSAGE`]) long: the header and
    /// structured data must fit whole; MSG is cut at a character boundary to fit (a cut MSG
    /// still parses; the structured data says what the message is about).
    pub fn to_bytes(&self, max: usize) -> Result<Vec<u8>, SyslogError> {
        let max = max.min(MAX_MESSAGE);
        if self.facility > 23 {
            return Err(SyslogError::Field {
                field: "facility",
                value: self.facility.to_string(),
                why: "facilities are 0 to 23",
            });
        }
        let mut head = format!("<{}>1 ", self.prival());
        match &self.timestamp {
            Some(t) => {
                check_timestamp(t).map_err(|why| SyslogError::Field {
                    field: "TIMESTAMP",
                    value: t.clone(),
                    why,
                })?;
                head.push_str(t);
            }
            None => head.push_str(NIL),
        }
        for (field, value, limit) in [
            ("HOSTNAME", &self.hostname, 255),
            ("APP-NAME", &self.app_name, 48),
            ("PROCID", &self.procid, 128),
            ("MSGID", &self.msgid, 32),
        ] {
            head.push(' ');
            match value {
                Some(v) => {
                    check_header(field, v, limit)?;
                    head.push_str(v);
                }
                None => head.push_str(NIL),
            }
        }
        head.push(' ');
        if self.structured_data.is_empty() {
            head.push_str(NIL);
        }
        let mut seen: Vec<&str> = Vec::new();
        for element in &self.structured_data {
            check_sd_id(&element.id)?;
            if seen.contains(&element.id.as_str()) {
                return Err(SyslogError::Field {
                    field: "SD-ID",
                    value: element.id.clone(),
                    why: "an SD-ID may appear once per message",
                });
            }
            seen.push(&element.id);
            head.push('[');
            head.push_str(&element.id);
            for (name, value) in &element.params {
                check_sd_name("PARAM-NAME", name)?;
                let _ = write!(head, " {name}=\"");
                escape_param(value, &mut head);
                head.push('"');
            }
            head.push(']');
        }
        let mut out = head.into_bytes();
        if self.msg.is_empty() {
            if out.len() > max {
                return Err(self.too_long(out.len(), max));
            }
            return Ok(out);
        }
        let room = max
            .checked_sub(out.len() + 1 + BOM.len())
            .filter(|room| *room > 0)
            .ok_or_else(|| self.too_long(out.len(), max))?;
        out.push(b' ');
        out.extend_from_slice(BOM);
        out.extend_from_slice(truncate_utf8(&self.msg, room).as_bytes());
        Ok(out)
    }

    fn too_long(&self, len: usize, max: usize) -> SyslogError {
        SyslogError::Field {
            field: "STRUCTURED-DATA",
            value: format!("{len} bytes of header and structured data, limit {max}"),
            why: "the header and structured data do not fit the message size limit; send fewer parameters",
        }
    }
}

/// Unix milliseconds as an RFC 5424 TIMESTAMP in UTC with milliseconds
/// (`2003-10-11T22:14:15.003Z`); times before 1970 are written as 1970.
pub fn timestamp(unix_millis: i64) -> String {
    let millis = unix_millis.max(0);
    let secs = millis / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        millis % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (days ≥ 0): H. Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Checks a TIMESTAMP against RFC 5424 section 6.2.3: `FULL-DATE "T" PARTIAL-TIME TIME-OFFSET`,
/// an upper-case `T` and `Z`, at most six fraction digits, no leap second.
fn check_timestamp(t: &str) -> Result<(), &'static str> {
    let b = t.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let shape = "expected YYYY-MM-DDTHH:MM:SS[.FRAC](Z|+HH:MM|-HH:MM)";
    let (Some(_), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return Err(shape);
    };
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return Err(shape);
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err("a date or time field is out of range");
    }
    if second > 59 {
        return Err("leap seconds must not be used (RFC 5424 section 6.2.3)");
    }
    let mut i = 19;
    if at(i, b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start || i - start > 6 {
            return Err("TIME-SECFRAC is 1 to 6 digits");
        }
    }
    match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => Ok(()),
        Some(b'+' | b'-') if b.len() == i + 6 => {
            match (digits(i + 1..i + 3), at(i + 3, b':'), digits(i + 4..i + 6)) {
                (Some(h), true, Some(m)) if h <= 23 && m <= 59 => Ok(()),
                _ => Err("TIME-NUMOFFSET is +HH:MM or -HH:MM"),
            }
        }
        _ => Err(shape),
    }
}

// ---- framing --------------------------------------------------------------------------------

/// One message framed by octet counting for a stream transport (RFC 6587 section 3.4.1):
/// `MSG-LEN SP SYSLOG-MSG`.
pub fn octet_counted(message: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message);
    out
}

/// Takes one octet-counted frame off the front of `buf`: `Ok(Some((message, consumed)))`,
/// `Ok(None)` when more bytes are needed, an error when the length is malformed or over `max`.
pub fn take_octet_counted(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, SyslogError> {
    let Some(space) = buf.iter().position(|b| *b == b' ') else {
        if buf.len() > max.to_string().len() || !buf.iter().all(u8::is_ascii_digit) {
            return Err(SyslogError::Frame(
                "MSG-LEN is not a number followed by a space".into(),
            ));
        }
        return Ok(None);
    };
    let len_text = &buf[..space];
    if len_text.is_empty()
        || len_text[0] == b'0'
        || !len_text.iter().all(u8::is_ascii_digit)
        || len_text.len() > max.to_string().len()
    {
        return Err(SyslogError::Frame(format!(
            "MSG-LEN {:?} is not a number without leading zeros",
            String::from_utf8_lossy(len_text)
        )));
    }
    let len: usize = std::str::from_utf8(len_text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| SyslogError::Frame("MSG-LEN does not parse".into()))?;
    if len > max {
        return Err(SyslogError::Frame(format!(
            "MSG-LEN {len} is over the limit of {max}"
        )));
    }
    let start = space + 1;
    if buf.len() < start + len {
        return Ok(None);
    }
    Ok(Some((&buf[start..start + len], start + len)))
}

// ---- the strict parser ----------------------------------------------------------------------

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn fail<T>(&self, why: impl Into<String>) -> Result<T, SyslogError> {
        Err(SyslogError::Parse {
            at: self.i,
            why: why.into(),
        })
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), SyslogError> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            self.fail(format!("expected {what}"))
        }
    }

    /// A header field up to the next space: printable US-ASCII, at most `max`, `-` is nil.
    fn field(&mut self, name: &str, max: usize) -> Result<Option<String>, SyslogError> {
        let start = self.i;
        while self.b.get(self.i).is_some_and(|b| (33..=126).contains(b)) {
            self.i += 1;
        }
        let value = &self.b[start..self.i];
        if value.is_empty() || value.len() > max {
            return self.fail(format!(
                "{name} must be 1 to {max} printable US-ASCII characters"
            ));
        }
        self.expect(b' ', &format!("a space after {name}"))?;
        let value = String::from_utf8_lossy(value).into_owned();
        Ok((value != NIL).then_some(value))
    }

    fn sd_name(&mut self, what: &'static str) -> Result<String, SyslogError> {
        let start = self.i;
        while self
            .b
            .get(self.i)
            .is_some_and(|b| (33..=126).contains(b) && !matches!(b, b'=' | b']' | b'"' | b' '))
        {
            self.i += 1;
        }
        let name = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
        if name.is_empty() || name.len() > 32 {
            return self.fail(format!("{what} must be 1 to 32 characters"));
        }
        Ok(name)
    }

    fn param_value(&mut self) -> Result<String, SyslogError> {
        let mut value = Vec::new();
        loop {
            match self.b.get(self.i) {
                None => return self.fail("the PARAM-VALUE is not closed"),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b']') => return self.fail("a ']' in a PARAM-VALUE must be escaped"),
                Some(b'\\') => {
                    match self.b.get(self.i + 1) {
                        Some(c @ (b'"' | b'\\' | b']')) => {
                            value.push(*c);
                            self.i += 2;
                        }
                        // Any other backslash is a literal backslash (section 6.3.3).
                        _ => {
                            value.push(b'\\');
                            self.i += 1;
                        }
                    }
                }
                Some(c) => {
                    value.push(*c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(value).or_else(|_| self.fail("a PARAM-VALUE must be UTF-8"))
    }
}

/// Parses one message strictly by RFC 5424: PRI 0 to 191 without leading zeros, VERSION 1, a
/// valid TIMESTAMP or nil, bounded printable header fields, well-formed and unique
/// structured-data elements (SD-IDs with `@` or registered), escaped values, and MSG (UTF-8 when
/// it starts with the BOM; the BOM is removed). Anything else is an error naming where.
pub fn parse(message: &[u8]) -> Result<SyslogMessage, SyslogError> {
    if message.len() > MAX_MESSAGE {
        return Err(SyslogError::Parse {
            at: MAX_MESSAGE,
            why: format!("the message is over {MAX_MESSAGE} bytes"),
        });
    }
    let mut c = Cursor { b: message, i: 0 };
    c.expect(b'<', "'<' starting PRI")?;
    let start = c.i;
    while c.b.get(c.i).is_some_and(u8::is_ascii_digit) {
        c.i += 1;
    }
    let pri_text = &message[start..c.i];
    if pri_text.is_empty() || pri_text.len() > 3 || (pri_text.len() > 1 && pri_text[0] == b'0') {
        return c.fail("PRIVAL is 1 to 3 digits without leading zeros");
    }
    let prival: u32 = String::from_utf8_lossy(pri_text)
        .parse()
        .unwrap_or(u32::MAX);
    if prival > MAX_PRIVAL {
        return c.fail("PRIVAL is at most 191");
    }
    c.expect(b'>', "'>' ending PRI")?;
    c.expect(b'1', "VERSION 1")?;
    c.expect(b' ', "a space after VERSION")?;
    let timestamp = c.field("TIMESTAMP", 64)?;
    if let Some(t) = &timestamp {
        check_timestamp(t).or_else(|why| c.fail(why))?;
    }
    let hostname = c.field("HOSTNAME", 255)?;
    let app_name = c.field("APP-NAME", 48)?;
    let procid = c.field("PROCID", 128)?;
    let msgid = c.field("MSGID", 32)?;
    let mut structured_data: Vec<SdElement> = Vec::new();
    if c.b.get(c.i) == Some(&b'-') {
        c.i += 1;
    } else {
        if c.b.get(c.i) != Some(&b'[') {
            return c.fail("STRUCTURED-DATA is '-' or starts with '['");
        }
        while c.b.get(c.i) == Some(&b'[') {
            c.i += 1;
            let id = c.sd_name("SD-ID")?;
            check_sd_id(&id).or_else(|e| c.fail(e.to_string()))?;
            if structured_data.iter().any(|e| e.id == id) {
                return c.fail(format!("SD-ID {id} appears twice"));
            }
            let mut params = Vec::new();
            while c.b.get(c.i) == Some(&b' ') {
                c.i += 1;
                let name = c.sd_name("PARAM-NAME")?;
                c.expect(b'=', "'=' after PARAM-NAME")?;
                c.expect(b'"', "'\"' opening PARAM-VALUE")?;
                params.push((name, c.param_value()?));
            }
            c.expect(b']', "']' closing the SD-ELEMENT")?;
            structured_data.push(SdElement { id, params });
        }
    }
    let msg = match c.b.get(c.i) {
        None => String::new(),
        Some(b' ') => {
            let rest = &message[c.i + 1..];
            match rest.strip_prefix(BOM) {
                Some(text) => String::from_utf8(text.to_vec())
                    .or_else(|_| c.fail("MSG after the BOM must be UTF-8"))?,
                None => String::from_utf8_lossy(rest).into_owned(),
            }
        }
        Some(_) => return c.fail("expected a space before MSG"),
    };
    Ok(SyslogMessage {
        facility: u8::try_from(prival / 8).unwrap_or(u8::MAX),
        severity: match prival % 8 {
            0 => SyslogSeverity::Emergency,
            1 => SyslogSeverity::Alert,
            2 => SyslogSeverity::Critical,
            3 => SyslogSeverity::Error,
            4 => SyslogSeverity::Warning,
            5 => SyslogSeverity::Notice,
            6 => SyslogSeverity::Informational,
            _ => SyslogSeverity::Debug,
        },
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        msg,
    })
}

impl SyslogMessage {
    /// The value of parameter `name` of element `id`, if present.
    pub fn param(&self, id: &str, name: &str) -> Option<&str> {
        self.structured_data
            .iter()
            .find(|e| e.id == id)?
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_bom(before: &str, after: &str) -> Vec<u8> {
        let mut out = before.as_bytes().to_vec();
        out.extend_from_slice(BOM);
        out.extend_from_slice(after.as_bytes());
        out
    }

    #[test]
    fn the_rfc_examples_parse() {
        // RFC 5424 section 6.5, example 1 (with the BOM the example marks).
        let m = parse(&with_bom(
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - ",
            "'su root' failed for lonvick on /dev/pts/8",
        ))
        .unwrap();
        assert_eq!((m.facility, m.severity), (4, SyslogSeverity::Critical));
        assert_eq!(m.timestamp.as_deref(), Some("2003-10-11T22:14:15.003Z"));
        assert_eq!(m.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.app_name.as_deref(), Some("su"));
        assert_eq!(m.procid, None);
        assert_eq!(m.msgid.as_deref(), Some("ID47"));
        assert!(m.structured_data.is_empty());
        assert_eq!(m.msg, "'su root' failed for lonvick on /dev/pts/8");
        // Example 2: a numeric offset, six fraction digits, no BOM.
        let m = parse(
            b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        )
        .unwrap();
        assert_eq!((m.facility, m.severity), (20, SyslogSeverity::Notice));
        assert_eq!(m.procid.as_deref(), Some("8710"));
        assert_eq!(m.msg, "%% It's time to make the do-nuts.");
        // Example 3: structured data and a message.
        let m = parse(&with_bom(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] ",
            "An application event log entry...",
        ))
        .unwrap();
        assert_eq!(
            m.param("exampleSDID@32473", "eventSource"),
            Some("Application")
        );
        assert_eq!(m.param("exampleSDID@32473", "eventID"), Some("1011"));
        assert_eq!(m.msg, "An application event log entry...");
        // Example 4: two elements, no message.
        let m = parse(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]").unwrap();
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.param("examplePriority@32473", "class"), Some("high"));
        assert_eq!(m.msg, "");
    }

    #[test]
    fn the_parser_refuses_what_the_rfc_forbids() {
        let bad: [&[u8]; 14] = [
            b"34>1 2003-10-11T22:14:15.003Z h a - ID47 -",
            b"<192>1 2003-10-11T22:14:15.003Z h a - ID47 -",
            b"<034>1 2003-10-11T22:14:15.003Z h a - ID47 -",
            b"<34>2 2003-10-11T22:14:15.003Z h a - ID47 -",
            b"<34>1 2003-10-11t22:14:15.003z h a - ID47 -",
            b"<34>1 2003-10-11T22:14:60Z h a - ID47 -",
            b"<34>1 2003-10-11T22:14:15.0000003Z h a - ID47 -",
            b"<34>1 2003-10-11T22:14:15.003Z h a - ID47-is-far-too-long-for-a-msgid-field -",
            b"<34>1 2003-10-11T22:14:15.003Z h a - ID47 [noat x=\"1\"]",
            b"<34>1 2003-10-11T22:14:15.003Z h a - ID47 [a@1 x=\"1\"][a@1 y=\"2\"]",
            b"<34>1 2003-10-11T22:14:15.003Z h a - ID47 [a@1 x=\"un]escaped\"]",
            b"<34>1 2003-10-11T22:14:15.003Z h a - ID47 [a@1 x=\"open]",
            b"<34>1 2003-10-11T22:14:15.003Z h a - ID47 [a@1 x=1]",
            b"<34>1 2003-10-11T22:14:15.003Z h a - ID47 -x",
        ];
        for message in bad {
            assert!(
                parse(message).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(message)
            );
        }
    }

    fn alert_message(msg: &str) -> SyslogMessage {
        SyslogMessage {
            facility: 4,
            severity: SyslogSeverity::Alert,
            timestamp: Some(timestamp(1_065_910_455_003)),
            hostname: Some("rampart.example.com".into()),
            app_name: Some("rampart".into()),
            procid: None,
            msgid: Some("incident.alert".into()),
            structured_data: vec![SdElement {
                id: "incident@32473".into(),
                params: vec![
                    ("id".into(), "inc-1".into()),
                    ("title".into(), "quote \"x\" back\\slash ]bracket".into()),
                ],
            }],
            msg: msg.into(),
        }
    }

    #[test]
    fn written_messages_escape_values_and_parse_back() {
        let m = alert_message("firmware ü on 3 devices");
        let bytes = m.to_bytes(MAX_MESSAGE).unwrap();
        assert!(bytes.starts_with(b"<33>1 2003-10-11T22:14:15.003Z rampart.example.com rampart - incident.alert [incident@32473 id=\"inc-1\" title=\"quote \\\"x\\\" back\\\\slash \\]bracket\"] \xEF\xBB\xBF"));
        assert_eq!(parse(&bytes).unwrap(), m);
    }

    #[test]
    fn an_oversized_message_is_cut_at_a_character_boundary() {
        let m = alert_message(&"é".repeat(MAX_MESSAGE));
        let bytes = m.to_bytes(MAX_MESSAGE).unwrap();
        assert!(bytes.len() <= MAX_MESSAGE && bytes.len() >= MAX_MESSAGE - 1);
        let parsed = parse(&bytes).unwrap();
        assert!(parsed.msg.chars().all(|c| c == 'é'));
        // A header that cannot fit is an error, not a cut header.
        assert!(m.to_bytes(40).is_err());
    }

    #[test]
    fn bad_header_fields_are_refused_when_writing() {
        let mut m = alert_message("x");
        m.hostname = Some("has space".into());
        assert!(m.to_bytes(MAX_MESSAGE).is_err());
        let mut m = alert_message("x");
        m.structured_data[0].id = "incident".into();
        assert!(m.to_bytes(MAX_MESSAGE).is_err());
        let mut m = alert_message("x");
        m.facility = 24;
        assert!(m.to_bytes(MAX_MESSAGE).is_err());
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_065_910_455_003), "2003-10-11T22:14:15.003Z");
        // A leap day and the end of a year.
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(timestamp(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn octet_counting_frames_and_unframes() {
        let a = octet_counted(b"<34>1 - - - - - -");
        let b = octet_counted(b"<35>1 - - - - - - hi");
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        let (first, used) = take_octet_counted(&stream, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(first, b"<34>1 - - - - - -");
        let (second, used2) = take_octet_counted(&stream[used..], MAX_MESSAGE)
            .unwrap()
            .unwrap();
        assert_eq!(second, b"<35>1 - - - - - - hi");
        assert_eq!(used + used2, stream.len());
        assert_eq!(take_octet_counted(&a[..5], MAX_MESSAGE).unwrap(), None);
        assert!(take_octet_counted(b"017 x", MAX_MESSAGE).is_err());
        assert!(take_octet_counted(b"99999 x", MAX_MESSAGE).is_err());
        assert!(take_octet_counted(b"<34>1", MAX_MESSAGE).is_err());
        assert_eq!(facility_code("local0"), Some(16));
        assert_eq!(facility_code("nope"), None);
    }
}
