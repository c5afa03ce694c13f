//! Facts that live in the app rather than in a token: who a session cookie
//! belongs to (session introspection), what the app decides for a channel
//! (a decision hook), and rows of the app's database or Redis (data-source
//! lookups). Each asks a remote dependency, so each is cached, shares one
//! fetch per key, is bounded in time, sits behind a circuit breaker and
//! fails closed.
//!
//! - [`memo`]: the TTL cache with single-flight fetches and
//!   `stale_if_error` that all three use; [`breaker`]: the circuit breaker;
//! - [`introspect`]: the app's session endpoint (`GET` with the forwarded
//!   cookies or headers; 200 + JSON object = claims, 401/403 = no session);
//! - [`hook`]: a rule's decision hook (`POST` claims, channel, captures,
//!   socket id; `{allow, reason, user_info}`);
//! - [`postgres`], [`redis`]: data sources; [`readonly`]: the proof that a
//!   query is a single read-only `SELECT`; [`lookup`]: a rule's query with
//!   its parameters and cache.
//!
//! Invariants: a caller's values (captures, claims) reach a database only as
//! bound parameters or as one whole Redis argument, never as query text;
//! every call is bounded by its `timeout`; an error is never an answer: the
//! caller gets [`LookupError::Unavailable`] (503, fail closed) unless a
//! cached answer is within `stale_if_error`; time is passed in (`now`).

pub(crate) mod breaker;
pub(crate) mod hook;
pub(crate) mod introspect;
pub(crate) mod lookup;
pub(crate) mod memo;
pub(crate) mod postgres;

pub(crate) mod redis;

mod client;

#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::Duration;

/// What went wrong with a dependency (a label for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// No answer within the configured timeout.
    Timeout,
    /// The connection could not be made or broke.
    Unreachable,
    /// The circuit breaker is open: the call was not made.
    BreakerOpen,
    /// Every pooled connection was busy for the whole timeout.
    PoolExhausted,
    /// The dependency answered something unusable (a status, a body, a
    /// column type).
    BadAnswer,
    /// The database refused the query (a missing table, a privilege).
    QueryFailed,
}

impl FaultKind {
    /// The label: `timeout`, `unreachable`, `breaker_open`,
    /// `pool_exhausted`, `bad_answer`, `query_failed`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FaultKind::Timeout => "timeout",
            FaultKind::Unreachable => "unreachable",
            FaultKind::BreakerOpen => "breaker_open",
            FaultKind::PoolExhausted => "pool_exhausted",
            FaultKind::BadAnswer => "bad_answer",
            FaultKind::QueryFailed => "query_failed",
        }
    }
}

/// Why a lookup has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LookupError {
    /// The dependency failed: the request is refused with 503 (fail closed).
    /// The detail is for logs; it never holds a credential or a parameter.
    #[error("{} ({})", .detail, .kind.as_str())]
    Unavailable {
        /// What kind of failure.
        kind: FaultKind,
        /// What happened, for the log.
        detail: Arc<str>,
    },
    /// The request's own values cannot be used (a parameter the column's
    /// type refuses, a key part with a separator): the rule denies.
    #[error("{0}")]
    BadParameter(Arc<str>),
}

impl LookupError {
    fn unavailable(kind: FaultKind, detail: impl Into<Arc<str>>) -> Self {
        LookupError::Unavailable { kind, detail: detail.into() }
    }

    /// Whether the dependency failed (as opposed to the request's values).
    #[cfg(test)]
    pub(crate) fn is_fault(&self) -> bool {
        matches!(self, LookupError::Unavailable { .. })
    }
}

/// Why a data source cannot be built (the message never holds its URL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SourceError(pub String);

impl From<breaker::Open> for LookupError {
    fn from(open: breaker::Open) -> Self {
        LookupError::unavailable(FaultKind::BreakerOpen, open.to_string())
    }
}

/// The TTL an HTTP answer may be cached for: `configured`, shortened to the
/// answer's `Cache-Control: max-age`, zero with `no-store`, `no-cache` or
/// `max-age=0`. `s-maxage` and `private` do not apply (channelgate is the
/// app's own agent, not a shared cache).
pub(crate) fn http_ttl(headers: &::http::HeaderMap, configured: Duration) -> Duration {
    let mut ttl = configured;
    for value in headers.get_all(::http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { return Duration::ZERO };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) =
                directive.split_once('=').map_or((directive, None), |(n, a)| (n.trim(), Some(a.trim())));
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Duration::ZERO;
            }
            if name.eq_ignore_ascii_case("max-age") {
                // An unreadable max-age is treated as zero (RFC 9111 §4.2.1:
                // an invalid freshness lifetime means stale).
                let secs = arg.map(|a| a.trim_matches('"')).and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                ttl = ttl.min(Duration::from_secs(secs));
            }
        }
    }
    ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl(values: &[&str]) -> Duration {
        let mut h = ::http::HeaderMap::new();
        for v in values {
            h.append(::http::header::CACHE_CONTROL, v.parse().unwrap());
        }
        http_ttl(&h, Duration::from_secs(30))
    }

    #[test]
    fn cache_control_only_shortens_the_configured_ttl() {
        assert_eq!(ttl(&[]), Duration::from_secs(30));
        assert_eq!(ttl(&["max-age=10"]), Duration::from_secs(10));
        assert_eq!(ttl(&["private, max-age=600"]), Duration::from_secs(30));
        assert_eq!(ttl(&["public", "max-age=5"]), Duration::from_secs(5));
        assert_eq!(ttl(&["MAX-AGE = \"7\""]), Duration::from_secs(7));
        assert_eq!(ttl(&["max-age=0"]), Duration::ZERO);
        assert_eq!(ttl(&["max-age=soon"]), Duration::ZERO);
        assert_eq!(ttl(&["no-store"]), Duration::ZERO);
        assert_eq!(ttl(&["max-age=10, no-cache"]), Duration::ZERO);
        assert_eq!(ttl(&["s-maxage=1"]), Duration::from_secs(30));
    }
}
