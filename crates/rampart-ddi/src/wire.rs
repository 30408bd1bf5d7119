//! The JSON documents of the DDI API. Requests ignore unknown fields (real clients send legacy
//! `id` and `time` fields); answers leave out what hawkBit leaves out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest poll interval a `HH:MM:SS` string can say; hawkBit switches to ISO-8601 beyond it,
/// which SWUpdate and rauc-hawkbit-updater cannot parse, so Rampart never goes there.
pub const MAX_SLEEP_SECS: u64 = 24 * 3600 - 1;

/// Messages one feedback may carry (hawkBit's default quota), after long details are split.
pub const MAX_MESSAGES_PER_FEEDBACK: usize = 50;
/// Detail strings are stored in pieces of at most this many characters.
pub const MESSAGE_PIECE_CHARS: usize = 512;

/// `config.polling.sleep`: `HH:MM:SS`, between 1 s and 23:59:59.
pub fn polling_sleep(secs: u64) -> String {
    let s = secs.clamp(1, MAX_SLEEP_SECS);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A HAL link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
}

impl Link {
    pub fn new(href: impl Into<String>) -> Link {
        Link { href: href.into() }
    }
}

/// Named links; left out of a document when empty.
pub type Links = BTreeMap<String, Link>;

/// The poll answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollAnswer {
    pub config: PollConfig,
    #[serde(rename = "_links", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: Links,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollConfig {
    pub polling: Polling,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polling {
    pub sleep: String,
}

impl PollAnswer {
    pub fn new(sleep_secs: u64, links: Links) -> PollAnswer {
        PollAnswer {
            config: PollConfig {
                polling: Polling {
                    sleep: polling_sleep(sleep_secs),
                },
            },
            links,
        }
    }
}

/// `skip`, `attempt` or `forced`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Skip,
    Attempt,
    Forced,
}

/// Whether the device's maintenance window is open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Available,
    Unavailable,
}

/// `deploymentBase/{id}` and `installedBase/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentBase {
    /// The action id, as a string.
    pub id: String,
    pub deployment: Deployment,
    #[serde(rename = "actionHistory", skip_serializing_if = "Option::is_none")]
    pub action_history: Option<ActionHistory>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub download: Mode,
    pub update: Mode,
    #[serde(rename = "maintenanceWindow", skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<Window>,
    pub chunks: Vec<Chunk>,
}

/// One software module of the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub part: String,
    pub version: String,
    pub name: String,
    pub artifacts: Vec<Artifact>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub metadata: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One file of a software module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub filename: String,
    pub hashes: Hashes,
    pub size: u64,
    #[serde(rename = "_links")]
    pub links: Links,
}

/// Lower-case hex digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    pub sha1: String,
    pub md5: String,
    pub sha256: String,
}

/// Messages the device sent about an action, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionHistory {
    pub status: String,
    pub messages: Vec<String>,
}

/// `cancelAction/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelActionDoc {
    pub id: String,
    #[serde(rename = "cancelAction")]
    pub cancel_action: StopId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopId {
    #[serde(rename = "stopId")]
    pub stop_id: String,
}

/// `status.execution` of a feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    Closed,
    Proceeding,
    Canceled,
    Scheduled,
    Rejected,
    Resumed,
    Downloaded,
    Download,
}

impl Execution {
    pub fn as_str(self) -> &'static str {
        match self {
            Execution::Closed => "closed",
            Execution::Proceeding => "proceeding",
            Execution::Canceled => "canceled",
            Execution::Scheduled => "scheduled",
            Execution::Rejected => "rejected",
            Execution::Resumed => "resumed",
            Execution::Downloaded => "downloaded",
            Execution::Download => "download",
        }
    }
}

/// `status.result.finished` of a feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finished {
    Success,
    Failure,
    None,
}

impl Finished {
    pub fn as_str(self) -> &'static str {
        match self {
            Finished::Success => "success",
            Finished::Failure => "failure",
            Finished::None => "none",
        }
    }
}

/// A feedback body (deployment or cancellation). Unknown fields (`id`, `time`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Feedback {
    pub status: FeedbackStatus,
    /// When it happened on the device, epoch milliseconds (informational).
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FeedbackStatus {
    pub execution: Execution,
    pub result: FeedbackResult,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FeedbackResult {
    pub finished: Finished,
    /// Parsed and ignored, as hawkBit does (SWUpdate sends `cnt > of`).
    #[serde(default)]
    pub progress: Option<serde_json::Value>,
}

impl Feedback {
    /// The messages to record: the details cut into pieces of at most 512 characters, then
    /// the status code as a message. `Err` when there are more than hawkBit's 50.
    pub fn messages(&self) -> Result<Vec<String>, usize> {
        let mut out = Vec::new();
        for d in &self.status.details {
            let chars: Vec<char> = d.chars().collect();
            if chars.is_empty() {
                continue;
            }
            for piece in chars.chunks(MESSAGE_PIECE_CHARS) {
                out.push(piece.iter().collect());
                if out.len() > MAX_MESSAGES_PER_FEEDBACK {
                    return Err(out.len());
                }
            }
        }
        if let Some(code) = self.status.code {
            out.push(format!("Device reported status code: {code}"));
        }
        if out.len() > MAX_MESSAGES_PER_FEEDBACK {
            return Err(out.len());
        }
        Ok(out)
    }
}

/// hawkBit's error document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "exceptionClass")]
    pub exception_class: String,
    #[serde(rename = "errorCode")]
    pub error_code: String,
    pub message: String,
}

/// The `.MD5SUM` body: `md5sum -c` format without the final newline.
pub fn md5sum_line(md5_hex: &str, filename: &str) -> String {
    format!("{md5_hex}  {filename}")
}

/// Parses a request body, tolerating raw control characters inside strings: SWUpdate puts
/// unescaped newlines from its own error messages into feedback details, which strict JSON
/// refuses. Outside strings such characters are whitespace, so turning every one into a space
/// changes no valid document's meaning.
pub fn parse_lenient<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(first) => {
            if !body
                .iter()
                .any(|b| *b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | b' '))
                && !body.iter().any(|b| matches!(b, b'\n' | b'\r' | b'\t'))
            {
                return Err(first);
            }
            let cleaned: Vec<u8> = body
                .iter()
                .map(|b| if *b < 0x20 { b' ' } else { *b })
                .collect();
            serde_json::from_slice(&cleaned).map_err(|_| first)
        }
    }
}
