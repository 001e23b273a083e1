//! The response envelope of the original service and the one error type of the HTTP edge.
//!
//! `{"success", "message", "data", "error", "timestamp"}`; errors carry
//! `error: {"code", "details", "status_code"}`. Internal causes never reach a 5xx body: they are
//! logged once, here.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::actors::persistence::PersistError;
use crate::catalog::ValidationErrors;

pub fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A successful answer.
pub fn success(
    status: StatusCode,
    message: impl Into<String>,
    data: impl Serialize,
) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "success": true,
        "message": message.into(),
        "data": data,
        "error": null,
        "timestamp": timestamp(),
    }))
}

pub fn ok(message: impl Into<String>, data: impl Serialize) -> HttpResponse {
    success(StatusCode::OK, message, data)
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// Authenticated, but the token's role (or a rule such as four-eyes) does not allow it.
    #[error("{0}")]
    Forbidden(String),
    #[error("too many requests: retry after {0} s")]
    TooManyRequests(u64),
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// With the methods the resource answers (the `Allow` header).
    #[error("method not allowed (allowed: {0})")]
    MethodNotAllowed(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("invalid request: {}", .0.summary())]
    Validation(ValidationErrors),
    /// The provider a request needs is not configured on this daemon (a 4xx: the operator's
    /// choice, not an outage). The text names the missing settings.
    #[error("{0}")]
    ProviderNotConfigured(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// An upstream cloud API failed.
    #[error("upstream error: {0}")]
    BadGateway(String),
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn not_found(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::NotFound {
            code,
            message: message.into(),
        }
    }

    /// A 422 for one field.
    pub fn invalid(field: &str, problem: impl Into<String>) -> AppError {
        let mut e = ValidationErrors::default();
        e.add(field, problem);
        AppError::Validation(e)
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::TooManyRequests(_) => "rate_limited",
            AppError::NotFound { code, .. } => code,
            AppError::MethodNotAllowed(_) => "method_not_allowed",
            AppError::Conflict(_) => "conflict",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::UnsupportedMediaType => "unsupported_media_type",
            AppError::Validation(_) => "validation_error",
            AppError::ProviderNotConfigured(_) => "provider_not_configured",
            AppError::Unavailable(_) => "service_unavailable",
            AppError::BadGateway(_) => "bad_gateway",
            AppError::Internal(_) => "internal_error",
        }
    }

    fn details(&self) -> Value {
        match self {
            AppError::Validation(errors) => json!(errors),
            _ => Value::Null,
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::NotFound { .. } => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::ProviderNotConfigured(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let AppError::Internal(cause) = self {
            tracing::error!(cause = %cause, "internal error");
        }
        let mut res = HttpResponse::build(status);
        match self {
            AppError::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("2")));
            }
            AppError::TooManyRequests(secs) => {
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            AppError::MethodNotAllowed(allow) => {
                res.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            AppError::Unauthorized => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"multicloud\""),
                ));
            }
            _ => {}
        }
        res.json(json!({
            "success": false,
            "message": self.to_string(),
            "data": null,
            "error": {
                "code": self.code(),
                "details": self.details(),
                "status_code": status.as_u16(),
            },
            "timestamp": timestamp(),
        }))
    }
}

impl From<PersistError> for AppError {
    fn from(e: PersistError) -> Self {
        match e {
            PersistError::Unavailable(m) => AppError::Unavailable(m),
            PersistError::NotFound => AppError::not_found("not_found", "not found"),
            PersistError::Conflict(m) => AppError::Conflict(m),
            PersistError::Forbidden(m) => AppError::Forbidden(m),
            other => AppError::Internal(other.to_string()),
        }
    }
}
