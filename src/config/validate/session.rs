//! `session:` — where tokens are found, the issuers and their keys, the
//! verified-token cache.

use std::str::FromStr;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::Ctx;
use crate::config::raw::{self, SecretSource};
use crate::config::{IssuerConfig, KeySpec, Mode, RemoteSpec};
use crate::jwks::{KeySource, RemoteSettings, fetchable};
use crate::session::{CacheSettings, IssuerSettings, KeySet, TokenSource};
use rustls::pki_types::pem::PemObject;

/// `session.token_from`, in order (default: the `Authorization` header).
pub(super) fn token_sources(cx: &mut Ctx<'_>, raw_session: &Spanned<raw::Session>) -> Vec<TokenSource> {
    match &raw_session.value.token_from {
        None => vec![TokenSource::Header(http::header::AUTHORIZATION)],
        Some(list) if list.is_empty() => {
            cx.at(raw_session, "session.token_from is empty: no token could ever be found");
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
    }
}

pub(super) fn issuers(
    cx: &mut Ctx<'_>,
    jwt: &Spanned<raw::OneOrMany<raw::Issuer>>,
) -> Option<Vec<IssuerConfig>> {
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
        let keys = if raw.jwks_url.is_some() || raw.discovery.as_ref().is_some_and(|d| d.value) {
            remote_keys(cx, &label, raw, jwt).map(KeySpec::Remote)
        } else {
            let keys: Option<KeySet> = if let Some(s) = &raw.secret {
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
                None
            };
            keys.map(KeySpec::Static)
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
        out.push(IssuerConfig {
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
) -> Option<RemoteSpec> {
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
            // Not echoed: the message would print the password.
            Ok(url) if has_credentials(&url) => {
                cx.hint(u, format!("{label}.jwks_url holds a user name or password"), NO_CREDENTIALS);
                return None;
            }
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
            Ok(url) if has_credentials(&url) => {
                cx.hint(jwt, format!("{label}: issuer holds a user name or password"), NO_CREDENTIALS);
                return None;
            }
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
    Some(RemoteSpec { source, settings })
}

/// The hint for a key source URL with credentials in it.
const NO_CREDENTIALS: &str =
    "key sets are public: drop the credentials (the URL is logged and shown by /readyz)";

/// Whether `url` carries a user name or password (`https://user:pass@host/`).
fn has_credentials(url: &url::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

pub(super) fn token_cache(cx: &mut Ctx<'_>, raw: Option<&raw::TokenCache>) -> CacheSettings {
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
