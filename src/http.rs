//! HTTP: routing, CORS, and the service handed to hyper.
//!
//! Invariants:
//! - the service never fails: every error is a response (a failed service
//!   would make hyper close the connection without one);
//! - only `error.rs` chooses error statuses and bodies;
//! - responses to auth requests are never cached (`Cache-Control: no-store`);
//! - the `Authorization` header, cookies and bodies are never logged.

pub mod error;
pub mod handlers;
pub mod limit;
pub mod request;
pub mod server;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use crate::app::{Gateway, Runtime};
use crate::telemetry::{RequestLabels, ScopeLabels};
use error::ApiError;
use handlers::Audit;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public auth endpoints.
    Public,
    /// The admin listener: health, readiness, metrics.
    Admin,
}

/// Response body type of the handlers.
pub type Body = Full<Bytes>;
/// Response body type of the full [`service`] (the catch-panic layer boxes it).
pub type ServiceBody = tower_http::body::UnsyncBoxBody<Bytes, tower_http::BoxError>;

/// Liveness path.
pub const HEALTHZ: &str = "/healthz";
/// Readiness path.
pub const READYZ: &str = "/readyz";
const REQUEST_ID: &str = "x-request-id";

/// A JSON response with the headers every answer carries.
pub fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// The tower service handed to hyper, outermost layer first:
/// - catch-panic: a bug in a handler becomes a 500 for that request instead
///   of a dropped connection (handlers are written not to panic; this is the
///   last line of defence, and it logs);
/// - the router and handlers ([`handle`]), which turn every refusal into a
///   response, so the service's error type is `Infallible`.
///
/// Timeouts live below: header reads in the connection builder, body reads
/// in [`request::read`].
pub fn service(
    rt: Arc<Runtime>,
    peer: SocketAddr,
    role: Listener,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = Response<ServiceBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ServiceBody>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::ServiceBuilder::new()
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .service_fn(move |req| {
            let rt = rt.clone();
            async move {
                match role {
                    Listener::Public => handle(rt, peer, req).await,
                    Listener::Admin => Ok(crate::admin::handle(&rt, peer, req).await),
                }
            }
        })
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked; answered 500");
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"error":"internal error","reason":"internal"}"#.into(),
    )
}

/// Handles one request. Never fails.
pub async fn handle<B>(
    rt: Arc<Runtime>,
    peer: SocketAddr,
    req: Request<B>,
) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    // This request keeps this gateway to the end, whatever a reload does.
    let gw = rt.gateway();
    let request_id = request_id(req.headers());
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let mut audit = Audit::new(request_id.clone(), started);

    let endpoint = if path == gw.http.auth_path {
        Some(Endpoint::Channel)
    } else if path == gw.http.user_auth_path {
        Some(Endpoint::User)
    } else {
        None
    };

    if let Some((settings, _)) = &gw.webhooks
        && path == settings.path
    {
        return Ok(webhook(&gw, parts, body).await);
    }

    let result: Result<Response<Body>, ApiError> = match (endpoint, &parts.method) {
        (Some(_), &Method::OPTIONS) => Ok(preflight(&gw, &parts.headers)),
        (Some(endpoint), &Method::POST) => {
            let client = gw.limits.client_ip(peer.ip(), &parts.headers);
            audit.client = Some(client);
            let read = match gw.limits.check_ip(client) {
                Ok(()) => {
                    request::read(&parts.headers, body, gw.http.max_body_bytes, gw.http.request_timeout).await
                }
                Err(l) => {
                    rt.metrics.rate_limited.get_or_create(&ScopeLabels { scope: "ip" }).inc();
                    Err(ApiError::limited(l))
                }
            };
            match read {
                Ok(fields) => {
                    let answer = match endpoint {
                        Endpoint::Channel => {
                            handlers::channel_auth(&rt, &gw, &parts, &fields, &mut audit).await
                        }
                        Endpoint::User => handlers::user_auth(&rt, &gw, &parts, &fields, &mut audit).await,
                    };
                    answer.map(|body| json_response(StatusCode::OK, body))
                }
                Err(e) => Err(e),
            }
        }
        (Some(_), _) => Err(ApiError::MethodNotAllowed { allow: "POST, OPTIONS" }),
        (None, &Method::GET | &Method::HEAD) if path == HEALTHZ => {
            Ok(json_response(StatusCode::OK, r#"{"status":"ok"}"#.into()))
        }
        (None, &Method::GET | &Method::HEAD) if path == READYZ => Ok(readiness(&rt)),
        (None, _) if path == HEALTHZ || path == READYZ => {
            Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" })
        }
        (None, _) => Err(ApiError::NotFound),
    };

    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            // A policy decision is already one audit line (when the audit log
            // is on); other refusals are logged here.
            let logged = audit.recorded && rt.audit.enabled();
            macro_rules! refused {
                ($level:ident) => {
                    tracing::$level!(
                        request_id = %request_id,
                        method = %parts.method,
                        path = %path,
                        status = e.status().as_u16(),
                        reason = e.reason(),
                        client = %audit.client.map(|c| c.to_string()).unwrap_or_default(),
                        user = audit.user.as_deref().unwrap_or(""),
                        channel = audit.channel.as_deref().unwrap_or(""),
                        "request refused"
                    )
                };
            }
            if logged {
                refused!(debug);
            } else {
                refused!(info);
            }
            // Session, CSRF and rate-limit refusals are decisions too.
            if !audit.recorded
                && (audit.channel.is_some() || endpoint == Some(Endpoint::User))
                && e.status().as_u16() != 400
            {
                let kind = if endpoint == Some(Endpoint::User) { "signin" } else { "channel" };
                let channel = audit.channel.clone();
                audit.record(&rt, kind, channel.as_deref(), None, Some((e.reason(), "")), &[]);
            }
            e.into_response(gw.mode == crate::config::Mode::Development)
        }
    };
    // A refused preflight carries no grants, or the browser would go ahead.
    if !(parts.method == Method::OPTIONS && resp.status() == StatusCode::FORBIDDEN) {
        cors_headers(&gw, &parts.headers, resp.headers_mut());
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let endpoint_label = match endpoint {
        Some(Endpoint::Channel) => "auth",
        Some(Endpoint::User) => "user_auth",
        None if path == HEALTHZ || path == READYZ => "health",
        None => "other",
    };
    rt.metrics
        .requests
        .get_or_create(&RequestLabels { endpoint: endpoint_label, status: resp.status().as_u16() })
        .inc();
    if endpoint.is_some() && parts.method == Method::POST {
        crate::telemetry::observe(&rt.metrics, endpoint_label, started.elapsed().as_secs_f64());
    }
    tracing::debug!(
        request_id = %request_id,
        method = %parts.method,
        path = %path,
        status = resp.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    Ok(resp)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Channel,
    User,
}

/// Readiness, with the state of each remote issuer's keys (no key
/// material: counts, ages, the last fetch error).
pub(crate) fn readiness(rt: &Runtime) -> Response<Body> {
    let gw = rt.gateway();
    let ready = rt.is_ready();
    let issuers: Vec<serde_json::Value> = gw
        .key_status()
        .into_iter()
        .map(|(issuer, status)| {
            let mut v = serde_json::to_value(status).unwrap_or_default();
            v["issuer"] = issuer.map_or(serde_json::Value::Null, serde_json::Value::String);
            v
        })
        .collect();
    let status = if rt.is_draining() {
        "shutting down"
    } else if ready {
        "ready"
    } else {
        "not ready"
    };
    let body = serde_json::json!({ "status": status, "issuers": issuers });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, body.to_string())
}

/// A request id: the caller's `X-Request-Id` when it is short and plain,
/// else a new one.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if let Some(v) = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 64
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return v.to_owned();
    }
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| format!("cg-{:x}-", std::process::id()));
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut digits = [0u8; 16];
    let len = hex_digits(n, &mut digits);
    // Hex digits are ASCII.
    id.extend(digits[..len].iter().map(|&b| char::from(b)));
    id
}

/// `n` in lowercase hex without leading zeros (at least one digit), into
/// `out`; returns the number of digits.
fn hex_digits(n: u64, out: &mut [u8; 16]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let len = (16 - n.leading_zeros() as usize / 4).max(1);
    for (i, slot) in out[..len].iter_mut().enumerate() {
        let shift = 4 * (len - 1 - i);
        *slot = HEX[((n >> shift) & 0xf) as usize];
    }
    len
}

fn allowed_origin<'a>(gw: &Gateway, headers: &'a HeaderMap) -> Option<&'a str> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    gw.cors.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(origin)).then_some(origin)
}

/// Adds the CORS headers for an allowed origin. Credentials are allowed
/// (for teams that send cookies cross-origin), so the origin is echoed,
/// never `*`.
fn cors_headers(gw: &Gateway, req: &HeaderMap, resp: &mut HeaderMap) {
    resp.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed_origin(gw, req)
        && let Ok(v) = HeaderValue::from_str(origin)
    {
        resp.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        resp.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
}

/// Answers `OPTIONS`: a CORS preflight from an allowed origin for `POST`
/// with allowed headers gets 204 and the grants; a refused preflight gets
/// 403 without them (the browser then blocks the request).
fn preflight(gw: &Gateway, headers: &HeaderMap) -> Response<Body> {
    let Some(method) = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) else {
        let mut resp = json_response(StatusCode::NO_CONTENT, String::new());
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return resp;
    };
    let refuse = |why: &str| {
        tracing::info!(reason = why, "CORS preflight refused");
        ApiError::Forbidden {
            reason: "cors_refused",
            message: format!("CORS preflight refused: {why}"),
            rule: None,
        }
        .into_response(false)
    };
    if allowed_origin(gw, headers).is_none() {
        return refuse("origin not allowed");
    }
    if method.as_bytes() != b"POST" {
        return refuse("only POST is allowed");
    }
    let mut requested = Vec::new();
    for value in headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        let Ok(value) = value.to_str() else { return refuse("unreadable header list") };
        for h in value.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()) {
            if !gw.cors.allowed_headers.contains(&h) {
                return refuse("a requested header is not allowed");
            }
            requested.push(h);
        }
    }
    let mut resp = json_response(StatusCode::NO_CONTENT, String::new());
    let h = resp.headers_mut();
    h.remove(header::CONTENT_TYPE);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    if !requested.is_empty()
        && let Ok(v) = HeaderValue::from_str(&requested.join(", "))
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Ok(v) = HeaderValue::from_str(&gw.cors.max_age.as_secs().to_string()) {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, v);
    }
    resp
}

/// The webhook relay (see [`crate::webhook`]).
async fn webhook<B>(gw: &Gateway, parts: http::request::Parts, body: B) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    use http_body_util::BodyExt;
    let Some((settings, _)) = &gw.webhooks else { return ApiError::NotFound.into_response(false) };
    if parts.method != Method::POST {
        return ApiError::MethodNotAllowed { allow: "POST" }.into_response(false);
    }
    let limited = http_body_util::Limited::new(body, 64 * 1024).collect();
    let bytes = match tokio::time::timeout(gw.http.request_timeout, limited).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) => return ApiError::PayloadTooLarge { limit: 64 * 1024 }.into_response(false),
        Err(_) => return ApiError::Timeout.into_response(false),
    };
    let max_age_ms = u64::try_from(settings.max_age.as_millis()).unwrap_or(u64::MAX);
    if let Err(refusal) =
        crate::webhook::verify(gw, &parts.headers, &bytes, max_age_ms, crate::webhook::now_ms())
    {
        let (status, reason) = refusal.status_reason();
        tracing::warn!(reason, "webhook refused; not forwarded");
        let body = serde_json::json!({"error": "webhook refused", "reason": reason}).to_string();
        return json_response(status, body);
    }
    let status = crate::webhook::forward(gw, &parts.headers, bytes).await;
    tracing::info!(status = status.as_u16(), "webhook forwarded");
    let body = serde_json::json!({"forwarded": status.is_success(), "status": status.as_u16()}).to_string();
    json_response(if status.is_success() { StatusCode::OK } else { StatusCode::BAD_GATEWAY }, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_match_format() {
        for n in [0u64, 1, 0xf, 0x10, 0xabc, u64::from(u32::MAX), u64::MAX] {
            let mut out = [0u8; 16];
            let len = hex_digits(n, &mut out);
            assert_eq!(std::str::from_utf8(&out[..len]).unwrap(), format!("{n:x}"));
        }
    }

    #[test]
    fn request_ids_are_kept_when_plain_and_made_otherwise() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        let made = request_id(&headers);
        assert!(made.starts_with(&format!("cg-{:x}-", std::process::id())), "{made}");
        assert_ne!(request_id(&headers), made);
    }
}
