//! The admin API, under `/admin/` on the admin listener, with
//! `Authorization: Bearer <admin token>` compared in constant time:
//! terminate a user (REST `terminate_connections` + a revocation), and
//! manage revocations (by `sub`, `jti` or session id).

use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, header};
use serde_json::json;

use crate::app::{Gateway, Runtime};
use crate::http::Body;
use crate::http::error::{self, ApiError};
use crate::reason::Reason;
use crate::revocation::{Kind, Revocations, rfc3339};

/// Largest admin API body.
const MAX_BODY: usize = 16 * 1024;
/// Time allowed for an admin API body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Handles one request under `/admin/`.
pub(super) async fn handle<B>(
    rt: &Runtime,
    gw: &Gateway,
    parts: &Parts,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = parts.uri.path();
    if gw.admin_token.is_none() {
        return Err(ApiError::new(Reason::AdminApiDisabled, "set admin.token to enable the admin API"));
    }
    if !authorized(gw, &parts.headers) {
        tracing::warn!(path, "admin API: missing or wrong token");
        return Err(ApiError::new(Reason::AdminToken, "a valid admin bearer token is required"));
    }
    let body = crate::http::request::read_bytes(body, MAX_BODY, BODY_TIMEOUT).await?;
    let json: serde_json::Value = if body.is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => return Err(ApiError::new(Reason::InvalidBody, "the body is not a JSON object")),
        }
    };
    let segments: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
    let revocations = &rt.revocations;
    match (&parts.method, segments.as_slice()) {
        (&Method::POST, ["users", id, "terminate"]) => terminate(gw, revocations, &decode(id), &json).await,
        (&Method::DELETE, ["users", id, "terminate"]) => lift(revocations, Kind::Sub, &decode(id)).await,
        (&Method::GET, ["revocations"]) => {
            let list: Vec<serde_json::Value> = revocations.list().iter().map(|r| r.to_json()).collect();
            Ok(error::ok(serde_json::Value::Array(list).to_string()))
        }
        (&Method::POST, ["revocations"]) => revoke(revocations, &json).await,
        (&Method::DELETE, ["revocations", kind, value]) => match Kind::parse(kind) {
            Some(kind) => lift(revocations, kind, &decode(value)).await,
            None => Err(ApiError::new(Reason::NotFound, "kinds are sub, jti and sid")),
        },
        (_, ["users", _, "terminate"]) => Err(ApiError::method_not_allowed("POST, DELETE")),
        (_, ["revocations"]) => Err(ApiError::method_not_allowed("GET, POST")),
        (_, ["revocations", _, _]) => Err(ApiError::method_not_allowed("DELETE")),
        _ => Err(ApiError::new(Reason::NotFound, "no such admin endpoint")),
    }
}

/// `POST /admin/users/{id}/terminate`: revoke first (even if the REST call
/// fails, the user cannot come back), then `terminate_connections`.
async fn terminate(
    gw: &Gateway,
    revocations: &Revocations,
    id: &str,
    json: &serde_json::Value,
) -> Result<Response<Body>, ApiError> {
    if !valid_id(id) {
        return Err(ApiError::new(Reason::MalformedUserId, "not a valid user id"));
    }
    let ttl = parse_ttl(json, revocations.default_ttl())?;
    let rev = revocations
        .revoke(Kind::Sub, id, ttl)
        .await
        .map_err(|e| ApiError::revocations_unavailable(e.to_string()))?;
    let until = rfc3339(rev.expires_at);
    tracing::info!(user = %id, until = %until, "user terminated and revoked");
    let not_terminated = |e: ApiError| {
        e.with_field("terminated", false.into()).with_field("revoked_until", until.clone().into())
    };
    let Some(api) = &gw.pusher_api else {
        return Err(not_terminated(ApiError::new(Reason::NoApiUrl, "pusher.api_url is not configured")));
    };
    let api_path = format!("/apps/{}/users/{id}/terminate_connections", gw.app_id);
    match api.post(&api_path, Bytes::from_static(b"{}")).await {
        Ok(a) if a.status.is_success() => {
            Ok(error::ok(json!({"terminated": true, "revoked_until": until}).to_string()))
        }
        Ok(a) => Err(not_terminated(
            ApiError::new(Reason::UpstreamUnreachable, "the Pusher API refused terminate_connections")
                .with_field("upstream_status", a.status.as_u16().into()),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "terminate: the Pusher API could not be reached");
            Err(not_terminated(ApiError::from(e)))
        }
    }
}

/// `POST /admin/revocations` `{"sub"|"jti"|"sid": VALUE, "ttl": "24h"}`.
async fn revoke(revocations: &Revocations, json: &serde_json::Value) -> Result<Response<Body>, ApiError> {
    let named: Vec<(Kind, &str)> = ["sub", "jti", "sid"]
        .into_iter()
        .filter_map(|k| json.get(k).map(|v| (k, v)))
        .filter_map(|(k, v)| Some((Kind::parse(k)?, v.as_str()?)))
        .collect();
    let [(kind, value)] = named.as_slice() else {
        return Err(ApiError::new(Reason::InvalidBody, "give exactly one of `sub`, `jti`, `sid` (a string)"));
    };
    if value.is_empty() || value.len() > 512 {
        return Err(ApiError::new(Reason::InvalidBody, "the value must be 1 to 512 bytes"));
    }
    let ttl = parse_ttl(json, revocations.default_ttl())?;
    let rev = revocations
        .revoke(*kind, value, ttl)
        .await
        .map_err(|e| ApiError::revocations_unavailable(e.to_string()))?;
    tracing::info!(kind = kind.as_str(), until = %rfc3339(rev.expires_at), "revocation recorded");
    Ok(error::created(rev.to_json().to_string()))
}

async fn lift(revocations: &Revocations, kind: Kind, value: &str) -> Result<Response<Body>, ApiError> {
    match revocations.lift(kind, value).await {
        Ok(true) => {
            tracing::info!(kind = kind.as_str(), "revocation lifted");
            Ok(error::ok(json!({"lifted": true}).to_string()))
        }
        Ok(false) => Err(ApiError::new(Reason::NotRevoked, "no such revocation")),
        Err(e) => Err(ApiError::revocations_unavailable(e.to_string())),
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

/// The `ttl` of an admin request: a duration from 1 s to 366 days.
fn parse_ttl(body: &serde_json::Value, default: Duration) -> Result<Duration, ApiError> {
    let ttl = match body.get("ttl") {
        None | Some(serde_json::Value::Null) => Some(default),
        Some(serde_json::Value::String(s)) => humantime::parse_duration(s)
            .ok()
            .filter(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(366 * 24 * 3600)),
        Some(_) => None,
    };
    ttl.ok_or_else(|| ApiError::new(Reason::InvalidTtl, "`ttl` is a duration like `24h` (1s to 366d)"))
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}
