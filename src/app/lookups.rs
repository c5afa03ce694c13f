//! The live objects of session introspection, decision hooks and data
//! sources, built from the config's descriptions and the policy's rules,
//! and kept across reloads while their settings stay the same (their
//! caches, pools, connections and breakers with them).

use std::sync::Arc;

use super::Gateway;
use crate::config::{Forward, IntrospectConfig, SourceConfig};
use crate::membership::LookupError;
use crate::membership::breaker::{Breaker, BreakerSettings, BreakerState};
use crate::membership::hook::{Decision as HookDecision, Question};
use crate::membership::hook::{Hook, HookSettings};
use crate::membership::introspect::{self, IntrospectSettings, Introspector};
use crate::membership::lookup::Found;
use crate::membership::lookup::{Command, Limits, Lookup};
use crate::membership::memo::MemoSettings;
use crate::membership::memo::{CacheStatus, MemoCounts};
use crate::membership::postgres::{Postgres, PostgresSettings};
use crate::membership::redis::{Redis, RedisSettings};
use crate::policy::Policy;
use crate::policy::Request;
use crate::policy::lookup::{Fact, Facts};
use crate::policy::lookup::{HookSpec, QueryCommand, QuerySpec};
use crate::pusher::ChannelName;
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
    /// The data sources in use, by name.
    pub(crate) sources: Vec<(String, Arc<Source>)>,
}

/// One cache's counters and its dependency's breaker, for `/metrics`.
#[derive(Debug)]
pub(crate) struct CacheStat {
    /// `session`, `query` or `hook`.
    pub(crate) kind: &'static str,
    /// The rule's name (empty for the session endpoint).
    pub(crate) rule: String,
    pub(crate) counts: MemoCounts,
    /// Whether the breaker refuses calls now.
    pub(crate) open: bool,
    /// How many times it opened.
    pub(crate) opened: u64,
}

/// A PostgreSQL pool, for `/metrics`.
#[derive(Debug)]
pub(crate) struct PoolStat {
    pub(crate) source: String,
    pub(crate) open: usize,
    pub(crate) idle: usize,
    pub(crate) exhausted: u64,
}

impl Lookups {
    /// Counters of every cache and pool (read at scrape time).
    pub(crate) fn stats(&self, policy: &Policy) -> (Vec<CacheStat>, Vec<PoolStat>) {
        let now = tokio::time::Instant::now();
        let breaker = |b: &Breaker| (b.state(now) == BreakerState::Open, b.stats().0);
        let mut caches = Vec::new();
        if let Some((_, i)) = &self.introspect {
            let (open, opened) = breaker(i.breaker());
            caches.push(CacheStat {
                kind: "session",
                rule: String::new(),
                counts: i.memo().counts(),
                open,
                opened,
            });
        }
        for (rule, lookup) in policy.rules().iter().zip(&self.queries) {
            let Some(lookup) = lookup else { continue };
            let (open, opened) = match lookup.command() {
                Command::Sql { source, .. } => breaker(source.breaker()),
                Command::Redis { source, .. } => breaker(source.breaker()),
            };
            caches.push(CacheStat {
                kind: "query",
                rule: rule.name().to_owned(),
                counts: lookup.memo().counts(),
                open,
                opened,
            });
        }
        for (rule, hook) in policy.rules().iter().zip(&self.hooks) {
            let Some(hook) = hook else { continue };
            let (open, opened) = breaker(hook.breaker());
            caches.push(CacheStat {
                kind: "hook",
                rule: rule.name().to_owned(),
                counts: hook.memo().counts(),
                open,
                opened,
            });
        }
        let pools = self
            .sources
            .iter()
            .filter_map(|(name, s)| match s.as_ref() {
                Source::Postgres(pg) => {
                    let (open, idle, exhausted) = pg.pool_stats();
                    Some(PoolStat { source: name.clone(), open, idle, exhausted })
                }
                Source::Redis(_) => None,
            })
            .collect();
        (caches, pools)
    }
}

/// A hook with its spec and the header values read for it.
type LiveHook = (HookSpec, Vec<(String, String)>, Arc<Hook>);

/// The live objects kept by the runtime.
#[derive(Clone, Default)]
pub(crate) struct LiveLookups {
    introspect: Option<(IntrospectConfig, Arc<Introspector>)>,
    sources: Vec<(String, SourceConfig, Arc<Source>)>,
    queries: Vec<(String, QuerySpec, Arc<Lookup>)>,
    hooks: Vec<LiveHook>,
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
        out.sources.push((name.clone(), source.clone()));
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
                        ttl: spec.ttl,
                        timeout: spec.timeout,
                        cache: memo(10_000, spec.stale_if_error),
                        headers: values,
                        ..HookSettings::new(url)
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

/// One lookup or hook as `explain` shows it.
#[derive(Debug)]
pub(crate) struct Explained {
    pub(crate) rule: String,
    pub(crate) what: &'static str,
    pub(crate) params: Vec<(String, Option<String>)>,
    pub(crate) cache: Option<CacheStatus>,
    pub(crate) outcome: String,
}

/// What the lookups and hooks of the rules deciding `channel` find (the
/// deciding rule's, and those of matching shadow rules before it), asked
/// concurrently; each through its cache, bounded by its timeout. With
/// `explain`, also what each was asked and answered.
pub(crate) async fn gather(
    gw: &Gateway,
    request: &Request<'_>,
    channel: &ChannelName,
    now: tokio::time::Instant,
    explain: bool,
) -> (Facts, Vec<Explained>) {
    let rules = gw.policy.rules_for(channel);
    let queries = rules.iter().filter_map(|(i, captures)| {
        let lookup = gw.lookups.queries.get(*i)?.as_ref()?;
        let params = gw.policy.query_params(*i, captures, request, channel);
        Some(async move {
            let result = lookup.run(&params, now).await;
            let shown = explain.then(|| {
                let refs = gw.policy.rules()[*i].query().map(|q| q.params.clone()).unwrap_or_default();
                Explained {
                    rule: gw.policy.rules()[*i].name().to_owned(),
                    what: "query",
                    params: refs
                        .iter()
                        .zip(params.iter())
                        .map(|(r, v)| (r.as_text(), v.as_deref().map(str::to_owned)))
                        .collect(),
                    cache: result.as_ref().ok().map(|(_, c)| *c),
                    outcome: match &result {
                        Ok((found, _)) => format!(
                            "{} row(s){}: {}",
                            found.rows.rows.len(),
                            if found.rows.truncated { " (cut)" } else { "" },
                            serde_json::Value::Array(
                                found.rows.rows.iter().cloned().map(serde_json::Value::Object).collect()
                            )
                        ),
                        Err(e) => format!("failed: {e}"),
                    },
                }
            });
            (*i, lookup_fact(gw, *i, result.map(|(f, _)| f)), shown)
        })
    });
    let hooks = rules.iter().filter_map(|(i, captures)| {
        let hook = gw.lookups.hooks.get(*i)?.as_ref()?;
        Some(async move {
            let result = ask_hook(gw, hook, request, channel, captures, now).await;
            let shown = explain.then(|| Explained {
                rule: gw.policy.rules()[*i].name().to_owned(),
                what: "hook",
                params: captures.iter().map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned()))).collect(),
                cache: result.as_ref().ok().map(|(_, c)| *c),
                outcome: match &result {
                    Ok((d, _)) => format!(
                        "allow: {}, reason: {}, user_info: {}",
                        d.allow,
                        d.reason.as_deref().unwrap_or("none"),
                        d.user_info.as_ref().map_or_else(
                            || "none".to_owned(),
                            |u| serde_json::Value::Object(u.clone()).to_string()
                        )
                    ),
                    Err(e) => format!("failed: {e}"),
                },
            });
            (*i, hook_fact(gw, *i, result.map(|(d, _)| d)), shown)
        })
    });
    let (queries, hooks) = futures_util::future::join(
        futures_util::future::join_all(queries),
        futures_util::future::join_all(hooks),
    )
    .await;
    let mut facts = Facts::none();
    let mut shown = Vec::new();
    for (i, fact, s) in queries {
        facts.set_query(i, fact);
        shown.extend(s);
    }
    for (i, fact, s) in hooks {
        facts.set_hook(i, fact);
        shown.extend(s);
    }
    (facts, shown)
}

/// The hook's decision: from its cache, or asked with the claims as JSON
/// (built only then).
async fn ask_hook(
    gw: &Gateway,
    hook: &Hook,
    request: &Request<'_>,
    channel: &ChannelName,
    captures: &[(&str, &str)],
    now: tokio::time::Instant,
) -> Result<(Arc<HookDecision>, CacheStatus), LookupError> {
    // Cached per (user, channel): `sub`, or the whole claims when it is absent.
    let claims = std::sync::OnceLock::new();
    let claims_json = || claims.get_or_init(|| gw.policy.claims_json(request));
    let user = match request.token.claim_str("sub") {
        Some(sub) => format!("sub:{sub}"),
        None => format!("claims:{}", claims_json()),
    };
    if let Some(d) = hook.cached(&user, channel.as_str(), now) {
        return Ok((d, CacheStatus::Hit));
    }
    let claims_text = serde_json::value::to_raw_value(claims_json())
        .map_err(|e| LookupError::BadParameter(format!("the claims as JSON: {e}").into()))?;
    let captures: indexmap::IndexMap<&str, &str> = captures.iter().copied().collect();
    let question = Question {
        claims: &claims_text,
        channel: channel.as_str(),
        captures: &captures,
        socket_id: request.socket_id.as_str(),
    };
    hook.decide(&user, &question, now).await
}

fn lookup_fact(gw: &Gateway, rule: usize, result: Result<Arc<Found>, LookupError>) -> Fact {
    match result {
        Ok(found) => Fact::Found(found.fact.clone()),
        Err(e) => fault_fact(gw, rule, "query", e),
    }
}

fn hook_fact(gw: &Gateway, rule: usize, result: Result<Arc<HookDecision>, LookupError>) -> Fact {
    match result {
        Ok(d) => Fact::Found(d.fact.clone()),
        Err(e) => fault_fact(gw, rule, "hook", e),
    }
}

fn fault_fact(gw: &Gateway, rule: usize, what: &str, e: LookupError) -> Fact {
    let name = gw.policy.rules().get(rule).map_or("?", |r| r.name());
    match e {
        LookupError::Unavailable { kind, detail } => {
            tracing::warn!(rule = name, what, kind = kind.as_str(), error = %detail, "refusing: the rule's {what} failed");
            Fact::Unavailable(format!("{} ({})", detail, kind.as_str()))
        }
        LookupError::BadParameter(m) => {
            tracing::info!(rule = name, what, error = %m, "denying: the request's values were refused");
            Fact::Refused(m.to_string())
        }
    }
}
