//! What a rule asks beyond the token (pure descriptions; `membership` does
//! the I/O): a `query:` on a data source — a proven read-only SQL query, or
//! a Redis `SISMEMBER`/`GET`/`HGET` with key templates — whose values are
//! *references* (a capture, `channel`, `socket_id`, `token.NAME`) bound per
//! request, never text of the query; or a `hook:`, the app's own decision.
//!
//! What they found reaches the rule's expressions as the variables `query`
//! (`found`, `row`, `rows`, `truncated`) and `hook` (`allow`, `reason`,
//! `user_info`) through [`Facts`]. A fact the caller could not get denies:
//! 503 `lookup_unavailable`/`hook_unavailable` when the source failed,
//! `rule_error` when the request's own values were refused; nothing is
//! signed either way.

use std::sync::Arc;
use std::time::Duration;

use cel::common::value::Val;

use super::readonly::ReadOnlySql;
use super::value::TokenValue;

/// A value bound to a parameter: its text, or `None` for `NULL`.
pub type Param = Option<Box<str>>;

/// The values of one request, in parameter order (also a cache key).
pub type Params = Box<[Param]>;

/// Where a parameter's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamRef {
    /// A capture of the rule's pattern.
    Capture(String),
    /// The channel name.
    Channel,
    /// The socket id.
    SocketId,
    /// A top-level claim, `token.NAME`.
    Token(String),
}

impl ParamRef {
    /// Parses a reference; `captures` are the pattern's capture names.
    pub fn parse(text: &str, captures: &[String]) -> Result<Self, String> {
        let text = text.trim();
        if let Some(claim) = text.strip_prefix("token.") {
            if claim.is_empty() || claim.contains('.') || claim.contains(char::is_whitespace) {
                return Err(format!(
                    "`{text}`: a claim parameter is `token.NAME` (a top-level claim; nested paths are not bound)"
                ));
            }
            return Ok(ParamRef::Token(claim.to_owned()));
        }
        match text {
            "channel" => Ok(ParamRef::Channel),
            "socket_id" => Ok(ParamRef::SocketId),
            name if captures.iter().any(|c| c == name) => Ok(ParamRef::Capture(name.to_owned())),
            other => Err(format!(
                "`{other}` is not a parameter: use a capture ({}), `channel`, `socket_id` or `token.NAME` \
                 (parameters are values, never expressions)",
                if captures.is_empty() { "none in this pattern".to_owned() } else { captures.join(", ") }
            )),
        }
    }

    /// The written form.
    pub fn as_text(&self) -> String {
        match self {
            ParamRef::Capture(c) => c.clone(),
            ParamRef::Channel => "channel".into(),
            ParamRef::SocketId => "socket_id".into(),
            ParamRef::Token(t) => format!("token.{t}"),
        }
    }
}

/// A piece of a Redis template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(Box<str>),
    /// The value of parameter N.
    Param(usize),
}

/// Text with `{reference}` placeholders; `{{` and `}}` are literal braces
/// (Redis Cluster hash tags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; `param` maps a placeholder (`room`, `token.sub`) to
    /// its parameter index, or says why it is not one.
    pub fn parse(text: &str, mut param: impl FnMut(&str) -> Result<usize, String>) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
                literal.push_str(&tail[..1]);
                rest = after;
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!("`{text}`: a `}}` without its `{{` (write `}}}}` for a literal brace)"));
            }
            let Some(end) = tail.find('}') else {
                return Err(format!("`{text}`: a `{{` without its `}}` (write `{{{{` for a literal brace)"));
            };
            let name = tail[1..end].trim();
            if name.is_empty() {
                return Err(format!("`{text}`: an empty placeholder `{{}}`"));
            }
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal).into_boxed_str()));
            }
            pieces.push(Piece::Param(param(name)?));
            rest = &tail[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal.into_boxed_str()));
        }
        if pieces.is_empty() {
            return Err("an empty template".into());
        }
        Ok(Self { pieces })
    }
}

/// What a query runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryCommand {
    /// A proven read-only SQL query (PostgreSQL source).
    Sql(ReadOnlySql),
    /// `SISMEMBER key member` (Redis source).
    SisMember {
        /// The set's key.
        key: Template,
        /// The member.
        member: Template,
    },
    /// `GET key` (Redis source).
    Get {
        /// The key.
        key: Template,
    },
    /// `HGET key field` (Redis source).
    HGet {
        /// The hash's key.
        key: Template,
        /// The field.
        field: Template,
    },
}

impl QueryCommand {
    /// Whether it runs on a PostgreSQL source (else on Redis).
    pub fn is_sql(&self) -> bool {
        matches!(self, QueryCommand::Sql(_))
    }
}

/// A rule's `query:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySpec {
    /// The data source's name (`sources:` in the config).
    pub source: String,
    /// What it runs.
    pub command: QueryCommand,
    /// Where each parameter's value comes from.
    pub params: Vec<ParamRef>,
    /// How long a result is reused.
    pub ttl: Duration,
    /// How long past its TTL a result may serve when the source fails.
    pub stale_if_error: Duration,
}

/// A rule's `hook:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    /// Where the question is POSTed.
    pub url: String,
    /// How long an answer is reused.
    pub ttl: Duration,
    /// The bound on one call.
    pub timeout: Duration,
    /// How long past its TTL an answer may serve when the app fails.
    pub stale_if_error: Duration,
    /// Headers sent with each call: name and the environment variable that
    /// holds the value (read when the gateway is built).
    pub headers: Vec<(String, String)>,
}

/// What a lookup or hook gave a rule, as its CEL variable.
#[derive(Debug)]
pub struct FactValue {
    value: TokenValue,
}

impl FactValue {
    /// The query result `{found, row, rows, truncated}`.
    pub fn query(rows: &[serde_json::Map<String, serde_json::Value>], truncated: bool) -> Self {
        let row = rows.first().cloned().unwrap_or_default();
        let mut map = serde_json::Map::with_capacity(4);
        map.insert("found".into(), serde_json::Value::Bool(!rows.is_empty()));
        map.insert("row".into(), serde_json::Value::Object(row));
        map.insert(
            "rows".into(),
            serde_json::Value::Array(rows.iter().cloned().map(serde_json::Value::Object).collect()),
        );
        map.insert("truncated".into(), serde_json::Value::Bool(truncated));
        Self { value: TokenValue::from_claims(&map) }
    }

    /// The hook's answer `{allow, reason, user_info}` (`reason` null and
    /// `user_info` an empty map when absent).
    pub fn hook(
        allow: bool,
        reason: Option<&str>,
        user_info: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Self {
        let mut map = serde_json::Map::with_capacity(3);
        map.insert("allow".into(), serde_json::Value::Bool(allow));
        map.insert(
            "reason".into(),
            reason.map_or(serde_json::Value::Null, |r| serde_json::Value::String(r.into())),
        );
        map.insert("user_info".into(), serde_json::Value::Object(user_info.cloned().unwrap_or_default()));
        Self { value: TokenValue::from_claims(&map) }
    }

    pub(crate) fn value(&self) -> &TokenValue {
        &self.value
    }
}

/// One fact, or why it is missing.
#[derive(Debug, Clone)]
pub enum Fact {
    /// What the lookup or hook gave.
    Found(Arc<FactValue>),
    /// The source or the app failed (503, fail closed); the text is for
    /// operators.
    Unavailable(String),
    /// The request's own values were refused (a parameter, a key part).
    Refused(String),
}

/// The facts of one request, per rule (by its index in the policy).
#[derive(Debug, Default)]
pub struct Facts {
    queries: Vec<(usize, Fact)>,
    hooks: Vec<(usize, Fact)>,
}

impl Facts {
    /// No facts (rules without lookups need none).
    pub fn none() -> Self {
        Self::default()
    }

    /// Records rule `rule`'s query result.
    pub fn set_query(&mut self, rule: usize, fact: Fact) {
        self.queries.push((rule, fact));
    }

    /// Records rule `rule`'s hook answer.
    pub fn set_hook(&mut self, rule: usize, fact: Fact) {
        self.hooks.push((rule, fact));
    }

    pub(crate) fn query(&self, rule: usize) -> Option<&Fact> {
        self.queries.iter().find(|(r, _)| *r == rule).map(|(_, f)| f)
    }

    pub(crate) fn hook(&self, rule: usize) -> Option<&Fact> {
        self.hooks.iter().find(|(r, _)| *r == rule).map(|(_, f)| f)
    }
}

/// The parameter text of a claim or capture value: strings as they are,
/// integers in decimal, booleans and doubles as JSON writes them; `None`
/// for an absent claim, `null` or a value with no scalar form.
pub(crate) fn param_of(val: Option<&dyn Val>) -> Param {
    let val = val?;
    if let Ok(s) = <&str>::try_from(val) {
        return Some(s.into());
    }
    if let Ok(i) = <&i64>::try_from(val) {
        return Some(i.to_string().into_boxed_str());
    }
    if let Ok(u) = <&u64>::try_from(val) {
        return Some(u.to_string().into_boxed_str());
    }
    if let Ok(b) = <&bool>::try_from(val) {
        return Some(b.to_string().into_boxed_str());
    }
    if let Ok(f) = <&f64>::try_from(val) {
        return serde_json::Number::from_f64(*f).map(|n| n.to_string().into_boxed_str());
    }
    None
}

#[cfg(test)]
mod tests;
