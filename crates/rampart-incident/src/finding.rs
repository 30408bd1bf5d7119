//! What a detector found: the cause (which deduplicates incidents), how bad it is, the device
//! and release involved, and when the earliest evidence happened. The server's incident store
//! records a finding by opening the cause's incident or joining the open one.

use serde::{Deserialize, Serialize};

use crate::model::{Cause, Severity};

/// One detector finding, handed to the incident store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The cause: one open incident per cause, further findings of it join that incident.
    pub cause: Cause,
    pub severity: Severity,
    /// A one-line human title for the incident (used when the finding opens it).
    pub title: String,
    /// The device the finding is about; `None` for incident-wide causes (an engine stalled,
    /// an unknown release seen in the transparency log).
    pub device_id: Option<String>,
    /// The release involved, when one is.
    pub release: Option<String>,
    /// Unix seconds of the earliest evidence (a report's or event's own time), so time to
    /// detect = detected_at - first_signal_at.
    pub first_signal_at: i64,
    /// The detector's details (a JSON object).
    pub detail: serde_json::Value,
}

/// Longest text of a finding (title, cause key, device id, release), bytes: what the incident
/// store accepts.
pub const MAX_FINDING_TEXT: usize = 256;

impl Finding {
    /// The finding with every text field made storable: control characters replaced and each
    /// field cut to [`MAX_FINDING_TEXT`] bytes at a character boundary. Detectors build titles and
    /// keys from what devices and monitors sent; a finding the store would refuse would be read
    /// again and refused again forever, so the detector hides nothing and blocks nothing.
    pub fn bounded(mut self) -> Self {
        self.title = bounded_text(&self.title);
        if self.title.is_empty() {
            self.title = format!("{} finding", self.cause.detector.as_str());
        }
        self.cause.key = bounded_text(&self.cause.key);
        self.device_id = self.device_id.map(|d| bounded_text(&d));
        self.release = self
            .release
            .map(|r| bounded_text(&r))
            .filter(|r| !r.is_empty());
        self
    }
}

/// `s` with control characters replaced by U+FFFD, cut to [`MAX_FINDING_TEXT`] bytes.
fn bounded_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_FINDING_TEXT));
    for c in s.chars() {
        let c = if c.is_control() { '\u{FFFD}' } else { c };
        if out.len() + c.len_utf8() > MAX_FINDING_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Detector;

    #[test]
    fn bounded_findings_fit_the_store_whatever_the_signal_carried() {
        let f = Finding {
            cause: Cause {
                detector: Detector::UnknownSignedRelease,
                key: format!("{}:{}", "é".repeat(300), "0".repeat(64)),
            },
            severity: Severity::Critical,
            title: format!("a release: {}\n{}", "x".repeat(300), "\u{7}"),
            device_id: Some("d\r1".into()),
            release: Some("\u{0}".repeat(400)),
            first_signal_at: 0,
            detail: serde_json::json!({}),
        }
        .bounded();
        for text in [&f.title, &f.cause.key, f.device_id.as_ref().unwrap()] {
            assert!(
                !text.is_empty() && text.len() <= MAX_FINDING_TEXT,
                "{text:?}"
            );
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        assert_eq!(f.device_id.as_deref(), Some("d\u{FFFD}1"));
        assert!(f.release.as_ref().unwrap().len() <= MAX_FINDING_TEXT);
        assert!(f.title.starts_with("a release: xxx"));
    }
}
