//! Wiring and lifecycle.
//!
//! A validated [`Config`] plus compiled policies become a [`Gateway`]:
//! everything a request needs, read-only behind an `Arc`. The [`Runtime`]
//! holds the current gateway in an atomic pointer and swaps in a new one on
//! reload (file change or SIGHUP) only after the new config, policies and
//! certificates all validate; a request keeps the gateway it started with.
//! What must outlive reloads — metrics, the audit sink, issuer keys already
//! fetched, the draining flag — lives in the runtime. [`App`] binds the
//! listeners and runs the startup and shutdown sequence.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::TcpListener;

use crate::audit::Audit;
use crate::config::{
    Config, ConfigErrors, Cors, HttpSettings, Mode, PublishSettings, TlsFiles, WebhookSettings,
};
use crate::http::limit::RateLimits;
use crate::policy::{Policy, TokenValue};
use crate::pusher::Signer;
use crate::revocation::Revocations;
use crate::secret::Secret;
use crate::session::remote::{FetchError, KeyStatus, RemoteKeys};
use crate::session::{Authenticator, Claims, KeySet, TokenSource, Verifier};
use crate::telemetry::{Metrics, ResultLabels};
use crate::upstream::{HttpsClient, PusherApi, https_client};
use crate::yaml::SourceError;

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
    /// Rate limiters.
    pub limits: RateLimits,
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
    /// Issuers whose keys are fetched, with their position in the config.
    pub fn remote_issuers(&self) -> impl Iterator<Item = (Option<&str>, &Arc<RemoteKeys>)> {
        self.sessions.verifier().issuers().iter().filter_map(|i| match &i.keys {
            KeySet::Remote(r) => Some((i.issuer.as_deref(), r)),
            _ => None,
        })
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

/// The running service: what survives reloads.
#[derive(Debug)]
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
    config_path: PathBuf,
    watched: std::sync::Mutex<Watched>,
    reload_lock: std::sync::Mutex<()>,
    listen: SocketAddr,
    admin_listen: Option<SocketAddr>,
    watch: bool,
}

/// Paths whose change triggers a reload.
#[derive(Debug, Clone, Default)]
struct Watched {
    files: Vec<PathBuf>,
    policies: PathBuf,
}

impl Watched {
    fn of(config: &Config) -> Self {
        let mut files = vec![config.source.clone()];
        if let Some(t) = &config.tls {
            files.push(t.cert.clone());
            files.push(t.key.clone());
        }
        Self { files, policies: config.policies.clone() }
    }

    /// Folders to watch (non-recursively, except the policy folder).
    fn folders(&self) -> Vec<(PathBuf, bool)> {
        let mut out: Vec<(PathBuf, bool)> = Vec::new();
        for f in &self.files {
            if let Some(parent) = f.parent() {
                let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
                out.push((parent.to_owned(), false));
            }
        }
        if self.policies.is_dir() {
            out.push((self.policies.clone(), true));
        } else if let Some(parent) = self.policies.parent() {
            out.push((parent.to_owned(), false));
        }
        out.sort();
        out.dedup();
        out
    }

    fn is_relevant(&self, path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Kubernetes swaps mounted files through a `..data` symlink.
        name.starts_with("..")
            || self.files.iter().any(|f| same_file(f, path))
            || path.starts_with(&self.policies)
            || same_file(&self.policies, path)
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || (a.file_name() == b.file_name() && a.canonicalize().ok() == b.canonicalize().ok())
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

    /// Re-reads config, policies and certificates and swaps them in if all
    /// of them are valid. On error nothing changes, the errors (with
    /// file:line) are returned and logged, and a failed reload is counted.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.gateway();
        let result = Config::load(&self.config_path).and_then(|config| {
            if config.listen != self.listen || config.admin_listen != self.admin_listen {
                tracing::warn!("listen addresses changed; they take effect after a restart");
            }
            let watched = Watched::of(&config);
            let (gateway, tls) = build(config, Some(&old))?;
            Ok((gateway, tls, watched))
        });
        match result {
            Ok((gateway, tls, watched)) => {
                let gateway = Arc::new(gateway);
                self.current.store(gateway.clone());
                if tls.is_some() || self.tls.load().is_some() {
                    self.tls.store(tls);
                }
                if let Ok(mut w) = self.watched.lock() {
                    *w = watched;
                }
                spawn_key_refresh(&gateway, None);
                self.metrics.reloads.get_or_create(&ResultLabels { result: "ok" }).inc();
                tracing::info!(rules = gateway.policy.rules().len(), "configuration reloaded");
                crate::diagnose::log_warnings(&gateway);
                Ok(())
            }
            Err(e) => {
                self.metrics.reloads.get_or_create(&ResultLabels { result: "error" }).inc();
                for err in &e.0 {
                    tracing::error!(error = %err, "reload refused; the running configuration stays in force");
                }
                Err(e)
            }
        }
    }
}

/// Builds a gateway (and TLS config) from a validated config. Issuer keys
/// already fetched by `previous` for the same source are kept, so a reload
/// never makes the gateway wait for its issuers again.
fn build(
    mut config: Config,
    previous: Option<&Gateway>,
) -> Result<(Gateway, Option<Arc<rustls::ServerConfig>>), ConfigErrors> {
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
    if let Some(previous) = previous {
        for issuer in &mut config.issuers {
            if let KeySet::Remote(new) = &issuer.keys
                && let Some((_, old)) = previous.remote_issuers().find(|(_, old)| old.same_source(new))
            {
                issuer.keys = KeySet::Remote(old.clone());
            }
        }
    }
    let pusher_api = match (&config.api_url, &config.publish) {
        (Some(url), publish) => {
            let (timeout, retries) =
                publish.as_ref().map_or((Duration::from_secs(5), 2), |p| (p.timeout, p.retries));
            Some(
                PusherApi::new(
                    url.clone(),
                    config.signer.app_key().to_owned(),
                    config.pusher_secret.clone(),
                    timeout,
                    retries,
                )
                .map_err(|e| {
                    ConfigErrors(vec![SourceError::new(&config.source, 0, 0, format!("pusher.api_url: {e}"))])
                })?,
            )
        }
        (None, _) => None,
    };
    let webhooks = match config.webhooks {
        Some(w) => Some((
            w,
            https_client(&[]).map_err(|e| ConfigErrors(vec![SourceError::new(&config.source, 0, 0, e)]))?,
        )),
        None => None,
    };
    let gateway = Gateway {
        app_id: config.app_id,
        pusher_api,
        admin_token: config.admin_token,
        publish: config.publish,
        webhooks,
        mode: config.mode,
        signer: config.signer,
        sessions: Authenticator::new(Verifier::new(config.issuers), config.token_cache, claims_to_cel),
        token_sources: config.token_sources,
        policy,
        cors: config.cors,
        http: config.http,
        limits: RateLimits::new(&config.rate_limit),
        target: config.target,
    };
    Ok((gateway, tls))
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
        handle.spawn(keep_keys_fresh(Arc::downgrade(remote), fatal.cloned()));
    }
}

/// The background refresh of one issuer's keys: fetches when the key set's
/// schedule says so (before the issuer's Cache-Control lifetime ends; while
/// stale or never fetched, every 1–10 s with backoff) and sleeps otherwise,
/// woken early whenever the schedule changes (a refetch elsewhere) or the
/// key set is dropped. The task holds only a weak reference while it
/// sleeps: it ends when no gateway uses the key set any more.
async fn keep_keys_fresh(weak: Weak<RemoteKeys>, fatal: Option<tokio::sync::mpsc::Sender<String>>) {
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
        let source = config.source.clone();
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
        let (gateway, tls) = build(config, None)?;
        let runtime = Arc::new_cyclic(|weak| Runtime {
            revocations,
            current: ArcSwap::from_pointee(gateway),
            tls: ArcSwapOption::new(tls),
            draining: AtomicBool::new(false),
            metrics: Metrics::new(weak.clone()),
            audit,
            config_path: source,
            watched: std::sync::Mutex::new(watched),
            reload_lock: std::sync::Mutex::new(()),
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
        tasks.push(tokio::spawn(reload_on_sighup(Arc::downgrade(&rt))));
        let _watcher = if rt.watch { watch_files(&rt) } else { None };

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

/// Reloads on SIGHUP.
async fn reload_on_sighup(rt: Weak<Runtime>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let Some(rt) = rt.upgrade() else { return };
            tracing::info!("SIGHUP: reloading");
            let _ = rt.reload();
        }
    }
    #[cfg(not(unix))]
    let _ = rt;
}

/// Watches config, policy and certificate files; a change reloads after a
/// short quiet period (editors write files in several steps).
fn watch_files(rt: &Arc<Runtime>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let watched = rt.watched.lock().ok()?.clone();
    let filter = watched.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event.paths.iter().any(|p| filter.is_relevant(p))
        {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP"))
    .ok()?;
    for (folder, recursive) in watched.folders() {
        let mode =
            if recursive { notify::RecursiveMode::Recursive } else { notify::RecursiveMode::NonRecursive };
        if let Err(e) = watcher.watch(&folder, mode) {
            tracing::warn!(folder = %folder.display(), error = %e, "cannot watch folder; reload with SIGHUP");
        }
    }
    let weak = Arc::downgrade(rt);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let Some(rt) = weak.upgrade() else { return };
            tracing::info!("a watched file changed: reloading");
            let _ = rt.reload();
        }
    });
    Some(watcher)
}
