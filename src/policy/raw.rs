//! Serde copy of a policy file. No logic: `compile` turns it into a
//! [`Policy`](super::Policy).

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// One policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFile {
    #[serde(default)]
    pub(crate) rules: Vec<Spanned<Rule>>,
    #[serde(default)]
    pub(crate) user: Option<Spanned<User>>,
}

/// A channel rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) channel: String,
    /// Required, except with a `hook:` (then `hook.allow` by default).
    #[serde(default)]
    pub(crate) allow: Option<Spanned<Expr>>,
    #[serde(default)]
    pub(crate) presence: Option<Presence>,
    #[serde(default)]
    pub(crate) shadow: bool,
    #[serde(default)]
    pub(crate) query: Option<Spanned<Query>>,
    #[serde(default)]
    pub(crate) hook: Option<Spanned<Hook>>,
}

/// A rule's `query:` on a data source: `sql` (PostgreSQL) or one of
/// `sismember`, `get`, `hget` (Redis).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Query {
    pub(crate) source: String,
    #[serde(default)]
    pub(crate) sql: Option<String>,
    #[serde(default)]
    pub(crate) params: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) sismember: Option<SisMember>,
    #[serde(default)]
    pub(crate) get: Option<String>,
    #[serde(default)]
    pub(crate) hget: Option<HGet>,
    #[serde(default)]
    pub(crate) ttl: Option<String>,
    #[serde(default)]
    pub(crate) stale_if_error: Option<String>,
}

/// `sismember: { key, member }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SisMember {
    pub(crate) key: String,
    pub(crate) member: String,
}

/// `hget: { key, field }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HGet {
    pub(crate) key: String,
    pub(crate) field: String,
}

/// A rule's `hook:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Hook {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) ttl: Option<String>,
    #[serde(default)]
    pub(crate) timeout: Option<String>,
    #[serde(default)]
    pub(crate) stale_if_error: Option<String>,
    #[serde(default)]
    pub(crate) headers: IndexMap<String, EnvRef>,
}

/// A value read from the environment when the gateway is built.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvRef {
    pub(crate) env: String,
}

/// The `presence:` block of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Presence {
    #[serde(default)]
    pub(crate) user_id: Option<Spanned<Expr>>,
    #[serde(default)]
    pub(crate) user_info: Option<IndexMap<String, Spanned<Expr>>>,
}

/// The `user:` block (sign-in).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct User {
    #[serde(default)]
    pub(crate) id: Option<Spanned<Expr>>,
    #[serde(default)]
    pub(crate) allow: Option<Spanned<Expr>>,
    #[serde(default)]
    pub(crate) user_info: Option<IndexMap<String, Spanned<Expr>>>,
    #[serde(default)]
    pub(crate) watchlist: Option<Spanned<Expr>>,
}

/// A CEL expression as written. YAML may read `true` or `1` as a bool or a
/// number; both are taken as expression text.
#[derive(Debug, Clone)]
pub(crate) struct Expr(pub(crate) String);

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Expr;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a CEL expression")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Expr, E> {
                Ok(Expr(v.to_owned()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Expr, E> {
                Ok(Expr(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Expr, E> {
                Ok(Expr(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Expr, E> {
                Ok(Expr(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
