//! Checks of what a DDI request names: controller ids, action ids, token digests, duplicate
//! keys, query strings. Pure: no state, no I/O.

use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;

use super::errors::*;

/// Equal digests, compared in constant time.
pub(super) fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A controller id is a device id: the one grammar of [`crate::listen::http::check_device_id`] (a
/// certificate's device and a token's controller must be able to name the same row, and the id
/// is a path segment of every link the server hands out).
pub(super) fn check_controller(id: &str) -> Result<(), DdiError> {
    if rampart_pki::validate_device_id(id).is_err() {
        return Err(DdiError::new(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.repo.constraintViolation",
            crate::listen::http::device_id_problem(id),
        ));
    }
    Ok(())
}

/// A query string that is not what the route takes: hawkBit's error document, not axum's
/// plain-text rejection.
pub(super) fn query_error(e: QueryRejection) -> DdiError {
    DdiError::new(
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.param.invalid",
        format!("the query string is not valid: {}", e.body_text()),
    )
}

/// A feedback or configData body that names a key twice in one object (the one JSON policy of
/// [`crate::listen::http::parse_json`]). DDI clients' bodies may carry raw control characters, which
/// the lenient parser reads as spaces; the check reads them the same way.
pub(super) fn check_unique_keys(bytes: &[u8]) -> Result<(), DdiError> {
    let spaced: Vec<u8> = bytes
        .iter()
        .map(|b| if *b < 0x20 { b' ' } else { *b })
        .collect();
    match crate::listen::http::duplicate_key(&spaced) {
        Some(key) => Err(DdiError::bad_body(
            crate::listen::http::duplicate_key_error(&key).detail,
        )),
        None => Ok(()),
    }
}

pub(super) fn parse_action_id(s: &str) -> Result<i64, DdiError> {
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        DdiError::new(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.rest.param.invalid",
            format!("action id {s:?} is not a positive number"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_only_when_equal_and_not_empty() {
        assert!(same_digest("ab12", "ab12"));
        assert!(!same_digest("ab12", "ab13"));
        assert!(!same_digest("ab12", "ab123"));
        // An empty stored digest (no token set) never matches an empty presented one.
        assert!(!same_digest("", ""));
    }

    #[test]
    fn controller_ids_follow_the_device_id_grammar() {
        check_controller("dev-0001").unwrap();
        for bad in ["", "a/b", "a b", "ünïcode", &"x".repeat(300)] {
            let e = check_controller(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(e.code, "hawkbit.server.error.repo.constraintViolation");
        }
    }

    #[test]
    fn action_ids_are_positive_numbers() {
        assert_eq!(parse_action_id("7").unwrap(), 7);
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999"] {
            let e = parse_action_id(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(e.code, "hawkbit.server.error.rest.param.invalid");
        }
    }

    #[test]
    fn a_key_named_twice_is_refused_also_across_control_characters() {
        check_unique_keys(br#"{"a": 1, "b": {"a": 2}}"#).unwrap();
        for bad in [&br#"{"a": 1, "a": 2}"#[..], b"{\"a\": 1,\x01\"a\": 2}"] {
            let e = check_unique_keys(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.code, "hawkbit.server.error.rest.body.notReadable");
            assert!(e.message.contains("\"a\""), "{}", e.message);
        }
    }
}
