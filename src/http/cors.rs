//! CORS for the auth endpoints: only origins in `cors.allowed_origins` get
//! grants; credentials are allowed (for teams that send cookies
//! cross-origin), so an allowed origin is echoed, never `*`.

use http::{HeaderMap, HeaderValue, Response, header};

use super::error::ApiError;
use super::{Body, Ctx};
use crate::app::Gateway;
use crate::reason::Reason;

/// The request's `Origin`, when it is an allowed one.
pub(crate) fn allowed_origin<'a>(gw: &Gateway, headers: &'a HeaderMap) -> Option<&'a str> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    gw.cors.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(origin)).then_some(origin)
}

/// Adds the CORS headers for an allowed origin.
pub(crate) fn add_headers(gw: &Gateway, req: &HeaderMap, resp: &mut HeaderMap) {
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
pub(crate) fn preflight(cx: &Ctx<'_>) -> Response<Body> {
    let (gw, headers) = (cx.gw, &cx.parts.headers);
    let Some(method) = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) else {
        let mut resp = super::error::no_content();
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return resp;
    };
    let refuse = |why: &'static str| {
        tracing::info!(request_id = %cx.request_id, reason = why, "CORS preflight refused");
        ApiError::new(Reason::CorsRefused, format!("CORS preflight refused: {why}")).into_response(false)
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
    let mut resp = super::error::no_content();
    let h = resp.headers_mut();
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
