//! Logs and metrics.
//!
//! Logs: tracing-subscriber to stderr, text or JSON, level from `RUST_LOG`.
//! Metrics: a prometheus-client registry owned by the running service (no
//! process globals, so tests can run several gateways in one process),
//! served as text on the admin listener's `/metrics`. Values that live
//! elsewhere (token cache, issuer keys, audit drops) are read at scrape time
//! by a collector.

use std::sync::Weak;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::app::Runtime;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber (stderr; `RUST_LOG`, default `info`).
pub(crate) fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Labels of a decision. Compared by word ([`crate::scan::eq`]; the rule
/// first by pointer): the family's lookup compares the labels of every
/// decision, and `bcmp` costs more than these short names.
#[derive(Clone, Debug, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `channel` or `signin`.
    pub kind: &'static str,
    /// The deciding rule (empty when none). Shared with the policy, so a
    /// lookup allocates nothing.
    pub rule: std::sync::Arc<str>,
    /// `allow` or `deny`.
    pub result: &'static str,
    /// Reason code (empty on allow).
    pub reason: &'static str,
}

/// By value, as the derive would: equal labels hash alike.
impl std::hash::Hash for DecisionLabels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.rule.hash(state);
        self.result.hash(state);
        self.reason.hash(state);
    }
}

impl PartialEq for DecisionLabels {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &str, b: &str| crate::scan::eq(a.as_bytes(), b.as_bytes());
        same(self.kind, other.kind)
            && same(self.result, other.result)
            && same(self.reason, other.reason)
            && (std::sync::Arc::ptr_eq(&self.rule, &other.rule) || same(&self.rule, &other.rule))
    }
}

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `auth`, `user_auth`, `health`, `other`.
    pub endpoint: &'static str,
    /// HTTP status.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `auth` or `user_auth`.
    pub endpoint: &'static str,
}

/// A `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// A `scope` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    /// `ip` or `user`.
    pub scope: &'static str,
}

/// Labels of a shadow-rule outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    /// The shadow rule.
    pub rule: std::sync::Arc<str>,
    /// `allow` or `deny`.
    pub result: &'static str,
}

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Decisions by kind, rule, result and reason.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Shadow-rule outcomes.
    pub shadow: Family<ShadowLabels, Counter>,
    /// Requests by endpoint and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Latency of auth requests.
    pub latency: Family<EndpointLabels, Histogram>,
    /// Reloads by result.
    pub reloads: Family<ResultLabels, Counter>,
    /// Rate-limit refusals by scope.
    pub rate_limited: Family<ScopeLabels, Counter>,
    /// Connections closed by the server for want of a request: `per_ip`
    /// (over `http.max_connections_per_ip`), `no_request` (no complete
    /// request head within `http.header_read_timeout` of accept), `idle`
    /// (no complete next head, HTTP/1.1, or no stream, HTTP/2, within
    /// `http.keep_alive_timeout` of the last response).
    pub connections_closed: Family<ReasonLabels, Counter>,
    /// Handles of the series every auth request touches, taken from their
    /// families on first use: a request then updates its counter and
    /// histogram without the family's lock and hash lookup.
    hot: HotSeries,
}

/// The latency histograms of `auth` and `user_auth`, and their
/// `200` request counters.
#[derive(Debug, Default)]
struct HotSeries {
    latency: [std::sync::OnceLock<Histogram>; 2],
    ok: [std::sync::OnceLock<Counter>; 2],
}

impl HotSeries {
    /// The slot of an endpoint label that has one.
    fn slot(endpoint: &str) -> Option<usize> {
        match endpoint {
            "auth" => Some(0),
            "user_auth" => Some(1),
            _ => None,
        }
    }
}

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: &'static str,
}

impl Metrics {
    /// Registers every metric; `runtime` feeds the scrape-time collector.
    pub fn new(runtime: Weak<Runtime>) -> Self {
        let mut registry = Registry::with_prefix("channelgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("decisions", "Authorization decisions", decisions.clone());
        let shadow = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_decisions",
            "What shadow rules would have decided (not enforced)",
            shadow.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests on the public listener", requests.clone());
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0])
        });
        registry.register_with_unit(
            "request_duration",
            "Time to answer an auth request",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register("reloads", "Configuration reloads", reloads.clone());
        let rate_limited = Family::<ScopeLabels, Counter>::default();
        registry.register("rate_limited", "Requests refused by a rate limit", rate_limited.clone());
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections the server closed for want of a request (per-IP cap, no request in time, idle after one)",
            connections_closed.clone(),
        );
        registry.register_collector(Box::new(RuntimeCollector(runtime)));
        Self {
            registry,
            decisions,
            shadow,
            requests,
            latency,
            reloads,
            rate_limited,
            connections_closed,
            hot: HotSeries::default(),
        }
    }

    /// The text exposition (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Reads values owned by other parts at scrape time.
#[derive(Debug)]
struct RuntimeCollector(Weak<Runtime>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerResultLabels {
    source: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    kind: &'static str,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupResultLabels {
    kind: &'static str,
    rule: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    source: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

impl Collector for RuntimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(rt) = self.0.upgrade() else { return Ok(()) };
        let gw = rt.gateway();
        let (hits, misses) = gw.sessions.stats();
        for (name, help, value) in [
            ("token_cache_hits", "Verified-token cache hits", hits),
            ("token_cache_misses", "Verified-token cache misses (signature verifications)", misses),
            ("audit_dropped", "Audit events dropped because the queue was full", rt.audit.dropped()),
        ] {
            let c = ConstCounter::new(value);
            let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(m)?;
        }
        let (sessions, bytes) = gw.sessions.held();
        for (name, help, value) in [
            ("token_cache_sessions", "Verified sessions in the token cache", sessions as u64),
            (
                "token_cache_bytes",
                "Estimated bytes of the token cache's sessions (bounded by max_bytes)",
                bytes,
            ),
        ] {
            let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(m)?;
        }
        let statuses = gw.key_status();
        if !statuses.is_empty() {
            let g = ConstGauge::new(0i64);
            let mut m = encoder.encode_descriptor(
                "jwks_key_age_seconds",
                "Age of each remote issuer's keys (-1 before the first fetch)",
                None,
                g.metric_type(),
            )?;
            for (_, s) in &statuses {
                let age = s.age_secs.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
                ConstGauge::new(age).encode(m.encode_family(&IssuerLabels { source: s.source.clone() })?)?;
            }
            let c = ConstCounter::new(0u64);
            let mut m = encoder.encode_descriptor(
                "jwks_fetches",
                "Fetches of remote issuer keys",
                None,
                c.metric_type(),
            )?;
            for (_, s) in &statuses {
                for (result, n) in [("ok", s.fetches_ok), ("error", s.fetches_failed)] {
                    let labels = IssuerResultLabels { source: s.source.clone(), result };
                    ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
            let mut m = encoder.encode_descriptor(
                "jwks_stale",
                "1 while an issuer's keys could not be refreshed and older keys are served",
                None,
                g.metric_type(),
            )?;
            for (_, s) in &statuses {
                ConstGauge::new(i64::from(s.stale))
                    .encode(m.encode_family(&IssuerLabels { source: s.source.clone() })?)?;
            }
        }
        encode_lookups(&mut encoder, &gw)?;
        let g = ConstGauge::new(1i64);
        let mut m = encoder.encode_descriptor("build_info", "Build information", None, g.metric_type())?;
        g.encode(m.encode_family(&BuildLabels { version: env!("CARGO_PKG_VERSION") })?)?;
        let ready = ConstGauge::new(i64::from(rt.is_ready()));
        let m = encoder.encode_descriptor("ready", "1 when ready to serve", None, ready.metric_type())?;
        ready.encode(m)?;
        Ok(())
    }
}

/// The caches of session introspection, lookups and hooks (answers by
/// result, breaker state) and the PostgreSQL pools.
fn encode_lookups(encoder: &mut DescriptorEncoder, gw: &crate::app::Gateway) -> Result<(), std::fmt::Error> {
    let (caches, pools) = gw.lookups.stats(&gw.policy);
    if !caches.is_empty() {
        let c = ConstCounter::new(0u64);
        let mut m = encoder.encode_descriptor(
            "lookup_answers",
            "Answers of the session endpoint, queries and hooks by how they were obtained (hit, miss, stale, error)",
            None,
            c.metric_type(),
        )?;
        for s in &caches {
            for (result, n) in [
                ("hit", s.counts.hits),
                ("miss", s.counts.misses),
                ("stale", s.counts.stale),
                ("error", s.counts.errors),
            ] {
                let labels = LookupResultLabels { kind: s.kind, rule: s.rule.clone(), result };
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        let g = ConstGauge::new(0i64);
        let mut m = encoder.encode_descriptor(
            "lookup_breaker_open",
            "1 while the circuit breaker of a session endpoint, data source or hook refuses calls",
            None,
            g.metric_type(),
        )?;
        for s in &caches {
            let labels = LookupLabels { kind: s.kind, rule: s.rule.clone() };
            ConstGauge::new(i64::from(s.open)).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "lookup_breaker_opened",
            "Times the circuit breaker of a session endpoint, data source or hook opened",
            None,
            c.metric_type(),
        )?;
        for s in &caches {
            let labels = LookupLabels { kind: s.kind, rule: s.rule.clone() };
            ConstCounter::new(s.opened).encode(m.encode_family(&labels)?)?;
        }
    }
    if !pools.is_empty() {
        let g = ConstGauge::new(0i64);
        let mut m = encoder.encode_descriptor(
            "lookup_pool_connections",
            "PostgreSQL connections of a data source, open and idle",
            None,
            g.metric_type(),
        )?;
        for p in &pools {
            for (state, n) in [("open", p.open), ("idle", p.idle)] {
                let labels = PoolStateLabels { source: p.source.clone(), state };
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(m.encode_family(&labels)?)?;
            }
        }
        let c = ConstCounter::new(0u64);
        let mut m = encoder.encode_descriptor(
            "lookup_pool_exhausted",
            "Lookups refused because every pooled connection stayed busy for the whole timeout",
            None,
            c.metric_type(),
        )?;
        for p in &pools {
            ConstCounter::new(p.exhausted)
                .encode(m.encode_family(&PoolLabels { source: p.source.clone() })?)?;
        }
    }
    Ok(())
}

/// Observes a request's latency.
pub(crate) fn observe(metrics: &Metrics, endpoint: &'static str, secs: f64) {
    let family = || metrics.latency.get_or_create(&EndpointLabels { endpoint });
    match HotSeries::slot(endpoint) {
        // The handle shares the family's series (the same histogram).
        Some(i) => metrics.hot.latency[i].get_or_init(|| family().clone()).observe(secs),
        None => family().observe(secs),
    }
}

/// Counts a request by endpoint and status.
pub(crate) fn count_request(metrics: &Metrics, endpoint: &'static str, status: u16) {
    let family = || metrics.requests.get_or_create(&RequestLabels { endpoint, status });
    match HotSeries::slot(endpoint).filter(|_| status == 200) {
        Some(i) => metrics.hot.ok[i].get_or_init(|| family().clone()).inc(),
        None => family().inc(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_labels_are_one_series_by_value() {
        let metrics = Metrics::new(Weak::new());
        let labels = |rule: &str, reason: &'static str| DecisionLabels {
            kind: "channel",
            rule: std::sync::Arc::from(rule),
            result: "deny",
            reason,
        };
        // Separate allocations of the same rule name: one series.
        metrics.decisions.get_or_create(&labels("docs", "rule_denied")).inc();
        metrics.decisions.get_or_create(&labels("docs", "rule_denied")).inc();
        metrics.decisions.get_or_create(&labels("docs", "rule_error")).inc();
        metrics.decisions.get_or_create(&labels("doc", "rule_denied")).inc();
        assert_eq!(metrics.decisions.get_or_create(&labels("docs", "rule_denied")).get(), 2);
        assert_eq!(metrics.decisions.get_or_create(&labels("docs", "rule_error")).get(), 1);
        assert_eq!(metrics.decisions.get_or_create(&labels("doc", "rule_denied")).get(), 1);
        assert_ne!(labels("docs", "rule_denied"), labels("docs2", "rule_denied"));
    }

    #[test]
    fn the_hot_series_are_the_families_series() {
        let metrics = Metrics::new(Weak::new());
        for _ in 0..3 {
            count_request(&metrics, "auth", 200);
            observe(&metrics, "auth", 0.0002);
        }
        count_request(&metrics, "auth", 403);
        count_request(&metrics, "health", 200);
        observe(&metrics, "user_auth", 0.2);
        let text = metrics.render();
        for line in [
            r#"channelgate_http_requests_total{endpoint="auth",status="200"} 3"#,
            r#"channelgate_http_requests_total{endpoint="auth",status="403"} 1"#,
            r#"channelgate_http_requests_total{endpoint="health",status="200"} 1"#,
            r#"channelgate_request_duration_seconds_count{endpoint="auth"} 3"#,
            r#"channelgate_request_duration_seconds_bucket{le="0.00025",endpoint="auth"} 3"#,
            r#"channelgate_request_duration_seconds_count{endpoint="user_auth"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // A family lookup after the handle was taken sees the same series.
        assert_eq!(metrics.requests.get_or_create(&RequestLabels { endpoint: "auth", status: 200 }).get(), 3);
    }
}
