//! Keys fetched from an issuer: a JWKS URL, or OIDC discovery from the
//! issuer URL. This is the only part of `session` that does I/O, and it does
//! it outside requests: a background task refreshes the keys before they go
//! stale, and a request that meets an unknown `kid` may trigger at most one
//! rate-limited, single-flight refetch.
//!
//! Invariants:
//! - the key set in use is swapped atomically; a failed fetch never replaces
//!   good keys (stale keys keep serving while the issuer is down, with a log
//!   line and the state visible in readiness);
//! - unknown `kid`s cost at most one refetch per `refetch_interval` per
//!   issuer, and a bounded negative cache remembers kids that a refetch did
//!   not find, so bogus kids are no lever for a request flood;
//! - responses are size-capped and time-limited; only https URLs are
//!   fetched (http only for loopback hosts, for tests and sidecar setups).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthError;
use super::keys::JwksKeys;
use crate::upstream::{HttpsClient, https_client};

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS document URL.
    Jwks(url::Url),
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration`, whose
    /// `jwks_uri` is then fetched. The document's `issuer` must match.
    Discovery(url::Url),
}

/// Refresh and fetch settings.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// Shortest time between scheduled refreshes (floor for Cache-Control).
    pub min_refresh: Duration,
    /// Longest time between scheduled refreshes (ceiling, and the period
    /// without Cache-Control).
    pub max_refresh: Duration,
    /// Least time between two refetches caused by unknown kids.
    pub refetch_interval: Duration,
    /// Time limit of one fetch.
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM), besides the system roots.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        Self {
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(3600),
            refetch_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            extra_roots: Vec::new(),
        }
    }
}

/// Keys of one issuer, fetched over HTTPS.
pub struct RemoteKeys {
    source: KeySource,
    settings: RemoteSettings,
    client: HttpsClient,
    current: ArcSwapOption<Loaded>,
    state: std::sync::Mutex<FetchState>,
    single_flight: tokio::sync::Mutex<()>,
    unknown_kids: moka::sync::Cache<String, ()>,
    refresh_task: std::sync::atomic::AtomicBool,
    fetches_ok: std::sync::atomic::AtomicU64,
    fetches_failed: std::sync::atomic::AtomicU64,
}

/// A loaded key set.
struct Loaded {
    keys: JwksKeys,
    fetched_at: SystemTime,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
    failures: u32,
    stale_since: Option<SystemTime>,
}

/// What readiness reports about one issuer's keys.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyStatus {
    /// The URL the keys come from.
    pub source: String,
    /// Whether keys were ever loaded.
    pub loaded: bool,
    /// Number of usable keys.
    pub keys: usize,
    /// Seconds since the last successful fetch.
    pub age_secs: Option<u64>,
    /// True while refreshes fail and older keys are served.
    pub stale: bool,
    /// The last fetch error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Successful fetches so far.
    pub fetches_ok: u64,
    /// Failed fetches so far.
    pub fetches_failed: u64,
}

/// Why a fetch failed. Messages name URLs and statuses, never key material.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Transport or TLS failure, or timeout.
    #[error("cannot fetch {url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A non-200 answer.
    #[error("{url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The document is not what it should be.
    #[error("{url}: {message}")]
    Document {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl RemoteKeys {
    /// Creates the fetcher; nothing is fetched until [`RemoteKeys::refresh`].
    pub fn new(source: KeySource, settings: RemoteSettings) -> Result<Self, String> {
        let client = https_client(&settings.extra_roots)?;
        Ok(Self {
            source,
            client,
            current: ArcSwapOption::empty(),
            state: std::sync::Mutex::new(FetchState::default()),
            single_flight: tokio::sync::Mutex::new(()),
            unknown_kids: moka::sync::Cache::builder()
                .max_capacity(1024)
                .time_to_live(settings.refetch_interval.max(Duration::from_secs(60)) * 10)
                .build(),
            settings,
            refresh_task: std::sync::atomic::AtomicBool::new(false),
            fetches_ok: std::sync::atomic::AtomicU64::new(0),
            fetches_failed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The key for `alg` and `kid`; [`AuthError::KeysUnavailable`] before the
    /// first successful fetch.
    pub(super) fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        let loaded = self.current.load();
        let Some(loaded) = loaded.as_ref() else {
            return Err(AuthError::KeysUnavailable);
        };
        loaded.keys.select(alg, kid).cloned()
    }

    /// Whether the loaded key set holds `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.current.load().as_ref().is_some_and(|l| l.keys.has_kid(kid))
    }

    /// Whether `other` fetches from the same place with the same settings
    /// (a reload then keeps this key set and its state).
    pub fn same_source(&self, other: &RemoteKeys) -> bool {
        format!("{:?}|{:?}", self.source, self.settings) == format!("{:?}|{:?}", other.source, other.settings)
    }

    /// Marks the background refresh task as started; true for the first
    /// caller only.
    pub fn claim_refresh_task(&self) -> bool {
        !self.refresh_task.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether keys were loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Readiness details.
    pub fn status(&self) -> KeyStatus {
        let loaded = self.current.load();
        let state =
            self.state.lock().map(|s| (s.last_error.clone(), s.stale_since.is_some())).unwrap_or_default();
        KeyStatus {
            source: match &self.source {
                KeySource::Jwks(u) | KeySource::Discovery(u) => u.to_string(),
            },
            loaded: loaded.is_some(),
            keys: loaded.as_ref().map_or(0, |l| l.keys.len()),
            age_secs: loaded.as_ref().and_then(|l| l.fetched_at.elapsed().ok()).map(|d| d.as_secs()),
            stale: state.1 && loaded.is_some(),
            last_error: state.0,
            fetches_ok: self.fetches_ok.load(std::sync::atomic::Ordering::Relaxed),
            fetches_failed: self.fetches_failed.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Fetches the keys now. On success the new set replaces the old one and
    /// the time until the next scheduled refresh is returned; on failure the
    /// old set stays and the time until a retry (exponential, capped).
    pub async fn refresh(&self) -> Result<Duration, (FetchError, Duration)> {
        if let Ok(mut s) = self.state.lock() {
            s.last_attempt = Some(Instant::now());
        }
        let result = self.fetch().await;
        let counter = if result.is_ok() { &self.fetches_ok } else { &self.fetches_failed };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok((keys, max_age)) => {
                let count = keys.len();
                self.current.store(Some(Arc::new(Loaded { keys, fetched_at: SystemTime::now() })));
                if let Ok(mut s) = self.state.lock() {
                    if s.stale_since.is_some() {
                        tracing::info!(source = %self.status().source, "issuer keys fetched again; no longer stale");
                    }
                    *s = FetchState { last_attempt: s.last_attempt, ..FetchState::default() };
                }
                let next = max_age.unwrap_or(self.settings.max_refresh);
                let next = next.clamp(self.settings.min_refresh, self.settings.max_refresh);
                // Refresh a little before the issuer's cache lifetime ends.
                let next = next.mul_f64(0.9);
                tracing::debug!(keys = count, next_in = ?next, "issuer keys refreshed");
                Ok(next)
            }
            Err(e) => {
                let failures = self.state.lock().map_or(1, |mut s| {
                    s.failures = s.failures.saturating_add(1);
                    s.last_error = Some(e.to_string());
                    if s.stale_since.is_none() {
                        s.stale_since = Some(SystemTime::now());
                    }
                    s.failures
                });
                if self.is_loaded() {
                    tracing::warn!(error = %e, failures, "issuer keys could not be refreshed; serving the last good keys (stale)");
                } else {
                    tracing::warn!(error = %e, failures, "issuer keys could not be fetched; tokens of this issuer get 503 until they are");
                }
                let backoff = Duration::from_secs(1u64 << failures.min(6)).min(self.settings.max_refresh);
                Err((e, backoff))
            }
        }
    }

    /// Called when a token names a `kid` the key set lacks: refetches at
    /// most once per `refetch_interval` (concurrent callers share one
    /// fetch), and remembers kids still unknown afterwards. Returns whether
    /// the kid is now known.
    pub async fn refetch_for_unknown_kid(&self, kid: &str) -> bool {
        if kid.len() > 256 || self.unknown_kids.contains_key(kid) {
            return false;
        }
        let _flight = self.single_flight.lock().await;
        if self.has_kid(kid) {
            // Another request's refetch already brought it.
            return true;
        }
        let recent = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.last_attempt)
            .is_some_and(|t| t.elapsed() < self.settings.refetch_interval);
        if !recent {
            tracing::info!("token names an unknown kid; refetching the issuer's keys");
            let _ = self.refresh().await;
        }
        let known = self.has_kid(kid);
        if !known && !recent {
            self.unknown_kids.insert(kid.to_owned(), ());
        }
        known
    }

    async fn fetch(&self) -> Result<(JwksKeys, Option<Duration>), FetchError> {
        let jwks_url = match &self.source {
            KeySource::Jwks(url) => url.clone(),
            KeySource::Discovery(issuer) => self.discover(issuer).await?,
        };
        let (body, max_age) = self.get(&jwks_url).await?;
        let keys = JwksKeys::from_json(&body)
            .map_err(|e| FetchError::Document { url: jwks_url.to_string(), message: e.to_string() })?;
        Ok((keys, max_age))
    }

    async fn discover(&self, issuer: &url::Url) -> Result<url::Url, FetchError> {
        let doc_url = discovery_url(issuer);
        let (body, _) = self.get(&doc_url).await?;
        let bad =
            |message: &str| FetchError::Document { url: doc_url.to_string(), message: message.to_owned() };
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let doc: Discovery =
            serde_json::from_slice(&body).map_err(|_| bad("not an OpenID configuration document"))?;
        if doc.issuer.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
            return Err(bad("the document's `issuer` does not match the configured issuer"));
        }
        let jwks = url::Url::parse(&doc.jwks_uri).map_err(|_| bad("`jwks_uri` is not a URL"))?;
        if !fetchable(&jwks) {
            return Err(bad("`jwks_uri` must be https (http only on loopback)"));
        }
        Ok(jwks)
    }

    async fn get(&self, url: &url::Url) -> Result<(Bytes, Option<Duration>), FetchError> {
        let transport = |message: String| FetchError::Transport { url: url.to_string(), message };
        let uri: http::Uri = url.as_str().parse().map_err(|_| transport("not a valid URI".into()))?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, concat!("channelgate/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::new()))
            .map_err(|e| transport(e.to_string()))?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| transport(error_chain(&e)))?;
            let status = resp.status();
            if status != http::StatusCode::OK {
                return Err(FetchError::Status { url: url.to_string(), status: status.as_u16() });
            }
            let max_age = max_age(resp.headers());
            let body = Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| transport(format!("reading the body: {e}")))?
                .to_bytes();
            Ok((body, max_age))
        };
        tokio::time::timeout(self.settings.timeout, fut).await.map_err(|_| transport("timed out".into()))?
    }
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys").field("source", &self.source).finish_non_exhaustive()
    }
}

/// Whether a URL may be fetched: https, or http to a loopback host.
pub fn fetchable(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

/// `{issuer}/.well-known/openid-configuration` (the issuer's path kept).
pub fn discovery_url(issuer: &url::Url) -> url::Url {
    let mut u = issuer.clone();
    let path = format!("{}/.well-known/openid-configuration", issuer.path().trim_end_matches('/'));
    u.set_path(&path);
    u
}

/// `max-age` of a `Cache-Control` header (`no-store`/`no-cache` → 0).
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::CACHE_CONTROL)?.to_str().ok()?.to_ascii_lowercase();
    let mut out = None;
    for directive in value.split(',').map(str::trim) {
        if directive == "no-store" || directive == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = directive.strip_prefix("max-age=") {
            out = v.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    out
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    crate::diagnose::with_fetch_hint(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let mut h = http::HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(http::header::CACHE_CONTROL, "public, max-age=600".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(http::header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::ZERO));
    }

    #[test]
    fn only_https_or_loopback_http() {
        for (u, ok) in [
            ("https://auth.example.com/jwks", true),
            ("http://127.0.0.1:8080/jwks", true),
            ("http://localhost/jwks", true),
            ("http://[::1]/jwks", true),
            ("http://auth.example.com/jwks", false),
            ("http://10.0.0.1/jwks", false),
            ("file:///etc/passwd", false),
        ] {
            assert_eq!(fetchable(&url::Url::parse(u).unwrap()), ok, "{u}");
        }
    }

    #[test]
    fn discovery_keeps_the_issuer_path() {
        let u = url::Url::parse("https://login.example.com/tenant-1/").unwrap();
        assert_eq!(
            discovery_url(&u).as_str(),
            "https://login.example.com/tenant-1/.well-known/openid-configuration"
        );
        let u = url::Url::parse("https://auth.example.com").unwrap();
        assert_eq!(discovery_url(&u).as_str(), "https://auth.example.com/.well-known/openid-configuration");
    }
}
