//! Configuration: `channelgate.yaml` → a validated [`Config`].
//!
//! Three stages (STYLE.md §2.3): `raw` is the serde copy of the file
//! (unknown keys are errors, positions kept); `validate` resolves secrets,
//! reads key files and checks every value, collecting all errors with their
//! file:line:column; the result is a [`Config`] of domain types that the
//! rest of the program trusts. Relative paths resolve against the config
//! file's folder. Secrets come from the environment or files; inline
//! `value:` secrets are refused unless `mode: development`.

mod raw;
#[cfg(test)]
mod reference;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::jwks::{KeySource, RemoteSettings};
use crate::pusher::{MasterKey, Signer};
use crate::secret::Secret;
use crate::session::{IssuerSettings, KeySet, TokenSource};
use crate::yaml::SourceError;

/// Process exit code for an invalid configuration (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// Whether this is a development setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The default: inline secrets refused, error bodies never name rules.
    Production,
    /// Quickstart and local work: inline secrets allowed, `channelgate token`
    /// mints tokens, error bodies name the deciding rule.
    Development,
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The config file it came from.
    pub source: PathBuf,
    /// Development or production.
    pub mode: Mode,
    /// Public listener address.
    pub listen: SocketAddr,
    /// TLS certificate and key files; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Pusher app id (as configured; not used for auth signatures).
    pub app_id: String,
    /// Pusher signing credentials.
    pub signer: Signer,
    /// The Pusher app secret (for REST calls; also inside `signer`).
    pub pusher_secret: Secret,
    /// Pusher REST API base URL, when configured.
    pub api_url: Option<url::Url>,
    /// Where session tokens are looked for, in order.
    pub token_sources: Vec<TokenSource>,
    /// JWT issuers with their keys (or where to fetch them).
    pub issuers: Vec<IssuerConfig>,
    /// Verified-token cache bounds.
    pub token_cache: crate::session::CacheSettings,
    /// Cross-origin settings.
    pub cors: Cors,
    /// Policy file or folder.
    pub policies: PathBuf,
    /// Largest presence `channel_data` we sign, in bytes.
    pub max_member_bytes: usize,
    /// HTTP endpoint settings and limits.
    pub http: HttpSettings,
    /// Rate limits.
    pub rate_limit: RateLimitSettings,
    /// The Pusher-protocol server signed for, for `check` lints.
    pub target: Option<crate::policy::lint::Target>,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`), if configured.
    pub admin_listen: Option<SocketAddr>,
    /// Where audit events go; `None` when disabled.
    pub audit: Option<AuditTo>,
    /// Whether config, policy and certificate files are watched for changes.
    pub watch: bool,
    /// Bearer token for `/admin/*` on the admin listener; `None` disables
    /// the admin API.
    pub admin_token: Option<Secret>,
    /// Revocation store settings.
    pub revocation: RevocationSettings,
    /// Publish proxy settings; `None` when no local client is configured.
    pub publish: Option<PublishSettings>,
    /// Webhook relay settings.
    pub webhooks: Option<WebhookSettings>,
    /// The app's session endpoint (`session.introspect`), if configured.
    pub introspect: Option<IntrospectConfig>,
    /// Data sources of policy lookups (`sources:`), by name.
    pub sources: Vec<(String, SourceConfig)>,
}

/// `session.introspect`: the app says who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectConfig {
    /// The session endpoint (`GET`).
    pub url: http::Uri,
    /// The cookies and headers forwarded, in order.
    pub forward: Vec<Forward>,
    /// How long an answer is reused (shortened by its `Cache-Control`).
    pub ttl: Duration,
    /// The bound on one call.
    pub timeout: Duration,
    /// How long past its TTL a session may serve when the app fails.
    pub stale_if_error: Duration,
    /// Most sessions kept.
    pub capacity: u64,
}

/// What is forwarded to the session endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// A cookie, by name.
    Cookie(String),
    /// A request header.
    Header(http::HeaderName),
}

/// A data source of `sources:`.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// PostgreSQL.
    Postgres {
        /// The connection URL (may hold a password).
        url: Secret,
        /// Most connections.
        pool: usize,
        /// The bound on one lookup, waiting for a connection included.
        timeout: Duration,
        /// Most rows kept of a result.
        max_rows: usize,
        /// Most estimated bytes kept of a result.
        max_bytes: usize,
    },
    /// Redis.
    Redis {
        /// The URL (may hold a password).
        url: Secret,
        /// The bound on one lookup.
        timeout: Duration,
        /// Most bytes kept of a value.
        max_bytes: usize,
    },
}

impl SourceConfig {
    /// Whether `other` describes the same source (URLs compared in constant
    /// time): a reload keeps the live source then.
    pub fn same_as(&self, other: &SourceConfig) -> bool {
        match (self, other) {
            (
                SourceConfig::Postgres { url, pool, timeout, max_rows, max_bytes },
                SourceConfig::Postgres { url: u2, pool: p2, timeout: t2, max_rows: r2, max_bytes: b2 },
            ) => url.ct_eq(u2.expose()) && pool == p2 && timeout == t2 && max_rows == r2 && max_bytes == b2,
            (
                SourceConfig::Redis { url, timeout, max_bytes },
                SourceConfig::Redis { url: u2, timeout: t2, max_bytes: b2 },
            ) => url.ct_eq(u2.expose()) && timeout == t2 && max_bytes == b2,
            _ => false,
        }
    }

    /// `postgres` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Postgres { .. } => "postgres",
            SourceConfig::Redis { .. } => "redis",
        }
    }
}

/// One JWT issuer as configured: its checks, and its keys or where they
/// are fetched from. Plain data: the runtime turns it into
/// [`IssuerSettings`] with live keys.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Expected `iss`; `None` = not checked (single-issuer mode only).
    pub issuer: Option<String>,
    /// Accepted audiences; empty = `aud` not checked.
    pub audience: Vec<String>,
    /// Algorithm allow-list, non-empty.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// The keys.
    pub keys: KeySpec,
}

impl IssuerConfig {
    /// The verifier's settings for this issuer, with `keys`.
    pub fn settings(&self, keys: KeySet) -> IssuerSettings {
        IssuerSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            algorithms: self.algorithms.clone(),
            leeway: self.leeway,
            required_claims: self.required_claims.clone(),
            keys,
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySpec {
    /// Loaded with the configuration (a secret, a PEM key, a JWKS file).
    Static(KeySet),
    /// Fetched from the issuer at run time.
    Remote(RemoteSpec),
}

impl KeySpec {
    /// Whether tokens signed with `alg` can be verified with these keys
    /// (remote keys: any asymmetric algorithm, before they are fetched).
    pub fn supports(&self, alg: jsonwebtoken::Algorithm) -> bool {
        match self {
            KeySpec::Static(keys) => keys.supports(alg),
            KeySpec::Remote(_) => !matches!(
                alg,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            ),
        }
    }
}

/// A key set fetched over HTTPS: where from, and how often. Two equal
/// specs are one key set: a reload keeps it (and what it fetched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// JWKS URL or OIDC discovery.
    pub source: KeySource,
    /// Refresh bounds, timeouts, extra CAs.
    pub settings: RemoteSettings,
}

/// Where revocations live.
#[derive(Debug, Clone)]
pub enum RevocationStore {
    /// In this process only.
    Memory,
    /// In Redis, shared by every replica.
    Redis {
        /// Connection URL (may hold a password: a secret).
        url: Secret,
        /// Key and channel prefix.
        prefix: String,
    },
}

/// What to do when the revocation store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Refuse auth with 503 until the store is back (the default: a revoked
    /// user is never let back in silently).
    Deny,
    /// Keep deciding from the last known revocations.
    Allow,
}

/// Revocation settings.
#[derive(Debug, Clone)]
pub struct RevocationSettings {
    /// Memory or Redis.
    pub store: RevocationStore,
    /// Lifetime of a revocation without an explicit `ttl`.
    pub default_ttl: Duration,
    /// Store unreachable: deny or allow.
    pub on_store_error: OnStoreError,
    /// The claim that carries a session id (`sid` revocations).
    pub session_claim: String,
}

/// One local credential of the publish proxy (`publish.clients[]`).
#[derive(Debug, Clone)]
pub struct PublishClient {
    /// The local `auth_key` the app's server SDK signs with.
    pub key: String,
    /// The local secret.
    pub secret: Secret,
    /// The app id the SDK puts in its paths (`/apps/{id}/…`); `None`: the
    /// real `pusher.app_id`. Requests are forwarded to the real app either way.
    pub app_id: Option<String>,
    /// The local master key the SDK seals `private-encrypted-*` payloads
    /// with; channelgate opens them with it and re-seals with the real one.
    pub master_key: Option<MasterKey>,
}

/// Publish proxy settings.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// Local credentials an app's server SDK signs with.
    pub clients: Vec<PublishClient>,
    /// Upstream timeout per attempt.
    pub timeout: Duration,
    /// Retries when the Pusher API cannot be connected to (never once a
    /// request may have reached it).
    pub retries: u32,
    /// Largest `data` of one event, in bytes.
    pub max_payload_bytes: usize,
}

/// Webhook relay settings.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Path on the public listener.
    pub path: String,
    /// Where valid webhooks are forwarded.
    pub forward_to: url::Url,
    /// Oldest `time_ms` accepted.
    pub max_age: Duration,
    /// Forwarding timeout.
    pub timeout: Duration,
    /// The publish client whose key and secret re-sign forwarded webhooks
    /// (`webhooks.sign_with`); `None` forwards the server's own headers.
    pub sign_with: Option<(String, Secret)>,
}

/// Destination of audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTo {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// An append-only file.
    File(PathBuf),
}

/// A rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests…
    pub count: u32,
    /// …per this period.
    pub period: Duration,
}

impl Rate {
    /// Parses `50/s`, `600/m`, `1000/h`.
    pub fn parse(s: &str) -> Option<Rate> {
        let (count, unit) = s.trim().split_once('/')?;
        let count: u32 = count.trim().parse().ok().filter(|c| *c > 0)?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return None,
        };
        Some(Rate { count, period })
    }
}

/// Rate limiting per client IP and per user (DESIGN §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Off switch.
    pub enabled: bool,
    /// Sustained rate per client IP.
    pub per_ip: Rate,
    /// Burst per client IP.
    pub per_ip_burst: u32,
    /// Sustained rate per user (`sub`).
    pub per_user: Rate,
    /// Burst per user.
    pub per_user_burst: u32,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            per_ip: Rate { count: 50, period: Duration::from_secs(1) },
            per_ip_burst: 100,
            per_user: Rate { count: 20, period: Duration::from_secs(1) },
            per_user_burst: 50,
            trusted_proxies: Vec::new(),
        }
    }
}

/// TLS PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// CORS settings.
#[derive(Debug, Clone)]
pub struct Cors {
    /// Exact origins (`scheme://host[:port]`) allowed to call the endpoints
    /// from a browser. Empty: no cross-origin access.
    pub allowed_origins: Vec<String>,
    /// Request headers a preflight may ask for (lowercase).
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age: Duration,
}

/// HTTP endpoint settings and limits.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Channel authorization path.
    pub auth_path: String,
    /// User authentication path.
    pub user_auth_path: String,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time allowed to receive a request's headers; for a new connection,
    /// counted from accept (TCP, TLS handshake, HTTP/2 preface and settings)
    /// to the first complete request head.
    pub header_read_timeout: Duration,
    /// HTTP/1.1 keep-alive: time from each response to the next complete
    /// request head; an idle connection is closed then. Longer than the
    /// idle timeout of the proxies in front (60 s for nginx's upstream
    /// keep-alive and AWS load balancers), or they may send a request on a
    /// connection just as it closes and answer their client 502.
    pub keep_alive_timeout: Duration,
    /// Time allowed to receive a request's body.
    pub request_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address (an IPv6
    /// client's /64), trusted proxies exempt; 0: no per-address cap.
    pub max_connections_per_ip: usize,
    /// Most channels in one batch request.
    pub max_batch_channels: usize,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// On shutdown, time allowed for open requests to finish.
    pub shutdown_grace: Duration,
    /// On shutdown, time spent not ready but still accepting, so load
    /// balancers stop sending first.
    pub shutdown_delay: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            auth_path: "/pusher/auth".into(),
            user_auth_path: "/pusher/user-auth".into(),
            max_body_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(5),
            keep_alive_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(5),
            max_connections: 20_000,
            max_connections_per_ip: 256,
            max_batch_channels: 50,
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<SourceError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![SourceError::new(path, 0, 0, format!("cannot read the config: {e}"))])
        })?;
        Self::from_str(path, &text)
    }

    /// Validates config text as if read from `path` (relative paths resolve
    /// against its folder).
    pub fn from_str(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let raw: raw::File = crate::yaml::from_str(path, text).map_err(ConfigErrors)?;
        validate::validate(path, raw).map_err(ConfigErrors)
    }
}
