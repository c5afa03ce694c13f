//! The one place that turns failures into HTTP statuses and error bodies
//! (DESIGN §1, §10). Bodies are `{"error": "...", "reason": "..."}`; 401s
//! carry `WWW-Authenticate` (RFC 6750). Nothing here echoes request input,
//! claims or key material.

use http::{HeaderValue, Response, StatusCode, header};

use super::Body;
use crate::policy::DenyReason;
use crate::pusher::ProtocolError;
use crate::session::AuthError;

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest { reason: &'static str, message: String },
    /// 401: no usable session.
    Unauthorized(AuthError),
    /// 403: the policy (or the configuration) refuses.
    Forbidden { reason: &'static str, message: String, rule: Option<String> },
    /// 404: no such endpoint.
    NotFound,
    /// 405: wrong method; `allow` lists the right ones.
    MethodNotAllowed { allow: &'static str },
    /// 408: the body did not arrive in time.
    Timeout,
    /// 413: the body is over the limit.
    PayloadTooLarge { limit: usize },
    /// 415: not form-encoded or JSON.
    UnsupportedMediaType,
    /// 429: over a rate limit.
    TooManyRequests { retry_after_secs: u64 },
    /// 503: cannot decide now (e.g. the issuer's keys are unreachable and
    /// none is cached); retry later.
    Unavailable { reason: &'static str, message: String, retry_after_secs: u64 },
}

impl ApiError {
    /// 400 with a reason code.
    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { reason, message: message.into() }
    }

    /// 429 from a rate-limit refusal (`Retry-After` in whole seconds, at least 1).
    pub fn limited(l: crate::http::limit::Limited) -> Self {
        let secs = l.retry_after.as_secs() + u64::from(l.retry_after.subsec_nanos() > 0);
        ApiError::TooManyRequests { retry_after_secs: secs.max(1) }
    }

    /// A session that could not be established: 401, except issuer keys
    /// not fetched yet, which is no fault of the client's (503, retry).
    pub fn from_auth(e: AuthError) -> Self {
        match e {
            AuthError::KeysUnavailable => ApiError::Unavailable {
                reason: "jwks_unavailable",
                message: e.to_string(),
                retry_after_secs: 5,
            },
            e => ApiError::Unauthorized(e),
        }
    }

    /// 400 from a protocol parse error.
    pub fn protocol(e: &ProtocolError) -> Self {
        ApiError::bad_request(e.reason(), e.to_string())
    }

    /// 403 from a policy denial.
    pub fn denied(reason: &DenyReason, rule: Option<&str>) -> Self {
        ApiError::Forbidden {
            reason: reason.code(),
            message: public_deny_message(reason),
            rule: rule.map(str::to_owned),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest { reason, .. }
            | ApiError::Forbidden { reason, .. }
            | ApiError::Unavailable { reason, .. } => reason,
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unauthorized(e) => e.reason(),
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Timeout => "request_timeout",
            ApiError::PayloadTooLarge { .. } => "body_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
        }
    }

    /// The message for a person.
    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest { message, .. }
            | ApiError::Forbidden { message, .. }
            | ApiError::Unavailable { message, .. } => message.clone(),
            ApiError::TooManyRequests { retry_after_secs } => {
                format!("too many requests; retry in {retry_after_secs}s")
            }
            ApiError::Unauthorized(e) => e.to_string(),
            ApiError::NotFound => "no such endpoint".into(),
            ApiError::MethodNotAllowed { allow } => format!("use {allow}"),
            ApiError::Timeout => "the request body did not arrive in time".into(),
            ApiError::PayloadTooLarge { limit } => format!("the request body is over {limit} bytes"),
            ApiError::UnsupportedMediaType => {
                "send application/x-www-form-urlencoded (as pusher-js does) or application/json".into()
            }
        }
    }

    /// Builds the response. `show_rule` (development mode only) adds the
    /// deciding rule's name to 403 bodies.
    pub fn into_response(self, show_rule: bool) -> Response<Body> {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.message().into());
        body.insert("reason".into(), self.reason().into());
        if let (true, ApiError::Forbidden { rule: Some(rule), .. }) = (show_rule, &self) {
            body.insert("rule".into(), rule.clone().into());
        }
        let mut resp = super::json_response(self.status(), serde_json::Value::Object(body).to_string());
        let headers = resp.headers_mut();
        match &self {
            ApiError::Unauthorized(AuthError::MissingToken) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"channelgate\""),
                );
            }
            ApiError::Unauthorized(e) => {
                let v = format!(
                    "Bearer realm=\"channelgate\", error=\"invalid_token\", error_description=\"{}\"",
                    e.reason()
                );
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::TooManyRequests { retry_after_secs }
            | ApiError::Unavailable { retry_after_secs, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        resp
    }
}

/// What a client is told about a denial: the reason, never rule internals or
/// claim values (those go to the audit log).
fn public_deny_message(reason: &DenyReason) -> String {
    match reason {
        DenyReason::NoRuleMatched => "no rule allows this channel".into(),
        DenyReason::RuleDenied => "the policy refuses this channel".into(),
        DenyReason::RuleError(_) => "the policy could not decide; access refused".into(),
        DenyReason::InvalidUserId(_) => "the session gives no usable user id".into(),
        other => other.to_string(),
    }
}
