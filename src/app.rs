//! Wiring: a validated [`Config`] plus compiled policies become a
//! [`Gateway`] (everything a request needs, shared read-only behind an
//! `Arc`), and [`App`] binds and serves it.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigErrors, Cors, HttpSettings, Mode, TlsFiles};
use crate::http::limit::RateLimits;
use crate::policy::Policy;
use crate::pusher::Signer;
use crate::session::remote::{KeyStatus, RemoteKeys};
use crate::session::{Authenticator, Claims, KeySet, TokenSource, Verifier};
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
    pub sessions: Authenticator<cel::Value>,
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
}

fn claims_to_cel(claims: &Claims) -> cel::Value {
    crate::policy::value::object_to_cel(claims.as_map())
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

/// A loaded application: gateway plus listener settings.
#[derive(Debug)]
pub struct App {
    /// The shared gateway.
    pub gateway: Arc<Gateway>,
    /// Listen address from the config.
    pub listen: std::net::SocketAddr,
    /// TLS configuration, when `tls` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl App {
    /// Loads config and policies, collecting every error of both.
    pub fn load(path: &Path) -> Result<App, ConfigErrors> {
        let config = Config::load(path)?;
        Self::from_config(config)
    }

    /// Compiles the policies and sets up TLS for a validated config.
    pub fn from_config(config: Config) -> Result<App, ConfigErrors> {
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
        let gateway = Gateway {
            mode: config.mode,
            signer: config.signer,
            sessions: Authenticator::new(Verifier::new(config.issuers), config.token_cache, claims_to_cel),
            token_sources: config.token_sources,
            policy,
            cors: config.cors,
            http: config.http,
            limits: RateLimits::new(&config.rate_limit),
        };
        Ok(App { gateway: Arc::new(gateway), listen: config.listen, tls })
    }

    /// Serves on an already bound listener until `shutdown` resolves.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let gw = self.gateway.clone();
        let mut tasks = Vec::new();
        // Keeps rate-limiter memory bounded: buckets that refilled are dropped.
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                gw.limits.retain_recent();
            }
        }));
        // Fetches each remote issuer's keys now, then before they go stale.
        for (_, remote) in self.gateway.remote_issuers() {
            let remote = remote.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let wait = match remote.refresh().await {
                        Ok(next) => next,
                        Err((_, retry)) => retry,
                    };
                    tokio::time::sleep(wait).await;
                }
            }));
        }
        crate::http::server::serve(listener, self.tls, self.gateway, shutdown, Duration::from_secs(10)).await;
        for t in tasks {
            t.abort();
        }
    }
}
