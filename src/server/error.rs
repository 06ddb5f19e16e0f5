//! JSON errors: every failure the server answers is `{"error":{"code","message"}}`.
//!
//! Business rejections and bad input are 4xx with the domain's stable code; database failures
//! are 500 (or 503 when the database cannot be reached) with a generic message, the details
//! going to the log only.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::{DomainError, RejectCode};
use crate::store::StoreError;

/// An HTTP error answer: status, stable code and a message for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 500 `internal_error` (the details must already be logged).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if err.is_unavailable() {
            tracing::warn!(error = %err, "database unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is unavailable; retry later",
            )
        } else {
            tracing::error!(error = %err, "database error");
            ApiError::internal()
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::Rejected { code, message } => {
                let status = if code == RejectCode::OfferNotInWallet {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::BAD_REQUEST
                };
                ApiError::new(status, code.as_str(), message)
            }
            DomainError::NotFound { code, what } => {
                ApiError::new(StatusCode::NOT_FOUND, code, format!("{what} not found"))
            }
            DomainError::Invalid { code, message } => ApiError::bad_request(code, message),
            DomainError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_map_to_statuses() {
        let e: ApiError = DomainError::rejected(RejectCode::OfferNotInWallet, "no").into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(e.code(), "offer_not_in_wallet");
        let e: ApiError = DomainError::rejected(RejectCode::EmptyCart, "empty").into();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e: ApiError = DomainError::NotFound {
            code: "product_not_found",
            what: "product x".into(),
        }
        .into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(e.body()["error"]["code"], "product_not_found");
        let e: ApiError = StoreError::NotFound("row".into()).into();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message(), "internal server error");
    }
}
