//! The verified-token cache: a page that joins ten channels costs one
//! signature verification, not ten.
//!
//! Invariants:
//! - entries are keyed by SHA-256 of the token (the token itself is not
//!   kept as a key), bounded in number, and never used past the token's
//!   `exp` (nor past `max_ttl`);
//! - an entry whose `kid` has left its issuer's (remote) key set is dropped
//!   and the token verified again, so a key rotation that revokes a key also
//!   revokes the cached sessions it signed;
//! - only successes are cached; failures are cheap to recompute and must
//!   not pin an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::{AuthError, Claims, KeySet, Verifier};

/// Cache bounds.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Most cached tokens (0 disables the cache).
    pub capacity: u64,
    /// Longest time a verification is reused, whatever the token's `exp`.
    pub max_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { capacity: 10_000, max_ttl: Duration::from_secs(600) }
    }
}

/// A verified session: the claims plus whatever the caller derives from
/// them once (the policy's CEL value of the claims, for instance).
#[derive(Debug)]
pub struct Session<X> {
    /// Verified claims.
    pub claims: Claims,
    /// Derived once per verification.
    pub derived: X,
    exp: Option<u64>,
    issuer: usize,
    kid: Option<String>,
    ttl: Duration,
}

/// Verifies tokens through the cache.
pub struct Authenticator<X> {
    verifier: Verifier,
    cache: Option<moka::sync::Cache<[u8; 32], Arc<Session<X>>>>,
    derive: fn(&Claims) -> X,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct TokenExpiry;

impl<X> moka::Expiry<[u8; 32], Arc<Session<X>>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Session<X>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl<X: Send + Sync + 'static> Authenticator<X> {
    /// Wraps a verifier. `derive` runs once per verification.
    pub fn new(verifier: Verifier, settings: CacheSettings, derive: fn(&Claims) -> X) -> Self {
        let cache = (settings.capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.max_ttl)
                .expire_after(TokenExpiry)
                .build()
        });
        Self { verifier, cache, derive, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// The underlying verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Cache hits and misses so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Verifies `token`, from the cache when possible. An unknown `kid` of a
    /// remote issuer triggers one (rate-limited, shared) refetch and a retry.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Session<X>>, AuthError> {
        let now = now_unix();
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(&key)
        {
            if hit.exp.is_some_and(|exp| now <= exp) && self.kid_still_valid(&hit) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
            cache.invalidate(&key);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let verified = match self.verifier.verify_detailed(token, now) {
            Ok(v) => v,
            Err((AuthError::UnknownKid, Some(refetch))) => match &refetch.kid {
                Some(kid) if refetch.keys.refetch_for_unknown_kid(kid).await => {
                    self.verifier.verify_detailed(token, now_unix()).map_err(|(e, _)| e)?
                }
                _ => return Err(AuthError::UnknownKid),
            },
            Err((e, _)) => return Err(e),
        };
        let exp = verified.claims.exp();
        let ttl = exp.map_or(Duration::ZERO, |exp| Duration::from_secs(exp.saturating_sub(now)));
        let session = Arc::new(Session {
            derived: (self.derive)(&verified.claims),
            claims: verified.claims,
            exp,
            issuer: verified.issuer,
            kid: verified.kid,
            ttl,
        });
        if let Some(cache) = &self.cache
            && !ttl.is_zero()
        {
            cache.insert(key, session.clone());
        }
        Ok(session)
    }

    fn kid_still_valid(&self, s: &Session<X>) -> bool {
        match (self.verifier.issuers().get(s.issuer).map(|i| &i.keys), &s.kid) {
            (Some(KeySet::Remote(remote)), Some(kid)) => remote.has_kid(kid),
            (Some(_), _) => true,
            (None, _) => false,
        }
    }
}

impl<X> std::fmt::Debug for Authenticator<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("verifier", &self.verifier)
            .field("cached", &self.cache.as_ref().map(moka::sync::Cache::entry_count))
            .finish_non_exhaustive()
    }
}
