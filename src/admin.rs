//! The admin listener (loopback by default, never the public one):
//! - `/healthz`, `/readyz`, `/metrics`, without a token;
//! - the admin API under `/admin/`, with `Authorization: Bearer <admin
//!   token>` compared in constant time: terminate a user (REST
//!   `terminate_connections` + a revocation), and manage revocations;
//! - the publish proxy: the Pusher REST API as the official server SDKs
//!   call it (`/apps/{id}/…`, and `/users/{id}/terminate_connections`),
//!   authenticated with a local credential (see [`crate::publish`]); every
//!   request to it, forwarded or refused, is one audit line.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;

use crate::app::{Gateway, Runtime};
use crate::http::{Body, HEALTHZ, READYZ, json_response};
use crate::revocation::{Kind, rfc3339};

/// Metrics path.
pub const METRICS: &str = "/metrics";
/// Largest admin API body.
const MAX_ADMIN_BODY: usize = 16 * 1024;

fn error(status: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(status, json!({"error": message, "reason": reason}).to_string())
}

/// Handles one admin-listener request from `peer`.
pub async fn handle<B>(rt: &Runtime, peer: SocketAddr, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let gw = rt.gateway();
    if crate::publish::is_proxy_path(&path) {
        return publish(rt, &gw, peer, &parts, body).await;
    }
    if path.starts_with("/admin/") {
        return admin_api(rt, &gw, &parts, &path, body).await;
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    match path.as_str() {
        HEALTHZ => json_response(StatusCode::OK, r#"{"status":"ok"}"#.into()),
        READYZ => crate::http::readiness(rt),
        METRICS => {
            let mut resp = json_response(StatusCode::OK, rt.metrics.render());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &format!("use {allow}"));
    resp.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
    resp
}

async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Response<Body>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(Duration::from_secs(10), http_body_util::Limited::new(body, limit).collect())
        .await
    {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is too large")),
        Err(_) => {
            Err(error(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the body did not arrive in time"))
        }
    }
}

/// The outcome of a publish-proxy request, for its audit line.
struct RestOutcome<'a> {
    endpoint: &'static str,
    /// Whether the request was sent to the Pusher API (refusals never are).
    forwarded: bool,
    key: Option<&'a str>,
    reason: &'a str,
    upstream_status: Option<u16>,
}

fn rest_audit(
    rt: &Runtime,
    request_id: &str,
    peer: SocketAddr,
    method: &Method,
    started: Instant,
    outcome: &RestOutcome<'_>,
    resp: &Response<Body>,
) {
    let forwarded = outcome.forwarded;
    if !forwarded {
        tracing::info!(
            request_id,
            endpoint = outcome.endpoint,
            key = outcome.key.unwrap_or(""),
            status = resp.status().as_u16(),
            reason = outcome.reason,
            "publish proxy: refused; nothing forwarded"
        );
    }
    rt.audit.record(&crate::audit::RestEvent {
        ts: crate::audit::now_rfc3339(),
        event: "rest",
        request_id,
        client: Some(peer.ip()),
        key: outcome.key,
        method: method.as_str(),
        endpoint: outcome.endpoint,
        decision: if forwarded { "forward" } else { "refuse" },
        reason: outcome.reason,
        status: resp.status().as_u16(),
        upstream_status: outcome.upstream_status,
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    });
}

/// The publish proxy: route, verify the local signature, prepare, re-sign
/// and forward, pass the answer back. One audit line either way.
async fn publish<B>(
    rt: &Runtime,
    gw: &Gateway,
    peer: SocketAddr,
    parts: &http::request::Parts,
    body: B,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let request_id = crate::http::request_id(&parts.headers);
    let path = parts.uri.path();
    let (resp, outcome) = publish_inner(gw, parts, body).await;
    rest_audit(rt, &request_id, peer, &parts.method, started, &outcome, &resp);
    if outcome.forwarded {
        tracing::info!(
            request_id,
            endpoint = outcome.endpoint,
            path,
            status = resp.status().as_u16(),
            "publish proxy: forwarded"
        );
    }
    resp
}

async fn publish_inner<'a, B>(
    gw: &'a Gateway,
    parts: &http::request::Parts,
    body: B,
) -> (Response<Body>, RestOutcome<'a>)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let refused = |endpoint, key, r: crate::publish::Refusal| {
        (
            error(r.status, r.reason, &r.message),
            RestOutcome { endpoint, key, forwarded: false, reason: r.reason, upstream_status: None },
        )
    };
    let path = parts.uri.path();
    let route = match crate::publish::route(path) {
        Ok(r) => r,
        Err(r) => return refused("unknown", None, r),
    };
    let endpoint = route.endpoint.as_str();
    let method = route.endpoint.method();
    if parts.method != method {
        let allow = if method == Method::GET { "GET" } else { "POST" };
        let outcome = RestOutcome {
            endpoint,
            key: None,
            forwarded: false,
            reason: "method_not_allowed",
            upstream_status: None,
        };
        return (method_not_allowed(allow), outcome);
    }
    let body = match read_body(body, crate::publish::MAX_BODY).await {
        Ok(b) => b,
        Err(resp) => {
            let reason = if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "request_timeout"
            };
            let outcome =
                RestOutcome { endpoint, key: None, forwarded: false, reason, upstream_status: None };
            return (resp, outcome);
        }
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let forward = match crate::publish::prepare(gw, &route, path, parts.uri.query().unwrap_or(""), &body, now)
    {
        Ok(f) => f,
        Err((r, key)) => {
            let key = key
                .and_then(|k| gw.publish.as_ref()?.clients.iter().find(|c| c.key == k))
                .map(|c| c.key.as_str());
            return refused(endpoint, key, r);
        }
    };
    let key = gw
        .publish
        .as_ref()
        .and_then(|p| p.clients.iter().find(|c| c.key == forward.key))
        .map(|c| c.key.as_str());
    let Some(api) = &gw.pusher_api else {
        let r = crate::publish::Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "no_api_url",
            message: "pusher.api_url is not configured".into(),
        };
        return refused(endpoint, key, r);
    };
    match api.send(&method, &forward.path, &forward.params, forward.body).await {
        Ok(answer) => {
            let mut resp = Response::new(http_body_util::Full::new(answer.body));
            *resp.status_mut() = answer.status;
            let content_type =
                answer.content_type.unwrap_or_else(|| header::HeaderValue::from_static("application/json"));
            resp.headers_mut().insert(header::CONTENT_TYPE, content_type);
            let outcome = RestOutcome {
                endpoint,
                key,
                forwarded: true,
                reason: "",
                upstream_status: Some(answer.status.as_u16()),
            };
            (resp, outcome)
        }
        Err(e) => {
            tracing::warn!(error = %e, "publish proxy: the Pusher API could not be reached");
            let (status, reason, message) = match e {
                crate::upstream::UpstreamError::Timeout => {
                    (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "the Pusher API did not answer in time")
                }
                crate::upstream::UpstreamError::Unreachable(_) => {
                    (StatusCode::BAD_GATEWAY, "upstream_unreachable", "the Pusher API is unreachable")
                }
            };
            let outcome = RestOutcome { endpoint, key, forwarded: true, reason, upstream_status: None };
            (error(status, reason, message), outcome)
        }
    }
}

/// Whether the request carries the admin token (constant-time compare).
fn authorized(gw: &Gateway, headers: &http::HeaderMap) -> bool {
    let Some(token) = &gw.admin_token else { return false };
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return false };
    let Ok(value) = value.to_str() else { return false };
    let Some((scheme, presented)) = value.split_once(' ') else { return false };
    scheme.eq_ignore_ascii_case("bearer") && token.ct_eq(presented.trim().as_bytes())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c))
}

/// The `ttl` of an admin request; `None` when it is not a valid duration.
fn parse_ttl(body: &serde_json::Value, default: Duration) -> Option<Duration> {
    match body.get("ttl") {
        None | Some(serde_json::Value::Null) => Some(default),
        Some(serde_json::Value::String(s)) => humantime::parse_duration(s)
            .ok()
            .filter(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(366 * 24 * 3600)),
        Some(_) => None,
    }
}

async fn admin_api<B>(
    rt: &Runtime,
    gw: &Gateway,
    parts: &http::request::Parts,
    path: &str,
    body: B,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if gw.admin_token.is_none() {
        return error(StatusCode::NOT_FOUND, "admin_api_disabled", "set admin.token to enable the admin API");
    }
    if !authorized(gw, &parts.headers) {
        tracing::warn!(path, "admin API: missing or wrong token");
        let mut resp =
            error(StatusCode::UNAUTHORIZED, "admin_token", "a valid admin bearer token is required");
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"channelgate-admin\""),
        );
        return resp;
    }
    let body = match read_body(body, MAX_ADMIN_BODY).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let json: serde_json::Value = if body.is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => return error(StatusCode::BAD_REQUEST, "invalid_body", "the body is not a JSON object"),
        }
    };
    let segments: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
    let revocations = &rt.revocations;
    match (&parts.method, segments.as_slice()) {
        (&Method::POST, ["users", id, "terminate"]) => {
            let id = decode(id);
            if !valid_id(&id) {
                return error(StatusCode::BAD_REQUEST, "invalid_user_id", "not a valid user id");
            }
            let Some(ttl) = parse_ttl(&json, revocations.default_ttl()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_ttl",
                    "`ttl` is a duration like `24h` (1s to 366d)",
                );
            };
            // Revoke first: even if the API call fails, the user cannot come back.
            let rev = match revocations.revoke(Kind::Sub, &id, ttl).await {
                Ok(r) => r,
                Err(e) => {
                    return error(StatusCode::SERVICE_UNAVAILABLE, "revocation_unavailable", &e.to_string());
                }
            };
            tracing::info!(user = %id, until = %rfc3339(rev.expires_at), "user terminated and revoked");
            let Some(api) = &gw.pusher_api else {
                return json_response(
                    StatusCode::BAD_GATEWAY,
                    json!({"terminated": false, "revoked_until": rfc3339(rev.expires_at),
                           "error": "pusher.api_url is not configured"})
                    .to_string(),
                );
            };
            let api_path = format!("/apps/{}/users/{id}/terminate_connections", gw.app_id);
            match api.post(&api_path, Bytes::from_static(b"{}")).await {
                Ok(a) if a.status.is_success() => json_response(
                    StatusCode::OK,
                    json!({"terminated": true, "revoked_until": rfc3339(rev.expires_at)}).to_string(),
                ),
                Ok(a) => json_response(
                    StatusCode::BAD_GATEWAY,
                    json!({"terminated": false, "revoked_until": rfc3339(rev.expires_at),
                           "upstream_status": a.status.as_u16()})
                    .to_string(),
                ),
                Err(e) => json_response(
                    StatusCode::BAD_GATEWAY,
                    json!({"terminated": false, "revoked_until": rfc3339(rev.expires_at), "error": e.to_string()})
                        .to_string(),
                ),
            }
        }
        (&Method::DELETE, ["users", id, "terminate"]) => lift(revocations, Kind::Sub, &decode(id)).await,
        (&Method::GET, ["revocations"]) => {
            let list: Vec<serde_json::Value> = revocations.list().iter().map(|r| r.to_json()).collect();
            json_response(StatusCode::OK, serde_json::Value::Array(list).to_string())
        }
        (&Method::POST, ["revocations"]) => {
            let named: Vec<(Kind, &str)> = ["sub", "jti", "sid"]
                .into_iter()
                .filter_map(|k| json.get(k).map(|v| (k, v)))
                .filter_map(|(k, v)| Some((Kind::parse(k)?, v.as_str()?)))
                .collect();
            let [(kind, value)] = named.as_slice() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "give exactly one of `sub`, `jti`, `sid` (a string)",
                );
            };
            if value.is_empty() || value.len() > 512 {
                return error(StatusCode::BAD_REQUEST, "invalid_body", "the value must be 1 to 512 bytes");
            }
            let Some(ttl) = parse_ttl(&json, revocations.default_ttl()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_ttl",
                    "`ttl` is a duration like `24h` (1s to 366d)",
                );
            };
            match revocations.revoke(*kind, value, ttl).await {
                Ok(rev) => {
                    tracing::info!(kind = kind.as_str(), until = %rfc3339(rev.expires_at), "revocation recorded");
                    json_response(StatusCode::CREATED, rev.to_json().to_string())
                }
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "revocation_unavailable", &e.to_string()),
            }
        }
        (&Method::DELETE, ["revocations", kind, value]) => match Kind::parse(kind) {
            Some(kind) => lift(revocations, kind, &decode(value)).await,
            None => error(StatusCode::NOT_FOUND, "not_found", "kinds are sub, jti and sid"),
        },
        (_, ["users", _, "terminate"]) => method_not_allowed("POST, DELETE"),
        (_, ["revocations"]) => method_not_allowed("GET, POST"),
        (_, ["revocations", _, _]) => method_not_allowed("DELETE"),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
    }
}

async fn lift(revocations: &crate::revocation::Revocations, kind: Kind, value: &str) -> Response<Body> {
    match revocations.lift(kind, value).await {
        Ok(true) => {
            tracing::info!(kind = kind.as_str(), "revocation lifted");
            json_response(StatusCode::OK, json!({"lifted": true}).to_string())
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "not_revoked", "no such revocation"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "revocation_unavailable", &e.to_string()),
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}
