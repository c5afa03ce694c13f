//! The admin listener (loopback by default, never the public one):
//! - `/healthz`, `/readyz`, `/metrics`, without a token (here);
//! - the admin API under `/admin/`, with a bearer token ([`api`]);
//! - the publish proxy: the Pusher REST API as the official server SDKs
//!   call it (`/apps/{id}/…`, `/users/{id}/terminate_connections`),
//!   authenticated with a local credential ([`crate::publish::proxy`]).

mod api;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response};

use crate::app::Runtime;
use crate::http::error::{self, ApiError};
use crate::http::{Body, HEALTHZ, READYZ};

/// Metrics path.
pub(crate) const METRICS: &str = "/metrics";

/// Handles one admin-listener request from `peer`. Never fails: refusals
/// become responses in `http/error.rs`.
pub(crate) async fn handle<B>(rt: &Runtime, peer: SocketAddr, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let gw = rt.gateway();
    if crate::publish::is_proxy_path(path) {
        return crate::publish::proxy::handle(rt, &gw, peer, &parts, body).await;
    }
    let result = if path.starts_with("/admin/") {
        api::handle(rt, &gw, &parts, body).await
    } else if parts.method != Method::GET && parts.method != Method::HEAD {
        Err(ApiError::method_not_allowed("GET, HEAD"))
    } else {
        match path {
            HEALTHZ => Ok(error::ok(r#"{"status":"ok"}"#.into())),
            READYZ => Ok(crate::http::readiness(rt)),
            METRICS => Ok(error::metrics(rt.metrics.render())),
            _ => Err(ApiError::not_found()),
        }
    };
    result.unwrap_or_else(|e| e.into_response(false))
}
