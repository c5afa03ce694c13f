//! The publish proxy's HTTP side, on the admin listener: route, read the
//! body, verify the local signature and prepare ([`super::prepare`]),
//! re-sign and forward, pass the answer back. Every request, forwarded or
//! refused, is one audit line (`"event": "rest"`), written here once.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Response;
use http::request::Parts;

use crate::app::{Gateway, Runtime};
use crate::http::Body;
use crate::http::error::{self, ApiError};
use crate::reason::Reason;

/// Time allowed for a REST request's body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the audit line says about a proxy request.
struct RestOutcome<'a> {
    endpoint: &'static str,
    /// Whether the request was sent to the Pusher API (refusals never are).
    forwarded: bool,
    key: Option<&'a str>,
    upstream_status: Option<u16>,
}

/// Handles one publish-proxy request from `peer`.
pub(crate) async fn handle<B>(
    rt: &Runtime,
    gw: &Gateway,
    peer: SocketAddr,
    parts: &Parts,
    body: B,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let request_id = crate::http::request_id(&parts.headers);
    let mut outcome = RestOutcome { endpoint: "unknown", forwarded: false, key: None, upstream_status: None };
    let result = serve(gw, parts, body, &mut outcome).await;
    let (resp, reason) = match result {
        Ok(resp) => (resp, None),
        Err(e) => {
            let reason = e.reason();
            if !outcome.forwarded {
                tracing::info!(
                    request_id,
                    endpoint = outcome.endpoint,
                    key = outcome.key.unwrap_or(""),
                    status = e.status().as_u16(),
                    reason = %reason,
                    "publish proxy: refused; nothing forwarded"
                );
            }
            (e.into_response(false), Some(reason))
        }
    };
    if outcome.forwarded && reason.is_none() {
        tracing::info!(
            request_id,
            endpoint = outcome.endpoint,
            path = parts.uri.path(),
            status = resp.status().as_u16(),
            "publish proxy: forwarded"
        );
    }
    rt.audit.record(&crate::audit::RestEvent {
        ts: crate::audit::now_rfc3339(),
        event: "rest",
        request_id: &request_id,
        client: Some(peer.ip()),
        key: outcome.key,
        method: parts.method.as_str(),
        endpoint: outcome.endpoint,
        decision: if outcome.forwarded { "forward" } else { "refuse" },
        reason: reason.map_or("", Reason::as_str),
        status: resp.status().as_u16(),
        upstream_status: outcome.upstream_status,
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    });
    resp
}

async fn serve<'a, B>(
    gw: &'a Gateway,
    parts: &Parts,
    body: B,
    outcome: &mut RestOutcome<'a>,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = parts.uri.path();
    let route = super::route(path)?;
    outcome.endpoint = route.endpoint.as_str();
    let method = route.endpoint.method();
    if parts.method != method {
        return Err(ApiError::method_not_allowed(if method == http::Method::GET { "GET" } else { "POST" }));
    }
    let body = crate::http::request::read_bytes(body, super::MAX_BODY, BODY_TIMEOUT).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let known_key =
        |k: &str| gw.publish.as_ref()?.clients.iter().find(|c| c.key == k).map(|c| c.key.as_str());
    let forward = super::prepare(gw, &route, path, parts.uri.query().unwrap_or(""), &body, now).map_err(
        |(e, key)| {
            outcome.key = key.as_deref().and_then(known_key);
            e
        },
    )?;
    outcome.key = known_key(&forward.key);
    let Some(api) = &gw.pusher_api else {
        return Err(ApiError::new(Reason::NoApiUrl, "pusher.api_url is not configured"));
    };
    outcome.forwarded = true;
    match api.send(&method, &forward.path, &forward.params, forward.body).await {
        Ok(answer) => {
            outcome.upstream_status = Some(answer.status.as_u16());
            Ok(error::passthrough(answer.status, answer.content_type, answer.body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "publish proxy: the Pusher API could not be reached");
            Err(ApiError::from(e))
        }
    }
}
