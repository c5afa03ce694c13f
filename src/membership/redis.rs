//! A Redis data source: `SISMEMBER`, `GET` and `HGET` with key templates.
//!
//! A template is text with placeholders, `room:{room}:members`; the caller
//! binds each placeholder to a value (a capture or a claim) per request.
//! Every argument reaches Redis as one length-prefixed argument of the
//! command, so a value can never add a command or an argument. Inside a
//! *key*, a value may not hold `:`, braces, glob characters, whitespace or
//! control characters (it could otherwise point the key at another record:
//! `sub = "1:admins"`), nor be empty; such a value denies (`BadParameter`).
//! A member or field is taken whole.
//!
//! Results: `SISMEMBER` → one row `{"member": true}` when it is a member,
//! none otherwise; `GET`/`HGET` → one row `{"value": "…"}` when the key or
//! field exists (cut to the byte limit, `truncated`), none otherwise.
//! Every call is bounded by the timeout and counted by the breaker.

use std::time::Duration;

use ::redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerSettings};
use super::lookup::{Limits, Row, Rows};
use super::{FaultKind, LookupError, SourceError};
use crate::policy::lookup::{Param, Piece, QueryCommand, Template};
use crate::secret::Secret;

/// A Redis source's settings.
#[derive(Debug, Clone)]
pub(crate) struct RedisSettings {
    /// `redis://…` (it may hold a password).
    pub(crate) url: Secret,
    /// The bound on one lookup, connecting included.
    pub(crate) timeout: Duration,
    /// How much of a value is kept.
    pub(crate) limits: Limits,
    /// When Redis counts as down.
    pub(crate) breaker: BreakerSettings,
}

impl RedisSettings {
    /// The defaults for `url`: a 1 s timeout.
    pub(crate) fn new(url: Secret) -> Self {
        Self {
            url,
            timeout: Duration::from_secs(1),
            limits: Limits::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

/// The text of `template` for `params`; in a key, values are checked
/// (module docs).
fn render(template: &Template, params: &[Param], key: bool) -> Result<String, LookupError> {
    let mut out = String::new();
    for piece in &template.pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Param(i) => {
                let Some(Some(value)) = params.get(*i) else {
                    return Err(LookupError::BadParameter("a value of the Redis command is missing".into()));
                };
                if key && !safe_in_key(value) {
                    return Err(LookupError::BadParameter(
                        "a value inside a Redis key is empty or holds `:`, a brace, a glob character, \
                         whitespace or a control character"
                            .into(),
                    ));
                }
                out.push_str(value);
            }
        }
    }
    Ok(out)
}

fn safe_in_key(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 512
        && !value.chars().any(|c| c.is_whitespace() || c.is_control() || ":{}*?[]\\".contains(c))
}

/// A Redis source; see the module docs.
pub(crate) struct Redis {
    client: ::redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    timeout: Duration,
    limits: Limits,
    breaker: Breaker,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("breaker", &self.breaker).finish_non_exhaustive()
    }
}

impl Redis {
    /// Checks the URL; the connection is opened when first needed.
    pub(crate) fn new(settings: &RedisSettings) -> Result<Self, SourceError> {
        let url = std::str::from_utf8(settings.url.expose())
            .map_err(|_| SourceError("the Redis URL is not UTF-8".into()))?;
        let client = ::redis::Client::open(url)
            .map_err(|e| SourceError(format!("the Redis URL is not valid ({:?})", e.kind())))?;
        Ok(Self {
            client,
            conn: tokio::sync::OnceCell::new(),
            timeout: settings.timeout,
            limits: settings.limits,
            breaker: Breaker::new(settings.breaker),
        })
    }

    /// Its circuit breaker.
    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs `command` with `params` at `now`.
    pub(crate) async fn run(
        &self,
        command: &QueryCommand,
        params: &[Param],
        now: Instant,
    ) -> Result<Rows, LookupError> {
        let cmd = match command {
            QueryCommand::SisMember { key, member } => {
                let mut c = ::redis::cmd("SISMEMBER");
                c.arg(render(key, params, true)?).arg(render(member, params, false)?);
                c
            }
            QueryCommand::Get { key } => {
                let mut c = ::redis::cmd("GET");
                c.arg(render(key, params, true)?);
                c
            }
            QueryCommand::HGet { key, field } => {
                let mut c = ::redis::cmd("HGET");
                c.arg(render(key, params, true)?).arg(render(field, params, false)?);
                c
            }
            QueryCommand::Sql(_) => {
                return Err(LookupError::unavailable(
                    FaultKind::QueryFailed,
                    "an SQL query on a Redis source",
                ));
            }
        };
        let permit = self.breaker.admit(now)?;
        let call = async {
            let mut conn = self.connection().await?;
            cmd.query_async::<::redis::Value>(&mut conn).await.map_err(redis_error)
        };
        let reply = tokio::time::timeout(self.timeout, call).await.unwrap_or_else(|_| {
            Err(LookupError::unavailable(
                FaultKind::Timeout,
                format!("no reply within {}", humantime::format_duration(self.timeout)),
            ))
        });
        let rows = reply.and_then(|reply| self.rows(command, reply));
        match &rows {
            Ok(_) => permit.success(Instant::now()),
            Err(_) => permit.failure(Instant::now()),
        }
        rows
    }

    async fn connection(&self) -> Result<ConnectionManager, LookupError> {
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        self.conn
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await
            .cloned()
            .map_err(redis_error)
    }

    fn rows(&self, command: &QueryCommand, reply: ::redis::Value) -> Result<Rows, LookupError> {
        use ::redis::Value as V;
        let unexpected = || {
            LookupError::unavailable(
                FaultKind::BadAnswer,
                "Redis answered with an unexpected type".to_owned(),
            )
        };
        let mut rows = Rows::default();
        match (command, reply) {
            (QueryCommand::SisMember { .. }, V::Int(n)) => {
                if n == 1 {
                    rows.rows.push(Row::from_iter([("member".to_owned(), serde_json::Value::Bool(true))]));
                }
            }
            (QueryCommand::SisMember { .. }, _) => return Err(unexpected()),
            (_, V::Nil) => {}
            (_, V::BulkString(bytes)) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    LookupError::unavailable(FaultKind::BadAnswer, "the Redis value is not UTF-8")
                })?;
                let (text, cut) = cut(text, self.limits.max_bytes);
                rows.truncated = cut;
                rows.rows.push(Row::from_iter([("value".to_owned(), serde_json::Value::String(text))]));
            }
            (_, V::SimpleString(text)) => {
                rows.rows.push(Row::from_iter([("value".to_owned(), serde_json::Value::String(text))]));
            }
            _ => return Err(unexpected()),
        }
        Ok(rows)
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

fn redis_error(e: ::redis::RedisError) -> LookupError {
    if e.is_timeout() {
        LookupError::unavailable(FaultKind::Timeout, "Redis did not answer in time")
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        LookupError::unavailable(FaultKind::Unreachable, format!("Redis: {e}"))
    } else {
        // An error reply (WRONGTYPE…): the server's code only.
        LookupError::unavailable(
            FaultKind::QueryFailed,
            format!("Redis refused the command ({})", e.code().unwrap_or("error")),
        )
    }
}

#[cfg(test)]
mod tests;
