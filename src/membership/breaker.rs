//! A circuit breaker per remote dependency (the app's session endpoint, a
//! decision hook's URL, a data source): after `failures` consecutive
//! failures it opens for `open_for`, during which calls fail at once instead
//! of each waiting for a timeout; then one probe call is let through
//! (half-open), and its outcome closes or reopens it.
//!
//! Invariants: time is passed in (`now`), so tests drive it; the state is
//! behind a mutex touched only for a few instructions, never across an
//! await; a probe that is abandoned (its future dropped) frees the probe
//! slot, so the breaker can never stay half-open forever.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BreakerSettings {
    /// Consecutive failures that open the breaker (at least 1).
    pub(crate) failures: u32,
    /// How long it stays open before one probe is let through.
    pub(crate) open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failures: 5, open_for: Duration::from_secs(5) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker's state as shown to operators (`/readyz`, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once.
    Open,
    /// One probe call may go through.
    HalfOpen,
}

/// A circuit breaker; see the module docs.
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
    opened: AtomicU64,
    rejected: AtomicU64,
}

/// The breaker is open: the call was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the circuit breaker is open after repeated failures")]
pub(crate) struct Open;

/// Leave to make one call; report its outcome with [`Permit::success`] or
/// [`Permit::failure`]. Dropped without a report (the caller gave up), it
/// counts as neither, and frees the probe slot of a half-open breaker.
#[derive(Debug)]
#[must_use = "report the call's outcome"]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        let settings = BreakerSettings { failures: settings.failures.max(1), ..settings };
        Self {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
            opened: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Asks to make a call at `now`.
    pub(crate) fn admit(&self, now: Instant) -> Result<Permit<'_>, Open> {
        let probe = self.with_state(|s| match *s {
            State::Closed { .. } => Ok(false),
            State::Open { until } if now < until => Err(Open),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *s = State::HalfOpen { probing: true };
                Ok(true)
            }
            State::HalfOpen { probing: true } => Err(Open),
        });
        match probe {
            Ok(probe) => Ok(Permit { breaker: self, probe, done: false }),
            Err(open) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(open)
            }
        }
    }

    /// The state at `now`.
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        self.with_state(|s| match *s {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        })
    }

    /// How many times it opened, and how many calls it refused.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (self.opened.load(Ordering::Relaxed), self.rejected.load(Ordering::Relaxed))
    }

    fn record(&self, probe: bool, ok: bool, now: Instant) {
        let opened = self.with_state(|s| {
            let next = match (*s, ok) {
                (_, true) => State::Closed { failures: 0 },
                (State::Closed { failures }, false) if failures + 1 < self.settings.failures => {
                    State::Closed { failures: failures + 1 }
                }
                // A late failure of a call admitted before the breaker
                // opened does not extend the open period.
                (State::Open { until }, false) if !probe => State::Open { until },
                (_, false) => State::Open { until: now + self.settings.open_for },
            };
            let opened = matches!(next, State::Open { .. }) && !matches!(*s, State::Open { .. });
            *s = next;
            opened
        });
        if opened {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Permit<'_> {
    /// The call succeeded (the dependency answered as it should).
    pub(crate) fn success(mut self, now: Instant) {
        self.done = true;
        self.breaker.record(self.probe, true, now);
    }

    /// The call failed (unreachable, timed out, answered garbage).
    pub(crate) fn failure(mut self, now: Instant) {
        self.done = true;
        self.breaker.record(self.probe, false, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.with_state(|s| {
                if *s == (State::HalfOpen { probing: true }) {
                    *s = State::HalfOpen { probing: false };
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings { failures: 3, open_for: Duration::from_secs(5) })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker();
        let t = Instant::now();
        b.admit(t).unwrap().failure(t);
        b.admit(t).unwrap().failure(t);
        // A success in between resets the count.
        b.admit(t).unwrap().success(t);
        b.admit(t).unwrap().failure(t);
        b.admit(t).unwrap().failure(t);
        assert_eq!(b.state(t), BreakerState::Closed);
        b.admit(t).unwrap().failure(t);
        assert_eq!(b.state(t), BreakerState::Open);
        assert_eq!(b.admit(t + Duration::from_secs(4)).unwrap_err(), Open);
        assert_eq!(b.stats(), (1, 1));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.admit(t).unwrap().failure(t);
        }
        let later = t + Duration::from_secs(5);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        let probe = b.admit(later).unwrap();
        assert!(b.admit(later).is_err(), "a second call while the probe runs");
        probe.failure(later);
        assert_eq!(b.state(later + Duration::from_secs(4)), BreakerState::Open, "a failed probe reopens");
        let again = later + Duration::from_secs(5);
        b.admit(again).unwrap().success(again);
        assert_eq!(b.state(again), BreakerState::Closed);
        assert!(b.admit(again).is_ok());
        assert_eq!(b.stats().0, 2);
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.admit(t).unwrap().failure(t);
        }
        let later = t + Duration::from_secs(6);
        drop(b.admit(later).unwrap());
        assert!(b.admit(later).is_ok(), "the next call may probe");
    }

    #[test]
    fn late_failures_do_not_extend_the_open_period() {
        let b = breaker();
        let t = Instant::now();
        let slow = b.admit(t).unwrap();
        for _ in 0..3 {
            b.admit(t).unwrap().failure(t);
        }
        slow.failure(t + Duration::from_secs(4));
        assert_eq!(b.state(t + Duration::from_secs(5)), BreakerState::HalfOpen);
    }
}
