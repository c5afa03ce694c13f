//! raw → [`Config`]: resolve secrets and files, check every value, collect
//! every error (not just the first) with its location and a hint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_saphyr::Spanned;

mod http;
mod relay;
mod session;

use super::raw::{self, SecretSource};
use super::{AuditTo, Config, Mode, TlsFiles};
use crate::policy::DEFAULT_MAX_MEMBER_BYTES;
use crate::policy::lint::Target;
use crate::pusher::{MasterKey, Signer};
use crate::secret::Secret;
use crate::yaml::SourceError;

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
    let token_sources = session::token_sources(&mut cx, &raw.session);
    let issuers = session::issuers(&mut cx, &raw.session.value.jwt);
    let token_cache = session::token_cache(&mut cx, raw.session.value.token_cache.as_ref());

    let cors = http::cors(&mut cx, raw.cors.as_ref());

    let policies = cx.path(&raw.policies.value);
    if !policies.exists() {
        cx.at(&raw.policies, format!("policies: `{}` does not exist", policies.display()));
    }

    let max_member_bytes =
        raw.presence.as_ref().and_then(|p| p.max_member_bytes).unwrap_or(DEFAULT_MAX_MEMBER_BYTES);

    let http = http::settings(&mut cx, raw.http.as_ref());
    let rate_limit = http::rate_limit(&mut cx, raw.rate_limit.as_ref());
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
    let revocation = relay::revocation(&mut cx, raw.revocation.as_ref());
    let publish = relay::publish(&mut cx, &raw, master_key.as_ref());
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
    let webhooks = relay::webhooks(&mut cx, raw.webhooks.as_ref(), publish.as_ref());
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
