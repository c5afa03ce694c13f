//! The proof that a policy's SQL only reads: it must parse (PostgreSQL
//! dialect, with the `sqlparser` crate) as exactly one query — `SELECT`,
//! possibly combined with `UNION`/`INTERSECT`/`EXCEPT`, `VALUES` or `TABLE`
//! — with no data-modifying statement inside (a `WITH d AS (DELETE …)`), no
//! `SELECT INTO`, no row locks (`FOR UPDATE`/`FOR SHARE`), no function but
//! those on [`READ_ONLY_FUNCTIONS`] (a function can write: `nextval`,
//! `set_config`, `pg_terminate_backend`, `dblink_exec`, …), and its values
//! only as the parameters `$1`…`$n`, numbered without gaps.
//!
//! A request's values (captures, claims) are bound to those parameters and
//! never become text of the query. The proof is one layer of three: each
//! connection also runs with `default_transaction_read_only = on`, and the
//! documented setup gives channelgate a role that may only `SELECT` the
//! tables the policies read.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor, Value, ValueWithSpan,
    Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Functions a proven query may call: built-in, without side effects.
/// Anything else belongs in a view owned by the read-only role.
pub const READ_ONLY_FUNCTIONS: &[&str] = &[
    // aggregates
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bool_and",
    "bool_or",
    "every",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    // conditionals
    "coalesce",
    "nullif",
    "greatest",
    "least",
    // text
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "btrim",
    "ltrim",
    "rtrim",
    "trim",
    "substr",
    "substring",
    "left",
    "right",
    "concat",
    "concat_ws",
    "replace",
    "split_part",
    "strpos",
    "position",
    "starts_with",
    "lpad",
    "rpad",
    "reverse",
    "initcap",
    "format",
    "md5",
    "regexp_replace",
    "regexp_match",
    "regexp_like",
    "string_to_array",
    "array_to_string",
    // arrays
    "array_length",
    "cardinality",
    "array_position",
    "array_positions",
    "array_remove",
    "array_append",
    "array_prepend",
    "array_cat",
    "unnest",
    "generate_series",
    // JSON
    "to_json",
    "to_jsonb",
    "row_to_json",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "json_extract_path",
    "json_extract_path_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "json_array_length",
    "jsonb_array_length",
    "json_typeof",
    "jsonb_typeof",
    // numbers
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "mod",
    "div",
    "power",
    "sign",
    // time
    "now",
    "current_timestamp",
    "current_date",
    "localtimestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "date_trunc",
    "date_part",
    "age",
    "to_timestamp",
    "to_char",
    "to_date",
    "make_interval",
    "timezone",
];

/// A query proven read-only, and how many parameters it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlySql {
    text: Box<str>,
    params: usize,
}

impl ReadOnlySql {
    /// The query as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The number of parameters (`$1`…`$n`).
    pub fn params(&self) -> usize {
        self.params
    }

    /// A query taken as it is, unproven: tests of the layers behind the
    /// proof (the read-only transaction, the statement timeout) only.
    #[cfg(test)]
    pub(crate) fn unproven(text: &str, params: usize) -> Self {
        Self { text: text.into(), params }
    }
}

/// Why a query is refused; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotReadOnly(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, NotReadOnly> {
    Err(NotReadOnly(message.into()))
}

/// Proves `sql` is one read-only query; see the module docs.
pub fn prove(sql: &str) -> Result<ReadOnlySql, NotReadOnly> {
    let statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(s) => s,
        Err(e) if sql.contains('{') => {
            return refuse(format!(
                "not valid SQL ({e}); captures and claims are passed as $1, $2, … listed in `params`, never written into the SQL"
            ));
        }
        Err(e) => return refuse(format!("not valid SQL: {e}")),
    };
    let statement = match statements.as_slice() {
        [one] => one,
        [] => return refuse("no SQL statement"),
        _ => return refuse(format!("{} statements; a lookup is one SELECT", statements.len())),
    };
    if !matches!(statement, Statement::Query(_)) {
        return refuse(format!(
            "`{}` is not a SELECT; a lookup may only read",
            first_words(&statement.to_string())
        ));
    }
    let mut check = Check::default();
    if let ControlFlow::Break(e) = statement.visit(&mut check) {
        return Err(e);
    }
    let params = check.placeholders.last().copied().unwrap_or(0);
    if let Some(missing) = (1..=params).find(|n| !check.placeholders.contains(n)) {
        return refuse(format!("${missing} is never used: number the parameters $1…${params} without gaps"));
    }
    Ok(ReadOnlySql { text: sql.trim().into(), params })
}

fn first_words(text: &str) -> String {
    text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

#[derive(Default)]
struct Check {
    statements: usize,
    placeholders: BTreeSet<usize>,
}

/// The last part of `name`, lowercased, when it is a plain built-in name
/// (unqualified or in `pg_catalog`).
fn builtin(name: &ObjectName) -> Option<String> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) if i.quote_style.is_none() => Some(i.value.as_str()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [f] => Some(f.to_ascii_lowercase()),
        [schema, f] if schema.eq_ignore_ascii_case("pg_catalog") => Some(f.to_ascii_lowercase()),
        _ => None,
    }
}

fn check_function(name: &ObjectName) -> ControlFlow<NotReadOnly> {
    match builtin(name) {
        Some(f) if READ_ONLY_FUNCTIONS.contains(&f.as_str()) => ControlFlow::Continue(()),
        _ => ControlFlow::Break(NotReadOnly(format!(
            "function `{name}` is not on channelgate's list of read-only functions (a function may write); \
             put it in a view owned by the read-only role and SELECT from the view"
        ))),
    }
}

impl Visitor for Check {
    type Break = NotReadOnly;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<NotReadOnly> {
        self.statements += 1;
        if self.statements > 1 {
            return ControlFlow::Break(NotReadOnly(format!(
                "`{}` inside the query; a lookup may only read",
                first_words(&statement.to_string())
            )));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<NotReadOnly> {
        if !query.locks.is_empty() {
            return ControlFlow::Break(NotReadOnly(
                "FOR UPDATE/FOR SHARE locks rows; a lookup may only read".to_owned(),
            ));
        }
        if let Some(SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)) =
            Some(query.body.as_ref())
        {
            return ControlFlow::Break(NotReadOnly(
                "a data-modifying statement; a lookup may only read".to_owned(),
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<NotReadOnly> {
        if select.into.is_some() {
            return ControlFlow::Break(NotReadOnly(
                "SELECT INTO creates a table; a lookup may only read".to_owned(),
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<NotReadOnly> {
        match factor {
            TableFactor::Table { name, args: Some(_), .. } | TableFactor::Function { name, .. } => {
                check_function(name)
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<NotReadOnly> {
        match expr {
            Expr::Function(f) => check_function(&f.name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<NotReadOnly> {
        let Value::Placeholder(p) = &value.value else { return ControlFlow::Continue(()) };
        match p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| (1..=64).contains(n)) {
            Some(n) => {
                self.placeholders.insert(n);
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(NotReadOnly(format!(
                "parameter `{p}`: write parameters as $1, $2, … (at most $64), in the order of `params`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[track_caller]
    fn refused(sql: &str, expect: &str) {
        match prove(sql) {
            Ok(q) => panic!("{sql:?} was proven read-only: {q:?}"),
            Err(e) => assert!(e.0.contains(expect), "{sql:?}: {e} (expected to mention {expect:?})"),
        }
    }

    #[test]
    fn selects_are_proven_with_their_parameter_count() {
        for (sql, params) in [
            ("SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2", 2),
            ("select 1", 0),
            (
                "SELECT r.role FROM rooms r JOIN room_members m ON m.room_id = r.id WHERE m.user_id = $1 LIMIT 1",
                1,
            ),
            (
                "SELECT count(*) AS n, max(joined_at) FROM room_members WHERE room_id = $1::int GROUP BY room_id",
                1,
            ),
            (
                "SELECT 1 FROM docs WHERE id = $1 AND $2 = ANY(viewers) UNION SELECT 1 FROM admins WHERE id = $2",
                2,
            ),
            (
                "WITH m AS (SELECT * FROM room_members WHERE user_id = $1) SELECT role FROM m WHERE room_id = $2",
                2,
            ),
            ("SELECT EXISTS (SELECT 1 FROM bans WHERE user_id = $1) AS banned", 1),
            ("SELECT lower(name), coalesce(role, 'guest') FROM pg_catalog.pg_roles WHERE rolname = $1", 1),
            ("SELECT x FROM generate_series(1, 3) AS x WHERE x = $1", 1),
            ("  SELECT $1::text AS echo ; ", 1),
        ] {
            let q = prove(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
            assert_eq!(q.params(), params, "{sql}");
        }
    }

    #[test]
    fn anything_that_may_write_or_lock_is_refused() {
        refused("DELETE FROM room_members WHERE user_id = $1", "not a SELECT");
        refused("UPDATE users SET admin = true", "not a SELECT");
        refused("INSERT INTO t VALUES (1)", "not a SELECT");
        refused("SELECT 1; DELETE FROM t", "2 statements");
        refused("SELECT 1; SELECT 2", "2 statements");
        refused("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "data-modifying");
        refused("WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT a FROM u", "data-modifying");
        refused("WITH i AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT 1", "data-modifying");
        refused("SELECT * INTO copy FROM room_members", "SELECT INTO");
        refused("SELECT role FROM room_members WHERE user_id = $1 FOR UPDATE", "FOR UPDATE");
        refused("SELECT 1 FROM t FOR SHARE", "FOR UPDATE");
        refused("SELECT nextval('s')", "`nextval`");
        refused("SELECT set_config('role', 'admin', false)", "`set_config`");
        refused("SELECT pg_terminate_backend(1)", "`pg_terminate_backend`");
        refused("SELECT * FROM dblink_exec('x')", "`dblink_exec`");
        refused("SELECT a FROM t WHERE b IN (SELECT my_func(c) FROM u)", "`my_func`");
        refused("SELECT public.lower('x')", "`public.lower`");
        refused("SELECT \"lower\"('x')", "\"lower\"");
        refused("EXPLAIN ANALYZE DELETE FROM t", "not a SELECT");
        refused("SET ROLE admin", "not a SELECT");
        refused("COPY t TO '/tmp/x'", "not a SELECT");
        refused("CALL p()", "not a SELECT");
        refused("", "no SQL statement");
    }

    #[test]
    fn values_come_only_as_numbered_parameters() {
        refused("SELECT role FROM m WHERE room_id = {room}", "never written into the SQL");
        refused("SELECT role FROM m WHERE room_id = ?", "not valid SQL");
        refused("SELECT role FROM m WHERE room_id = :room", "`:room`");
        refused("SELECT role FROM m WHERE room_id = $1 AND user_id = $3", "$2 is never used");
        refused("SELECT $0", "`$0`");
        refused("SELECT $65", "at most $64");
        refused("SELECT role FROM m WHERE room_id = '", "not valid SQL");
        // A capture's text inside a literal stays a literal: it is never substituted.
        assert_eq!(prove("SELECT '{room}'").unwrap().params(), 0);
    }
}
