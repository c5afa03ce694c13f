//! HTTP: routing, the request context, and the service handed to hyper.
//!
//! Invariants:
//! - the service never fails: every error is a response (a failed service
//!   would make hyper close the connection without one);
//! - one outcome per request: handlers return an [`handlers::Outcome`] (the
//!   answer and the decisions behind it), and [`handle`] alone records audit
//!   events, decision and request metrics, and the refusal log line;
//! - only `error.rs` chooses statuses and bodies;
//! - responses to auth requests are never cached (`Cache-Control: no-store`);
//! - the `Authorization` header, cookies and bodies are never logged.

pub mod cors;
mod drain;
pub mod error;
pub mod handlers;
pub mod limit;
pub mod request;
pub mod server;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::Full;

use crate::app::{Gateway, Runtime};
use crate::audit::{Event, ShadowOutcome, Timestamp};
use crate::reason::Reason;
use crate::telemetry::{DecisionLabels, ShadowLabels};
use error::ApiError;
use handlers::{Decided, Outcome};

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

/// What a handler needs to know about its request besides the body: the
/// runtime, the gateway the request keeps to the end (whatever a reload
/// does), the request head, its id, the client address (after trusted
/// proxies) and the time it arrived at.
pub(crate) struct Ctx<'a> {
    /// What outlives reloads: metrics, audit, revocations.
    pub rt: &'a Runtime,
    /// The configuration in force when the request arrived.
    pub gw: &'a Gateway,
    /// Method, URI, headers.
    pub parts: &'a Parts,
    /// The request id (`X-Request-Id`).
    pub request_id: &'a str,
    /// The client address, after trusted proxies.
    pub client: IpAddr,
    /// When the request arrived: the time it is decided at, and the start
    /// of its latency (read once).
    pub now: crate::session::Now,
}

impl Ctx<'_> {
    /// A request header that appears once and is visible ASCII.
    pub(crate) fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The tower service handed to hyper, outermost layer first:
/// - catch-panic: a bug in a handler becomes a 500 for that request instead
///   of a dropped connection (handlers are written not to panic; this is the
///   last line of defence, and it logs);
/// - the router and handlers ([`handle`], [`crate::admin::handle`]), which
///   turn every refusal into a response, so the service's error type is
///   `Infallible`.
///
/// Timeouts live below: from accept to the first request head in the accept
/// loop, later heads in the connection builder, bodies in [`request::read`].
/// Generic over the request body, so tests call it in process with
/// `tower::ServiceExt::oneshot`.
pub fn service<B>(
    rt: Arc<Runtime>,
    peer: SocketAddr,
    role: Listener,
) -> impl tower::Service<
    Request<B>,
    Response = Response<ServiceBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ServiceBody>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
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
    ApiError::new(Reason::Internal, "internal error").into_response(false)
}

/// The public listener's routes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Channel,
    User,
    Webhook,
    Health,
    Ready,
    Other,
}

impl Route {
    fn of(gw: &Gateway, path: &str) -> Self {
        if path == gw.http.auth_path {
            Route::Channel
        } else if path == gw.http.user_auth_path {
            Route::User
        } else if gw.webhooks.as_ref().is_some_and(|(w, _)| path == w.path) {
            Route::Webhook
        } else if path == HEALTHZ {
            Route::Health
        } else if path == READYZ {
            Route::Ready
        } else {
            Route::Other
        }
    }

    /// The `endpoint` label of request metrics.
    fn label(self) -> &'static str {
        match self {
            Route::Channel => "auth",
            Route::User => "user_auth",
            Route::Webhook => "webhook",
            Route::Health | Route::Ready => "health",
            Route::Other => "other",
        }
    }
}

/// Handles one request on the public listener. Never fails.
pub async fn handle<B>(
    rt: Arc<Runtime>,
    peer: SocketAddr,
    req: Request<B>,
) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    // One read of the clocks: the time decisions are made at, and the start
    // of the request's latency.
    let now = crate::session::Now::system();
    let started = now.instant;
    // This request keeps this gateway to the end, whatever a reload does.
    let gw = rt.gateway();
    let request_id = request_id(req.headers());
    let (parts, body) = req.into_parts();
    let route = Route::of(&gw, parts.uri.path());
    let client = gw.limits.client_ip(peer.ip(), &parts.headers);
    let cx = Ctx { rt: &rt, gw: &gw, parts: &parts, request_id: &request_id, client, now };

    let outcome = match (route, &parts.method) {
        (Route::Channel | Route::User, &Method::OPTIONS) => Outcome::response(cors::preflight(&cx)),
        (Route::Channel, &Method::POST) => handlers::channel_auth(&cx, body).await,
        (Route::User, &Method::POST) => handlers::user_auth(&cx, body).await,
        (Route::Channel | Route::User, _) => Outcome::refused(ApiError::method_not_allowed("POST, OPTIONS")),
        (Route::Webhook, _) => Outcome::from(crate::webhook::relay(&cx, body).await),
        (Route::Health, &Method::GET | &Method::HEAD) => Outcome::answer(r#"{"status":"ok"}"#.into()),
        (Route::Ready, &Method::GET | &Method::HEAD) => Outcome::response(readiness(&rt)),
        (Route::Health | Route::Ready, _) => Outcome::refused(ApiError::method_not_allowed("GET, HEAD")),
        (Route::Other, _) => Outcome::refused(ApiError::not_found()),
    };
    // The latency of the audit events and of the histogram: read once.
    let latency = started.elapsed();
    let mut resp = finish(&cx, outcome, latency);

    // A refused preflight carries no grants, or the browser would go ahead.
    let refused_preflight = parts.method == Method::OPTIONS && resp.status().is_client_error();
    if matches!(route, Route::Channel | Route::User) && !refused_preflight {
        cors::add_headers(&gw, &parts.headers, resp.headers_mut());
    }
    let status = resp.status().as_u16();
    crate::telemetry::count_request(&rt.metrics, route.label(), status);
    if matches!(route, Route::Channel | Route::User) && parts.method == Method::POST {
        crate::telemetry::observe(&rt.metrics, route.label(), latency.as_secs_f64());
    }
    tracing::debug!(
        request_id = %request_id,
        method = %parts.method,
        path = %parts.uri.path(),
        status,
        latency_us = latency.as_micros() as u64,
        "request"
    );
    // The id's text becomes the header value as it is (no copy).
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(request_id)) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    Ok(resp)
}

/// Records what a request did — one audit event and one set of decision
/// metrics per decision, a log line for a refusal — and builds its response.
fn finish(cx: &Ctx<'_>, outcome: Outcome, latency: std::time::Duration) -> Response<Body> {
    let Outcome { answer, decisions, user } = outcome;
    if !decisions.is_empty() {
        record(cx, &decisions, user.as_deref(), latency);
    }
    match answer {
        Ok(handlers::Answer::Json(body)) => error::ok(body),
        Ok(handlers::Answer::Response(resp)) => resp,
        Err(e) => {
            // A decision is already an audit line (when the audit log is
            // on): then the refusal is logged at debug only.
            let audited = !decisions.is_empty() && cx.rt.audit.enabled();
            let channel = decisions.first().and_then(|d| d.channel.as_deref()).unwrap_or("");
            macro_rules! refused {
                ($level:ident) => {
                    tracing::$level!(
                        request_id = %cx.request_id,
                        method = %cx.parts.method,
                        path = %cx.parts.uri.path(),
                        status = e.status().as_u16(),
                        reason = %e.reason(),
                        client = %cx.client,
                        user = user.as_deref().unwrap_or(""),
                        channel,
                        "request refused"
                    )
                };
            }
            if audited {
                refused!(debug);
            } else {
                refused!(info);
            }
            e.into_response(cx.gw.mode == crate::config::Mode::Development)
        }
    }
}

/// A request's decisions: the decision metrics, a debug line and an audit
/// event each. The time and latency are read once for all of them (a
/// batch decides ten channels), and equal metric labels are counted
/// together.
fn record(cx: &Ctx<'_>, decisions: &[Decided], user: Option<&str>, latency: std::time::Duration) {
    let rt = cx.rt;
    let audit = rt
        .audit
        .enabled()
        .then(|| (Timestamp::at(cx.now.wall), u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)));
    // The request's audit lines, sent to the writer together.
    let mut lines = String::new();
    let mut count = 0;
    let mut head = (0, "");
    for (i, d) in decisions.iter().enumerate() {
        let (decision, reason, detail) = outcome(d);
        let rule = d.rule.as_deref();
        // Counted once for every decision with the same labels: at the
        // first of them.
        if !decisions[..i].iter().any(|earlier| labels(earlier) == labels(d)) {
            let same = decisions[i..].iter().filter(|later| labels(later) == labels(d)).count();
            rt.metrics
                .decisions
                .get_or_create(&DecisionLabels {
                    kind: d.kind.as_str(),
                    rule: d.rule.clone().unwrap_or_else(no_rule),
                    result: decision,
                    reason: reason.map_or("", Reason::as_str),
                })
                .inc_by(same as u64);
        }
        for s in &d.shadow {
            rt.metrics
                .shadow
                .get_or_create(&ShadowLabels {
                    rule: s.rule.clone(),
                    result: if s.allow { "allow" } else { "deny" },
                })
                .inc();
        }
        tracing::debug!(
            request_id = %cx.request_id,
            user = user.unwrap_or(""),
            channel = d.channel.as_deref().unwrap_or(""),
            rule = rule.unwrap_or(""),
            decision,
            reason = reason.map_or("", Reason::as_str),
            "decision"
        );
        if let Some((ts, latency_us)) = &audit {
            let shadow: Vec<ShadowOutcome<'_>> = d
                .shadow
                .iter()
                .map(|s| ShadowOutcome {
                    rule: &s.rule,
                    decision: if s.allow { "allow" } else { "deny" },
                    reason: s.reason.map_or("", Reason::as_str),
                })
                .collect();
            let event = Event {
                ts: ts.as_str(),
                event: "decision",
                request_id: cx.request_id,
                kind: d.kind.as_str(),
                client: Some(cx.client),
                user,
                channel: d.channel.as_deref(),
                rule,
                decision,
                reason: reason.map_or("", Reason::as_str),
                detail,
                latency_us: *latency_us,
                shadow: &shadow,
            };
            // The members before `channel` are the request's (its time,
            // id, client and user; its one kind): written once and copied.
            if count == 0 {
                lines.reserve(384 * decisions.len());
                event.write_head(&mut lines);
                head = (lines.len(), event.kind);
            } else if event.kind == head.1 {
                lines.push('\n');
                lines.extend_from_within(..head.0);
            } else {
                lines.push('\n');
                event.write_head(&mut lines);
            }
            event.write_tail(&mut lines);
            count += 1;
        }
    }
    rt.audit.record_lines(lines, count);
}

/// A decision's result, reason and operator detail.
fn outcome(d: &Decided) -> (&'static str, Option<Reason>, &str) {
    match &d.denial {
        None => ("allow", None, ""),
        Some((reason, detail)) => ("deny", Some(*reason), detail.as_str()),
    }
}

/// What a decision's metric labels are made of.
fn labels(d: &Decided) -> (handlers::Kind, Option<&str>, Option<Reason>) {
    (d.kind, d.rule.as_deref(), outcome(d).1)
}

/// The `rule` label of a decision no rule made.
fn no_rule() -> Arc<str> {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
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
    error::readiness(ready, serde_json::json!({ "status": status, "issuers": issuers }).to_string())
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
