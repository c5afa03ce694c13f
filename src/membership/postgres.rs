//! A PostgreSQL data source: a pool of connections (deadpool-postgres over
//! tokio-postgres) that runs proven read-only queries with bound
//! parameters.
//!
//! Invariants:
//! - every value is a bound parameter sent in PostgreSQL's text format, so
//!   the server reads it as the parameter's own type (`$1` compared with an
//!   integer column is parsed as an integer) and a value can never change
//!   the query; a value the type refuses (`"abc"` for an integer, SQLSTATE
//!   class 22) denies (`BadParameter`), it is not a fault;
//! - each connection runs with `default_transaction_read_only = on` and a
//!   `statement_timeout` equal to the source's timeout; the whole call
//!   (waiting for a pooled connection, preparing, running, reading rows) is
//!   bounded by that timeout, and waiting for a connection longer than it
//!   (pool exhausted) fails closed;
//! - rows are read up to the limits and the rest dropped (`truncated`);
//!   columns of a type this module does not read are a fault with a hint to
//!   cast them, never a guess;
//! - timeouts, unreachable servers and refused queries count against the
//!   source's circuit breaker; an exhausted pool or a refused value does not
//!   (the server answered, or was never asked).

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use futures_util::{StreamExt, pin_mut};
use tokio::time::Instant;
use tokio_postgres::types::{FromSql, Kind, ToSql, Type};

use super::breaker::{Breaker, BreakerSettings};
use super::lookup::{Limits, Param, Row, Rows, value_bytes};
use super::{FaultKind, LookupError, SourceError};
use crate::policy::readonly::ReadOnlySql;
use crate::secret::Secret;

/// A PostgreSQL source's settings.
#[derive(Debug, Clone)]
pub(crate) struct PostgresSettings {
    /// The connection URL or `key=value` string (it may hold a password).
    pub(crate) url: Secret,
    /// Most connections.
    pub(crate) pool: usize,
    /// The bound on one lookup, waiting for a connection included.
    pub(crate) timeout: Duration,
    /// How much of a result is kept.
    pub(crate) limits: Limits,
    /// When the database counts as down.
    pub(crate) breaker: BreakerSettings,
}

impl PostgresSettings {
    /// The defaults for `url`: 8 connections, a 1 s timeout.
    pub(crate) fn new(url: Secret) -> Self {
        Self {
            url,
            pool: 8,
            timeout: Duration::from_secs(1),
            limits: Limits::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

/// A PostgreSQL source; see the module docs.
pub(crate) struct Postgres {
    pool: Pool,
    timeout: Duration,
    limits: Limits,
    breaker: Breaker,
    exhausted: AtomicU64,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("pool", &self.pool.status()).field("breaker", &self.breaker).finish()
    }
}

impl Postgres {
    /// Builds the pool; connections are opened when first needed (a
    /// database that is down at start does not stop channelgate: its
    /// lookups fail closed until it is back).
    pub(crate) fn new(settings: &PostgresSettings) -> Result<Self, SourceError> {
        let url = std::str::from_utf8(settings.url.expose())
            .map_err(|_| SourceError("the PostgreSQL URL is not UTF-8".into()))?;
        // tokio-postgres's parse errors name the option, not its value.
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| SourceError(format!("the PostgreSQL URL is not valid: {e}")))?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(SourceError(
                "sslmode=require: channelgate connects to PostgreSQL without TLS (a sidecar on the same host or \
                 network); use sslmode=disable or prefer"
                    .into(),
            ));
        }
        let mut options = config.get_options().map(str::to_owned).unwrap_or_default();
        let millis = settings.timeout.as_millis().max(1);
        options.push_str(&format!(" -c default_transaction_read_only=on -c statement_timeout={millis}"));
        config.options(options.trim());
        if config.get_application_name().is_none() {
            config.application_name("channelgate");
        }
        config.connect_timeout(settings.timeout);
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.timeout))
            .create_timeout(Some(settings.timeout))
            .recycle_timeout(Some(settings.timeout))
            .build()
            .map_err(|e| SourceError(format!("the PostgreSQL pool: {e}")))?;
        Ok(Self {
            pool,
            timeout: settings.timeout,
            limits: settings.limits,
            breaker: Breaker::new(settings.breaker),
            exhausted: AtomicU64::new(0),
        })
    }

    /// Its circuit breaker.
    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Connections open and idle, and how many lookups found the pool
    /// exhausted.
    pub(crate) fn pool_stats(&self) -> (usize, usize, u64) {
        let status = self.pool.status();
        (status.size, status.available, self.exhausted.load(Ordering::Relaxed))
    }

    /// Runs `sql` with `params` at `now`.
    pub(crate) async fn query(
        &self,
        sql: &ReadOnlySql,
        params: &[Param],
        now: Instant,
    ) -> Result<Rows, LookupError> {
        if params.len() != sql.params() {
            return Err(LookupError::unavailable(
                FaultKind::QueryFailed,
                format!("the query takes {} parameters, {} were given", sql.params(), params.len()),
            ));
        }
        let permit = self.breaker.admit(now)?;
        let result = tokio::time::timeout(self.timeout, self.run(sql, params)).await.unwrap_or_else(|_| {
            Err(LookupError::unavailable(
                FaultKind::Timeout,
                format!("no result within {}", humantime::format_duration(self.timeout)),
            ))
        });
        match &result {
            Ok(_) | Err(LookupError::BadParameter(_)) => permit.success(Instant::now()),
            Err(LookupError::Unavailable { kind: FaultKind::PoolExhausted, .. }) => {
                self.exhausted.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            }
            Err(_) => permit.failure(Instant::now()),
        }
        result
    }

    async fn run(&self, sql: &ReadOnlySql, params: &[Param]) -> Result<Rows, LookupError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client.prepare_cached(sql.text()).await.map_err(db_error)?;
        for column in statement.columns() {
            if !readable(column.type_()) {
                return Err(LookupError::unavailable(
                    FaultKind::BadAnswer,
                    format!(
                        "column `{}` has type {}, which lookups do not read; cast it in the query (`{}::text`)",
                        column.name(),
                        column.type_(),
                        column.name()
                    ),
                ));
            }
        }
        let names: Vec<String> = statement.columns().iter().map(|c| c.name().to_owned()).collect();
        let stream = client
            .query_raw(&statement, params.iter().map(|p| TextParam(p.as_deref())))
            .await
            .map_err(db_error)?;
        pin_mut!(stream);
        let mut rows = Rows::default();
        let mut bytes = 0;
        while let Some(row) = stream.next().await {
            let row = row.map_err(db_error)?;
            if rows.rows.len() == self.limits.max_rows {
                rows.truncated = true;
                break;
            }
            let mut out = Row::new();
            for (i, name) in names.iter().enumerate() {
                let Cell(value) = row.try_get::<_, Cell>(i).map_err(|e| {
                    LookupError::unavailable(FaultKind::BadAnswer, format!("reading column `{name}`: {e}"))
                })?;
                bytes += 24 + name.len() + value_bytes(&value);
                out.insert(name.clone(), value);
            }
            if bytes > self.limits.max_bytes {
                rows.truncated = true;
                break;
            }
            rows.rows.push(out);
        }
        // Dropping the stream here discards the rows not read: the
        // connection goes back to the pool in a clean state.
        Ok(rows)
    }
}

fn pool_error(e: PoolError) -> LookupError {
    match e {
        PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
            LookupError::unavailable(FaultKind::PoolExhausted, "every pooled connection stayed busy")
        }
        PoolError::Timeout(_) => {
            LookupError::unavailable(FaultKind::Timeout, "connecting to PostgreSQL timed out")
        }
        PoolError::Backend(e) => db_error(e),
        other => LookupError::unavailable(FaultKind::Unreachable, format!("the PostgreSQL pool: {other}")),
    }
}

/// Maps a database error: a value the parameter's type refuses (SQLSTATE
/// class 22) is the request's; the rest are the source's faults. The
/// message is the server's own (it names the problem, never a parameter's
/// value), or the connection error.
fn db_error(e: tokio_postgres::Error) -> LookupError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("22") => LookupError::BadParameter(
            format!("PostgreSQL refused a parameter (SQLSTATE {})", db.code().code()).into(),
        ),
        Some(db) if db.code() == &tokio_postgres::error::SqlState::QUERY_CANCELED => {
            LookupError::unavailable(FaultKind::Timeout, "the statement timeout cancelled the query")
        }
        Some(db) => LookupError::unavailable(
            FaultKind::QueryFailed,
            format!("PostgreSQL: {} (SQLSTATE {})", db.message(), db.code().code()),
        ),
        None if e.is_closed() => LookupError::unavailable(FaultKind::Unreachable, "the connection closed"),
        None => {
            let cause = e.source().map(|s| format!(": {s}")).unwrap_or_default();
            LookupError::unavailable(FaultKind::Unreachable, format!("PostgreSQL: {e}{cause}"))
        }
    }
}

/// A parameter in PostgreSQL's text format: the server parses it as the
/// parameter's type.
#[derive(Debug)]
struct TextParam<'a>(Option<&'a str>);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(tokio_postgres::types::IsNull::No)
            }
            None => Ok(tokio_postgres::types::IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Whether [`Cell`] reads columns of type `ty`.
fn readable(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Enum(_) => true,
        Kind::Domain(inner) => readable(inner),
        _ => {
            [
                Type::BOOL,
                Type::INT2,
                Type::INT4,
                Type::INT8,
                Type::OID,
                Type::FLOAT4,
                Type::FLOAT8,
                Type::TEXT,
                Type::VARCHAR,
                Type::BPCHAR,
                Type::NAME,
                Type::UNKNOWN,
                Type::JSON,
                Type::JSONB,
                Type::UUID,
            ]
            .contains(ty)
                || ty.name() == "citext"
        }
    }
}

/// A column value as JSON.
struct Cell(serde_json::Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use serde_json::Value;
        if let Kind::Domain(inner) = ty.kind() {
            return Cell::from_sql(inner, raw);
        }
        let text = |raw: &'a [u8]| -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
            Ok(Value::String(std::str::from_utf8(raw)?.to_owned()))
        };
        let value = match *ty {
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::INT2 => i16::from_sql(ty, raw)?.into(),
            Type::INT4 => i32::from_sql(ty, raw)?.into(),
            Type::INT8 => i64::from_sql(ty, raw)?.into(),
            Type::OID => u32::from_sql(ty, raw)?.into(),
            Type::FLOAT4 => serde_json::Number::from_f64(f64::from(f32::from_sql(ty, raw)?))
                .map_or(Value::Null, Value::Number),
            Type::FLOAT8 => {
                serde_json::Number::from_f64(f64::from_sql(ty, raw)?).map_or(Value::Null, Value::Number)
            }
            Type::JSON | Type::JSONB => serde_json::Value::from_sql(ty, raw)?,
            Type::UUID => {
                let b: [u8; 16] = raw.try_into()?;
                let h = hex::encode(b);
                Value::String(format!(
                    "{}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                ))
            }
            _ if readable(ty) => text(raw)?,
            _ => return Err(format!("type {ty} is not read").into()),
        };
        Ok(Cell(value))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(serde_json::Value::Null))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
