//! The webhook relay: Pusher (or Sockudo) calls `webhooks.path` on the
//! public listener; channelgate checks `X-Pusher-Key` and
//! `X-Pusher-Signature` (HMAC-SHA256 of the raw body with the app secret,
//! constant-time), refuses stale `time_ms`, and forwards only valid
//! webhooks, raw body unchanged, to `webhooks.forward_to`. A forged
//! webhook gets 401 and is never forwarded.
//!
//! With `webhooks.sign_with: <publish client key>`, the forwarded webhook
//! carries that local key as `X-Pusher-Key` and the HMAC of the same body
//! with its local secret as `X-Pusher-Signature`, so the app validates it
//! with its official SDK holding only local credentials (the SDKs' webhook
//! checks are the key and that HMAC). Without it, the server's own headers
//! are forwarded and the app would need the real secret to validate them.
//! The body is never altered: encrypted-channel `client_event` payloads keep
//! their ciphertext.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;

use crate::app::Gateway;
use crate::http::error::ApiError;
use crate::http::{Body, Ctx};
use crate::reason::Reason;

/// Largest webhook body accepted.
const MAX_BODY: usize = 64 * 1024;

/// Why a webhook is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Missing or wrong `X-Pusher-Key`.
    WrongKey,
    /// Missing or wrong `X-Pusher-Signature`.
    BadSignature,
    /// Not a JSON object with a numeric `time_ms`.
    Malformed,
    /// `time_ms` older (or newer) than `max_age`.
    Stale,
}

impl Refusal {
    /// The reason code.
    pub(crate) fn reason(self) -> Reason {
        match self {
            Refusal::WrongKey => Reason::InvalidWebhookKey,
            Refusal::BadSignature => Reason::InvalidWebhookSignature,
            Refusal::Malformed => Reason::InvalidBody,
            Refusal::Stale => Reason::StaleWebhook,
        }
    }
}

/// The relay's HTTP side: `POST webhooks.path` → verify → forward → the
/// app's answer, as `{"forwarded": bool, "status": N}` (200 when the app
/// took it). A forged, stale or malformed webhook is refused and never
/// forwarded.
pub(crate) async fn relay<B>(cx: &Ctx<'_>, body: B) -> Result<http::Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Some((settings, _)) = &cx.gw.webhooks else { return Err(ApiError::not_found()) };
    if cx.parts.method != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let limited = http_body_util::Limited::new(body, MAX_BODY).collect();
    let bytes = match tokio::time::timeout(cx.gw.http.request_timeout, limited).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) => {
            return Err(ApiError::new(
                Reason::BodyTooLarge,
                format!("the request body is over {MAX_BODY} bytes"),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(Reason::RequestTimeout, "the request body did not arrive in time"));
        }
    };
    let max_age_ms = u64::try_from(settings.max_age.as_millis()).unwrap_or(u64::MAX);
    if let Err(refusal) = verify(cx.gw, &cx.parts.headers, &bytes, max_age_ms, now_ms()) {
        return Err(ApiError::new(refusal.reason(), "webhook refused"));
    }
    let status = forward(cx.gw, &cx.parts.headers, bytes).await.map_err(|e| {
        let status = e.status().as_u16();
        e.with_field("forwarded", false.into()).with_field("status", status.into())
    })?;
    tracing::info!(request_id = %cx.request_id, status = status.as_u16(), "webhook forwarded");
    if status.is_success() {
        let body = serde_json::json!({"forwarded": true, "status": status.as_u16()}).to_string();
        Ok(crate::http::error::ok(body))
    } else {
        Err(ApiError::new(Reason::UpstreamUnreachable, "the app did not take the webhook")
            .with_field("forwarded", false.into())
            .with_field("status", status.as_u16().into()))
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = h.get_all(name).iter();
    let first = values.next()?.to_str().ok()?;
    values.next().is_none().then_some(first)
}

/// Verifies a webhook; `now_ms` injects the clock.
pub(crate) fn verify(
    gw: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
    max_age_ms: u64,
    now_ms: u64,
) -> Result<(), Refusal> {
    let key = header(headers, "x-pusher-key").ok_or(Refusal::WrongKey)?;
    if !crate::secret::Secret::new(gw.signer.app_key().as_bytes().to_vec()).ct_eq(key.as_bytes()) {
        return Err(Refusal::WrongKey);
    }
    let signature = header(headers, "x-pusher-signature").ok_or(Refusal::BadSignature)?;
    let expected = gw.signer.hmac_hex(body);
    if !crate::secret::Secret::new(expected.into_bytes()).ct_eq(signature.as_bytes()) {
        return Err(Refusal::BadSignature);
    }
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|_| Refusal::Malformed)?;
    let time_ms = doc.get("time_ms").and_then(serde_json::Value::as_u64).ok_or(Refusal::Malformed)?;
    if time_ms.abs_diff(now_ms) > max_age_ms {
        return Err(Refusal::Stale);
    }
    Ok(())
}

/// Lowercase-hex HMAC-SHA256 of `body` with a local secret.
fn local_hmac_hex(secret: &crate::secret::Secret, body: &[u8]) -> String {
    use hmac::Mac;
    match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose()) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length.
        Err(_) => String::new(),
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Forwards a verified webhook; returns the app's status, or why the app
/// could not be reached.
pub(crate) async fn forward(gw: &Gateway, headers: &HeaderMap, body: Bytes) -> Result<StatusCode, ApiError> {
    let Some((settings, client)) = &gw.webhooks else { return Err(ApiError::not_found()) };
    let mut fwd: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    let local_signature;
    match &settings.sign_with {
        Some((key, secret)) => {
            local_signature = local_hmac_hex(secret, &body);
            fwd.push(("x-pusher-key", key));
            fwd.push(("x-pusher-signature", &local_signature));
        }
        None => {
            for name in ["x-pusher-key", "x-pusher-signature"] {
                if let Some(v) = header(headers, name) {
                    fwd.push((name, v));
                }
            }
        }
    }
    match crate::upstream::post(client, settings.forward_to.as_str(), &fwd, body, settings.timeout, 0).await {
        Ok(answer) => Ok(answer.status),
        Err(e) => {
            tracing::warn!(error = %e, "webhook could not be forwarded");
            Err(ApiError::from(e))
        }
    }
}
