//! raw → [`Config`]: resolve secrets and files, check every value, collect
//! every error (not just the first) with its location and a hint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::raw::{self, SecretSource};
use super::{
    AuditTo, Config, Cors, HttpSettings, Mode, OnStoreError, PublishClient, PublishSettings, Rate,
    RateLimitSettings, RevocationSettings, RevocationStore, TlsFiles, WebhookSettings,
};
use crate::policy::DEFAULT_MAX_MEMBER_BYTES;
use crate::policy::lint::Target;
use crate::pusher::{MasterKey, Signer};
use crate::secret::Secret;
use crate::session::remote::{KeySource, RemoteKeys, RemoteSettings, fetchable};
use crate::session::{CacheSettings, IssuerSettings, KeySet, TokenSource};
use crate::yaml::SourceError;
use rustls::pki_types::pem::PemObject;

/// Collects errors while validating one file.
struct Ctx<'a> {
    file: &'a Path,
    dir: PathBuf,
    mode: Mode,
    errors: Vec<SourceError>,
}

impl Ctx<'_> {
    fn at<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) -> &mut SourceError {
        self.errors.push(SourceError::new(
            self.file,
            span.referenced.line(),
            span.referenced.column(),
            message,
        ));
        let last = self.errors.len() - 1;
        &mut self.errors[last]
    }

    fn hint<T>(&mut self, span: &Spanned<T>, message: impl Into<String>, hint: &str) {
        let e = self.at(span, message);
        e.hint = Some(hint.to_owned());
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() { p.to_owned() } else { self.dir.join(p) }
    }

    /// Resolves a secret source. Never puts the secret in an error.
    fn secret(&mut self, what: &str, src: &Spanned<SecretSource>) -> Option<Secret> {
        match &src.value {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Some(Secret::new(v)),
                Ok(_) => {
                    self.at(src, format!("{what}: environment variable `{name}` is empty"));
                    None
                }
                Err(_) => {
                    self.hint(
                        src,
                        format!("{what}: environment variable `{name}` is not set"),
                        &format!("export {name}=... before starting channelgate"),
                    );
                    None
                }
            },
            SecretSource::File(path) => {
                let full = self.path(path);
                match std::fs::read(&full) {
                    Ok(mut bytes) => {
                        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                            bytes.pop();
                        }
                        if bytes.is_empty() {
                            self.at(src, format!("{what}: file `{}` is empty", full.display()));
                            return None;
                        }
                        Some(Secret::new(bytes))
                    }
                    Err(e) => {
                        self.at(src, format!("{what}: cannot read `{}`: {e}", full.display()));
                        None
                    }
                }
            }
            SecretSource::Value(v) => {
                if self.mode != Mode::Development {
                    self.hint(
                        src,
                        format!("{what}: inline `value:` secrets are only accepted with `mode: development`"),
                        "use `{ env: NAME }` or `{ file: PATH }`",
                    );
                    return None;
                }
                if v.is_empty() {
                    self.at(src, format!("{what}: the value is empty"));
                    return None;
                }
                Some(Secret::new(v.as_bytes().to_vec()))
            }
        }
    }

    fn duration(&mut self, what: &str, v: &Option<Spanned<String>>, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match humantime::parse_duration(v.value.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.hint(
                    v,
                    format!("{what}: `{}` is not a duration: {e}", v.value),
                    "write e.g. `30s`, `5m`, `1h`",
                );
                default
            }
        }
    }
}

pub(super) fn validate(file: &Path, raw: raw::File) -> Result<Config, Vec<SourceError>> {
    let dir = file.parent().map(Path::to_owned).unwrap_or_default();
    let mut cx = Ctx { file, dir, mode: Mode::Production, errors: Vec::new() };

    if let Some(mode) = &raw.mode {
        match mode.value.as_str() {
            "production" => {}
            "development" => cx.mode = Mode::Development,
            other => cx.hint(mode, format!("mode `{other}` is unknown"), "use `production` or `development`"),
        }
    }

    let listen = match &raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(l) => match SocketAddr::from_str(&l.value) {
            Ok(a) => a,
            Err(_) => {
                cx.hint(
                    l,
                    format!("listen `{}` is not an address", l.value),
                    "write `IP:PORT`, e.g. `127.0.0.1:8080`",
                );
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        },
    };

    let tls = raw.tls.as_ref().map(|t| {
        let cert = cx.path(&t.value.cert.value);
        let key = cx.path(&t.value.key.value);
        if !cert.is_file() {
            cx.at(&t.value.cert, format!("tls.cert: `{}` does not exist", cert.display()));
        }
        if !key.is_file() {
            cx.at(&t.value.key, format!("tls.key: `{}` does not exist", key.display()));
        }
        TlsFiles { cert, key }
    });

    // --- pusher
    let p = &raw.pusher.value;
    if p.app_id.value.trim().is_empty() {
        cx.at(&p.app_id, "pusher.app_id is empty");
    }
    if p.key.value.trim().is_empty() || p.key.value.contains(':') {
        cx.at(&p.key, "pusher.key must be non-empty and hold no `:`");
    }
    let secret = cx.secret("pusher.secret", &p.secret);
    let master_key = p.encryption_master_key.as_ref().and_then(|src| {
        let bytes = cx.secret("pusher.encryption_master_key", src)?;
        let text = String::from_utf8_lossy(bytes.expose()).trim().to_owned();
        match MasterKey::from_base64(&text) {
            Ok(k) => Some(k),
            Err(e) => {
                cx.hint(
                    src,
                    format!("pusher.encryption_master_key: {e}"),
                    "generate one with `openssl rand -base64 32`",
                );
                None
            }
        }
    });
    let api_url = p.api_url.as_ref().and_then(|u| match url::Url::parse(&u.value) {
        Ok(url) if url.scheme() == "https" || url.scheme() == "http" => Some(url),
        _ => {
            cx.at(u, format!("pusher.api_url `{}` is not an http(s) URL", u.value));
            None
        }
    });

    // --- session
    let token_sources = match &raw.session.value.token_from {
        None => vec![TokenSource::Header(http::header::AUTHORIZATION)],
        Some(list) if list.is_empty() => {
            cx.at(&raw.session, "session.token_from is empty: no token could ever be found");
            Vec::new()
        }
        Some(list) => list
            .iter()
            .filter_map(|s| match &s.value {
                raw::TokenFrom::Header(h) => match http::HeaderName::from_str(h) {
                    Ok(name) => Some(TokenSource::Header(name)),
                    Err(_) => {
                        cx.at(s, format!("token_from: `{h}` is not a header name"));
                        None
                    }
                },
                raw::TokenFrom::Cookie(c) if !c.is_empty() => Some(TokenSource::Cookie(c.clone())),
                raw::TokenFrom::Form(f) if !f.is_empty() => {
                    if f == "socket_id" || f == "channel_name" {
                        cx.at(s, format!("token_from: form field `{f}` is a Pusher field"));
                        None
                    } else {
                        Some(TokenSource::Form(f.clone()))
                    }
                }
                _ => {
                    cx.at(s, "token_from: the name is empty");
                    None
                }
            })
            .collect(),
    };
    let issuers = validate_issuers(&mut cx, &raw.session.value.jwt);
    let token_cache = token_cache(&mut cx, raw.session.value.token_cache.as_ref());

    // --- cors
    let cors = match &raw.cors {
        None => Cors {
            allowed_origins: Vec::new(),
            allowed_headers: default_headers(),
            max_age: Duration::from_secs(600),
        },
        Some(c) => {
            let mut origins = Vec::new();
            for o in &c.allowed_origins {
                match normalize_origin(&o.value) {
                    Some(n) => origins.push(n),
                    None => cx.hint(
                        o,
                        format!("cors.allowed_origins: `{}` is not an origin", o.value),
                        "write `https://app.example.com` (scheme, host, optional port; no path; `*` is not allowed)",
                    ),
                }
            }
            let mut headers = default_headers();
            for h in &c.allowed_headers {
                let h = h.to_ascii_lowercase();
                if !headers.contains(&h) {
                    headers.push(h);
                }
            }
            let max_age = cx.duration("cors.max_age", &c.max_age, Duration::from_secs(600));
            Cors { allowed_origins: origins, allowed_headers: headers, max_age }
        }
    };

    let policies = cx.path(&raw.policies.value);
    if !policies.exists() {
        cx.at(&raw.policies, format!("policies: `{}` does not exist", policies.display()));
    }

    let max_member_bytes =
        raw.presence.as_ref().and_then(|p| p.max_member_bytes).unwrap_or(DEFAULT_MAX_MEMBER_BYTES);

    let mut http = HttpSettings::default();
    if let Some(h) = &raw.http {
        for (target, value) in
            [(&mut http.auth_path, &h.auth_path), (&mut http.user_auth_path, &h.user_auth_path)]
        {
            if let Some(v) = value {
                if v.value.starts_with('/') && !v.value.contains(['?', '#', ' ']) {
                    *target = v.value.clone();
                } else {
                    cx.at(v, format!("`{}` is not a path (it must start with `/`)", v.value));
                }
            }
        }
        if let Some(n) = h.max_body_bytes {
            http.max_body_bytes = n.clamp(256, 1 << 20);
        }
        http.shutdown_grace = cx.duration("http.shutdown_grace", &h.shutdown_grace, http.shutdown_grace);
        http.shutdown_delay = cx.duration("http.shutdown_delay", &h.shutdown_delay, http.shutdown_delay);
        if let Some(n) = h.max_header_bytes {
            http.max_header_bytes = n.clamp(8 * 1024, 1 << 20);
        }
        if let Some(n) = h.max_batch_channels {
            http.max_batch_channels = n.clamp(1, 1000);
        }
        if let Some(n) = h.max_connections {
            http.max_connections = n.max(1);
        }
        if let Some(n) = h.max_connections_per_ip {
            http.max_connections_per_ip = n;
        }
        http.header_read_timeout =
            cx.duration("http.header_read_timeout", &h.header_read_timeout, http.header_read_timeout);
        http.request_timeout = cx.duration("http.request_timeout", &h.request_timeout, http.request_timeout);
        http.tls_handshake_timeout =
            cx.duration("http.tls_handshake_timeout", &h.tls_handshake_timeout, http.tls_handshake_timeout);
    }
    let rate_limit = rate_limit(&mut cx, raw.rate_limit.as_ref());
    let target = raw.target.as_ref().and_then(|t| match Target::parse(&t.value) {
        Some(t) => Some(t),
        None => {
            cx.hint(t, format!("target `{}` is unknown", t.value), "use pusher, sockudo, soketi or reverb");
            None
        }
    });
    let admin_listen = raw.admin.as_ref().and_then(|a| match &a.value.listen {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
        Some(l) => match SocketAddr::from_str(&l.value) {
            Ok(addr) => Some(addr),
            Err(_) => {
                cx.hint(l, format!("admin.listen `{}` is not an address", l.value), "write `127.0.0.1:9090`");
                None
            }
        },
    });
    let audit = match &raw.audit {
        None => Some(AuditTo::Stdout),
        Some(a) if a.enabled == Some(false) => None,
        Some(a) => Some(match a.to.as_ref().map(|t| &t.value) {
            None | Some(raw::AuditTo::Stdout) => AuditTo::Stdout,
            Some(raw::AuditTo::Stderr) => AuditTo::Stderr,
            Some(raw::AuditTo::File(f)) => AuditTo::File(cx.path(f)),
        }),
    };
    let watch = raw.reload.as_ref().and_then(|r| r.watch).unwrap_or(true);
    let admin_token = raw.admin.as_ref().and_then(|a| a.value.token.as_ref()).and_then(|t| {
        let token = cx.secret("admin.token", t)?;
        if token.expose().len() < 16 {
            cx.at(t, "admin.token is shorter than 16 bytes");
            return None;
        }
        Some(token)
    });
    if admin_token.is_some() && admin_listen.is_none() {
        cx.errors.push(SourceError::new(file, 0, 0, "admin.token is set but there is no admin listener"));
    }
    let revocation = revocation(&mut cx, raw.revocation.as_ref());
    let publish = raw.publish.as_ref().map(|p| {
        let mut clients: Vec<PublishClient> = Vec::new();
        for c in &p.value.clients {
            if c.key.value.is_empty() || c.key.value.contains(':') || c.key.value == p_key_value(&raw) {
                cx.hint(
                    &c.key,
                    "publish client key must be non-empty, hold no `:` and differ from pusher.key",
                    "use a local key of your own",
                );
                continue;
            }
            if clients.iter().any(|known| known.key == c.key.value) {
                cx.at(&c.key, format!("publish client key `{}` is listed twice", c.key.value));
                continue;
            }
            let app_id = c.app_id.as_ref().and_then(|id| {
                let valid = !id.value.is_empty()
                    && id.value.len() <= 64
                    && id.value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if valid {
                    Some(id.value.clone())
                } else {
                    cx.hint(
                        id,
                        format!(
                            "publish client app_id `{}` must be 1 to 64 letters, digits, `-` or `_`",
                            id.value
                        ),
                        "the Python SDK accepts digits only, e.g. \"424242\"",
                    );
                    None
                }
            });
            let local_master = c.encryption_master_key.as_ref().and_then(|src| {
                let bytes = cx.secret("publish.clients.encryption_master_key", src)?;
                let text = String::from_utf8_lossy(bytes.expose()).trim().to_owned();
                let key = match MasterKey::from_base64(&text) {
                    Ok(k) => k,
                    Err(e) => {
                        cx.hint(
                            src,
                            format!("publish.clients.encryption_master_key: {e}"),
                            "generate one with `openssl rand -base64 32`",
                        );
                        return None;
                    }
                };
                match &master_key {
                    None if p_master_configured(&raw) => None,
                    None => {
                        cx.at(
                            src,
                            "a local encryption_master_key needs pusher.encryption_master_key \
                             (the real key payloads are re-sealed with)",
                        );
                        None
                    }
                    Some(real) if real.same_key(&key) => {
                        cx.hint(
                            src,
                            "publish client encryption_master_key is the real pusher.encryption_master_key",
                            "give the app a local key of its own: the real one must never leave channelgate",
                        );
                        None
                    }
                    Some(_) => Some(key),
                }
            });
            if let Some(secret) = cx.secret("publish.clients.secret", &c.secret) {
                clients.push(PublishClient {
                    key: c.key.value.clone(),
                    secret,
                    app_id,
                    master_key: local_master,
                });
            }
        }
        if clients.is_empty() {
            cx.at(p, "publish: list at least one client { key, secret }");
        }
        PublishSettings {
            clients,
            timeout: cx.duration("publish.timeout", &p.value.timeout, Duration::from_secs(5)),
            retries: p.value.retries.unwrap_or(2).min(5),
            max_payload_bytes: p.value.max_payload_bytes.unwrap_or(10 * 1024).clamp(1, 1 << 20),
        }
    });
    if publish.is_some() && api_url.is_none() {
        cx.errors.push(SourceError::new(
            file,
            0,
            0,
            "publish needs pusher.api_url (where events are forwarded)",
        ));
    }
    if publish.is_some() && admin_listen.is_none() {
        cx.errors.push(SourceError::new(
            file,
            0,
            0,
            "publish is served on the admin listener: configure `admin`",
        ));
    }
    let webhooks = raw.webhooks.as_ref().and_then(|w| {
        let path = w.value.path.as_ref().map_or_else(|| "/pusher/webhooks".to_owned(), |p| p.value.clone());
        if !path.starts_with('/') {
            cx.at(w, format!("webhooks.path `{path}` must start with `/`"));
        }
        let forward_to = match url::Url::parse(&w.value.forward_to.value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => {
                cx.at(
                    &w.value.forward_to,
                    format!("webhooks.forward_to `{}` is not an http(s) URL", w.value.forward_to.value),
                );
                None
            }
        };
        let sign_with = w.value.sign_with.as_ref().and_then(|name| {
            let client = publish.as_ref().and_then(|p| p.clients.iter().find(|c| c.key == name.value));
            match client {
                Some(c) => Some((c.key.clone(), c.secret.clone())),
                None => {
                    cx.hint(
                        name,
                        format!("webhooks.sign_with `{}` is not a publish client key", name.value),
                        "name one of publish.clients[].key: the app validates webhooks with that key and secret",
                    );
                    None
                }
            }
        });
        Some(WebhookSettings {
            path,
            sign_with,
            forward_to: forward_to?,
            max_age: cx.duration("webhooks.max_age", &w.value.max_age, Duration::from_secs(300)),
            timeout: cx.duration("webhooks.timeout", &w.value.timeout, Duration::from_secs(5)),
        })
    });
    if http.auth_path == http.user_auth_path {
        cx.errors.push(SourceError::new(file, 0, 0, "http.auth_path and http.user_auth_path are the same"));
    }

    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    let (Some(secret), Some(issuers)) = (secret, issuers) else {
        // Unreachable in practice: a missing value always recorded an error.
        return Err(vec![SourceError::new(file, 0, 0, "invalid configuration")]);
    };
    Ok(Config {
        source: file.to_owned(),
        mode: cx.mode,
        listen,
        tls,
        app_id: p.app_id.value.clone(),
        signer: Signer::new(p.key.value.clone(), secret.clone(), master_key),
        pusher_secret: secret,
        api_url,
        token_sources,
        issuers,
        token_cache,
        cors,
        policies,
        max_member_bytes,
        http,
        rate_limit,
        target,
        admin_listen,
        audit,
        watch,
        admin_token,
        revocation,
        publish,
        webhooks,
    })
}

fn rate_limit(cx: &mut Ctx<'_>, raw: Option<&raw::RateLimit>) -> RateLimitSettings {
    let mut s = RateLimitSettings::default();
    let Some(raw) = raw else { return s };
    if let Some(e) = raw.enabled {
        s.enabled = e;
    }
    for (target, value, what) in
        [(&mut s.per_ip, &raw.per_ip, "per_ip"), (&mut s.per_user, &raw.per_user, "per_user")]
    {
        if let Some(v) = value {
            match Rate::parse(&v.value) {
                Some(r) => *target = r,
                None => cx.hint(
                    v,
                    format!("rate_limit.{what}: `{}` is not a rate", v.value),
                    "write e.g. `50/s`, `600/m`",
                ),
            }
        }
    }
    if let Some(b) = raw.per_ip_burst {
        s.per_ip_burst = b.max(1);
    }
    if let Some(b) = raw.per_user_burst {
        s.per_user_burst = b.max(1);
    }
    for p in &raw.trusted_proxies {
        let parsed = p
            .value
            .parse::<ipnet::IpNet>()
            .or_else(|_| p.value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => s.trusted_proxies.push(net),
            Err(_) => cx.hint(
                p,
                format!("rate_limit.trusted_proxies: `{}` is not a CIDR", p.value),
                "write e.g. `10.0.0.0/8` or `127.0.0.1`",
            ),
        }
    }
    s
}

fn default_headers() -> Vec<String> {
    ["authorization", "content-type", "x-csrf-token", "x-requested-with", "x-socket-id"]
        .map(str::to_owned)
        .to_vec()
}

/// `https://App.example.com:443/` → `https://app.example.com:443`. No path,
/// query, credentials or wildcard.
fn normalize_origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || s.contains('*') {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    (origin != "null").then_some(origin)
}

fn validate_issuers(
    cx: &mut Ctx<'_>,
    jwt: &Spanned<raw::OneOrMany<raw::Issuer>>,
) -> Option<Vec<IssuerSettings>> {
    let list: Vec<&raw::Issuer> = match &jwt.value {
        raw::OneOrMany::One(i) => vec![i],
        raw::OneOrMany::Many(v) => v.iter().collect(),
    };
    if list.is_empty() {
        cx.at(jwt, "session.jwt lists no issuer");
        return None;
    }
    let several = list.len() > 1;
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let errors_before = cx.errors.len();
    for (i, raw) in list.into_iter().enumerate() {
        let label = if several { format!("session.jwt[{i}]") } else { "session.jwt".to_owned() };
        if several {
            match raw.issuer.as_deref() {
                None => cx.hint(
                    jwt,
                    format!("{label}: with several issuers each needs `issuer`"),
                    "the token's `iss` selects the entry",
                ),
                Some(iss) if seen.contains(&iss) => {
                    cx.at(jwt, format!("{label}: issuer `{iss}` is listed twice")).hint = None
                }
                Some(iss) => seen.push(iss),
            }
        }
        let mut algorithms = Vec::new();
        for a in &raw.algorithms {
            match crate::session::parse_algorithm(&a.value) {
                Some(alg) => algorithms.push(alg),
                None => cx.hint(
                    a,
                    format!("{label}.algorithms: `{}` is not supported", a.value),
                    "use HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA or Ed25519",
                ),
            }
        }
        if raw.algorithms.is_empty() {
            cx.at(jwt, format!("{label}.algorithms is empty: list the algorithms your tokens use"));
        }
        let sources = [
            raw.secret.is_some(),
            raw.public_key.is_some(),
            raw.jwks_file.is_some(),
            raw.jwks_url.is_some(),
            raw.discovery.as_ref().is_some_and(|d| d.value),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            cx.hint(
                jwt,
                format!("{label}: give exactly one key source"),
                "one of `secret`, `public_key`, `jwks_file`, `jwks_url`, or `discovery: true` with `issuer`",
            );
            continue;
        }
        let keys = if let Some(s) = &raw.secret {
            cx.secret(&format!("{label}.secret"), s).map(|secret| {
                if secret.expose().len() < 32 && cx.mode == Mode::Production {
                    cx.at(
                        s,
                        format!("{label}.secret is shorter than 32 bytes; HS256 needs at least 256 bits"),
                    );
                }
                KeySet::from_secret(secret)
            })
        } else if let Some(pk) = &raw.public_key {
            let (what, pem) = match &pk.value {
                SecretSource::File(f) => {
                    let path = cx.path(f);
                    (path.display().to_string(), std::fs::read(&path).map_err(|e| e.to_string()))
                }
                SecretSource::Env(name) => (
                    format!("${name}"),
                    std::env::var(name).map(String::into_bytes).map_err(|_| "not set".to_owned()),
                ),
                SecretSource::Value(v) => ("inline value".to_owned(), Ok(v.as_bytes().to_vec())),
            };
            match pem {
                Ok(pem) => match KeySet::from_pem(&pem) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        cx.at(pk, format!("{label}.public_key ({what}): {e}"));
                        None
                    }
                },
                Err(e) => {
                    cx.at(pk, format!("{label}.public_key: cannot read {what}: {e}"));
                    None
                }
            }
        } else if let Some(f) = &raw.jwks_file {
            let path = cx.path(&f.value);
            match std::fs::read(&path) {
                Ok(json) => match KeySet::from_jwks_json(&json) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        cx.at(f, format!("{label}.jwks_file `{}`: {e}", path.display()));
                        None
                    }
                },
                Err(e) => {
                    cx.at(f, format!("{label}.jwks_file: cannot read `{}`: {e}", path.display()));
                    None
                }
            }
        } else {
            remote_keys(cx, &label, raw, jwt)
        };
        let Some(keys) = keys else { continue };
        for (alg, a) in algorithms.iter().zip(&raw.algorithms) {
            if !keys.supports(*alg) {
                cx.hint(
                    a,
                    format!("{label}.algorithms: `{}` cannot be verified with the configured key", a.value),
                    "HS* needs `secret`; RS*/PS* an RSA key; ES256/ES384 an EC key; EdDSA/Ed25519 an Ed25519 key",
                );
            }
        }
        let leeway = cx.duration(&format!("{label}.leeway"), &raw.leeway, Duration::from_secs(30));
        out.push(IssuerSettings {
            issuer: raw.issuer.clone(),
            audience: raw
                .audience
                .as_ref()
                .map(|a| match a {
                    raw::OneOrMany::One(s) => vec![s.clone()],
                    raw::OneOrMany::Many(v) => v.clone(),
                })
                .unwrap_or_default(),
            algorithms,
            leeway,
            required_claims: raw
                .required_claims
                .clone()
                .unwrap_or_else(IssuerSettings::default_required_claims),
            keys,
        });
    }
    (cx.errors.len() == errors_before).then_some(out)
}

/// A remote key set: `jwks_url`, or `discovery: true` from `issuer`.
fn remote_keys(
    cx: &mut Ctx<'_>,
    label: &str,
    raw: &raw::Issuer,
    jwt: &Spanned<raw::OneOrMany<raw::Issuer>>,
) -> Option<KeySet> {
    let mut settings = RemoteSettings::default();
    settings.min_refresh =
        cx.duration(&format!("{label}.refresh_min"), &raw.refresh_min, settings.min_refresh);
    settings.max_refresh =
        cx.duration(&format!("{label}.refresh_max"), &raw.refresh_max, settings.max_refresh);
    settings.refetch_interval =
        cx.duration(&format!("{label}.refetch_interval"), &raw.refetch_interval, settings.refetch_interval);
    settings.timeout = cx.duration(&format!("{label}.fetch_timeout"), &raw.fetch_timeout, settings.timeout);
    if settings.min_refresh > settings.max_refresh {
        cx.at(jwt, format!("{label}: refresh_min is longer than refresh_max"));
    }
    if let Some(ca) = &raw.ca_file {
        let path = cx.path(&ca.value);
        match rustls::pki_types::CertificateDer::pem_file_iter(&path)
            .map_err(|e| e.to_string())
            .and_then(|it| it.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string()))
        {
            Ok(certs) if !certs.is_empty() => settings.extra_roots = certs,
            Ok(_) => {
                cx.at(ca, format!("{label}.ca_file `{}` holds no certificate", path.display()));
            }
            Err(e) => {
                cx.at(ca, format!("{label}.ca_file `{}`: {e}", path.display()));
            }
        }
    }
    let source = if let Some(u) = &raw.jwks_url {
        match url::Url::parse(&u.value) {
            Ok(url) if fetchable(&url) => KeySource::Jwks(url),
            _ => {
                cx.hint(
                    u,
                    format!("{label}.jwks_url `{}` is not fetchable", u.value),
                    "use an https URL (http only for loopback)",
                );
                return None;
            }
        }
    } else {
        let Some(issuer) = raw.issuer.as_deref() else {
            cx.hint(
                jwt,
                format!("{label}: `discovery: true` needs `issuer`"),
                "set `issuer` to the issuer URL",
            );
            return None;
        };
        match url::Url::parse(issuer) {
            Ok(url) if fetchable(&url) => KeySource::Discovery { issuer: issuer.to_owned(), url },
            _ => {
                cx.hint(
                    jwt,
                    format!("{label}: issuer `{issuer}` is not an https URL"),
                    "OIDC discovery needs the issuer's https URL",
                );
                return None;
            }
        }
    };
    match RemoteKeys::new(source, settings) {
        Ok(r) => Some(KeySet::Remote(std::sync::Arc::new(r))),
        Err(e) => {
            cx.at(jwt, format!("{label}: {e}"));
            None
        }
    }
}

fn token_cache(cx: &mut Ctx<'_>, raw: Option<&raw::TokenCache>) -> CacheSettings {
    let mut s = CacheSettings::default();
    if let Some(raw) = raw {
        if let Some(c) = raw.capacity {
            s.capacity = c;
        }
        if let Some(b) = raw.max_bytes {
            s.max_bytes = b;
        }
        s.max_ttl = cx.duration("session.token_cache.max_ttl", &raw.max_ttl, s.max_ttl);
    }
    s
}

fn p_key_value(raw: &raw::File) -> String {
    raw.pusher.value.key.value.clone()
}

/// Whether `pusher.encryption_master_key` is given (valid or not: an
/// invalid one has its own error already).
fn p_master_configured(raw: &raw::File) -> bool {
    raw.pusher.value.encryption_master_key.is_some()
}

fn revocation(cx: &mut Ctx<'_>, raw: Option<&raw::Revocation>) -> RevocationSettings {
    let mut s = RevocationSettings {
        store: RevocationStore::Memory,
        default_ttl: Duration::from_secs(24 * 3600),
        on_store_error: OnStoreError::Deny,
        session_claim: "sid".to_owned(),
    };
    let Some(raw) = raw else { return s };
    s.default_ttl = cx.duration("revocation.default_ttl", &raw.default_ttl, s.default_ttl);
    if let Some(c) = &raw.session_claim {
        s.session_claim = c.clone();
    }
    if let Some(mode) = &raw.on_store_error {
        match mode.value.as_str() {
            "deny" => s.on_store_error = OnStoreError::Deny,
            "allow" => s.on_store_error = OnStoreError::Allow,
            other => cx.hint(
                mode,
                format!("revocation.on_store_error `{other}` is unknown"),
                "use `deny` (default) or `allow`",
            ),
        }
    }
    match raw.store.as_ref().map(|s| s.value.as_str()) {
        None | Some("memory") => {}
        Some("redis") => match &raw.redis_url {
            None => {
                if let Some(store) = &raw.store {
                    cx.hint(
                        store,
                        "revocation.store: redis needs `redis_url`",
                        "redis_url: { env: REDIS_URL }",
                    );
                }
            }
            Some(src) => {
                // Redis URLs may carry a password, so they are secrets; a
                // plain URL without one may also be written inline.
                if let Some(url) = cx.secret("revocation.redis_url", src) {
                    let text = String::from_utf8_lossy(url.expose()).into_owned();
                    if redis::Client::open(text.as_str()).is_err() {
                        cx.at(src, "revocation.redis_url is not a redis:// URL");
                    }
                    s.store = RevocationStore::Redis {
                        url,
                        prefix: raw.key_prefix.clone().unwrap_or_else(|| "channelgate:".to_owned()),
                    };
                }
            }
        },
        Some(other) => {
            if let Some(store) = &raw.store {
                cx.hint(store, format!("revocation.store `{other}` is unknown"), "use `memory` or `redis`");
            }
        }
    }
    s
}
