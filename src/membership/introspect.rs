//! Session introspection: the app says who a session belongs to. The
//! configured cookies and headers of the browser's request are forwarded to
//! the app's session endpoint (`GET`, e.g. `/api/me`); a 200 answer with a
//! JSON object is the session's claims (`token.*` in policies), 401 or 403
//! means no session, anything else is a fault (503 `session_unavailable`).
//!
//! Invariants:
//! - answers are cached by SHA-256 of exactly what is forwarded (the
//!   credential itself is never kept), for `ttl` but never longer than the
//!   answer's `Cache-Control: max-age` (none with `no-store`/`no-cache`);
//! - "no session" answers are not kept: many frameworks keep the session
//!   cookie across sign-in, and a user who just signed in must not be
//!   refused for a TTL;
//! - one request to the app per credential at a time (single-flight), each
//!   bounded by `timeout`, behind a circuit breaker; a cached session is
//!   served after a failure only within `stale_if_error` (default: never);
//! - nothing of the credential or the claims is logged or put in an error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerSettings};
use super::memo::{CacheStatus, Fresh, Memo, MemoSettings, Weigh};
use super::{FaultKind, LookupError, client, http_ttl};
use crate::policy::TokenValue;
use crate::upstream::HttpsClient;

/// Largest session answer read.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;

/// What is forwarded from the browser's request to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Forward {
    /// A cookie, by name (case-sensitive), sent in the `Cookie` header.
    Cookie(String),
    /// A request header, sent as it came.
    Header(HeaderName),
}

/// The session endpoint and how it is asked.
#[derive(Debug, Clone)]
pub(crate) struct IntrospectSettings {
    /// The app's session endpoint.
    pub(crate) url: http::Uri,
    /// The cookies and headers forwarded (at least one).
    pub(crate) forward: Vec<Forward>,
    /// How long an answer is reused (shortened by `Cache-Control`).
    pub(crate) ttl: Duration,
    /// The bound on one request to the app.
    pub(crate) timeout: Duration,
    /// Cache bounds and how long past its TTL a session may be served when
    /// the app fails (zero: never).
    pub(crate) cache: MemoSettings,
    /// When the app counts as down.
    pub(crate) breaker: BreakerSettings,
}

impl IntrospectSettings {
    /// The defaults for `url` and `forward`: a 30 s TTL, a 2 s timeout, no
    /// stale sessions.
    pub(crate) fn new(url: http::Uri, forward: Vec<Forward>) -> Self {
        Self {
            url,
            forward,
            ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
            cache: MemoSettings::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

/// What a request forwards: the `Cookie` header built from the configured
/// cookies and the configured headers, with their digest (the cache key).
#[derive(Clone)]
pub(crate) struct Credential {
    /// The `Cookie` header sent, if a forwarded cookie was present.
    pub(crate) cookie: Option<HeaderValue>,
    headers: Vec<(HeaderName, HeaderValue)>,
    digest: [u8; 32],
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(redacted)")
    }
}

impl Credential {
    /// The credential in the request's `headers`, or `None` when it carries
    /// none of the forwarded cookies and headers (no session: the app is not
    /// asked). Every occurrence of a forwarded cookie or header is sent, in
    /// order, so the app sees exactly what the digest covers.
    pub(crate) fn from_request(headers: &HeaderMap, forward: &[Forward]) -> Option<Credential> {
        let mut cookie = Vec::<u8>::new();
        let mut out = Vec::new();
        for f in forward {
            match f {
                Forward::Cookie(name) => {
                    for (n, v) in cookies(headers) {
                        if n == name.as_bytes() {
                            if !cookie.is_empty() {
                                cookie.extend_from_slice(b"; ");
                            }
                            cookie.extend_from_slice(n);
                            cookie.push(b'=');
                            cookie.extend_from_slice(v);
                        }
                    }
                }
                Forward::Header(name) => {
                    out.extend(headers.get_all(name).iter().map(|v| (name.clone(), sensitive(v.clone()))));
                }
            }
        }
        if cookie.is_empty() && out.is_empty() {
            return None;
        }
        let cookie =
            if cookie.is_empty() { None } else { HeaderValue::from_bytes(&cookie).ok().map(sensitive) };
        let mut hash = Sha256::new();
        hash.update(cookie.as_ref().map_or(&b""[..], HeaderValue::as_bytes));
        for (name, value) in &out {
            hash.update([0]);
            hash.update(name.as_str());
            hash.update([0]);
            hash.update(value.as_bytes());
        }
        Some(Credential { cookie, headers: out, digest: hash.finalize().into() })
    }
}

/// `value` marked sensitive: a forwarded credential is never indexed by
/// HPACK nor shown by `Debug`.
fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// `name=value` pairs of every `Cookie` header (RFC 6265 §4.2.1), as bytes.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers.get_all(http::header::COOKIE).iter().flat_map(|v| {
        v.as_bytes().split(|&b| b == b';').filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
        })
    })
}

/// The app's answer about a session.
#[derive(Debug, Clone)]
pub(crate) enum SessionAnswer {
    /// The session's claims: the answer's JSON object, as sent, and its
    /// CEL value (`token`), converted as the policy reads it.
    Claims(Arc<str>, Arc<TokenValue>),
    /// The app knows no such session (401 or 403).
    NoSession,
}

impl PartialEq for SessionAnswer {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SessionAnswer::Claims(a, _), SessionAnswer::Claims(b, _)) => a == b,
            (SessionAnswer::NoSession, SessionAnswer::NoSession) => true,
            _ => false,
        }
    }
}

impl Weigh for SessionAnswer {
    fn weight(&self) -> u64 {
        match self {
            SessionAnswer::Claims(json, _) => 3 * json.len() as u64 + 128,
            SessionAnswer::NoSession => 16,
        }
    }
}

/// Asks the app's session endpoint, through the cache; see the module docs.
pub(crate) struct Introspector {
    client: HttpsClient,
    settings: IntrospectSettings,
    memo: Memo<[u8; 32], SessionAnswer, LookupError>,
    breaker: Breaker,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector").field("memo", &self.memo).field("breaker", &self.breaker).finish()
    }
}

impl Introspector {
    /// An introspector sending through `client`.
    pub(crate) fn new(client: HttpsClient, settings: IntrospectSettings) -> Self {
        Self { client, memo: Memo::new(settings.cache), breaker: Breaker::new(settings.breaker), settings }
    }

    /// Its cache (counters for metrics).
    pub(crate) fn memo(&self) -> &Memo<[u8; 32], SessionAnswer, LookupError> {
        &self.memo
    }

    /// Its circuit breaker.
    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// What is forwarded.
    pub(crate) fn forward(&self) -> &[Forward] {
        &self.settings.forward
    }

    /// The session of `credential` at `now`.
    pub(crate) async fn introspect(
        &self,
        credential: &Credential,
        now: Instant,
    ) -> Result<(SessionAnswer, CacheStatus), LookupError> {
        self.memo.get(&credential.digest, now, || self.ask(credential, now)).await
    }

    async fn ask(&self, credential: &Credential, now: Instant) -> Result<Fresh<SessionAnswer>, LookupError> {
        let permit = self.breaker.admit(now)?;
        let mut req = http::Request::get(self.settings.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, concat!("channelgate/", env!("CARGO_PKG_VERSION")));
        if let Some(cookie) = &credential.cookie {
            req = req.header(http::header::COOKIE, cookie.clone());
        }
        for (name, value) in &credential.headers {
            req = req.header(name.clone(), value.clone());
        }
        let ttl = self.settings.ttl;
        client::call(
            &self.client,
            req.body(Full::new(Bytes::new())),
            self.settings.timeout,
            MAX_ANSWER,
            permit,
            |reply| read_answer(reply, ttl),
        )
        .await
    }
}

/// 200 + JSON object → claims (kept for the TTL the headers allow);
/// 401/403 → no session (not kept); anything else is a fault.
fn read_answer(reply: &client::Reply, ttl: Duration) -> Result<Fresh<SessionAnswer>, LookupError> {
    match reply.status.as_u16() {
        200 => {
            let text = std::str::from_utf8(&reply.body).map_err(|_| {
                LookupError::unavailable(FaultKind::BadAnswer, "the session answer is not UTF-8")
            })?;
            // Checked as a whole first: the lazy claims read members only.
            let value = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .ok()
                .and_then(|_| TokenValue::from_json_text(text.trim()))
                .ok_or_else(|| {
                    LookupError::unavailable(
                        FaultKind::BadAnswer,
                        "the session endpoint answered 200 without a JSON object",
                    )
                })?;
            let claims = SessionAnswer::Claims(Arc::from(text.trim()), Arc::new(value));
            Ok(Fresh { value: claims, ttl: http_ttl(&reply.headers, ttl) })
        }
        401 | 403 => Ok(Fresh { value: SessionAnswer::NoSession, ttl: Duration::ZERO }),
        status => Err(LookupError::unavailable(
            FaultKind::BadAnswer,
            format!("the session endpoint answered {status} (expected 200, 401 or 403)"),
        )),
    }
}

#[cfg(test)]
mod tests;
