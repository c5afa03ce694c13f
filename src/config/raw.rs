//! Serde copy of `channelgate.yaml`: `deny_unknown_fields` everywhere,
//! defaults, no logic. `validate` turns it into a [`Config`](super::Config).

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    #[serde(default)]
    pub(crate) mode: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) tls: Option<Spanned<Tls>>,
    pub(crate) pusher: Spanned<Pusher>,
    pub(crate) session: Spanned<Session>,
    #[serde(default)]
    pub(crate) sources: Option<IndexMap<String, Spanned<Source>>>,
    #[serde(default)]
    pub(crate) cors: Option<Cors>,
    pub(crate) policies: Spanned<String>,
    #[serde(default)]
    pub(crate) presence: Option<Presence>,
    #[serde(default)]
    pub(crate) http: Option<Http>,
    #[serde(default)]
    pub(crate) rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub(crate) target: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) admin: Option<Spanned<Admin>>,
    #[serde(default)]
    pub(crate) audit: Option<Audit>,
    #[serde(default)]
    pub(crate) reload: Option<Reload>,
    #[serde(default)]
    pub(crate) revocation: Option<Revocation>,
    #[serde(default)]
    pub(crate) publish: Option<Spanned<Publish>>,
    #[serde(default)]
    pub(crate) webhooks: Option<Spanned<Webhooks>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Admin {
    #[serde(default)]
    pub(crate) listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) token: Option<Spanned<SecretSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Revocation {
    #[serde(default)]
    pub(crate) store: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) redis_url: Option<Spanned<SecretSource>>,
    #[serde(default)]
    pub(crate) key_prefix: Option<String>,
    #[serde(default)]
    pub(crate) default_ttl: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) on_store_error: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) session_claim: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Publish {
    #[serde(default)]
    pub(crate) clients: Vec<PublishClient>,
    #[serde(default)]
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) retries: Option<u32>,
    #[serde(default)]
    pub(crate) max_payload_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishClient {
    pub(crate) key: Spanned<String>,
    pub(crate) secret: Spanned<SecretSource>,
    #[serde(default)]
    pub(crate) app_id: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) encryption_master_key: Option<Spanned<SecretSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Webhooks {
    #[serde(default)]
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) forward_to: Spanned<String>,
    #[serde(default)]
    pub(crate) max_age: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) sign_with: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Audit {
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    #[serde(default)]
    pub(crate) to: Option<Spanned<AuditTo>>,
}

/// `stdout`, `stderr` or `{ file: PATH }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub(crate) enum AuditTo {
    Stdout,
    Stderr,
    File(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reload {
    #[serde(default)]
    pub(crate) watch: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimit {
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    #[serde(default)]
    pub(crate) per_ip: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) per_ip_burst: Option<u32>,
    #[serde(default)]
    pub(crate) per_user: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) per_user_burst: Option<u32>,
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tls {
    pub(crate) cert: Spanned<String>,
    pub(crate) key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pusher {
    pub(crate) app_id: Spanned<String>,
    pub(crate) key: Spanned<String>,
    pub(crate) secret: Spanned<SecretSource>,
    #[serde(default)]
    pub(crate) encryption_master_key: Option<Spanned<SecretSource>>,
    #[serde(default)]
    pub(crate) api_url: Option<Spanned<String>>,
}

/// Where a secret comes from.
#[derive(Debug)]
pub(crate) enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline removed).
    File(String),
    /// Inline; accepted only with `mode: development`.
    Value(String),
}

/// Hand-written so that a secret written as a bare string is refused
/// without being echoed: serde's own messages quote the offending value.
impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const HOW: &str =
            "a secret is `{ env: NAME }` or `{ file: PATH }` (or `{ value: ... }` in development mode)";
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SecretSource;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(HOW)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<SecretSource, A::Error> {
                use serde::de::Error;
                let Some(key) = a.next_key::<String>()? else {
                    return Err(A::Error::custom(HOW));
                };
                let value: String =
                    a.next_value().map_err(|_| A::Error::custom(format!("`{key}:` takes a string")))?;
                if a.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom(format!("give one source only; {HOW}")));
                }
                match key.as_str() {
                    "env" => Ok(SecretSource::Env(value)),
                    "file" => Ok(SecretSource::File(value)),
                    "value" => Ok(SecretSource::Value(value)),
                    other => Err(A::Error::custom(format!("unknown secret source `{other}`; {HOW}"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretSource, E> {
                Err(E::custom(format!("a bare string is not read as a secret; {HOW}")))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretSource, E> {
                Err(E::custom(HOW))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretSource, E> {
                Err(E::custom(HOW))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretSource, E> {
                Err(E::custom(HOW))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretSource, E> {
                Err(E::custom(HOW))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Session {
    #[serde(default)]
    pub(crate) token_from: Option<Vec<Spanned<TokenFrom>>>,
    /// Required unless `introspect` is set.
    #[serde(default)]
    pub(crate) jwt: Option<Spanned<OneOrMany<Issuer>>>,
    #[serde(default)]
    pub(crate) token_cache: Option<TokenCache>,
    #[serde(default)]
    pub(crate) introspect: Option<Spanned<Introspect>>,
}

/// `session.introspect`: the app's session endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Introspect {
    pub(crate) url: Spanned<String>,
    pub(crate) forward: Vec<Spanned<TokenFrom>>,
    #[serde(default)]
    pub(crate) ttl: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) stale_if_error: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) capacity: Option<u64>,
}

/// One data source of `sources:`: `postgres` or `redis`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Source {
    #[serde(default)]
    pub(crate) postgres: Option<Spanned<Postgres>>,
    #[serde(default)]
    pub(crate) redis: Option<Spanned<RedisSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Postgres {
    pub(crate) url: Spanned<SecretSource>,
    #[serde(default)]
    pub(crate) pool: Option<Spanned<usize>>,
    #[serde(default)]
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) max_rows: Option<Spanned<usize>>,
    #[serde(default)]
    pub(crate) max_bytes: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisSource {
    pub(crate) url: Spanned<SecretSource>,
    #[serde(default)]
    pub(crate) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) max_bytes: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenCache {
    #[serde(default)]
    pub(crate) capacity: Option<u64>,
    #[serde(default)]
    pub(crate) max_bytes: Option<u64>,
    #[serde(default)]
    pub(crate) max_ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub(crate) enum TokenFrom {
    Header(String),
    Cookie(String),
    Form(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Issuer {
    pub(crate) algorithms: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) secret: Option<Spanned<SecretSource>>,
    #[serde(default)]
    pub(crate) public_key: Option<Spanned<SecretSource>>,
    #[serde(default)]
    pub(crate) jwks_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) jwks_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) discovery: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) issuer: Option<String>,
    #[serde(default)]
    pub(crate) audience: Option<OneOrMany<String>>,
    #[serde(default)]
    pub(crate) leeway: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) required_claims: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) refresh_min: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) refresh_max: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) refetch_interval: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) fetch_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cors {
    #[serde(default)]
    pub(crate) allowed_origins: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) allowed_headers: Vec<String>,
    #[serde(default)]
    pub(crate) max_age: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Presence {
    #[serde(default)]
    pub(crate) max_member_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Http {
    #[serde(default)]
    pub(crate) auth_path: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) user_auth_path: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) max_body_bytes: Option<usize>,
    #[serde(default)]
    pub(crate) header_read_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) keep_alive_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) request_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) tls_handshake_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) max_connections: Option<usize>,
    #[serde(default)]
    pub(crate) max_connections_per_ip: Option<usize>,
    #[serde(default)]
    pub(crate) max_batch_channels: Option<usize>,
    #[serde(default)]
    pub(crate) max_header_bytes: Option<usize>,
    #[serde(default)]
    pub(crate) shutdown_grace: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) shutdown_delay: Option<Spanned<String>>,
}

/// One item or a list of them. Deserialized without buffering, so positions
/// survive (serde's `untagged` would lose them).
#[derive(Debug)]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer, StrDeserializer};
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("one item or a list")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(a)).map(OneOrMany::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(a)).map(OneOrMany::Many)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(StrDeserializer::<E>::new(v)).map(OneOrMany::One)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}
