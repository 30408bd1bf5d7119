//! CVSS scores against published vectors and scores, every CVSS vector of the real PyPI
//! advisories, and vectors that must be refused.

use rampart_vuln::severity::{CvssVersion, MAX_VECTOR_BYTES, Rating, SeverityError, score_vector};

fn score(vector: &str) -> (f64, Rating) {
    let severity = score_vector(vector).unwrap_or_else(|e| panic!("{vector}: {e}"));
    (severity.score, severity.rating)
}

#[test]
fn cvss_v3_base_scores_match_published_scores() {
    // NVD's and the CVSS v3.1 specification's examples.
    let published = [
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            9.8,
            Rating::Critical,
        ),
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
            6.1,
            Rating::Medium,
        ),
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
            7.5,
            Rating::High,
        ),
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N",
            5.3,
            Rating::Medium,
        ),
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
            10.0,
            Rating::Critical,
        ),
        (
            "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
            7.8,
            Rating::High,
        ),
        (
            "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N",
            3.1,
            Rating::Low,
        ),
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N",
            0.0,
            Rating::None,
        ),
        (
            "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            9.8,
            Rating::Critical,
        ),
        (
            "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
            6.1,
            Rating::Medium,
        ),
    ];
    for (vector, expected, rating) in published {
        assert_eq!(score(vector), (expected, rating), "{vector}");
    }
    assert_eq!(
        score_vector("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
            .unwrap()
            .version,
        CvssVersion::V3_0
    );
    // Temporal metrics do not change the base score.
    assert_eq!(
        score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:U").0,
        9.8
    );
}

#[test]
fn cvss_v4_scores_match_published_scores() {
    // FIRST's CVSS v4.0 calculator.
    let published = [
        (
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            9.3,
            Rating::Critical,
        ),
        (
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H",
            10.0,
            Rating::Critical,
        ),
        (
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N",
            0.0,
            Rating::None,
        ),
    ];
    for (vector, expected, rating) in published {
        assert_eq!(score(vector), (expected, rating), "{vector}");
    }
    assert_eq!(
        score_vector(published[0].0).unwrap().version,
        CvssVersion::V4_0
    );
}

#[test]
fn ratings_follow_the_cvss_scale_at_its_boundaries() {
    for (value, rating) in [
        (0.0, Rating::None),
        (0.1, Rating::Low),
        (3.9, Rating::Low),
        (4.0, Rating::Medium),
        (6.9, Rating::Medium),
        (7.0, Rating::High),
        (8.9, Rating::High),
        (9.0, Rating::Critical),
        (10.0, Rating::Critical),
    ] {
        assert_eq!(Rating::from_score(value), rating, "{value}");
    }
    assert!(Rating::Critical > Rating::High && Rating::Low > Rating::None);
}

#[test]
fn every_cvss_vector_of_the_real_pypi_advisories_scores() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/osv-pypi"
    );
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!("{dir}: {e}: the shared OSV vectors must be beside the repository")
    });
    let mut scored = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for severity in record["severity"].as_array().into_iter().flatten() {
            let vector = severity["score"].as_str().unwrap();
            let scored_vector =
                score_vector(vector).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!((0.0..=10.0).contains(&scored_vector.score), "{vector}");
            assert_eq!(
                scored_vector.rating,
                Rating::from_score(scored_vector.score)
            );
            scored += 1;
        }
    }
    // The feed at its pinned commit carries 202 CVSS v3 vectors.
    assert_eq!(scored, 202);
}

#[test]
fn bad_vectors_are_refused_with_a_reason() {
    let too_long = format!(
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H{}",
        "/E:U".repeat(MAX_VECTOR_BYTES)
    );
    assert!(matches!(
        score_vector(&too_long),
        Err(SeverityError::TooLong { .. })
    ));
    for unsupported in [
        "AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "CVSS:3.2/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "",
    ] {
        assert!(
            matches!(
                score_vector(unsupported),
                Err(SeverityError::UnsupportedVersion { .. })
            ),
            "{unsupported}"
        );
    }
    // A v3 vector without its availability metric would otherwise score as if A:N.
    assert_eq!(
        score_vector("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"),
        Err(SeverityError::MissingMetric {
            vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H".into(),
            metric: "A"
        })
    );
    for malformed in [
        "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/A:L",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:Q",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/SA:N",
    ] {
        let err = score_vector(malformed).unwrap_err();
        assert!(
            matches!(
                err,
                SeverityError::Malformed { .. } | SeverityError::MissingMetric { .. }
            ),
            "{malformed}: {err}"
        );
    }
}
