//! The admin listener: `/healthz`, `/readyz` and `/metrics`, on its own
//! address (loopback by default), never on the public listener. It holds no
//! secrets and serves no auth endpoints.

use http::{Method, Request, Response, StatusCode, header};

use crate::app::Runtime;
use crate::http::{Body, HEALTHZ, READYZ, json_response};

/// Metrics path.
pub const METRICS: &str = "/metrics";

/// Handles one admin request.
pub async fn handle<B>(rt: &Runtime, req: Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"use GET","reason":"method_not_allowed"}"#.into(),
        );
        resp.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
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
        _ => json_response(
            StatusCode::NOT_FOUND,
            r#"{"error":"no such endpoint","reason":"not_found"}"#.into(),
        ),
    }
}
