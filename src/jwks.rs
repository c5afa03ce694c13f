//! Keys fetched from an issuer: a JWKS URL, or OIDC discovery from the
//! issuer URL. `session` verifies with them through its [`RemoteKeySet`]
//! trait and does no I/O itself; the fetching happens here, outside
//! requests: a background task ([`keep_fresh`]) refreshes the keys before
//! they go stale, and a request that meets an unknown `kid` may trigger at
//! most one rate-limited, single-flight refetch. The runtime owns each key
//! set and keeps it across reloads while its source and settings stay the
//! same.
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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::Algorithm;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::session::{AuthError, JwksKeys, KeyFingerprint, PublicKey, RemoteKeySet};
use crate::upstream::{HttpsClient, https_client};

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Longest wait between two attempts while the keys are stale or were never
/// fetched (the backoff starts at one second and doubles up to this).
const MAX_RETRY: Duration = Duration::from_secs(10);
/// Most kids remembered as unknown.
const UNKNOWN_KIDS: usize = 1024;
/// Longest `kid` looked up or remembered.
const MAX_KID_LEN: usize = 256;

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS document URL.
    Jwks(url::Url),
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration`, whose
    /// `jwks_uri` is then fetched. The document's `issuer` must equal the
    /// configured `issuer` string exactly (OpenID Connect Discovery §4.3).
    Discovery {
        /// The configured issuer, as written.
        issuer: String,
        /// The issuer parsed as a URL.
        url: url::Url,
    },
}

impl KeySource {
    /// The URL keys are fetched from (the issuer's for discovery).
    pub fn url(&self) -> &url::Url {
        match self {
            KeySource::Jwks(u) | KeySource::Discovery { url: u, .. } => u,
        }
    }
}

/// Refresh and fetch settings.
#[derive(Debug, Clone, PartialEq, Eq)]
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
///
/// Locking: `state` is a plain mutex held only for a few field updates,
/// never across a call into another method of this type, an await or I/O
/// (every access goes through [`RemoteKeys::with_state`], whose closure
/// sees the fields only). `single_flight` is an async mutex held across the
/// one refetch an unknown `kid` may cause, and by nothing else.
pub struct RemoteKeys {
    source: KeySource,
    settings: RemoteSettings,
    fetcher: Box<dyn Fetch>,
    current: ArcSwapOption<Loaded>,
    state: std::sync::Mutex<FetchState>,
    single_flight: tokio::sync::Mutex<()>,
    /// Kids a successful fetch did not bring, until when they are not
    /// refetched for again.
    unknown_kids: quick_cache::sync::Cache<String, Instant>,
    /// Wakes the background refresh when its schedule changed (a fetch
    /// failed or succeeded elsewhere) or the key set was dropped.
    wake: Arc<Notify>,
    refresh_task: AtomicBool,
    fetches_ok: AtomicU64,
    fetches_failed: AtomicU64,
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
    /// Failed attempts since the last success.
    failures: u32,
    stale_since: Option<SystemTime>,
    /// When the background refresh fetches next; `None`: at once.
    next_attempt: Option<Instant>,
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
    /// The discovery document names another issuer than the configured one.
    /// Tokens carry the document's value in `iss`, so with this mismatch
    /// every token would be refused: a configuration error.
    #[error(
        "{url}: the discovery document's issuer is `{discovered}` but the configured issuer is `{configured}`; \
         they must be equal exactly (OpenID Connect Discovery 4.3): set `issuer: {discovered}`"
    )]
    IssuerMismatch {
        /// The discovery document's URL.
        url: String,
        /// The configured issuer.
        configured: String,
        /// The document's `issuer` (cut to 200 characters).
        discovered: String,
    },
}

/// The future of one fetch: the key set and the issuer's cache lifetime.
pub type Fetched<'a> =
    Pin<Box<dyn Future<Output = Result<(JwksKeys, Option<Duration>), FetchError>> + Send + 'a>>;

/// How a key set is fetched: over HTTPS in production ([`RemoteKeys::new`]);
/// tests drive the schedule with their own on tokio's paused clock.
pub trait Fetch: Send + Sync {
    /// Fetches the key set once.
    fn fetch(&self) -> Fetched<'_>;
}

/// JWKS (directly or through OIDC discovery) over HTTPS.
struct Https {
    source: KeySource,
    client: HttpsClient,
    timeout: Duration,
}

impl Fetch for Https {
    fn fetch(&self) -> Fetched<'_> {
        Box::pin(self.fetch_keys())
    }
}

impl RemoteKeys {
    /// Creates the fetcher (an HTTPS client with the system roots and the
    /// configured CAs: reads files, so call it off the request threads);
    /// nothing is fetched until [`RemoteKeys::refresh`].
    pub fn new(source: KeySource, settings: RemoteSettings) -> Result<Self, String> {
        let client = https_client(&settings.extra_roots)?;
        let fetcher = Https { source: source.clone(), client, timeout: settings.timeout };
        Ok(Self::with_fetcher(source, settings, Box::new(fetcher)))
    }

    /// A key set fetched by `fetcher`.
    pub fn with_fetcher(source: KeySource, settings: RemoteSettings, fetcher: Box<dyn Fetch>) -> Self {
        Self {
            source,
            fetcher,
            current: ArcSwapOption::empty(),
            state: std::sync::Mutex::new(FetchState::default()),
            single_flight: tokio::sync::Mutex::new(()),
            unknown_kids: quick_cache::sync::Cache::new(UNKNOWN_KIDS),
            wake: Arc::new(Notify::new()),
            settings,
            refresh_task: AtomicBool::new(false),
            fetches_ok: AtomicU64::new(0),
            fetches_failed: AtomicU64::new(0),
        }
    }

    /// Runs `f` on the fetch state. The closure must not call back into
    /// `self` (the mutex is not reentrant): it gets the fields only.
    fn with_state<R>(&self, f: impl FnOnce(&mut FetchState) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Whether the loaded key set holds `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.current.load().as_ref().is_some_and(|l| l.keys.has_kid(kid))
    }

    /// Marks the background refresh task as started; true for the first
    /// caller only.
    pub fn claim_refresh_task(&self) -> bool {
        !self.refresh_task.swap(true, Ordering::SeqCst)
    }

    /// Whether keys were loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// How long until the background refresh should fetch (zero: now).
    pub fn until_next_attempt(&self) -> Duration {
        let next = self.with_state(|s| s.next_attempt);
        next.map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now()))
    }

    /// What wakes the background refresh early: notified whenever the
    /// schedule changes, and when the key set is dropped.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The URL keys come from, for logs and readiness.
    pub fn source_url(&self) -> &url::Url {
        self.source.url()
    }

    /// Readiness details.
    pub fn status(&self) -> KeyStatus {
        let loaded = self.current.load();
        let (last_error, stale) = self.with_state(|s| (s.last_error.clone(), s.stale_since.is_some()));
        KeyStatus {
            source: self.source_url().to_string(),
            loaded: loaded.is_some(),
            keys: loaded.as_ref().map_or(0, |l| l.keys.len()),
            age_secs: loaded.as_ref().and_then(|l| l.fetched_at.elapsed().ok()).map(|d| d.as_secs()),
            stale: stale && loaded.is_some(),
            last_error,
            fetches_ok: self.fetches_ok.load(Ordering::Relaxed),
            fetches_failed: self.fetches_failed.load(Ordering::Relaxed),
        }
    }

    /// Fetches the keys now. On success the new set replaces the old one and
    /// the next scheduled refresh is set from the issuer's Cache-Control
    /// (within the configured bounds); on failure the old set stays and a
    /// retry is scheduled with exponential backoff from 1 s, capped at 10 s.
    /// Either way the background refresh is woken to follow the new
    /// schedule. Returns the time until the next scheduled attempt.
    pub async fn refresh(&self) -> Result<Duration, (FetchError, Duration)> {
        self.with_state(|s| s.last_attempt = Some(Instant::now()));
        let result = self.fetcher.fetch().await;
        let counter = if result.is_ok() { &self.fetches_ok } else { &self.fetches_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        let outcome = match result {
            Ok((keys, max_age)) => {
                let count = keys.len();
                self.current.store(Some(Arc::new(Loaded { keys, fetched_at: SystemTime::now() })));
                // The new set answers for itself; kids it lacks are
                // remembered again by the next refetch that misses them.
                self.unknown_kids.clear();
                let next = max_age.unwrap_or(self.settings.max_refresh);
                let next = next.clamp(self.settings.min_refresh, self.settings.max_refresh);
                // Refresh a little before the issuer's cache lifetime ends.
                let next = next.mul_f64(0.9);
                let recovered = self.with_state(|s| {
                    let recovered = s.failures > 0;
                    *s = FetchState {
                        last_attempt: s.last_attempt,
                        next_attempt: Some(Instant::now() + next),
                        ..FetchState::default()
                    };
                    recovered
                });
                if recovered {
                    tracing::info!(source = %self.source_url(), keys = count, "issuer keys fetched again after failures");
                }
                tracing::debug!(keys = count, next_in = ?next, "issuer keys refreshed");
                Ok(next)
            }
            Err(e) => {
                let message = e.to_string();
                let (failures, retry) = self.with_state(|s| {
                    s.failures = s.failures.saturating_add(1);
                    s.last_error = Some(message);
                    if s.stale_since.is_none() {
                        s.stale_since = Some(SystemTime::now());
                    }
                    let retry = retry_after_failures(s.failures, self.settings.max_refresh);
                    s.next_attempt = Some(Instant::now() + retry);
                    (s.failures, retry)
                });
                if self.is_loaded() {
                    tracing::warn!(error = %e, failures, retry_in = ?retry, "issuer keys could not be refreshed; serving the last good keys (stale)");
                } else {
                    tracing::warn!(error = %e, failures, retry_in = ?retry, "issuer keys could not be fetched; tokens of this issuer get 503 until they are");
                }
                Err((e, retry))
            }
        };
        self.wake.notify_one();
        outcome
    }

    /// Called when a token names a `kid` the key set lacks: refetches at
    /// most once per `refetch_interval` (concurrent callers share one
    /// fetch). A kid is remembered as unknown (and not refetched for during
    /// `refetch_interval`) only after a *successful* fetch that did not
    /// bring it: a failed fetch proves nothing, and while the keys are stale
    /// the background refresh retries every few seconds anyway. Returns
    /// whether the kid is now known.
    pub async fn refetch_unknown_kid(&self, kid: &str) -> bool {
        if kid.len() > MAX_KID_LEN || self.known_unknown(kid) {
            return false;
        }
        let _flight = self.single_flight.lock().await;
        if self.has_kid(kid) {
            // Another request's refetch already brought it.
            return true;
        }
        let interval = self.settings.refetch_interval;
        let recent = self.with_state(|s| s.last_attempt).is_some_and(|t| t.elapsed() < interval);
        if !recent {
            tracing::info!(source = %self.source_url(), "token names an unknown kid; refetching the issuer's keys");
            if self.refresh().await.is_ok() && !self.has_kid(kid) {
                self.unknown_kids.insert(kid.to_owned(), Instant::now() + interval);
            }
        }
        self.has_kid(kid)
    }

    /// Whether a successful fetch lately showed `kid` unknown.
    fn known_unknown(&self, kid: &str) -> bool {
        match self.unknown_kids.get(kid) {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                self.unknown_kids.remove(kid);
                false
            }
            None => false,
        }
    }
}

impl Https {
    async fn fetch_keys(&self) -> Result<(JwksKeys, Option<Duration>), FetchError> {
        let jwks_url = match &self.source {
            KeySource::Jwks(url) => url.clone(),
            KeySource::Discovery { issuer, url } => self.discover(issuer, url).await?,
        };
        let (body, max_age) = self.get(&jwks_url).await?;
        let keys = JwksKeys::from_json(&body)
            .map_err(|e| FetchError::Document { url: jwks_url.to_string(), message: e.to_string() })?;
        Ok((keys, max_age))
    }

    async fn discover(&self, issuer: &str, issuer_url: &url::Url) -> Result<url::Url, FetchError> {
        let doc_url = discovery_url(issuer_url);
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
        if doc.issuer != issuer {
            return Err(FetchError::IssuerMismatch {
                url: doc_url.to_string(),
                configured: issuer.to_owned(),
                discovered: doc.issuer.chars().take(200).collect(),
            });
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
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| transport("timed out".into()))?
    }
}

impl RemoteKeySet for RemoteKeys {
    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<(PublicKey, KeyFingerprint), AuthError> {
        let loaded = self.current.load();
        let Some(loaded) = loaded.as_ref() else {
            return Err(AuthError::KeysUnavailable);
        };
        loaded.keys.select(alg, kid).map(|k| (k.key().clone(), k.fingerprint()))
    }

    fn holds(&self, fingerprint: &KeyFingerprint) -> bool {
        self.current.load().as_ref().is_some_and(|l| l.keys.holds(fingerprint))
    }

    fn is_stale(&self) -> bool {
        self.with_state(|s| s.failures > 0)
    }

    fn refetch_for_unknown_kid<'a>(
        &'a self,
        kid: &'a str,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(self.refetch_unknown_kid(kid))
    }
}

/// The background refresh of one issuer's keys: fetches when the key set's
/// schedule says so (before the issuer's Cache-Control lifetime ends; while
/// stale or never fetched, every 1–10 s with backoff) and sleeps otherwise,
/// woken early whenever the schedule changes (a refetch elsewhere) or the
/// key set is dropped. The task holds only a weak reference while it
/// sleeps: it ends when no gateway uses the key set any more.
pub async fn keep_fresh(weak: Weak<RemoteKeys>, fatal: Option<tokio::sync::mpsc::Sender<String>>) {
    loop {
        let Some(remote) = weak.upgrade() else { return };
        let wait = remote.until_next_attempt();
        if wait.is_zero() {
            if let Err((e @ FetchError::IssuerMismatch { .. }, _)) = remote.refresh().await
                && !remote.is_loaded()
                && let Some(fatal) = &fatal
            {
                let _ = fatal.try_send(e.to_string());
            }
            continue;
        }
        let wake = remote.waker();
        drop(remote);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

/// The wait before the next attempt after `failures` failed ones in a row:
/// 1 s, 2 s, 4 s, 8 s, then 10 s (never more than `max_refresh`).
fn retry_after_failures(failures: u32, max_refresh: Duration) -> Duration {
    let doubling = Duration::from_secs(1u64 << failures.saturating_sub(1).min(6));
    doubling.min(MAX_RETRY).min(max_refresh.max(Duration::from_secs(1)))
}

impl Drop for RemoteKeys {
    fn drop(&mut self) {
        // Lets the background refresh notice at once that it has no work.
        self.wake.notify_one();
    }
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys").field("source", &self.source.url().as_str()).finish_non_exhaustive()
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

    /// A fetcher the test drives: up or down, which kids it serves; it
    /// records when it was called (tokio's clock, paused in these tests).
    #[derive(Clone, Default)]
    struct Scripted(Arc<std::sync::Mutex<Script>>);

    #[derive(Default)]
    struct Script {
        up: bool,
        kids: Vec<&'static str>,
        calls: Vec<Instant>,
    }

    impl Scripted {
        fn set(&self, up: bool, kids: &[&'static str]) {
            let mut s = self.0.lock().unwrap();
            s.up = up;
            s.kids = kids.to_vec();
        }

        fn calls(&self) -> Vec<Instant> {
            self.0.lock().unwrap().calls.clone()
        }
    }

    impl Fetch for Scripted {
        fn fetch(&self) -> Fetched<'_> {
            let (up, kids) = {
                let mut s = self.0.lock().unwrap();
                s.calls.push(Instant::now());
                (s.up, s.kids.clone())
            };
            Box::pin(async move {
                if !up {
                    return Err(FetchError::Transport {
                        url: "https://idp.test/jwks".into(),
                        message: "down".into(),
                    });
                }
                let keys: Vec<serde_json::Value> = kids
                    .iter()
                    .enumerate()
                    .map(|(i, kid)| {
                        let x = base64::Engine::encode(
                            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                            [u8::try_from(i).unwrap() + 1; 32],
                        );
                        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid})
                    })
                    .collect();
                let doc = serde_json::json!({ "keys": keys }).to_string();
                Ok((JwksKeys::from_json(doc.as_bytes()).unwrap(), Some(Duration::from_secs(3600))))
            })
        }
    }

    fn keys(script: &Scripted) -> Arc<RemoteKeys> {
        let source = KeySource::Jwks(url::Url::parse("https://idp.test/jwks").unwrap());
        Arc::new(RemoteKeys::with_fetcher(source, RemoteSettings::default(), Box::new(script.clone())))
    }

    /// Seconds between consecutive calls.
    fn gaps(calls: &[Instant]) -> Vec<u64> {
        calls.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn never_fetched_keys_are_retried_every_one_to_ten_seconds_until_the_issuer_answers() {
        let script = Scripted::default();
        let remote = keys(&script);
        tokio::spawn(keep_fresh(Arc::downgrade(&remote), None));
        tokio::time::sleep(Duration::from_secs(36)).await;
        assert_eq!(gaps(&script.calls()), [1, 2, 4, 8, 10, 10]);
        assert!(!remote.is_loaded() && remote.is_stale());
        // The issuer comes back: within one retry the keys load.
        script.set(true, &["k1"]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(remote.is_loaded() && !remote.is_stale() && remote.has_kid("k1"));
        let fetched = script.calls().len();
        // Then the issuer's Cache-Control sets the pace (0.9 × 1 h).
        tokio::time::sleep(Duration::from_secs(3000)).await;
        assert_eq!(script.calls().len(), fetched);
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(script.calls().len(), fetched + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_wakes_the_schedule_and_a_kid_rotated_in_meanwhile_arrives_within_ten_seconds() {
        let script = Scripted::default();
        script.set(true, &["k1"]);
        let remote = keys(&script);
        tokio::spawn(keep_fresh(Arc::downgrade(&remote), None));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(script.calls().len(), 1, "fresh keys: no fetch before Cache-Control says so");
        // The issuer goes down and rotates to k2; a token names k2.
        script.set(false, &["k2"]);
        assert!(!remote.refetch_unknown_kid("k2").await);
        assert!(remote.is_stale(), "a failed refetch leaves the keys stale (503, not 401)");
        assert!(!remote.known_unknown("k2"), "a failed fetch proves nothing about k2");
        // The background refresh, woken by the failure, retries at once.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let gaps_down = gaps(&script.calls()[1..]);
        assert_eq!(gaps_down, [1, 2, 4, 8], "{gaps_down:?}");
        // Back with k1 and k2.
        script.set(true, &["k1", "k2"]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(remote.has_kid("k2") && !remote.is_stale());
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_refetch_at_most_once_per_interval_and_are_remembered_after_success_only() {
        let script = Scripted::default();
        script.set(true, &["k1"]);
        let remote = keys(&script);
        remote.refresh().await.unwrap();
        // Within the refetch interval of the last fetch: no refetch.
        assert!(!remote.refetch_unknown_kid("bogus").await);
        assert_eq!(script.calls().len(), 1);
        tokio::time::sleep(Duration::from_secs(31)).await;
        // One refetch; it did not bring the kid: remembered as unknown.
        assert!(!remote.refetch_unknown_kid("bogus").await);
        assert_eq!(script.calls().len(), 2);
        assert!(remote.known_unknown("bogus"));
        for _ in 0..100 {
            assert!(!remote.refetch_unknown_kid("bogus").await);
        }
        assert_eq!(script.calls().len(), 2, "a flood of a bogus kid causes no fetch");
        // A kid the issuer publishes later is found by the next refetch.
        script.set(true, &["k1", "k2"]);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(remote.refetch_unknown_kid("k2").await);
        assert!(!remote.known_unknown("bogus"), "a successful fetch clears what was remembered");
    }

    #[test]
    fn retries_back_off_from_one_second_to_ten() {
        let hour = Duration::from_secs(3600);
        let waits: Vec<u64> = (1..=7).map(|f| retry_after_failures(f, hour).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(retry_after_failures(u32::MAX, hour), MAX_RETRY);
        // Short refresh bounds (tests, eager operators) retry at least that often.
        assert_eq!(retry_after_failures(5, Duration::from_secs(3)), Duration::from_secs(3));
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
