//! CVSS vectors to a base score and a qualitative rating. CVSS v3.0 and v3.1 (the spec's base
//! equations, with each version's Roundup) and v4.0 (the spec's MacroVector lookup and
//! interpolation) are computed by the `cvss` crate (RustSec; no dependencies): see
//! docs/decisions/0040-cvss-scoring.md. This module bounds the input, insists on every base
//! metric (the crate's v3 parser lets one be missing and scores it as zero) and maps the score
//! to Rampart's rating.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest vector accepted (a v4.0 vector with every supplemental and environmental metric is
/// under 300 bytes).
pub const MAX_VECTOR_BYTES: usize = 512;

/// The CVSS versions scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CvssVersion {
    #[serde(rename = "3.0")]
    V3_0,
    #[serde(rename = "3.1")]
    V3_1,
    #[serde(rename = "4.0")]
    V4_0,
}

/// The qualitative rating of a score (the same scale in CVSS v3.x and v4.0): none 0.0, low
/// 0.1-3.9, medium 4.0-6.9, high 7.0-8.9, critical 9.0-10.0. Ordered from least to most
/// severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Rating {
    /// The rating of a score on the CVSS scale.
    pub fn from_score(score: f64) -> Rating {
        if score >= 9.0 {
            Rating::Critical
        } else if score >= 7.0 {
            Rating::High
        } else if score >= 4.0 {
            Rating::Medium
        } else if score > 0.0 {
            Rating::Low
        } else {
            Rating::None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rating::None => "none",
            Rating::Low => "low",
            Rating::Medium => "medium",
            Rating::High => "high",
            Rating::Critical => "critical",
        }
    }
}

/// A scored vector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Severity {
    pub version: CvssVersion,
    /// The base score (v3.x) or CVSS-B / BT / BE / BTE score (v4.0, by the metrics given),
    /// 0.0 to 10.0 with one decimal.
    pub score: f64,
    pub rating: Rating,
}

/// Why a vector could not be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeverityError {
    #[error(
        "the CVSS vector is {len} bytes, over the {MAX_VECTOR_BYTES}-byte limit: check the advisory's severity field"
    )]
    TooLong { len: usize },
    #[error(
        "{vector:?} is not a CVSS v3.0, v3.1 or v4.0 vector (it must start with \"CVSS:3.0/\", \"CVSS:3.1/\" or \"CVSS:4.0/\"; CVSS v2 is not scored)"
    )]
    UnsupportedVersion { vector: String },
    #[error(
        "the CVSS vector {vector:?} lacks the base metric {metric}: every base metric must be given"
    )]
    MissingMetric {
        vector: String,
        metric: &'static str,
    },
    #[error("the CVSS vector {vector:?} is malformed: {reason}")]
    Malformed { vector: String, reason: String },
}

/// Base metrics every CVSS v3.x vector must give.
const V3_BASE_METRICS: [&str; 8] = ["AV", "AC", "PR", "UI", "S", "C", "I", "A"];

/// Scores a CVSS v3.0, v3.1 or v4.0 vector (`CVSS:3.1/AV:N/AC:L/...`).
pub fn score_vector(vector: &str) -> Result<Severity, SeverityError> {
    if vector.len() > MAX_VECTOR_BYTES {
        return Err(SeverityError::TooLong { len: vector.len() });
    }
    let version = if vector.starts_with("CVSS:3.0/") {
        CvssVersion::V3_0
    } else if vector.starts_with("CVSS:3.1/") {
        CvssVersion::V3_1
    } else if vector.starts_with("CVSS:4.0/") {
        CvssVersion::V4_0
    } else {
        return Err(SeverityError::UnsupportedVersion {
            vector: vector.to_owned(),
        });
    };
    let malformed = |e: cvss::Error| SeverityError::Malformed {
        vector: vector.to_owned(),
        reason: e.to_string(),
    };
    let score = match version {
        CvssVersion::V3_0 | CvssVersion::V3_1 => {
            for metric in V3_BASE_METRICS {
                let given = vector
                    .split('/')
                    .skip(1)
                    .any(|part| part.split_once(':').is_some_and(|(key, _)| key == metric));
                if !given {
                    return Err(SeverityError::MissingMetric {
                        vector: vector.to_owned(),
                        metric,
                    });
                }
            }
            cvss::v3::Vector::from_str(vector)
                .map_err(malformed)?
                .base_score()
                .value()
        }
        // The v4.0 parser refuses a vector without every base metric itself.
        CvssVersion::V4_0 => cvss::v4::Vector::from_str(vector)
            .map_err(malformed)?
            .score()
            .value(),
    };
    Ok(Severity {
        version,
        score,
        rating: Rating::from_score(score),
    })
}
