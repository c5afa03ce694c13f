//! `session.introspect` (the app's session endpoint) and `sources:` (the
//! data sources of policy lookups).

use std::str::FromStr;
use std::time::Duration;

use indexmap::IndexMap;
use serde_saphyr::Spanned;

use super::Ctx;
use crate::config::raw;
use crate::config::{Forward, IntrospectConfig, SourceConfig};

/// Longest TTL or `stale_if_error` of a cached session.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest timeout of a call to the app or a data source.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);

fn bounded(
    cx: &mut Ctx<'_>,
    what: &str,
    v: &Option<Spanned<String>>,
    default: Duration,
    max: Duration,
) -> Duration {
    let d = cx.duration(what, v, default);
    if let Some(span) = v
        && d > max
    {
        cx.at(span, format!("{what}: `{}` is longer than {}", span.value, humantime::format_duration(max)));
    }
    d
}

fn timeout(cx: &mut Ctx<'_>, what: &str, v: &Option<Spanned<String>>, default: Duration) -> Duration {
    let d = bounded(cx, what, v, default, MAX_TIMEOUT);
    if let Some(span) = v
        && d.is_zero()
    {
        cx.at(span, format!("{what} must be longer than zero"));
    }
    d
}

/// `session.introspect`.
pub(super) fn introspect(
    cx: &mut Ctx<'_>,
    raw: Option<&Spanned<raw::Introspect>>,
) -> Option<IntrospectConfig> {
    let spanned = raw?;
    let i = &spanned.value;
    let url = match url::Url::parse(i.url.value.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            http::Uri::from_str(u.as_str()).ok()
        }
        _ => None,
    };
    if url.is_none() {
        cx.hint(
            &i.url,
            format!("session.introspect.url `{}` is not an http(s) URL", i.url.value),
            "the app's session endpoint, e.g. `http://127.0.0.1:3000/api/me`",
        );
    }
    if i.forward.is_empty() {
        cx.hint(
            spanned,
            "session.introspect.forward is empty: nothing would tell the app whose session it is",
            "list the session cookie, e.g. `forward: [ { cookie: laravel_session } ]`",
        );
    }
    let mut forward = Vec::with_capacity(i.forward.len());
    for f in &i.forward {
        match &f.value {
            raw::TokenFrom::Cookie(c) if !c.trim().is_empty() => {
                forward.push(Forward::Cookie(c.trim().to_owned()))
            }
            raw::TokenFrom::Header(h) => match http::HeaderName::from_str(h.trim()) {
                Ok(name) if name != http::header::COOKIE => forward.push(Forward::Header(name)),
                Ok(_) => {
                    cx.hint(
                        f,
                        "session.introspect.forward: forward cookies by name",
                        "write `{ cookie: NAME }`",
                    );
                }
                Err(_) => {
                    cx.at(f, format!("session.introspect.forward: `{h}` is not a header name"));
                }
            },
            raw::TokenFrom::Form(_) => {
                cx.at(f, "session.introspect.forward takes `cookie` or `header`, not `form`");
            }
            raw::TokenFrom::Cookie(_) => {
                cx.at(f, "session.introspect.forward: the cookie name is empty");
            }
        }
    }
    let ttl = bounded(cx, "session.introspect.ttl", &i.ttl, Duration::from_secs(30), MAX_TTL);
    let timeout = timeout(cx, "session.introspect.timeout", &i.timeout, Duration::from_secs(2));
    let stale_if_error =
        bounded(cx, "session.introspect.stale_if_error", &i.stale_if_error, Duration::ZERO, MAX_TTL);
    Some(IntrospectConfig {
        url: url?,
        forward,
        ttl,
        timeout,
        stale_if_error,
        capacity: i.capacity.unwrap_or(10_000).max(1),
    })
}

/// `sources:`.
pub(super) fn sources(
    cx: &mut Ctx<'_>,
    raw: Option<&IndexMap<String, Spanned<raw::Source>>>,
) -> Vec<(String, SourceConfig)> {
    let mut out = Vec::new();
    for (name, spanned) in raw.into_iter().flatten() {
        let label = format!("sources.{name}");
        if name.trim().is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            cx.at(spanned, format!("{label}: a source name is letters, digits, `_` and `-`"));
            continue;
        }
        let source = match (&spanned.value.postgres, &spanned.value.redis) {
            (Some(pg), None) => {
                let p = &pg.value;
                let url = cx.secret(&format!("{label}.postgres.url"), &p.url);
                let pool = p.pool.as_ref().map_or(8, |s| {
                    if s.value == 0 || s.value > 256 {
                        cx.at(s, format!("{label}.postgres.pool: between 1 and 256 connections"));
                    }
                    s.value
                });
                let timeout =
                    timeout(cx, &format!("{label}.postgres.timeout"), &p.timeout, Duration::from_secs(1));
                let max_rows = p.max_rows.as_ref().map_or(100, |s| {
                    if s.value == 0 {
                        cx.at(s, format!("{label}.postgres.max_rows: at least 1"));
                    }
                    s.value
                });
                let max_bytes = p.max_bytes.as_ref().map_or(64 * 1024, |s| s.value);
                url.map(|url| SourceConfig::Postgres { url, pool, timeout, max_rows, max_bytes })
            }
            (None, Some(r)) => {
                let r = &r.value;
                let url = cx.secret(&format!("{label}.redis.url"), &r.url);
                let timeout =
                    timeout(cx, &format!("{label}.redis.timeout"), &r.timeout, Duration::from_secs(1));
                let max_bytes = r.max_bytes.as_ref().map_or(64 * 1024, |s| s.value);
                url.map(|url| SourceConfig::Redis { url, timeout, max_bytes })
            }
            _ => {
                cx.hint(
                    spanned,
                    format!("{label}: give exactly one of `postgres` or `redis`"),
                    "e.g. `db: { postgres: { url: { env: DATABASE_URL } } }`",
                );
                None
            }
        };
        if let Some(source) = source {
            out.push((name.clone(), source));
        }
    }
    out
}
