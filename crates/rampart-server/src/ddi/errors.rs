//! The DDI error document and answers (hawkBit's status codes and error bodies).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_db::DbError;
use rampart_db::DomainError;
use rampart_ddi::wire::ErrorBody;
use serde_json::json;

use crate::listen::auth_failures::FailureKind;
use crate::listen::http::ApiError;

/// A DDI error: hawkBit's status codes, and its error document unless the status alone says
/// it (hawkBit answers 410 and some 404s with no body).
#[derive(Debug)]
pub(crate) struct DdiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) empty: bool,
    /// A failed authentication of this kind (counted and slowed down per source by
    /// [`crate::listen::auth_failures::guard`]).
    pub(super) failure: Option<FailureKind>,
}

impl DdiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> DdiError {
        DdiError {
            status,
            code,
            message: message.into(),
            empty: false,
            failure: None,
        }
    }

    pub(super) fn empty(status: StatusCode) -> DdiError {
        DdiError {
            status,
            code: "",
            message: String::new(),
            empty: true,
            failure: None,
        }
    }

    pub(super) fn unauthorized(kind: FailureKind, message: impl Into<String>) -> DdiError {
        DdiError {
            failure: Some(kind),
            ..DdiError::new(
                StatusCode::UNAUTHORIZED,
                "hawkbit.server.error.unauthorized",
                message,
            )
        }
    }

    pub(super) fn not_found(message: impl Into<String>) -> DdiError {
        DdiError::new(
            StatusCode::NOT_FOUND,
            "hawkbit.server.error.repo.entitiyNotFound",
            message,
        )
    }

    pub(super) fn bad_body(message: impl Into<String>) -> DdiError {
        DdiError::new(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.rest.body.notReadable",
            message,
        )
    }

    pub(super) fn unavailable(context: &str, e: impl std::fmt::Display) -> DdiError {
        crate::observe::log::error(context, json!({"error": e.to_string()}));
        DdiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rampart.storage_unavailable",
            "the server could not complete this request; retry later",
        )
    }

    pub(super) fn db(context: &str, e: DbError) -> DdiError {
        match e {
            DbError::Domain(DomainError::Invalid(m)) => DdiError::new(
                StatusCode::BAD_REQUEST,
                "hawkbit.server.error.repo.constraintViolation",
                m,
            ),
            DbError::Domain(DomainError::UnknownDevice(d)) => {
                DdiError::not_found(format!("Target with given identifier {d} does not exist."))
            }
            other => DdiError::unavailable(context, other),
        }
    }
}

impl From<ApiError> for DdiError {
    fn from(e: ApiError) -> DdiError {
        let code = match e.status {
            StatusCode::PAYLOAD_TOO_LARGE => "rampart.payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "rampart.unsupported_media_type",
            StatusCode::REQUEST_TIMEOUT => "rampart.request_timeout",
            StatusCode::RANGE_NOT_SATISFIABLE => "rampart.range_not_satisfiable",
            StatusCode::SERVICE_UNAVAILABLE => "rampart.unavailable",
            _ => "hawkbit.server.error.rest.body.notReadable",
        };
        DdiError::new(e.status, code, e.detail)
    }
}

impl IntoResponse for DdiError {
    fn into_response(self) -> Response {
        let mut response = if self.empty {
            self.status.into_response()
        } else {
            let body = ErrorBody {
                exception_class: "io.rampart.ddi.DdiException".into(),
                error_code: self.code.into(),
                message: self.message,
            };
            crate::listen::http::json_response(self.status, &body)
        };
        if let Some(kind) = self.failure {
            response.extensions_mut().insert(kind);
        }
        response
    }
}

pub(super) type Answer = Result<Response, DdiError>;

pub(super) fn ok_empty() -> Response {
    // SWUpdate counts only 200, 206 and 226 as success: never 204.
    (StatusCode::OK, "").into_response()
}

pub(super) fn json_answer(value: &impl serde::Serialize) -> Answer {
    let body =
        serde_json::to_vec(value).map_err(|e| DdiError::unavailable("encoding a DDI answer", e))?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/hal+json"),
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn errors_are_hawkbits_error_document() {
        let response = DdiError::not_found("no such action").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: ErrorBody = serde_json::from_slice(&body_of(response).await).unwrap();
        assert_eq!(body.error_code, "hawkbit.server.error.repo.entitiyNotFound");
        assert_eq!(body.exception_class, "io.rampart.ddi.DdiException");
        assert_eq!(body.message, "no such action");
    }

    #[tokio::test]
    async fn an_empty_error_has_no_body_and_success_is_never_204() {
        let response = DdiError::empty(StatusCode::GONE).into_response();
        assert_eq!(response.status(), StatusCode::GONE);
        assert!(body_of(response).await.is_empty());
        assert_eq!(ok_empty().status(), StatusCode::OK);
    }

    #[test]
    fn failed_authentications_are_marked_for_the_guard() {
        let response =
            DdiError::unauthorized(FailureKind::DdiTargetToken, "wrong token").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.extensions().get::<FailureKind>(),
            Some(&FailureKind::DdiTargetToken)
        );
        let other = DdiError::bad_body("x").into_response();
        assert_eq!(other.extensions().get::<FailureKind>(), None);
    }

    #[test]
    fn api_errors_and_storage_errors_keep_their_status() {
        let e = DdiError::from(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "over 64 KiB",
        ));
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.code, "rampart.payload_too_large");
        assert_eq!(e.message, "over 64 KiB");
        let e = DdiError::from(ApiError::invalid("bad"));
        assert_eq!(e.code, "hawkbit.server.error.rest.body.notReadable");
        let e = DdiError::db(
            "x",
            DbError::Domain(DomainError::Invalid("name too long".into())),
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = DdiError::db(
            "x",
            DbError::Domain(DomainError::UnknownDevice("d1".into())),
        );
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(e.message.contains("d1"));
    }
}
