//! A rule's lookup: a proven read-only SQL query on a PostgreSQL source, or
//! a Redis command, with the values it is bound to (one tuple per request,
//! from captures and claims) and a cache per tuple.
//!
//! Invariants: the tuple is the cache key (the same values never reach the
//! source twice within the TTL, and concurrent requests with the same
//! values share one call); results are bounded ([`Limits`]) and say when
//! they were cut; a missing value (`NULL` for a key or a member) denies
//! without asking the source.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::LookupError;
use super::memo::{CacheStatus, Fresh, Memo, MemoSettings, Weigh};
use super::postgres::Postgres;
use super::redis::Redis;
use crate::policy::lookup::{FactValue, QueryCommand};
use crate::policy::readonly::ReadOnlySql;

pub(crate) use crate::policy::lookup::{Param, Params};

/// How much of a result is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most rows kept.
    pub(crate) max_rows: usize,
    /// Most estimated bytes kept (column names and values).
    pub(crate) max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_rows: 100, max_bytes: 64 * 1024 }
    }
}

/// One row: column name → value.
pub(crate) type Row = serde_json::Map<String, serde_json::Value>;

/// A lookup's result.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Rows {
    /// The rows kept, in the order the source gave them.
    pub(crate) rows: Vec<Row>,
    /// Whether rows were left out ([`Limits`]).
    pub(crate) truncated: bool,
}

impl Rows {
    /// Whether there is a row (`query.found`).
    #[cfg(test)]
    pub(crate) fn found(&self) -> bool {
        !self.rows.is_empty()
    }

    /// The first row (`query.row`).
    #[cfg(test)]
    pub(crate) fn first(&self) -> Option<&Row> {
        self.rows.first()
    }
}

/// Estimated bytes of a JSON value in memory.
pub(crate) fn value_bytes(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => 24 + s.len(),
        serde_json::Value::Array(a) => 24 + a.iter().map(value_bytes).sum::<usize>(),
        serde_json::Value::Object(o) => {
            24 + o.iter().map(|(k, v)| 24 + k.len() + value_bytes(v)).sum::<usize>()
        }
        _ => 16,
    }
}

/// A result with its CEL value (`query`), built once per fetch.
#[derive(Debug)]
pub(crate) struct Found {
    /// The rows.
    pub(crate) rows: Rows,
    /// `{found, row, rows, truncated}` for the policy.
    pub(crate) fact: Arc<FactValue>,
}

impl Found {
    fn new(rows: Rows) -> Self {
        let fact = Arc::new(FactValue::query(&rows.rows, rows.truncated));
        Self { rows, fact }
    }
}

impl Weigh for Arc<Found> {
    fn weight(&self) -> u64 {
        let bytes: usize = self
            .rows
            .rows
            .iter()
            .map(|r| r.iter().map(|(k, v)| 24 + k.len() + value_bytes(v)).sum::<usize>())
            .sum();
        // The rows, and their CEL form beside them.
        128 + 2 * bytes as u64
    }
}

/// Where a lookup runs.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// A proven read-only query on a PostgreSQL source.
    Sql {
        /// The source.
        source: Arc<Postgres>,
        /// The query.
        sql: ReadOnlySql,
    },
    /// A command on a Redis source.
    Redis {
        /// The source.
        source: Arc<Redis>,
        /// The command (not `Sql`).
        command: QueryCommand,
    },
}

/// A rule's lookup with its cache; see the module docs.
pub(crate) struct Lookup {
    command: Command,
    ttl: Duration,
    memo: Memo<Params, Arc<Found>, LookupError>,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup")
            .field("command", &self.command)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Lookup {
    /// A lookup whose results are kept for `ttl` (zero: not kept).
    pub(crate) fn new(command: Command, ttl: Duration, cache: MemoSettings) -> Self {
        Self { command, ttl, memo: Memo::new(cache) }
    }

    /// What it runs.
    pub(crate) fn command(&self) -> &Command {
        &self.command
    }

    /// Its cache (counters for metrics).
    pub(crate) fn memo(&self) -> &Memo<Params, Arc<Found>, LookupError> {
        &self.memo
    }

    /// The result for `params` at `now`.
    pub(crate) async fn run(
        &self,
        params: &Params,
        now: Instant,
    ) -> Result<(Arc<Found>, CacheStatus), LookupError> {
        self.memo
            .get(params, now, || async {
                let rows = match &self.command {
                    Command::Sql { source, sql } => source.query(sql, params, now).await?,
                    Command::Redis { source, command } => source.run(command, params, now).await?,
                };
                Ok(Fresh { value: Arc::new(Found::new(rows)), ttl: self.ttl })
            })
            .await
    }
}
