//! The verified-token cache: a page that joins ten channels costs one
//! signature verification, not ten. The [`TokenCache`] is owned by the
//! runtime and outlives reloads (with its hit counters); each configuration's
//! [`Authenticator`] verifies through it.
//!
//! Invariants:
//! - a session is served only for the exact token that was verified: an
//!   entry is found by a keyed 64-bit hash of the token (foldhash, seeded at
//!   random per cache) and then the whole token is compared with the one the
//!   entry keeps (constant time). A hash collision, found by chance or
//!   engineered, costs a verification, never another token's session; the
//!   hash needs no collision resistance, so it is not a cryptographic digest
//!   (SHA-256 of every token was 3 % of the CPU time of a request);
//! - entries are bounded in number and never used past the token's `exp`
//!   (nor past `max_ttl`); time is passed in ([`Now`]), never read;
//! - an entry is used only by an issuer entry with the same checks
//!   ([`IssuerSettings`]'s identity: issuer, audience, algorithms, leeway,
//!   required claims), so a reload that tightens them re-verifies;
//! - an entry is bound to the fingerprint of the exact key that verified it
//!   (not to its `kid`): when that key is no longer in its issuer's set — a
//!   rotation removed it, or replaced it under the same `kid`, or a token
//!   without `kid` was verified by a key that is gone — the entry is dropped
//!   and the token verified again, so a rotation that revokes a key also
//!   revokes the cached sessions it signed;
//! - only successes are cached; failures are cheap to recompute and must
//!   not pin an error;
//! - a session verified with an HMAC secret is cached on its token's second
//!   use, not its first: checking an HMAC costs less than caching a token
//!   used once (the one-request-per-token herd), and a page's second request
//!   admits it for the rest. Public-key sessions (19–52 µs per verification)
//!   are cached at once;
//! - the cache is bounded twice: by entries (`capacity`) and by an estimate
//!   of the memory its sessions hold (`max_bytes`); quick_cache's CLOCK-Pro
//!   policy evicts one-hit tokens before the ones a page keeps using.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::hash::BuildHasher as _;

use super::{AuthError, Claims, KeyFingerprint, KeySet, Verifier};

/// The time a request is decided at: unix seconds for `exp`, and a
/// monotonic instant for cache lifetimes. Read once per request by the
/// caller and passed in, so this module reads no clock and tests choose the
/// time.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Seconds since the unix epoch.
    pub unix: u64,
    /// A monotonic instant.
    pub instant: Instant,
    /// The wall clock, for the audit line's time.
    pub wall: SystemTime,
}

impl Now {
    /// The system clocks now.
    pub fn system() -> Self {
        let wall = SystemTime::now();
        Self {
            unix: wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            instant: Instant::now(),
            wall,
        }
    }

    /// `d` later.
    pub fn after(self, d: Duration) -> Self {
        Self { unix: self.unix + d.as_secs(), instant: self.instant + d, wall: self.wall + d }
    }
}

/// Cache bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Most cached tokens (0 disables the cache).
    pub capacity: u64,
    /// Most memory the cached sessions may hold, estimated from their
    /// tokens' size (0 disables the cache).
    pub max_bytes: u64,
    /// Longest time a verification is reused, whatever the token's `exp`.
    pub max_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { capacity: 10_000, max_bytes: 4 * 1024 * 1024, max_ttl: Duration::from_secs(600) }
    }
}

/// A verified session: what the caller derives from the verified claims
/// once (the policy's CEL value of the claims). The claims themselves are
/// not kept: the derived value is all a request needs, and a cached session
/// then holds one copy of them, not two.
#[derive(Debug)]
pub struct Session<X> {
    /// Derived once per verification.
    pub derived: X,
    /// The token that was verified, when the session is cached: a cached
    /// session is served for this token only.
    token: Box<str>,
    exp: Option<u64>,
    /// The identity of the issuer entry that verified it.
    issuer: u64,
    /// The key that verified the token.
    key: KeyFingerprint,
    /// Estimated bytes held by this session (its weight in the cache).
    weight: u64,
}

/// The cache of verified sessions, with its hit counters: owned by the
/// runtime, shared by every configuration's [`Authenticator`].
pub struct TokenCache<X> {
    settings: CacheSettings,
    map: Option<Entries<X>>,
    /// Keys the token hash; random per cache.
    hasher: foldhash::quality::RandomState,
    /// Tests: every token gets the same hash.
    #[cfg(test)]
    every_token_collides: bool,
    seen: Doorkeeper,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<X> TokenCache<X> {
    /// An empty cache with these bounds (0 capacity or bytes: no caching).
    pub fn new(settings: CacheSettings) -> Self {
        let map = (settings.capacity > 0 && settings.max_bytes > 0).then(|| Entries::new(settings));
        Self {
            settings,
            map,
            hasher: foldhash::quality::RandomState::default(),
            #[cfg(test)]
            every_token_collides: false,
            seen: Doorkeeper::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A cache in which every token has the same hash (tests of the token
    /// comparison on a hit).
    #[cfg(test)]
    pub(super) fn where_every_token_collides(settings: CacheSettings) -> Self {
        Self { every_token_collides: true, ..Self::new(settings) }
    }

    fn key(&self, token: &str) -> CacheKey {
        #[cfg(test)]
        if self.every_token_collides {
            return 42;
        }
        self.hasher.hash_one(token.as_bytes())
    }

    /// Its bounds.
    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, Entries::len)
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The estimated bytes of the sessions held (what `max_bytes` bounds).
    pub fn weight(&self) -> u64 {
        self.map.as_ref().map_or(0, |entries| entries.map.weight())
    }
}

/// Verifies tokens through a [`TokenCache`].
pub struct Authenticator<X> {
    verifier: Verifier,
    cache: Arc<TokenCache<X>>,
    derive: Box<dyn Fn(&Claims) -> X + Send + Sync>,
}

impl<X: Send + Sync + 'static> Authenticator<X> {
    /// Wraps a verifier and a cache. `derive` runs once per verification.
    pub fn new(
        verifier: Verifier,
        cache: Arc<TokenCache<X>>,
        derive: impl Fn(&Claims) -> X + Send + Sync + 'static,
    ) -> Self {
        Self { verifier, cache, derive: Box::new(derive) }
    }

    /// The underlying verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Cache hits and misses so far.
    pub fn stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// Sessions cached now, and their estimated bytes.
    pub fn held(&self) -> (usize, u64) {
        (self.cache.len(), self.cache.weight())
    }

    /// Verifies `token`, from the cache when possible. An unknown `kid` of a
    /// remote issuer triggers one (rate-limited, shared) refetch and a retry;
    /// if the kid is still unknown while the issuer's keys are stale (the
    /// last fetch failed), the answer is [`AuthError::KeysUnavailable`]
    /// (503: the kid may well exist, and a new session would not help),
    /// not [`AuthError::UnknownKid`] (401).
    pub async fn authenticate(&self, token: &str, now: Now) -> Result<Arc<Session<X>>, AuthError> {
        let cache = &*self.cache;
        let key = cache.key(token);
        // Another token with the same hash is not a hit: this one is
        // verified on its own (and takes the slot if it is cached).
        if let Some(map) = &cache.map
            && let Some(hit) = map.get(&key, now.instant)
            && same_token(&hit.token, token)
        {
            if hit.exp.is_some_and(|exp| now.unix <= exp) && self.key_still_held(&hit) {
                cache.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
            map.invalidate(&key);
        }
        cache.misses.fetch_add(1, Ordering::Relaxed);
        let verified = match self.verifier.verify_detailed(token, now.unix) {
            Ok(v) => v,
            Err((AuthError::UnknownKid, Some(refetch))) => match &refetch.kid {
                Some(kid) if refetch.keys.refetch_for_unknown_kid(kid).await => {
                    self.verifier.verify_detailed(token, now.unix).map_err(|(e, _)| e)?
                }
                _ if refetch.keys.is_stale() => return Err(AuthError::KeysUnavailable),
                _ => return Err(AuthError::UnknownKid),
            },
            Err((e, _)) => return Err(e),
        };
        let exp = verified.exp;
        let ttl = exp.map_or(Duration::ZERO, |exp| Duration::from_secs(exp.saturating_sub(now.unix)));
        let cheap =
            self.verifier.issuers().get(verified.issuer).is_some_and(|i| matches!(i.keys, KeySet::Secret(_)));
        // HMAC sessions are cheaper to verify again than to cache for a
        // token used once: they enter on a token's second use.
        let map = cache.map.as_ref().filter(|_| !ttl.is_zero() && (!cheap || cache.seen.seen_before(&key)));
        let session = Arc::new(Session {
            derived: (self.derive)(&verified.claims),
            // Kept for the comparison on a hit: only a cached session needs it.
            token: if map.is_some() { token.into() } else { Box::default() },
            exp,
            issuer: self.verifier.identity(verified.issuer),
            key: verified.key,
            weight: estimated_bytes(token),
        });
        if let Some(map) = map {
            map.insert(key, session.clone(), ttl, now.instant);
        }
        Ok(session)
    }

    /// Whether the issuer entry that verified a cached session is still
    /// configured with the same checks, and the key that verified it is
    /// still one of its keys.
    fn key_still_held(&self, s: &Session<X>) -> bool {
        self.verifier.by_identity(s.issuer).is_some_and(|i| i.keys.holds(&s.key))
    }
}

/// A token's keyed hash.
type CacheKey = u64;

/// Whether a cached session's token is `token`, compared in constant time
/// (a token is a credential).
fn same_token(cached: &str, token: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(cached.as_bytes(), token.as_bytes()).is_ok()
}

/// Hashes of tokens seen recently: a direct-mapped table of tags, one
/// atomic swap per lookup, no lock. A slot is overwritten by the next token
/// that maps to it, so "seen" means "seen recently"; 16,384 slots keep a
/// token for about a third of a second at 50,000 new tokens per second,
/// far longer than between a page's requests.
struct Doorkeeper {
    slots: Box<[AtomicU64]>,
}

impl Doorkeeper {
    const SLOTS: usize = 16 * 1024;

    fn new() -> Self {
        Self { slots: (0..Self::SLOTS).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Whether `key` was recorded before (and still is); records it.
    fn seen_before(&self, key: &CacheKey) -> bool {
        // Never 0, the value of an empty slot.
        let tag = *key | 1;
        // The slot from the high bits, the tag is the whole hash.
        let index = usize::try_from(*key >> 32).unwrap_or(0) % Self::SLOTS;
        self.slots[index].swap(tag, Ordering::Relaxed) == tag
    }
}

/// What a cached session holds, estimated from its token: the token
/// itself, the payload text and its member index, and, once a policy has
/// read them, the claims as CEL values (a boxed value, a string and a map
/// slot per claim: about three times their encoded size), plus the fixed
/// parts and the allocator's rounding. Calibrated on the benchmark's RS256
/// page loads (peak RSS with and without cached sessions, ÷ sessions
/// cached): about 4.4 KB for a 900-byte token, plus the token kept for the
/// comparison on a hit.
fn estimated_bytes(token: &str) -> u64 {
    512 + 6 * token.len() as u64
}

/// A bounded map from token hash to session. Expiry is checked on
/// lookup (an entry is never used past `exp`, nor past `max_ttl`).
struct Entries<X> {
    map: quick_cache::sync::Cache<CacheKey, Entry<X>, Weight>,
    max_ttl: Duration,
}

struct Entry<X> {
    session: Arc<Session<X>>,
    /// Not used from this instant on.
    expires: Instant,
}

impl<X> Clone for Entry<X> {
    fn clone(&self) -> Self {
        Self { session: self.session.clone(), expires: self.expires }
    }
}

/// Weighs an entry by its estimated bytes, but at least `max_bytes /
/// capacity`: so the cache holds at most `capacity` entries and at most
/// about `max_bytes` of sessions, whichever bound is met first.
#[derive(Clone)]
struct Weight {
    slot: u64,
}

impl<X> quick_cache::Weighter<CacheKey, Entry<X>> for Weight {
    fn weight(&self, _key: &CacheKey, entry: &Entry<X>) -> u64 {
        entry.session.weight.max(self.slot)
    }
}

impl<X> Entries<X> {
    fn new(settings: CacheSettings) -> Self {
        let slot = (settings.max_bytes / settings.capacity.max(1)).max(1);
        let items = usize::try_from(settings.capacity.min(settings.max_bytes / slot)).unwrap_or(usize::MAX);
        Self {
            map: quick_cache::sync::Cache::with_weighter(items, settings.max_bytes, Weight { slot }),
            max_ttl: settings.max_ttl,
        }
    }

    fn get(&self, key: &CacheKey, now: Instant) -> Option<Arc<Session<X>>> {
        let entry = self.map.get(key)?;
        if now < entry.expires {
            return Some(entry.session);
        }
        self.map.remove(key);
        None
    }

    fn invalidate(&self, key: &CacheKey) {
        self.map.remove(key);
    }

    fn insert(&self, key: CacheKey, session: Arc<Session<X>>, ttl: Duration, now: Instant) {
        let expires = now + ttl.min(self.max_ttl);
        self.map.insert(key, Entry { session, expires });
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

impl<X> std::fmt::Debug for Authenticator<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("verifier", &self.verifier)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(weight: u64) -> Arc<Session<()>> {
        Arc::new(Session {
            derived: (),
            token: "t".into(),
            exp: Some(u64::MAX),
            issuer: 0,
            key: KeyFingerprint::unused(),
            weight,
        })
    }

    fn key(i: u32) -> CacheKey {
        foldhash::quality::FixedState::with_seed(7).hash_one(i)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    #[test]
    fn the_entry_count_bounds_a_cache_of_small_sessions() {
        let cache = Entries::new(CacheSettings { capacity: 100, max_bytes: 1 << 30, max_ttl: HOUR });
        for i in 0..1000 {
            cache.insert(key(i), session(100), HOUR, t0());
        }
        assert!(cache.len() <= 100, "{}", cache.len());
        assert!(cache.len() >= 50, "{}", cache.len());
    }

    #[test]
    fn the_byte_bound_limits_a_cache_of_large_sessions() {
        let cache = Entries::new(CacheSettings { capacity: 10_000, max_bytes: 100_000, max_ttl: HOUR });
        for i in 0..1000 {
            cache.insert(key(i), session(10_000), HOUR, t0());
        }
        assert!(cache.len() <= 10, "{}", cache.len());
        assert!(cache.len() >= 5, "{}", cache.len());
    }

    #[test]
    fn the_doorkeeper_admits_on_the_second_sighting() {
        let seen = Doorkeeper::new();
        assert!(!seen.seen_before(&key(1)));
        assert!(seen.seen_before(&key(1)));
        assert!(seen.seen_before(&key(1)));
        assert!(!seen.seen_before(&key(2)));
        // A token whose slot was taken by another is forgotten.
        let other = key(1) ^ 0x80;
        assert!(!seen.seen_before(&other));
        assert!(!seen.seen_before(&key(1)));
    }

    #[test]
    fn entries_expire_and_max_ttl_caps_them() {
        let cache = Entries::new(CacheSettings { capacity: 10, max_bytes: 1 << 20, max_ttl: Duration::ZERO });
        cache.insert(key(1), session(1), HOUR, t0());
        assert!(cache.get(&key(1), t0()).is_none(), "max_ttl 0 keeps nothing usable");
        assert_eq!(cache.len(), 0, "an expired entry is dropped when met");
        let cache = Entries::new(CacheSettings { capacity: 10, max_bytes: 1 << 20, max_ttl: HOUR });
        cache.insert(key(1), session(1), Duration::ZERO, t0());
        assert!(cache.get(&key(1), t0()).is_none());
        cache.insert(key(2), session(1), HOUR, t0());
        assert!(cache.get(&key(2), t0()).is_some());
        cache.invalidate(&key(2));
        assert!(cache.get(&key(2), t0()).is_none());
    }
}
