//! The live objects of session introspection, decision hooks and data
//! sources, built from the config's descriptions and the policy's rules,
//! and kept across reloads while their settings stay the same (their
//! caches, pools, connections and breakers with them).

use std::sync::Arc;

use crate::config::{Forward, IntrospectConfig, SourceConfig};
use crate::membership::breaker::{Breaker, BreakerSettings};
use crate::membership::hook::{Hook, HookSettings};
use crate::membership::introspect::{self, IntrospectSettings, Introspector};
use crate::membership::lookup::{Command, Limits, Lookup};
use crate::membership::memo::MemoSettings;
use crate::membership::postgres::{Postgres, PostgresSettings};
use crate::membership::redis::{Redis, RedisSettings};
use crate::policy::Policy;
use crate::policy::lookup::{HookSpec, QueryCommand, QuerySpec};
use crate::upstream::HttpsClient;

/// A live data source.
#[derive(Debug)]
pub(crate) enum Source {
    Postgres(Arc<Postgres>),
    Redis(Arc<Redis>),
}

/// What the request path uses: the introspector, and each rule's lookup
/// and hook by the rule's index in the policy.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    pub(crate) introspect: Option<(IntrospectConfig, Arc<Introspector>)>,
    pub(crate) queries: Vec<Option<Arc<Lookup>>>,
    pub(crate) hooks: Vec<Option<Arc<Hook>>>,
}

/// The live objects kept by the runtime.
#[derive(Clone, Default)]
pub(crate) struct LiveLookups {
    introspect: Option<(IntrospectConfig, Arc<Introspector>)>,
    sources: Vec<(String, SourceConfig, Arc<Source>)>,
    queries: Vec<(String, QuerySpec, Arc<Lookup>)>,
    hooks: Vec<(HookSpec, Vec<(String, String)>, Arc<Hook>)>,
    breakers: Vec<(String, Arc<Breaker>)>,
}

fn memo(capacity: u64, stale: std::time::Duration) -> MemoSettings {
    MemoSettings { capacity, stale_if_error: stale, ..MemoSettings::default() }
}

/// Builds what `policy` and the config need, reusing `live`'s objects
/// whose settings are unchanged; returns them and the new live set.
pub(crate) fn build(
    introspect: Option<&IntrospectConfig>,
    sources: &[(String, SourceConfig)],
    policy: &Policy,
    client: impl Fn() -> Result<HttpsClient, String>,
    live: &LiveLookups,
) -> Result<(Lookups, LiveLookups), Vec<String>> {
    let mut errors = Vec::new();
    let mut next = LiveLookups::default();
    let mut out = Lookups::default();

    if let Some(cfg) = introspect {
        let kept = live.introspect.as_ref().filter(|(c, _)| c == cfg).map(|(_, i)| i.clone());
        let introspector = match kept {
            Some(i) => Some(i),
            None => match client() {
                Ok(client) => {
                    let forward = cfg
                        .forward
                        .iter()
                        .map(|f| match f {
                            Forward::Cookie(c) => introspect::Forward::Cookie(c.clone()),
                            Forward::Header(h) => introspect::Forward::Header(h.clone()),
                        })
                        .collect();
                    let mut s = IntrospectSettings::new(cfg.url.clone(), forward);
                    s.ttl = cfg.ttl;
                    s.timeout = cfg.timeout;
                    s.cache = memo(cfg.capacity, cfg.stale_if_error);
                    Some(Arc::new(Introspector::new(client, s)))
                }
                Err(e) => {
                    errors.push(format!("session.introspect: {e}"));
                    None
                }
            },
        };
        if let Some(i) = introspector {
            next.introspect = Some((cfg.clone(), i.clone()));
            out.introspect = Some((cfg.clone(), i));
        }
    }

    // Sources: only those some rule uses are opened.
    let used = |name: &str| policy.rules().iter().any(|r| r.query().is_some_and(|q| q.source == name));
    for (name, cfg) in sources {
        if !used(name) {
            continue;
        }
        let kept =
            live.sources.iter().find(|(n, c, _)| n == name && c.same_as(cfg)).map(|(_, _, s)| s.clone());
        let source = match kept {
            Some(s) => s,
            None => match cfg {
                SourceConfig::Postgres { url, pool, timeout, max_rows, max_bytes } => {
                    let mut s = PostgresSettings::new(url.clone());
                    s.pool = *pool;
                    s.timeout = *timeout;
                    s.limits = Limits { max_rows: *max_rows, max_bytes: *max_bytes };
                    match Postgres::new(&s) {
                        Ok(p) => Arc::new(Source::Postgres(Arc::new(p))),
                        Err(e) => {
                            errors.push(format!("sources.{name}: {e}"));
                            continue;
                        }
                    }
                }
                SourceConfig::Redis { url, timeout, max_bytes } => {
                    let mut s = RedisSettings::new(url.clone());
                    s.timeout = *timeout;
                    s.limits = Limits { max_rows: 1, max_bytes: *max_bytes };
                    match Redis::new(&s) {
                        Ok(r) => Arc::new(Source::Redis(Arc::new(r))),
                        Err(e) => {
                            errors.push(format!("sources.{name}: {e}"));
                            continue;
                        }
                    }
                }
            },
        };
        next.sources.push((name.clone(), cfg.clone(), source));
    }

    for rule in policy.rules() {
        let query = rule.query().and_then(|spec| {
            let Some((_, cfg, source)) = next.sources.iter().find(|(n, _, _)| *n == spec.source) else {
                let known = sources.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
                errors.push(format!(
                    "rule `{}`: query.source `{}` is not in `sources:` (configured: {})",
                    rule.name(),
                    spec.source,
                    if known.is_empty() { "none" } else { &known }
                ));
                return None;
            };
            let command = match (source.as_ref(), &spec.command) {
                (Source::Postgres(pg), QueryCommand::Sql(sql)) => {
                    Command::Sql { source: pg.clone(), sql: sql.clone() }
                }
                (Source::Redis(r), cmd) if !cmd.is_sql() => {
                    Command::Redis { source: r.clone(), command: cmd.clone() }
                }
                _ => {
                    errors.push(format!(
                        "rule `{}`: source `{}` is {}; {}",
                        rule.name(),
                        spec.source,
                        cfg.kind(),
                        if spec.command.is_sql() {
                            "use `sismember`, `get` or `hget` with it"
                        } else {
                            "use `sql` with it"
                        }
                    ));
                    return None;
                }
            };
            // The same query on the same live source keeps its cache.
            let kept = live
                .queries
                .iter()
                .chain(next.queries.iter())
                .find(|(n, s, l)| *n == spec.source && s == spec && same_source(l, source))
                .map(|(_, _, l)| l.clone());
            let lookup = kept.unwrap_or_else(|| {
                Arc::new(Lookup::new(command, spec.ttl, memo(10_000, spec.stale_if_error)))
            });
            if !next.queries.iter().any(|(_, _, l)| Arc::ptr_eq(l, &lookup)) {
                next.queries.push((spec.source.clone(), spec.clone(), lookup.clone()));
            }
            Some(lookup)
        });
        out.queries.push(query);

        let hook = rule.hook().and_then(|spec| {
            let mut headers = Vec::with_capacity(spec.headers.len());
            for (name, var) in &spec.headers {
                match std::env::var(var) {
                    Ok(v) if !v.is_empty() => headers.push((name.clone(), v)),
                    _ => {
                        errors.push(format!(
                            "rule `{}`: hook.headers.{name}: environment variable `{var}` is not set",
                            rule.name()
                        ));
                        return None;
                    }
                }
            }
            // One breaker per hook URL: rules asking the same app share it.
            let breaker = next
                .breakers
                .iter()
                .chain(live.breakers.iter())
                .find(|(u, _)| *u == spec.url)
                .map(|(_, b)| b.clone())
                .unwrap_or_else(|| Arc::new(Breaker::new(BreakerSettings::default())));
            if !next.breakers.iter().any(|(u, _)| *u == spec.url) {
                next.breakers.push((spec.url.clone(), breaker.clone()));
            }
            let kept = live
                .hooks
                .iter()
                .chain(next.hooks.iter())
                .find(|(s, h, _)| s == spec && *h == headers)
                .map(|(_, _, hook)| hook.clone());
            let hook = match kept {
                Some(h) => h,
                None => {
                    let client = match client() {
                        Ok(c) => c,
                        Err(e) => {
                            errors.push(format!("rule `{}`: hook: {e}", rule.name()));
                            return None;
                        }
                    };
                    let Ok(url) = spec.url.parse::<http::Uri>() else {
                        errors.push(format!("rule `{}`: hook.url `{}` is not a URI", rule.name(), spec.url));
                        return None;
                    };
                    let mut values = Vec::with_capacity(headers.len());
                    for (name, value) in &headers {
                        match (
                            http::HeaderName::from_bytes(name.as_bytes()),
                            http::HeaderValue::from_str(value),
                        ) {
                            (Ok(n), Ok(v)) => values.push((n, v)),
                            _ => {
                                errors.push(format!(
                                    "rule `{}`: hook.headers.{name}: the value is not a valid header value",
                                    rule.name()
                                ));
                                return None;
                            }
                        }
                    }
                    let settings = HookSettings {
                        url,
                        ttl: spec.ttl,
                        timeout: spec.timeout,
                        cache: memo(10_000, spec.stale_if_error),
                        breaker: BreakerSettings::default(),
                        headers: values,
                    };
                    Arc::new(Hook::new(client, settings, Some(breaker)))
                }
            };
            if !next.hooks.iter().any(|(_, _, h)| Arc::ptr_eq(h, &hook)) {
                next.hooks.push((spec.clone(), headers, hook.clone()));
            }
            Some(hook)
        });
        out.hooks.push(hook);
    }
    if errors.is_empty() { Ok((out, next)) } else { Err(errors) }
}

fn same_source(lookup: &Lookup, source: &Source) -> bool {
    match (lookup.command(), source) {
        (Command::Sql { source: a, .. }, Source::Postgres(b)) => Arc::ptr_eq(a, b),
        (Command::Redis { source: a, .. }, Source::Redis(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}
