//! The one place that turns outcomes into HTTP statuses, headers and bodies
//! (DESIGN §1, §10): every refusal of every listener (auth endpoints, batch
//! entries, admin API, publish proxy, webhook relay) is an [`ApiError`]
//! whose status is a function of its [`Reason`] ([`status_of`]), and the
//! success answers are built here too. The only other statuses sent are an
//! upstream's, passed through by the publish proxy and the webhook relay
//! ([`passthrough`]).
//!
//! Bodies are `{"error": "...", "reason": "..."}`; 401s for sessions carry
//! `WWW-Authenticate` (RFC 6750); 429 and 503 carry `Retry-After`; 405
//! carries `Allow`. Nothing here echoes request input, claims or key
//! material.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::Body;
use crate::policy::DenyReason;
use crate::pusher::ProtocolError;
use crate::pusher::rest::RestAuthError;
use crate::reason::Reason;
use crate::session::AuthError;

/// Seconds a client should wait before retrying when issuer keys are
/// unavailable (the background retry runs at least every 10 s).
const KEYS_RETRY_AFTER: u64 = 5;
/// The same when revocations cannot be checked.
const REVOCATIONS_RETRY_AFTER: u64 = 2;

/// A refused request: a reason, a message for a person, and what some
/// statuses need besides (the deciding rule, `Retry-After`, `Allow`, extra
/// body members).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    reason: Reason,
    message: Cow<'static, str>,
    /// What only some refusals carry, boxed: an error stays small.
    more: Option<Box<More>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct More {
    rule: Option<String>,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
    extra: Vec<(&'static str, serde_json::Value)>,
}

impl ApiError {
    /// A refusal for `reason`.
    pub fn new(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Self { reason, message: message.into(), more: None }
    }

    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }

    /// 404 for an unknown path.
    pub fn not_found() -> Self {
        Self::new(Reason::NotFound, "no such endpoint")
    }

    /// 405; `allow` lists the methods the path takes.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(Reason::MethodNotAllowed, format!("use {allow}"));
        e.more().allow = Some(allow);
        e
    }

    /// 429 from a rate-limit refusal (`Retry-After` in whole seconds, at least 1).
    pub fn limited(l: crate::http::limit::Limited) -> Self {
        let secs = l.retry_after.as_secs() + u64::from(l.retry_after.subsec_nanos() > 0);
        let secs = secs.max(1);
        Self::new(Reason::RateLimited, format!("too many requests; retry in {secs}s")).retry_after(secs)
    }

    /// 503 when revocations cannot be checked.
    pub fn revocations_unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Reason::RevocationUnavailable, message).retry_after(REVOCATIONS_RETRY_AFTER)
    }

    /// 403 from a policy denial; the rule is shown only in development mode.
    pub fn denied(reason: &DenyReason, rule: Option<&str>) -> Self {
        let mut e = Self::new(reason.reason(), public_deny_message(reason));
        if let Some(rule) = rule {
            e.more().rule = Some(rule.to_owned());
        }
        e
    }

    /// Adds `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.more().retry_after = Some(secs);
        self
    }

    /// Adds a member to the error body (for answers that report what was
    /// done before the failure, such as a revocation recorded before the
    /// REST call failed).
    pub fn with_field(mut self, name: &'static str, value: serde_json::Value) -> Self {
        self.more().extra.push((name, value));
        self
    }

    /// The reason.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        status_of(self.reason)
    }

    /// Whether the request was malformed (400): such a refusal decides
    /// nothing about a channel.
    pub fn is_malformed_request(&self) -> bool {
        self.status() == StatusCode::BAD_REQUEST
    }

    /// The message for a person.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Builds the response. `show_rule` (development mode only) adds the
    /// deciding rule's name to 403 bodies.
    pub fn into_response(self, show_rule: bool) -> Response<Body> {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.message.as_ref().into());
        body.insert("reason".into(), self.reason.as_str().into());
        let more = self.more.as_deref().cloned().unwrap_or_default();
        if show_rule && let Some(rule) = more.rule {
            body.insert("rule".into(), rule.into());
        }
        for (name, value) in more.extra {
            body.insert(name.into(), value);
        }
        let mut resp = json_response(self.status(), serde_json::Value::Object(body).to_string());
        let headers = resp.headers_mut();
        if let Some(v) = www_authenticate(self.reason) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(allow) = more.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = more.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// A refused entry of a batch answer:
    /// `{"status":403,"error":"…","reason":"…"}`.
    pub fn batch_entry(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(out, "{{\"status\":{},\"error\":", self.status().as_u16());
        crate::pusher::js_json::write_str(out, &self.message);
        out.push_str(",\"reason\":\"");
        out.push_str(self.reason.as_str());
        out.push_str("\"}");
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

/// A session that could not be established: 401, except issuer keys that
/// cannot be used now, which is no fault of the client's (503, retry).
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let retry = matches!(e, AuthError::KeysUnavailable);
        let err = ApiError::new(e.reason(), e.to_string());
        if retry { err.retry_after(KEYS_RETRY_AFTER) } else { err }
    }
}

/// 400 from a protocol parse error.
impl From<&ProtocolError> for ApiError {
    fn from(e: &ProtocolError) -> Self {
        ApiError::new(e.reason(), e.to_string())
    }
}

/// 401 from a REST request whose local signature does not hold.
impl From<RestAuthError> for ApiError {
    fn from(e: RestAuthError) -> Self {
        ApiError::new(e.reason(), e.to_string())
    }
}

/// An upstream (the Pusher REST API, the app behind the webhook relay)
/// that could not be reached (502) or did not answer in time (504).
impl From<crate::upstream::UpstreamError> for ApiError {
    fn from(e: crate::upstream::UpstreamError) -> Self {
        match e {
            crate::upstream::UpstreamError::Timeout => {
                ApiError::new(Reason::UpstreamTimeout, "the upstream did not answer in time")
            }
            crate::upstream::UpstreamError::Unreachable(_) => {
                ApiError::new(Reason::UpstreamUnreachable, "the upstream is unreachable")
            }
        }
    }
}

/// The status of every reason: one table, the only one.
pub fn status_of(reason: Reason) -> StatusCode {
    use Reason as R;
    match reason {
        R::InvalidSocketId
        | R::InvalidChannelName
        | R::PublicChannel
        | R::MissingField
        | R::DuplicateField
        | R::InvalidField
        | R::InvalidBody
        | R::BatchTooLarge
        | R::MalformedUserId
        | R::InvalidTtl
        | R::UnknownParameter
        | R::DuplicateParameter
        | R::InvalidParameter
        | R::InvalidEventName
        | R::InvalidData
        | R::TooManyChannels
        | R::EncryptedMultipleChannels
        | R::PublishEncryptionNotConfigured
        | R::UndecryptablePayload => StatusCode::BAD_REQUEST,
        R::TokenMissing
        | R::TokenMalformed
        | R::AlgorithmNotAllowed
        | R::UnknownKid
        | R::InvalidSignature
        | R::TokenExpired
        | R::TokenNotYetValid
        | R::InvalidIssuer
        | R::UnknownIssuer
        | R::InvalidAudience
        | R::MissingClaim
        | R::InvalidClaims
        | R::AdminToken
        | R::MissingAuthParam
        | R::UnknownKey
        | R::StaleTimestamp
        | R::BodyMd5Mismatch
        | R::InvalidWebhookKey
        | R::InvalidWebhookSignature
        | R::StaleWebhook => StatusCode::UNAUTHORIZED,
        R::NoRuleMatched
        | R::RuleDenied
        | R::RuleError
        | R::InvalidUserId
        | R::PresenceDataTooLarge
        | R::SigninDisabled
        | R::EncryptionNotConfigured
        | R::Csrf
        | R::UserRevoked
        | R::CorsRefused
        | R::AppIdMismatch => StatusCode::FORBIDDEN,
        R::NotFound | R::AdminApiDisabled | R::NotRevoked | R::UnknownEndpoint => StatusCode::NOT_FOUND,
        R::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        R::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        R::BodyTooLarge | R::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        R::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        R::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        R::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        R::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
        R::JwksUnavailable | R::RevocationUnavailable | R::RngUnavailable | R::NoApiUrl => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        R::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// `WWW-Authenticate` for a 401 (RFC 6750): the session realm, with
/// `error="invalid_token"` when a token was presented; the admin realm for
/// the admin API. REST and webhook signatures have no bearer scheme.
fn www_authenticate(reason: Reason) -> Option<HeaderValue> {
    use Reason as R;
    match reason {
        R::TokenMissing => Some(HeaderValue::from_static("Bearer realm=\"channelgate\"")),
        R::AdminToken => Some(HeaderValue::from_static("Bearer realm=\"channelgate-admin\"")),
        R::TokenMalformed
        | R::AlgorithmNotAllowed
        | R::UnknownKid
        | R::InvalidSignature
        | R::TokenExpired
        | R::TokenNotYetValid
        | R::InvalidIssuer
        | R::UnknownIssuer
        | R::InvalidAudience
        | R::MissingClaim
        | R::InvalidClaims => HeaderValue::from_str(&format!(
            "Bearer realm=\"channelgate\", error=\"invalid_token\", error_description=\"{reason}\""
        ))
        .ok(),
        _ => None,
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

/// A JSON response with the headers every answer carries.
fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// 200 with a JSON body.
pub fn ok(body: String) -> Response<Body> {
    json_response(StatusCode::OK, body)
}

/// 201 with a JSON body (something was created).
pub fn created(body: String) -> Response<Body> {
    json_response(StatusCode::CREATED, body)
}

/// 204 without a body (a CORS preflight's answer).
pub fn no_content() -> Response<Body> {
    let mut resp = json_response(StatusCode::NO_CONTENT, String::new());
    resp.headers_mut().remove(header::CONTENT_TYPE);
    resp
}

/// 200 in the OpenMetrics text format.
pub fn metrics(text: String) -> Response<Body> {
    let mut resp = json_response(StatusCode::OK, text);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// Readiness: 200 when ready, else 503, with the details as JSON.
pub fn readiness(ready: bool, body: String) -> Response<Body> {
    json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
}

/// An upstream's answer passed through: its status, its body and its
/// content type (JSON when it sent none).
pub fn passthrough(status: StatusCode, content_type: Option<HeaderValue>, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let content_type = content_type.unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_an_error_status() {
        for r in Reason::ALL {
            let status = status_of(*r);
            assert!(status.is_client_error() || status.is_server_error(), "{r}: {status}");
        }
    }

    #[test]
    fn batch_entries_are_json_objects() {
        let mut out = String::new();
        ApiError::new(Reason::RuleDenied, "the \"policy\" refuses").batch_entry(&mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], 403);
        assert_eq!(v["reason"], "rule_denied");
        assert_eq!(v["error"], "the \"policy\" refuses");
    }
}
