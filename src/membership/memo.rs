//! The cache every lookup shares (session introspection, decision hooks,
//! data-source queries): answers kept for a TTL in a bounded quick_cache,
//! one fetch per key at a time (single-flight), and the last good answer
//! served after a failed fetch while it is within `stale_if_error`.
//!
//! Invariants:
//! - time is passed in (`now`); an answer is fresh until `now + ttl` of the
//!   request that fetched it (measured from the request's start, so an
//!   answer is never kept longer than `ttl` after it was asked for);
//! - an answer fetched with a TTL of zero is handed to the requests that
//!   waited for it and not kept;
//! - a stale answer is served only after its fetch failed, and only until
//!   `ttl + stale_if_error` after it was fetched (`stale_if_error` zero: never);
//! - concurrent requests for one key share one fetch: the first runs it,
//!   the others await its outcome (its answer, or its error). A request that
//!   is dropped while fetching hands the fetch to one of the waiters;
//! - the map of fetches in progress is behind a mutex held for a few
//!   instructions, never across an await; it holds only fetches that some
//!   request still awaits.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Estimated memory an entry holds, so a cache is bounded in bytes.
pub(crate) trait Weigh {
    /// Estimated bytes.
    fn weight(&self) -> u64;
}

/// How an answer was obtained (for `explain`, the audit line, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    /// From the cache, fresh.
    Hit,
    /// Fetched for this request, or by a concurrent request it waited for.
    Miss,
    /// From the cache after a failed fetch, within `stale_if_error`.
    Stale,
}

impl CacheStatus {
    /// `hit`, `miss` or `stale`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
        }
    }
}

/// A fetched answer and how long it may be reused.
#[derive(Debug, Clone)]
pub(crate) struct Fresh<V> {
    /// The answer.
    pub(crate) value: V,
    /// How long it is reused (zero: not kept).
    pub(crate) ttl: Duration,
}

/// Bounds and staleness of a [`Memo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoSettings {
    /// Most entries kept.
    pub(crate) capacity: u64,
    /// Most estimated bytes kept.
    pub(crate) max_bytes: u64,
    /// How long after its TTL an answer may still be served when a fetch
    /// fails (zero: never).
    pub(crate) stale_if_error: Duration,
}

impl Default for MemoSettings {
    fn default() -> Self {
        Self { capacity: 10_000, max_bytes: 8 * 1024 * 1024, stale_if_error: Duration::ZERO }
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub(crate) struct MemoStats {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    errors: AtomicU64,
}

/// A snapshot of [`MemoStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MemoCounts {
    /// Fresh answers from the cache.
    pub(crate) hits: u64,
    /// Answers fetched (one per request that waited, shared or not).
    pub(crate) misses: u64,
    /// Stale answers served after a failed fetch.
    pub(crate) stale: u64,
    /// Requests answered with an error.
    pub(crate) errors: u64,
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    fresh_until: Instant,
    stale_until: Instant,
}

#[derive(Clone)]
struct Weight {
    slot: u64,
}

impl<K: Weigh, V: Weigh> quick_cache::Weighter<K, Entry<V>> for Weight {
    fn weight(&self, key: &K, entry: &Entry<V>) -> u64 {
        (key.weight() + entry.value.weight() + 64).max(self.slot)
    }
}

type Flight<V, E> = Arc<OnceCell<Result<(V, CacheStatus), E>>>;
/// Fetches in progress, each with the number of requests awaiting it.
type Flights<K, V, E> = Mutex<HashMap<K, (Flight<V, E>, usize)>>;

/// A TTL cache with single-flight fetches and `stale_if_error`; see the
/// module docs.
pub(crate) struct Memo<K, V, E> {
    cache: quick_cache::sync::Cache<K, Entry<V>, Weight>,
    flights: Flights<K, V, E>,
    stale_if_error: Duration,
    stats: MemoStats,
}

impl<K, V, E> std::fmt::Debug for Memo<K, V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo").field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// A request's share of a flight: the map counts the requests that await
/// each flight, and the last one out (also a request dropped mid-way)
/// removes it.
struct Participant<'a, K: Hash + Eq, V, E> {
    flights: &'a Flights<K, V, E>,
    key: &'a K,
    flight: Flight<V, E>,
}

impl<K: Hash + Eq, V, E> Drop for Participant<'_, K, V, E> {
    fn drop(&mut self) {
        let mut map = self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((flight, awaiting)) = map.get_mut(self.key)
            && Arc::ptr_eq(flight, &self.flight)
        {
            *awaiting -= 1;
            if *awaiting == 0 {
                map.remove(self.key);
            }
        }
    }
}

impl<K, V, E> Memo<K, V, E>
where
    K: Hash + Eq + Clone + Weigh + Send + Sync + 'static,
    V: Clone + Weigh + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// An empty cache.
    pub(crate) fn new(settings: MemoSettings) -> Self {
        let capacity = settings.capacity.max(1);
        let max_bytes = settings.max_bytes.max(1);
        let slot = (max_bytes / capacity).max(1);
        let items = usize::try_from(capacity.min(max_bytes / slot)).unwrap_or(usize::MAX).max(1);
        Self {
            cache: quick_cache::sync::Cache::with_weighter(items, max_bytes, Weight { slot }),
            flights: Mutex::new(HashMap::new()),
            stale_if_error: settings.stale_if_error,
            stats: MemoStats::default(),
        }
    }

    /// Counters so far.
    pub(crate) fn counts(&self) -> MemoCounts {
        MemoCounts {
            hits: self.stats.hits.load(Ordering::Relaxed),
            misses: self.stats.misses.load(Ordering::Relaxed),
            stale: self.stats.stale.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
        }
    }

    /// Entries kept (fresh or not).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    /// The fresh cached answer for `key` at `now`, without fetching.
    pub(crate) fn cached(&self, key: &K, now: Instant) -> Option<V> {
        self.cache.get(key).filter(|e| now < e.fresh_until).map(|e| e.value)
    }

    /// [`Memo::cached`], counted as a hit when found (for a caller that
    /// looks in the cache before preparing what a fetch would need).
    pub(crate) fn hit(&self, key: &K, now: Instant) -> Option<V> {
        let value = self.cached(key, now)?;
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(value)
    }

    /// The answer for `key` at `now`: fresh from the cache, or from `fetch`
    /// (shared with concurrent requests for the same key), or stale after a
    /// failed fetch within `stale_if_error`, or the fetch's error.
    pub(crate) async fn get<F, Fut>(&self, key: &K, now: Instant, fetch: F) -> Result<(V, CacheStatus), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh<V>, E>>,
    {
        if let Some(value) = self.cached(key, now) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((value, CacheStatus::Hit));
        }
        let flight = {
            let mut map = self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (flight, awaiting) = map.entry(key.clone()).or_insert_with(|| (Flight::default(), 0));
            *awaiting += 1;
            Arc::clone(flight)
        };
        let participant = Participant { flights: &self.flights, key, flight };
        let outcome = participant.flight.get_or_init(|| self.fetch(key, now, fetch)).await.clone();
        drop(participant);
        match &outcome {
            Ok((_, CacheStatus::Stale)) => self.stats.stale.fetch_add(1, Ordering::Relaxed),
            Ok(_) => self.stats.misses.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.errors.fetch_add(1, Ordering::Relaxed),
        };
        outcome.map(|(value, status)| {
            (value, if status == CacheStatus::Hit { CacheStatus::Miss } else { status })
        })
    }

    /// One fetch, run by the first request of a flight.
    async fn fetch<F, Fut>(&self, key: &K, now: Instant, fetch: F) -> Result<(V, CacheStatus), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh<V>, E>>,
    {
        // Another flight may have just filled the cache between this
        // request's lookup and its joining a new flight.
        if let Some(value) = self.cached(key, now) {
            return Ok((value, CacheStatus::Hit));
        }
        match fetch().await {
            Ok(fresh) => {
                if fresh.ttl > Duration::ZERO {
                    let fresh_until = now + fresh.ttl;
                    let stale_until = fresh_until + self.stale_if_error;
                    self.cache
                        .insert(key.clone(), Entry { value: fresh.value.clone(), fresh_until, stale_until });
                } else {
                    self.cache.remove(key);
                }
                Ok((fresh.value, CacheStatus::Miss))
            }
            Err(error) => match self.cache.get(key) {
                Some(entry) if now < entry.stale_until && self.stale_if_error > Duration::ZERO => {
                    Ok((entry.value, CacheStatus::Stale))
                }
                _ => Err(error),
            },
        }
    }
}

impl Weigh for [u8; 32] {
    fn weight(&self) -> u64 {
        32
    }
}

impl Weigh for Box<[Option<Box<str>>]> {
    fn weight(&self) -> u64 {
        self.iter().map(|p| 16 + p.as_ref().map_or(0, |s| s.len() as u64)).sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    struct Key(u32);

    impl Weigh for Key {
        fn weight(&self) -> u64 {
            4
        }
    }

    impl Weigh for u32 {
        fn weight(&self) -> u64 {
            4
        }
    }

    type TestMemo = Memo<Key, u32, &'static str>;

    fn memo(stale: u64) -> TestMemo {
        Memo::new(MemoSettings { stale_if_error: Duration::from_secs(stale), ..MemoSettings::default() })
    }

    fn ok(value: u32, ttl: u64) -> impl Future<Output = Result<Fresh<u32>, &'static str>> {
        std::future::ready(Ok(Fresh { value, ttl: Duration::from_secs(ttl) }))
    }

    fn awaiting(m: &TestMemo, key: &Key) -> usize {
        m.flights.lock().unwrap().get(key).map_or(0, |(_, n)| *n)
    }

    #[tokio::test]
    async fn an_answer_is_fresh_for_its_ttl_from_the_request_that_fetched_it() {
        let m = memo(0);
        let t = Instant::now();
        assert_eq!(m.get(&Key(1), t, || ok(7, 30)).await, Ok((7, CacheStatus::Miss)));
        assert_eq!(
            m.get(&Key(1), t + Duration::from_secs(29), || ok(8, 30)).await,
            Ok((7, CacheStatus::Hit))
        );
        assert_eq!(
            m.get(&Key(1), t + Duration::from_secs(30), || ok(8, 30)).await,
            Ok((8, CacheStatus::Miss))
        );
        assert_eq!(m.get(&Key(2), t, || ok(9, 0)).await, Ok((9, CacheStatus::Miss)));
        assert_eq!(m.cached(&Key(2), t), None, "a zero TTL is not kept");
        assert_eq!(m.counts(), MemoCounts { hits: 1, misses: 3, stale: 0, errors: 0 });
    }

    #[tokio::test]
    async fn a_failed_fetch_serves_the_last_answer_only_within_stale_if_error() {
        let t = Instant::now();
        let fail = || std::future::ready(Err::<Fresh<u32>, _>("down"));
        let m = memo(0);
        m.get(&Key(1), t, || ok(7, 10)).await.unwrap();
        assert_eq!(m.get(&Key(1), t + Duration::from_secs(10), fail).await, Err("down"));

        let m = memo(5);
        m.get(&Key(1), t, || ok(7, 10)).await.unwrap();
        assert_eq!(m.get(&Key(1), t + Duration::from_secs(14), fail).await, Ok((7, CacheStatus::Stale)));
        assert_eq!(m.get(&Key(1), t + Duration::from_secs(15), fail).await, Err("down"));
        // No earlier answer: the error.
        assert_eq!(m.get(&Key(2), t, fail).await, Err("down"));
        assert_eq!(m.counts(), MemoCounts { hits: 0, misses: 1, stale: 1, errors: 2 });
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch_and_its_error() {
        let m = memo(0);
        let calls = AtomicUsize::new(0);
        let gate = tokio::sync::Semaphore::new(0);
        let t = Instant::now();
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            let _permit = gate.acquire().await;
            Err::<Fresh<u32>, _>("down")
        };
        let gets = futures_util::future::join_all((0..10).map(|_| m.get(&Key(1), t, fetch)));
        let release = async {
            while awaiting(&m, &Key(1)) < 10 {
                tokio::task::yield_now().await;
            }
            gate.add_permits(1);
        };
        let (outcomes, ()) = tokio::join!(gets, release);
        assert!(outcomes.iter().all(|o| *o == Err("down")));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(m.flights.lock().unwrap().is_empty(), "the finished flight is gone");
    }

    #[tokio::test]
    async fn a_dropped_fetch_is_taken_over_and_leaves_no_flight_behind() {
        let m = memo(0);
        let t = Instant::now();
        let never = || std::future::pending::<Result<Fresh<u32>, &'static str>>();
        // The only request gives up: its flight is removed.
        assert!(tokio::time::timeout(Duration::from_millis(10), m.get(&Key(1), t, never)).await.is_err());
        assert!(m.flights.lock().unwrap().is_empty());
        // The first of two gives up: the second runs its own fetch.
        let first = m.get(&Key(2), t, never);
        let second = m.get(&Key(2), t, || ok(5, 30));
        let mut first = Box::pin(first);
        let mut second = Box::pin(second);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert_eq!(awaiting(&m, &Key(2)), 2);
        drop(first);
        assert_eq!(second.await, Ok((5, CacheStatus::Miss)));
        assert!(m.flights.lock().unwrap().is_empty());
    }

    #[test]
    fn the_cache_is_bounded() {
        let m: TestMemo = Memo::new(MemoSettings { capacity: 100, ..MemoSettings::default() });
        let t = Instant::now();
        for i in 0..1000 {
            m.cache.insert(Key(i), Entry { value: i, fresh_until: t, stale_until: t });
        }
        assert!(m.len() <= 100, "{}", m.len());
    }
}
