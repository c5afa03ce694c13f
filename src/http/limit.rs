//! Rate limits per client IP and per user (`sub`), with governor's GCRA.
//!
//! The client IP is the peer address, unless the peer is a trusted proxy:
//! then `X-Forwarded-For` is read from the right, skipping trusted proxies,
//! and the first untrusted address is the client. An entry that is not an
//! address (`unknown`, as some proxies write) ends the walk at the hop that
//! appended it: nothing left of it can be attributed. An untrusted peer's
//! `X-Forwarded-For` is ignored, so a client cannot pick its own bucket.
//! IPv6 clients are limited per /64 (one subscriber's usual allocation: per
//! address, one client could rotate through 2^64 buckets).
//! Limiter state is bounded by [`RateLimits::retain_recent`], called
//! periodically by the server.
//!
//! [`ConnectionCounts`] caps the connections open at once per client
//! address (by peer address, /64 for IPv6), trusted proxies exempt.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use ipnet::IpNet;

use crate::config::{Rate, RateLimitSettings};

/// The configured limiters.
#[derive(Debug)]
pub struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: Option<DefaultKeyedRateLimiter<String>>,
    trusted_proxies: Vec<IpNet>,
    clock: DefaultClock,
}

/// A refusal: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Time until a request would be allowed.
    pub retry_after: Duration,
}

fn quota(rate: Rate, burst: u32) -> Option<Quota> {
    let period = rate.period.checked_div(rate.count.max(1))?;
    let burst = NonZeroU32::new(burst.max(1))?;
    Some(Quota::with_period(period)?.allow_burst(burst))
}

impl RateLimits {
    /// Builds the limiters; `enabled: false` gives limits that allow all.
    pub fn new(settings: &RateLimitSettings) -> Self {
        let (per_ip, per_user) = if settings.enabled {
            (
                quota(settings.per_ip, settings.per_ip_burst).map(RateLimiter::keyed),
                quota(settings.per_user, settings.per_user_burst).map(RateLimiter::keyed),
            )
        } else {
            (None, None)
        };
        Self {
            per_ip,
            per_user,
            trusted_proxies: settings.trusted_proxies.clone(),
            clock: DefaultClock::default(),
        }
    }

    /// The client's address for a request from `peer`: walking
    /// `X-Forwarded-For` from the right while the hops are trusted proxies,
    /// the first untrusted entry; at a junk entry, the trusted hop that
    /// appended it; past the left end, the leftmost entry.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer;
        if !self.is_trusted(client) {
            return client;
        }
        let lines: Vec<&http::HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
        for line in lines.into_iter().rev() {
            // A line that is not visible ASCII is junk as a whole.
            let Ok(line) = line.to_str() else { return client };
            for entry in line.rsplit(',') {
                let Some(ip) = parse_hop(entry.trim()) else { return client };
                client = ip;
                if !self.is_trusted(ip) {
                    return client;
                }
            }
        }
        client
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Counts one request from `ip` (its /64 for IPv6).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        match &self.per_ip {
            Some(l) => l
                .check_key(&client_key(ip))
                .map_err(|n| Limited { retry_after: n.wait_time_from(self.clock.now()) }),
            None => Ok(()),
        }
    }

    /// Counts one request from user `sub`.
    pub fn check_user(&self, sub: &str) -> Result<(), Limited> {
        match &self.per_user {
            Some(l) => l
                .check_key(&sub.to_owned())
                .map_err(|n| Limited { retry_after: n.wait_time_from(self.clock.now()) }),
            None => Ok(()),
        }
    }

    /// Forgets keys whose buckets are full again, bounding memory.
    pub fn retain_recent(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_user {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`192.0.2.1:1234`, `[2001:db8::1]:1234`), as some proxies write it.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// The key a client is limited by: an IPv4 address (also when written as
/// an IPv4-mapped IPv6 address), or an IPv6 address's /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Connections open at once per client address ([`client_key`] of the
/// peer), capped. The map holds only addresses with open connections; the
/// lock is held for one map update, never across I/O or an await.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    key: IpAddr,
}

impl ConnectionCounts {
    /// A slot for a connection from `peer`, unless `max` are already open
    /// (`max` 0: no cap).
    pub fn try_open(self: &Arc<Self>, peer: IpAddr, max: usize) -> Option<ConnectionSlot> {
        let key = client_key(peer);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot { counts: self.clone(), key })
    }

    /// Connections open from `peer`'s address now.
    #[cfg(test)]
    pub fn open_from(&self, peer: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&client_key(peer)).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(trusted: &[&str]) -> RateLimitSettings {
        RateLimitSettings {
            trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
            ..RateLimitSettings::default()
        }
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_peer_cannot_choose_its_address() {
        let l = RateLimits::new(&settings(&["10.0.0.0/8"]));
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(l.client_ip(peer, &xff("1.2.3.4")), peer);
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let l = RateLimits::new(&settings(&["10.0.0.0/8", "127.0.0.1/32"]));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        // Client-supplied leftmost entries are ignored past the first untrusted hop.
        assert_eq!(
            l.client_ip(peer, &xff("6.6.6.6, 198.51.100.7, 10.1.2.3")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(l.client_ip(peer, &HeaderMap::new()), peer);
        // Every hop trusted: the leftmost is as far as the chain goes.
        assert_eq!(l.client_ip(peer, &xff("10.9.9.9")), "10.9.9.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_junk_entry_ends_the_walk_at_the_hop_that_appended_it() {
        let l = RateLimits::new(&settings(&["10.0.0.0/8", "127.0.0.1/32"]));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Some proxies write `unknown` for the hop before them: the client is
        // still the first untrusted entry from the right, not the proxy.
        assert_eq!(l.client_ip(peer, &xff("unknown, 203.0.113.50")), ip("203.0.113.50"));
        assert_eq!(l.client_ip(peer, &xff("unknown, 203.0.113.50, 10.1.2.3")), ip("203.0.113.50"));
        // Junk reached while walking trusted hops: the hop that wrote it.
        assert_eq!(l.client_ip(peer, &xff("garbage, 10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(l.client_ip(peer, &xff("198.51.100.1, , 10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(l.client_ip(peer, &xff("garbage")), peer);
        // Ports, as some proxies append them.
        assert_eq!(l.client_ip(peer, &xff("203.0.113.7:5555")), ip("203.0.113.7"));
        assert_eq!(l.client_ip(peer, &xff("[2001:db8::7]:5555")), ip("2001:db8::7"));
        // Several header lines are one list, in order.
        let mut h = xff("198.51.100.9");
        h.append("x-forwarded-for", "10.1.2.3".parse().unwrap());
        assert_eq!(l.client_ip(peer, &h), ip("198.51.100.9"));
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let s = RateLimitSettings {
            per_ip: Rate { count: 1, period: Duration::from_secs(60) },
            per_ip_burst: 2,
            ..RateLimitSettings::default()
        };
        let l = RateLimits::new(&s);
        assert!(l.check_ip("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(l.check_ip("2001:db8:1:2:ffff::9".parse().unwrap()).is_ok());
        assert!(l.check_ip("2001:db8:1:2:dead:beef:0:1".parse().unwrap()).is_err(), "same /64");
        assert!(l.check_ip("2001:db8:1:3::1".parse().unwrap()).is_ok(), "another /64");
        assert_eq!(client_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn connection_slots_are_capped_per_address_and_freed_on_drop() {
        let counts = Arc::new(ConnectionCounts::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| counts.try_open(a, 3).unwrap()).collect();
        assert!(counts.try_open(a, 3).is_none());
        assert!(counts.try_open(b, 3).is_some(), "another address has its own slots");
        assert_eq!(counts.open_from(a), 3);
        drop(held);
        assert_eq!(counts.open_from(a), 0);
        assert!(counts.open.lock().unwrap().is_empty(), "no entry is kept for closed addresses");
        let v6: Vec<_> =
            ["2001:db8::1", "2001:db8::2"].iter().map(|s| counts.try_open(s.parse().unwrap(), 2)).collect();
        assert!(v6.iter().all(Option::is_some));
        assert!(counts.try_open("2001:db8::3".parse().unwrap(), 2).is_none(), "one /64, one cap");
        assert!(counts.try_open(a, 0).is_some(), "0 means no cap");
    }

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let s = RateLimitSettings {
            per_ip: Rate { count: 1, period: Duration::from_secs(60) },
            per_ip_burst: 3,
            ..RateLimitSettings::default()
        };
        let l = RateLimits::new(&s);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check_ip(ip).is_ok());
        }
        let refused = l.check_ip(ip).unwrap_err();
        assert!(
            refused.retry_after > Duration::from_secs(1) && refused.retry_after <= Duration::from_secs(60)
        );
        // Another address has its own bucket.
        assert!(l.check_ip("192.0.2.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn disabled_allows_everything() {
        let l = RateLimits::new(&RateLimitSettings { enabled: false, ..RateLimitSettings::default() });
        for _ in 0..1000 {
            assert!(l.check_user("a").is_ok());
        }
    }
}
