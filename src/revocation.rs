//! Revocations: users (`sub`), tokens (`jti`) or sessions (`sid`) refused
//! until an expiry, whatever their token says.
//!
//! Every replica decides from a local in-memory set, so the check on the
//! request path costs a hash lookup. With Redis, the set is a mirror: a
//! revocation is written to Redis (a key with a TTL) and published on a
//! channel that every replica subscribes to, so all replicas refuse at once;
//! each replica also reloads the full set when it (re)subscribes and every
//! 30 s, so a missed message cannot last.
//!
//! Invariant: when Redis cannot be reached (the subscription is down), a
//! replica's mirror may miss new revocations. `on_store_error: deny` (the
//! default) then refuses every auth request with 503 until the mirror is
//! back in sync; `allow` keeps deciding from the last known set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{OnStoreError, RevocationSettings, RevocationStore};

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A user (`sub`).
    Sub,
    /// One token (`jti`).
    Jti,
    /// A session (the configured session claim, `sid` by default).
    Sid,
}

impl Kind {
    /// Parses `sub`, `jti` or `sid`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "sub" => Some(Kind::Sub),
            "jti" => Some(Kind::Jti),
            "sid" => Some(Kind::Sid),
            _ => None,
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sub => "sub",
            Kind::Jti => "jti",
            Kind::Sid => "sid",
        }
    }
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// What it names.
    pub kind: Kind,
    /// The user id, token id or session id.
    pub value: String,
    /// When it ends (unix seconds).
    pub expires_at: u64,
}

impl Revocation {
    /// As the admin API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "value": self.value,
            "expires_at": rfc3339(self.expires_at),
        })
    }
}

/// Unix seconds as RFC 3339.
pub(crate) fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not revoked.
    Clear,
    /// Revoked.
    Revoked,
    /// The store is unreachable and `on_store_error: deny`.
    Unavailable,
}

/// Why a change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis refused or could not be reached.
    #[error("the revocation store is unavailable: {0}")]
    Unavailable(String),
}

type Key = (Kind, String);

/// The revocation set and its store.
#[derive(Debug)]
pub struct Revocations {
    local: RwLock<HashMap<Key, u64>>,
    redis: Option<Redis>,
    in_sync: AtomicBool,
    on_error: OnStoreError,
    session_claim: String,
    default_ttl: Duration,
}

#[derive(Debug)]
struct Redis {
    client: redis::Client,
    prefix: String,
    writer: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
}

impl Redis {
    fn key(&self, kind: Kind, value: &str) -> String {
        format!("{}revoked:{}:{}", self.prefix, kind.as_str(), value)
    }

    fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        self.writer
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await
            .cloned()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

impl Revocations {
    /// Builds the set; with Redis, call [`Revocations::start`] from inside the
    /// runtime to connect and subscribe.
    pub fn new(settings: &RevocationSettings) -> Arc<Self> {
        let redis = match &settings.store {
            RevocationStore::Memory => None,
            RevocationStore::Redis { url, prefix } => {
                let url = String::from_utf8_lossy(url.expose()).into_owned();
                redis::Client::open(url.as_str()).ok().map(|client| Redis {
                    client,
                    prefix: prefix.clone(),
                    writer: tokio::sync::OnceCell::new(),
                })
            }
        };
        Arc::new(Self {
            in_sync: AtomicBool::new(redis.is_none()),
            local: RwLock::new(HashMap::new()),
            redis,
            on_error: settings.on_store_error,
            session_claim: settings.session_claim.clone(),
            default_ttl: settings.default_ttl,
        })
    }

    /// Whether the local set is known to be complete (always, in memory).
    pub fn in_sync(&self) -> bool {
        self.in_sync.load(Ordering::SeqCst)
    }

    /// Whether decisions go on while the store is unreachable.
    pub fn check_mode_allows_stale(&self) -> bool {
        self.on_error == OnStoreError::Allow
    }

    /// Lifetime of a revocation without an explicit one.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// Checks a session's `sub`, `jti` and session claim; `claim` gives a
    /// string claim by name.
    pub fn check<'c>(&self, claim: impl Fn(&str) -> Option<&'c str>) -> Check {
        if !self.in_sync() && self.on_error == OnStoreError::Deny {
            return Check::Unavailable;
        }
        let Ok(local) = self.local.read() else { return Check::Unavailable };
        if local.is_empty() {
            return Check::Clear;
        }
        let now = now();
        let revoked = |kind: Kind, name: &str| {
            claim(name).and_then(|v| local.get(&(kind, v.to_owned()))).is_some_and(|exp| *exp > now)
        };
        if revoked(Kind::Sub, "sub") || revoked(Kind::Jti, "jti") || revoked(Kind::Sid, &self.session_claim) {
            Check::Revoked
        } else {
            Check::Clear
        }
    }

    /// Revokes `value` for `ttl`. With Redis, the write must succeed (then
    /// every replica learns it); without, it is local.
    pub async fn revoke(&self, kind: Kind, value: &str, ttl: Duration) -> Result<Revocation, StoreError> {
        let ttl = ttl.max(Duration::from_secs(1));
        let rev = Revocation { kind, value: value.to_owned(), expires_at: now() + ttl.as_secs() };
        if let Some(r) = &self.redis {
            let mut c = r.conn().await?;
            let msg = serde_json::json!({"op": "revoke", "kind": kind.as_str(), "value": value, "expires_at": rev.expires_at});
            redis::pipe()
                .atomic()
                .set_ex(r.key(kind, value), rev.expires_at, ttl.as_secs())
                .ignore()
                .publish(r.channel(), msg.to_string())
                .ignore()
                .query_async::<()>(&mut c)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        self.apply(kind, value, Some(rev.expires_at));
        Ok(rev)
    }

    /// Lifts a revocation; returns whether one existed.
    pub async fn lift(&self, kind: Kind, value: &str) -> Result<bool, StoreError> {
        let existed =
            self.local.read().is_ok_and(|l| l.get(&(kind, value.to_owned())).is_some_and(|e| *e > now()));
        if let Some(r) = &self.redis {
            let mut c = r.conn().await?;
            let msg = serde_json::json!({"op": "lift", "kind": kind.as_str(), "value": value});
            let (deleted,): (u64,) = redis::pipe()
                .atomic()
                .del(r.key(kind, value))
                .publish(r.channel(), msg.to_string())
                .ignore()
                .query_async(&mut c)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            self.apply(kind, value, None);
            return Ok(deleted > 0 || existed);
        }
        self.apply(kind, value, None);
        Ok(existed)
    }

    /// Current revocations, soonest expiry first.
    pub fn list(&self) -> Vec<Revocation> {
        let now = now();
        let mut out: Vec<Revocation> = self
            .local
            .read()
            .map(|l| {
                l.iter()
                    .filter(|(_, exp)| **exp > now)
                    .map(|((kind, value), exp)| Revocation {
                        kind: *kind,
                        value: value.clone(),
                        expires_at: *exp,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| (a.expires_at, a.kind, &a.value).cmp(&(b.expires_at, b.kind, &b.value)));
        out
    }

    fn apply(&self, kind: Kind, value: &str, expires_at: Option<u64>) {
        if let Ok(mut l) = self.local.write() {
            match expires_at {
                Some(exp) => {
                    l.insert((kind, value.to_owned()), exp);
                }
                None => {
                    l.remove(&(kind, value.to_owned()));
                }
            }
            let now = now();
            l.retain(|_, exp| *exp > now);
        }
    }

    /// Connects to Redis and keeps the mirror in sync until the set is
    /// dropped. A no-op for the memory store.
    pub fn start(self: &Arc<Self>) {
        if self.redis.is_none() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        handle.spawn(sync_loop(Arc::downgrade(self)));
    }

    async fn full_sync(&self) -> Result<(), StoreError> {
        let Some(r) = &self.redis else { return Ok(()) };
        let mut c = r.conn().await?;
        let pattern = format!("{}revoked:*", r.prefix);
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<'_, String> = redis::AsyncCommands::scan_match(&mut c, &pattern)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let mut keys = Vec::new();
            while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(k.map_err(|e| StoreError::Unavailable(e.to_string()))?);
            }
            keys
        };
        let values: Vec<Option<u64>> = if keys.is_empty() {
            Vec::new()
        } else {
            redis::AsyncCommands::mget(&mut c, &keys)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
        };
        let prefix = format!("{}revoked:", r.prefix);
        let mut fresh = HashMap::new();
        for (key, exp) in keys.iter().zip(values) {
            let Some(exp) = exp else { continue };
            let Some((kind, value)) = key.strip_prefix(&prefix).and_then(|rest| rest.split_once(':')) else {
                continue;
            };
            if let Some(kind) = Kind::parse(kind) {
                fresh.insert((kind, value.to_owned()), exp);
            }
        }
        if let Ok(mut l) = self.local.write() {
            *l = fresh;
        }
        Ok(())
    }
}

/// Subscribe, sync, listen; on any failure mark the mirror out of sync and
/// retry with backoff.
async fn sync_loop(weak: Weak<Revocations>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(this) = weak.upgrade() else { return };
        let result = subscribe_and_listen(&this).await;
        this.in_sync.store(false, Ordering::SeqCst);
        if let Err(e) = result {
            tracing::warn!(error = %e, "revocation store unreachable; retrying");
        }
        drop(this);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe_and_listen(this: &Revocations) -> Result<(), StoreError> {
    let Some(r) = &this.redis else { return Ok(()) };
    let unavailable = |e: redis::RedisError| StoreError::Unavailable(e.to_string());
    let mut pubsub = tokio::time::timeout(Duration::from_secs(3), r.client.get_async_pubsub())
        .await
        .map_err(|_| StoreError::Unavailable("timed out connecting".into()))?
        .map_err(unavailable)?;
    pubsub.subscribe(r.channel()).await.map_err(unavailable)?;
    // Subscribed first, then loaded: nothing published in between is lost.
    this.full_sync().await?;
    this.in_sync.store(true, Ordering::SeqCst);
    tracing::info!("revocation store in sync");
    let mut messages = pubsub.on_message();
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    resync.tick().await;
    loop {
        tokio::select! {
            msg = futures_util::StreamExt::next(&mut messages) => {
                let Some(msg) = msg else { return Err(StoreError::Unavailable("subscription closed".into())) };
                let Ok(payload) = msg.get_payload::<String>() else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else { continue };
                let (Some(kind), Some(value)) = (v["kind"].as_str().and_then(Kind::parse), v["value"].as_str()) else { continue };
                match v["op"].as_str() {
                    Some("revoke") => this.apply(kind, value, v["expires_at"].as_u64()),
                    Some("lift") => this.apply(kind, value, None),
                    _ => {}
                }
            }
            _ = resync.tick() => this.full_sync().await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::TokenValue;

    fn settings() -> RevocationSettings {
        RevocationSettings {
            store: RevocationStore::Memory,
            default_ttl: Duration::from_secs(60),
            on_store_error: OnStoreError::Deny,
            session_claim: "sid".into(),
        }
    }

    fn claims(v: serde_json::Value) -> TokenValue {
        TokenValue::from_json(&v)
    }

    fn check(r: &Revocations, token: &TokenValue) -> Check {
        r.check(|name| token.claim_str(name))
    }

    #[tokio::test]
    async fn revoke_check_lift() {
        let r = Revocations::new(&settings());
        let alice = claims(serde_json::json!({"sub": "alice", "jti": "t1", "sid": "s1"}));
        assert_eq!(check(&r, &alice), Check::Clear);
        r.revoke(Kind::Sub, "alice", Duration::from_secs(60)).await.unwrap();
        assert_eq!(check(&r, &alice), Check::Revoked);
        assert_eq!(check(&r, &claims(serde_json::json!({"sub": "bob"}))), Check::Clear);
        assert!(r.lift(Kind::Sub, "alice").await.unwrap());
        assert!(!r.lift(Kind::Sub, "alice").await.unwrap());
        assert_eq!(check(&r, &alice), Check::Clear);
        r.revoke(Kind::Jti, "t1", Duration::from_secs(60)).await.unwrap();
        assert_eq!(check(&r, &alice), Check::Revoked);
        r.lift(Kind::Jti, "t1").await.unwrap();
        r.revoke(Kind::Sid, "s1", Duration::from_secs(60)).await.unwrap();
        assert_eq!(check(&r, &alice), Check::Revoked);
        let listed = r.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].to_json()["kind"], "sid");
    }

    #[tokio::test]
    async fn a_claim_of_another_type_never_matches() {
        let r = Revocations::new(&settings());
        r.revoke(Kind::Sub, "42", Duration::from_secs(60)).await.unwrap();
        assert_eq!(check(&r, &claims(serde_json::json!({"sub": 42}))), Check::Clear);
        assert_eq!(check(&r, &claims(serde_json::json!({"sub": "42"}))), Check::Revoked);
    }
}
