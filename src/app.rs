//! Wiring: a validated [`Config`] plus compiled policies become a
//! [`Gateway`] (everything a request needs, shared read-only behind an
//! `Arc`), and [`App`] binds and serves it.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigErrors, Cors, HttpSettings, Mode, TlsFiles};
use crate::policy::Policy;
use crate::pusher::Signer;
use crate::session::{TokenSource, Verifier};
use crate::yaml::SourceError;

/// Everything a request needs. Read-only once built.
#[derive(Debug)]
pub struct Gateway {
    /// Development or production.
    pub mode: Mode,
    /// Pusher signing credentials.
    pub signer: Signer,
    /// JWT verification.
    pub verifier: Verifier,
    /// Where tokens are looked for.
    pub token_sources: Vec<TokenSource>,
    /// The compiled policy.
    pub policy: Policy,
    /// CORS settings.
    pub cors: Cors,
    /// Endpoint paths and limits.
    pub http: HttpSettings,
}

impl Gateway {
    /// Whether the gateway can answer: config loaded and signing key present
    /// (always true once built; kept as a method for later readiness rules).
    pub fn is_ready(&self) -> bool {
        !self.signer.app_key().is_empty()
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
            verifier: Verifier::new(config.issuers),
            token_sources: config.token_sources,
            policy,
            cors: config.cors,
            http: config.http,
        };
        Ok(App { gateway: Arc::new(gateway), listen: config.listen, tls })
    }

    /// Serves on an already bound listener until `shutdown` resolves.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        crate::http::server::serve(listener, self.tls, self.gateway, shutdown, Duration::from_secs(10)).await;
    }
}
