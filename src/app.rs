//! Wiring and lifecycle.
//!
//! A validated [`Config`] (plain data) plus compiled policies become a
//! [`Gateway`]: everything a request needs, read-only behind an `Arc`. The
//! [`Runtime`] holds the current gateway in an atomic pointer and swaps in a
//! new one on reload (file change or SIGHUP, see `reload.rs`) only after the
//! new config, policies and certificates all validate; a request keeps the
//! gateway it started with.
//!
//! The runtime owns the live objects and keeps them across reloads while
//! their settings stay the same ([`Live`]): the issuers' remote key sets
//! (with what they fetched), the verified-token cache and its counters, the
//! rate limiters (a 429 survives a reload), the outgoing HTTPS client; and,
//! for the process's life, metrics, the audit sink, revocations and the
//! draining flag. [`App`] binds the listeners and runs the startup and
//! shutdown sequence.

pub(crate) mod lookups;
mod reload;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::TcpListener;

use crate::audit::Audit;
use crate::config::{
    Config, ConfigErrors, Cors, HttpSettings, KeySpec, Mode, PublishSettings, RateLimitSettings, RemoteSpec,
    TlsFiles, WebhookSettings,
};
use crate::http::limit::RateLimits;
use crate::jwks::{KeyStatus, RemoteKeys};
use crate::policy::{Policy, TokenValue};
use crate::pusher::Signer;
use crate::revocation::Revocations;
use crate::secret::Secret;
use crate::session::{Authenticator, Claims, KeySet, TokenCache, TokenSource, Verifier};
use crate::telemetry::Metrics;
use crate::upstream::{HttpsClient, PusherApi, https_client};
use crate::yaml::SourceError;

use reload::Watched;

/// Everything a request needs. Read-only once built.
#[derive(Debug)]
pub struct Gateway {
    /// Development or production.
    pub mode: Mode,
    /// Pusher signing credentials.
    pub signer: Signer,
    /// JWT verification behind the verified-token cache; each session
    /// carries its claims converted to CEL once.
    pub sessions: Authenticator<TokenValue>,
    /// Where tokens are looked for.
    pub token_sources: Vec<TokenSource>,
    /// The compiled policy.
    pub policy: Policy,
    /// CORS settings.
    pub cors: Cors,
    /// Endpoint paths and limits.
    pub http: HttpSettings,
    /// Rate limiters (owned by the runtime; shared across reloads).
    pub limits: Arc<RateLimits>,
    /// The Pusher app id.
    pub app_id: String,
    /// The Pusher REST API with the real credentials, when `api_url` is set.
    pub pusher_api: Option<PusherApi>,
    /// Bearer token of the admin API (`None`: admin API off).
    pub admin_token: Option<Secret>,
    /// Publish proxy settings.
    pub publish: Option<PublishSettings>,
    /// Webhook relay settings and its client.
    pub webhooks: Option<(WebhookSettings, HttpsClient)>,
    /// The Pusher-protocol server signed for (`target:`), for lints.
    pub target: Option<crate::policy::lint::Target>,
    /// The issuers whose keys are fetched (also inside `sessions`).
    remote: Vec<(Option<String>, Arc<RemoteKeys>)>,
    /// Session introspection, and each rule's lookup and hook.
    pub(crate) lookups: lookups::Lookups,
}

/// What a session derives from its verified claims: their CEL value,
/// converted member by member as the policy reads them.
fn claims_to_cel(claims: &Claims) -> TokenValue {
    // The token check located the members (unless a name had escapes);
    // verified claims are a JSON object: the last fallback is never taken.
    claims
        .member_spans()
        .and_then(|spans| {
            TokenValue::from_located_members(
                claims.json(),
                spans.iter().map(|s| (s.name.clone(), s.value.clone())),
            )
        })
        .or_else(|| TokenValue::from_json_text(claims.json()))
        .unwrap_or_else(|| TokenValue::from_claims(claims.as_map()))
}

impl Gateway {
    /// Issuers whose keys are fetched, with their configured `issuer`.
    pub fn remote_issuers(&self) -> impl Iterator<Item = (Option<&str>, &Arc<RemoteKeys>)> {
        self.remote.iter().map(|(iss, keys)| (iss.as_deref(), keys))
    }

    /// Ready when every remote issuer's keys were fetched at least once
    /// (afterwards stale keys keep serving, so readiness stays true).
    pub fn is_ready(&self) -> bool {
        self.remote_issuers().all(|(_, r)| r.is_loaded())
    }

    /// Key state of each remote issuer, for `/readyz`.
    pub fn key_status(&self) -> Vec<(Option<String>, KeyStatus)> {
        self.remote_issuers().map(|(iss, r)| (iss.map(str::to_owned), r.status())).collect()
    }

    /// Refreshes every remote issuer's keys once (for one-shot commands).
    pub async fn refresh_keys_once(&self) {
        for (_, r) in self.remote_issuers() {
            let _ = r.refresh().await;
        }
    }
}

/// The live objects a configuration uses, owned by the runtime: a reload
/// reuses each one whose settings did not change.
#[derive(Clone)]
struct Live {
    /// Remote key sets by what they fetch.
    remote: Vec<(RemoteSpec, Arc<RemoteKeys>)>,
    /// The verified-token cache.
    cache: Option<Arc<TokenCache<TokenValue>>>,
    /// The rate limiters and their settings.
    limits: Option<(RateLimitSettings, Arc<RateLimits>)>,
    /// The HTTPS client (system roots) for the REST API, webhooks, the
    /// session endpoint and hooks.
    client: Option<HttpsClient>,
    /// Introspection, data sources, lookups and hooks.
    lookups: lookups::LiveLookups,
}

impl Live {
    fn empty() -> Self {
        Self { remote: Vec::new(), cache: None, limits: None, client: None, lookups: Default::default() }
    }
}

/// The running service: what survives reloads.
pub struct Runtime {
    current: ArcSwap<Gateway>,
    tls: ArcSwapOption<rustls::ServerConfig>,
    draining: AtomicBool,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Audit sink (its destination is fixed at startup).
    pub audit: Audit,
    /// Revocations (store fixed at startup).
    pub revocations: Arc<Revocations>,
    /// The config file, as an absolute path.
    config_path: PathBuf,
    /// The live objects; the lock also makes reloads one at a time.
    live: tokio::sync::Mutex<Live>,
    /// What the file watcher watches; replaced by every reload.
    watched: tokio::sync::watch::Sender<Arc<Watched>>,
    listen: SocketAddr,
    admin_listen: Option<SocketAddr>,
    watch: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("config_path", &self.config_path).finish_non_exhaustive()
    }
}

impl Runtime {
    /// The gateway in force now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// The TLS configuration in force now (new connections use it).
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.load_full()
    }

    /// Ready: not shutting down, every remote issuer's keys fetched once,
    /// and the revocation set in sync (or allowed to be stale).
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
            && self.gateway().is_ready()
            && (self.revocations.in_sync() || self.revocations.check_mode_allows_stale())
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Turns readiness off: the first step of a graceful shutdown.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// Builds a gateway (and TLS config) from a validated config, reusing the
/// live objects of `live` whose settings are unchanged; returns the live
/// objects the new gateway uses. Reads policy and certificate files and may
/// load system roots: call it off the request threads.
fn build(
    config: Config,
    live: &Live,
) -> Result<(Gateway, Option<Arc<rustls::ServerConfig>>, Live), ConfigErrors> {
    let source = config.source.clone();
    let config_error = |message: String| ConfigErrors(vec![SourceError::new(&source, 0, 0, message)]);
    let mut errors: Vec<SourceError> = Vec::new();
    let policy =
        Policy::load(&config.policies, config.max_member_bytes).map_err(|mut e| errors.append(&mut e));
    let tls = config.tls.as_ref().map(|TlsFiles { cert, key }| {
        crate::tls::server_config(cert, key)
            .map_err(|e| errors.push(SourceError::new(&config.source, 0, 0, e.to_string())))
    });
    let (Ok(policy), tls) = (policy, tls.transpose()) else {
        return Err(ConfigErrors(errors));
    };
    let Ok(tls) = tls else {
        return Err(ConfigErrors(errors));
    };

    // Issuers: remote key sets kept by spec, so a reload never makes the
    // gateway wait for its issuers again.
    let mut next = Live {
        remote: Vec::new(),
        cache: None,
        limits: None,
        client: live.client.clone(),
        lookups: Default::default(),
    };
    let mut issuers = Vec::with_capacity(config.issuers.len());
    let mut remote = Vec::new();
    for issuer in &config.issuers {
        let keys = match &issuer.keys {
            KeySpec::Static(keys) => keys.clone(),
            KeySpec::Remote(spec) => {
                let kept =
                    next.remote.iter().chain(&live.remote).find(|(s, _)| s == spec).map(|(_, k)| k.clone());
                let keys = match kept {
                    Some(k) => k,
                    None => Arc::new(
                        RemoteKeys::new(spec.source.clone(), spec.settings.clone())
                            .map_err(|e| config_error(format!("session.jwt: {e}")))?,
                    ),
                };
                if !next.remote.iter().any(|(s, _)| s == spec) {
                    next.remote.push((spec.clone(), keys.clone()));
                }
                remote.push((issuer.issuer.clone(), keys.clone()));
                KeySet::Remote(keys)
            }
        };
        issuers.push(issuer.settings(keys));
    }
    let cache = match &live.cache {
        Some(cache) if cache.settings() == config.token_cache => cache.clone(),
        _ => Arc::new(TokenCache::new(config.token_cache)),
    };
    next.cache = Some(cache.clone());
    let limits = match &live.limits {
        Some((settings, limits)) if *settings == config.rate_limit => limits.clone(),
        _ => Arc::new(RateLimits::new(&config.rate_limit)),
    };
    next.limits = Some((config.rate_limit.clone(), limits.clone()));

    let needs_client = config.api_url.is_some()
        || config.webhooks.is_some()
        || config.introspect.is_some()
        || policy.rules().iter().any(|r| r.hook().is_some());
    let client = match (&next.client, needs_client) {
        (Some(c), _) => Some(c.clone()),
        (None, true) => Some(https_client(&[]).map_err(config_error)?),
        (None, false) => None,
    };
    next.client = client.clone();
    let (lookups, live_lookups) = lookups::build(
        config.introspect.as_ref(),
        &config.sources,
        &policy,
        || client.clone().ok_or_else(|| "no HTTP client".to_owned()),
        &live.lookups,
    )
    .map_err(|e| ConfigErrors(e.into_iter().map(|m| SourceError::new(&source, 0, 0, m)).collect()))?;
    next.lookups = live_lookups;
    let pusher_api = match (&config.api_url, &client) {
        (Some(url), Some(client)) => {
            let (timeout, retries) =
                config.publish.as_ref().map_or((Duration::from_secs(5), 2), |p| (p.timeout, p.retries));
            Some(PusherApi::new(
                client.clone(),
                url.clone(),
                config.signer.app_key().to_owned(),
                config.pusher_secret.clone(),
                timeout,
                retries,
            ))
        }
        _ => None,
    };
    let webhooks = config.webhooks.zip(client);
    let gateway = Gateway {
        app_id: config.app_id,
        pusher_api,
        admin_token: config.admin_token,
        publish: config.publish,
        webhooks,
        mode: config.mode,
        signer: config.signer,
        sessions: Authenticator::new(Verifier::new(issuers), cache, claims_to_cel),
        token_sources: config.token_sources,
        policy,
        cors: config.cors,
        http: config.http,
        limits,
        target: config.target,
        remote,
        lookups,
    };
    Ok((gateway, tls, next))
}

/// Starts the background refresh of each remote issuer that has none yet.
/// `fatal` (at startup only) hears of a configuration error that only a
/// fetch can reveal: an OIDC discovery document naming another issuer than
/// the configured one, before any key was ever loaded.
fn spawn_key_refresh(gateway: &Gateway, fatal: Option<&tokio::sync::mpsc::Sender<String>>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
    for (_, remote) in gateway.remote_issuers() {
        if !remote.claim_refresh_task() {
            continue;
        }
        handle.spawn(crate::jwks::keep_fresh(Arc::downgrade(remote), fatal.cloned()));
    }
}

/// A loaded application.
#[derive(Debug)]
pub struct App {
    /// The running service.
    pub runtime: Arc<Runtime>,
}

impl App {
    /// Loads config, policies and certificates, collecting every error, and
    /// starts the audit writer.
    pub fn load(path: &Path) -> Result<App, ConfigErrors> {
        let config = Config::load(path)?;
        Self::from_config(config)
    }

    /// Builds the runtime for a validated config.
    pub fn from_config(config: Config) -> Result<App, ConfigErrors> {
        // Reloads read the same file whatever the working directory is then.
        let source = std::path::absolute(&config.source).unwrap_or_else(|_| config.source.clone());
        let (listen, admin_listen, watch) = (config.listen, config.admin_listen, config.watch);
        let watched = Watched::of(&config);
        let audit = match &config.audit {
            None => Audit::disabled(),
            Some(to) => Audit::start(to).map_err(|e| {
                ConfigErrors(vec![SourceError::new(
                    &source,
                    0,
                    0,
                    format!("audit: cannot open the destination: {e}"),
                )])
            })?,
        };
        let revocations = Revocations::new(&config.revocation);
        let (gateway, tls, live) = build(config, &Live::empty())?;
        let runtime = Arc::new_cyclic(|weak| Runtime {
            revocations,
            current: ArcSwap::from_pointee(gateway),
            tls: ArcSwapOption::new(tls),
            draining: AtomicBool::new(false),
            metrics: Metrics::new(weak.clone()),
            audit,
            config_path: source,
            live: tokio::sync::Mutex::new(live),
            watched: tokio::sync::watch::Sender::new(Arc::new(watched)),
            listen,
            admin_listen,
            watch,
        });
        Ok(App { runtime })
    }

    /// The gateway in force now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.runtime.gateway()
    }

    /// The configured public listen address.
    pub fn listen(&self) -> SocketAddr {
        self.runtime.listen
    }

    /// The configured admin listen address, if any.
    pub fn admin_listen(&self) -> Option<SocketAddr> {
        self.runtime.admin_listen
    }

    /// Serves the public listener only, until `shutdown` (for tests and
    /// embedding); see [`App::run`] for the full lifecycle.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let _ = self.run(listener, None, shutdown).await;
    }

    /// Runs until `shutdown` resolves: fetches issuer keys, serves the
    /// public and admin listeners, reloads on file change and SIGHUP. Then:
    /// readiness turns false, `shutdown_delay` passes (load balancers
    /// notice), the public listener stops accepting and open requests
    /// finish within `shutdown_grace`; then the admin listener closes.
    ///
    /// A configuration error that only the first fetch of an issuer's keys
    /// can reveal (its discovery document names another issuer) stops the
    /// server the same way and is returned, for exit code 78.
    pub async fn run(
        self,
        public: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), String> {
        let rt = self.runtime;
        let mut tasks = Vec::new();
        let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<String>(4);
        spawn_key_refresh(&rt.gateway(), Some(&fatal_tx));
        drop(fatal_tx);
        let fatal = Arc::new(std::sync::OnceLock::<String>::new());
        rt.revocations.start();
        // Keeps rate-limiter memory bounded: buckets that refilled are dropped.
        let weak = Arc::downgrade(&rt);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(rt) = weak.upgrade() else { return };
                rt.gateway().limits.retain_recent();
            }
        }));
        tasks.push(tokio::spawn(reload::on_sighup(Arc::downgrade(&rt))));
        if rt.watch {
            tasks.push(tokio::spawn(reload::watch_files(Arc::downgrade(&rt))));
        }

        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = admin.map(|listener| {
            let rt = rt.clone();
            tokio::spawn(async move {
                crate::http::server::serve(listener, rt, crate::http::Listener::Admin, async {
                    let _ = admin_stopped.await;
                })
                .await;
            })
        });

        let http = rt.gateway().http.clone();
        let drain_rt = rt.clone();
        let fatal_seen = fatal.clone();
        let public_shutdown = async move {
            tokio::select! {
                () = shutdown => {}
                Some(message) = fatal_rx.recv() => {
                    tracing::error!(error = %message, "configuration error; stopping");
                    let _ = fatal_seen.set(message);
                }
            }
            drain_rt.start_draining();
            tracing::info!(delay = ?http.shutdown_delay, grace = ?http.shutdown_grace, "shutting down: not ready");
            tokio::time::sleep(http.shutdown_delay).await;
        };
        crate::http::server::serve(public, rt.clone(), crate::http::Listener::Public, public_shutdown).await;
        let _ = admin_stop.send(());
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        for t in tasks {
            t.abort();
        }
        match Arc::try_unwrap(fatal).ok().and_then(std::sync::OnceLock::into_inner) {
            Some(message) => Err(message),
            None => Ok(()),
        }
    }
}
